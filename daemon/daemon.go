package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshd/meshd/daemon/admission"
	"github.com/meshd/meshd/daemon/calls"
	"github.com/meshd/meshd/daemon/cluster"
	"github.com/meshd/meshd/daemon/dispatch"
	"github.com/meshd/meshd/daemon/service"
	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/gateway"
	"github.com/meshd/meshd/host/natsd"
	"github.com/meshd/meshd/host/registry"
	"github.com/meshd/meshd/runtime"
)

// ErrClosed is returned by Start after Shutdown.
var ErrClosed = errors.New("daemon: shut down")

// Lock order. A goroutine holding one of these locks takes only locks
// further down the list:
//
//  1. a service's lock (reload.services, one per service name): held for
//     the whole of a load or removal of that service, so that its changes
//     apply one at a time, in order (reload.go);
//  2. reload.mu: the checks and the swap of a load, a removal, and the
//     start's route-conflict decision, one at a time (reload.go);
//  3. Daemon.mu: the swap itself: the gateway's route set and the
//     version the registry serves (registry.Serve, Withdraw) change
//     together under it;
//  4. the registry's lock (host/registry), taken by every lookup of a
//     served version (dispatch, admin views) and by Serve and Withdraw:
//     nothing is taken under it.
//
// Leaves, each held for a map or field update only and taking nothing:
// the stage's lock (service.Stage), the load gate's (reload.gate,
// daemon/internal/loadgate), reload.wmu, reload.errMu, obs.mu. The change
// coalescer's lock (reload.changes, daemon/internal/coalesce) takes only
// the load gate's under it (starting a service's worker). The
// configuration file reloader's lock (daemon/configfile) is held for a
// whole configuration reload and takes only the gateway's own lock under
// it.
//
// The serial groups of event handlers (dispatch.Dispatcher, one set per
// service name) are held by event handlers and replays around an
// invocation and its effects, never by a load or a swap; under them only
// the registry's lock is taken (the lookup of the served version).

// Daemon is one meshd node.
type Daemon struct {
	cfg Config
	log *slog.Logger

	engine   *runtime.Engine
	nats     *natsd.Server
	bus      *bus.Bus
	registry *registry.Registry
	dispatch *dispatch.Dispatcher
	calls    *calls.Calls    // service-to-service calls (daemon/calls)
	health   *service.Health // DOWN on repeated failures
	gateway  *gateway.Gateway
	admit    gateway.Admission // the gateway's, and of requests other nodes' gateways forward here
	invoker  *cluster.Invoker  // the gateway's: local services, else forwarded to other nodes
	cluster  *cluster.Node     // the mesh of nodes on a NATS cluster; nil alone
	server   *http.Server
	listener net.Listener

	mu       sync.Mutex  // held for a swap: the gateway's route set and the services the registry serves change together
	reload   reloadState // hot reload: watcher, load lock, load errors (reload.go)
	kvCaches sync.Map    // service name → *kv.Cache its stores share, every version (prepare.go)
	conf     configState // the configuration file, reloaded (configfile.go)

	builder *service.Builder // builds services (prepare.go)
	stage   *service.Stage   // services prepared ahead of their load
	obs     observability    // metrics and the admin listener (metrics.go, admin.go)

	serveDone chan error
	closed    atomic.Bool
}

// New validates cfg and prepares a daemon; Start brings it up.
func New(cfg Config, log *slog.Logger) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	transitions := service.NewTransitionsCounter()
	d := &Daemon{
		cfg:      cfg,
		log:      log,
		registry: registry.New(registry.WithObserver(service.StatusLog(log, cfg.Node, transitions))),
	}
	d.initObservability()
	d.health = service.NewHealth(d.registry, log, 0, 0, 0)
	// Serial event handlers hold mesh-wide where other nodes may share
	// the NATS (a cluster, an operator's server): a lease per key.
	d.dispatch = dispatch.New(d.registry, dispatch.WithMetrics(d.obs.metrics), dispatch.WithHealth(d.health.Observe),
		dispatch.WithMeshSerial(cfg.InMesh()))
	d.invoker = cluster.NewInvoker(d.dispatch, d.registry)
	d.gateway = gateway.New(gateway.Config{
		MaxBodyBytes:   cfg.MaxBodyBytes,
		RequestTimeout: cfg.RequestTimeout,
		Observe:        d.observeRequest(),
	}, d.invoker, log.With(slog.String("component", "gateway")))
	if err := d.gateway.SetPolicies(cfg.Gateway); err != nil {
		return nil, fmt.Errorf("gateway policies:\n%w", err)
	}
	var err error
	if d.calls, err = calls.New(d.registry, d.dispatch.InvokeCall, d.gateway.Match, log.With(slog.String("component", "calls"))); err != nil {
		return nil, err
	}
	if m := d.obs.metrics; m != nil {
		m.Registry().MustRegister(d.calls.Collector(), service.StatusCollector(d.registry), transitions)
	}
	return d, nil
}

// Start starts NATS, the bus, loads every module in the plugin directory
// and starts serving HTTP. A module that fails to load is logged and skipped;
// the others serve. On error everything started so far is stopped.
func (d *Daemon) Start(ctx context.Context) (err error) {
	if d.closed.Load() {
		return ErrClosed
	}
	defer func() {
		if err != nil {
			_ = d.Shutdown(context.Background())
		}
	}()
	if err := os.MkdirAll(d.cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("daemon: data directory: %w", err)
	}
	cacheDir := d.cfg.CacheDir
	if cacheDir == "" {
		cacheDir = filepath.Join(d.cfg.DataDir, "cache")
	}
	d.engine, err = runtime.NewEngine(runtime.EngineConfig{CacheDir: cacheDir, DebugInfo: d.cfg.WasmDebugInfo})
	if err != nil {
		return fmt.Errorf("daemon: wasm engine: %w", err)
	}
	d.newBuilder()
	d.compileDir(ctx) // overlaps NATS's start; loadDir finishes it
	d.nats, err = natsd.Start(ctx, natsd.Config{
		DataDir:  d.cfg.DataDir,
		URL:      d.cfg.NATSURL,
		Listen:   d.cfg.NATSListen,
		Sync:     d.cfg.Sync == "always",
		Name:     d.cfg.Node,
		Auth:     d.cfg.NATSAuth,
		Cluster:  d.cfg.Cluster,
		Replicas: d.cfg.Replicas,
	}, d.log.With(slog.String("component", "nats")))
	if err != nil {
		return fmt.Errorf("daemon: nats: %w", err)
	}
	events := d.cfg.Events
	events.Replicas = d.nats.Replicas(d.cfg.Replicas)
	err = cluster.Settle(ctx, d.settle(), d.log, "event bus", func(ctx context.Context) (err error) {
		d.bus, err = bus.New(ctx, d.nats.JetStream(), events, d.log.With(slog.String("component", "bus")))
		return err
	})
	if err != nil {
		return fmt.Errorf("daemon: event bus: %w", err)
	}
	d.dispatch.SetBus(d.bus)
	d.admit = admission.New(d.registry, d.bus).Admit
	d.gateway.SetAdmission(d.admit) // shed routes whose events fall behind
	// Watch first, so a file that changes while the directory loads is
	// reported (a change to the bytes just loaded is a no-op).
	if err := d.startWatcher(ctx); err != nil {
		return err
	}
	if err := d.startConfig(ctx); err != nil {
		return err
	}
	d.loadDir(ctx)
	if err := d.startCluster(ctx); err != nil {
		return err
	}

	d.listener, err = net.Listen("tcp", d.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("daemon: http: %w", err)
	}
	d.server = gateway.NewServer(d.cfg.HTTPAddr, d.gateway, d.cfg.Server)
	d.serveDone = make(chan error, 1)
	go func() { d.serveDone <- gateway.Serve(d.server, d.listener, d.cfg.Server) }()
	if err := d.startAdmin(ctx); err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	d.log.Info("meshd serving", slog.String("http", d.listener.Addr().String()),
		slog.Int("services", len(d.Services())))
	return nil
}

// Addr is the gateway's listening address (useful with port 0).
func (d *Daemon) Addr() string {
	if d.listener == nil {
		return ""
	}
	return d.listener.Addr().String()
}

// Handler is the gateway, for in-process use.
func (d *Daemon) Handler() http.Handler { return d.gateway }

// Registry is the service registry.
func (d *Daemon) Registry() *registry.Registry { return d.registry }

// Bus is the event bus.
func (d *Daemon) Bus() *bus.Bus { return d.bus }

// Services returns the names of the loaded services, sorted.
func (d *Daemon) Services() []string {
	var names []string
	for _, s := range d.locals() {
		names = append(names, s.Name())
	}
	return names
}

// loadDir loads every *.wasm file of the plugin directory.
func (d *Daemon) loadDir(ctx context.Context) {
	entries, err := os.ReadDir(d.cfg.PluginDir)
	if err != nil {
		d.log.Error("cannot read plugin directory", slog.String("dir", d.cfg.PluginDir), slog.Any("error", err))
		return
	}
	// The slow part of each load at once; then route conflicts, decided
	// with every declaration at hand (routeconflict.go), so that name order
	// does not decide who gets a contested route; then the checks and swaps
	// one by one in name order.
	paths := d.pluginPaths()
	d.stage.PrepareAll(ctx, paths)
	defer d.dropPrepared()
	refused := d.refuseStartConflicts(ctx, paths)
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".wasm") {
			continue
		}
		path := filepath.Join(d.cfg.PluginDir, e.Name())
		if refused[path] {
			continue
		}
		if wasm := d.stage.Bytes(path); wasm != nil {
			_ = d.loadLogged(ctx, path, wasm) // logs a refusal
		} else {
			_ = d.LoadFile(ctx, path)
		}
	}
}

// startCluster makes a node on a NATS others reach one of the mesh
// (daemon/cluster): a node of an embedded cluster (--cluster-listen), or
// one connected to an operator's NATS (--nats-url), a mesh of one when
// no other node shares it. It answers for its services, announces them,
// and serves other nodes' services through its gateway and calls. A node
// alone on its embedded server has no one to share with, and skips it.
func (d *Daemon) startCluster(ctx context.Context) error {
	if !d.cfg.InMesh() {
		return nil
	}
	rebuild := func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if err := d.gateway.SetRoutes(d.routesLocked(nil)); err != nil {
			d.log.Error("rebuilding routes with other nodes' routes", slog.Any("error", err))
		}
	}
	n, err := cluster.Start(ctx, cluster.Config{
		Node: d.cfg.Node, Conn: d.nats.Conn(), JS: d.nats.JetStream(), Registry: d.registry,
		Match: d.gateway.Match, Invoke: d.dispatch.InvokeCall, Admit: d.admit, RoutesChanged: rebuild, Settle: d.settle(),
		Replicas: d.nats.Replicas(d.cfg.Replicas),
		Log:      d.log.With(slog.String("component", "cluster")),
	})
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	d.mu.Lock() // routesLocked reads d.cluster under it
	d.cluster = n
	d.mu.Unlock()
	d.calls.SetRemote(n.Targets)
	d.invoker.SetForward(d.calls.Forward, func(service string) bool { return len(n.Targets(service)) > 0 })
	rebuild()
	return nil
}

// settle bounds the retries of a start on a cluster still forming, or
// whose nodes create the same streams at once (cluster.Settle): twice the
// embedded cluster's wait; twice natsd.DefaultClusterWait on an external
// server of a cluster; none alone or on a standalone external server.
func (d *Daemon) settle() time.Duration {
	switch {
	case d.cfg.Cluster != nil:
		return 2 * cmp.Or(d.cfg.Cluster.Wait, natsd.DefaultClusterWait)
	case d.nats != nil && d.nats.Clustered():
		return 2 * natsd.DefaultClusterWait
	}
	return -1
}

// meshRoutes is local plus the routes other nodes of the mesh serve for
// services this node does not (cluster.Node.Routes).
func (d *Daemon) meshRoutes(local []gateway.Route) []gateway.Route {
	if d.cluster == nil {
		return local
	}
	locals := make(map[string]bool)
	for _, in := range d.registry.Locals() {
		locals[in.Service] = true
	}
	for _, r := range local {
		locals[r.Service] = true
	}
	return d.cluster.Routes(local, locals)
}

// Shutdown stops taking requests, lets in-flight requests and event
// handlers finish (bounded by ctx and the drain timeout), then stops every
// service, the bus and NATS. It is safe to call more than once.
func (d *Daemon) Shutdown(ctx context.Context) error {
	if !d.closed.CompareAndSwap(false, true) {
		return nil
	}
	// Stop reacting to file drops first (cancels a load in progress).
	_ = d.stopWatchers(ctx)
	ctx, cancel := context.WithTimeout(ctx, d.cfg.DrainTimeout)
	defer cancel()
	var errs []error
	if d.cluster != nil { // other nodes stop sending here; calls from them finish
		d.invoker.SetForward(nil, nil)
		d.calls.SetRemote(nil)
		errs = append(errs, d.cluster.Close(ctx))
	}
	if d.server != nil {
		if err := d.server.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http: %w", err))
			_ = d.server.Close()
		}
		if err := <-d.serveDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("http: %w", err))
		}
	}
	_ = d.gateway.Close() // stops JWKS refreshes
	d.health.Close()
	// Replays (admin jobs) use the services, bus and stores closed below.
	errs = append(errs, d.stopJobs(ctx))
	svcs := d.locals()
	// Subscriptions stop while every service is still loaded: the events
	// they fetched are handled (Subscription.Stop drains), not failed for a
	// missing service and left for a redelivery after the restart.
	service.StopAll(ctx, svcs)
	d.dispatch.CloseOutbox() // records not relayed stay for the next start
	d.mu.Lock()
	for _, s := range svcs {
		d.registry.Withdraw(s.Name(), s.Version(), d.cfg.Node)
	}
	d.mu.Unlock()
	for _, s := range svcs {
		errs = append(errs, s.Close(ctx))
	}
	if d.bus != nil {
		errs = append(errs, d.bus.Close(ctx))
	}
	if d.nats != nil {
		errs = append(errs, d.nats.Close())
	}
	d.dropPrepared() // a start that failed before loadDir: waits for compileDir's jobs
	if d.engine != nil {
		errs = append(errs, d.engine.Close(ctx))
	}
	errs = append(errs, d.closeAdmin(ctx)) // last: /readyz says 503 while draining
	return errors.Join(errs...)
}
