package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshd/meshd/bench/sagabench"
	"github.com/meshd/meshd/internal/testkit"
)

// BenchmarkSagaThroughput is the whole saga from POST /orders to the order
// read as PAID in the read model (ORDER_PAID projected), 8 concurrent
// clients as fast as they go, with lazy and always fsync; native-… is the
// same saga written as ordinary Go (bench/nativeorder, started by
// sagabench.Native) on the same embedded NATS, bus and KV, the baseline.
// It also reports the latency from creation to payment of the orders
// (their created_at to paid_at), which at this load is mostly queueing.
//
// lag=2s-… runs meshd with the order service at the default admission
// bound (bus.DefaultLagBound, 2 s) instead of the demo's 300 ms: the
// tighter bound sheds more at full speed, which costs throughput most
// with `always`. outbox-… runs it with the order service's outbox on
// ([events] outbox = true).
func BenchmarkSagaThroughput(b *testing.B) {
	for _, sync := range []string{"", "always"} {
		b.Run(sagabench.SyncName(sync), func(b *testing.B) { benchSaga(b, meshdSaga(b, sync), 0) })
		b.Run("native-"+sagabench.SyncName(sync), func(b *testing.B) { benchSaga(b, sagabench.Native(b, sync), 0) })
		b.Run("lag=2s-"+sagabench.SyncName(sync), func(b *testing.B) {
			benchSaga(b, meshdSagaWith(b, sync, map[string][]byte{"order.toml": orderAtLag(b, "2s")}), 0)
		})
		b.Run("outbox-"+sagabench.SyncName(sync), func(b *testing.B) {
			benchSaga(b, meshdSagaWith(b, sync, map[string][]byte{"order.toml": orderWithOutbox(b)}), 0)
		})
	}
}

// orderAtLag is the demo order service's file with its admission_lag set
// to lag.
func orderAtLag(b *testing.B, lag string) []byte {
	return editOrderFile(b, `(?m)^admission_lag = ".*"$`, `admission_lag = "`+lag+`"`)
}

// orderWithOutbox is the demo order service's file with its outbox on.
func orderWithOutbox(t testing.TB) []byte {
	return editOrderFile(t, `(?m)^\[events\]$`, "[events]\noutbox = true")
}

// editOrderFile is the demo order service's file with the lines that
// pattern matches, at least one, replaced by repl.
func editOrderFile(t testing.TB, pattern, repl string) []byte {
	t.Helper()
	toml, err := os.ReadFile(fixture(t, filepath.Join("..", "build", "plugins", "order.toml")))
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(pattern)
	if !line.Match(toml) {
		t.Fatalf("order.toml has no line matching %s", pattern)
	}
	return line.ReplaceAll(toml, []byte(repl))
}

// BenchmarkSagaLatency is the same saga at a steady 200 orders/s, well
// under what the machine sustains: the creation-to-payment latency without
// a queue.
func BenchmarkSagaLatency(b *testing.B) {
	for _, sync := range []string{"", "always"} {
		b.Run(sagabench.SyncName(sync), func(b *testing.B) { benchSaga(b, meshdSaga(b, sync), 200) })
		b.Run("native-"+sagabench.SyncName(sync), func(b *testing.B) { benchSaga(b, sagabench.Native(b, sync), 200) })
	}
}

// meshdSaga starts meshd with the order and payment plugins, syncing as
// syncMode says, as a saga benchmark's target.
func meshdSaga(b *testing.B, syncMode string) sagabench.Target {
	return meshdSagaWith(b, syncMode, nil)
}

// meshdSagaWith is meshdSaga with extra files in the plugin directory.
func meshdSagaWith(b *testing.B, syncMode string, extra map[string][]byte) sagabench.Target {
	var projected atomic.Int64
	td := startDaemonWith(b, []string{"order", "payment"}, extra, func(c *Config) {
		c.Sync = syncMode
		c.Events.Hooks.Delivered = func(service, typ string, _ int, err error, _ time.Duration) {
			if service == "order" && (typ == "ORDER_PAID" || typ == "ORDER_CREATED") && err == nil {
				projected.Add(1)
			}
		}
	})
	return sagabench.Target{Base: td.base, Projected: &projected, JS: td.nats.JetStream(), View: func(id string) []byte {
		return td.do(b, "GET", "/orders/"+id, "", "").body
	}}
}

// benchSaga creates b.N orders on t with 8 clients, at most rate a second
// when rate > 0, and waits until every one is PAID in the read model.
func benchSaga(b *testing.B, t sagabench.Target, rate int) {
	projected := t.Projected
	ids := make([]string, b.N)
	// One kept-alive connection per client: the default transport keeps
	// two idle per host, so the other six would dial for every order.
	transport := &shedCounter{next: &http.Transport{MaxIdleConnsPerHost: 8}}
	client := &http.Client{Timeout: 30 * time.Second, Transport: transport}
	defer transport.next.CloseIdleConnections()
	stored0 := sagabench.Stored(b, t.JS)
	b.ResetTimer()
	cpu0 := sagabench.ProcessCPU(b)
	start := time.Now()
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 8 {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				if rate > 0 { // order i is due at start + i/rate
					time.Sleep(time.Until(start.Add(time.Duration(i-1) * time.Second / time.Duration(rate))))
				}
				// 100 users: each user's index document stays small.
				body := `{"user_id":"bench` + strconv.Itoa(int(i%100)) + `","items":[{"name":"x","price":100}]}`
				// A POST shed (the pipeline behind is past its lag bound) is
				// sent again shortly, so the run measures what it sustains.
				status, answer, err := testkit.PostJSON(context.Background(), client, t.Base+"/orders", body)
				if err != nil || status != 201 {
					b.Errorf("POST: %d %s %v", status, answer, err)
					return
				}
				var o struct{ ID string }
				if err := json.Unmarshal(answer, &o); err != nil || o.ID == "" {
					b.Errorf("POST answer %s: %v", answer, err)
					return
				}
				ids[i-1] = o.ID
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(2 * time.Minute)
	for projected.Load() < 2*int64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d projections after 2 minutes", projected.Load(), 2*b.N)
		}
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	cpu := sagabench.ProcessCPU(b) - cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "orders/s")
	// The whole process's CPU (user and system) per order: the service
	// and the benchmark's HTTP clients, the same for both targets.
	b.ReportMetric(float64(cpu)/float64(time.Millisecond)/float64(b.N), "cpu-ms/order")
	// What the run stored (events, key-value writes, delayed events), per
	// order, in all and by stream.
	var stored uint64
	byStream := []string{}
	for name, n := range sagabench.Stored(b, t.JS) {
		if d := n - stored0[name]; d > 0 {
			stored += d
			byStream = append(byStream, fmt.Sprintf("%s %.2f", name, float64(d)/float64(b.N)))
		}
	}
	slices.Sort(byStream)
	b.ReportMetric(float64(stored)/float64(b.N), "stored/order")
	b.ReportMetric(float64(transport.shed.Load())/float64(b.N), "shed/order")
	b.Logf("stored per order, by stream: %s", strings.Join(byStream, ", "))
	// Creation to payment, from each order as the read model serves it.
	lat := make([]time.Duration, 0, b.N)
	for _, id := range ids {
		var o struct {
			Status    string
			CreatedAt time.Time `json:"created_at"`
			PaidAt    time.Time `json:"paid_at"`
		}
		v := t.View(id)
		if err := json.Unmarshal(v, &o); err != nil || o.Status != "PAID" {
			b.Fatalf("order %s: %s %v", id, v, err)
		}
		lat = append(lat, o.PaidAt.Sub(o.CreatedAt))
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op") // the time per op is the orders/s above
}

// shedCounter counts the answers admission control shed (503), which the
// clients send again.
type shedCounter struct {
	next *http.Transport
	shed atomic.Int64
}

func (c *shedCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusServiceUnavailable {
		c.shed.Add(1)
	}
	return resp, err
}
