package console_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshd/meshd/host/admin/console"
	"github.com/meshd/meshd/host/metrics"
)

// data is /v1/console as a client reads it (nulls as NaN-free pointers).
type data struct {
	SampledAt       time.Time `json:"sampled_at"`
	IntervalSeconds float64   `json:"interval_seconds"`
	Routes          []struct {
		Service  string  `json:"service"`
		Route    string  `json:"route"`
		Requests float64 `json:"requests"`
		Errors   float64 `json:"errors"`
		Recent   stats   `json:"recent"`
		Points   []struct {
			T int64 `json:"t"`
			stats
		} `json:"points"`
	} `json:"routes"`
	RoutesDropped  int                `json:"routes_dropped"`
	Consumers      []console.Consumer `json:"consumers"`
	ConsumersError bool               `json:"consumers_error"`
	Modules        []console.Module   `json:"modules"`
	ConfigReloads  console.Reloads    `json:"config_reloads"`
}

type stats struct {
	Seconds   float64  `json:"seconds"`
	Rate      *float64 `json:"rate"`
	ErrorRate *float64 `json:"error_rate"`
	P50       *float64 `json:"p50"`
	P99       *float64 `json:"p99"`
}

// serve mounts c on a real listener on 127.0.0.1:0.
func serve(t *testing.T, c *console.Console) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	c.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func getData(t *testing.T, srv *httptest.Server) data {
	t.Helper()
	resp, b := get(t, srv.URL+"/v1/console")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/console: %s %s\n%s", resp.Status, resp.Header.Get("Content-Type"), b)
	}
	var d data
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	return d
}

func near(got *float64, want float64) bool {
	return got != nil && math.Abs(*got-want) <= 1e-3*math.Max(1, math.Abs(want))
}

// The figures of /v1/console come from meshd's real registry (host/metrics,
// the names docs/metrics.md lists), differenced between two samples.
func TestDataFromTheRegistry(t *testing.T) {
	lag := []metrics.ConsumerLag{{Service: "payment", Topic: "ORDER_CREATED", Pending: 7, AckPending: 2, Redelivered: 1}}
	m := metrics.New(metrics.BuildInfo{Version: "test"}, metrics.Sources{
		Consumers: func(context.Context) ([]metrics.ConsumerLag, error) { return lag, nil },
	})
	c, err := console.New(console.Source{Gatherer: m.Registry()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, c)

	if d := getData(t, srv); !d.SampledAt.IsZero() || len(d.Routes) != 0 {
		t.Fatalf("before any sample: %+v", d)
	}
	t0 := time.Unix(1_700_000_000, 0)
	m.Request("order", "GET /orders/{id}", "GET", 200, time.Millisecond) // before the first sample
	console.SampleAt(c, t0)
	// 10 s: 8 fast answers, 2 slow 5xx, 1 4xx, and a 404 no route matched.
	for range 8 {
		m.Request("order", "POST /orders", "POST", 201, 3*time.Millisecond)
	}
	for range 2 {
		m.Request("order", "POST /orders", "POST", 503, 40*time.Millisecond)
	}
	m.Request("order", "POST /orders", "POST", 400, 3*time.Millisecond)
	m.Request("", "", "GET", 404, time.Millisecond)
	m.Delivered("payment", "ORDER_CREATED", 1, nil, time.Millisecond)
	m.Delivered("payment", "ORDER_CREATED", 2, errors.New("boom"), time.Millisecond)
	m.DeadLettered("payment", "ORDER_CREATED")
	m.Loaded("order", nil)
	m.Loaded("order", errors.New("bad module"))
	m.Reloaded("order")
	m.ConfigReloaded(errors.New("bad file"))
	console.SampleAt(c, t0.Add(10*time.Second))

	d := getData(t, srv)
	if !d.SampledAt.Equal(t0.Add(10*time.Second)) || d.IntervalSeconds != console.DefaultInterval.Seconds() {
		t.Fatalf("sampled at %v, interval %v", d.SampledAt, d.IntervalSeconds)
	}
	if len(d.Routes) != 2 {
		t.Fatalf("routes %+v: want GET /orders/{id} and POST /orders, not the 404", d.Routes)
	}
	idle, post := d.Routes[0], d.Routes[1]
	if idle.Route != "GET /orders/{id}" || post.Route != "POST /orders" || post.Service != "order" {
		t.Fatalf("routes out of order: %q %q", idle.Route, post.Route)
	}
	if post.Requests != 11 || post.Errors != 2 {
		t.Fatalf("POST /orders: %v requests, %v errors; want 11 and 2 (5xx only)", post.Requests, post.Errors)
	}
	r := post.Recent
	if r.Seconds != 10 || !near(r.Rate, 1.1) || !near(r.ErrorRate, 0.2) {
		t.Fatalf("recent %+v: want 10 s, 1.1 req/s, 0.2 5xx/s", r)
	}
	// 9 of 11 at 3 ms (bucket 2.5–5 ms), 2 at 40 ms (25–50 ms).
	if r.P50 == nil || *r.P50 <= 0.0025 || *r.P50 > 0.005 || r.P99 == nil || *r.P99 <= 0.025 || *r.P99 > 0.05 {
		t.Fatalf("p50 %v, p99 %v: want within (2.5, 5] ms and (25, 50] ms", deref(r.P50), deref(r.P99))
	}
	if len(post.Points) != 1 || post.Points[0].T != t0.Add(10*time.Second).UnixMilli() || !near(post.Points[0].Rate, 1.1) {
		t.Fatalf("points %+v", post.Points)
	}
	// A route idle over the span: rate 0, latency unknown (null).
	if idle.Requests != 1 || !near(idle.Recent.Rate, 0) || idle.Recent.P50 != nil || idle.Recent.P99 != nil {
		t.Fatalf("idle route: %+v", idle)
	}

	want := console.Consumer{Service: "payment", Topic: "ORDER_CREATED", Pending: 7, AckPending: 2, Redelivering: 1,
		Delivered: 1, Redelivered: 1, Failures: 1, DeadLettered: 1}
	if len(d.Consumers) != 1 || d.Consumers[0] != want || d.ConsumersError {
		t.Fatalf("consumers %+v (error %v), want [%+v]", d.Consumers, d.ConsumersError, want)
	}
	if len(d.Modules) != 1 || d.Modules[0] != (console.Module{Service: "order", Loads: 1, Failed: 1, Reloads: 1}) {
		t.Fatalf("modules %+v", d.Modules)
	}
	if d.ConfigReloads != (console.Reloads{Failed: 1}) {
		t.Fatalf("config reloads %+v", d.ConfigReloads)
	}
}

func deref(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}

// A counter that went down (a registry replaced) counts from zero, as
// Prometheus's rate() does, rather than giving a negative rate.
func TestCounterReset(t *testing.T) {
	reg := metrics.New(metrics.BuildInfo{}, metrics.Sources{})
	g := &swapGatherer{reg.Registry()}
	c, err := console.New(console.Source{Gatherer: g}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		reg.Request("order", "POST /orders", "POST", 201, time.Millisecond)
	}
	t0 := time.Unix(1_700_000_000, 0)
	console.SampleAt(c, t0)
	reg = metrics.New(metrics.BuildInfo{}, metrics.Sources{})
	g.Gatherer = reg.Registry()
	for range 3 {
		reg.Request("order", "POST /orders", "POST", 201, time.Millisecond)
	}
	console.SampleAt(c, t0.Add(time.Second))
	d := c.Data()
	if len(d.Routes) != 1 || d.Routes[0].Requests != 3 || d.Routes[0].Recent.Rate != 3 {
		t.Fatalf("after a reset: %+v", d.Routes)
	}
}

// swapGatherer gathers whichever registry it holds.
type swapGatherer struct{ prometheus.Gatherer }

// Past MaxRoutes, routes are dropped and counted; label values are bounded.
func TestBounds(t *testing.T) {
	m := metrics.New(metrics.BuildInfo{}, metrics.Sources{})
	c, err := console.New(console.Source{Gatherer: m.Registry(), Config: console.Config{MaxRoutes: 2}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	long := "GET /" + strings.Repeat("x", 5000)
	for _, route := range []string{"GET /a", "GET /b", long} {
		m.Request("svc", route, "GET", 200, time.Millisecond)
	}
	console.SampleAt(c, time.Now())
	d := c.Data()
	if len(d.Routes) != 2 || d.RoutesDropped != 1 {
		t.Fatalf("%d routes, %d dropped; want 2 and 1", len(d.Routes), d.RoutesDropped)
	}
	c2, err := console.New(console.Source{Gatherer: m.Registry()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	console.SampleAt(c2, time.Now())
	for _, r := range c2.Data().Routes {
		if len(r.Route) > 300 {
			t.Fatalf("a route label of %d bytes kept whole", len(r.Route))
		}
	}
}

// The ring holds Window/Interval+1 samples, and a route at most MaxPoints
// chart points however many samples it holds.
func TestRingIsBounded(t *testing.T) {
	m := metrics.New(metrics.BuildInfo{}, metrics.Sources{})
	cfg := console.Config{Interval: time.Second, Window: 5 * time.Minute}
	c, err := console.New(console.Source{Gatherer: m.Registry(), Config: cfg}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_700_000_000, 0)
	for i := range 1000 {
		m.Request("order", "POST /orders", "POST", 201, time.Millisecond)
		console.SampleAt(c, t0.Add(time.Duration(i)*time.Second))
	}
	if n := console.Held(c); n != 301 {
		t.Fatalf("%d samples held, want 301", n)
	}
	d := c.Data()
	r := d.Routes[0]
	if len(r.Points) == 0 || len(r.Points) > console.MaxPoints {
		t.Fatalf("%d points, want 1 to %d", len(r.Points), console.MaxPoints)
	}
	if r.Points[len(r.Points)-1].T != t0.Add(999*time.Second).UnixMilli() {
		t.Fatal("the last point does not end at the latest sample")
	}
	if r.Recent.Seconds != 60 || r.Recent.Rate != 1 {
		t.Fatalf("recent %+v: want the last minute at 1 req/s", r.Recent)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, cfg := range []console.Config{
		{Interval: time.Millisecond}, {Window: -time.Second}, {Window: 2 * time.Hour}, {MaxRoutes: -1}, {MaxRows: -1},
	} {
		if _, err := console.New(console.Source{Config: cfg}, nil); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	if _, err := console.New(console.Source{}, nil); err != nil {
		t.Fatalf("zero config: %v", err)
	}
}

// The page and its files: embedded, typed, and forbidden from reaching
// another origin by their Content-Security-Policy.
func TestPage(t *testing.T) {
	c, err := console.New(console.Source{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, c)
	resp, body := get(t, srv.URL+"/")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("CSP %q", csp)
	}
	for _, ref := range []string{`src="/console/console.js"`, `href="/console/console.css"`, `name="viewport"`} {
		if !strings.Contains(string(body), ref) {
			t.Fatalf("the page lacks %s", ref)
		}
	}
	for _, f := range []struct{ path, ct string }{
		{"/console/console.js", "text/javascript; charset=utf-8"},
		{"/console/console.css", "text/css; charset=utf-8"},
	} {
		resp, b := get(t, srv.URL+f.path)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != f.ct || len(b) == 0 {
			t.Fatalf("GET %s: %s %s (%d bytes)", f.path, resp.Status, resp.Header.Get("Content-Type"), len(b))
		}
		// Nothing from another origin: no absolute URL in the page's files
		// (but SVG's namespace name, which is no request).
		text := strings.ReplaceAll(string(b), `"http://www.w3.org/2000/svg"`, "")
		if strings.Contains(text, "http://") || strings.Contains(text, "https://") || strings.Contains(text, "//cdn") {
			t.Fatalf("%s names another origin", f.path)
		}
	}
	for _, p := range []string{"/console/index.html", "/console/nope.js", "/console/..%2fconsole.go"} {
		resp, _ := get(t, srv.URL+p)
		if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("GET %s: %s %s, want a 404 problem", p, resp.Status, resp.Header.Get("Content-Type"))
		}
	}
}

// Start samples at once and then every Interval; Close stops the sampler
// (TestMain checks no goroutine is left) and may be called again.
func TestStartClose(t *testing.T) {
	m := metrics.New(metrics.BuildInfo{}, metrics.Sources{})
	c, err := console.New(console.Source{Gatherer: m.Registry(), Config: console.Config{Interval: 100 * time.Millisecond}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	c.Start()
	m.Request("order", "POST /orders", "POST", 201, time.Millisecond)
	deadline := time.Now().Add(20 * time.Second)
	for {
		d := c.Data()
		if len(d.Routes) == 1 && d.Routes[0].Requests == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sampler never saw the request: %+v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	c.Start() // after Close: a no-op
}
