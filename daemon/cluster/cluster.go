package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/admin"
	"github.com/meshd/meshd/host/fault"
	"github.com/meshd/meshd/host/gateway"
	"github.com/meshd/meshd/host/mesh"
	"github.com/meshd/meshd/host/registry"
	"github.com/meshd/meshd/host/remote"
	"github.com/meshd/meshd/runtime"
)

// Matcher finds the route of service a request reaches (gateway.Match).
type Matcher func(service, method, path string) (route string, params []abi.Pair, ok bool)

// Invoke runs a call on a local service's HTTP entry point
// (dispatch.Dispatcher.InvokeCall).
type Invoke func(ctx context.Context, service string, req *abi.Request, resp *abi.Response) error

// Config is what a Node is wired to.
type Config struct {
	Node     string // this node's name (letters, digits, '.', '_', '-')
	Conn     *nats.Conn
	JS       jetstream.JetStream
	Registry *registry.Registry
	Match    Matcher
	Invoke   Invoke
	// Admit, when set, is the gateway admission of this node's services
	// (admission.Admission.Admit): a request another node's gateway
	// forwards here is shed as this node's gateway would shed it, answered
	// fault.Overloaded. Calls between services are not shed.
	Admit func(service, route string) (shed bool, retryAfter time.Duration)
	// RoutesChanged is called when the routes other nodes announce
	// changed: the daemon rebuilds its gateway's route set (Routes).
	RoutesChanged func()
	// Replicas is the copies of the directory's bucket.
	Replicas int
	// Settle bounds the retries of the directory's start (see Settle).
	Settle time.Duration
	Log    *slog.Logger
}

// syncEvery is how often a Node brings its answering subscriptions and its
// announcement in step with the registry.
const syncEvery = 200 * time.Millisecond

// Node is this node's part of the mesh.
type Node struct {
	cfg     Config
	server  *remote.Server
	dir     *remote.Directory
	remotes *remote.Remotes

	mu      sync.Mutex
	targets map[string][]mesh.Target // wrapped remote targets, by service
	logged  map[string]bool          // route conflicts logged, by service and pattern
	served  map[string]bool          // services answered for
	// known is the other nodes' routes Routes last saw, by node then
	// service; gone the routes kept of services whose nodes went
	// (GoneKeep; goneKeep in tests).
	known    map[string]map[string][]gateway.Route
	gone     map[string]goneRoutes
	goneKeep time.Duration

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// Start starts answering, announcing and watching.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	n := &Node{cfg: cfg, targets: make(map[string][]mesh.Target), logged: make(map[string]bool),
		gone: make(map[string]goneRoutes), goneKeep: GoneKeep,
		stop: make(chan struct{}), done: make(chan struct{})}
	var err error
	n.server, err = remote.NewServer(cfg.Conn, remote.ServerConfig{Node: cfg.Node, Log: cfg.Log})
	if err != nil {
		return nil, fmt.Errorf("cluster: %w (--node)", err)
	}
	// Before answering or announcing anything: a node that took the name
	// of a live one would take over its announcement and its calls.
	taken := false
	err = Settle(ctx, cfg.Settle, cfg.Log, "node name check", func(ctx context.Context) (err error) {
		taken, err = checkName(ctx, cfg.JS, cfg.Node, takenWait)
		return err
	})
	if err == nil && taken {
		err = nameTaken(cfg.Node)
	} else if err != nil {
		err = fmt.Errorf("cluster: node name check: %w", err)
	}
	if err != nil {
		_ = n.server.Close(ctx)
		return nil, err
	}
	n.sync() // answer before announcing
	err = Settle(ctx, cfg.Settle, cfg.Log, "directory", func(ctx context.Context) (err error) {
		n.dir, err = remote.StartDirectory(ctx, cfg.JS, remote.DirectoryConfig{
			Node: cfg.Node, Local: n.local, Log: cfg.Log, Replicas: cfg.Replicas,
			OnChange: func() {
				if cfg.RoutesChanged != nil {
					cfg.RoutesChanged()
				}
			},
		})
		return err
	})
	if err != nil {
		_ = n.server.Close(ctx)
		return nil, fmt.Errorf("cluster: %w", err)
	}
	n.remotes = remote.NewRemotes(cfg.Conn, n.dir)
	go n.loop()
	return n, nil
}

// loop keeps the answering subscriptions in step with the registry, and
// announces at once when what this node serves changed.
func (n *Node) loop() {
	defer close(n.done)
	t := time.NewTicker(syncEvery)
	defer t.Stop()
	gen := n.cfg.Registry.Generation()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		if g := n.cfg.Registry.Generation(); g != gen {
			gen = g
			n.sync()
			n.dir.Announce()
		}
		if n.cfg.RoutesChanged != nil && n.goneExpired(time.Now()) {
			n.cfg.RoutesChanged() // drops them (Routes)
		}
	}
}

// sync answers for the services this node serves UP, and stops answering
// for the others (so NATS hands their calls to other nodes).
func (n *Node) sync() {
	up := make(map[string]bool)
	for _, in := range n.cfg.Registry.Locals() {
		if in.Status == registry.Up {
			up[in.Service] = true
		}
	}
	for service := range up {
		if err := n.server.Serve(service, n.handler(service)); err != nil && !errors.Is(err, remote.ErrClosed) {
			n.cfg.Log.Warn("cluster: cannot answer calls from other nodes", slog.String("service", service), slog.String("error", err.Error()))
		}
	}
	n.mu.Lock()
	prev := n.served
	n.served = up
	n.mu.Unlock()
	for service := range prev {
		if !up[service] {
			_ = n.server.Stop(service)
		}
	}
}

// handler runs a call from another node on the local service: its route
// matched here, then the dispatcher.
func (n *Node) handler(service string) remote.Handler {
	return func(ctx context.Context, req *abi.Request, resp *abi.Response) error {
		route, params, ok := n.cfg.Match(service, string(req.Method), string(req.Path))
		if !ok {
			return fault.New(service, fault.NotFound, fmt.Errorf("cluster: no route of %s matches %s %s",
				service, strconv.Quote(bound(string(req.Method), 16)), strconv.Quote(bound(string(req.Path), 128))))
		}
		if n.cfg.Admit != nil && !bytes.HasPrefix(req.Consumer, []byte(abi.ConsumerPrefix)) {
			if shed, after := n.cfg.Admit(service, route); shed {
				return &fault.Error{Service: service, Kind: fault.Overloaded, RetryAfter: after,
					Err: fmt.Errorf("cluster: %s on node %s: %s", route, n.cfg.Node, gateway.ShedDetail)}
			}
		}
		req.Route, req.Params = []byte(route), params
		return n.cfg.Invoke(ctx, service, req, resp)
	}
}

func bound(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// routed is a served version that declares routes (service.Service).
type routed interface{ Routes() []gateway.Route }

// moduled is a served version with a module (service.Service).
type moduled interface{ Module() *runtime.Module }

// local is what this node announces: every version it serves, with its
// load and public routes.
func (n *Node) local() []remote.Service {
	var out []remote.Service
	for _, in := range n.cfg.Registry.Locals() {
		s := remote.Service{Service: in.Service, Version: in.Version, Status: string(in.Status), Load: n.server.InFlight(in.Service)}
		if m, ok := in.Local.(moduled); ok && m.Module() != nil {
			st := m.Module().Stats()
			s.Load += max(st.Live-st.Idle, 0)
		}
		if r, ok := in.Local.(routed); ok {
			for _, rt := range r.Routes() {
				if !rt.Internal && len(s.Routes) < remote.MaxRoutes {
					s.Routes = append(s.Routes, remote.Route{Method: rt.Method, Path: rt.Path})
				}
			}
		}
		out = append(out, s)
	}
	return out
}

// Targets is the other nodes serving service UP, as mesh targets (nil
// when none does): the calls' resolver asks it when this node has no UP
// instance.
func (n *Node) Targets(service string) []mesh.Target {
	ts := n.remotes.Targets(service)
	if len(ts) == 0 {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if w, ok := n.targets[service]; ok && len(w) == 1 && w[0].(*consumerTarget).Target == ts[0] {
		return w
	}
	w := []mesh.Target{&consumerTarget{Target: ts[0]}}
	n.targets[service] = w
	return w
}

// Routes is local plus the public routes other nodes announce for services
// this node does not serve (locals: their names), and those of services
// whose every node went less than GoneKeep ago (forwarded, they answer
// 503), leaving out any that conflicts with a local route or a remote one
// taken before it (services by name), each logged once.
func (n *Node) Routes(local []gateway.Route, locals map[string]bool) []gateway.Route {
	return n.routes(time.Now(), n.dir.Instances(), local, locals)
}

func (n *Node) routes(now time.Time, ins []remote.Instance, local []gateway.Route, locals map[string]bool) []gateway.Route {
	cur := announcedRoutes(ins)
	n.mu.Lock()
	kept := n.rememberLocked(now, cur)
	n.mu.Unlock()
	byService := make(map[string][]gateway.Route)
	add := func(service string, rs []gateway.Route) {
		if locals[service] {
			return
		}
		for _, r := range rs {
			if !slices.Contains(byService[service], r) {
				byService[service] = append(byService[service], r)
			}
		}
	}
	for _, svcs := range cur {
		for service, rs := range svcs {
			add(service, rs)
		}
	}
	for service, rs := range kept {
		add(service, rs)
	}
	for _, rs := range byService { // the order nodes were seen in does not matter
		slices.SortFunc(rs, func(a, b gateway.Route) int { return strings.Compare(a.Pattern(), b.Pattern()) })
	}
	out := slices.Clone(local)
	check := gateway.New(gateway.Config{}, nil, nil)
	for _, service := range sortedKeys(byService) {
		rs := byService[service]
		if check.SetRoutes(append(slices.Clip(out), rs...)) == nil {
			out = append(out, rs...)
			continue
		}
		for _, r := range rs { // one by one: take those that fit
			if err := check.SetRoutes(append(slices.Clip(out), r)); err != nil {
				n.conflict(r, err)
				continue
			}
			out = append(out, r)
		}
	}
	return out
}

func (n *Node) conflict(r gateway.Route, err error) {
	key := r.Service + " " + r.Pattern()
	n.mu.Lock()
	seen := n.logged[key]
	n.logged[key] = true
	if len(n.logged) > 4096 {
		clear(n.logged)
	}
	n.mu.Unlock()
	if !seen {
		n.cfg.Log.Warn("cluster: a route another node announces is not served here: it conflicts with a route served already (a local one wins)",
			slog.String("service", r.Service), slog.String("route", bound(r.Pattern(), 256)), slog.String("error", bound(err.Error(), 512)))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Services is the other nodes' service versions for /v1/services, each
// with its node.
func (n *Node) Services() []admin.Service {
	var out []admin.Service
	for _, in := range n.dir.Instances() {
		s := admin.Service{Name: in.Service, Version: in.Version, Status: in.Status, Node: in.Node,
			Instances: admin.Instances{Busy: in.Load}, Routes: []string{}, Subscriptions: []string{}, Publishes: []string{},
			Grants: admin.Grants{Publish: []string{}, Subscribe: []string{}, Discover: []string{}}}
		for _, r := range in.Routes {
			s.Routes = append(s.Routes, r.Method+" "+r.Path)
		}
		out = append(out, s)
	}
	return out
}

// Close stops announcing (the other nodes drop this one at once), then
// answering, letting the calls running finish until ctx ends.
func (n *Node) Close(ctx context.Context) error {
	var errs []error
	n.once.Do(func() {
		close(n.stop)
		<-n.done
		errs = append(errs, n.dir.Close(ctx), n.server.Close(ctx))
	})
	return errors.Join(errs...)
}

// consumerKey carries the consumer a forwarded gateway request keeps.
type consumerKey struct{}

// consumerTarget sends a call to another node with the consumer the
// gateway authenticated, when the call forwards a gateway request (the
// mesh client sets "service:<caller>" on every call).
type consumerTarget struct{ mesh.Target }

func (t *consumerTarget) Invoke(ctx context.Context, req *abi.Request, resp *abi.Response) error {
	if c, ok := ctx.Value(consumerKey{}).(string); ok {
		r := *req
		r.Consumer = []byte(c)
		req = &r
	}
	return t.Target.Invoke(ctx, req, resp)
}

// Forward is how the gateway reaches a service only other nodes serve:
// the daemon's calls' Forward.
type Forward func(ctx context.Context, caller, service string, req *abi.Request, resp *abi.Response) error

// Invoker is the gateway's invoker on a node that may be one of a mesh:
// a service UP here is invoked locally (a local service always wins); one
// not UP here (refused at load, DOWN, drained) is forwarded when another
// node serves it, else answered here (503 with this node's reason); any
// other is forwarded, once SetForward is called.
type Invoker struct {
	local   gateway.Invoker
	reg     *registry.Registry
	forward atomic.Pointer[forwarding]
}

// forwarding is what SetForward sets: how to forward, and whether another
// node serves a service UP.
type forwarding struct {
	f         Forward
	elsewhere func(service string) bool
}

// GatewayCaller is the caller name of the gateway's forwarded requests
// (its breakers and retry budget).
const GatewayCaller = "gateway"

// NewInvoker returns the gateway's invoker over the local one.
func NewInvoker(local gateway.Invoker, reg *registry.Registry) *Invoker {
	return &Invoker{local: local, reg: reg}
}

// SetForward turns forwarding on (f nil: off). elsewhere reports whether
// another node serves a service UP (Node.Targets); nil means none does.
func (i *Invoker) SetForward(f Forward, elsewhere func(service string) bool) {
	if f == nil {
		i.forward.Store(nil)
		return
	}
	if elsewhere == nil {
		elsewhere = func(string) bool { return false }
	}
	i.forward.Store(&forwarding{f: f, elsewhere: elsewhere})
}

// InvokeHTTP implements gateway.Invoker.
func (i *Invoker) InvokeHTTP(ctx context.Context, service string, req *abi.Request, resp *abi.Response) error {
	fw := i.forward.Load()
	if fw == nil {
		return i.local.InvokeHTTP(ctx, service, req, resp)
	}
	if st, ok := i.reg.Status(service); ok && (st == registry.Up || !fw.elsewhere(service)) {
		return i.local.InvokeHTTP(ctx, service, req, resp)
	}
	ctx = context.WithValue(ctx, consumerKey{}, string(req.Consumer))
	return fw.f(ctx, GatewayCaller, service, req, resp)
}

// Interface guards.
var (
	_ gateway.Invoker = (*Invoker)(nil)
	_ mesh.Target     = (*consumerTarget)(nil)
)
