package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/meshd/meshd/plugins/internal/svcenv/svcenvtest"
)

const orderCreatedData = `{"id":"ord-1","user_id":"user123","items":[{"name":"laptop","price":1500000}],"total":1500000,"status":"CREATED","created_at":"2026-01-01T00:00:00Z"}`

func TestOrderCreated(t *testing.T) {
	e := svcenvtest.New("random-")
	if err := orderCreated(e, []byte(orderCreatedData)); err != nil {
		t.Fatal(err)
	}
	want := `PAYMENT_COMPLETED {"order_id":"ord-1","payment_id":"pay-ord-1","amount":1500000}`
	if len(e.Published) != 1 || e.Published[0] != want {
		t.Fatalf("published %v", e.Published)
	}
	if len(e.KV) != 1 || e.IDsIssued() != 0 {
		t.Fatalf("kv %d keys, %d ids issued; want the payment alone, its id derived", len(e.KV), e.IDsIssued())
	}
	var p struct{ Amount int64 }
	stored := e.KV["payment:pay-ord-1"]
	if err := json.Unmarshal(stored, &p); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(stored), `"order_id":"ord-1"`) || !strings.Contains(string(stored), `"status":"COMPLETED"`) ||
		p.Amount != 1500000 || !strings.Contains(string(stored), `"created_at":"2026-01-02T03:04:05Z"`) {
		t.Fatalf("stored %s", stored)
	}

	// Redelivery publishes the same event again and stores nothing new.
	if err := orderCreated(e, []byte(orderCreatedData)); err != nil {
		t.Fatal(err)
	}
	if len(e.Published) != 2 || e.Published[1] != want || e.IDsIssued() != 0 || len(e.KV) != 1 {
		t.Fatalf("redelivery: published %v ids %d kv %d", e.Published, e.IDsIssued(), len(e.KV))
	}

	var w svcenvtest.Recorder
	if err := getPayment(e, &w, "pay-ord-1"); err != nil || w.Status != 200 || string(w.Body) != string(stored) {
		t.Fatalf("get: %v %d %s", err, w.Status, w.Body)
	}
	w = svcenvtest.Recorder{}
	if err := getPayment(e, &w, "nope"); err != nil || w.Status != 404 || w.Title != "payment not found" {
		t.Fatalf("get unknown: %v %d", err, w.Status)
	}
}

func TestOrderCreatedErrors(t *testing.T) {
	for _, bad := range []string{`{`, `{"total":5}`, `{"id":"o"}`, `{"id":"o","total":0}`, `{"id":"o","total":1.5}`, `{"id":"o","total":"5"}`} {
		if err := orderCreated(svcenvtest.New("pay-"), []byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	e := svcenvtest.New("pay-")
	e.FailSet = errors.New("kv down")
	if err := orderCreated(e, []byte(orderCreatedData)); err == nil {
		t.Fatal("store failure ignored")
	}
	e = svcenvtest.New("pay-")
	e.FailPub = errors.New("denied")
	if err := orderCreated(e, []byte(orderCreatedData)); err == nil || !strings.Contains(err.Error(), "denied") {
		t.Fatalf("publish failure: %v", err)
	}
}
