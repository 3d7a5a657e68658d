package daemon

import (
	"context"
	"net/http"
	"sync"

	"github.com/meshd/meshd/daemon/dispatch"
	"github.com/meshd/meshd/host/admin"
	"github.com/meshd/meshd/host/bus"
)

// DeadLetters returns the dead letters of service, oldest first.
func (d *Daemon) DeadLetters(ctx context.Context, service string) ([]bus.DeadLetter, error) {
	if d.bus == nil {
		return nil, ErrClosed
	}
	return d.bus.DeadLetters(ctx, service)
}

// Redrive sends service's dead letters (those with the given event ids, or
// all) back to that service only, and returns how many.
func (d *Daemon) Redrive(ctx context.Context, service string, ids ...string) (int, error) {
	if d.bus == nil {
		return 0, ErrClosed
	}
	return d.bus.Redrive(ctx, service, ids...)
}

// Replay rebuilds service's read model (dispatch.Dispatcher.Replay).
func (d *Daemon) Replay(ctx context.Context, service string) (dispatch.ReplayResult, error) {
	return d.dispatch.Replay(ctx, service)
}

// loadOrNew returns m's value for key, storing mk()'s first if there is
// none (mk runs only then, bar a race).
func loadOrNew[T any](m *sync.Map, key string, mk func() *T) *T {
	if v, ok := m.Load(key); ok {
		return v.(*T)
	}
	v, _ := m.LoadOrStore(key, mk())
	return v.(*T)
}

// EventsHandler is the events admin API (dispatch.Dispatcher.EventsHandler),
// mounted on the admin listener under /v1/events/; replays run as jobs of
// jobs.
func (d *Daemon) EventsHandler(jobs *admin.Jobs) http.Handler { return d.dispatch.EventsHandler(jobs) }

// stopJobs cancels the admin listener's jobs (replays) and waits for them,
// bounded by ctx: they use the services, bus and stores Shutdown closes
// after it. The listener itself closes last.
func (d *Daemon) stopJobs(ctx context.Context) error {
	if d.obs.admin.server == nil {
		return nil
	}
	return d.obs.admin.server.Jobs().Close(ctx)
}
