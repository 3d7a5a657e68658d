// Package admin is meshd's operator listener: Prometheus metrics, health
// and readiness, a JSON view of the loaded services, and the operator's
// console (package console) that draws them.
//
//	GET /             the console: a web page that shows the mesh live
//	GET /metrics      Prometheus exposition of meshd's own registry
//	GET /healthz      200 while the process serves (never needs the token)
//	GET /readyz       200 when ready, else 503 with the reason (never needs the token)
//	GET /v1/services  every service: version, status, instances, routes, ...
//	GET /v1/jobs      the long operations kept (the last MaxJobs), oldest first
//	GET /v1/jobs/{id} one job: kind, service, state, started, finished, result, error
//
// Every error is an application/problem+json document (Problem,
// WriteError): 4xx for the operator's mistakes, 5xx for faults. Long
// operations run as jobs (Jobs) that outlive the request that started
// them.
//
// The listener binds loopback by default. A non-loopback address is refused
// unless a bearer token is set or Config.Public forces it: metrics and the
// services view describe the deployment and should not be open to a
// network by accident. With a token, every path but the health probes
// needs "Authorization: Bearer <token>" (401 otherwise). A browser may
// send the token as the password of HTTP Basic authentication instead
// (any user name): a 401 offers both, so opening the console prompts for
// it.
//
// Every path but the health probes also answers only requests addressed to
// the listener by one of its own names, from no other web origin, so that
// a web page cannot drive it through the operator's browser (cross-site
// requests, DNS rebinding); see Config.AllowedHosts. A refused request gets
// 403 and an application/problem+json body.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshd/meshd/host/admin/console"
)

// ErrNotLoopback is returned by New for a non-loopback address without a
// token or Public.
var ErrNotLoopback = errors.New("admin: refusing a non-loopback address without a token (set a token, or force it)")

// Config configures the admin listener.
type Config struct {
	// Addr is the listen address, for example 127.0.0.1:8081.
	Addr string
	// Token, when set, is the bearer token every request but the health
	// probes must carry.
	Token string
	// Public allows a non-loopback Addr without a token.
	Public bool
	// AllowedHosts are the Host header values the listener answers besides
	// its own names. Its own names are: localhost, any IP address literal
	// (what health probes and scrapers that address an IP send), and the
	// host of Addr; any port. An entry is a name ("meshd.internal", any
	// port) or a name and port ("meshd.internal:8081"); "*" allows every
	// Host. A browser fooled by DNS rebinding sends the attacker's name,
	// which none of these match.
	AllowedHosts []string
}

// Validate reports every problem of c.
func (c *Config) Validate() error {
	var errs []error
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		errs = append(errs, fmt.Errorf("admin: address %q: %w", c.Addr, err))
	} else if !IsLoopback(host) && c.Token == "" && !c.Public {
		errs = append(errs, fmt.Errorf("%w: %q", ErrNotLoopback, c.Addr))
	}
	for _, h := range c.AllowedHosts {
		if err := checkAllowedHost(h); err != nil {
			errs = append(errs, fmt.Errorf("admin: allowed host %q: %w", h, err))
		}
	}
	return errors.Join(errs...)
}

// checkAllowedHost reports what is wrong with an AllowedHosts entry.
func checkAllowedHost(h string) error {
	if h == "*" {
		return nil
	}
	if h == "" || strings.ContainsAny(h, "/@?#%\\ \t\r\n") {
		return errors.New("want a host name, or a name and a port, without a scheme or path")
	}
	if _, port := splitHost(h); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return fmt.Errorf("port %q is not a number from 1 to 65535", port)
		}
	}
	return nil
}

// splitHost splits a Host header value or an AllowedHosts entry into its
// lower-cased name (IPv6 brackets removed) and port ("" when absent).
func splitHost(hostport string) (name, port string) {
	hostport = strings.ToLower(hostport)
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		return h, p
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]"), ""
}

// IsLoopback reports whether a listen host binds loopback only. An empty
// host binds every interface, so it is not loopback.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Service is one service as /v1/services shows it.
type Service struct {
	Name string `json:"name"`
	// Node is the node serving this version, in a mesh of nodes (empty
	// alone).
	Node string `json:"node,omitempty"`
	// Version is the version identity: module hash, plus "+" and the
	// declared version when the module declares one.
	Version       string    `json:"version,omitempty"`
	File          string    `json:"file,omitempty"`
	Status        string    `json:"status"`
	Instances     Instances `json:"instances"`
	Routes        []string  `json:"routes"`
	Subscriptions []string  `json:"subscriptions"`
	Publishes     []string  `json:"publishes"`
	Grants        Grants    `json:"grants"`
	LoadedAt      time.Time `json:"loaded_at,omitzero"`
	// LastError is the last load failure of this service, if any; the
	// version shown (if any) is the one still serving.
	LastError     string    `json:"last_error,omitempty"`
	LastErrorTime time.Time `json:"last_error_time,omitzero"`
	// Breakers are the circuit breakers of the service's calls to other
	// services, one per callee (the daemon's mesh client's BreakerInfo:
	// caller, callee, state, since, counts, transitions); nil leaves the
	// field out.
	Breakers any `json:"breakers,omitempty"`
}

// Instances counts a service's instances.
type Instances struct {
	Idle int `json:"idle"`
	Busy int `json:"busy"`
	// Asleep: no call for the service's idle_release, its instances
	// closed and its code out of resident memory until the next call.
	Asleep bool `json:"asleep"`
}

// Grants is what the operator granted a service.
type Grants struct {
	Publish   []string `json:"publish"`
	Subscribe []string `json:"subscribe"`
	KV        bool     `json:"kv"`
	Discover  []string `json:"discover"`
}

// Source is what the admin listener reports on.
type Source struct {
	// Registry is served on /metrics; nil serves 404 there.
	Registry *prometheus.Registry
	// Ready returns nil when the daemon is ready, else the reason.
	Ready func(ctx context.Context) error
	// Degraded, when set, returns what serves but not as deployed (one
	// line each); /readyz says ready and lists them.
	Degraded func(ctx context.Context) []string
	// Services lists the services, sorted by name.
	Services func() []Service
}

// Server is the admin listener.
type Server struct {
	cfg    Config
	log    *slog.Logger
	hosts  hostRule
	mux    *http.ServeMux
	jobs   *Jobs
	cons   *console.Console
	ln     net.Listener
	srv    *http.Server
	done   chan error
	closed sync.Once
	err    error
}

// New checks cfg and prepares the handlers; Start listens.
func New(cfg Config, src Source, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Server{cfg: cfg, log: log, mux: http.NewServeMux(), hosts: newHostRule(cfg), jobs: NewJobs(log)}
	if src.Registry != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(src.Registry, promhttp.HandlerOpts{
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelError),
			ErrorHandling:     promhttp.ContinueOnError,
			Registry:          src.Registry, // promhttp_metric_handler_* on the same registry
			EnableOpenMetrics: false,
		}))
	}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	s.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if src.Ready != nil {
			if err := src.Ready(r.Context()); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
				return
			}
		}
		_, _ = w.Write([]byte("ready\n"))
		if src.Degraded != nil {
			for _, line := range src.Degraded(r.Context()) {
				_, _ = fmt.Fprintf(w, "degraded: %s\n", line)
			}
		}
	})
	// Go's profiler, behind the same token as everything here: CPU
	// (/debug/pprof/profile?seconds=N), heap, goroutines, mutexes.
	s.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	s.mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	s.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	s.mux.HandleFunc("GET /v1/services", func(w http.ResponseWriter, _ *http.Request) {
		var list []Service
		if src.Services != nil {
			list = src.Services()
		}
		if list == nil {
			list = []Service{}
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(struct {
			Services []Service `json:"services"`
		}{list})
	})
	s.mux.HandleFunc("GET /v1/jobs", s.jobs.handleList)
	s.mux.HandleFunc("GET /v1/jobs/{id}", s.jobs.handleGet)
	var gatherer prometheus.Gatherer
	if src.Registry != nil {
		gatherer = src.Registry
	}
	cons, err := console.New(console.Source{Gatherer: gatherer}, log)
	if err != nil {
		return nil, err
	}
	s.cons = cons
	cons.Register(s.mux) // GET /, /console/..., /v1/console
	return s, nil
}

// Jobs is the server's job runner, whose jobs GET /v1/jobs/{id} shows:
// start long operations with it (Jobs.StartHTTP). Close cancels them.
func (s *Server) Jobs() *Jobs { return s.jobs }

// Handle adds a handler to the admin API (for later admin endpoints); call
// it before Start. The Host and Origin checks and the token check apply to
// it.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Handler is the admin API with the Host, Origin and token checks, for
// in-process use.
func (s *Server) Handler() http.Handler {
	return s.checkOrigin(s.authorize(http.HandlerFunc(s.route)))
}

// adminMethods are the methods probed for the Allow header of a 405.
var adminMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// route serves the request with its handler, and answers a request no
// pattern matches with a problem: 405 with Allow when other methods are
// routed on the path, else 404 (where ServeMux would answer plain text).
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.mux.Handler(r); pattern != "" {
		s.mux.ServeHTTP(w, r)
		return
	}
	var allow []string
	probe := &http.Request{URL: r.URL, Host: r.Host, Header: r.Header}
	for _, m := range adminMethods {
		if m == r.Method {
			continue
		}
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		Problem(w, http.StatusMethodNotAllowed, Title(http.StatusMethodNotAllowed),
			fmt.Sprintf("method %s is not allowed on %s; allowed: %s", bound(r.Method), bound(r.URL.Path), strings.Join(allow, ", ")))
		return
	}
	Problem(w, http.StatusNotFound, Title(http.StatusNotFound), fmt.Sprintf("no admin endpoint %s", bound(r.URL.Path)))
}

// probe reports whether path is a health probe, open to any caller.
func probe(path string) bool { return path == "/healthz" || path == "/readyz" }

// authorize checks the bearer token on every path but the health probes.
func (s *Server) authorize(next http.Handler) http.Handler {
	if s.cfg.Token == "" {
		return next
	}
	want := []byte("Bearer " + s.cfg.Token)
	token := []byte(s.cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !probe(r.URL.Path) {
			got := []byte(r.Header.Get("Authorization"))
			// A browser's Basic login, the token as its password: what
			// the console's user types at the browser's prompt.
			_, password, basic := r.BasicAuth()
			if subtle.ConstantTimeCompare(got, want) != 1 && (!basic || subtle.ConstantTimeCompare([]byte(password), token) != 1) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="meshd admin"`)
				w.Header().Add("WWW-Authenticate", `Basic realm="meshd admin", charset="UTF-8"`)
				Problem(w, http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// hostRule is which Host header values the listener answers.
type hostRule struct {
	any     bool
	listen  string              // the host of Config.Addr, lower-cased
	allowed map[string][]string // name → ports ("" for any)
}

func newHostRule(cfg Config) hostRule {
	hr := hostRule{allowed: make(map[string][]string, len(cfg.AllowedHosts))}
	if h, _, err := net.SplitHostPort(cfg.Addr); err == nil {
		hr.listen = strings.ToLower(h)
	}
	for _, h := range cfg.AllowedHosts {
		if h == "*" {
			hr.any = true
			continue
		}
		name, port := splitHost(h)
		hr.allowed[name] = append(hr.allowed[name], port)
	}
	return hr
}

// allows reports whether a request's Host is one of the listener's names.
// An empty Host (HTTP/1.0 without one) is allowed: browsers always send it.
func (hr hostRule) allows(host string) bool {
	if hr.any || host == "" {
		return true
	}
	name, port := splitHost(host)
	if name == "localhost" || net.ParseIP(name) != nil || (name == hr.listen && name != "") {
		return true
	}
	for _, p := range hr.allowed[name] {
		if p == "" || p == port {
			return true
		}
	}
	return false
}

// sameOrigin reports whether an Origin header names the origin the request
// was sent to: http, and the Host of the request (the admin listener serves
// no TLS). "null" (sandboxed documents, file: pages) never matches.
func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Scheme != "http" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return false
	}
	return withPort(u.Host) == withPort(host)
}

// withPort lower-cases a host and gives it port 80 when it has none.
func withPort(host string) string {
	name, port := splitHost(host)
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(name, port)
}

// checkOrigin refuses, on every path but the health probes, a request whose
// Host is not one of the listener's names (DNS rebinding), and one a
// browser sent from another web origin: an Origin header other than the
// listener's own origin, or Sec-Fetch-Site other than same-origin or none
// (a cross-site form POST, or a no-cors fetch, which sends no Origin).
// Health probes stay open, as they do without a token: kubelets and load
// balancers send what their operator configured, and the answer tells
// nothing.
func (s *Server) checkOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if probe(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		var why string
		switch origin, hasOrigin := r.Header["Origin"]; {
		case !s.hosts.allows(r.Host):
			why = fmt.Sprintf("host %q is not one of this listener's names; add it with --admin-allowed-hosts", bound(r.Host))
		case hasOrigin && (len(origin) != 1 || !sameOrigin(origin[0], r.Host)):
			why = fmt.Sprintf("origin %q may not use the admin listener", bound(strings.Join(origin, ", ")))
		default:
			switch site := r.Header.Get("Sec-Fetch-Site"); site {
			case "", "same-origin", "none":
			default:
				why = fmt.Sprintf("a %s request may not use the admin listener", bound(site))
			}
		}
		if why != "" {
			s.log.LogAttrs(r.Context(), slog.LevelWarn, "admin: refused a request from outside the listener's origin",
				slog.String("method", bound(r.Method)), slog.String("path", bound(r.URL.Path)), slog.String("reason", why))
			Problem(w, http.StatusForbidden, "forbidden", why)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bound cuts a client-supplied string for a log line or an answer.
func bound(s string) string {
	const n = 100
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Start listens on the configured address and serves in the background
// until Close.
func (s *Server) Start(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.done = make(chan error, 1)
	go func() { s.done <- s.srv.Serve(ln) }()
	s.cons.Start()
	if !IsLoopback(hostOf(ln.Addr().String())) && s.cfg.Token == "" {
		s.log.Warn("admin listener is reachable from the network without a token", slog.String("addr", ln.Addr().String()))
	}
	return nil
}

// Addr is the listening address, empty before Start.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close stops the listener, letting in-flight requests finish until ctx is
// done, then cancels the running jobs and stops the console's sampler, and
// waits for them until ctx is done. It is idempotent.
func (s *Server) Close(ctx context.Context) error {
	s.closed.Do(func() {
		defer func() {
			if err := errors.Join(s.jobs.Close(ctx), s.cons.Close(ctx)); err != nil && s.err == nil {
				s.err = err
			}
		}()
		if s.srv == nil {
			return
		}
		if err := s.srv.Shutdown(ctx); err != nil {
			_ = s.srv.Close()
			s.err = fmt.Errorf("admin: %w", err)
		}
		if err := <-s.done; err != nil && !errors.Is(err, http.ErrServerClosed) && s.err == nil {
			s.err = fmt.Errorf("admin: %w", err)
		}
	})
	return s.err
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return strings.Trim(h, "[]")
}
