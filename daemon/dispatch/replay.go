package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/fault"
	"github.com/meshd/meshd/runtime"
)

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
func (d *Dispatcher) Replay(ctx context.Context, name string) (ReplayResult, error) {
	res := ReplayResult{Service: name}
	s, err := d.replayTarget(name)
	if err != nil {
		return res, err
	}
	events, store := s.Events(), s.Store()
	prefix := events.ReadModelPrefix
	b, err := d.liveBus()
	if err != nil {
		return res, fault.New(name, fault.Unavailable, err)
	}
	rmLock := d.readModelLock(name, events)
	if events.Serial {
		// Pause the live handlers that write the read model while its keys
		// are dropped.
		rmLock.Lock()
	}
	keys, err := store.Keys(ctx)
	if err == nil {
		for _, k := range keys {
			if !strings.HasPrefix(k, prefix) {
				continue
			}
			if err = store.Delete(ctx, k); err != nil {
				break
			}
			res.Dropped++
		}
	}
	if events.Serial {
		rmLock.Unlock()
	}
	if err != nil {
		return res, fmt.Errorf("dropping the read model of %s: %w", name, err)
	}
	res.Events, err = b.Replay(ctx, s.Subscriptions(), func(ctx context.Context, ev bus.Event) error {
		n, err := d.replayOne(ctx, s, ev, prefix)
		res.Writes += n
		return err
	})
	return res, err
}

// replayTarget is the version of service name a replay rebuilds the read
// model of: a NotFound fault when the service is not loaded, an Invalid
// one when it has no read model (no [events] read_model_prefix, or no
// key-value store).
func (d *Dispatcher) replayTarget(name string) (Service, error) {
	s := d.lookup(name)
	switch {
	case s == nil:
		return nil, fault.New(name, fault.NotFound, errNotLoaded)
	case s.Events().ReadModelPrefix == "":
		return nil, fault.New(name, fault.Invalid, fmt.Errorf("no [events] read_model_prefix in %s.toml: nothing to rebuild", name))
	case s.Store() == nil:
		return nil, fault.New(name, fault.Invalid, errors.New("no key-value store: nothing to rebuild"))
	}
	return s, nil
}

// replayOne runs one event through s0's handler and applies the writes
// under prefix.
func (d *Dispatcher) replayOne(ctx context.Context, s0 Service, ev bus.Event, prefix string) (int, error) {
	if events := s0.Events(); events.Serial {
		mu := d.readModelLock(s0.Name(), events)
		mu.Lock()
		defer mu.Unlock()
	}
	cs := getCallState()
	defer putCallState(cs)
	cs.call.Input = appendEvent(cs.call.Input[:0], ev, 1)
	cs.inv.Base = s0.Logger()
	cs.inv.Attrs = append(cs.inv.Attrs, slog.String("event_id", ev.ID), slog.String("event_type", ev.Type), slog.Bool("replay", true))
	s, err := d.invoke(ctx, s0.Name(), runtime.EntryEvent, cs)
	if err != nil {
		return 0, err
	}
	if cs.call.Code != abi.CodeOK {
		return 0, fmt.Errorf("handler failed (%s): %q", cs.call.Code, truncate(cs.call.Output, 200))
	}
	// Only the read model's writes; the handler's events are not published again.
	writes := slices.DeleteFunc(cs.inv.Writes, func(w host.KVOp) bool { return !strings.HasPrefix(w.Key, prefix) })
	if err := applyWrites(ctx, s, writes, false, nil, nil); err != nil { // a replay rebuilds a read model
		return 0, err
	}
	return len(writes), nil
}
