package bus

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestBusyIsNotAnAttempt: a handler answering *Busy (another node holds
// the event's serial key) is not failing: its event comes back after the
// delay it asked for, past MaxDeliver, and is handled, not dead-lettered.
func TestBusyIsNotAnAttempt(t *testing.T) {
	_, b := setup(t, testConfig) // MaxDeliver 3
	ctx := testCtx(t)
	var calls atomic.Int64
	handled := make(chan struct{})
	if _, err := b.Subscribe(ctx, "busy", "job", func(context.Context, Event) error {
		if calls.Add(1) <= 4 { // one more than MaxDeliver
			return &Busy{Delay: 10 * time.Millisecond, Err: errors.New("key held elsewhere")}
		}
		close(handled)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, NewEvent("src", "job", nil)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-handled:
	case <-time.After(3 * waitFor):
		t.Fatalf("not handled after %d deliveries", calls.Load())
	}
	waitAcked(t, b, "busy", "job", 5)
	if dls, err := b.DeadLetters(ctx, "busy"); err != nil || len(dls) != 0 {
		t.Fatalf("dead letters for an event whose handler was busy: %v, %v", dls, err)
	}
}
