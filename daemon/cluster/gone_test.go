package cluster

import (
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/meshd/meshd/host/gateway"
	"github.com/meshd/meshd/host/remote"
)

// TestGoneRoutesKept: the routes of a service whose node went stay in the
// route set (forwarded, they answer 503) for goneKeep, or until a node
// announces the service again; those of a service a live node stops
// serving go at once.
func TestGoneRoutesKept(t *testing.T) {
	n := &Node{cfg: Config{Log: slog.New(slog.DiscardHandler)}, logged: map[string]bool{},
		gone: map[string]goneRoutes{}, goneKeep: time.Minute}
	inst := func(node, service, path string) remote.Instance {
		return remote.Instance{Node: node, Service: service, Version: "v1", Status: remote.StatusUp,
			Routes: []remote.Route{{Method: "POST", Path: path}}}
	}
	order := gateway.Route{Service: "order", Method: "POST", Path: "/orders"}
	pay := gateway.Route{Service: "payment", Method: "POST", Path: "/payments"}
	t0 := time.Now()
	steps := []struct {
		name string
		at   time.Duration
		ins  []remote.Instance
		want []gateway.Route
	}{
		{"a serves order and payment", 0, []remote.Instance{inst("a", "order", "/orders"), inst("a", "payment", "/payments")}, []gateway.Route{order, pay}},
		{"a stops serving order (alive)", time.Second, []remote.Instance{inst("a", "payment", "/payments")}, []gateway.Route{pay}},
		{"a went", 2 * time.Second, nil, []gateway.Route{pay}},
		{"still kept before goneKeep", 61 * time.Second, nil, []gateway.Route{pay}},
		{"dropped after goneKeep", 62 * time.Second, nil, nil},
		{"b serves order", 63 * time.Second, []remote.Instance{inst("b", "order", "/orders")}, []gateway.Route{order}},
		{"b went", 64 * time.Second, nil, []gateway.Route{order}},
		{"c serves order again: nothing kept", 65 * time.Second, []remote.Instance{inst("c", "order", "/orders")}, []gateway.Route{order}},
		{"c went, restarted before the next view", 66 * time.Second, []remote.Instance{inst("c", "order", "/orders")}, []gateway.Route{order}},
	}
	for _, s := range steps {
		got := n.routes(t0.Add(s.at), s.ins, nil, nil)
		key := func(r gateway.Route) string { return r.Service + " " + r.Pattern() }
		gk := make([]string, 0, len(got))
		for _, r := range got {
			gk = append(gk, key(r))
		}
		wk := make([]string, 0, len(s.want))
		for _, r := range s.want {
			wk = append(wk, key(r))
		}
		slices.Sort(gk)
		slices.Sort(wk)
		if !slices.Equal(gk, wk) {
			t.Fatalf("%s: routes %v, want %v", s.name, gk, wk)
		}
	}
	if n.goneExpired(t0.Add(70 * time.Second)) {
		t.Fatal("goneExpired with nothing kept")
	}
	n.routes(t0.Add(71*time.Second), nil, nil, nil) // c went
	if n.goneExpired(t0.Add(72*time.Second)) || !n.goneExpired(t0.Add(131*time.Second)) {
		t.Fatal("goneExpired: want false within goneKeep, true past it")
	}
	// A local service wins: a kept route of a service served here is not added twice.
	if got := n.routes(t0.Add(73*time.Second), nil, []gateway.Route{order}, map[string]bool{"order": true}); len(got) != 1 {
		t.Fatalf("with order local: %v, want the local route only", got)
	}
}
