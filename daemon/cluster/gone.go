package cluster

import (
	"slices"
	"time"

	"github.com/meshd/meshd/host/gateway"
	"github.com/meshd/meshd/host/remote"
)

// GoneKeep is how long a gateway keeps the routes of a service whose
// every serving node went (its announcement lapsed, or it withdrew it at
// shutdown) while no other node serves it: they answer 503 (forwarding
// finds no node) rather than 404, so that clients retry through a node's
// crash or restart instead of taking the route for unknown. A service a
// live node stops serving (its module removed) loses its routes at once.
// Past GoneKeep the node is taken for gone for good.
const GoneKeep = 5 * time.Minute

// maxGone bounds the services whose routes a Node keeps for GoneKeep;
// past it the oldest are dropped.
const maxGone = 1024

// goneRoutes are the routes of a service whose nodes went, kept since.
type goneRoutes struct {
	routes []gateway.Route
	since  time.Time
}

// announcedRoutes is, by node then service, the public routes of the
// other nodes' instances.
func announcedRoutes(ins []remote.Instance) map[string]map[string][]gateway.Route {
	out := make(map[string]map[string][]gateway.Route)
	for _, in := range ins {
		svcs := out[in.Node]
		if svcs == nil {
			svcs = make(map[string][]gateway.Route)
			out[in.Node] = svcs
		}
		rs := svcs[in.Service]
		for _, r := range in.Routes {
			gr := gateway.Route{Service: in.Service, Method: r.Method, Path: r.Path}
			if !slices.Contains(rs, gr) { // versions in a rollout share most
				rs = append(rs, gr)
			}
		}
		svcs[in.Service] = rs
	}
	return out
}

// rememberLocked brings the kept routes in step with the other nodes'
// routes announced now (by node, then service), and returns those kept,
// by service, for the services no node announces now. The caller holds
// n.mu.
func (n *Node) rememberLocked(now time.Time, cur map[string]map[string][]gateway.Route) map[string][]gateway.Route {
	served := make(map[string]bool)
	for _, svcs := range cur {
		for s := range svcs {
			served[s] = true
		}
	}
	for node, svcs := range n.known {
		if _, ok := cur[node]; ok {
			continue
		}
		for s, rs := range svcs { // the node went: keep its routes
			if !served[s] && len(rs) > 0 {
				n.gone[s] = goneRoutes{routes: rs, since: now}
			}
		}
	}
	n.known = cur
	for s, g := range n.gone {
		if served[s] || now.Sub(g.since) >= n.goneKeep {
			delete(n.gone, s)
		}
	}
	for len(n.gone) > maxGone {
		oldest := ""
		for s, g := range n.gone {
			if oldest == "" || g.since.Before(n.gone[oldest].since) {
				oldest = s
			}
		}
		delete(n.gone, oldest)
	}
	out := make(map[string][]gateway.Route, len(n.gone))
	for s, g := range n.gone {
		out[s] = g.routes
	}
	return out
}

// goneExpired reports whether routes kept for a gone node are past
// GoneKeep (the route set is then rebuilt without them).
func (n *Node) goneExpired(now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, g := range n.gone {
		if now.Sub(g.since) >= n.goneKeep {
			return true
		}
	}
	return false
}
