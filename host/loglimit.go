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

// LogLimiter rate-limits one service's guest log lines with a token bucket.
// A line past the limit is dropped and counted; the count is written as one
// summary line at most every LogSummaryEvery, at the next line the guest
// writes after that interval (whether or not that line itself is allowed).
// It is safe for concurrent use: the instances of a service share one.
type LogLimiter struct {
	mu      sync.Mutex
	bucket  *rate.Limiter
	what    string    // "guest log" or "guest stdio", for the summary
	dropped int       // since the last summary
	since   time.Time // first drop since the last summary
	onDrop  func(n int)
	now     func() time.Time
}

// NewLogLimiter allows perSecond lines a second with bursts of burst
// (DefaultLogLinesPerSecond and DefaultLogBurst when not positive). what
// names the lines in the summary ("guest log", "guest stdio"); onDrop, when
// set, is told of every dropped line (a metric).
func NewLogLimiter(perSecond float64, burst int, what string, onDrop func(n int)) *LogLimiter {
	if perSecond <= 0 {
		perSecond = DefaultLogLinesPerSecond
	}
	burst = orDefault(burst, DefaultLogBurst)
	return &LogLimiter{bucket: rate.NewLimiter(rate.Limit(perSecond), burst), what: what, onDrop: onDrop, now: time.Now}
}

// Allow reports whether one more line may be written now. When lines were
// dropped and the summary is due, it first writes the summary to log (a
// nil log skips it).
func (l *LogLimiter) Allow(ctx context.Context, log *slog.Logger) bool {
	l.mu.Lock()
	now := l.now()
	ok := l.bucket.AllowN(now, 1)
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
