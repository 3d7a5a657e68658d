package service

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/meshd/meshd/host"
)

// records keeps every log record's message.
type records struct {
	mu   sync.Mutex
	msgs []string
}

func (h *records) Enabled(_ context.Context, _ slog.Level) bool { return true }
func (h *records) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	return nil
}
func (h *records) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *records) WithGroup(string) slog.Handler      { return h }

func TestGuestStdioLinesAreCapped(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(w *logWriter)
	}{
		{"one write without a newline", func(w *logWriter) { w.Write(bytes.Repeat([]byte("x"), 16<<20)) }},
		{"one write with a newline", func(w *logWriter) { w.Write(append(bytes.Repeat([]byte("x"), 16<<20), "\nnext\n"...)) }},
		{"many small writes", func(w *logWriter) {
			chunk := bytes.Repeat([]byte("x"), 1000)
			for range 100 {
				w.Write(chunk)
			}
			w.Write([]byte("\nnext\n"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &records{}
			w := &logWriter{log: slog.New(h)}
			tc.write(w)
			if cap(w.buf) > 2*maxGuestLine {
				t.Fatalf("the writer holds a buffer of %d bytes", cap(w.buf))
			}
			if len(h.msgs) == 0 {
				t.Fatal("nothing logged")
			}
			first := h.msgs[0]
			if len(first) > maxGuestLine+64 || !strings.HasSuffix(first, "…(line cut at 8192 bytes)") ||
				!strings.HasPrefix(first, strings.Repeat("x", maxGuestLine)) {
				t.Fatalf("first line of %d bytes: ...%q", len(first), first[max(0, len(first)-40):])
			}
			if len(h.msgs) > 1 && (len(h.msgs) != 2 || h.msgs[1] != "next") {
				t.Fatalf("%d lines, then %q", len(h.msgs), h.msgs[1:min(3, len(h.msgs))])
			}
		})
	}
}

func TestGuestStdioCrashReportIsAssembled(t *testing.T) {
	h := &records{}
	w := &logWriter{log: slog.New(h)}
	for _, p := range []string{"pan", "ic: boom", "\r\n", "goroutine 1", " [running]:\n"} {
		w.Write([]byte(p))
	}
	if strings.Join(h.msgs, "|") != "panic: boom|goroutine 1 [running]:" {
		t.Fatalf("lines %q", h.msgs)
	}
}

func TestGuestStdioIsRateLimited(t *testing.T) {
	h := &records{}
	var mu sync.Mutex
	dropped := 0
	w := &logWriter{log: slog.New(h), limit: host.NewLogLimiter(host.LogLimits{LinesPerSecond: 1, Burst: 20}, "guest stdio", func(n int) {
		mu.Lock()
		dropped += n
		mu.Unlock()
	})}
	w.Write(bytes.Repeat([]byte("line\n"), 1000))
	h.mu.Lock()
	logged := len(h.msgs)
	h.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	// 20 of burst, and one a second for as long as the test ran.
	if logged < 20 || logged > 30 || dropped != 1000-logged {
		t.Fatalf("%d lines logged, %d counted dropped, of 1000", logged, dropped)
	}
}
