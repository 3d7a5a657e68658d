package mesh

import (
	"context"
	"errors"
	"testing"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/fault"
)

// An open breaker answers every refused call with one error, allocating
// nothing, until what the error says changes.
func TestOpenBreakerRepeatsItsError(t *testing.T) {
	c := newClient(t, resolveTo(&target{fn: status(500)}), WithMaxAttempts(1),
		WithBreakerSettings("user", Settings{ConsecutiveFailures: 1, OpenFor: maxOpenFor}))
	req, resp := get(), &abi.Response{}
	ctx := context.Background()
	_ = c.Call(ctx, "order", "user", req, resp, CallOptions{})
	first := c.Call(ctx, "order", "user", req, resp, CallOptions{})
	var fe *fault.Error
	if !errors.As(first, &fe) || fe.Kind != fault.CircuitOpen {
		t.Fatalf("%v, want a CircuitOpen fault", first)
	}
	var last error
	allocs := testing.AllocsPerRun(100, func() { last = c.Call(ctx, "order", "user", req, resp, CallOptions{}) })
	if last != first {
		t.Fatalf("a refused call answered %p, the one before %p: want the same error", last, first)
	}
	if allocs != 0 {
		t.Fatalf("a refused call allocates %v times, want 0", allocs)
	}
	if got := fe.Error(); got != "service user: circuit open: circuit order→user open" {
		t.Fatalf("message %q", got)
	}
}
