package registry

import "slices"

// hold is what overrides the status of the instances a node serves of one
// service: an operator's drain, or the daemon's judgement that the
// service keeps failing.
type hold struct {
	drained bool // OUT_OF_SERVICE until undrained
	failing bool // DOWN until cleared (or a load)
}

// Transition is a change of an instance's status as lookups report it.
// From is "" for an instance just registered, To "" for one removed.
type Transition struct {
	Service, Version, Node string
	From, To               Status
}

// effective is in's status as lookups report it: a served instance (with
// a Local) of a drained service is OUT_OF_SERVICE, of a failing one DOWN
// (when it would be UP); anything else is its own.
func (r *Registry) effective(in Instance) Status {
	if in.Local == nil {
		return in.Status
	}
	h := r.holds[in.Service]
	switch {
	case h.drained:
		return OutOfService
	case h.failing && in.Status == Up:
		return Down
	}
	return in.Status
}

func (r *Registry) setHold(service string, h hold) {
	if h == (hold{}) {
		delete(r.holds, service)
		return
	}
	r.holds[service] = h
}

// SetDrained takes service's served instances out of service (drained
// true: their status reads OUT_OF_SERVICE, so requests and calls are not
// sent to them) or puts them back (false: their own status shows again).
// A drain outlives loads of new versions of the service, not its removal.
// It returns ErrNotFound when the registry holds no instance of service.
func (r *Registry) SetDrained(service string, drained bool) error {
	err := ErrNotFound
	r.change(service, func() {
		if len(r.instances[service]) == 0 {
			return
		}
		err = nil
		h := r.holds[service]
		h.drained = drained
		r.setHold(service, h)
	})
	return err
}

// SetFailing marks service's served instances DOWN while they would be UP
// (failing true), or clears the mark. Serve clears it too. It does
// nothing for a service the registry does not hold.
func (r *Registry) SetFailing(service string, failing bool) {
	r.change(service, func() {
		if len(r.instances[service]) == 0 {
			return
		}
		h := r.holds[service]
		h.failing = failing
		r.setHold(service, h)
	})
}

// Drained reports whether service is drained (SetDrained).
func (r *Registry) Drained(service string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.holds[service].drained
}

// Generation changes whenever the registry does: a reader caching what
// it derived from the registry (the targets of calls) rebuilds it when
// the generation it was built at is no longer current.
func (r *Registry) Generation() uint64 { return r.gen.Load() }

// status is one instance's identity and status, for change.
type status struct {
	version, node string
	st            Status
}

// statusesLocked lists the effective statuses of service's instances.
func (r *Registry) statusesLocked(service string) []status {
	list := r.instances[service]
	out := make([]status, len(list))
	for i, in := range list {
		out[i] = status{in.Version, in.Node, r.effective(in)}
	}
	return out
}

// change runs f, which changes service's instances or holds, under the
// registry's lock, moves the generation on and reports every status it
// changed to the observer. The observer runs after the lock is released,
// under obsMu, so transitions are reported in the order they happened.
func (r *Registry) change(service string, f func()) {
	r.mu.Lock()
	if r.observe == nil {
		f()
		r.gen.Add(1)
		r.mu.Unlock()
		return
	}
	before := r.statusesLocked(service)
	f()
	after := r.statusesLocked(service)
	r.gen.Add(1)
	r.obsMu.Lock()
	defer r.obsMu.Unlock()
	r.mu.Unlock()
	for _, b := range before {
		to := Status("")
		if i := slices.IndexFunc(after, func(a status) bool { return a.version == b.version && a.node == b.node }); i >= 0 {
			to = after[i].st
		}
		if to != b.st {
			r.observe(Transition{Service: service, Version: b.version, Node: b.node, From: b.st, To: to})
		}
	}
	for _, a := range after {
		if !slices.ContainsFunc(before, func(b status) bool { return a.version == b.version && a.node == b.node }) {
			r.observe(Transition{Service: service, Version: a.version, Node: a.node, To: a.st})
		}
	}
}
