package daemon

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/meshd/meshd/daemon/dispatch"
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

// EventsHandler is the events admin API, mounted on the admin listener
// under /v1/events/:
//
//	GET  /v1/events/dlq?service=NAME            dead letters (JSON array)
//	POST /v1/events/dlq/redrive?service=NAME[&id=EVENT_ID...]
//	POST /v1/events/replay?service=NAME         rebuild the read model
//	GET  /v1/events/consumers                   consumer states
func (d *Daemon) EventsHandler() http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any, err error) {
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /v1/events/dlq", func(w http.ResponseWriter, r *http.Request) {
		dls, err := d.DeadLetters(r.Context(), r.URL.Query().Get("service"))
		out := make([]deadLetterJSON, len(dls))
		for i, dl := range dls {
			out[i] = deadLetterJSON{ID: dl.Event.ID, Type: dl.Event.Type, Source: dl.Event.Source,
				Service: dl.Service, Reason: dl.Reason, Attempts: dl.Attempts, FailedAt: dl.FailedAt,
				Data: string(dl.Event.Data)}
		}
		reply(w, out, err)
	})
	mux.HandleFunc("POST /v1/events/dlq/redrive", func(w http.ResponseWriter, r *http.Request) {
		n, err := d.Redrive(r.Context(), r.URL.Query().Get("service"), r.URL.Query()["id"]...)
		reply(w, map[string]int{"redriven": n}, err)
	})
	mux.HandleFunc("POST /v1/events/replay", func(w http.ResponseWriter, r *http.Request) {
		res, err := d.Replay(r.Context(), r.URL.Query().Get("service"))
		reply(w, res, err)
	})
	mux.HandleFunc("GET /v1/events/consumers", func(w http.ResponseWriter, r *http.Request) {
		cs, err := d.bus.Consumers(r.Context())
		reply(w, cs, err)
	})
	return mux
}

type deadLetterJSON struct {
	ID       string    `json:"id"`
	Type     string    `json:"type"`
	Source   string    `json:"source"`
	Service  string    `json:"service"`
	Reason   string    `json:"reason"`
	Attempts int       `json:"attempts"`
	FailedAt time.Time `json:"failed_at"`
	Data     string    `json:"data"`
}
