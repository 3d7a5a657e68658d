package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
}

// poolCollector reads every loaded service's pool at scrape time: nothing
// is counted twice on the call path.
type poolCollector struct {
	src func() []ServiceStats
}

var (
	instancesDesc = desc("instances",
		"Instances of a service's module alive, by state (idle: waiting in the pool; busy: running a call).",
		"service", "state")
	instanceMemoryDesc = desc("instance_memory_bytes",
		"Linear memory of a service's live instances, summed, as last seen when each was created or returned to the pool.",
		"service")
	poolWaitsDesc = desc("pool_waits_total",
		"Calls that found every instance of the service busy and waited for one.",
		"service")
	poolRejectionsDesc = desc("pool_rejections_total",
		"Calls refused because every instance stayed busy past the acquire timeout (503 at the gateway).",
		"service")
	instancesCreatedDesc = desc("instances_created_total",
		"Instances instantiated for a service (warm-up, demand and replacement).",
		"service")
	instancesDiscardedDesc = desc("instances_discarded_total",
		"Instances thrown away after a trap, timeout or ABI violation.",
		"service")
	instancesRecycledDesc = desc("instances_recycled_total",
		"Instances retired after serving their share of calls.",
		"service")
	instancesRestoredDesc = desc("instances_restored_total",
		"Instances started from the service's snapshot rather than initialised (counted in instances_created_total).",
		"service")
	instancesRenewedDesc = desc("instances_renewed_total",
		"Retired instances reset to the service's snapshot in place and kept as fresh ones (counted in instances_recycled_total, instances_created_total and instances_restored_total).",
		"service")
	kvCacheLookupsDesc = desc("kv_cache_lookups_total",
		"Key-value reads of a service that looked in its in-memory cache.",
		"service")
	kvCacheHitsDesc = desc("kv_cache_hits_total",
		"Key-value reads of a service answered from its in-memory cache, without a round trip to JetStream.",
		"service")
	kvCacheBytesDesc = desc("kv_cache_bytes",
		"Bytes of a service's keys and values held in its in-memory cache (approximate).",
		"service")
)

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{instancesDesc, instanceMemoryDesc, poolWaitsDesc, poolRejectionsDesc,
		instancesCreatedDesc, instancesDiscardedDesc, instancesRecycledDesc, instancesRestoredDesc, instancesRenewedDesc,
		kvCacheLookupsDesc, kvCacheHitsDesc, kvCacheBytesDesc} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.src() {
		st := s.Stats
		busy := max(st.Live-st.Idle, 0)
		ch <- prometheus.MustNewConstMetric(instancesDesc, prometheus.GaugeValue, float64(st.Idle), s.Service, "idle")
		ch <- prometheus.MustNewConstMetric(instancesDesc, prometheus.GaugeValue, float64(busy), s.Service, "busy")
		ch <- prometheus.MustNewConstMetric(instanceMemoryDesc, prometheus.GaugeValue, float64(st.MemoryBytes), s.Service)
		ch <- prometheus.MustNewConstMetric(poolWaitsDesc, prometheus.CounterValue, float64(st.Waits), s.Service)
		ch <- prometheus.MustNewConstMetric(poolRejectionsDesc, prometheus.CounterValue, float64(st.Busy), s.Service)
		ch <- prometheus.MustNewConstMetric(instancesCreatedDesc, prometheus.CounterValue, float64(st.Created), s.Service)
		ch <- prometheus.MustNewConstMetric(instancesDiscardedDesc, prometheus.CounterValue, float64(st.Discarded), s.Service)
		ch <- prometheus.MustNewConstMetric(instancesRecycledDesc, prometheus.CounterValue, float64(st.Recycled), s.Service)
		ch <- prometheus.MustNewConstMetric(instancesRestoredDesc, prometheus.CounterValue, float64(st.Restored), s.Service)
		ch <- prometheus.MustNewConstMetric(instancesRenewedDesc, prometheus.CounterValue, float64(st.Renewed), s.Service)
		if c := s.KVCache; c != nil {
			ch <- prometheus.MustNewConstMetric(kvCacheLookupsDesc, prometheus.CounterValue, float64(c.Lookups), s.Service)
			ch <- prometheus.MustNewConstMetric(kvCacheHitsDesc, prometheus.CounterValue, float64(c.Hits), s.Service)
			ch <- prometheus.MustNewConstMetric(kvCacheBytesDesc, prometheus.GaugeValue, float64(c.Bytes), s.Service)
		}
	}
}

// lagCollector asks JetStream for every durable consumer's backlog at
// scrape time, bounded by lagTimeout so a slow server cannot hang a scrape.
type lagCollector struct {
	src func(ctx context.Context) ([]ConsumerLag, error)
}

const lagTimeout = 2 * time.Second

var (
	lagPendingDesc = desc("event_consumer_pending",
		"Events in the stream not yet delivered to the service's durable consumer (consumer lag).",
		"service", "topic")
	lagAckPendingDesc = desc("event_consumer_ack_pending",
		"Events delivered to the service and not yet acknowledged (being handled or awaiting redelivery).",
		"service", "topic")
	lagRedeliveredDesc = desc("event_consumer_redelivered",
		"Events of the consumer currently in redelivery (delivered more than once and not yet acknowledged).",
		"service", "topic")
	lagErrorDesc = desc("event_consumer_scrape_errors",
		"1 when reading consumer lag failed at this scrape, else 0.")
)

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{lagPendingDesc, lagAckPendingDesc, lagRedeliveredDesc, lagErrorDesc} {
		ch <- d
	}
}

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), lagTimeout)
	defer cancel()
	lags, err := c.src(ctx)
	failed := 0.0
	if err != nil {
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(lagErrorDesc, prometheus.GaugeValue, failed)
	for _, l := range lags {
		ch <- prometheus.MustNewConstMetric(lagPendingDesc, prometheus.GaugeValue, float64(l.Pending), l.Service, l.Topic)
		ch <- prometheus.MustNewConstMetric(lagAckPendingDesc, prometheus.GaugeValue, float64(l.AckPending), l.Service, l.Topic)
		ch <- prometheus.MustNewConstMetric(lagRedeliveredDesc, prometheus.GaugeValue, float64(l.Redelivered), l.Service, l.Topic)
	}
}

// Interface guards.
var (
	_ prometheus.Collector = (*poolCollector)(nil)
	_ prometheus.Collector = (*lagCollector)(nil)
)
