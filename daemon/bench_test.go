package daemon

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/meshd/meshd/bench/nativeorder"
	"github.com/meshd/meshd/host/kv"
)

const benchOrder = `{"user_id":"user123","items":[{"name":"laptop","price":1500000},{"name":"mouse","price":50000}]}`

// BenchmarkCreateOrder compares POST /orders served by the order module
// through meshd's gateway (ABI encode, pooled Wasm instance, jsonx in the
// guest, buffered KV write and events applied on NATS) with
// bench/nativeorder's handler doing the same work and effects, both in
// process (httptest, no TCP), on the same embedded NATS server. The payment module is not loaded, so no saga work competes.
func BenchmarkCreateOrder(b *testing.B) {
	// Admission off: the benchmark floods POST /orders, which the order
	// service's read model cannot keep up with, and measures what one
	// request costs, not what the daemon admits.
	toml, err := os.ReadFile(fixture(b, filepath.Join("..", "build", "plugins", "order.toml")))
	if err != nil {
		b.Fatal(err)
	}
	toml = bytes.Replace(toml, []byte("[events]\n"), []byte("[events]\nadmission = false\n"), 1)
	toml = regexp.MustCompile(`(?m)^admission_(lag|events) = .*\n`).ReplaceAll(toml, nil) // refused with admission off
	td := startDaemonWith(b, []string{"order"}, map[string][]byte{"order.toml": toml}, nil)
	store, err := kv.Open(context.Background(), td.nats.JetStream(), "native", kv.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if !bytes.Contains(toml, []byte("admission = false")) {
		b.Fatal("order.toml has no [events] table to turn admission off in")
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
	b.Run("native", func(b *testing.B) { run(b, nativeorder.Handler(&nativeorder.Effects{Store: store, Bus: td.Bus()})) })
	b.Run("wasm", func(b *testing.B) { run(b, td.Handler()) })
}

// BenchmarkGetOrder compares GET /orders/{id} (one KV read) the same way,
// and against the native handler reading through a kv.Cache as meshd does.
func BenchmarkGetOrder(b *testing.B) {
	td := startDaemonWith(b, []string{"order"}, nil, nil)
	r := td.do(b, "POST", "/orders", "application/json", benchOrder)
	id, _ := r.json(b)["id"].(string)
	store, err := kv.Open(context.Background(), td.nats.JetStream(), "order", kv.Options{})
	if err != nil {
		b.Fatal(err)
	}
	// meshd answers the read from its kv.Cache; native-cached is the
	// native handler with one too (the order is written before either
	// runs, and not after).
	cached, err := kv.Open(context.Background(), td.nats.JetStream(), "order", kv.Options{Cache: kv.NewCache(1 << 20)})
	if err != nil {
		b.Fatal(err)
	}
	native := func(store *kv.Store) http.Handler {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
			v, err := store.Get(r.Context(), "order:"+r.PathValue("id"))
			if err != nil {
				http.Error(w, "not found", 404)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write(v)
		})
		return mux
	}
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
	b.Run("native", func(b *testing.B) { run(b, native(store)) })
	b.Run("native-cached", func(b *testing.B) { run(b, native(cached)) })
	b.Run("wasm", func(b *testing.B) { run(b, td.Handler()) })
}
