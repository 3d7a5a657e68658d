package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/gateway"
	"github.com/meshd/meshd/host/kv"
	"github.com/meshd/meshd/internal/traceparent"
	"github.com/meshd/meshd/runtime"
)

// callState is a reusable runtime.Call with its host.Invocation.
type callState struct {
	call runtime.Call
	inv  host.Invocation
}

var callStates = sync.Pool{New: func() any {
	cs := &callState{}
	cs.call.Data = &cs.inv
	return cs
}}

func getCallState() *callState {
	cs := callStates.Get().(*callState)
	cs.call.Reset()
	cs.inv.Reset()
	cs.call.Data = &cs.inv
	return cs
}

func putCallState(cs *callState) {
	if cap(cs.call.Input) > 64<<10 { // do not keep huge buffers alive
		cs.call.Input = nil
	}
	callStates.Put(cs)
}

// invoke runs entry on the current version of the service. A version closed
// between lookup and invocation (a reload or removal) is retried once on
// whatever serves the service then.
func (d *Daemon) invoke(ctx context.Context, name string, entry runtime.Entry, cs *callState) (*service, error) {
	for attempt := 0; ; attempt++ {
		s := d.lookup(name)
		if s == nil {
			return nil, fmt.Errorf("service %s is not loaded: %w", name, gateway.ErrUnavailable)
		}
		if cs.inv.Base == nil {
			cs.inv.Base = s.log
		}
		start := time.Now()
		err := s.mod.Invoke(ctx, entry, &cs.call)
		d.observeInvoke(ctx, name, entry, start, err, cs)
		if errors.Is(err, runtime.ErrClosed) && attempt == 0 {
			continue
		}
		return s, err
	}
}

// effectsTimeout bounds the application of one invocation's effects.
const effectsTimeout = 10 * time.Second

// apply applies an invocation's buffered effects: key writes in order, then
// events. It is called only after the invocation succeeded. Writes are sent
// as one atomic batch (kv.Store.Apply; with atomic false, for a read
// model's projections, one by one: kv.Store.ApplyEach), then events
// together (bus.PublishAll): no event is sent before every write is stored.
//
// Once the guest has returned, its effects are applied to the end on a
// context of their own (bounded by effectsTimeout), whatever happens to
// ctx: a client that disconnects must not cut a request's effects in half.
func (d *Daemon) apply(ctx context.Context, s *service, inv *host.Invocation, atomic bool) error {
	if len(inv.Writes) == 0 && len(inv.Events) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), effectsTimeout)
	defer cancel()
	if err := applyWrites(ctx, s, inv.Writes, atomic); err != nil {
		return err
	}
	if len(inv.Events) == 0 {
		return nil
	}
	evs := make([]bus.Pending, len(inv.Events))
	for i, e := range inv.Events {
		ev := bus.NewEvent(s.name, e.Type, e.Data)
		ev.TraceParent = inv.TraceParent
		evs[i] = bus.Pending{Event: ev, Delay: e.Delay}
	}
	if err := d.bus.PublishAll(ctx, evs); err != nil {
		return fmt.Errorf("publishing events: %w", err)
	}
	return nil
}

// applyWrites applies key writes in order to s's store: as one atomic
// batch, or one by one when atomic is false.
func applyWrites(ctx context.Context, s *service, writes []host.KVOp, atomic bool) error {
	if len(writes) == 0 {
		return nil
	}
	ops := make([]kv.Op, len(writes))
	for i, w := range writes {
		ops[i] = kv.Op(w)
	}
	var err error
	if atomic {
		err = s.store.Apply(ctx, ops)
	} else {
		err = s.store.ApplyEach(ctx, ops)
	}
	// A write of a batch that failed is counted as failed: it was not
	// confirmed, even where the server stored it.
	for _, w := range writes {
		if w.Delete {
			s.observeKV("delete", err)
		} else {
			s.observeKV("put", err)
		}
	}
	if err != nil {
		return fmt.Errorf("applying %d kv writes: %w", len(writes), err)
	}
	return nil
}

// invoker runs gateway requests on services.
type invoker struct{ d *Daemon }

// InvokeHTTP implements gateway.Invoker.
func (iv invoker) InvokeHTTP(ctx context.Context, name string, req *abi.Request, resp *abi.Response) error {
	d := iv.d
	cs := getCallState()
	defer putCallState(cs)
	cs.call.Input = req.Append(cs.call.Input[:0])
	cs.inv.RequestID = string(req.RequestID)
	cs.inv.TraceParent = string(req.TraceParent)
	cs.inv.Attrs = append(cs.inv.Attrs, slog.String("request_id", cs.inv.RequestID),
		slog.String("trace_id", traceparent.TraceID(cs.inv.TraceParent)))
	s, err := d.invoke(ctx, name, runtime.EntryHTTP, cs)
	if err != nil {
		return mapInvokeError(name, err)
	}
	if cs.call.Code != abi.CodeOK {
		return fmt.Errorf("service %s failed the request (%s): %s", name, cs.call.Code, truncate(cs.call.Output, 200))
	}
	// The response takes the output buffer; the call gets a new one next time.
	out := cs.call.Output
	cs.call.Output = nil
	if err := resp.Decode(out); err != nil {
		return fmt.Errorf("service %s returned a malformed response: %w", name, err)
	}
	if err := d.apply(ctx, s, &cs.inv, true); err != nil {
		if errors.Is(err, kv.ErrWritesRefused) {
			// Not logged per request: the store logs the episode.
			return mapInvokeError(name, err)
		}
		cs.inv.Logger().Error("request effects not applied", slog.Any("error", err))
		return fmt.Errorf("service %s: %v: %w", name, err, gateway.ErrUnavailable)
	}
	return nil
}

// mapInvokeError turns runtime errors, and a store refusing writes, into
// the gateway's classes.
func mapInvokeError(name string, err error) error {
	switch {
	case errors.Is(err, runtime.ErrBusy):
		return fmt.Errorf("service %s: %v: %w", name, err, gateway.ErrBusy)
	case errors.Is(err, runtime.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		// Both wrapped: the gateway reads which deadline it was (Limit).
		return fmt.Errorf("service %s: %w: %w", name, err, gateway.ErrTimeout)
	case errors.Is(err, runtime.ErrOutputTooLarge):
		// The service's answer passed its cap: the service failed (500), not
		// the client's request (413).
		return fmt.Errorf("service %s failed: %w", name, err)
	case errors.Is(err, runtime.ErrTooLarge):
		return fmt.Errorf("service %s: %v: %w", name, err, gateway.ErrTooLarge)
	case errors.Is(err, runtime.ErrClosed):
		return fmt.Errorf("service %s: %v: %w", name, err, gateway.ErrUnavailable)
	case errors.Is(err, kv.ErrWritesRefused): // the same as bus.ErrWritesRefused
		return fmt.Errorf("service %s: %v: %w", name, err, gateway.ErrStoreRefused)
	}
	return fmt.Errorf("service %s failed: %w", name, err)
}

// eventHandler delivers events to the service. An error makes the bus
// redeliver the event later and, after the last attempt, dead-letter it.
// A subscription handed over at a reload keeps this handler, so the
// [events] settings are read from the version serving at each delivery.
func (d *Daemon) eventHandler(s0 *service) bus.Handler {
	name := s0.name
	return func(ctx context.Context, ev bus.Event) error {
		cfg := &s0.events
		if cur := d.lookup(name); cur != nil {
			cfg = &cur.events
		}
		cs := getCallState()
		defer putCallState(cs)
		cs.call.Input = appendEvent(cs.call.Input[:0], ev, uint32(ev.Attempt))
		cs.inv.TraceParent = ev.TraceParent
		cs.inv.Attrs = append(cs.inv.Attrs, slog.String("event_id", ev.ID), slog.String("event_type", ev.Type),
			slog.String("trace_id", traceparent.TraceID(ev.TraceParent)))
		if cfg.Serial {
			// One handler at a time (per key, with SerialKeys): its reads
			// and buffered writes do not interleave with another handler's
			// (see config.Events.Serial), the read model's apart
			// (config.Events.ReadModelTypes).
			g := d.serialLock(name, cfg, ev.Type)
			if key, ok := serialKey(cfg, ev.Type, ev.Data); ok {
				defer g.lockKey(key)()
			} else {
				g.Lock()
				defer g.Unlock()
			}
		}
		s, err := d.invoke(ctx, name, runtime.EntryEvent, cs)
		if err != nil {
			return fmt.Errorf("service %s: handling %s: %w", name, ev.Type, err)
		}
		if cs.call.Code != abi.CodeOK {
			return fmt.Errorf("service %s: handler for %s failed (%s): %s", name, ev.Type, cs.call.Code, truncate(cs.call.Output, 200))
		}
		if err := checkWrites(&s.events, ev.Type, cs.inv.Writes); err != nil {
			return fmt.Errorf("service %s: %w", name, err)
		}
		// A read model's projections are idempotent merges that a replay
		// rebuilds: their writes skip the atomic batch, which costs the
		// server a staging store per batch (see kv.Store.ApplyEach).
		if err := d.apply(ctx, s, &cs.inv, !s.events.ReadModelType(ev.Type)); err != nil {
			return fmt.Errorf("service %s: %w", name, err)
		}
		return nil
	}
}

// appendEvent appends ev in the ABI's event encoding (the input of
// meshd_event), as delivery attempt attempt.
func appendEvent(dst []byte, ev bus.Event, attempt uint32) []byte {
	e := abi.Event{
		ID: []byte(ev.ID), Source: []byte(ev.Source), Type: []byte(ev.Type),
		Time:            ev.Time.UTC().AppendFormat(nil, time.RFC3339Nano),
		DataContentType: []byte(ev.DataContentType), TraceParent: []byte(ev.TraceParent),
		Attempt: attempt, Data: ev.Data,
	}
	return e.Append(dst)
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
