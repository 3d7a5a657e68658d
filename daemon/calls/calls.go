package calls

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/config"
	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/host/fault"
	"github.com/meshd/meshd/host/mesh"
	"github.com/meshd/meshd/host/registry"
)

// Invoker runs a call on a callee's HTTP entry point (dispatch's
// InvokeCall): req's Route and Params are set, ctx carries the deadline
// and the depth. It must not keep req or change its bytes.
type Invoker func(ctx context.Context, service string, req *abi.Request, resp *abi.Response) error

// Matcher finds the route of service a call reaches (gateway.Match). It
// must not keep method or path: they may be the request's bytes.
type Matcher func(service, method, path string) (route string, params []abi.Pair, ok bool)

// Configured is a served version whose service file may tune its calls
// (service.Service).
type Configured interface {
	ServiceFile() *config.Service
}

// Calls is the daemon's service-to-service calls.
type Calls struct {
	reg    *registry.Registry
	invoke Invoker
	match  Matcher
	log    *slog.Logger
	client *mesh.Client

	cache  atomic.Pointer[targets]       // targets by service, at a registry generation
	remote atomic.Pointer[mesh.Resolver] // other nodes' targets, when none is UP here (SetRemote)

	mu      sync.Mutex                        // the settings below, and rebuilds of cache
	applied map[string]map[string]config.Call // caller → its [calls.<callee>] tables, as applied
}

// targets is the callees' targets at one registry generation.
type targets struct {
	gen uint64
	by  map[string][]mesh.Target
}

// New returns the daemon's calls over reg's UP services. opts are the
// mesh client's (the logger is set here).
func New(reg *registry.Registry, invoke Invoker, match Matcher, log *slog.Logger, opts ...mesh.Option) (*Calls, error) {
	c := &Calls{reg: reg, invoke: invoke, match: match, log: log, applied: make(map[string]map[string]config.Call)}
	client, err := mesh.New(c.resolve, append([]mesh.Option{mesh.WithLogger(log)}, opts...)...)
	if err != nil {
		return nil, err
	}
	c.client = client
	return c, nil
}

// SetRemote makes r the targets of a callee with no UP instance on this
// node: the other nodes of a mesh serving it (cluster.Node.Targets). Nil
// turns it off.
func (c *Calls) SetRemote(r mesh.Resolver) {
	if r == nil {
		c.remote.Store(nil)
		return
	}
	c.remote.Store(&r)
}

// remoteTargets is the other nodes' targets of service, nil without a
// mesh.
func (c *Calls) remoteTargets(service string) []mesh.Target {
	if r := c.remote.Load(); r != nil {
		return (*r)(service)
	}
	return nil
}

// Forward sends a request this node cannot serve to a node of the mesh
// that serves service, through the mesh client as caller (its deadline:
// ctx's; its retries: safe methods only; its breaker and 503 answers),
// for the gateway.
func (c *Calls) Forward(ctx context.Context, caller, service string, req *abi.Request, resp *abi.Response) error {
	if t := c.cache.Load(); t == nil || t.gen != c.reg.Generation() {
		c.refresh()
	}
	var o mesh.CallOptions
	if dl, ok := ctx.Deadline(); ok {
		o.Timeout = max(time.Until(dl), time.Millisecond)
	}
	return c.client.Call(ctx, caller, service, req, resp, o)
}

// Collector is the mesh client's metrics (meshd_breaker_state,
// meshd_breaker_transitions_total, meshd_call_retries_total,
// meshd_call_retries_refused_total).
func (c *Calls) Collector() prometheus.Collector { return c.client.Collector() }

// Call is host.Env.Call: the binding checked the grant, the callee's name,
// the request and the depth; the mesh client does the rest. A callee the
// registry does not know at all is NotFound (an unknown service); one it
// knows with no UP instance is Unavailable, at once.
func (c *Calls) Call(ctx context.Context, call *host.ServiceCall, resp *abi.Response) error {
	if _, ok := c.reg.Status(call.Callee); !ok && len(c.remoteTargets(call.Callee)) == 0 {
		return fault.New(call.Callee, fault.NotFound, fmt.Errorf("calls: no service %s", call.Callee))
	}
	if t := c.cache.Load(); t == nil || t.gen != c.reg.Generation() {
		c.refresh() // the service files' settings, before the client reads them
	}
	if mesh.DepthFrom(ctx) != call.Depth-1 { // the caller's context carries it already when it was called
		ctx = mesh.WithDepth(ctx, call.Depth-1)
	}
	return c.client.Call(ctx, call.Caller, call.Callee, call.Request, resp, mesh.CallOptions{Retryable: call.Retryable})
}

// Breakers is the breakers of caller's calls, by callee (an empty slice
// when it made none), for /v1/services.
func (c *Calls) Breakers(caller string) []mesh.BreakerInfo {
	c.refresh()
	out := []mesh.BreakerInfo{}
	for _, b := range c.client.Snapshot() {
		if b.Caller == caller {
			out = append(out, b)
		}
	}
	return out
}

// resolve is the mesh client's Resolver: the targets of service, from a
// cache rebuilt when the registry changed (no allocation otherwise).
func (c *Calls) resolve(service string) []mesh.Target {
	t := c.cache.Load()
	if t == nil || t.gen != c.reg.Generation() {
		t = c.refresh()
	}
	if ts := t.by[service]; len(ts) > 0 {
		return ts
	}
	return c.remoteTargets(service)
}

// refresh rebuilds the targets when the registry changed since they were
// built, and applies the service files' [calls.<callee>] tables of the
// versions served now (a load, a reload of the service file, a removal
// all change the registry's generation).
func (c *Calls) refresh() *targets {
	c.mu.Lock()
	defer c.mu.Unlock()
	gen := c.reg.Generation() // before reading: a change meanwhile makes the next call rebuild
	old := c.cache.Load()
	if old != nil && old.gen == gen {
		return old
	}
	t := &targets{gen: gen, by: make(map[string][]mesh.Target)}
	served := make(map[string]map[string]config.Call)
	for _, in := range c.reg.Locals() {
		if cf, ok := in.Local.(Configured); ok {
			served[in.Service] = cf.ServiceFile().Calls
		}
		if in.Status != registry.Up {
			continue
		}
		// A target is the service's name: dispatch resolves the version
		// at each call. Keep the one made before, with its count.
		var tg mesh.Target
		if old != nil && len(old.by[in.Service]) == 1 {
			tg = old.by[in.Service][0]
		} else {
			tg = &target{c: c, service: in.Service}
		}
		t.by[in.Service] = []mesh.Target{tg}
	}
	c.applyLocked(served)
	c.cache.Store(t)
	return t
}

// applyLocked brings the mesh client's settings to the service files of
// the versions served now: pair timeouts, breaker thresholds per callee
// (the first caller by name that sets any, the disagreement logged), and
// everything of a service no longer served forgotten.
func (c *Calls) applyLocked(served map[string]map[string]config.Call) {
	changed := false
	for caller := range c.applied {
		if _, ok := served[caller]; !ok {
			c.client.Forget(caller)
			delete(c.applied, caller)
			changed = true
		}
	}
	for caller, tables := range served {
		prev, seen := c.applied[caller]
		if seen && maps.Equal(prev, tables) {
			continue
		}
		changed = true
		for callee := range prev {
			if _, ok := tables[callee]; !ok {
				_ = c.client.SetPairTimeout(caller, callee, 0)
			}
		}
		for callee, t := range tables {
			if err := c.client.SetPairTimeout(caller, callee, t.Timeout.Duration); err != nil {
				c.log.Warn("call timeout not applied", slog.String("caller", caller), slog.String("callee", callee), slog.Any("error", err))
			}
		}
		c.applied[caller] = maps.Clone(tables)
	}
	if !changed {
		return
	}
	// Breaker thresholds are per callee: the first caller by name that
	// sets any for it wins.
	chosen := make(map[string]string) // callee → caller whose thresholds apply
	for _, caller := range slices.Sorted(maps.Keys(c.applied)) {
		for callee, t := range c.applied[caller] {
			if t.Breaker() == (mesh.Settings{}) {
				continue
			}
			if first, ok := chosen[callee]; ok {
				if c.applied[first][callee].Breaker() != t.Breaker() {
					c.log.Warn("two service files set different breaker thresholds for one callee; the first caller's apply",
						slog.String("callee", callee), slog.String("applied", first), slog.String("ignored", caller))
				}
				continue
			}
			chosen[callee] = caller
		}
	}
	callees := make(map[string]bool)
	for _, tables := range c.applied {
		for callee := range tables {
			callees[callee] = true
		}
	}
	for callee := range callees {
		s := mesh.Settings{}
		if caller, ok := chosen[callee]; ok {
			s = c.applied[caller][callee].Breaker()
		}
		if err := c.client.SetBreakerSettings(callee, s); err != nil {
			c.log.Warn("breaker thresholds not applied", slog.String("callee", callee), slog.Any("error", err))
		}
	}
}

// target is a service served on this node, as the mesh client picks it.
type target struct {
	c        *Calls
	service  string
	inFlight atomic.Int64
}

// maxShownPath bounds a call's path in an error message.
const maxShownPath = 128

func (t *target) Invoke(ctx context.Context, req *abi.Request, resp *abi.Response) error {
	t.inFlight.Add(1)
	defer t.inFlight.Add(-1)
	// Match keeps no string it is given (its cache copies them): the
	// request's bytes serve as they are.
	route, params, ok := t.c.match(t.service, bytesString(req.Method), bytesString(req.Path))
	if !ok {
		path := req.Path
		if len(path) > maxShownPath {
			path = path[:maxShownPath]
		}
		return fault.New(t.service, fault.NotFound,
			fmt.Errorf("calls: no route of %s matches %s %s", t.service, strconv.Quote(string(req.Method)), strconv.Quote(string(path))))
	}
	// The mesh client's request gets the route for this attempt only: the
	// invocation encodes it at once, and it is put back as it was.
	was, wasParams := req.Route, req.Params
	req.Route, req.Params = unsafe.Slice(unsafe.StringData(route), len(route)), params // read, never written
	err := t.c.invoke(ctx, t.service, req, resp)
	req.Route, req.Params = was, wasParams
	return err
}

// bytesString is b as a string over the same bytes, for a callee that
// reads it and keeps no reference.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func (t *target) InFlight() int { return int(t.inFlight.Load()) }

// Interface guards.
var (
	_ mesh.Target = (*target)(nil)
	_ host.Caller = (*Calls)(nil).Call
)
