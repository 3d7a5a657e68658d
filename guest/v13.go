package guest

import (
	"strings"
	_ "unsafe" // go:linkname runtime.nanotime
)

// hostV13 is the host function added in ABI v1.3: how long the breaker
// that refused the last call stays open. Imported only by guests that call
// Call or Get; a v1.2 host lacks it.
type hostV13 interface {
	callRetryAfter() int64
}

// A callee whose circuit breaker refused a call, with the time (the
// runtime's monotonic clock) until which Call refuses it itself, with the
// same error, without asking the host: the host would refuse it the same
// way until the breaker lets a probe through. At most maxLocalRefusal at a
// time, so that a breaker the host resets early (the callee reloaded, its
// settings changed) is seen within that; after it one call asks again.
type refusal struct {
	service string
	until   int64
	err     *Error
}

const (
	// maxLocalRefusal is the longest Call refuses a callee on its own
	// before asking the host again: one second.
	maxLocalRefusal = int64(1e9)
	// maxRefusals bounds how many callees are remembered (the soonest to
	// end is replaced).
	maxRefusals = 8
)

// refusals are the callees Call refuses on its own now; only the
// invocation's goroutine reads or writes them, as the rest of the SDK.
var refusals []refusal

//go:linkname nanotime runtime.nanotime
func nanotime() int64

// refusalOf is the index in refusals of service's entry, or -1.
func refusalOf(service string) int {
	for i := range refusals {
		if refusals[i].service == service {
			return i
		}
	}
	return -1
}

// refusedLocally returns the error a call to service gets without asking
// the host (its breaker is open), or nil.
func refusedLocally(service string) *Error {
	i := refusalOf(service)
	if i < 0 {
		return nil
	}
	if nanotime() < refusals[i].until {
		return refusals[i].err
	}
	forget(i)
	return nil
}

// noteRefusal asks the host, after a call to service failed with err
// (code unavailable), how long the breaker that refused it stays open, and
// refuses service itself for that long (at most maxLocalRefusal).
func noteRefusal(service string, err error) {
	h, ok := host.(hostV13)
	e, isErr := err.(*Error)
	if !ok || !isErr {
		return
	}
	d := h.callRetryAfter()
	at := refusalOf(service)
	if d <= 0 {
		if at >= 0 {
			forget(at)
		}
		return
	}
	r := refusal{until: nanotime() + min(d, maxLocalRefusal), err: e}
	switch {
	case at >= 0:
		r.service = refusals[at].service
		refusals[at] = r
	case len(refusals) < maxRefusals:
		r.service = strings.Clone(service)
		refusals = append(refusals, r)
	default:
		soonest := 0
		for i := range refusals {
			if refusals[i].until < refusals[soonest].until {
				soonest = i
			}
		}
		r.service = strings.Clone(service)
		refusals[soonest] = r
	}
}

// forgetRefusal drops service from refusals (a call to it was answered).
func forgetRefusal(service string) {
	if i := refusalOf(service); i >= 0 {
		forget(i)
	}
}

// forget drops refusals[i].
func forget(i int) {
	last := len(refusals) - 1
	refusals[i] = refusals[last]
	refusals[last] = refusal{}
	refusals = refusals[:last]
}
