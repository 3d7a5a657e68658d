package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

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
	ctx := context.Background()
	ns, err := natsd.Start(ctx, natsd.Config{DataDir: t.TempDir(), Name: "t"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	store, err := kv.Open(ctx, ns.JetStream(), "nativeorder")
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.New(ctx, ns.JetStream(), bus.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	w := httptest.NewRecorder()
	Handler(&effects{store: store, bus: b}).ServeHTTP(w, httptest.NewRequest("POST", "/orders", strings.NewReader(`{"user_id":"u1","items":[{"name":"a","price":2}]}`)))
	var o order
	if w.Code != 201 || json.Unmarshal(w.Body.Bytes(), &o) != nil {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	got, err := store.Get(ctx, "order:"+o.ID)
	if err != nil || !strings.Contains(string(got), o.ID) {
		t.Fatalf("stored %q, %v", got, err)
	}
}
