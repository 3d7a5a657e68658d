package admission

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/config"
	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/registry"
	"github.com/meshd/meshd/runtime"
)

type fakeService struct {
	name string
	decl abi.Declaration
	ev   config.Events
}

func (s *fakeService) Name() string                  { return s.name }
func (s *fakeService) Declaration() *abi.Declaration { return &s.decl }
func (s *fakeService) Events() *config.Events        { return &s.ev }
func (s *fakeService) Invoke(context.Context, runtime.Entry, *runtime.Call) error {
	return nil
}

type fakeRegistry struct {
	gen atomic.Uint64
	ins []registry.Instance
}

func (r *fakeRegistry) Generation() uint64          { return r.gen.Load() }
func (r *fakeRegistry) Locals() []registry.Instance { return r.ins }

func (r *fakeRegistry) serve(svcs ...*fakeService) {
	r.ins = nil
	for _, s := range svcs {
		r.ins = append(r.ins, registry.Instance{Service: s.name, Local: s})
	}
	r.gen.Add(1)
}

// fakeLags is behind for the services in behind, and records what it was
// asked.
type fakeLags struct {
	behind []string
	asked  []string
	bounds map[string]bus.LagBound
}

func (l *fakeLags) Behind(services []string, bound func(string) bus.LagBound) (bool, time.Duration) {
	l.asked = append([]string(nil), services...)
	l.bounds = map[string]bus.LagBound{}
	for _, s := range services {
		l.bounds[s] = bound(s)
	}
	for _, s := range services {
		if slices.Contains(l.behind, s) {
			return true, 3 * time.Second
		}
	}
	return false, 0
}

func saga() (order, payment, shipping, user *fakeService) {
	off := false
	order = &fakeService{name: "order", decl: abi.Declaration{
		Routes:        []abi.Route{{Method: "POST", Path: "/orders"}},
		Publishes:     []string{"ORDER_CREATED", "ORDER_PAID"},
		Subscriptions: []abi.Subscription{{Type: "PAYMENT_COMPLETED"}, {Type: "ORDER_CREATED"}},
	}}
	payment = &fakeService{name: "payment", decl: abi.Declaration{
		Publishes:     []string{"PAYMENT_COMPLETED"},
		Subscriptions: []abi.Subscription{{Type: "ORDER_CREATED"}},
	}, ev: config.Events{AdmissionLag: config.Duration{Duration: 500 * time.Millisecond}, AdmissionEvents: 7}}
	shipping = &fakeService{name: "shipping", decl: abi.Declaration{
		Subscriptions: []abi.Subscription{{Type: "ORDER_PAID"}},
	}, ev: config.Events{Admission: &off}}
	user = &fakeService{name: "user", decl: abi.Declaration{
		Routes: []abi.Route{{Method: "POST", Path: "/users"}},
	}}
	return
}

func TestFeeds(t *testing.T) {
	reg := &fakeRegistry{}
	order, payment, shipping, user := saga()
	reg.serve(order, payment, shipping, user)
	a := New(reg, &fakeLags{})
	for svc, want := range map[string][]string{
		"order":    {"order", "payment"}, // shipping opted out
		"payment":  {"payment", "order"},
		"shipping": nil, // opted out, publishes nothing
		"user":     {"user"},
		"absent":   nil,
	} {
		if got := a.Feeds(svc); !slices.Equal(got, want) {
			t.Errorf("feeds of %s: %v, want %v", svc, got, want)
		}
	}
	if b := a.Bound("payment"); b.MaxAge != 500*time.Millisecond || b.MaxEvents != 7 {
		t.Errorf("payment's bound %+v, want 500ms and 7 events", b)
	}
	if b := a.Bound("order"); b != bus.DefaultLagBound {
		t.Errorf("order's bound %+v, want the default %+v", b, bus.DefaultLagBound)
	}

	// A change of the registry is seen at the next request.
	reg.serve(order, user)
	if got := a.Feeds("order"); !slices.Equal(got, []string{"order"}) {
		t.Errorf("feeds of order without payment: %v, want [order]", got)
	}
}

func TestAdmit(t *testing.T) {
	reg := &fakeRegistry{}
	order, payment, shipping, user := saga()
	reg.serve(order, payment, shipping, user)
	lags := &fakeLags{behind: []string{"payment"}}
	a := New(reg, lags)

	shed, retry := a.Admit("order", "POST /orders")
	if !shed || retry != 3*time.Second {
		t.Fatalf("POST /orders with payment behind: shed %v retry %v, want shed, 3s", shed, retry)
	}
	if !slices.Equal(lags.asked, []string{"order", "payment"}) {
		t.Errorf("asked about %v, want [order payment]", lags.asked)
	}
	if b := lags.bounds["payment"]; b.MaxAge != 500*time.Millisecond {
		t.Errorf("payment's bound as Behind read it: %+v", b)
	}
	for _, route := range []string{"GET /orders/{id}", "HEAD /orders/{id}", "OPTIONS /orders"} {
		if shed, _ := a.Admit("order", route); shed {
			t.Errorf("%s shed: a safe method must not be", route)
		}
	}
	if shed, _ := a.Admit("user", "POST /users"); shed {
		t.Error("POST /users shed: user does not feed payment")
	}

	// Payment opts out: its lag sheds nothing.
	off := false
	payment.ev = config.Events{Admission: &off}
	reg.serve(order, payment, shipping, user)
	if shed, _ := a.Admit("order", "POST /orders"); shed {
		t.Error("POST /orders shed after payment set admission = false")
	}
}
