package remote

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/mesh"
)

// BenchmarkForward is the cost a call pays for running on another node:
// the same echo handler called directly and through a Target to a Server
// on a second connection of the same in-process NATS server (loopback, no
// network). It reports the median and the 99th percentile of one call.
//
//	go test -run '^$' -bench Forward -benchtime 20000x ./host/remote/
func BenchmarkForward(b *testing.B) {
	echo := func(ctx context.Context, req *abi.Request, resp *abi.Response) error {
		resp.Status = 200
		resp.Body = req.Body
		return nil
	}
	for _, size := range []int{64, 4 << 10} {
		req := &abi.Request{
			Method: []byte("POST"), Path: []byte("/orders"), Route: []byte("POST /orders"),
			Headers:   []abi.Pair{{Key: []byte("content-type"), Value: []byte("application/json")}},
			RequestID: []byte("req-1"), TraceParent: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
			Body: make([]byte, size),
		}
		b.Run("direct/"+byteSize(size), func(b *testing.B) {
			ctx, cancel := context.WithTimeout(mesh.WithDepth(context.Background(), 1), time.Minute)
			defer cancel()
			var resp abi.Response
			measure(b, func() error { return echo(ctx, req, &resp) })
		})
		b.Run("remote/"+byteSize(size), func(b *testing.B) {
			ns := startNATS(b)
			a, c := connect(b, ns), connect(b, ns)
			s, err := NewServer(c.nc, ServerConfig{Node: "node-b"})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close(context.Background())
			if err := s.Serve("orders", echo); err != nil {
				b.Fatal(err)
			}
			tg, err := NewTarget(a.nc, "orders")
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(mesh.WithDepth(context.Background(), 1), time.Minute)
			defer cancel()
			var resp abi.Response
			measure(b, func() error { return tg.Invoke(ctx, req, &resp) })
			if len(resp.Body) != size {
				b.Fatalf("echo of %d bytes, want %d", len(resp.Body), size)
			}
		})
	}
}

// measure runs f b.N times and reports p50-ns and p99-ns.
func measure(b *testing.B, f func() error) {
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

func byteSize(n int) string {
	if n >= 1<<10 {
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}
