package bus

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/meshd/meshd/host/natsd"
)

// jsWrites counts the JetStream API requests that create or update a
// stream or a consumer.
type jsWrites struct {
	sub     *nats.Subscription
	mu      sync.Mutex
	subj    []string
	handled int // API requests the handler has seen
}

func watchJSWrites(t *testing.T, nc *nats.Conn) *jsWrites {
	t.Helper()
	w := &jsWrites{}
	sub, err := nc.Subscribe("$JS.API.>", func(m *nats.Msg) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if strings.Contains(m.Subject, ".CREATE.") || strings.Contains(m.Subject, ".UPDATE.") {
			w.subj = append(w.subj, m.Subject)
		}
		w.handled++
	})
	if err != nil {
		t.Fatal(err)
	}
	w.sub = sub
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return w
}

func (w *jsWrites) take(t *testing.T, nc *nats.Conn) []string {
	t.Helper()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Every request sent so far has reached the client once Flush
	// returns, but the handler runs on a goroutine of its own: wait until
	// it has seen every one the client queued for it.
	checkFor(t, waitFor, func() error {
		queued, _, err := w.sub.Pending()
		if err != nil {
			return err
		}
		delivered, err := w.sub.Delivered()
		if err != nil {
			return err
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if queued != 0 || int64(w.handled) != delivered {
			return fmt.Errorf("%d requests queued, %d of %d handled", queued, w.handled, delivered)
		}
		return nil
	})
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

// consumerDir is where the embedded server under dataDir keeps the state
// of durable name of the event stream.
func consumerDir(dataDir, name string) string {
	return filepath.Join(dataDir, "nats", "jetstream", "$G", "streams", DefaultStream, "obs", name)
}

// damageConsumer overwrites the stored state of durable name with garbage.
func damageConsumer(t *testing.T, dataDir, name string) {
	t.Helper()
	odat := filepath.Join(consumerDir(dataDir, name), "o.dat")
	if _, err := os.Stat(odat); err != nil {
		t.Fatalf("no consumer state to damage: %v", err)
	}
	if err := os.WriteFile(odat, []byte("\xff\xfe not a consumer state, garbage garbage garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// received collects the data of handled events.
type received struct {
	mu  sync.Mutex
	got map[string]int
}

func (r *received) handler(_ context.Context, ev Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.got == nil {
		r.got = make(map[string]int)
	}
	r.got[string(ev.Data)]++
	return nil
}

func (r *received) count(data string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[data]
}

// busRun is one run of a server and a bus on dataDir, subscribing
// (svc, thing.happened) with rec's handler.
func busRun(t *testing.T, dataDir string, rec *received, replaced *atomic.Int64) (*natsd.Server, *Bus, *Subscription, error) {
	t.Helper()
	ns := startServer(t, dataDir)
	cfg := testConfig
	cfg.Hooks.ConsumerReplaced = func(service, typ string) {
		if service == "svc" && typ == "thing.happened" {
			replaced.Add(1)
		}
	}
	b := newBus(t, ns.JetStream(), cfg)
	sub, err := b.Subscribe(testCtx(t), "svc", "thing.happened", rec.handler)
	return ns, b, sub, err
}

// stopRun stops a run the way a shutdown does: bus, then server (which
// writes the consumers' state).
func stopRun(t *testing.T, ns *natsd.Server, b *Bus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ns.Close(); err != nil {
		t.Fatal(err)
	}
}

func publishData(t *testing.T, b *Bus, data string) {
	t.Helper()
	if err := b.Publish(testCtx(t), NewEvent("src", "thing.happened", []byte(data))); err != nil {
		t.Fatal(err)
	}
}

// A durable consumer whose stored state is damaged on disk cannot be
// restored, looked up, deleted nor created again under its name by the
// server; Subscribe replaces it, the replacement delivers every stored
// event again (the acknowledged position was in the damaged state) and
// new ones, and a later start uses the replacement with its position.
func TestDamagedConsumerStateIsReplaced(t *testing.T) {
	dir := t.TempDir()
	name := ConsumerName("svc", "thing.happened")
	rec := &received{}
	var replaced atomic.Int64

	ns, b, sub, err := busRun(t, dir, rec, &replaced)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"a", "b", "c"} {
		publishData(t, b, d)
	}
	checkFor(t, waitFor, func() error {
		if rec.count("a")+rec.count("b")+rec.count("c") != 3 {
			return errors.New("the first events are not handled")
		}
		return nil
	})
	if sub.Consumer() != name {
		t.Fatalf("consumer %s, want %s", sub.Consumer(), name)
	}
	stopRun(t, ns, b)
	damageConsumer(t, dir, name)

	ns, b, sub, err = busRun(t, dir, rec, &replaced)
	if err != nil {
		t.Fatalf("subscribe after the consumer state was damaged: %v", err)
	}
	if sub.Consumer() != name+"_r1" || replaced.Load() != 1 {
		t.Fatalf("consumer %s, %d replacements reported; want %s_r1, 1", sub.Consumer(), replaced.Load(), name)
	}
	publishData(t, b, "after")
	checkFor(t, waitFor, func() error {
		for _, d := range []string{"a", "b", "c", "after"} {
			if rec.count(d) < 1 || (d != "after" && rec.count(d) < 2) {
				return fmt.Errorf("event %q handled %d times", d, rec.count(d))
			}
		}
		return nil
	})
	infos, err := b.Consumers(testCtx(t))
	if err != nil || len(infos) != 1 || infos[0].Service != "svc" || infos[0].Type != "thing.happened" {
		t.Fatalf("consumers %+v %v, want the replacement as svc's thing.happened", infos, err)
	}
	stopRun(t, ns, b)

	// The next start finds the replacement and its position: nothing
	// handled is delivered again. (Before it, an event may have been
	// handled more than twice: delivery is at least once, and a slow ack
	// on a loaded machine is a redelivery.)
	before := map[string]int{}
	for _, d := range []string{"a", "b", "c", "after"} {
		before[d] = rec.count(d)
	}
	ns, b, sub, err = busRun(t, dir, rec, &replaced)
	if err != nil {
		t.Fatal(err)
	}
	if sub.Consumer() != name+"_r1" || replaced.Load() != 1 {
		t.Fatalf("consumer %s, %d replacements; want %s_r1 kept, 1", sub.Consumer(), replaced.Load(), name)
	}
	publishData(t, b, "again")
	checkFor(t, waitFor, func() error {
		if rec.count("again") != 1 {
			return errors.New(`"again" not handled`)
		}
		return nil
	})
	// Deliveries come in stream order: had the old events come back, they
	// would have come before "again".
	for _, d := range []string{"a", "b", "c", "after"} {
		if got := rec.count(d); got != before[d] {
			t.Fatalf("event %q handled %d times after the restart, %d before it: delivered again", d, got, before[d])
		}
	}
	stopRun(t, ns, b)
}

// Past MaxConsumerReplacements unusable durables, Subscribe fails and says
// why.
func TestUnusableConsumersAreBounded(t *testing.T) {
	dir := t.TempDir()
	name := ConsumerName("svc", "thing.happened")
	rec := &received{}
	var replaced atomic.Int64
	ns, b, _, err := busRun(t, dir, rec, &replaced)
	if err != nil {
		t.Fatal(err)
	}
	publishData(t, b, "a")
	checkFor(t, waitFor, func() error {
		if rec.count("a") != 1 {
			return errors.New("not handled")
		}
		return nil
	})
	stopRun(t, ns, b)
	damageConsumer(t, dir, name)
	// The same damaged state under every replacement's name.
	for _, n := range consumerNames(name)[1:] {
		if err := os.CopyFS(consumerDir(dir, n), os.DirFS(consumerDir(dir, name))); err != nil {
			t.Fatal(err)
		}
	}
	_, _, _, err = busRun(t, dir, rec, &replaced)
	if err == nil || !strings.Contains(err.Error(), "cannot open the stored state") || !strings.Contains(err.Error(), name) {
		t.Fatalf("subscribe with every durable unusable: %v", err)
	}
	if replaced.Load() != 0 {
		t.Fatalf("%d replacements reported, none made", replaced.Load())
	}
}

// A deferred subscription makes its consumer but fetches nothing until
// Start: an event waiting meanwhile is handled at its first attempt.
func TestDeferredSubscriptionFetchesNothingUntilStart(t *testing.T) {
	ns, b := setup(t, testConfig)
	ctx := testCtx(t)
	attempts := make(chan int, 10)
	h := func(_ context.Context, ev Event) error { attempts <- ev.Attempt; return nil }
	sub, err := b.Subscribe(ctx, "svc", "thing.happened", h, Deferred())
	if err != nil {
		t.Fatal(err)
	}
	publishData(t, b, "waiting")
	cons, err := ns.JetStream().Consumer(ctx, DefaultStream, sub.Consumer())
	if err != nil {
		t.Fatalf("the deferred subscription made no consumer: %v", err)
	}
	// The consumer counts the event as pending (it may take a moment),
	// then nothing is delivered for long enough for a pull to have fetched
	// it, had one been made.
	checkFor(t, waitFor, func() error {
		ci, err := cons.Info(ctx)
		if err == nil && ci.NumPending+ci.Delivered.Stream != 1 {
			err = fmt.Errorf("%d pending, delivered up to %d", ci.NumPending, ci.Delivered.Stream)
		}
		return err
	})
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		ci, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ci.Delivered.Stream != 0 || ci.NumAckPending != 0 {
			t.Fatalf("before Start: delivered up to %d, %d awaiting ack; want nothing delivered", ci.Delivered.Stream, ci.NumAckPending)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	if err := sub.Start(); err != nil {
		t.Fatalf("a second Start: %v", err)
	}
	select {
	case a := <-attempts:
		if a != 1 {
			t.Fatalf("first delivery is attempt %d", a)
		}
	case <-time.After(waitFor):
		t.Fatal("not delivered after Start")
	}
	sub.Stop()
	if err := sub.Start(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Stop: %v", err)
	}

	// A deferred subscription never started stops at once.
	sub2, err := b.Subscribe(ctx, "svc", "other.thing", h, Deferred())
	if err != nil {
		t.Fatal(err)
	}
	sub2.Stop()
}
