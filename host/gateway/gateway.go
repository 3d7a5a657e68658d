package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshd/meshd/abi"
)

// Route is one route a service serves: an HTTP method and a Go 1.22
// net/http path pattern ("/orders/{id}", "/files/{rest...}").
type Route struct {
	Service string
	Method  string
	Path    string
	// Internal routes serve calls from other services only ([Gateway.Match]):
	// an HTTP client gets what it gets for a path no route matches (404, or
	// 405 for another method's public route), mounts included.
	Internal bool
}

// Pattern returns the route as a ServeMux pattern, "METHOD /path".
func (r Route) Pattern() string { return r.Method + " " + r.Path }

// Invoker runs a service's HTTP handler.
//
// Its error chooses the answer: a *fault.Error (found with errors.As) by
// its Kind's status, with Retry-After when the kind has one; an error
// without one is classified by fault.Classify (the runtime's errors, a
// store refusing writes, context.DeadlineExceeded), anything else is 500.
//
// The slices of req are valid only until InvokeHTTP returns; the invoker
// must copy what it keeps. The invoker fills resp; the slices it stores in
// resp must stay valid and unchanged after InvokeHTTP returns, until the
// gateway has written the response (copy them out of instance memory before
// handing the instance back to its pool). ctx carries the request deadline.
type Invoker interface {
	InvokeHTTP(ctx context.Context, service string, req *abi.Request, resp *abi.Response) error
}

// Config holds the gateway's limits. Zero values take the defaults.
type Config struct {
	// MaxBodyBytes caps the request body. Default 1 MiB.
	MaxBodyBytes int64 `toml:"max_body_bytes" json:"max_body_bytes"`
	// RequestTimeout is the deadline of one invocation. Default 10s.
	RequestTimeout time.Duration `toml:"request_timeout" json:"request_timeout"`
	// Observe, when set, is called exactly once per request, after the
	// response is written (or abandoned because the client went away).
	// It must be safe for concurrent use and should not block.
	Observe func(Observation) `toml:"-" json:"-"`
}

// Observation describes one served request.
type Observation struct {
	// Service and Route ("POST /orders") are empty when no route matched.
	Service, Route string
	Method         string
	// Status is the status written; 0 when nothing was written (the
	// client went away first).
	Status   int
	Duration time.Duration
	// Consumer is the authenticated consumer, empty when anonymous.
	Consumer string
}

// Defaults of Config.
const (
	DefaultMaxBodyBytes   = 1 << 20
	DefaultRequestTimeout = 10 * time.Second
)

// Gateway is an http.Handler that routes requests to services. It is safe
// for concurrent use; SetRoutes may be called while requests are served.
type Gateway struct {
	cfg    Config
	inv    Invoker
	log    *slog.Logger
	router atomic.Pointer[router]
	// admission, when set, may shed a request before it is read (see
	// SetAdmission).
	admission atomic.Pointer[Admission]

	mu       sync.Mutex // serialises SetRoutes, SetPolicies and Close
	policies *policySet // the current policies, compiled
}

// New returns a Gateway with an empty route table: every request gets a
// 404 problem until SetRoutes is called. A nil log discards logs.
func New(cfg Config, inv Invoker, log *slog.Logger) *Gateway {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{cfg: cfg, inv: inv, log: log, policies: &policySet{}}
	rt, err := g.build(nil, g.policies)
	if err != nil {
		panic(err) // cannot happen: the empty table is valid
	}
	g.router.Store(rt)
	return g
}

// router is one immutable route table.
type router struct {
	mux    *http.ServeMux // public routes, mounts, and the catch-all
	routes []Route        // sorted, internal ones included
	// calls holds, per service, a mux of every route of the service,
	// internal ones included, for Match.
	calls map[string]*http.ServeMux
	match matchCache // Match's answers for this route set
}

// routeHandler serves one declared route.
type routeHandler struct {
	g       *Gateway
	policy  *compiledPolicy // nil: open, no rate limit
	timeout time.Duration   // of one invocation
	maxBody int64           // request body cap
	service string
	pattern string   // "METHOD /path" as declared
	route   []byte   // pattern, shared read-only by every request
	params  []string // wildcard names, in order
	// paramKeys are params as bytes, shared read-only by every request.
	paramKeys [][]byte
}

var allowedMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions,
}

// SetRoutes replaces the route table. It builds a new router from routes and
// swaps it in atomically; requests in flight finish on the router that
// matched them. On error the current table keeps serving. The error names
// every offending route and service: a method outside GET, HEAD, POST, PUT,
// PATCH, DELETE, OPTIONS; an invalid pattern; two routes with the same
// method and path (wildcard names aside); a route of one service that
// overlaps a route of another ([Conflicts]: some request matches both, even
// when net/http would prefer one); or patterns of one service net/http finds
// in conflict. Routes of one service may overlap each other. An internal
// route is checked against its own service's routes only (it takes no HTTP
// request, so it cannot take one from another service), and is served by
// Match alone.
func (g *Gateway) SetRoutes(routes []Route) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	rt, err := g.build(routes, g.policies)
	if err != nil {
		return err
	}
	g.router.Store(rt)
	return nil
}

// Routes returns the current route table, sorted by path, method, service.
func (g *Gateway) Routes() []Route {
	return slices.Clone(g.router.Load().routes)
}

func compareRoutes(a, b Route) int {
	if c := strings.Compare(a.Path, b.Path); c != 0 {
		return c
	}
	if c := strings.Compare(a.Method, b.Method); c != 0 {
		return c
	}
	return strings.Compare(a.Service, b.Service)
}

func (g *Gateway) build(routes []Route, ps *policySet) (*router, error) {
	routes = slices.Clone(routes)
	slices.SortFunc(routes, compareRoutes)
	rt := &router{mux: http.NewServeMux(), routes: routes, calls: make(map[string]*http.ServeMux)}

	var errs []error
	public := make(map[string]Route, len(routes))     // normalised "METHOD /path" → first public declaration
	perService := make(map[string]Route, len(routes)) // service + normalised "METHOD /path" → first declaration
	valid := make([]Route, 0, len(routes))
	for _, r := range routes {
		if err := validateRoute(r); err != nil {
			errs = append(errs, err)
			continue
		}
		key := r.Method + " " + normalisePath(r.Path)
		if prev, ok := perService[r.Service+"\x00"+key]; ok {
			why := ""
			if r.Internal != prev.Internal {
				why = " (once internal, once public)"
			}
			errs = append(errs, fmt.Errorf("gateway: service %q declares route %q twice%s", r.Service, r.Pattern(), why))
			continue
		}
		if prev, ok := public[key]; ok && !r.Internal {
			errs = append(errs, fmt.Errorf("gateway: route %q is declared by both service %q and service %q", r.Pattern(), prev.Service, r.Service))
			continue
		}
		perService[r.Service+"\x00"+key] = r
		if !r.Internal {
			public[key] = r
		}
		valid = append(valid, r)
	}
	// One service may not take requests another's public route matches.
	// Internal routes take no requests.
	reported := make(map[[2]Route]bool)
	for _, c := range Conflicts(publicRoutes(valid)) {
		errs = append(errs, c)
		reported[[2]Route{c.Route, c.Other}] = true
		reported[[2]Route{c.Other, c.Route}] = true
	}
	byPattern := make(map[string]Route, len(valid)) // registered pattern → route
	failed := make(map[Route]bool)
	for _, r := range valid {
		if r.Internal {
			continue
		}
		h := g.newRouteHandler(r, r.Path, ps)
		if err := register(rt.mux, h.pattern, h); err != nil {
			if other, ok := conflictingRoute(err, byPattern); !ok || !reported[[2]Route{r, other}] {
				errs = append(errs, describeConflict(r, err, byPattern))
			}
			failed[r] = true
			continue
		}
		byPattern[h.pattern] = r
	}
	// Every route of a service, internal ones included, for calls.
	byService := make(map[string]map[string]Route)
	for _, r := range valid {
		if failed[r] {
			continue // reported above
		}
		mux, own := rt.calls[r.Service], byService[r.Service]
		if mux == nil {
			mux, own = http.NewServeMux(), make(map[string]Route)
			rt.calls[r.Service], byService[r.Service] = mux, own
		}
		if err := register(mux, r.Pattern(), newCallRoute(r)); err != nil {
			errs = append(errs, describeConflict(r, err, own))
			continue
		}
		own[r.Pattern()] = r
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := g.mount(rt, routes, ps); err != nil {
		return nil, err
	}
	// Everything no route matches lands here: 405 when another method of the
	// same path is routed, else 404. Registering the catch-all also keeps
	// ServeMux from writing its own plain-text 404 and 405 answers.
	if err := register(rt.mux, "/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.noRoute(rt, w, r)
	})); err != nil {
		return nil, err
	}
	return rt, nil
}

// publicRoutes returns the routes of rs that are not internal.
func publicRoutes(rs []Route) []Route {
	out := make([]Route, 0, len(rs))
	for _, r := range rs {
		if !r.Internal {
			out = append(out, r)
		}
	}
	return out
}

// register adds a pattern to mux, turning ServeMux's panic on a bad or
// conflicting pattern into an error.
func register(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// describeConflict turns a ServeMux registration panic into an error that
// names the route and, for conflicts, the other route and its service.
func describeConflict(r Route, err error, byPattern map[string]Route) error {
	msg := err.Error()
	if other, ok := conflictingRoute(err, byPattern); ok {
		return fmt.Errorf("gateway: route %q of service %q conflicts with route %q of service %q: both match some requests and neither is more specific",
			r.Pattern(), r.Service, other.Pattern(), other.Service)
	}
	// The panic message starts with the pattern and where it was registered,
	// which means nothing to an operator; keep the reason only.
	if i := strings.LastIndex(msg, ": "); i >= 0 && !strings.Contains(msg, "conflicts") {
		msg = msg[i+2:]
	}
	return fmt.Errorf("gateway: route %q of service %q: invalid pattern: %s", r.Pattern(), r.Service, msg)
}

// conflictingRoute returns the route a ServeMux registration panic says the
// new pattern conflicts with, if it is one of byPattern.
func conflictingRoute(err error, byPattern map[string]Route) (Route, bool) {
	msg := err.Error()
	const marker = "conflicts with pattern \""
	if i := strings.Index(msg, marker); i >= 0 {
		rest := msg[i+len(marker):]
		if j := strings.IndexByte(rest, '"'); j >= 0 {
			other, ok := byPattern[rest[:j]]
			return other, ok
		}
	}
	return Route{}, false
}

func validateRoute(r Route) error {
	var problems []string
	if r.Service == "" {
		problems = append(problems, "empty service name")
	}
	if !slices.Contains(allowedMethods, r.Method) {
		problems = append(problems, fmt.Sprintf("method %q is not one of %s", r.Method, strings.Join(allowedMethods, ", ")))
	}
	if !strings.HasPrefix(r.Path, "/") {
		problems = append(problems, "path must start with \"/\"")
	}
	if strings.ContainsAny(r.Path, " \t\r\n") {
		problems = append(problems, "path must not contain white space")
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("gateway: route %q of service %q: %s", r.Pattern(), r.Service, strings.Join(problems, "; "))
}

// paramNames returns the wildcard names of a path pattern in order:
// "{id}" → id, "{rest...}" → rest; "{$}" is not a wildcard.
func paramNames(path string) []string {
	var names []string
	for {
		i := strings.IndexByte(path, '{')
		if i < 0 {
			return names
		}
		j := strings.IndexByte(path[i:], '}')
		if j < 0 {
			return names
		}
		name := strings.TrimSuffix(path[i+1:i+j], "...")
		if name != "$" && name != "" {
			names = append(names, name)
		}
		path = path[i+j+1:]
	}
}

// normalisePath drops wildcard names, so "/a/{x}" and "/a/{y}" compare
// equal, as ServeMux sees them.
func normalisePath(path string) string {
	if !strings.Contains(path, "{") {
		return path
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(path, '{')
		if i < 0 {
			b.WriteString(path)
			return b.String()
		}
		j := strings.IndexByte(path[i:], '}')
		if j < 0 {
			b.WriteString(path)
			return b.String()
		}
		b.WriteString(path[:i])
		name := path[i+1 : i+j]
		switch {
		case name == "$":
			b.WriteString("{$}")
		case strings.HasSuffix(name, "..."):
			b.WriteString("{...}")
		default:
			b.WriteString("{}")
		}
		path = path[i+j+1:]
	}
}

// ServeHTTP assigns the request id, then routes the request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.cfg.Observe == nil {
		g.serve(w, r)
		return
	}
	ow := getObserver(w)
	start := time.Now()
	defer func() {
		o := Observation{
			Service:  ow.service,
			Route:    ow.route,
			Method:   r.Method,
			Status:   ow.status,
			Duration: time.Since(start),
			Consumer: ow.consumer,
		}
		putObserver(ow)
		g.cfg.Observe(o)
	}()
	g.serve(ow, r)
}

func (g *Gateway) serve(w http.ResponseWriter, r *http.Request) {
	w.Header()[headerRequestID] = []string{requestID(r)}
	ensureTraceParent(r)
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			g.log.LogAttrs(r.Context(), slog.LevelError, "gateway: panic while serving a request",
				slog.String("request_id", w.Header().Get(headerRequestID)),
				slog.String("trace_id", traceIDOf(r)),
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.Any("panic", p))
			problem(w, r, http.StatusInternalServerError, "internal error", "the gateway failed to handle the request", nil)
		}
	}()
	g.router.Load().mux.ServeHTTP(w, r)
}

// noRoute answers a request no route matched: 405 with Allow when the path
// is routed for other methods, else 404.
func (g *Gateway) noRoute(rt *router, w http.ResponseWriter, r *http.Request) {
	var allow []string
	if len(rt.routes) > 0 {
		probe := &http.Request{URL: r.URL, Host: r.Host, Header: r.Header}
		for _, m := range allowedMethods {
			if m == r.Method {
				continue
			}
			probe.Method = m
			if _, pattern := rt.mux.Handler(probe); pattern != "" && pattern != "/" {
				allow = append(allow, m)
			}
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		problem(w, r, http.StatusMethodNotAllowed, "method not allowed",
			fmt.Sprintf("method %s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, strings.Join(allow, ", ")), nil)
		return
	}
	problem(w, r, http.StatusNotFound, "no route", fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path), nil)
}

// Interface guards.
var _ http.Handler = (*Gateway)(nil)
var _ http.Handler = (*routeHandler)(nil)
