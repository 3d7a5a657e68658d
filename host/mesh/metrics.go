package mesh

import (
	"github.com/meshd/meshd/host/internal/names"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	breakerStateDesc = prometheus.NewDesc("meshd_breaker_state",
		"State of the circuit breaker of a caller's calls to a callee: 0 closed, 1 half-open, 2 open.",
		[]string{"caller", "callee"}, nil)
	breakerTransitionsDesc = prometheus.NewDesc("meshd_breaker_transitions_total",
		"Changes of state of the circuit breaker of a caller's calls to a callee.",
		[]string{"caller", "callee"}, nil)
	retriesDesc = prometheus.NewDesc("meshd_call_retries_total",
		"Retries of calls to a service that its retry budget allowed.",
		[]string{"callee"}, nil)
	retriesRefusedDesc = prometheus.NewDesc("meshd_call_retries_refused_total",
		"Failed calls to a service that could have been retried but found its retry budget spent.",
		[]string{"callee"}, nil)
)

// Collector returns a prometheus.Collector of the Client's breakers and
// retry budgets, read at scrape time (nothing is counted on the call path
// for it): meshd_breaker_state and meshd_breaker_transitions_total by
// caller and callee, meshd_call_retries_total and
// meshd_call_retries_refused_total by callee. Register it on the daemon's
// registry. Label values are service names, bounded by MaxPairs and
// escaped; a breaker made anew (SetBreakerSettings, Forget) starts its
// counter again from 0, which Prometheus reads as a reset.
func (c *Client) Collector() prometheus.Collector { return collector{c} }

type collector struct{ c *Client }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- breakerStateDesc
	ch <- breakerTransitionsDesc
	ch <- retriesDesc
	ch <- retriesRefusedDesc
}

func (m collector) Collect(ch chan<- prometheus.Metric) {
	for _, b := range m.c.Snapshot() {
		ch <- prometheus.MustNewConstMetric(breakerStateDesc, prometheus.GaugeValue,
			float64(b.State), b.Caller, b.Callee)
		ch <- prometheus.MustNewConstMetric(breakerTransitionsDesc, prometheus.CounterValue,
			float64(b.Transitions), b.Caller, b.Callee)
	}
	m.c.mu.RLock()
	type row struct {
		callee           string
		granted, refused uint64
	}
	rows := make([]row, 0, len(m.c.budgets))
	for callee, b := range m.c.budgets {
		rows = append(rows, row{names.Display(callee), b.granted.Load(), b.refused.Load()})
	}
	m.c.mu.RUnlock()
	for _, r := range rows {
		ch <- prometheus.MustNewConstMetric(retriesDesc, prometheus.CounterValue, float64(r.granted), r.callee)
		ch <- prometheus.MustNewConstMetric(retriesRefusedDesc, prometheus.CounterValue, float64(r.refused), r.callee)
	}
}

// Interface guards.
var _ prometheus.Collector = collector{}
