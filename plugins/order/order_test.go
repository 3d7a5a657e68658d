package main

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/guest"
)

// fakeEnv is an in-memory host.
type fakeEnv struct {
	config    map[string]string
	kv        map[string][]byte
	published []string
	logs      []string
	ids       int
	failSet   error
	failPub   error // Publish and PublishDelayed
	failDelay error // PublishDelayed only
}

func newFakeEnv() *fakeEnv { return &fakeEnv{kv: map[string][]byte{}} }

func (f *fakeEnv) KVGet(key string) ([]byte, error) {
	v, ok := f.kv[key]
	if !ok {
		return nil, guest.ErrNotFound
	}
	return append([]byte(nil), v...), nil
}
func (f *fakeEnv) KVSet(key string, value []byte) error {
	if f.failSet != nil {
		return f.failSet
	}
	f.kv[key] = append([]byte(nil), value...)
	return nil
}
func (f *fakeEnv) Publish(typ string, data []byte) error {
	if f.failPub != nil {
		return f.failPub
	}
	f.published = append(f.published, typ+" "+string(data))
	return nil
}
func (f *fakeEnv) Log(level guest.Level, msg string) { f.logs = append(f.logs, level.String()+" "+msg) }
func (f *fakeEnv) Now() time.Time                    { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
func (f *fakeEnv) NewID() string {
	f.ids++
	return "id-" + strconv.Itoa(f.ids)
}

// recorder is a responder that keeps what it was told.
type recorder struct {
	status  int
	headers map[string]string
	body    []byte
	title   string
	detail  string
	errs    []string
}

func (r *recorder) SetHeader(name, value string) {
	if r.headers == nil {
		r.headers = map[string]string{}
	}
	r.headers[name] = value
}
func (r *recorder) JSON(status int, body []byte) {
	r.status, r.body = status, append([]byte(nil), body...)
}
func (r *recorder) Problem(status int, title, detail string, errs ...string) {
	r.status, r.title, r.detail, r.errs = status, title, detail, errs
}

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
	e := newFakeEnv()
	var w recorder
	if err := createOrder(e, &w, []byte(validOrder)); err != nil {
		t.Fatal(err)
	}
	if w.status != 201 || w.headers["location"] != "/orders/id-1" {
		t.Fatalf("status %d headers %v problem %q %v", w.status, w.headers, w.detail, w.errs)
	}
	var o storedOrder
	if err := json.Unmarshal(w.body, &o); err != nil {
		t.Fatalf("%v: %s", err, w.body)
	}
	if o.ID != "id-1" || o.UserID != "user123" || len(o.Items) != 2 || o.Items[1].Name != "mouse" || o.Total != 1550000 ||
		o.Status != "CREATED" || o.CreatedAt != "2026-01-02T03:04:05.000000000Z" {
		t.Fatalf("order %+v", o)
	}
	if string(e.kv["order:id-1"]) != string(w.body) {
		t.Fatalf("stored %s", e.kv["order:id-1"])
	}
	if len(e.published) != 2 || e.published[0] != "ORDER_CREATED "+string(w.body) ||
		e.published[1] != `ORDER_PAYMENT_TIMEOUT after 30s {"order_id":"id-1"}` {
		t.Fatalf("published %v", e.published)
	}

	var g recorder
	if err := getOrder(e, &g, "id-1"); err != nil || g.status != 200 || string(g.body) != string(w.body) {
		t.Fatalf("get: %v %d %s", err, g.status, g.body)
	}
	g = recorder{}
	if err := getOrder(e, &g, "nope"); err != nil || g.status != 404 || g.title != "order not found" || !strings.Contains(g.detail, `"nope"`) {
		t.Fatalf("get unknown: %v %d %q", err, g.status, g.detail)
	}
}

func TestCreateOrderHostFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*fakeEnv)
	}{
		{"kv", func(e *fakeEnv) { e.failSet = errors.New("kv down") }},
		{"publish", func(e *fakeEnv) { e.failPub = errors.New("denied") }},
		{"publish delayed", func(e *fakeEnv) { e.failDelay = errors.New("scheduler down") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFakeEnv()
			tc.set(e)
			var w recorder
			if err := createOrder(e, &w, []byte(validOrder)); err == nil || w.status != 0 {
				t.Fatalf("err %v status %d", err, w.status)
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
			var w recorder
			if err := createOrder(newFakeEnv(), &w, []byte(tt.body)); err != nil {
				t.Fatal(err)
			}
			if tt.errs == nil {
				if w.status != 201 {
					t.Fatalf("status %d: %v", w.status, w.errs)
				}
				return
			}
			if w.status != 400 || w.title != "invalid order" || strings.Join(w.errs, "|") != strings.Join(tt.errs, "|") {
				t.Fatalf("status %d title %q errs\n%q\nwant\n%q", w.status, w.title, w.errs, tt.errs)
			}
			if w.detail != strings.Join(tt.errs, "; ") {
				t.Fatalf("detail %q", w.detail)
			}
		})
	}
}

func TestCreateOrderMalformed(t *testing.T) {
	for _, body := range []string{``, `{`, `{"user_id":"u",}`, `{"user_id":"u"} x`, `{"items":[{"price":01}]}`, `nul`} {
		var w recorder
		e := newFakeEnv()
		if err := createOrder(e, &w, []byte(body)); err != nil {
			t.Fatal(err)
		}
		if w.status != 400 || !strings.Contains(w.detail, "JSON") || len(e.kv) != 0 {
			t.Fatalf("%q: status %d detail %q", body, w.status, w.detail)
		}
	}
}

func TestPaymentCompleted(t *testing.T) {
	e := newFakeEnv()
	var w recorder
	if err := createOrder(e, &w, []byte(validOrder)); err != nil {
		t.Fatal(err)
	}
	ev := []byte(`{"order_id":"id-1","payment_id":"pay-1","amount":1550000}`)
	if err := paymentCompleted(e, ev); err != nil {
		t.Fatal(err)
	}
	var o storedOrder
	if err := json.Unmarshal(e.kv["order:id-1"], &o); err != nil {
		t.Fatal(err)
	}
	if o.Status != "PAID" || o.PaymentID != "pay-1" || o.PaidAt != "2026-01-02T03:04:05.000000000Z" || o.Total != 1550000 || len(o.Items) != 2 {
		t.Fatalf("order %+v", o)
	}
	before := string(e.kv["order:id-1"])
	// Redelivery changes nothing.
	if err := paymentCompleted(e, ev); err != nil || string(e.kv["order:id-1"]) != before {
		t.Fatalf("redelivery: %v", err)
	}
	// A second payment for a paid order is logged, not applied.
	if err := paymentCompleted(e, []byte(`{"order_id":"id-1","payment_id":"pay-2"}`)); err != nil || string(e.kv["order:id-1"]) != before {
		t.Fatalf("second payment: %v", err)
	}
	// An unknown order is logged and acknowledged.
	if err := paymentCompleted(e, []byte(`{"order_id":"nope","payment_id":"p"}`)); err != nil {
		t.Fatal(err)
	}
	if len(e.logs) != 2 || !strings.Contains(e.logs[1], "unknown order nope") {
		t.Fatalf("logs %v", e.logs)
	}
	// Invalid data is an error (redelivered, then dead-lettered).
	for _, bad := range []string{`{`, `{"order_id":"x"}`, `[]`, `{"order_id":1,"payment_id":"p"}`} {
		if err := paymentCompleted(e, []byte(bad)); err == nil {
			t.Fatalf("%s accepted", bad)
		}
	}
	// A failing store is an error.
	e.kv["order:id-2"] = []byte(`{"id":"id-2","user_id":"u","items":[],"total":0,"status":"CREATED","created_at":"x"}`)
	e.failSet = errors.New("kv down")
	if err := paymentCompleted(e, []byte(`{"order_id":"id-2","payment_id":"p"}`)); err == nil {
		t.Fatal("store failure ignored")
	}
}

func BenchmarkCreateOrder(b *testing.B) {
	e := newFakeEnv()
	body := []byte(validOrder)
	var w recorder
	b.ReportAllocs()
	for b.Loop() {
		e.ids = 0
		e.published = e.published[:0]
		if err := createOrder(e, &w, body); err != nil || w.status != 201 {
			b.Fatal(err, w.errs)
		}
	}
}

func (f *fakeEnv) Config(key string) (string, error) {
	if v, ok := f.config[key]; ok {
		return v, nil
	}
	return "", guest.ErrNotFound
}

func (f *fakeEnv) PublishDelayed(typ string, data []byte, d time.Duration) error {
	if f.failPub != nil {
		return f.failPub
	}
	if f.failDelay != nil {
		return f.failDelay
	}
	f.published = append(f.published, typ+" after "+d.String()+" "+string(data))
	return nil
}
