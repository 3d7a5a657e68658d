package remote

import (
	"sync"

	"github.com/meshd/meshd/host/mesh"
	"github.com/nats-io/nats.go"
)

// Remotes hands out the Target of a service when the Directory says
// another node serves it UP: the remote half of a mesh.Resolver. It is
// safe for concurrent use and holds nothing but memory.
type Remotes struct {
	nc  *nats.Conn
	dir *Directory

	mu      sync.RWMutex
	targets map[string][]mesh.Target // one Target each, by service
}

// NewRemotes returns the Remotes of dir's view, calling over nc.
func NewRemotes(nc *nats.Conn, dir *Directory) *Remotes {
	return &Remotes{nc: nc, dir: dir, targets: make(map[string][]mesh.Target)}
}

// Targets returns the service's Target when another node serves it UP,
// nil when none does. The slice is shared: read it, never change it.
// Targets are kept per service name the Directory has seen served, so
// their number is bounded by the view's (MaxNodes × MaxServices).
func (r *Remotes) Targets(service string) []mesh.Target {
	if !r.dir.Serving(service) {
		return nil
	}
	r.mu.RLock()
	ts, ok := r.targets[service]
	r.mu.RUnlock()
	if ok {
		return ts
	}
	t, err := NewTarget(r.nc, service)
	if err != nil {
		return nil // a name the Directory would not have kept
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if ts, ok := r.targets[service]; ok {
		return ts
	}
	ts = []mesh.Target{t}
	r.targets[service] = ts
	return ts
}
