package testkit

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestPollReturnsOnceMet(t *testing.T) {
	n := 0
	why := poll(5*time.Second, func() string {
		n++
		if n < 3 {
			return "not yet"
		}
		return ""
	})
	if why != "" || n != 3 {
		t.Fatalf("poll = %q after %d calls, want \"\" after 3", why, n)
	}
}

func TestPollGivesTheLastReason(t *testing.T) {
	n := 0
	why := poll(50*time.Millisecond, func() string {
		n++
		if n == 1 {
			return "first"
		}
		return "later"
	})
	if why != "later" {
		t.Fatalf("poll = %q, want the last answer", why)
	}
}

func TestHammerIsBoundedByCount(t *testing.T) {
	var ran atomic.Int64
	tally := Hammer(context.Background(), t, Load{Workers: 4, Calls: 1000, For: time.Minute},
		func(_ context.Context, i int) error {
			ran.Add(1)
			if i%10 == 0 {
				return errors.New("every tenth")
			}
			return nil
		})
	if tally.Calls != 1000 || ran.Load() != 1000 {
		t.Fatalf("calls %d, ran %d, want 1000", tally.Calls, ran.Load())
	}
	if tally.Failed != 100 || tally.First == nil {
		t.Fatalf("failed %d (first %v), want 100", tally.Failed, tally.First)
	}
}

func TestHammerIsBoundedByTime(t *testing.T) {
	start := time.Now()
	tally := Hammer(context.Background(), t, Load{Workers: 2, Calls: 1 << 30, For: 100 * time.Millisecond},
		func(ctx context.Context, _ int) error {
			select {
			case <-ctx.Done():
			case <-time.After(time.Millisecond):
			}
			return nil
		})
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("hammer ran %v past its 100 ms bound", took)
	}
	if tally.Calls <= 0 || tally.Calls >= 1<<30 {
		t.Fatalf("calls %d", tally.Calls)
	}
}
