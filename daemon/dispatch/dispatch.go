package dispatch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/config"
	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/fault"
	"github.com/meshd/meshd/host/gateway"
	"github.com/meshd/meshd/host/kv"
	"github.com/meshd/meshd/host/mesh"
	"github.com/meshd/meshd/host/metrics"
	"github.com/meshd/meshd/host/registry"
	"github.com/meshd/meshd/internal/traceparent"
	"github.com/meshd/meshd/runtime"
)

// Service is a serving version of a service, as dispatch invokes it.
type Service interface {
	registry.Local // Invoke
	// Name is the service's name.
	Name() string
	// Logger is the service's logger.
	Logger() *slog.Logger
	// Events is the [events] table of the version's service file.
	Events() *config.Events
	// Store is the service's key-value store, nil when it has none.
	Store() *kv.Store
	// Subscriptions are the event types the version subscribes to.
	Subscriptions() []string
	// ObserveKV reports a write dispatch applied to the store.
	ObserveKV(op string, err error)
}

// Dispatcher runs requests, events and replays on services.
type Dispatcher struct {
	reg     *registry.Registry
	bus     atomic.Pointer[bus.Bus]
	metrics *metrics.Metrics // nil: metrics off
	serial  sync.Map         // service name → *serialLocks of its serial event handlers
	health  func(service string, err error)
	// meshSerial: serial handlers also hold a lease on their key in the
	// service's bucket, for a mesh of nodes (serial_mesh.go).
	meshSerial bool

	obOnce sync.Once
	ob     *outbox // the relays of outbox records (outbox.go)
}

// Option configures a Dispatcher.
type Option func(*Dispatcher)

// WithMetrics records every invocation in m (nil: metrics off).
func WithMetrics(m *metrics.Metrics) Option { return func(d *Dispatcher) { d.metrics = m } }

// WithHealth reports the outcome of every invocation to fn (the error the
// module's Invoke returned, nil on success), which judges whether the
// service keeps failing (service.Health.Observe).
func WithHealth(fn func(service string, err error)) Option {
	return func(d *Dispatcher) { d.health = fn }
}

// WithMeshSerial makes the serial event handlers of a service ([events]
// serial, serial_keys) hold mesh-wide, for nodes sharing one NATS (a
// cluster, or an operator's server): besides the node's own locks, a
// handler holds a lease on its key in the service's key-value store, and
// its effects are applied only while it holds it (see serial_mesh.go). A
// service with no key-value store keeps the node's locks alone.
func WithMeshSerial(on bool) Option { return func(d *Dispatcher) { d.meshSerial = on } }

// WithBus publishes the events of invocations on b. Without it (or
// SetBus) an invocation that publishes fails to apply its effects.
func WithBus(b *bus.Bus) Option { return func(d *Dispatcher) { d.bus.Store(b) } }

// New returns a dispatcher that finds services in reg: the version of a
// service this node serves is the registry's Local instance of it (its
// Local a Service), resolved at every call.
func New(reg *registry.Registry, opts ...Option) *Dispatcher {
	d := &Dispatcher{reg: reg}
	for _, o := range opts {
		o(d)
	}
	return d
}

// lookup returns the version of service name this node serves, or nil.
func (d *Dispatcher) lookup(name string) Service {
	in, ok := d.reg.Local(name)
	if !ok {
		return nil
	}
	s, _ := in.Local.(Service)
	return s
}

// SetBus sets the bus events are published on: the daemon makes the
// dispatcher before NATS starts, and the bus once it has.
func (d *Dispatcher) SetBus(b *bus.Bus) { d.bus.Store(b) }

// callState is a reusable runtime.Call with its host.Invocation.
type callState struct {
	call  runtime.Call
	inv   host.Invocation
	lease *kv.Lease // held by a serial event handler on a mesh (serial_mesh.go)
	// requestID is the last request id this state's invocations had: the
	// calls one request makes share it, and the string is made once.
	requestID string
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
	cs.lease = nil
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
// whatever serves the service then. A request or a call (EntryHTTP) goes
// only to a service whose status is UP: one drained, DOWN or starting
// fails at once with Unavailable (see notUp); events are handled whatever
// the status, since their consumers are durable and a refusal would only
// spend delivery attempts.
func (d *Dispatcher) invoke(ctx context.Context, name string, entry runtime.Entry, cs *callState) (Service, error) {
	for attempt := 0; ; attempt++ {
		in, ok := d.reg.Local(name)
		s, _ := in.Local.(Service)
		if !ok || s == nil {
			return nil, fault.New(name, fault.Unavailable, errNotLoaded)
		}
		if entry == runtime.EntryHTTP && in.Status != registry.Up {
			return nil, notUp(name, in.Status)
		}
		if cs.inv.Base == nil {
			cs.inv.Base = s.Logger()
		}
		start := time.Now()
		err := s.Invoke(ctx, entry, &cs.call)
		d.observe(ctx, name, entry, start, err, cs)
		if d.health != nil {
			d.health(name, err)
		}
		if errors.Is(err, runtime.ErrClosed) && attempt == 0 {
			continue
		}
		return s, err
	}
}

// observe records one invocation of entry on service; start is when the
// dispatcher asked the pool for an instance. At debug level it also logs
// the invocation on the invocation's logger, which carries the service,
// the request or event id and the trace id: with it one trace can be
// followed through every service it touched.
func (d *Dispatcher) observe(ctx context.Context, service string, entry runtime.Entry, start time.Time, err error, cs *callState) {
	m := d.metrics
	debug := cs.inv.Base != nil && cs.inv.Base.Enabled(ctx, slog.LevelDebug)
	if m == nil && !debug {
		return
	}
	dur := time.Since(start)
	result := metrics.InvocationResult(err, cs.call.Code == abi.CodeOK)
	m.Invoked(service, entryLabel(entry), result, dur)
	if debug {
		attrs := []slog.Attr{slog.String("entry", entryLabel(entry)), slog.String("result", result), slog.Duration("duration", dur)}
		if err != nil {
			attrs = append(attrs, slog.Any("error", err))
		} else if cs.call.Code != abi.CodeOK {
			attrs = append(attrs, slog.String("code", cs.call.Code.String()))
		}
		cs.inv.Logger().LogAttrs(ctx, slog.LevelDebug, "invoked", attrs...)
	}
}

func entryLabel(e runtime.Entry) string {
	switch e {
	case runtime.EntryHTTP:
		return "http"
	case runtime.EntryEvent:
		return "event"
	case runtime.EntryDescribe:
		return "describe"
	}
	return "other"
}

// InvokeHTTP implements gateway.Invoker.
func (d *Dispatcher) InvokeHTTP(ctx context.Context, name string, req *abi.Request, resp *abi.Response) error {
	return d.invokeHTTP(ctx, name, req, resp, 0)
}

// InvokeCall runs a call from another service on service name's HTTP
// entry point, as InvokeHTTP does a request: req's Route and Params are
// set (the route the call matched), ctx carries the call's deadline and
// its depth (mesh.DepthFrom), which the callee's invocation takes, so the
// calls it makes in turn are bounded. The callee's effects are applied
// when it succeeds, whatever becomes of its caller.
func (d *Dispatcher) InvokeCall(ctx context.Context, name string, req *abi.Request, resp *abi.Response) error {
	return d.invokeHTTP(ctx, name, req, resp, mesh.DepthFrom(ctx))
}

func (d *Dispatcher) invokeHTTP(ctx context.Context, name string, req *abi.Request, resp *abi.Response, depth int) error {
	cs := getCallState()
	defer putCallState(cs)
	cs.call.Input = req.Append(cs.call.Input[:0])
	cs.inv.Depth = depth
	if string(req.RequestID) != cs.requestID {
		cs.requestID = string(req.RequestID)
	}
	cs.inv.RequestID = cs.requestID
	cs.inv.TraceParent = string(req.TraceParent)
	cs.inv.Attrs = append(cs.inv.Attrs, slog.String("request_id", cs.inv.RequestID),
		slog.String("trace_id", traceparent.TraceID(cs.inv.TraceParent)))
	s, err := d.invoke(ctx, name, runtime.EntryHTTP, cs)
	if err != nil {
		return fault.Classify(name, err)
	}
	if cs.call.Code != abi.CodeOK {
		// Failed: a caller (the gateway, a calling service) sees 500 or
		// abi.CodeInternal, whatever code the guest answered with.
		return fault.New(name, fault.Failed, fmt.Errorf("failed the request (%s): %q", cs.call.Code, truncate(cs.call.Output, 200)))
	}
	// The response takes the output buffer; the call gets a new one next time.
	out := cs.call.Output
	cs.call.Output = nil
	if err := resp.Decode(out); err != nil {
		return fault.New(name, fault.Failed, fmt.Errorf("malformed response: %w", err))
	}
	if err := d.Apply(ctx, s, &cs.inv, true); err != nil {
		if errors.Is(err, kv.ErrWritesRefused) {
			// Not logged per request: the store logs the episode.
			return fault.Classify(name, err)
		}
		if errors.Is(err, ErrEventsNotPublished) {
			cs.inv.Logger().Error("request effects partly applied: key writes stored, events not published", slog.Any("error", err))
			return fault.New(name, fault.Partial, err)
		}
		cs.inv.Logger().Error("request effects not applied", slog.Any("error", err))
		return fault.New(name, fault.Unavailable, err)
	}
	return nil
}

// Retry-After of a request to a service that is not UP, by status: a
// drain lasts as long as the operator wants (a minute is a polite guess);
// a DOWN service is probed again after its cool-down; a starting one is
// up in moments.
const (
	retryDrained  = time.Minute
	retryDown     = 10 * time.Second
	retryStarting = time.Second
)

// notUp is the error of a request or call to a service whose status is st
// (not UP): Unavailable, answered 503 with Retry-After.
func notUp(name string, st registry.Status) *fault.Error {
	retry := retryStarting
	switch st {
	case registry.OutOfService:
		retry = retryDrained
	case registry.Down:
		retry = retryDown
	}
	return &fault.Error{Service: name, Kind: fault.Unavailable, RetryAfter: retry,
		Err: fmt.Errorf("dispatch: service %s is %s", name, st)}
}

// errNotLoaded is the cause of the Unavailable error of a service this
// node does not serve.
var errNotLoaded = errors.New("not loaded")

// Handler returns the bus handler of the subscriptions of service s0.
// An error makes the bus redeliver the event later and, after the last
// attempt, dead-letter it. A subscription handed over at a reload keeps
// this handler, so the [events] settings are read from the version serving
// at each delivery.
func (d *Dispatcher) Handler(s0 Service) bus.Handler {
	name := s0.Name()
	return func(ctx context.Context, ev bus.Event) error {
		cfg := s0.Events()
		store := s0.Store()
		if cur := d.lookup(name); cur != nil {
			cfg = cur.Events()
			store = cur.Store()
		}
		cs := getCallState()
		defer putCallState(cs)
		cs.call.Input = appendEvent(cs.call.Input[:0], ev, uint32(ev.Attempt))
		cs.inv.TraceParent = ev.TraceParent
		cs.inv.RequestID = ev.ID // the request id of the calls the handler makes (docs/ABI.md)
		cs.inv.Attrs = append(cs.inv.Attrs, slog.String("event_id", ev.ID), slog.String("event_type", ev.Type),
			slog.String("trace_id", traceparent.TraceID(ev.TraceParent)))
		if cfg.Serial {
			// One handler at a time (per key, with SerialKeys): its reads
			// and buffered writes do not interleave with another handler's
			// (see config.Events.Serial), the read model's apart
			// (config.Events.ReadModelTypes).
			g := d.serialLock(name, cfg, ev.Type)
			key, keyed := serialKey(cfg, ev.Type, ev.Data)
			if keyed {
				defer g.lockKey(key)()
			} else {
				g.Lock()
				defer g.Unlock()
			}
			if d.meshSerial && store != nil {
				l, err := takeLease(ctx, store, cfg, ev.Type, key, keyed)
				if err != nil {
					return fmt.Errorf("service %s: %s: %w", name, ev.Type, err)
				}
				// The logger is looked up at release: before the invoke the
				// invocation has none (nil), and a failed release logs.
				defer func() { releaseLease(ctx, l, cmp.Or(cs.inv.Logger(), s0.Logger())) }()
				cs.lease = l
			}
		}
		s, err := d.invoke(ctx, name, runtime.EntryEvent, cs)
		if err != nil {
			return fmt.Errorf("service %s: handling %s: %w", name, ev.Type, err)
		}
		if cs.call.Code != abi.CodeOK {
			return fmt.Errorf("service %s: handler for %s failed (%s): %s", name, ev.Type, cs.call.Code, truncate(cs.call.Output, 200))
		}
		if err := checkWrites(s.Events(), ev.Type, cs.inv.Writes); err != nil {
			return fmt.Errorf("service %s: %w", name, err)
		}
		// A read model's projections are idempotent merges that a replay
		// rebuilds: their writes skip the atomic batch, which costs more
		// than writes sent one by one (see kv.Store.ApplyEach).
		if err := d.apply(ctx, s, &cs.inv, !s.Events().ReadModelType(ev.Type), cs.lease, false); err != nil {
			return fmt.Errorf("service %s: %w", name, leaseLost(err))
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

// Interface guards.
var _ gateway.Invoker = (*Dispatcher)(nil)
