// Package admission decides which gateway requests the daemon sheds
// because the event pipeline behind their route falls behind (DESIGN.md:
// admit only what can be settled).
//
// A route feeds its own service and every service subscribed to an event
// type its service declares it publishes. A request to it is shed (503 with
// Retry-After) when any service it feeds is past its lag bound: the age of
// its oldest unhandled event, or the count of its unhandled events
// (bus.Bus.Behind, from the bus's cached lag reads, no I/O). The bounds come
// from the [events] table of each service's file (admission_lag,
// admission_events; bus.DefaultLagBound for what is left out), and a
// service with admission = false is never counted as behind.
//
// Requests of safe methods (GET, HEAD, OPTIONS) are never shed: they add no
// work to the pipeline, and they are how clients follow the work they
// already handed in (an order's status) while it catches up.
//
// The feeds of every service are computed from the services this node
// serves whenever the registry changes (a load, a swap, a removal: its
// generation), and swapped in atomically; a request reads them with one
// atomic load.
package admission

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/config"
	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/gateway"
	"github.com/meshd/meshd/host/registry"
)

// Service is a served version as admission reads it (*service.Service).
type Service interface {
	Name() string
	Declaration() *abi.Declaration
	Events() *config.Events
}

// Lags reports whether services are behind their bounds (*bus.Bus).
type Lags interface {
	Behind(services []string, bound func(service string) bus.LagBound) (behind bool, retryAfter time.Duration)
}

// Registry is where the served services are found (*registry.Registry).
type Registry interface {
	Generation() uint64
	Locals() []registry.Instance
}

// Admission is the daemon's gateway admission.
type Admission struct {
	reg  Registry
	lags Lags

	plan atomic.Pointer[plan]
	mu   sync.Mutex // one rebuild at a time
}

// plan is what Admit reads, built at one registry generation.
type plan struct {
	gen    uint64
	feeds  map[string][]string       // service → the services its routes feed, those taking part in admission
	bounds map[string]bus.LagBound   // service → its bound
	bound  func(string) bus.LagBound // reads bounds
}

// New returns the admission of the services reg serves, whose lags lags
// reports.
func New(reg Registry, lags Lags) *Admission {
	return &Admission{reg: reg, lags: lags}
}

// Admit implements gateway.Admission.
func (a *Admission) Admit(service, route string) (shed bool, retryAfter time.Duration) {
	if safe(route) {
		return false, 0
	}
	p := a.current()
	feeds := p.feeds[service]
	if len(feeds) == 0 {
		return false, 0
	}
	return a.lags.Behind(feeds, p.bound)
}

// Feeds returns the services the routes of service feed that take part in
// admission, as the requests read them now.
func (a *Admission) Feeds(service string) []string {
	return append([]string(nil), a.current().feeds[service]...)
}

// Bound returns the lag bound of service as the requests read it now.
func (a *Admission) Bound(service string) bus.LagBound { return a.current().bound(service) }

// safe reports whether route (as declared, "GET /orders/{id}") is of a
// safe method, never shed.
func safe(route string) bool {
	method, _, _ := strings.Cut(route, " ")
	switch method {
	case "GET", "HEAD", "OPTIONS":
		return true
	}
	return false
}

// current returns the plan of the registry's generation, rebuilding it
// when the registry changed since the last.
func (a *Admission) current() *plan {
	gen := a.reg.Generation()
	if p := a.plan.Load(); p != nil && p.gen == gen {
		return p
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	gen = a.reg.Generation()
	if p := a.plan.Load(); p != nil && p.gen == gen {
		return p
	}
	p := build(gen, a.reg.Locals())
	a.plan.Store(p)
	return p
}

// build computes the plan of the services ins serve.
func build(gen uint64, ins []registry.Instance) *plan {
	var svcs []Service
	for _, in := range ins {
		if s, ok := in.Local.(Service); ok {
			svcs = append(svcs, s)
		}
	}
	subscribers := make(map[string][]string) // event type → services subscribed
	p := &plan{gen: gen, feeds: make(map[string][]string, len(svcs)), bounds: make(map[string]bus.LagBound, len(svcs))}
	for _, s := range svcs {
		for _, sub := range s.Declaration().Subscriptions {
			subscribers[sub.Type] = append(subscribers[sub.Type], s.Name())
		}
		if ev := s.Events(); ev.AdmissionOn() {
			p.bounds[s.Name()] = Bound(ev)
		}
	}
	for _, s := range svcs {
		var feeds []string
		add := func(name string) {
			if _, on := p.bounds[name]; on && !slices.Contains(feeds, name) {
				feeds = append(feeds, name)
			}
		}
		add(s.Name())
		for _, typ := range s.Declaration().Publishes {
			for _, sub := range subscribers[typ] {
				add(sub)
			}
		}
		if len(feeds) > 0 {
			p.feeds[s.Name()] = feeds
		}
	}
	bounds := p.bounds
	p.bound = func(service string) bus.LagBound {
		if b, ok := bounds[service]; ok {
			return b
		}
		return bus.DefaultLagBound
	}
	return p
}

// Bound is the lag bound of a service file's [events] table: its
// admission_lag and admission_events, bus.DefaultLagBound's for those left
// out.
func Bound(ev *config.Events) bus.LagBound {
	b := bus.DefaultLagBound
	if ev.AdmissionLag.Duration > 0 {
		b.MaxAge = ev.AdmissionLag.Duration
	}
	if ev.AdmissionEvents > 0 {
		b.MaxEvents = uint64(ev.AdmissionEvents)
	}
	return b
}

// Interface guards.
var (
	_ gateway.Admission = (*Admission)(nil).Admit
	_ Lags              = (*bus.Bus)(nil)
	_ Registry          = (*registry.Registry)(nil)
)
