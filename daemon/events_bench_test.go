package daemon

import (
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSagaThroughput is the whole saga from POST /orders to the order
// read as PAID in the read model (ORDER_PAID projected), 8 concurrent
// clients as fast as they go, with lazy and always fsync. It also reports
// the latency from creation to payment of the orders (their created_at to
// paid_at), which at this load is mostly queueing.
func BenchmarkSagaThroughput(b *testing.B) {
	for _, sync := range []string{"", "always"} {
		b.Run(syncName(sync), func(b *testing.B) { benchSaga(b, sync, 0) })
	}
}

// BenchmarkSagaLatency is the same saga at a steady 200 orders/s, well
// under what the machine sustains: the creation-to-payment latency without
// a queue.
func BenchmarkSagaLatency(b *testing.B) {
	for _, sync := range []string{"", "always"} {
		b.Run(syncName(sync), func(b *testing.B) { benchSaga(b, sync, 200) })
	}
}

func syncName(mode string) string {
	if mode == "" {
		return "sync=lazy"
	}
	return "sync=" + mode
}

// benchSaga creates b.N orders with 8 clients, at most rate a second when
// rate > 0, and waits until every one is PAID in the read model.
func benchSaga(b *testing.B, syncMode string, rate int) {
	var paid atomic.Int64
	td := startDaemonWith(b, []string{"order", "payment"}, nil, func(c *Config) {
		c.Sync = syncMode
		c.Events.Hooks.Delivered = func(service, typ string, _ int, err error, _ time.Duration) {
			if service == "order" && typ == "ORDER_PAID" && err == nil {
				paid.Add(1)
			}
		}
	})
	ids := make([]string, b.N)
	b.ResetTimer()
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
				r := td.do(b, "POST", "/orders", "application/json", body)
				if r.status != 201 {
					b.Errorf("POST: %d %s", r.status, r.body)
					return
				}
				var o struct{ ID string }
				if err := json.Unmarshal(r.body, &o); err != nil || o.ID == "" {
					b.Errorf("POST answer %s: %v", r.body, err)
					return
				}
				ids[i-1] = o.ID
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(2 * time.Minute)
	for paid.Load() < int64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d orders PAID after 2 minutes", paid.Load(), b.N)
		}
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "orders/s")
	// Creation to payment, from each order as the read model serves it.
	lat := make([]time.Duration, 0, b.N)
	for _, id := range ids {
		var o struct {
			Status    string
			CreatedAt time.Time `json:"created_at"`
			PaidAt    time.Time `json:"paid_at"`
		}
		r := td.do(b, "GET", "/orders/"+id, "", "")
		if err := json.Unmarshal(r.body, &o); err != nil || o.Status != "PAID" {
			b.Fatalf("order %s: %s %v", id, r.body, err)
		}
		lat = append(lat, o.PaidAt.Sub(o.CreatedAt))
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op") // the time per op is the orders/s above
}
