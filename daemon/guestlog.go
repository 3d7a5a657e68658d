package daemon

import (
	"bytes"
	"log/slog"
	"sync"
)

// maxGuestLine caps one log line of guest output.
const maxGuestLine = 8 << 10

// logWriter turns a service's WASI stdout and stderr into log lines, one per
// line of output. The Go runtime writes a crash report a few bytes at a
// time, so output is buffered until a newline (or maxGuestLine bytes). All
// instances of a service share one writer.
type logWriter struct {
	log *slog.Logger
	mu  sync.Mutex
	buf []byte
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			if len(w.buf) >= maxGuestLine {
				w.flush()
			}
			break
		}
		w.buf = append(w.buf, p[:i]...)
		w.flush()
		p = p[i+1:]
	}
	return n, nil
}

func (w *logWriter) flush() {
	line := bytes.TrimRight(w.buf, "\r")
	if len(line) > maxGuestLine {
		line = line[:maxGuestLine]
	}
	if len(line) > 0 {
		w.log.Info(string(line), slog.String("source", "guest-stdio"))
	}
	w.buf = w.buf[:0]
}
