package bus

import (
	"context"
	"fmt"
	"sync"
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
