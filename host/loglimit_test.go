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
	l := NewLogLimiter(LogLimits{LinesPerSecond: 1, Burst: 3}, "guest log", func(n int) { counted += n })
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }

	allowed := 0
	for range 10 {
		if l.Allow(context.Background(), log, 10) {
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
	if !l.Allow(context.Background(), log, 10) {
		t.Fatal("the bucket did not refill")
	}
	if out := buf.String(); !strings.Contains(out, "dropped 7 guest log lines in the last 5s") || strings.Count(out, "dropped") != 1 {
		t.Fatalf("summary = %q", out)
	}
	l.Allow(context.Background(), log, 10)
	if strings.Count(buf.String(), "dropped") != 1 {
		t.Fatalf("a second summary without drops: %q", buf.String())
	}
}

// TestLogLimiterCountsBytes: long lines run out of the byte bucket long
// before the line bucket.
func TestLogLimiterCountsBytes(t *testing.T) {
	l := NewLogLimiter(LogLimits{LinesPerSecond: 100, Burst: 100, BytesPerSecond: 1, BurstBytes: 1000}, "guest log", nil)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	allowed := 0
	for range 10 {
		if l.Allow(context.Background(), nil, 400) {
			allowed++
		}
	}
	if allowed != 2 {
		t.Fatalf("allowed %d lines of 400 bytes from a bucket of 1000 bytes, want 2", allowed)
	}
	if !l.Allow(context.Background(), nil, 100) {
		t.Fatal("a short line within the bytes left was dropped")
	}
}
