package daemon

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSagaThroughput is the whole saga from POST /orders to the order
// read as PAID in the read model (ORDER_PAID projected), 8 concurrent
// clients, with lazy and always fsync.
func BenchmarkSagaThroughput(b *testing.B) {
	for _, sync := range []string{"", "always"} {
		name := "sync=lazy"
		if sync != "" {
			name = "sync=" + sync
		}
		b.Run(name, func(b *testing.B) { benchSaga(b, sync) })
	}
}

func benchSaga(b *testing.B, syncMode string) {
	var paid atomic.Int64
	td := startDaemonWith(b, []string{"order", "payment"}, nil, func(c *Config) {
		c.Sync = syncMode
		c.Events.Hooks.Delivered = func(service, typ string, _ int, err error, _ time.Duration) {
			if service == "order" && typ == "ORDER_PAID" && err == nil {
				paid.Add(1)
			}
		}
	})
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 8 {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				// 100 users: each user's index document stays small.
				body := `{"user_id":"bench` + strconv.Itoa(int(i%100)) + `","items":[{"name":"x","price":100}]}`
				if r := td.do(b, "POST", "/orders", "application/json", body); r.status != 201 {
					b.Errorf("POST: %d %s", r.status, r.body)
					return
				}
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
}
