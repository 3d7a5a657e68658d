package remote

import (
	"context"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/mesh"
	"github.com/meshd/meshd/host/natsd/natsdtest"
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

// BenchmarkForwardCluster is a call between two nodes as meshd runs them:
// two embedded NATS servers joined by a route on loopback, each node on
// its in-process connection to its own server. The handler grows its
// stack the way a guest call does ("deep", 32 KiB) or not ("flat"). It
// reports the median and 99th percentile of one call, and the CPU of the
// process (both nodes) per call.
//
//	go test -run '^$' -bench ForwardCluster -benchtime 20000x ./host/remote/
func BenchmarkForwardCluster(b *testing.B) {
	nodes := natsdtest.Cluster(b, 2)
	req := &abi.Request{
		Method: []byte("GET"), Path: []byte("/orders/0b5f1c2a"), Route: []byte("GET /orders/{id}"),
		Headers:   []abi.Pair{{Key: []byte("accept"), Value: []byte("application/json")}},
		RequestID: []byte("req-1"), TraceParent: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
	}
	body := make([]byte, 300)
	for _, deep := range []bool{false, true} {
		name := "flat"
		if deep {
			name = "deep"
		}
		b.Run(name, func(b *testing.B) {
			s, err := NewServer(nodes[0].Conn(), ServerConfig{Node: "node-a"})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close(context.Background())
			err = s.Serve("orders", func(ctx context.Context, req *abi.Request, resp *abi.Response) error {
				if deep {
					growStack(32)
				}
				resp.Status = 200
				resp.Headers = append(resp.Headers[:0], abi.Pair{Key: []byte("content-type"), Value: []byte("application/json")})
				resp.Body = body
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			tg, err := NewTarget(nodes[1].Conn(), "orders")
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(mesh.WithDepth(context.Background(), 1), time.Minute)
			defer cancel()
			var resp abi.Response
			// The subscription reaches node b's server through the route.
			deadline := time.Now().Add(20 * time.Second)
			for tg.Invoke(ctx, req, &resp) != nil {
				if time.Now().After(deadline) {
					b.Fatal("node b does not reach node a's service within 20 s")
				}
				time.Sleep(10 * time.Millisecond)
			}
			c0 := cpuTime()
			measure(b, func() error { return tg.Invoke(ctx, req, &resp) })
			b.ReportMetric(float64(cpuTime()-c0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
			if len(resp.Body) != len(body) {
				b.Fatalf("answer of %d bytes, want %d", len(resp.Body), len(body))
			}
		})
	}
}

// growStack uses about kib KiB of stack.
//
//go:noinline
func growStack(kib int) byte {
	var frame [1 << 10]byte
	frame[kib%len(frame)] = byte(kib)
	if kib <= 1 {
		return frame[0]
	}
	return growStack(kib-1) + frame[kib%len(frame)]
}

// cpuTime is the user and system CPU the process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
