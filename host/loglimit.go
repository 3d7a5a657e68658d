package host

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// LogSummaryEvery is the shortest time between two "dropped N guest log
// lines" summaries of one LogLimiter.
const LogSummaryEvery = 5 * time.Second

// LogLimiter rate-limits one service's guest log lines with two token
// buckets, one counting lines and one counting bytes (a line's bytes can
// grow fourfold when the log handler escapes them, so lines alone would
// let 8 KiB lines of zeros through at 32 KiB each). A line past either
// limit is dropped and counted; the count is written as one
// summary line at most every LogSummaryEvery, at the next line the guest
// writes after that interval (whether or not that line itself is allowed).
// It is safe for concurrent use: the instances of a service share one.
type LogLimiter struct {
	mu      sync.Mutex
	bucket  *rate.Limiter // lines
	bytes   *rate.Limiter // bytes of lines
	what    string        // "guest log" or "guest stdio", for the summary
	dropped int           // since the last summary
	since   time.Time     // first drop since the last summary
	onDrop  func(n int)
	now     func() time.Time
}

// LogLimits are the rates of a LogLimiter; zero fields take the defaults
// (DefaultLogLinesPerSecond, DefaultLogBurst, DefaultLogBytesPerSecond,
// DefaultLogBurstBytes).
type LogLimits struct {
	LinesPerSecond float64
	Burst          int
	BytesPerSecond float64
	BurstBytes     int
}

// NewLogLimiter allows lines within limits. what names the lines in the
// summary ("guest log", "guest stdio"); onDrop, when set, is told of every
// dropped line (a metric).
func NewLogLimiter(limits LogLimits, what string, onDrop func(n int)) *LogLimiter {
	lines, bytes := limits.LinesPerSecond, limits.BytesPerSecond
	if lines <= 0 {
		lines = DefaultLogLinesPerSecond
	}
	if bytes <= 0 {
		bytes = DefaultLogBytesPerSecond
	}
	return &LogLimiter{
		bucket: rate.NewLimiter(rate.Limit(lines), orDefault(limits.Burst, DefaultLogBurst)),
		bytes:  rate.NewLimiter(rate.Limit(bytes), orDefault(limits.BurstBytes, DefaultLogBurstBytes)),
		what:   what, onDrop: onDrop, now: time.Now,
	}
}

// Allow reports whether one more line of n bytes may be written now. When
// lines were dropped and the summary is due, it first writes the summary to
// log (a nil log skips it).
func (l *LogLimiter) Allow(ctx context.Context, log *slog.Logger, n int) bool {
	l.mu.Lock()
	now := l.now()
	ok := l.bytes.AllowN(now, n) && l.bucket.AllowN(now, 1)
	var summary string
	if !ok {
		if l.dropped == 0 {
			l.since = now
		}
		l.dropped++
	}
	if l.dropped > 0 && now.Sub(l.since) >= LogSummaryEvery {
		summary = "dropped " + strconv.Itoa(l.dropped) + " " + l.what + " lines in the last " +
			strconv.FormatFloat(now.Sub(l.since).Seconds(), 'f', 0, 64) + "s (rate limit)"
		l.dropped = 0
	}
	l.mu.Unlock()
	if !ok && l.onDrop != nil {
		l.onDrop(1)
	}
	if summary != "" && log != nil {
		log.LogAttrs(ctx, slog.LevelWarn, summary, slog.String("source", "meshd"))
	}
	return ok
}
