package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/meshd/meshd/runtime"
)

func newTest() *Metrics {
	return New(BuildInfo{Version: "v0.0.0-test"}, Sources{
		Services: func() []ServiceStats {
			return []ServiceStats{{Service: "order", Stats: runtime.Stats{Live: 3, Idle: 1, Busy: 2, Waits: 5, Created: 4, Discarded: 1, Recycled: 0, Restored: 3, Renewed: 2, MemoryBytes: 3 << 20}}}
		},
		Consumers: func(context.Context) ([]ConsumerLag, error) {
			return []ConsumerLag{{Service: "payment", Topic: "ORDER_CREATED", Pending: 7, AckPending: 2, Redelivered: 1}}, nil
		},
	})
}

// exposition renders the registry in the text format Prometheus scrapes.
func exposition(t *testing.T, m *Metrics) string {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.String()
}

func TestCountersMoveByWhatHappened(t *testing.T) {
	m := newTest()
	for range 3 {
		m.Request("order", "POST /orders", "POST", 201, 2*time.Millisecond)
	}
	m.Request("", "", "BREW", 404, time.Millisecond)
	m.Request("order", "POST /orders", "POST", 429, time.Millisecond)
	m.Invoked("order", "http", ResultOK, time.Millisecond)
	m.Invoked("order", "http", InvocationResult(fmt.Errorf("x: %w", runtime.ErrTimeout), false), time.Millisecond)
	m.Published("ORDER_CREATED")
	m.Delivered("payment", "ORDER_CREATED", 1, nil, time.Millisecond)
	m.Delivered("payment", "ORDER_CREATED", 2, errors.New("boom"), time.Millisecond)
	m.DeadLettered("payment", "ORDER_CREATED")
	m.KV("order", "get", nil)
	m.KV("order", "put", errors.New("down"))
	m.GuestLogDropped("order", 2)
	m.GuestLogDropped("order", 1)
	m.Loaded("order", nil)
	m.Loaded("order", errors.New("bad"))
	m.Reloaded("order")

	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"requests 201", testutil.ToFloat64(m.requests.WithLabelValues("order", "POST /orders", "POST", "201")), 3},
		{"requests 404 bounded method", testutil.ToFloat64(m.requests.WithLabelValues("", "", "OTHER", "404")), 1},
		{"rate limited", testutil.ToFloat64(m.rejected.WithLabelValues("order", "POST /orders", "rate_limited")), 1},
		{"invocations ok", testutil.ToFloat64(m.invocations.WithLabelValues("order", "http", "ok")), 1},
		{"invocations timeout", testutil.ToFloat64(m.invocations.WithLabelValues("order", "http", "timeout")), 1},
		{"published", testutil.ToFloat64(m.published.WithLabelValues("ORDER_CREATED")), 1},
		{"delivered", testutil.ToFloat64(m.delivered.WithLabelValues("payment", "ORDER_CREATED")), 1},
		{"delivery failures", testutil.ToFloat64(m.deliveryErrors.WithLabelValues("payment", "ORDER_CREATED")), 1},
		{"redelivered", testutil.ToFloat64(m.redelivered.WithLabelValues("payment", "ORDER_CREATED")), 1},
		{"dead-lettered", testutil.ToFloat64(m.deadLettered.WithLabelValues("payment", "ORDER_CREATED")), 1},
		{"guest log lines dropped", testutil.ToFloat64(m.guestLogDropped.WithLabelValues("order")), 3},
		{"kv ops", testutil.ToFloat64(m.kvOps.WithLabelValues("order", "get")) + testutil.ToFloat64(m.kvOps.WithLabelValues("order", "put")), 2},
		{"kv errors", testutil.ToFloat64(m.kvErrors.WithLabelValues("order", "put")), 1},
		{"loads ok", testutil.ToFloat64(m.loads.WithLabelValues("order", "ok")), 1},
		{"loads failed", testutil.ToFloat64(m.loads.WithLabelValues("order", "failed")), 1},
		{"reloads", testutil.ToFloat64(m.reloads.WithLabelValues("order")), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
	text := exposition(t, m)
	for _, want := range []string{
		`meshd_gateway_request_duration_seconds_count{method="POST",route="POST /orders",service="order"} 4`,
		`meshd_instances{service="order",state="busy"} 2`,
		`meshd_instances{service="order",state="idle"} 1`,
		`meshd_instance_memory_bytes{service="order"} 3.145728e+06`,
		`meshd_pool_waits_total{service="order"} 5`,
		`meshd_instances_restored_total{service="order"} 3`,
		`meshd_instances_renewed_total{service="order"} 2`,
		`meshd_pool_rejections_total{service="order"} 2`,
		`meshd_event_consumer_pending{service="payment",topic="ORDER_CREATED"} 7`,
		`meshd_event_consumer_scrape_errors 0`,
		`meshd_build_info{goversion="`,
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
}

func TestInvocationResult(t *testing.T) {
	for _, c := range []struct {
		err  error
		ok   bool
		want string
	}{
		{nil, true, ResultOK},
		{nil, false, ResultError},
		{fmt.Errorf("w: %w", runtime.ErrBusy), false, ResultBusy},
		{fmt.Errorf("w: %w", runtime.ErrTimeout), false, ResultTimeout},
		{fmt.Errorf("w: %w: %w", runtime.ErrTimeout, context.DeadlineExceeded), false, ResultTimeout},
		{context.DeadlineExceeded, false, ResultCanceled},
		{fmt.Errorf("w: %w", context.Canceled), false, ResultCanceled},
		{fmt.Errorf("w: %w", runtime.ErrClosed), false, ResultClosed},
		{fmt.Errorf("w: %w", runtime.ErrTrap), false, ResultTrap},
		{errors.New("anything else"), false, ResultTrap},
	} {
		if got := InvocationResult(c.err, c.ok); got != c.want {
			t.Errorf("InvocationResult(%v, %v) = %q, want %q", c.err, c.ok, got, c.want)
		}
	}
}

func TestNilMetricsIsANoOp(t *testing.T) {
	var m *Metrics
	m.Request("a", "b", "GET", 200, time.Second)
	m.Invoked("a", "http", ResultOK, time.Second)
	m.Loaded("a", nil)
	m.Reloaded("a")
	m.ConfigReloaded(nil)
	m.Published("T")
	m.Delivered("a", "T", 1, nil, time.Second)
	m.DeadLettered("a", "T")
	m.KV("a", "get", nil)
	m.GuestLogDropped("a", 1)
	if m.Registry() != nil {
		t.Fatal("nil Metrics has a registry")
	}
}

func TestLagScrapeErrorIsReported(t *testing.T) {
	m := New(BuildInfo{}, Sources{Consumers: func(context.Context) ([]ConsumerLag, error) {
		return nil, errors.New("jetstream down")
	}})
	if text := exposition(t, m); !strings.Contains(text, "meshd_event_consumer_scrape_errors 1") {
		t.Fatalf("no scrape error reported:\n%s", text)
	}
}

// TestExpositionPassesLint runs client_golang's linter and, when installed,
// promtool on the text a scrape returns.
func TestExpositionPassesLint(t *testing.T) {
	m := newTest()
	m.Request("order", "POST /orders", "POST", 201, time.Millisecond)
	m.Invoked("order", "http", ResultOK, time.Millisecond)
	m.Published("ORDER_CREATED")
	m.Delivered("payment", "ORDER_CREATED", 1, nil, time.Millisecond)
	m.KV("order", "get", nil)
	m.Loaded("order", nil)
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, Namespace+"_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("not checked with promtool: it is not installed (Debian package prometheus; `make tools`)")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition(t, m))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// BenchmarkRequestPath is what one HTTP request adds: the gateway's
// observation and one invocation (two counters, two histograms).
func BenchmarkRequestPath(b *testing.B) {
	m := New(BuildInfo{}, Sources{})
	b.ReportAllocs()
	for b.Loop() {
		m.Request("order", "GET /orders/{id}", "GET", 200, 150*time.Microsecond)
		m.Invoked("order", "http", ResultOK, 80*time.Microsecond)
		m.KV("order", "get", nil)
	}
}
