package metrics

import (
	"context"
	"errors"
	goruntime "runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/meshd/meshd/runtime"
)

// Namespace prefixes every meshd metric.
const Namespace = "meshd"

// Results of an invocation (the result label of meshd_invocations_total).
const (
	ResultOK      = "ok"      // the entry point returned CodeOK
	ResultError   = "error"   // the entry point returned another code
	ResultTrap    = "trap"    // the guest trapped, exited or broke the ABI
	ResultTimeout = "timeout" // the call deadline passed
	ResultBusy    = "busy"    // no instance became free in time
	ResultClosed  = "closed"  // the module was closing (reload or removal)
	// ResultCanceled: the caller's context ended first (the client went
	// away, the request or event-handler deadline passed); not the
	// module's fault.
	ResultCanceled = "canceled"
)

// Latency buckets, in seconds: a Wasm call takes microseconds to
// milliseconds, an HTTP request a little more.
var (
	requestBuckets    = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	invocationBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5}
)

// ServiceStats is one loaded service's pool, and its key-value cache when
// it has one, read at scrape time.
type ServiceStats struct {
	Service string
	Stats   runtime.Stats
	KVCache *KVCacheStats // nil: no cache
}

// KVCacheStats are a service's key-value cache counters (kv.CacheStats).
type KVCacheStats struct {
	Lookups, Hits uint64
	Bytes         int
}

// ConsumerLag is one durable consumer's backlog, read at scrape time.
type ConsumerLag struct {
	Service, Topic                   string
	Pending, AckPending, Redelivered uint64
}

// Sources are read when Prometheus scrapes; nil fields are skipped.
type Sources struct {
	// Services returns the pools of the loaded services.
	Services func() []ServiceStats
	// Consumers returns the lag of every durable consumer.
	Consumers func(ctx context.Context) ([]ConsumerLag, error)
}

// Metrics is meshd's set of metrics on its own registry. A nil *Metrics is
// valid: every method is a no-op, so callers need no nil checks.
type Metrics struct {
	reg *prometheus.Registry

	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	rejected        *prometheus.CounterVec

	invocations        *prometheus.CounterVec
	invocationDuration *prometheus.HistogramVec

	loads   *prometheus.CounterVec
	reloads *prometheus.CounterVec
	config  *prometheus.CounterVec

	published       *prometheus.CounterVec
	delivered       *prometheus.CounterVec
	deliveryErrors  *prometheus.CounterVec
	redelivered     *prometheus.CounterVec
	deadLettered    *prometheus.CounterVec
	handlerDuration *prometheus.HistogramVec

	kvOps    *prometheus.CounterVec
	kvErrors *prometheus.CounterVec

	guestLogDropped *prometheus.CounterVec

	outboxPending *prometheus.GaugeVec
	outboxRelayed *prometheus.CounterVec
}

// BuildInfo labels meshd_build_info.
type BuildInfo struct {
	Version string // meshd's version; empty reads the main module's version
}

// New makes the registry with the Go and process collectors,
// meshd_build_info, every meshd metric, and collectors reading src at
// scrape time.
func New(bi BuildInfo, src Sources) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
		reg.MustRegister(c)
		return c
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, labels)
		reg.MustRegister(g)
		return g
	}
	histogram := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets}, labels)
		reg.MustRegister(h)
		return h
	}
	m.requests = counter("gateway_requests_total",
		"HTTP requests served by the gateway, by service, route pattern, method and status code (service and route empty when no route matched).",
		"service", "route", "method", "code")
	m.requestDuration = histogram("gateway_request_duration_seconds",
		"Time from the gateway receiving a request to the response being written.",
		requestBuckets, "service", "route", "method")
	m.rejected = counter("gateway_rejected_total",
		"Requests answered with a refusal status, by reason: 401 unauthenticated, 403 forbidden, 413 too_large, 415 unsupported_media_type, 429 rate_limited.",
		"service", "route", "reason")
	m.invocations = counter("invocations_total",
		"Module invocations by service, entry point (http, event) and result (ok, error, trap, timeout, busy, closed, canceled).",
		"service", "entry", "result")
	m.invocationDuration = histogram("invocation_duration_seconds",
		"Time of one module invocation, from asking the pool for an instance to the entry point returning.",
		invocationBuckets, "service", "entry")
	m.loads = counter("module_loads_total",
		"Module loads by service and result (ok, failed); a failed load leaves the previous version serving.",
		"service", "result")
	m.reloads = counter("module_reloads_total",
		"Module versions replaced by a newer version of the same service.",
		"service")
	m.config = counter("config_reloads_total",
		"Reloads of the configuration file (SIGHUP or a change of the file) by result (ok, failed); a failed reload leaves the running gateway policies serving.",
		"result")
	m.published = counter("events_published_total",
		"Events published to the event stream, by topic (event type).",
		"topic")
	m.delivered = counter("events_delivered_total",
		"Events a subscribing service handled successfully (acknowledged), by service and topic.",
		"service", "topic")
	m.deliveryErrors = counter("event_delivery_failures_total",
		"Event deliveries whose handler failed and will be retried or dead-lettered, by service and topic.",
		"service", "topic")
	m.redelivered = counter("events_redelivered_total",
		"Deliveries of an event to a service after the first attempt, by service and topic.",
		"service", "topic")
	m.deadLettered = counter("events_dead_lettered_total",
		"Events moved to the dead-letter stream after the last attempt failed, by service and topic.",
		"service", "topic")
	m.handlerDuration = histogram("event_handler_duration_seconds",
		"Time to handle one event delivery, including applying its effects.",
		invocationBuckets, "service", "topic")
	m.kvOps = counter("kv_operations_total",
		"Key-value operations by service and operation (get, put, delete), including failed ones.",
		"service", "op")
	m.kvErrors = counter("kv_errors_total",
		"Key-value operations that failed (a missing key is not a failure), by service and operation.",
		"service", "op")
	m.guestLogDropped = counter("guest_log_dropped_total",
		"Guest log lines (the log host function and WASI stdout and stderr) dropped by the per-service rate limit.",
		"service")
	m.outboxPending = gauge("outbox_pending_records",
		"Outbox records whose events the service's relay holds to publish (their publish failed, or a start found them); 0 when all went out.",
		"service")
	m.outboxRelayed = counter("outbox_relayed_records_total",
		"Outbox records whose events the service's relay published: after a failed publish, or left by a crash and found at a start.",
		"service")

	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(bi),
	)
	if src.Services != nil {
		reg.MustRegister(&poolCollector{src: src.Services})
	}
	if src.Consumers != nil {
		reg.MustRegister(&lagCollector{src: src.Consumers})
	}
	return m
}

func buildInfo(bi BuildInfo) prometheus.Collector {
	version := bi.Version
	if version == "" {
		version = "(devel)"
		if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
			version = info.Main.Version
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help:        "Always 1; labels say which meshd build is running.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": goruntime.Version()},
	})
	g.Set(1)
	return g
}

// Registry is the registry every meshd metric is on.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Request records one gateway request. service and route are empty when no
// route matched.
func (m *Metrics) Request(service, route, method string, status int, d time.Duration) {
	if m == nil {
		return
	}
	method = boundMethod(method)
	m.requests.WithLabelValues(service, route, method, statusCode(status)).Inc()
	m.requestDuration.WithLabelValues(service, route, method).Observe(d.Seconds())
	if reason := rejection(status); reason != "" {
		m.rejected.WithLabelValues(service, route, reason).Inc()
	}
}

// Invoked records one module invocation of entry ("http", "event") with
// its result (Result…).
func (m *Metrics) Invoked(service, entry, result string, d time.Duration) {
	if m == nil {
		return
	}
	m.invocations.WithLabelValues(service, entry, result).Inc()
	m.invocationDuration.WithLabelValues(service, entry).Observe(d.Seconds())
}

// Loaded records a module load of service; err nil means it serves.
func (m *Metrics) Loaded(service string, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "failed"
	}
	m.loads.WithLabelValues(service, result).Inc()
}

// ConfigReloaded records a reload of the configuration file; err nil means
// its policies serve.
func (m *Metrics) ConfigReloaded(err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "failed"
	}
	m.config.WithLabelValues(result).Inc()
}

// Reloaded records that a new version of service replaced the serving one.
func (m *Metrics) Reloaded(service string) {
	if m == nil {
		return
	}
	m.reloads.WithLabelValues(service).Inc()
}

// Published records an event of type topic written to the stream.
func (m *Metrics) Published(topic string) {
	if m == nil {
		return
	}
	m.published.WithLabelValues(topic).Inc()
}

// Delivered records one delivery attempt (1 is the first) of topic to
// service, its handler's error and duration.
func (m *Metrics) Delivered(service, topic string, attempt int, err error, d time.Duration) {
	if m == nil {
		return
	}
	if attempt > 1 {
		m.redelivered.WithLabelValues(service, topic).Inc()
	}
	if err != nil {
		m.deliveryErrors.WithLabelValues(service, topic).Inc()
	} else {
		m.delivered.WithLabelValues(service, topic).Inc()
	}
	m.handlerDuration.WithLabelValues(service, topic).Observe(d.Seconds())
}

// DeadLettered records an event of topic moved to the dead-letter stream
// after service failed it for the last time.
func (m *Metrics) DeadLettered(service, topic string) {
	if m == nil {
		return
	}
	m.deadLettered.WithLabelValues(service, topic).Inc()
}

// KV records one key-value operation (get, put, delete) of service;
// notFound errors are not failures and should be passed as nil.
func (m *Metrics) KV(service, op string, err error) {
	if m == nil {
		return
	}
	m.kvOps.WithLabelValues(service, op).Inc()
	if err != nil {
		m.kvErrors.WithLabelValues(service, op).Inc()
	}
}

// OutboxPending sets the number of outbox records service's relay holds
// to publish.
func (m *Metrics) OutboxPending(service string, n int) {
	if m == nil {
		return
	}
	m.outboxPending.WithLabelValues(service).Set(float64(n))
}

// OutboxRelayed records n outbox records of service whose events its relay
// published.
func (m *Metrics) OutboxRelayed(service string, n int) {
	if m == nil {
		return
	}
	m.outboxRelayed.WithLabelValues(service).Add(float64(n))
}

// GuestLogDropped records n guest log lines of service dropped by the
// rate limit.
func (m *Metrics) GuestLogDropped(service string, n int) {
	if m == nil {
		return
	}
	m.guestLogDropped.WithLabelValues(service).Add(float64(n))
}

// InvocationResult classifies a runtime error (nil with ok reporting the
// entry point's code) into a Result… value.
func InvocationResult(err error, ok bool) string {
	switch {
	case err == nil && ok:
		return ResultOK
	case err == nil:
		return ResultError
	case errors.Is(err, runtime.ErrBusy):
		return ResultBusy
	case errors.Is(err, runtime.ErrTimeout):
		return ResultTimeout
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return ResultCanceled
	case errors.Is(err, runtime.ErrClosed):
		return ResultClosed
	case errors.Is(err, runtime.ErrTooLarge):
		return ResultError
	}
	return ResultTrap
}

// boundMethod keeps the method label bounded: clients may send anything.
func boundMethod(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE":
		return m
	}
	return "OTHER"
}

// statusCode formats common codes without allocating.
func statusCode(s int) string {
	switch s {
	case 200:
		return "200"
	case 201:
		return "201"
	case 204:
		return "204"
	case 400:
		return "400"
	case 404:
		return "404"
	case 500:
		return "500"
	case 503:
		return "503"
	case 0:
		return "0"
	}
	if s < 100 || s > 999 {
		return "0"
	}
	return strconv.Itoa(s)
}

// rejection names the gateway policy a status code stands for, or "".
func rejection(status int) string {
	switch status {
	case 401:
		return "unauthenticated"
	case 403:
		return "forbidden"
	case 413:
		return "too_large"
	case 415:
		return "unsupported_media_type"
	case 429:
		return "rate_limited"
	}
	return ""
}
