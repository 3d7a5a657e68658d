package sagabench

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// steadyRuns reads a positive integer from the environment variable name,
// or returns def.
func steadyEnv(tb testing.TB, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		tb.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

// TestSteadyNoStall runs the native saga (meshd's bus and KV) several
// times at a steady rate and fails if a run paid no order for longer than
// StallBound while orders waited: a liveness bound.
//
// Each run starts once one order has gone through (Warm): what it checks
// is that a pipeline that runs stays running. A fresh server's first
// events can wait for its consumers and first pull requests, on a machine
// running other tests under -race once for almost 4 s, after which every
// order of the run carried the delay.
func TestSteadyNoStall(t *testing.T) {
	runs := steadyEnv(t, "SAGA_STEADY_RUNS", 4)
	orders := steadyEnv(t, "SAGA_STEADY_ORDERS", 200)
	// 50 orders/s: a rate a loaded 2-core machine keeps up with under
	// -race, so that a backlog does not pass for a stall (at 100/s a busy
	// machine ran at its capacity: every order of a run took 0.2–0.6 s,
	// and one hiccup was never caught up). The stall this guards against
	// held events for 5 s at any rate.
	rate := steadyEnv(t, "SAGA_STEADY_RATE", 50)
	var all []Latency
	for i := range runs {
		tg := Native(t, "")
		Warm(t, tg)
		l := Steady(t, tg, orders, rate, time.Minute)
		t.Logf("run %d: %s", i+1, l)
		if l.Stalled() {
			t.Errorf("run %d STALLED: no order paid for %s while orders waited (bound %s)", i+1, l.Gap, StallBound)
		}
		all = append(all, l)
	}
	t.Logf("all runs: %s", Merge(all))
}

// BenchmarkSteady is the long form of TestSteadyNoStall: 20 runs of 2,000
// orders at a steady 400 orders/s on the native saga, each on a fresh
// embedded NATS server; it reports the p50 and p99 of the worst run and
// the maximum creation-to-payment latency of all, and fails on a stall.
func BenchmarkSteady(b *testing.B) {
	for range b.N {
		var all []Latency
		for i := range 20 {
			l := Steady(b, Native(b, ""), 2000, 400, time.Minute)
			if l.Stalled() {
				b.Errorf("run %d STALLED: no order paid for %s while orders waited (bound %s)", i+1, l.Gap, StallBound)
			}
			all = append(all, l)
		}
		m := Merge(all)
		b.ReportMetric(float64(m.P50)/float64(time.Millisecond), "p50-ms")
		b.ReportMetric(float64(m.P99)/float64(time.Millisecond), "p99-ms")
		b.ReportMetric(float64(m.Max)/float64(time.Millisecond), "max-ms")
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkNativeThroughput is the native saga as fast as 8 clients go
// (b.N orders): its orders/s, so that a change to the bus shows what it
// costs the baseline.
func BenchmarkNativeThroughput(b *testing.B) {
	tg := Native(b, "")
	b.ResetTimer()
	start := time.Now()
	Steady(b, tg, b.N, 1_000_000, 2*time.Minute)
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "orders/s")
	b.ReportMetric(0, "ns/op")
}
