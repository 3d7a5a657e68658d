package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/meshd/meshd/plugins/internal/svcenv/svcenvtest"
)

const validOrder = `{"user_id":"user123","items":[{"name":"laptop","price":1500000},{"name":"mouse","price":50000}]}`

type storedOrder struct {
	ID     string `json:"id"`
	UserID string `json:"user_id"`
	Items  []struct {
		Name  string `json:"name"`
		Price int64  `json:"price"`
	} `json:"items"`
	Total     int64  `json:"total"`
	Status    string `json:"status"`
	CreatedAt string `json:"created_at"`
	PaymentID string `json:"payment_id"`
	PaidAt    string `json:"paid_at"`
}

func TestCreateOrder(t *testing.T) {
	e := svcenvtest.New("id-")
	var w svcenvtest.Recorder
	if err := createOrder(e, &w, []byte(validOrder)); err != nil {
		t.Fatal(err)
	}
	if w.Status != 201 || w.Headers["location"] != "/orders/id-1" {
		t.Fatalf("status %d headers %v problem %q %v", w.Status, w.Headers, w.Detail, w.Errs)
	}
	var o storedOrder
	if err := json.Unmarshal(w.Body, &o); err != nil {
		t.Fatalf("%v: %s", err, w.Body)
	}
	if o.ID != "id-1" || o.UserID != "user123" || len(o.Items) != 2 || o.Items[1].Name != "mouse" || o.Total != 1550000 ||
		o.Status != "CREATED" || o.CreatedAt != "2026-01-02T03:04:05.000000000Z" {
		t.Fatalf("order %+v", o)
	}
	if string(e.KV["order:id-1"]) != string(w.Body) {
		t.Fatalf("stored %s", e.KV["order:id-1"])
	}
	if len(e.Published) != 2 || e.Published[0] != "ORDER_CREATED "+string(w.Body) ||
		e.Published[1] != `ORDER_PAYMENT_TIMEOUT after 30s {"order_id":"id-1"}` {
		t.Fatalf("published %v", e.Published)
	}

	var g svcenvtest.Recorder
	if err := getOrder(e, &g, "id-1"); err != nil || g.Status != 200 || string(g.Body) != string(w.Body) {
		t.Fatalf("get: %v %d %s", err, g.Status, g.Body)
	}
	g = svcenvtest.Recorder{}
	if err := getOrder(e, &g, "nope"); err != nil || g.Status != 404 || g.Title != "order not found" || !strings.Contains(g.Detail, `"nope"`) {
		t.Fatalf("get unknown: %v %d %q", err, g.Status, g.Detail)
	}
}

func TestCreateOrderHostFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*svcenvtest.Fake)
	}{
		{"kv", func(e *svcenvtest.Fake) { e.FailSet = errors.New("kv down") }},
		{"publish", func(e *svcenvtest.Fake) { e.FailPub = errors.New("denied") }},
		{"publish delayed", func(e *svcenvtest.Fake) { e.FailDelay = errors.New("scheduler down") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := svcenvtest.New("id-")
			tc.set(e)
			var w svcenvtest.Recorder
			if err := createOrder(e, &w, []byte(validOrder)); err == nil || w.Status != 0 {
				t.Fatalf("err %v status %d", err, w.Status)
			}
		})
	}
}

func TestCreateOrderValidation(t *testing.T) {
	tests := []struct {
		name, body string
		errs       []string
	}{
		{"empty object", `{}`, []string{"user_id is required", "items: at least one item is required"}},
		{"no items", `{"user_id":"u","items":[]}`, []string{"items: at least one item is required"}},
		{"blank user", `{"user_id":"  ","items":[{"name":"a","price":1}]}`, []string{"user_id must not be blank"}},
		{"null user", `{"user_id":null,"items":[{"name":"a","price":1}]}`, []string{"user_id is required"}},
		{"user not string", `{"user_id":7,"items":[{"name":"a","price":1}]}`, []string{"user_id must be a string"}},
		{"items not array", `{"user_id":"u","items":{}}`, []string{"items must be an array"}},
		{"item not object", `{"user_id":"u","items":[3]}`, []string{"items[0] must be an object"}},
		{"bad items", `{"user_id":"u","items":[{"price":1},{"name":"b","price":1.5},{"name":"c","price":"3"},{"name":"d","price":-1},{"name":"e","price":0},{"name":"f"},{"name":2,"price":1},{"name":"g","price":1e3},{"name":"h","price":99999999999999999999}]}`,
			[]string{
				"items[0].name is required",
				"items[1].price must be a positive integer",
				"items[2].price must be a positive integer",
				"items[3].price must be a positive integer",
				"items[4].price must be a positive integer",
				"items[5].price is required",
				"items[6].name must be a string",
				"items[7].price must be a positive integer",
				"items[8].price must be a positive integer",
			}},
		{"unknown fields ignored", `{"user_id":"u","x":[1,{"y":null}],"items":[{"name":"a","price":1,"sku":"z"}]}`, nil},
		{"overflow", `{"user_id":"u","items":[{"name":"a","price":9223372036854775807},{"name":"b","price":1}]}`, []string{"items: the total price is too large"}},
		{"not an object", `[1]`, []string{"body must be a JSON object"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w svcenvtest.Recorder
			if err := createOrder(svcenvtest.New("id-"), &w, []byte(tt.body)); err != nil {
				t.Fatal(err)
			}
			if tt.errs == nil {
				if w.Status != 201 {
					t.Fatalf("status %d: %v", w.Status, w.Errs)
				}
				return
			}
			if w.Status != 400 || w.Title != "invalid order" || strings.Join(w.Errs, "|") != strings.Join(tt.errs, "|") {
				t.Fatalf("status %d title %q errs\n%q\nwant\n%q", w.Status, w.Title, w.Errs, tt.errs)
			}
			if w.Detail != strings.Join(tt.errs, "; ") {
				t.Fatalf("detail %q", w.Detail)
			}
		})
	}
}

func TestCreateOrderMalformed(t *testing.T) {
	for _, body := range []string{``, `{`, `{"user_id":"u",}`, `{"user_id":"u"} x`, `{"items":[{"price":01}]}`, `nul`} {
		var w svcenvtest.Recorder
		e := svcenvtest.New("id-")
		if err := createOrder(e, &w, []byte(body)); err != nil {
			t.Fatal(err)
		}
		if w.Status != 400 || !strings.Contains(w.Detail, "JSON") || len(e.KV) != 0 {
			t.Fatalf("%q: status %d detail %q", body, w.Status, w.Detail)
		}
	}
}

func TestPaymentCompleted(t *testing.T) {
	e := svcenvtest.New("id-")
	var w svcenvtest.Recorder
	if err := createOrder(e, &w, []byte(validOrder)); err != nil {
		t.Fatal(err)
	}
	ev := []byte(`{"order_id":"id-1","payment_id":"pay-1","amount":1550000}`)
	if err := paymentCompleted(e, ev); err != nil {
		t.Fatal(err)
	}
	var o storedOrder
	if err := json.Unmarshal(e.KV["order:id-1"], &o); err != nil {
		t.Fatal(err)
	}
	if o.Status != "PAID" || o.PaymentID != "pay-1" || o.PaidAt != "2026-01-02T03:04:05.000000000Z" || o.Total != 1550000 || len(o.Items) != 2 {
		t.Fatalf("order %+v", o)
	}
	before := string(e.KV["order:id-1"])
	// Redelivery changes nothing.
	if err := paymentCompleted(e, ev); err != nil || string(e.KV["order:id-1"]) != before {
		t.Fatalf("redelivery: %v", err)
	}
	// A second payment for a paid order is logged, not applied.
	if err := paymentCompleted(e, []byte(`{"order_id":"id-1","payment_id":"pay-2"}`)); err != nil || string(e.KV["order:id-1"]) != before {
		t.Fatalf("second payment: %v", err)
	}
	// An unknown order is logged and acknowledged.
	if err := paymentCompleted(e, []byte(`{"order_id":"nope","payment_id":"p"}`)); err != nil {
		t.Fatal(err)
	}
	if len(e.Logs) != 2 || !strings.Contains(e.Logs[1], "unknown order nope") {
		t.Fatalf("logs %v", e.Logs)
	}
	// Invalid data is an error (redelivered, then dead-lettered).
	for _, bad := range []string{`{`, `{"order_id":"x"}`, `[]`, `{"order_id":1,"payment_id":"p"}`} {
		if err := paymentCompleted(e, []byte(bad)); err == nil {
			t.Fatalf("%s accepted", bad)
		}
	}
	// A failing store is an error.
	e.KV["order:id-2"] = []byte(`{"id":"id-2","user_id":"u","items":[],"total":0,"status":"CREATED","created_at":"x"}`)
	e.FailSet = errors.New("kv down")
	if err := paymentCompleted(e, []byte(`{"order_id":"id-2","payment_id":"p"}`)); err == nil {
		t.Fatal("store failure ignored")
	}
}

func BenchmarkCreateOrder(b *testing.B) {
	e := svcenvtest.New("id-")
	body := []byte(validOrder)
	var w svcenvtest.Recorder
	b.ReportAllocs()
	for b.Loop() {
		e.ResetIDs()
		e.Published = e.Published[:0]
		if err := createOrder(e, &w, body); err != nil || w.Status != 201 {
			b.Fatal(err, w.Errs)
		}
	}
}
