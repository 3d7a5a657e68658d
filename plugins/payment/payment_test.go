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

type fakeEnv struct {
	config    map[string]string
	kv        map[string][]byte
	published []string
	logs      []string
	ids       int
	failSet   error
	failPub   error
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
	return "pay-" + strconv.Itoa(f.ids)
}

type recorder struct {
	status int
	body   []byte
	title  string
	detail string
}

func (r *recorder) JSON(status int, body []byte) {
	r.status, r.body = status, append([]byte(nil), body...)
}
func (r *recorder) Problem(status int, title, detail string, errs ...string) {
	r.status, r.title, r.detail = status, title, detail
}

const orderCreatedData = `{"id":"ord-1","user_id":"user123","items":[{"name":"laptop","price":1500000}],"total":1500000,"status":"CREATED","created_at":"2026-01-01T00:00:00Z"}`

func TestOrderCreated(t *testing.T) {
	e := newFakeEnv()
	if err := orderCreated(e, []byte(orderCreatedData)); err != nil {
		t.Fatal(err)
	}
	want := `PAYMENT_COMPLETED {"order_id":"ord-1","payment_id":"pay-1","amount":1500000}`
	if len(e.published) != 1 || e.published[0] != want {
		t.Fatalf("published %v", e.published)
	}
	if string(e.kv["payment-by-order:ord-1"]) != "pay-1" {
		t.Fatalf("index %q", e.kv["payment-by-order:ord-1"])
	}
	var p struct{ Amount int64 }
	stored := e.kv["payment:pay-1"]
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
	if len(e.published) != 2 || e.published[1] != want || e.ids != 1 || len(e.kv) != 2 {
		t.Fatalf("redelivery: published %v ids %d kv %d", e.published, e.ids, len(e.kv))
	}

	var w recorder
	if err := getPayment(e, &w, "pay-1"); err != nil || w.status != 200 || string(w.body) != string(stored) {
		t.Fatalf("get: %v %d %s", err, w.status, w.body)
	}
	w = recorder{}
	if err := getPayment(e, &w, "nope"); err != nil || w.status != 404 || w.title != "payment not found" {
		t.Fatalf("get unknown: %v %d", err, w.status)
	}
}

func TestOrderCreatedErrors(t *testing.T) {
	for _, bad := range []string{`{`, `{"total":5}`, `{"id":"o"}`, `{"id":"o","total":0}`, `{"id":"o","total":1.5}`, `{"id":"o","total":"5"}`} {
		if err := orderCreated(newFakeEnv(), []byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	e := newFakeEnv()
	e.failSet = errors.New("kv down")
	if err := orderCreated(e, []byte(orderCreatedData)); err == nil {
		t.Fatal("store failure ignored")
	}
	e = newFakeEnv()
	e.failPub = errors.New("denied")
	if err := orderCreated(e, []byte(orderCreatedData)); err == nil || !strings.Contains(err.Error(), "denied") {
		t.Fatalf("publish failure: %v", err)
	}
}

func (f *fakeEnv) Config(key string) (string, error) {
	if v, ok := f.config[key]; ok {
		return v, nil
	}
	return "", guest.ErrNotFound
}
