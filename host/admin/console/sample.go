package console

import (
	"cmp"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The metric families the console reads (host/metrics, docs/metrics.md).
const (
	famRequests     = "meshd_gateway_requests_total"
	famDuration     = "meshd_gateway_request_duration_seconds"
	famPending      = "meshd_event_consumer_pending"
	famAckPending   = "meshd_event_consumer_ack_pending"
	famRedelivering = "meshd_event_consumer_redelivered"
	famLagErrors    = "meshd_event_consumer_scrape_errors"
	famDelivered    = "meshd_events_delivered_total"
	famRedelivered  = "meshd_events_redelivered_total"
	famFailures     = "meshd_event_delivery_failures_total"
	famDeadLettered = "meshd_events_dead_lettered_total"
	famLoads        = "meshd_module_loads_total"
	famReloads      = "meshd_module_reloads_total"
	famConfig       = "meshd_config_reloads_total"
)

// Bounds of the strings a sample keeps: label values come from module
// declarations (route patterns, topics) and errors may quote them.
const (
	maxLabelBytes = 256
	maxErrorBytes = 1024
)

// routeKey names a route: its service and its declared pattern.
type routeKey struct{ service, route string }

// routeRaw is a route's counters at one sample, summed over methods and
// codes: requests, 5xx answers, and the latency histogram's cumulative
// bucket counts (bounds shared by every sample of the route).
type routeRaw struct {
	key      routeKey
	requests float64
	errors   float64
	bounds   []float64 // upper bounds, ascending, +Inf excluded
	buckets  []float64 // cumulative counts per bound
	count    float64   // observations (the +Inf bucket)
}

// sample is one gather of the registry.
type sample struct {
	at      time.Time
	routes  map[routeKey]*routeRaw
	dropped int
	// From the latest gather only (not kept as history):
	consumers []Consumer
	lagError  bool
	modules   []Module
	config    Reloads
	err       string
}

// The value accessors of the Prometheus client model, named by the
// methods used so that the model's package need not be imported.
type (
	labelPair interface {
		GetName() string
		GetValue() string
	}
	bucket interface {
		GetUpperBound() float64
		GetCumulativeCount() uint64
	}
)

func label[L labelPair](ls []L, name string) string {
	for _, l := range ls {
		if l.GetName() == name {
			return bound(l.GetValue(), maxLabelBytes)
		}
	}
	return ""
}

// parse makes a sample of a gather's families (mfs is
// []*io_prometheus_client.MetricFamily). A route's name and bucket bounds
// are shared with the previous sample (prev, nil for none), so that the
// ring holds each once.
func parse[F interface {
	GetName() string
	GetMetric() []M
}, M interface {
	GetLabel() []L
	GetCounter() C
	GetGauge() G
	GetHistogram() H
}, L labelPair, C interface{ GetValue() float64 }, G interface{ GetValue() float64 }, H interface {
	GetBucket() []B
	GetSampleCount() uint64
}, B bucket](at time.Time, mfs []F, prev *sample, cfg Config) *sample {
	s := &sample{at: at, routes: make(map[routeKey]*routeRaw)}
	type ct struct{ service, topic string }
	consumers := make(map[ct]*Consumer)
	consumer := func(m M) *Consumer {
		k := ct{label(m.GetLabel(), "service"), label(m.GetLabel(), "topic")}
		c := consumers[k]
		if c == nil {
			c = &Consumer{Service: k.service, Topic: k.topic}
			consumers[k] = c
		}
		return c
	}
	modules := make(map[string]*Module)
	module := func(m M) *Module {
		name := label(m.GetLabel(), "service")
		mod := modules[name]
		if mod == nil {
			mod = &Module{Service: name}
			modules[name] = mod
		}
		return mod
	}
	route := func(m M) *routeRaw {
		k := routeKey{label(m.GetLabel(), "service"), label(m.GetLabel(), "route")}
		if k.route == "" { // no route matched (404): not a route's figure
			return nil
		}
		r := s.routes[k]
		if r == nil {
			r = &routeRaw{key: k}
			if p := prev.route(k); p != nil {
				r.key, r.bounds = p.key, p.bounds
			}
			s.routes[r.key] = r
		}
		return r
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case famRequests:
			for _, m := range mf.GetMetric() {
				if r := route(m); r != nil {
					v := m.GetCounter().GetValue()
					r.requests += v
					if strings.HasPrefix(label(m.GetLabel(), "code"), "5") {
						r.errors += v
					}
				}
			}
		case famDuration:
			for _, m := range mf.GetMetric() {
				r := route(m)
				if r == nil {
					continue
				}
				h := m.GetHistogram()
				bs := h.GetBucket()
				if r.buckets == nil {
					bounds := make([]float64, 0, len(bs))
					for _, b := range bs {
						if !math.IsInf(b.GetUpperBound(), 1) {
							bounds = append(bounds, b.GetUpperBound())
						}
					}
					if !slices.Equal(bounds, r.bounds) {
						r.bounds = bounds
					}
					r.buckets = make([]float64, len(r.bounds))
				}
				for i, b := range bs {
					if i < len(r.bounds) && b.GetUpperBound() == r.bounds[i] {
						r.buckets[i] += float64(b.GetCumulativeCount())
					}
				}
				r.count += float64(h.GetSampleCount())
			}
		case famPending, famAckPending, famRedelivering, famDelivered, famRedelivered, famFailures, famDeadLettered:
			for _, m := range mf.GetMetric() {
				c := consumer(m)
				switch mf.GetName() {
				case famPending:
					c.Pending = m.GetGauge().GetValue()
				case famAckPending:
					c.AckPending = m.GetGauge().GetValue()
				case famRedelivering:
					c.Redelivering = m.GetGauge().GetValue()
				case famDelivered:
					c.Delivered = m.GetCounter().GetValue()
				case famRedelivered:
					c.Redelivered = m.GetCounter().GetValue()
				case famFailures:
					c.Failures = m.GetCounter().GetValue()
				case famDeadLettered:
					c.DeadLettered = m.GetCounter().GetValue()
				}
			}
		case famLagErrors:
			for _, m := range mf.GetMetric() {
				s.lagError = s.lagError || m.GetGauge().GetValue() > 0
			}
		case famLoads:
			for _, m := range mf.GetMetric() {
				switch label(m.GetLabel(), "result") {
				case "ok":
					module(m).Loads += m.GetCounter().GetValue()
				case "failed":
					module(m).Failed += m.GetCounter().GetValue()
				}
			}
		case famReloads:
			for _, m := range mf.GetMetric() {
				module(m).Reloads += m.GetCounter().GetValue()
			}
		case famConfig:
			for _, m := range mf.GetMetric() {
				switch label(m.GetLabel(), "result") {
				case "ok":
					s.config.OK += m.GetCounter().GetValue()
				case "failed":
					s.config.Failed += m.GetCounter().GetValue()
				}
			}
		}
	}
	if len(s.routes) > cfg.MaxRoutes {
		keys := make([]routeKey, 0, len(s.routes))
		for k := range s.routes {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, compareRoutes)
		for _, k := range keys[cfg.MaxRoutes:] {
			delete(s.routes, k)
		}
		s.dropped = len(keys) - cfg.MaxRoutes
	}
	s.consumers = make([]Consumer, 0, len(consumers))
	for _, c := range consumers {
		s.consumers = append(s.consumers, *c)
	}
	slices.SortFunc(s.consumers, func(a, b Consumer) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Topic, b.Topic))
	})
	s.consumers = s.consumers[:min(len(s.consumers), cfg.MaxRows)]
	s.modules = make([]Module, 0, len(modules))
	for _, m := range modules {
		s.modules = append(s.modules, *m)
	}
	slices.SortFunc(s.modules, func(a, b Module) int { return cmp.Compare(a.Service, b.Service) })
	s.modules = s.modules[:min(len(s.modules), cfg.MaxRows)]
	return s
}

// route is the sample's figures of route k, nil when s is nil or lacks it.
func (s *sample) route(k routeKey) *routeRaw {
	if s == nil {
		return nil
	}
	return s.routes[k]
}

func compareRoutes(a, b routeKey) int {
	return cmp.Or(cmp.Compare(a.service, b.service), cmp.Compare(a.route, b.route))
}

// Data is what GET /v1/console serves.
type Data struct {
	// SampledAt is the time of the latest sample (absent before the first).
	SampledAt       time.Time `json:"sampled_at,omitzero"`
	IntervalSeconds float64   `json:"interval_seconds"`
	WindowSeconds   float64   `json:"window_seconds"`
	// Error is why the latest gather failed in part, if it did.
	Error string `json:"error,omitempty"`
	// Routes are the routes that served requests, by service then route.
	Routes []Route `json:"routes"`
	// RoutesDropped counts routes past Config.MaxRoutes, not shown.
	RoutesDropped int `json:"routes_dropped"`
	// Consumers are the event consumers, by service then topic.
	Consumers []Consumer `json:"consumers"`
	// ConsumersError is set when the latest reading of consumer lag
	// failed (the lag figures are then missing).
	ConsumersError bool `json:"consumers_error"`
	// Modules are the load counts of each service's modules.
	Modules []Module `json:"modules"`
	// ConfigReloads counts the reloads of the configuration file.
	ConfigReloads Reloads `json:"config_reloads"`
}

// Route is one route's figures.
type Route struct {
	Service string `json:"service"`
	Route   string `json:"route"`
	// Requests and Errors (5xx answers) are counted since the route's
	// first request (cumulative, as the counters are).
	Requests float64 `json:"requests"`
	Errors   float64 `json:"errors"`
	// Recent is over the last RecentSpan (or the samples held, if fewer).
	Recent Stats `json:"recent"`
	// Points are the chart, oldest first, at most MaxPoints.
	Points []Point `json:"points"`
}

// Stats are a route's figures over a span of time: requests per second,
// 5xx answers per second, and the median and 99th percentile latency in
// seconds (null without requests in the span).
type Stats struct {
	Seconds   float64 `json:"seconds"`
	Rate      Num     `json:"rate"`
	ErrorRate Num     `json:"error_rate"`
	P50       Num     `json:"p50"`
	P99       Num     `json:"p99"`
}

// Point is Stats over the span ending at T (Unix milliseconds).
type Point struct {
	T int64 `json:"t"`
	Stats
}

// Consumer is an event consumer: a service's durable subscription to a
// topic. Pending, AckPending and Redelivering are its state at the latest
// sample (meshd_event_consumer_*); the rest are counters since the start.
type Consumer struct {
	Service      string  `json:"service"`
	Topic        string  `json:"topic"`
	Pending      float64 `json:"pending"`
	AckPending   float64 `json:"ack_pending"`
	Redelivering float64 `json:"redelivering"`
	Delivered    float64 `json:"delivered"`
	Redelivered  float64 `json:"redelivered"`
	Failures     float64 `json:"failures"`
	DeadLettered float64 `json:"dead_lettered"`
}

// Module counts a service's module loads since the start: loads that
// served, loads refused, and serving versions replaced.
type Module struct {
	Service string  `json:"service"`
	Loads   float64 `json:"loads"`
	Failed  float64 `json:"failed"`
	Reloads float64 `json:"reloads"`
}

// Reloads counts the configuration file's reloads by result.
type Reloads struct {
	OK     float64 `json:"ok"`
	Failed float64 `json:"failed"`
}

// Num is a figure that may be unknown (NaN: JSON null), written with 4
// significant digits.
type Num float64

// MarshalJSON writes n, or null when it is NaN or infinite.
func (n Num) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', 4, 64), nil
}

// build derives the data from samples (oldest first).
func build(samples []*sample, cfg Config) Data {
	d := Data{IntervalSeconds: cfg.Interval.Seconds(), WindowSeconds: cfg.Window.Seconds(),
		Routes: []Route{}, Consumers: []Consumer{}, Modules: []Module{}}
	if len(samples) == 0 {
		return d
	}
	last := samples[len(samples)-1]
	d.SampledAt, d.Error, d.RoutesDropped = last.at, last.err, last.dropped
	d.Consumers = append(d.Consumers, last.consumers...)
	d.ConsumersError = last.lagError
	d.Modules = append(d.Modules, last.modules...)
	d.ConfigReloads = last.config

	keys := make([]routeKey, 0, len(last.routes))
	for k := range last.routes {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareRoutes)
	// The recent span starts at the oldest sample within RecentSpan of the
	// latest one.
	first := sort.Search(len(samples), func(i int) bool { return !samples[i].at.Before(last.at.Add(-RecentSpan)) })
	first = min(first, len(samples)-1)
	// Chart points end at the latest sample and merge step samples each.
	step := max(1, (len(samples)-1+MaxPoints-1)/MaxPoints)
	for _, k := range keys {
		cur := last.routes[k]
		r := Route{Service: k.service, Route: k.route, Requests: cur.requests, Errors: cur.errors, Points: []Point{}}
		if first < len(samples)-1 {
			r.Recent = stats(samples[first], last, k)
		} else {
			r.Recent = Stats{Rate: Num(math.NaN()), ErrorRate: Num(math.NaN()), P50: Num(math.NaN()), P99: Num(math.NaN())}
		}
		for end := len(samples) - 1; end-step >= 0; end -= step {
			r.Points = append(r.Points, Point{T: samples[end].at.UnixMilli(), Stats: stats(samples[end-step], samples[end], k)})
		}
		slices.Reverse(r.Points)
		d.Routes = append(d.Routes, r)
	}
	return d
}

// stats are route k's figures between samples a and b. A route absent
// from a counts from zero (its counters were created after a); a counter
// that went down was reset, and counts from zero too.
func stats(a, b *sample, k routeKey) Stats {
	s := Stats{Seconds: b.at.Sub(a.at).Seconds()}
	rb := b.routes[k]
	ra := a.routes[k]
	if ra == nil {
		ra = &routeRaw{}
	}
	if rb == nil || s.Seconds <= 0 {
		nan := Num(math.NaN())
		s.Rate, s.ErrorRate, s.P50, s.P99 = nan, nan, nan, nan
		return s
	}
	reset := rb.requests < ra.requests || rb.count < ra.count || rb.errors < ra.errors
	if reset {
		ra = &routeRaw{}
	}
	s.Rate = Num((rb.requests - ra.requests) / s.Seconds)
	s.ErrorRate = Num((rb.errors - ra.errors) / s.Seconds)
	deltas := make([]float64, len(rb.buckets))
	for i := range rb.buckets {
		deltas[i] = rb.buckets[i]
		if i < len(ra.buckets) && slices.Equal(ra.bounds, rb.bounds) {
			deltas[i] -= ra.buckets[i]
		}
	}
	total := rb.count - ra.count
	s.P50 = Num(quantile(0.5, rb.bounds, deltas, total))
	s.P99 = Num(quantile(0.99, rb.bounds, deltas, total))
	return s
}

// quantile estimates the q-quantile of observations in a histogram with
// cumulative counts per upper bound and total observations, as
// Prometheus's histogram_quantile does: linear within the bucket the rank
// falls in, the bucket's lower bound taken as 0 for the first; in the +Inf
// bucket, the highest finite bound. NaN without observations.
func quantile(q float64, bounds, cumulative []float64, total float64) float64 {
	if total <= 0 || len(bounds) == 0 || len(cumulative) != len(bounds) {
		return math.NaN()
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for i, upper := range bounds {
		if cumulative[i] >= rank {
			in := cumulative[i] - below
			if in <= 0 {
				return upper
			}
			return lower + (upper-lower)*(rank-below)/in
		}
		lower, below = upper, cumulative[i]
	}
	return bounds[len(bounds)-1]
}

// bound cuts s to at most n bytes on a rune boundary, marking the cut.
func bound(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
