package nativeorder

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/kv"
	"github.com/meshd/meshd/host/natsd"
)

func TestCreateOrder(t *testing.T) {
	h := Handler(nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/orders", strings.NewReader(`{"user_id":"u1","items":[{"name":"a","price":2},{"name":"b","price":3}]}`)))
	var o order
	if w.Code != 201 || json.Unmarshal(w.Body.Bytes(), &o) != nil || o.Total != 5 || o.ID == "" || w.Header().Get("Location") != "/orders/"+o.ID {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/orders", strings.NewReader(`{"items":[{"name":"","price":0}]}`)))
	if w.Code != 400 || !strings.Contains(w.Body.String(), "user_id is required") || !strings.Contains(w.Body.String(), "items[0].price") {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}

func TestCreateOrderWithEffects(t *testing.T) {
	for _, pipeline := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipeline=%v", pipeline), func(t *testing.T) {
			ctx := context.Background()
			ns, store := startStore(t)
			b, err := bus.New(ctx, ns.JetStream(), bus.Config{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close(ctx)
			w := httptest.NewRecorder()
			Handler(&Effects{Store: store, Bus: b, Pipeline: pipeline}).ServeHTTP(w, httptest.NewRequest("POST", "/orders", strings.NewReader(`{"user_id":"u1","items":[{"name":"a","price":2}]}`)))
			var o order
			if w.Code != 201 || json.Unmarshal(w.Body.Bytes(), &o) != nil {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			got, err := store.Get(ctx, "order:"+o.ID)
			if err != nil || !strings.Contains(string(got), o.ID) {
				t.Fatalf("stored %q, %v", got, err)
			}
			// ORDER_CREATED on the event stream, the timeout on the schedule.
			for _, name := range []string{bus.DefaultStream, bus.DefaultScheduleStream} {
				st, err := ns.JetStream().Stream(ctx, name)
				if err != nil {
					t.Fatal(err)
				}
				if info, err := st.Info(ctx); err != nil || info.State.Msgs != 1 {
					t.Fatalf("stream %s: %v, %v; want 1 message", name, info, err)
				}
			}
		})
	}
}

// TestProjector projects ORDER_CREATED events (one twice, one late) and
// checks the view and the user's index page.
func TestProjector(t *testing.T) {
	ctx := context.Background()
	_, store := startStore(t)
	p := Projector{Store: store}
	for _, i := range []string{"2", "3", "1", "3"} {
		data := `{"id":"o` + i + `","user_id":"u","items":[],"total":1,"status":"CREATED","created_at":"2026-01-01T00:00:0` + i + `Z"}`
		if err := p.Handle(ctx, bus.Event{Type: "ORDER_CREATED", Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	head, _ := store.Get(ctx, "rm:user:u")
	page, _ := store.Get(ctx, "rm:user:u:0")
	want := "2026-01-01T00:00:01Z\to1\n2026-01-01T00:00:02Z\to2\n2026-01-01T00:00:03Z\to3"
	if string(head) != "1" || string(page) != want {
		t.Fatalf("head %q page %q", head, page)
	}
	if v, err := store.Get(ctx, "rm:order:o2"); err != nil || !strings.Contains(string(v), `"id":"o2"`) {
		t.Fatalf("view %q %v", v, err)
	}
	if err := p.Handle(ctx, bus.Event{Data: []byte(`{}`)}); err == nil {
		t.Fatal("invalid data projected")
	}
}

// startStore starts an embedded NATS server (stopped at the end of the
// test) and opens the native service's KV bucket on it.
func startStore(t *testing.T) (*natsd.Server, *kv.Store) {
	t.Helper()
	ns, err := natsd.Start(context.Background(), natsd.Config{DataDir: t.TempDir(), Name: "t"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	store, err := kv.Open(context.Background(), ns.JetStream(), "nativeorder", kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return ns, store
}

// TestSaga takes one order under the limit to PAID and one over it to
// CANCELLED through the native saga, and checks both views.
func TestSaga(t *testing.T) {
	ctx := context.Background()
	ns, _ := startStore(t)
	saga, err := OpenSaga(ctx, ns.JetStream(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer saga.Bus.Close(ctx)
	orders := saga.Orders
	stop, err := saga.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	h := Handler(&Effects{Store: orders, Bus: saga.Bus})
	want := map[string]string{}
	for _, price := range []int{999, 1001} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", "/orders", strings.NewReader(fmt.Sprintf(`{"user_id":"u1","items":[{"name":"a","price":%d}]}`, price))))
		var o order
		if w.Code != 201 || json.Unmarshal(w.Body.Bytes(), &o) != nil {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		want[o.ID] = map[int]string{999: "PAID", 1001: "CANCELLED"}[price]
	}
	deadline := time.Now().Add(10 * time.Second)
	for id, status := range want {
		for {
			var v order
			stored, err := saga.View(ctx, id)
			if err == nil && json.Unmarshal(stored, &v) == nil && v.Status == status && v.UserID == "u1" {
				if status == "PAID" && (v.PaymentID == "" || v.PaidAt == "") || status == "CANCELLED" && !strings.Contains(v.Reason, "over the limit") {
					t.Fatalf("view %s", stored)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("order %s: view %s (%v), want %s", id, stored, err, status)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	page, err := orders.Get(ctx, "rm:user:u1:0")
	if err != nil || strings.Count(string(page), "\n") != 1 {
		t.Fatalf("index page %q %v", page, err)
	}
}
