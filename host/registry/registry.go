package registry

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshd/meshd/runtime"
)

// Status is an instance's state.
type Status string

// Statuses of an instance.
const (
	Starting     Status = "STARTING"
	Up           Status = "UP"
	OutOfService Status = "OUT_OF_SERVICE"
	Down         Status = "DOWN"
)

// ErrNotFound is returned for an unknown service or instance.
var ErrNotFound = errors.New("registry: not found")

// Instance is one version of a service on one node.
type Instance struct {
	Service string    `json:"service"`
	Version string    `json:"version"` // module hash, plus the declared version if any
	Node    string    `json:"node"`
	Status  Status    `json:"status"`
	Since   time.Time `json:"since"` // when Status last changed
	// Local is the handle of the version this node serves (Serve), nil
	// for any other instance: one that is starting, draining, refused, or
	// served by another node.
	Local Local `json:"-"`
}

// Local is the handle of a service version served on this node: what a
// request, an event or a call to the service invokes.
type Local interface {
	// Invoke runs entry with call on one of the version's instances.
	Invoke(ctx context.Context, entry runtime.Entry, call *runtime.Call) error
}

// Registry is a set of instances keyed by service, version and node.
type Registry struct {
	mu        sync.RWMutex
	instances map[string][]Instance // by service
	holds     map[string]hold       // by service; only services with a hold
	next      atomic.Uint64         // round-robin cursor for Pick
	gen       atomic.Uint64         // Generation
	now       func() time.Time
	observe   func(Transition)
	obsMu     sync.Mutex // held while the observer runs; taken under mu
}

// Option configures a Registry.
type Option func(*Registry)

// WithObserver calls fn after every change of an instance's status (as
// lookups report it, holds included), outside the registry's lock, in the
// order of the changes. fn may read the registry but must not change it,
// and must not block for long.
func WithObserver(fn func(Transition)) Option { return func(r *Registry) { r.observe = fn } }

// New returns an empty registry.
func New(opts ...Option) *Registry {
	r := &Registry{instances: make(map[string][]Instance), holds: make(map[string]hold), now: time.Now}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Register adds inst, or replaces the instance with the same service,
// version and node; a replacement keeps the Local it had unless inst
// carries one (Serve hands a service over).
func (r *Registry) Register(inst Instance) {
	inst.Since = r.now()
	r.change(inst.Service, func() { r.registerLocked(inst) })
}

func (r *Registry) registerLocked(inst Instance) {
	list := r.instances[inst.Service]
	if i := index(list, inst.Version, inst.Node); i >= 0 {
		if inst.Local == nil {
			inst.Local = list[i].Local
		}
		list[i] = inst
		return
	}
	r.instances[inst.Service] = append(list, inst)
}

// Serve registers inst, whose Local is set, as the version of its service
// that its node serves, and in the same step takes the Local off every
// other instance of the service on that node: from then on Local returns
// inst, never the version it replaces, so a swap drops no request (a call
// that picked the old version just before finishes on it while it drains).
//
// A load starts afresh: the failing hold of the service (SetFailing) is
// cleared; a drain (SetDrained) stays.
func (r *Registry) Serve(inst Instance) {
	inst.Since = r.now()
	r.change(inst.Service, func() {
		for i, in := range r.instances[inst.Service] {
			if in.Node == inst.Node && in.Version != inst.Version {
				r.instances[inst.Service][i].Local = nil
			}
		}
		if h, ok := r.holds[inst.Service]; ok && h.failing {
			h.failing = false
			r.setHold(inst.Service, h)
		}
		r.registerLocked(inst)
	})
}

// Withdraw takes the Local off one instance: its node serves it no more
// (it stays registered, with its status, until Deregister).
func (r *Registry) Withdraw(service, version, node string) {
	r.change(service, func() {
		list := r.instances[service]
		if i := index(list, version, node); i >= 0 {
			list[i].Local = nil
		}
	})
}

// Local returns the instance of service that this node serves (the one
// with a Local), whatever its status: a version whose subscriptions failed
// (DOWN) still serves its routes.
func (r *Registry) Local(service string) (Instance, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, in := range r.instances[service] {
		if in.Local != nil {
			in.Status = r.effective(in)
			return in, true
		}
	}
	return Instance{}, false
}

// Locals returns every instance this node serves (those with a Local),
// by service name.
func (r *Registry) Locals() []Instance {
	r.mu.RLock()
	var out []Instance
	for _, list := range r.instances {
		for _, in := range list {
			if in.Local != nil {
				in.Status = r.effective(in)
				out = append(out, in)
			}
		}
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b Instance) int { return cmp.Compare(a.Service, b.Service) })
	return out
}

// SetStatus changes the status of one instance.
//
// It sets the status the daemon's lifecycle gives the instance; a hold on
// its service (SetDrained, SetFailing) still shows over it.
func (r *Registry) SetStatus(service, version, node string, s Status) error {
	err := ErrNotFound
	r.change(service, func() {
		list := r.instances[service]
		i := index(list, version, node)
		if i < 0 {
			return
		}
		err = nil
		if list[i].Status != s {
			list[i].Status = s
			list[i].Since = r.now()
		}
	})
	return err
}

// Deregister removes one instance.
//
// When the service has no instance left, its holds are dropped too.
func (r *Registry) Deregister(service, version, node string) {
	r.change(service, func() {
		list := r.instances[service]
		if i := index(list, version, node); i >= 0 {
			list = slices.Delete(list, i, i+1)
		}
		if len(list) == 0 {
			delete(r.instances, service)
			delete(r.holds, service)
		} else {
			r.instances[service] = list
		}
	})
}

// Lookup returns a copy of the service's instances.
func (r *Registry) Lookup(service string) []Instance {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := slices.Clone(r.instances[service])
	for i := range out {
		out[i].Status = r.effective(out[i])
	}
	return out
}

// Status returns the best status of the service: UP if any instance is UP,
// else the status of its newest instance. ok is false for an unknown service.
func (r *Registry) Status(service string) (s Status, ok bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	list := r.instances[service]
	if len(list) == 0 {
		return "", false
	}
	for _, in := range list {
		if r.effective(in) == Up {
			return Up, true
		}
	}
	return r.effective(list[len(list)-1]), true
}

// Pick returns one UP instance of the service, spreading picks round-robin
// over the UP instances.
func (r *Registry) Pick(service string) (Instance, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	list := r.instances[service]
	n := 0
	for _, in := range list {
		if r.effective(in) == Up {
			n++
		}
	}
	if n == 0 {
		return Instance{}, ErrNotFound
	}
	k := int(r.next.Add(1) % uint64(n))
	for _, in := range list {
		if r.effective(in) == Up {
			if k == 0 {
				in.Status = Up
				return in, nil
			}
			k--
		}
	}
	panic("unreachable")
}

// Services returns the names of all registered services, sorted.
func (r *Registry) Services() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := slices.Sorted(maps.Keys(r.instances))
	return names
}

func index(list []Instance, version, node string) int {
	for i, in := range list {
		if in.Version == version && in.Node == node {
			return i
		}
	}
	return -1
}
