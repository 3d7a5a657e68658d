//go:build !wasip1

// The shipping service is a Rust crate (src/lib.rs, tested with cargo
// test); these tests load the module `make plugins` builds into the real
// runtime with the host binding and its own grants file.
package shipping_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/config"
	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/runtime"
)

const module = "../../build/plugins/shipping.wasm"

// store stands in for the service's store; apply commits an invocation's
// writes as the daemon does when the call succeeds.
type store struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *store) Get(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.m[key]; ok {
		return v, nil
	}
	return nil, host.ErrNotFound
}

func (s *store) apply(inv *host.Invocation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range inv.Writes {
		if w.Delete {
			delete(s.m, w.Key)
		} else {
			s.m[w.Key] = w.Value
		}
	}
}

type service struct {
	m  *runtime.Module
	kv *store
}

func load(t *testing.T) *service {
	t.Helper()
	wasm, err := os.ReadFile(module)
	if err != nil {
		t.Fatalf("%s is missing: run `make plugins` (or `make test`) first", module)
	}
	file, err := config.LoadService("shipping.toml")
	if err != nil {
		t.Fatal(err)
	}
	e, err := runtime.NewEngine(runtime.EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	s := &service{kv: &store{m: map[string][]byte{}}}
	env := &host.Env{Service: "shipping", Grants: file.HostGrants(), KV: s.kv}
	s.m, err = e.Load(context.Background(), wasm, host.Module(env), file.ModuleConfig(runtime.ModuleConfig{Name: "shipping"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.m.Close(context.Background()) })
	var d abi.Declaration
	if err := json.Unmarshal(s.m.Declaration(), &d); err != nil {
		t.Fatalf("declaration %s: %v", s.m.Declaration(), err)
	}
	if err := env.Grants.CheckDeclaration(&d); err != nil {
		t.Fatalf("shipping.toml does not grant what the module declares: %v", err)
	}
	return s
}

// get serves GET /shipments/{order_id}.
func (s *service) get(t *testing.T, orderID string) abi.Response {
	t.Helper()
	path := "/shipments/" + orderID
	req := abi.Request{Method: []byte("GET"), Path: []byte(path), Route: []byte("GET /shipments/{order_id}"),
		Params: []abi.Pair{{Key: []byte("order_id"), Value: []byte(orderID)}}}
	inv := &host.Invocation{}
	c := &runtime.Call{Input: req.Append(nil), Data: inv}
	if err := s.m.Invoke(context.Background(), runtime.EntryHTTP, c); err != nil || c.Code != abi.CodeOK {
		t.Fatalf("GET %s: err=%v code=%v %s", path, err, c.Code, c.Output)
	}
	var resp abi.Response
	if err := resp.Decode(c.Output); err != nil {
		t.Fatal(err)
	}
	if len(inv.Writes)+len(inv.Events) > 0 {
		t.Fatalf("GET %s has effects: %+v", path, inv)
	}
	return resp
}

// paid delivers ORDER_PAID and applies its effects when it succeeds.
func (s *service) paid(id, data string, attempt uint32) (*host.Invocation, error) {
	ev := abi.Event{ID: []byte(id), Source: []byte("order"), Type: []byte("ORDER_PAID"), Time: []byte("2026-01-02T03:04:06.000000000Z"),
		DataContentType: []byte("application/json"), Attempt: attempt, Data: []byte(data)}
	inv := &host.Invocation{}
	c := &runtime.Call{Input: ev.Append(nil), Data: inv}
	if err := s.m.Invoke(context.Background(), runtime.EntryEvent, c); err != nil {
		return inv, err
	}
	if c.Code != abi.CodeOK {
		return inv, fmt.Errorf("code %v: %s", c.Code, c.Output)
	}
	s.kv.apply(inv)
	return inv, nil
}

const paidData = `{"order_id":"o-1","user_id":"u-1","payment_id":"p-1","paid_at":"2026-01-02T03:04:05.000000000Z"}`

func header(r abi.Response, name string) string {
	for _, p := range r.Headers {
		if strings.EqualFold(string(p.Key), name) {
			return string(p.Value)
		}
	}
	return ""
}

func TestShipmentOnOrderPaid(t *testing.T) {
	s := load(t)
	r := s.get(t, "o-1")
	if r.Status != 404 || header(r, "content-type") != "application/problem+json" ||
		string(r.Body) != `{"type":"about:blank","title":"Not Found","status":404,"detail":"no shipment for order \"o-1\""}` {
		t.Fatalf("before the payment: %d %q %s", r.Status, header(r, "content-type"), r.Body)
	}

	inv, err := s.paid("ev-1", paidData, 1)
	if err != nil {
		t.Fatal(err)
	}
	const shipment = `{"shipment_id":"shp:ev-1","order_id":"o-1","user_id":"u-1","status":"CREATED","created_at":"2026-01-02T03:04:06.000000000Z"}`
	if len(inv.Events) != 1 || inv.Events[0].Type != "SHIPMENT_CREATED" || string(inv.Events[0].Data) != shipment {
		t.Fatalf("events %+v, want one SHIPMENT_CREATED %s", inv.Events, shipment)
	}
	if len(inv.Writes) != 2 || inv.Writes[0].Key != "shipment:o-1" || inv.Writes[1].Key != "event:ev-1" {
		t.Fatalf("writes %+v, want the shipment and the event's mark", inv.Writes)
	}
	if r := s.get(t, "o-1"); r.Status != 200 || string(r.Body) != shipment || header(r, "content-type") != "application/json" {
		t.Fatalf("after the payment: %d %s", r.Status, r.Body)
	}
}

func TestRedeliveryAndSecondPaymentChangeNothing(t *testing.T) {
	s := load(t)
	if _, err := s.paid("ev-1", paidData, 1); err != nil {
		t.Fatal(err)
	}
	before := string(s.get(t, "o-1").Body)
	inv, err := s.paid("ev-1", paidData, 2)
	if err != nil || len(inv.Events)+len(inv.Writes) != 0 {
		t.Fatalf("redelivery: err=%v writes=%+v events=%+v, want no effects", err, inv.Writes, inv.Events)
	}
	// A second ORDER_PAID of the order (another event id): remembered,
	// nothing created or published.
	inv, err = s.paid("ev-2", paidData, 1)
	if err != nil || len(inv.Events) != 0 || len(inv.Writes) != 1 || inv.Writes[0].Key != "event:ev-2" {
		t.Fatalf("second payment: err=%v writes=%+v events=%+v", err, inv.Writes, inv.Events)
	}
	if after := string(s.get(t, "o-1").Body); after != before {
		t.Fatalf("the shipment changed: %s, was %s", after, before)
	}
}

func TestUserPartsOfKeysAreEscaped(t *testing.T) {
	s := load(t)
	inv, err := s.paid("ev:9", `{"order_id":"a:b","user_id":"u"}`, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Writes) != 2 || inv.Writes[0].Key != "shipment:a%3Ab" || inv.Writes[1].Key != "event:ev%3A9" {
		t.Fatalf("writes %+v, want keys escaped like guest.Key", inv.Writes)
	}
	if r := s.get(t, "a:b"); r.Status != 200 {
		t.Fatalf("GET a:b: %d %s", r.Status, r.Body)
	}
}

func TestInvalidOrderPaidIsRedelivered(t *testing.T) {
	s := load(t)
	for _, data := range []string{`{"user_id":"u"}`, `{"order_id":7}`, `[]`, `{"order_id":"` + strings.Repeat("x", 201) + `"}`} {
		inv, err := s.paid("ev-x", data, 1)
		if err == nil || !strings.Contains(err.Error(), "ORDER_PAID: invalid data") {
			t.Errorf("%s: err=%v, want the call to fail with a reason", data, err)
		}
		if len(inv.Writes)+len(inv.Events) != 0 {
			t.Errorf("%s: effects %+v", data, inv)
		}
	}
}

func TestGrantsFile(t *testing.T) {
	file, err := config.LoadService("shipping.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !file.Events.Serial || file.Events.SerialKeys["ORDER_PAID"] != "order_id" {
		t.Fatalf("events %+v: ORDER_PAID must run one at a time per order", file.Events)
	}
}
