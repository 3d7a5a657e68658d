package host

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/syncbuf"
)

func TestLogLimiterDropsPastTheBurstAndSumsUp(t *testing.T) {
	var buf syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var counted int
	l := NewLogLimiter(1, 3, "guest log", func(n int) { counted += n })
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }

	allowed := 0
	for range 10 {
		if l.Allow(context.Background(), log) {
			allowed++
		}
	}
	if allowed != 3 || counted != 7 {
		t.Fatalf("allowed %d, counted %d dropped; want 3 and 7", allowed, counted)
	}
	if buf.String() != "" {
		t.Fatalf("summary before %s: %s", LogSummaryEvery, buf.String())
	}
	// The summary comes with the next line after the interval, once.
	now = now.Add(LogSummaryEvery)
	if !l.Allow(context.Background(), log) {
		t.Fatal("the bucket did not refill")
	}
	if out := buf.String(); !strings.Contains(out, "dropped 7 guest log lines in the last 5s") || strings.Count(out, "dropped") != 1 {
		t.Fatalf("summary = %q", out)
	}
	l.Allow(context.Background(), log)
	if strings.Count(buf.String(), "dropped") != 1 {
		t.Fatalf("a second summary without drops: %q", buf.String())
	}
}
