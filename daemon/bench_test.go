package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/kv"
)

const benchOrder = `{"user_id":"user123","items":[{"name":"laptop","price":1500000},{"name":"mouse","price":50000}]}`

// nativeOrders is the baseline for BenchmarkCreateOrder: POST /orders written
// as an ordinary Go net/http handler with encoding/json, doing the same work
// as plugins/order (validate, total, id, store in the service's NATS KV
// bucket, publish ORDER_CREATED on the same bus) in the same process.
type nativeOrders struct {
	store *kv.Store
	bus   *bus.Bus
}

type nativeItem struct {
	Name  string `json:"name"`
	Price int64  `json:"price"`
}

type nativeOrder struct {
	ID        string       `json:"id"`
	UserID    string       `json:"user_id"`
	Items     []nativeItem `json:"items"`
	Total     int64        `json:"total"`
	Status    string       `json:"status"`
	CreatedAt string       `json:"created_at"`
}

func (n *nativeOrders) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	var in struct {
		UserID string       `json:"user_id"`
		Items  []nativeItem `json:"items"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		http.Error(w, "body is not valid JSON", 400)
		return
	}
	if in.UserID == "" || len(in.Items) == 0 {
		http.Error(w, "invalid order", 400)
		return
	}
	o := nativeOrder{ID: uuid.NewString(), UserID: in.UserID, Items: in.Items, Status: "CREATED",
		CreatedAt: time.Now().UTC().Format(time.RFC3339)}
	for i, it := range in.Items {
		if it.Name == "" || it.Price <= 0 {
			http.Error(w, fmt.Sprintf("items[%d] is invalid", i), 400)
			return
		}
		o.Total += it.Price
	}
	out, _ := json.Marshal(o)
	if err := n.store.Put(r.Context(), "order:"+o.ID, out); err != nil {
		http.Error(w, err.Error(), 503)
		return
	}
	if err := n.bus.Publish(r.Context(), bus.NewEvent("order", "ORDER_CREATED", out)); err != nil {
		http.Error(w, err.Error(), 503)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/orders/"+o.ID)
	w.WriteHeader(201)
	w.Write(out)
}

// BenchmarkCreateOrder compares POST /orders served by the order module
// through meshd's gateway (ABI encode, pooled Wasm instance, jsonx in the
// guest, buffered KV write and event applied on NATS) with the native
// handler above, both in process (httptest, no TCP), on the same embedded
// NATS server. The payment module is not loaded, so no saga work competes.
func BenchmarkCreateOrder(b *testing.B) {
	td := startDaemonWith(b, []string{"order"}, nil, nil)
	store, err := kv.Open(context.Background(), td.nats.JetStream(), "native")
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, h http.Handler) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req := httptest.NewRequest("POST", "/orders", strings.NewReader(benchOrder))
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != 201 {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
	b.Run("native", func(b *testing.B) { run(b, &nativeOrders{store: store, bus: td.Bus()}) })
	b.Run("wasm", func(b *testing.B) { run(b, td.Handler()) })
}

// BenchmarkGetOrder compares GET /orders/{id} (one KV read) the same way.
func BenchmarkGetOrder(b *testing.B) {
	td := startDaemonWith(b, []string{"order"}, nil, nil)
	r := td.do(b, "POST", "/orders", "application/json", benchOrder)
	id, _ := r.json(b)["id"].(string)
	store, err := kv.Open(context.Background(), td.nats.JetStream(), "order")
	if err != nil {
		b.Fatal(err)
	}
	native := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := store.Get(r.Context(), "order:"+r.PathValue("id"))
		if err != nil {
			http.Error(w, "not found", 404)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(v)
	})
	mux := http.NewServeMux()
	mux.Handle("GET /orders/{id}", native)
	run := func(b *testing.B, h http.Handler) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("GET", "/orders/"+id, nil))
				if rec.Code != 200 {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
	b.Run("native", func(b *testing.B) { run(b, mux) })
	b.Run("wasm", func(b *testing.B) { run(b, td.Handler()) })
}
