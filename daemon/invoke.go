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

// apply applies an invocation's buffered effects: key writes in order, then
// events. It is called only after the invocation succeeded.
func (d *Daemon) apply(ctx context.Context, s *service, inv *host.Invocation) error {
	if err := applyWrites(ctx, s, inv.Writes); err != nil {
		return err
	}
	for _, e := range inv.Events {
		ev := bus.NewEvent(s.name, e.Type, e.Data)
		ev.TraceParent = inv.TraceParent
		if e.Delay > 0 {
			if err := d.bus.PublishDelayed(ctx, ev, e.Delay); err != nil {
				return fmt.Errorf("scheduling %s: %w", e.Type, err)
			}
			continue
		}
		if err := d.bus.Publish(ctx, ev); err != nil {
			return fmt.Errorf("publishing %s: %w", e.Type, err)
		}
	}
	return nil
}

// applyWrites applies key writes in order to s's store.
func applyWrites(ctx context.Context, s *service, writes []host.KVOp) error {
	for _, w := range writes {
		var err error
		if w.Delete {
			err = s.store.Delete(ctx, w.Key)
			s.observeKV("delete", err)
		} else {
			err = s.store.Put(ctx, w.Key, w.Value)
			s.observeKV("put", err)
		}
		if err != nil {
			return fmt.Errorf("applying kv write %q: %w", w.Key, err)
		}
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
	if err := d.apply(ctx, s, &cs.inv); err != nil {
		cs.inv.Logger().Error("request effects not applied", slog.Any("error", err))
		return fmt.Errorf("service %s: %v: %w", name, err, gateway.ErrUnavailable)
	}
	return nil
}

// mapInvokeError turns runtime errors into the gateway's classes.
func mapInvokeError(name string, err error) error {
	switch {
	case errors.Is(err, runtime.ErrBusy):
		return fmt.Errorf("service %s: %v: %w", name, err, gateway.ErrBusy)
	case errors.Is(err, runtime.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("service %s: %v: %w", name, err, gateway.ErrTimeout)
	case errors.Is(err, runtime.ErrTooLarge):
		return fmt.Errorf("service %s: %v: %w", name, err, gateway.ErrTooLarge)
	case errors.Is(err, runtime.ErrClosed):
		return fmt.Errorf("service %s: %v: %w", name, err, gateway.ErrUnavailable)
	}
	return fmt.Errorf("service %s failed: %w", name, err)
}

// eventHandler delivers events to the service. An error makes the bus
// redeliver the event later and, after the last attempt, dead-letter it.
func (d *Daemon) eventHandler(s0 *service) bus.Handler {
	name := s0.name
	serial := d.serialLock(name)
	return func(ctx context.Context, ev bus.Event) error {
		cs := getCallState()
		defer putCallState(cs)
		cs.call.Input = appendEvent(cs.call.Input[:0], ev, uint32(ev.Attempt))
		cs.inv.TraceParent = ev.TraceParent
		cs.inv.Attrs = append(cs.inv.Attrs, slog.String("event_id", ev.ID), slog.String("event_type", ev.Type),
			slog.String("trace_id", traceparent.TraceID(ev.TraceParent)))
		if s0.events.Serial {
			// One handler at a time: its reads and buffered writes do not
			// interleave with another handler's (see EventsConfig.Serial).
			serial.Lock()
			defer serial.Unlock()
		}
		s, err := d.invoke(ctx, name, runtime.EntryEvent, cs)
		if err != nil {
			return fmt.Errorf("service %s: handling %s: %w", name, ev.Type, err)
		}
		if cs.call.Code != abi.CodeOK {
			return fmt.Errorf("service %s: handler for %s failed (%s): %s", name, ev.Type, cs.call.Code, truncate(cs.call.Output, 200))
		}
		if err := d.apply(ctx, s, &cs.inv); err != nil {
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
