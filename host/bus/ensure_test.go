package bus

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// jsWrites counts the JetStream API requests that create or update a
// stream or a consumer.
type jsWrites struct {
	mu   sync.Mutex
	subj []string
}

func watchJSWrites(t *testing.T, nc *nats.Conn) *jsWrites {
	t.Helper()
	w := &jsWrites{}
	sub, err := nc.Subscribe("$JS.API.>", func(m *nats.Msg) {
		if strings.Contains(m.Subject, ".CREATE.") || strings.Contains(m.Subject, ".UPDATE.") {
			w.mu.Lock()
			w.subj = append(w.subj, m.Subject)
			w.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return w
}

func (w *jsWrites) take(t *testing.T, nc *nats.Conn) []string {
	t.Helper()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	got := w.subj
	w.subj = nil
	return got
}

// A restart finds its streams and consumers as it left them and writes
// none of them again; a changed setting is still applied.
func TestBusLeavesMatchingStreamsAndConsumersAlone(t *testing.T) {
	ns := startServer(t, t.TempDir())
	nc := ns.Conn()
	w := watchJSWrites(t, nc)
	ctx := testCtx(t)
	handler := func(context.Context, Event) error { return nil }

	b := newBus(t, ns.JetStream(), testConfig)
	sub, err := b.Subscribe(ctx, "svc", "thing.happened", handler)
	if err != nil {
		t.Fatal(err)
	}
	sub.Stop()
	if first := w.take(t, nc); len(first) < 5 { // 3 streams, the scheduler, the subscription
		t.Fatalf("first start wrote %d streams and consumers, want at least 5: %q", len(first), first)
	}

	b2 := newBus(t, ns.JetStream(), testConfig)
	sub, err = b2.Subscribe(ctx, "svc", "thing.happened", handler)
	if err != nil {
		t.Fatal(err)
	}
	sub.Stop()
	if again := w.take(t, nc); len(again) != 0 {
		t.Fatalf("same settings written again: %q", again)
	}

	changed := testConfig
	changed.MaxAge = time.Hour
	newBus(t, ns.JetStream(), changed)
	if upd := w.take(t, nc); len(upd) != 1 || !strings.Contains(upd[0], "STREAM.UPDATE") {
		t.Fatalf("a new retention made %q, want one stream update", upd)
	}
	st, err := ns.JetStream().Stream(ctx, changed.withDefaults().Stream)
	if err != nil || st.CachedInfo().Config.MaxAge != time.Hour {
		t.Fatalf("retention not applied: %v", err)
	}
}
