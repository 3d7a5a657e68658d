package service

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/fault"
	"github.com/meshd/meshd/host/metrics"
	"github.com/meshd/meshd/host/registry"
)

// Statuses are a service's statuses as the registry keeps them, in the
// order the metrics list them.
var Statuses = []registry.Status{registry.Starting, registry.Up, registry.Down, registry.OutOfService}

// StatusLog is the registry's observer: it logs every status change of an
// instance this node serves or loads (WARN when it leaves UP for DOWN,
// INFO otherwise) and counts it in meshd_service_status_transitions_total
// when counter is set.
func StatusLog(log *slog.Logger, node string, counter *prometheus.CounterVec) func(registry.Transition) {
	return func(t registry.Transition) {
		if t.Node != node || t.To == "" && t.From != registry.Up {
			return // another node's, or a version leaving that served nothing
		}
		level := slog.LevelInfo
		if t.To == registry.Down {
			level = slog.LevelWarn
		}
		to := string(t.To)
		if to == "" {
			to = "REMOVED"
		}
		log.LogAttrs(context.Background(), level, "service status "+to,
			slog.String("service", t.Service), slog.String("version", t.Version),
			slog.String("from", string(t.From)), slog.String("to", to))
		if counter != nil && t.To != "" && abi.ValidServiceName(t.Service) {
			counter.WithLabelValues(t.Service, string(t.To)).Inc()
		}
	}
}

// NewTransitionsCounter is meshd_service_status_transitions_total.
func NewTransitionsCounter() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metrics.Namespace, Name: "service_status_transitions_total",
		Help: "Changes of a service's status on this node, by the status it changed to (STARTING, UP, DOWN, OUT_OF_SERVICE).",
	}, []string{"service", "status"})
}

var statusDesc = prometheus.NewDesc(prometheus.BuildFQName(metrics.Namespace, "", "service_status"),
	"1 for the status a service has on this node (STARTING, UP, DOWN, OUT_OF_SERVICE), 0 for the others; read from the registry at scrape time.",
	[]string{"service", "status"}, nil)

// StatusCollector reports meshd_service_status of every service reg
// holds (four series per service, one of them 1).
func StatusCollector(reg *registry.Registry) prometheus.Collector { return statusCollector{reg} }

type statusCollector struct{ reg *registry.Registry }

func (statusCollector) Describe(ch chan<- *prometheus.Desc) { ch <- statusDesc }

func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	for _, name := range c.reg.Services() {
		st, ok := c.reg.Status(name)
		if !ok || !abi.ValidServiceName(name) {
			continue
		}
		for _, s := range Statuses {
			v := 0.0
			if s == st {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(statusDesc, prometheus.GaugeValue, v, name, string(s))
		}
	}
}

// Health defaults: a service whose invocations trap or run past their
// deadline HealthFailures times within HealthWindow, and at least half of
// its invocations meanwhile, is DOWN for HealthCoolDown, then UP again (a
// probe by real traffic: if it still fails, it is DOWN again after as many
// failures). Twenty failures keep a service that fails one request in a
// while (a bad input that traps) serving; half its invocations keep a busy
// service with a steady trickle of failures serving; ten seconds are long
// enough for a restarting dependency or a burst to pass, short enough
// that a recovered service is back soon after.
const (
	HealthFailures = 20
	HealthWindow   = 10 * time.Second
	HealthCoolDown = 10 * time.Second
)

// Health marks a service DOWN in the registry (registry.SetFailing) when
// its invocations keep failing, and UP again after a cool-down. Observe is
// on the path of every invocation: it costs two atomic adds when nothing
// fails.
type Health struct {
	reg      *registry.Registry
	log      *slog.Logger
	failures int64
	window   time.Duration
	coolDown time.Duration
	svcs     sync.Map // service name → *health

	mu     sync.Mutex
	timers map[string]*time.Timer // recoveries pending, by service
	closed bool
}

// health is one service's window of invocations.
type health struct {
	mu      sync.Mutex // taken on a failure only
	start   time.Time  // of the window; zero when none is open
	total   atomic.Int64
	failed  int64
	tripped bool
}

// NewHealth returns a Health with the defaults (failures, window and cool
// down zero) or the given bounds.
func NewHealth(reg *registry.Registry, log *slog.Logger, failures int, window, coolDown time.Duration) *Health {
	if failures <= 0 {
		failures = HealthFailures
	}
	if window <= 0 {
		window = HealthWindow
	}
	if coolDown <= 0 {
		coolDown = HealthCoolDown
	}
	return &Health{reg: reg, log: log, failures: int64(failures), window: window, coolDown: coolDown,
		timers: make(map[string]*time.Timer)}
}

// Observe counts one invocation of service that ended with err: a trap, a
// broken ABI contract or a deadline (fault kinds Failed and Timeout) is a
// failure; success, a guest's own error code, a busy pool or a closed
// version are not.
func (h *Health) Observe(service string, err error) {
	v, ok := h.svcs.Load(service)
	if !ok {
		v, _ = h.svcs.LoadOrStore(service, new(health))
	}
	s := v.(*health)
	s.total.Add(1)
	if err == nil {
		return
	}
	switch fault.Classify(service, err).Kind {
	case fault.Failed, fault.Timeout:
	default:
		return
	}
	now := time.Now()
	s.mu.Lock()
	if s.start.IsZero() || now.Sub(s.start) > h.window {
		s.start, s.failed = now, 0
		s.total.Store(1)
	}
	s.failed++
	trip := !s.tripped && s.failed >= h.failures && 2*s.failed >= s.total.Load()
	if trip {
		s.tripped = true
		s.start, s.failed = time.Time{}, 0
	}
	s.mu.Unlock()
	if trip {
		h.trip(service, s)
	}
}

func (h *Health) trip(service string, s *health) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.log.Warn("service DOWN: its invocations keep failing",
		slog.String("service", service), slog.Int64("failures", h.failures),
		slog.Duration("window", h.window), slog.Duration("cool_down", h.coolDown))
	h.reg.SetFailing(service, true)
	if t := h.timers[service]; t != nil {
		t.Stop()
	}
	h.timers[service] = time.AfterFunc(h.coolDown, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.closed {
			return
		}
		delete(h.timers, service)
		s.mu.Lock()
		s.tripped = false
		s.mu.Unlock()
		h.reg.SetFailing(service, false)
	})
}

// Forget drops what Health keeps of service (it was removed).
func (h *Health) Forget(service string) {
	h.svcs.Delete(service)
	h.mu.Lock()
	defer h.mu.Unlock()
	if t := h.timers[service]; t != nil {
		t.Stop()
		delete(h.timers, service)
	}
}

// Close stops the pending recoveries.
func (h *Health) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for name, t := range h.timers {
		t.Stop()
		delete(h.timers, name)
	}
}
