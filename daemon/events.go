package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/config"
	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/runtime"
)

// checkWrites enforces ReadModelTypes on the writes of a handler of typ.
func checkWrites(c *config.Events, typ string, writes []host.KVOp) error {
	if len(c.ReadModelTypes) == 0 {
		return nil
	}
	rm := c.ReadModelType(typ)
	for _, w := range writes {
		switch under := strings.HasPrefix(w.Key, c.ReadModelPrefix); {
		case rm && !under:
			return fmt.Errorf("%s is a read-model type ([events] read_model_types) but its handler wrote %q, outside read_model_prefix %q", typ, w.Key, c.ReadModelPrefix)
		case !rm && under:
			return fmt.Errorf("the handler of %s wrote %q under read_model_prefix %q, which only read_model_types handlers may write", typ, w.Key, c.ReadModelPrefix)
		}
	}
	return nil
}

// serialLocks are the locks held around the service's event handlers
// when its [events] serial is set: one set per service name, shared by
// every version of the service, so a reload does not run an old and a new
// version's handlers at once. The handlers of its read_model_types hold
// readModel, the others service.
type serialLocks struct{ service, readModel serialGroup }

// serialStripes is how many keys' handlers of one group can run at once
// (keys hashing to one stripe wait for each other).
const serialStripes = 64

// serialGroup runs handlers one at a time, or, for those with a key
// (config.Events.SerialKeys), one at a time per key: a keyed handler holds
// all shared and its key's stripe; a handler with no key, and a replay,
// hold all alone.
type serialGroup struct {
	all     sync.RWMutex
	stripes [serialStripes]sync.Mutex
}

// Lock and Unlock hold the whole group: nothing else of it runs.
func (g *serialGroup) Lock()   { g.all.Lock() }
func (g *serialGroup) Unlock() { g.all.Unlock() }

var serialSeed = maphash.MakeSeed()

// lockKey holds the group for a handler of key and returns its release.
func (g *serialGroup) lockKey(key string) (unlock func()) {
	g.all.RLock()
	m := &g.stripes[maphash.String(serialSeed, key)%serialStripes]
	m.Lock()
	return func() {
		m.Unlock()
		g.all.RUnlock()
	}
}

// serialKey returns the key an event of typ with data runs under, if c
// gives its type one and the data has it.
func serialKey(c *config.Events, typ string, data []byte) (string, bool) {
	field, ok := c.SerialKeys[typ]
	if !ok {
		return "", false
	}
	return topString(data, field)
}

// topString returns the top-level string field of a JSON object.
func topString(data []byte, field string) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", false
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return "", false
		}
		if t == field {
			t, err := dec.Token()
			v, ok := t.(string)
			return v, ok && err == nil
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "", false
		}
	}
	return "", false
}

func (d *Daemon) serialLocks(name string) *serialLocks {
	return loadOrNew(&d.serial, name, func() *serialLocks { return new(serialLocks) })
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

// serialLock is the lock group a handler of typ holds under c.
func (d *Daemon) serialLock(name string, c *config.Events, typ string) *serialGroup {
	l := d.serialLocks(name)
	if c.ReadModelType(typ) {
		return &l.readModel
	}
	return &l.service
}

// readModelLock is the lock that guards the read model of service name
// under c: the read-model handlers' own when c has read_model_types (only
// they write there), otherwise the service's.
func (d *Daemon) readModelLock(name string, c *config.Events) *serialGroup {
	l := d.serialLocks(name)
	if len(c.ReadModelTypes) == 0 {
		return &l.service
	}
	return &l.readModel
}

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

// ReplayResult is what Replay did.
type ReplayResult struct {
	Service string `json:"service"`
	Dropped int    `json:"dropped"` // read-model keys deleted
	Events  int    `json:"events"`  // events replayed
	Writes  int    `json:"writes"`  // read-model writes applied
}

// Replay rebuilds service's read model: it deletes every key under the
// service's [events] read_model_prefix, then hands every stored event of
// the types it subscribes to to its event handler, oldest first, one at a
// time. Of each invocation's effects only the writes under the prefix are
// applied; its events and other writes are dropped (they happened the
// first time). Live deliveries keep running: the projections are
// idempotent merges, so they converge with the replay.
func (d *Daemon) Replay(ctx context.Context, name string) (ReplayResult, error) {
	res := ReplayResult{Service: name}
	s := d.lookup(name)
	if s == nil {
		return res, fmt.Errorf("service %s is not loaded", name)
	}
	prefix := s.events.ReadModelPrefix
	if prefix == "" {
		return res, fmt.Errorf("service %s has no [events] read_model_prefix in its %s.toml: nothing to rebuild", name, name)
	}
	if s.store == nil {
		return res, fmt.Errorf("service %s has no key-value store", name)
	}
	rmLock := d.readModelLock(name, &s.events)
	if s.events.Serial {
		// Pause the live handlers that write the read model while its keys
		// are dropped.
		rmLock.Lock()
	}
	keys, err := s.store.Keys(ctx)
	if err == nil {
		for _, k := range keys {
			if !strings.HasPrefix(k, prefix) {
				continue
			}
			if err = s.store.Delete(ctx, k); err != nil {
				break
			}
			res.Dropped++
		}
	}
	if s.events.Serial {
		rmLock.Unlock()
	}
	if err != nil {
		return res, fmt.Errorf("dropping the read model of %s: %w", name, err)
	}
	types := make([]string, 0, len(s.decl.Subscriptions))
	for _, sub := range s.decl.Subscriptions {
		types = append(types, sub.Type)
	}
	res.Events, err = d.bus.Replay(ctx, types, func(ctx context.Context, ev bus.Event) error {
		n, err := d.replayOne(ctx, s, ev, prefix)
		res.Writes += n
		return err
	})
	return res, err
}

// replayOne runs one event through s's handler and applies the writes
// under prefix.
func (d *Daemon) replayOne(ctx context.Context, s0 *service, ev bus.Event, prefix string) (int, error) {
	if s0.events.Serial {
		mu := d.readModelLock(s0.name, &s0.events)
		mu.Lock()
		defer mu.Unlock()
	}
	cs := getCallState()
	defer putCallState(cs)
	cs.call.Input = appendEvent(cs.call.Input[:0], ev, 1)
	cs.inv.Base = s0.log
	cs.inv.Attrs = append(cs.inv.Attrs, slog.String("event_id", ev.ID), slog.String("event_type", ev.Type), slog.Bool("replay", true))
	s, err := d.invoke(ctx, s0.name, runtime.EntryEvent, cs)
	if err != nil {
		return 0, err
	}
	if cs.call.Code != abi.CodeOK {
		return 0, fmt.Errorf("handler failed (%s): %s", cs.call.Code, truncate(cs.call.Output, 200))
	}
	// Only the read model's writes; the handler's events are not published again.
	writes := slices.DeleteFunc(cs.inv.Writes, func(w host.KVOp) bool { return !strings.HasPrefix(w.Key, prefix) })
	if err := applyWrites(ctx, s, writes, false); err != nil { // a replay rebuilds a read model
		return 0, err
	}
	return len(writes), nil
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
