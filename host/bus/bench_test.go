package bus

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meshd/meshd/host/natsd"
)

// BenchmarkPublishToHandler measures the time from Publish to the start of
// the handler, with lazy and always fsync; reports p50 and p99.
func BenchmarkPublishToHandler(b *testing.B) {
	for _, always := range []bool{false, true} {
		name := "sync=lazy"
		if always {
			name = "sync=always"
		}
		b.Run(name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			ns, err := natsd.Start(ctx, natsd.Config{DataDir: b.TempDir(), Sync: always}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer ns.Close()
			bus, err := New(ctx, ns.JetStream(), Config{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer bus.Close(ctx)
			var mu sync.Mutex
			lat := make([]time.Duration, 0, b.N)
			done := make(chan struct{}, b.N)
			sub, err := bus.Subscribe(ctx, "bench", "bench.lat", func(_ context.Context, ev Event) error {
				mu.Lock()
				lat = append(lat, time.Since(ev.Time))
				mu.Unlock()
				done <- struct{}{}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Stop()
			b.ResetTimer()
			for range b.N {
				if err := bus.Publish(ctx, NewEvent("bench", "bench.lat", []byte(`{}`))); err != nil {
					b.Fatal(err)
				}
				<-done // one at a time: latency, not queueing
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}
