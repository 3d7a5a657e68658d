package console

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

//go:embed ui
var uiFiles embed.FS

// Defaults of Config.
const (
	DefaultInterval  = 2 * time.Second
	DefaultWindow    = 5 * time.Minute
	DefaultMaxRoutes = 100
	DefaultMaxRows   = 200
	// MaxPoints is the most chart points /v1/console gives a route: with
	// more samples in the window, consecutive samples are merged.
	MaxPoints = 60
	// RecentSpan is the span of a route's "recent" figures (the table's
	// numbers), when the window holds that much.
	RecentSpan = time.Minute
)

// Config bounds the sampler. Zero fields take the defaults.
type Config struct {
	// Interval is how often the registry is gathered (default 2 s, at
	// least 100 ms).
	Interval time.Duration
	// Window is how much history is kept (default 5 min, at most 1 h); the
	// ring holds Window/Interval+1 samples.
	Window time.Duration
	// MaxRoutes is the most routes a sample holds (default 100); past it,
	// routes are dropped in (service, route) order and /v1/console counts
	// them in routes_dropped.
	MaxRoutes int
	// MaxRows is the most consumers and the most modules /v1/console lists
	// (default 200 each).
	MaxRows int
}

// Validate reports every problem of c.
func (c Config) Validate() error {
	var errs []error
	if c.Interval != 0 && c.Interval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("console: interval %v is under 100ms", c.Interval))
	}
	if c.Window < 0 || c.Window > time.Hour {
		errs = append(errs, fmt.Errorf("console: window %v is not between 0 and 1h", c.Window))
	}
	if c.MaxRoutes < 0 {
		errs = append(errs, fmt.Errorf("console: max routes %d is negative", c.MaxRoutes))
	}
	if c.MaxRows < 0 {
		errs = append(errs, fmt.Errorf("console: max rows %d is negative", c.MaxRows))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Window < c.Interval {
		c.Window = c.Interval
	}
	if c.MaxRoutes == 0 {
		c.MaxRoutes = DefaultMaxRoutes
	}
	if c.MaxRows == 0 {
		c.MaxRows = DefaultMaxRows
	}
	return c
}

// Source is what the console reads.
type Source struct {
	// Gatherer is sampled every Config.Interval (meshd's own registry);
	// nil leaves /v1/console without routes, consumers and modules.
	Gatherer prometheus.Gatherer
	Config   Config
}

// Console is the page, its data endpoint and the sampler behind it. The
// sampler runs between Start and Close.
type Console struct {
	src Source
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	ring    []*sample // oldest first once full; see at
	next    int       // where the next sample goes
	count   int       // samples held
	latest  *sample
	started bool
	closed  bool
	stop    chan struct{}
	done    chan struct{}
}

// New checks src.Config and makes the console; Start starts its sampler.
func New(src Source, log *slog.Logger) (*Console, error) {
	if err := src.Config.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	cfg := src.Config.withDefaults()
	n := int(cfg.Window/cfg.Interval) + 1
	return &Console{src: src, cfg: cfg, log: log, ring: make([]*sample, n),
		stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// Mux is where Register mounts the console: an *http.ServeMux, or the
// admin server's Handle.
type Mux interface {
	Handle(pattern string, h http.Handler)
}

// Register mounts the page at "GET /{$}", its files under "GET /console/"
// and its data at "GET /v1/console".
func (c *Console) Register(mux Mux) {
	mux.Handle("GET /{$}", http.HandlerFunc(c.servePage))
	mux.Handle("GET /console/{file}", http.HandlerFunc(c.serveFile))
	mux.Handle("GET /v1/console", http.HandlerFunc(c.serveData))
}

// Start samples once and then every Config.Interval in the background
// until Close. It is a no-op after the first call, after Close, and
// without a Gatherer.
func (c *Console) Start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || c.closed || c.src.Gatherer == nil {
		return
	}
	c.started = true
	go c.run()
}

func (c *Console) run() {
	defer close(c.done)
	c.sample(time.Now())
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			c.sample(now)
		}
	}
}

// Close stops the sampler and waits for it until ctx is done. It is
// idempotent.
func (c *Console) Close(ctx context.Context) error {
	c.mu.Lock()
	started, closed := c.started, c.closed
	c.closed = true
	c.mu.Unlock()
	if closed || !started {
		return nil
	}
	close(c.stop)
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("console: sampler still running: %w", ctx.Err())
	}
}

// sample gathers the registry and adds the result to the ring. A gather
// that fails in part keeps what it returned, and says why in the data.
func (c *Console) sample(now time.Time) {
	mfs, err := c.src.Gatherer.Gather()
	c.mu.Lock()
	prev := c.latest
	c.mu.Unlock()
	s := parse(now, mfs, prev, c.cfg)
	if err != nil {
		s.err = bound(err.Error(), maxErrorBytes)
		c.log.Debug("console: gathering metrics", slog.String("error", s.err))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ring[c.next] = s
	c.next = (c.next + 1) % len(c.ring)
	c.count = min(c.count+1, len(c.ring))
	c.latest = s
}

// samples returns the ring's samples, oldest first.
func (c *Console) samples() []*sample {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*sample, 0, c.count)
	start := (c.next - c.count + len(c.ring)) % len(c.ring)
	for i := range c.count {
		out = append(out, c.ring[(start+i)%len(c.ring)])
	}
	return out
}

// Data returns what GET /v1/console serves.
func (c *Console) Data() Data { return build(c.samples(), c.cfg) }

// securityHeaders are set on every answer of the console: nothing from
// another origin (scripts, styles, images, connections), no framing, no
// referrer.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
}

func (c *Console) servePage(w http.ResponseWriter, r *http.Request) {
	c.writeFile(w, r, "index.html")
}

func (c *Console) serveFile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if name == "index.html" || !fs.ValidPath(name) {
		notFound(w, r)
		return
	}
	c.writeFile(w, r, name)
}

// contentTypes are the types of the files the page is made of.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

func (c *Console) writeFile(w http.ResponseWriter, r *http.Request, name string) {
	ct, ok := contentTypes[path.Ext(name)]
	b, err := uiFiles.ReadFile("ui/" + name)
	if !ok || err != nil {
		notFound(w, r)
		return
	}
	securityHeaders(w.Header())
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(b)
}

func (c *Console) serveData(w http.ResponseWriter, _ *http.Request) {
	securityHeaders(w.Header())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(c.Data())
}

// notFound answers 404 as the admin API does, with a problem document.
func notFound(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusNotFound)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": "about:blank", "title": "Not Found", "status": http.StatusNotFound,
		"detail": "no console file " + bound(r.URL.Path, 100),
	})
}
