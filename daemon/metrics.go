package daemon

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/daemon/readiness"
	"github.com/meshd/meshd/host/gateway"
	"github.com/meshd/meshd/host/kv"
	"github.com/meshd/meshd/host/metrics"
	"github.com/meshd/meshd/host/registry"
)

// observability is the daemon's metrics and admin listener. Every method
// works on a zero value with metrics off (Config.NoMetrics): the hooks are
// then nil and cost nothing on the request path.
type observability struct {
	metrics *metrics.Metrics // nil when metrics are off
	admin   adminState       // admin.go

	mu       sync.Mutex
	versions map[string]string    // service → version last loaded, to tell loads from reloads
	loadedAt map[string]time.Time // service → when the serving version was swapped in
	subErrs  map[string]string    // service → why its serving version's subscriptions did not start (readiness.go)

	consumersReplaced *prometheus.CounterVec // nil when metrics are off
}

// initObservability makes the metrics registry and wires the bus hooks
// into d.cfg.Events; it runs in New, before the gateway and bus exist.
func (d *Daemon) initObservability() {
	d.obs.versions = make(map[string]string)
	d.obs.loadedAt = make(map[string]time.Time)
	d.obs.subErrs = make(map[string]string)
	if d.cfg.NoMetrics {
		return
	}
	m := metrics.New(metrics.BuildInfo{}, metrics.Sources{
		Services:  d.poolStats,
		Consumers: d.consumerLag,
	})
	d.obs.metrics = m
	h := &d.cfg.Events.Hooks
	h.Published = chainPublished(h.Published, m.Published)
	h.Delivered = chainDelivered(h.Delivered, m.Delivered)
	h.DeadLettered = chainDeadLettered(h.DeadLettered, m.DeadLettered)

	d.obs.consumersReplaced = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metrics.Namespace, Name: "event_consumers_replaced_total",
		Help: "Durable consumers whose stored state could not be opened, replaced by a new one that delivers every stored event of the topic again, by service and topic.",
	}, []string{"service", "topic"})
	m.Registry().MustRegister(d.obs.consumersReplaced, readiness.Collector(d.readySource()))
	prev := h.ConsumerReplaced
	h.ConsumerReplaced = func(service, topic string) {
		if prev != nil {
			prev(service, topic)
		}
		d.obs.consumersReplaced.WithLabelValues(service, topic).Inc()
	}
}

// Metrics is the daemon's metrics, nil when metrics are off.
func (d *Daemon) Metrics() *metrics.Metrics { return d.obs.metrics }

// observeRequest is the gateway's Observe hook, nil when metrics are off.
func (d *Daemon) observeRequest() func(gateway.Observation) {
	m := d.obs.metrics
	if m == nil {
		return nil
	}
	return func(o gateway.Observation) {
		m.Request(o.Service, o.Route, o.Method, o.Status, o.Duration)
	}
}

// observeLoad records the outcome of loading path: a failure, a first load
// or a reload (a new version of a service that was serving).
func (d *Daemon) observeLoad(path string, err error) {
	name := serviceOf(path)
	var version string
	if err == nil {
		if s := d.lookup(name); s != nil {
			version = s.Version()
		}
	}
	d.obs.mu.Lock()
	prev, had := d.obs.versions[name]
	reloaded := err == nil && had && version != "" && prev != version
	if err == nil && version != "" && prev != version {
		d.obs.versions[name] = version
		d.obs.loadedAt[name] = time.Now()
	}
	d.obs.mu.Unlock()
	d.obs.metrics.Loaded(name, err)
	if reloaded {
		d.obs.metrics.Reloaded(name)
	}
	if err != nil && d.lookup(name) == nil && abi.ValidServiceName(name) && !d.closed.Load() {
		// Refused with no version serving: DOWN (its registry entry is
		// gone with the refused version), until a version comes up.
		d.registry.Register(registry.Instance{Service: name, Version: refusedVersion, Node: d.cfg.Node, Status: registry.Down})
	}
}

// refusedVersion is the version of the registry entry of a service whose
// module was refused while no version of it served.
const refusedVersion = "refused"

// poolStats reads every serving module's pool (the metrics source).
func (d *Daemon) poolStats() []metrics.ServiceStats {
	svcs := d.locals()
	out := make([]metrics.ServiceStats, 0, len(svcs))
	for _, s := range svcs {
		st := metrics.ServiceStats{Service: s.Name(), Stats: s.Module().Stats()}
		if c, ok := d.kvCaches.Load(s.Name()); ok {
			cs := c.(*kv.Cache).Stats()
			st.KVCache = &metrics.KVCacheStats{Lookups: cs.Lookups, Hits: cs.Hits, Bytes: cs.Bytes}
		}
		out = append(out, st)
	}
	return out
}

// consumerLag reads the bus consumers' backlog (the metrics source).
func (d *Daemon) consumerLag(ctx context.Context) ([]metrics.ConsumerLag, error) {
	if d.bus == nil {
		return nil, nil
	}
	infos, err := d.bus.Consumers(ctx)
	out := make([]metrics.ConsumerLag, 0, len(infos))
	for _, ci := range infos {
		out = append(out, metrics.ConsumerLag{Service: ci.Service, Topic: ci.Type,
			Pending: ci.Pending, AckPending: ci.AckPending, Redelivered: ci.Redelivered})
	}
	return out, err
}

// The chain helpers keep a hook already set in Config.Events (by a test or
// an embedder) and call the metrics after it.

func chainPublished(a, b func(string)) func(string) {
	if a == nil {
		return b
	}
	return func(t string) { a(t); b(t) }
}

func chainDelivered(a, b func(string, string, int, error, time.Duration)) func(string, string, int, error, time.Duration) {
	if a == nil {
		return b
	}
	return func(s, t string, n int, err error, d time.Duration) { a(s, t, n, err, d); b(s, t, n, err, d) }
}

func chainDeadLettered(a, b func(string, string)) func(string, string) {
	if a == nil {
		return b
	}
	return func(s, t string) { a(s, t); b(s, t) }
}
