package service

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"

	"github.com/meshd/meshd/host"
)

// maxGuestLine caps one log line of guest output.
const maxGuestLine = 8 << 10

// logWriter turns a service's WASI stdout and stderr into log lines, one per
// line of output. The Go runtime writes a crash report a few bytes at a
// time, so output is buffered until a newline, at most maxGuestLine bytes of
// it: a longer line is logged when it reaches the cap, marked as cut, and
// the rest of it up to the newline is dropped. Lines pass the service's
// rate limit (limit) or are dropped and counted. All instances of a service
// share one writer.
type logWriter struct {
	log   *slog.Logger
	limit *host.LogLimiter // nil: no limit

	mu  sync.Mutex
	buf []byte // the current line, at most maxGuestLine bytes
	cut bool   // the current line passed the cap and was logged
}

// NewLogWriter is the WASI stdout and stderr writer of a service logging
// to log, rate-limited like the log host function (host.LogLimits'
// defaults, buckets of its own) and reporting dropped lines to dropped
// (meshd_guest_log_dropped_total; nil: not counted).
func NewLogWriter(log *slog.Logger, dropped func(n int)) io.Writer {
	return &logWriter{log: log, limit: host.NewLogLimiter(host.LogLimits{}, "guest stdio", dropped)}
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.add(p)
			break
		}
		w.add(p[:i])
		if !w.cut {
			w.flush("")
		}
		w.buf, w.cut = w.buf[:0], false
		p = p[i+1:]
	}
	return n, nil
}

// add appends b to the current line, up to the cap; the line is logged,
// marked, when it reaches the cap.
func (w *logWriter) add(b []byte) {
	if w.cut {
		return
	}
	room := maxGuestLine - len(w.buf)
	if len(b) <= room {
		w.buf = append(w.buf, b...)
		return
	}
	w.buf = append(w.buf, b[:room]...)
	w.flush("…(line cut at " + strconv.Itoa(maxGuestLine) + " bytes)")
	w.buf, w.cut = w.buf[:0], true
}

// flush logs the current line (with mark appended), when it is not empty
// and the rate limit allows.
func (w *logWriter) flush(mark string) {
	line := bytes.TrimRight(w.buf, "\r")
	if len(line) == 0 {
		return
	}
	if w.limit != nil && !w.limit.Allow(context.Background(), w.log, len(line)) {
		return
	}
	w.log.Info(string(line)+mark, slog.String("source", "guest-stdio"))
}
