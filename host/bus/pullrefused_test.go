package bus

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingHandler counts the records whose message holds a string.
type countingHandler struct {
	msg string
	n   *atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.msg) {
		h.n.Add(1)
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

// TestRefusedPullsPause: while the server refuses every pull at once (no
// responders: here the consumer is gone, on a cluster it has no leader
// yet), a subscription asks again a few times a second, not in a loop
// that logs thousands of warnings a second.
func TestRefusedPullsPause(t *testing.T) {
	ns := startServer(t, t.TempDir())
	var warnings atomic.Int64
	log := slog.New(countingHandler{msg: "bus: fetching events", n: &warnings})
	b := newBusLogged(t, ns.JetStream(), testConfig, log)
	ctx := testCtx(t)
	_, h := collector(1)
	sub, err := b.Subscribe(ctx, "svc", "refused", h)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	if err := b.js.DeleteConsumer(ctx, b.cfg.Stream, sub.name); err != nil {
		t.Fatal(err)
	}
	checkFor(t, waitFor, func() error { // the refusals have begun
		if warnings.Load() == 0 {
			return context.DeadlineExceeded
		}
		return nil
	})
	start, from := time.Now(), warnings.Load()
	time.Sleep(time.Second) // a window to count in, not a wait for a condition
	n, took := warnings.Load()-from, time.Since(start)
	// A pause of 250 ms per refusal: about 4 a second for each request
	// open (one per worker at most).
	if limit := int64(took/(250*time.Millisecond)+1) * int64(max(b.cfg.Concurrency, 1)) * 2; n > limit {
		t.Fatalf("%d warnings of refused pulls in %v, want at most %d", n, took, limit)
	}
}
