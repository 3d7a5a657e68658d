package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLagOf: the cached lag of a service grows while its handler is stuck
// (events and the oldest one's age), Behind reports it past a bound with a
// Retry-After, and both fall back once the handler keeps up.
func TestLagOf(t *testing.T) {
	old := LagInterval
	LagInterval = 20 * time.Millisecond
	t.Cleanup(func() { LagInterval = old })
	cfg := testConfig
	cfg.Concurrency = 1
	_, b := setup(t, cfg)
	ctx := testCtx(t)
	release := make(chan struct{})
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock)
	sub, err := b.Subscribe(ctx, "slow", "lag.t", func(context.Context, Event) error {
		<-release
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	if l := b.LagOf("slow"); l.Events() != 0 || l.Oldest != 0 {
		t.Fatalf("lag before any event: %+v", l)
	}
	const n = 5
	for range n {
		if err := b.Publish(ctx, NewEvent("src", "lag.t", nil)); err != nil {
			t.Fatal(err)
		}
	}
	checkFor(t, waitFor, func() error {
		if l := b.LagOf("slow"); l.Events() != n || l.Oldest < 50*time.Millisecond || l.AckPending != 1 {
			return fmt.Errorf("lag %+v: want %d events, one ack-pending, the oldest at least 50ms old", l, n)
		}
		return nil
	})
	if behind, ra := b.Behind([]string{"other", "slow"}, func(string) LagBound { return LagBound{MaxEvents: n - 1} }); !behind || ra != time.Second {
		t.Fatalf("Behind over MaxEvents: %v %s", behind, ra)
	}
	if behind, ra := b.Behind([]string{"slow"}, func(string) LagBound { return LagBound{MaxAge: 10 * time.Millisecond} }); !behind || ra < time.Second || ra > 30*time.Second {
		t.Fatalf("Behind over MaxAge: %v %s", behind, ra)
	}
	if behind, _ := b.Behind([]string{"slow"}, nil); behind {
		t.Fatalf("Behind under the default bound: %+v", b.LagOf("slow"))
	}
	unblock()
	checkFor(t, waitFor, func() error {
		if l := b.LagOf("slow"); l.Events() != 0 || l.Oldest != 0 {
			return fmt.Errorf("lag %+v after the handler caught up", l)
		}
		return nil
	})
	if behind, _ := b.Behind([]string{"slow"}, func(string) LagBound { return LagBound{MaxEvents: 1, MaxAge: time.Millisecond} }); behind {
		t.Fatal("Behind after catching up")
	}
}

// An event whose handler fails waits for its redelivery as ack-pending:
// it counts as an unhandled event, but its age is not the pipeline's, so a
// poison event alone never makes its service behind by age.
func TestLagAgeIgnoresFailingEvents(t *testing.T) {
	old := LagInterval
	LagInterval = 20 * time.Millisecond
	t.Cleanup(func() { LagInterval = old })
	cfg := testConfig
	cfg.Concurrency = 1
	cfg.Backoff = []time.Duration{time.Minute} // the failed event waits, unacknowledged
	_, b := setup(t, cfg)
	ctx := testCtx(t)
	var calls atomic.Int64
	sub, err := b.Subscribe(ctx, "poison", "lag.p", func(context.Context, Event) error {
		calls.Add(1)
		return errors.New("always fails")
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	if err := b.Publish(ctx, NewEvent("src", "lag.p", nil)); err != nil {
		t.Fatal(err)
	}
	checkFor(t, waitFor, func() error {
		if l := b.LagOf("poison"); calls.Load() == 0 || l.Events() != 1 || l.Pending != 0 {
			return fmt.Errorf("lag %+v after %d calls: want the one event delivered, unacknowledged", l, calls.Load())
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond) // the failing event ages past the bound below
	if l := b.LagOf("poison"); l.Oldest != 0 {
		t.Fatalf("a failing, delivered event gives the service an age: %+v", l)
	}
	if behind, _ := b.Behind([]string{"poison"}, func(string) LagBound { return LagBound{MaxAge: 10 * time.Millisecond} }); behind {
		t.Fatal("one failing event makes its service behind")
	}
}
