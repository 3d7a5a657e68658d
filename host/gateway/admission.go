package gateway

import (
	"net/http"
	"time"
)

// Admission decides whether the gateway admits a request to a route of
// service (route as declared, "POST /orders"): shed true refuses it with
// 503, a problem+json and Retry-After retryAfter (rounded up to whole
// seconds, at least 1). It runs before the request's body is read, on every
// request of a public route, so it must be cheap (no I/O: read a cache) and
// safe for concurrent use.
//
// The daemon's admission sheds a route when the event pipeline behind it
// falls behind: the lag of the services the route feeds (its own service
// and the subscribers of the events it publishes), read from the bus's
// cache (bus.Bus.Behind). Accepting work that the pipeline settles only
// after the business timeouts built on it is worse than refusing it.
type Admission func(service, route string) (shed bool, retryAfter time.Duration)

// SetAdmission installs a; nil admits every request. It may be called while
// requests are served.
func (g *Gateway) SetAdmission(a Admission) {
	if a == nil {
		g.admission.Store(nil)
		return
	}
	g.admission.Store(&a)
}

// shed answers the request 503 and returns true when the admission sheds it.
func (h *routeHandler) shed(w http.ResponseWriter, r *http.Request) bool {
	a := h.g.admission.Load()
	if a == nil {
		return false
	}
	shed, after := (*a)(h.service, h.pattern)
	if !shed {
		return false
	}
	retryAfter(w, max(after, time.Second))
	h.refuse(w, r, http.StatusServiceUnavailable, "overloaded", ShedDetail, nil)
	return true
}

// ShedDetail is the detail of the problem answering a request admission
// shed, here or on the node that serves the route.
const ShedDetail = "the events behind this route are not handled fast enough; retry later"
