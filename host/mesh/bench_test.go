package mesh

import (
	"context"
	"testing"
	"time"

	"github.com/meshd/meshd/abi"
)

// noop is the cheapest Target: it answers 200 at once.
type noop struct{}

func (noop) Invoke(_ context.Context, _ *abi.Request, resp *abi.Response) error {
	resp.Status = 200
	return nil
}
func (noop) InFlight() int { return 0 }

const benchParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// BenchmarkTargetDirect is the baseline of BenchmarkCall: the same no-op
// target called directly, bare and under a deadline as the Client calls it.
func BenchmarkTargetDirect(b *testing.B) {
	var t Target = noop{}
	req, resp := get(), &abi.Response{}
	b.Run("bare", func(b *testing.B) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if err := t.Invoke(ctx, req, resp); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("deadline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if err := t.Invoke(ctx, req, resp); err != nil {
				b.Fatal(err)
			}
			cancel()
		}
	})
}

// BenchmarkCall is a call through the Client to a no-op target: the
// overhead of the deadline, depth, request fields, breaker, budget and
// picking.
func BenchmarkCall(b *testing.B) {
	for _, n := range []int{1, 4} {
		ts := make([]Target, n)
		for i := range ts {
			ts[i] = noop{}
		}
		b.Run(map[int]string{1: "targets=1", 4: "targets=4"}[n], func(b *testing.B) {
			c := newClient(b, resolveTo(ts...))
			req, resp := get(), &abi.Response{}
			o := CallOptions{RequestID: "01J9Z3K4XQ8M2N5P7R9T1V3W5Y", TraceParent: benchParent}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Call(ctx, "order", "user", req, resp, o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCallOpenBreaker is a call refused by an open breaker.
func BenchmarkCallOpenBreaker(b *testing.B) {
	c := newClient(b, resolveTo(&target{fn: status(500)}), WithMaxAttempts(1),
		WithBreakerSettings("user", Settings{ConsecutiveFailures: 1, OpenFor: maxOpenFor}))
	req, resp := get(), &abi.Response{}
	ctx := context.Background()
	_ = c.Call(ctx, "order", "user", req, resp, CallOptions{})
	if c.Snapshot()[0].State != Open {
		b.Fatal("the breaker did not open")
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Call(ctx, "order", "user", req, resp, CallOptions{}); err == nil {
			b.Fatal("an open breaker let a call through")
		}
	}
}
