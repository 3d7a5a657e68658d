package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/syncbuf"
)

func TestRetryDelay(t *testing.T) {
	for _, c := range []struct{ overdue, lo, hi time.Duration }{
		{-time.Second, 800 * time.Millisecond, time.Second}, // not overdue (a clock step): the least
		{0, 800 * time.Millisecond, time.Second},
		{500 * time.Millisecond, 800 * time.Millisecond, time.Second},
		{4 * time.Second, 3200 * time.Millisecond, 4 * time.Second},
		{30 * time.Second, 24 * time.Second, 30 * time.Second},
		{time.Hour, 48 * time.Second, time.Minute}, // capped
	} {
		for range 100 {
			if d := retryDelay(c.overdue); d < c.lo || d > c.hi {
				t.Fatalf("retryDelay(%s) = %s, want within [%s, %s]", c.overdue, d, c.lo, c.hi)
			}
		}
	}
	// Retried at each delay, an event overdue from 0 makes few attempts in
	// a minute (about log2(60)+1), not one a second.
	var overdue time.Duration
	attempts := 0
	for overdue < time.Minute {
		overdue += retryDelay(overdue)
		attempts++
	}
	if attempts > 20 {
		t.Fatalf("%d attempts in a minute overdue", attempts)
	}
}

// TestDelayedEventsWhileStoreRefuses: due delayed events that cannot be
// published while the store refuses writes are retried with backoff, the
// scheduler's lines about them are sampled, and every one of them is
// published once the store takes writes again.
func TestDelayedEventsWhileStoreRefuses(t *testing.T) {
	ns := startServer(t, t.TempDir())
	ctx := testCtx(t)
	logs := &syncbuf.Buffer{}
	b := newBusLogged(t, ns.JetStream(), testConfig, slog.New(slog.NewTextHandler(logs, nil)))
	var free atomic.Uint64
	free.Store(1 << 29)
	b.health.SetFreeSpace(func() (uint64, uint64, error) { return free.Load(), 1 << 30, nil })

	const n = 200
	ch, h := collector(n)
	sub, err := b.Subscribe(ctx, "svc", "later", h)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	// Due well after the disk fills below, even when publishing them is
	// slow on a loaded machine (at 300 ms some came due before it).
	const due = 3 * time.Second
	published := time.Now()
	evs := make([]Pending, n)
	for i := range evs {
		evs[i] = Pending{Event: NewEvent("src", "later", nil), Delay: due}
	}
	if err := b.PublishAll(ctx, evs); err != nil {
		t.Fatal(err)
	}

	// The disk fills before they are due.
	free.Store(0)
	// The free space is read at most every StatEvery.
	checkFor(t, 5*time.Second, func() error {
		if err := b.Publish(ctx, NewEvent("src", "now", nil)); !errors.Is(err, ErrWritesRefused) {
			return fmt.Errorf("Publish with no free space: %v, want ErrWritesRefused", err)
		}
		return nil
	})
	start := time.Now()
	if err := b.Publish(ctx, NewEvent("src", "now", nil)); !errors.Is(err, ErrWritesRefused) {
		t.Fatalf("Publish with no free space: %v, want ErrWritesRefused", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a refused Publish took %s", d) // a liveness bound, against the 10 s a hung one takes
	}
	// Let them come due and fail for a few seconds.
	time.Sleep(time.Until(published.Add(due + 4*time.Second)))
	select {
	case ev := <-ch:
		t.Fatalf("event %s delivered while the store refuses writes", ev.ID)
	default:
	}
	out := logs.String()
	if c := strings.Count(out, "publishing delayed event"); c == 0 || c > 2 {
		t.Errorf("%d lines about failed delayed publishes in 4 s for %d due events, want 1 or 2 (sampled):\n%s", c, n, out)
	}
	if len(out) > 8<<10 {
		t.Errorf("%d bytes of logs in 4 s of a full disk, want at most 8 KiB:\n%s", len(out), out)
	}

	// Space returns: every event is published, without a restart.
	free.Store(1 << 29)
	got := map[string]bool{}
	deadline := time.After(45 * time.Second) // the longest retry delay then is about 8 s
	for len(got) < n {
		select {
		case ev := <-ch:
			got[ev.ID] = true
		case <-deadline:
			t.Fatalf("%d of %d delayed events published after space returned\n%s", len(got), n, logs.String())
		}
	}
	for _, p := range evs {
		if !got[p.Event.ID] {
			t.Fatalf("event %s not delivered", p.Event.ID)
		}
	}
	if !strings.Contains(logs.String(), "store takes writes again") {
		t.Errorf("the recovery is not logged:\n%s", logs.String())
	}
}
