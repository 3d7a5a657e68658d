package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/natsd"
)

const waitFor = 20 * time.Second

// testConfig retries fast so failure paths finish quickly.
var testConfig = Config{
	Backoff:        []time.Duration{10 * time.Millisecond, 20 * time.Millisecond},
	MaxDeliver:     3,
	HandlerTimeout: 2 * time.Second,
	AckWait:        5 * time.Second,
}

func startServer(t *testing.T, dir string) *natsd.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	s, err := natsd.Start(ctx, natsd.Config{DataDir: dir}, nil)
	if err != nil {
		t.Fatalf("natsd.Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newBus(t *testing.T, js jetstream.JetStream, cfg Config) *Bus {
	t.Helper()
	return newBusLogged(t, js, cfg, nil)
}

// newBusLogged is newBus with the Bus logging to log.
func newBusLogged(t *testing.T, js jetstream.JetStream, cfg Config, log *slog.Logger) *Bus {
	t.Helper()
	b, err := New(testCtx(t), js, cfg, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_ = b.Close(ctx)
	})
	return b
}

func setup(t *testing.T, cfg Config) (*natsd.Server, *Bus) {
	ns := startServer(t, t.TempDir())
	return ns, newBus(t, ns.JetStream(), cfg)
}

// streamMsgs is the number of messages the stream name of b holds.
func streamMsgs(t *testing.T, ctx context.Context, b *Bus, name string) uint64 {
	t.Helper()
	st, err := b.js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

// allSettled is a check for checkFor: no consumer of b has an event
// pending or unacknowledged.
func allSettled(ctx context.Context, b *Bus) func() error {
	return func() error {
		cs, err := b.Consumers(ctx)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if c.Pending+c.AckPending != 0 {
				return fmt.Errorf("consumer %s/%s: %d pending, %d unacknowledged", c.Service, c.Type, c.Pending, c.AckPending)
			}
		}
		return nil
	}
}

// checkFor polls f until it returns nil or wait passes.
func checkFor(t *testing.T, wait time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", wait, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recv waits for one event on ch.
func recv(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(waitFor):
		t.Fatal("no event delivered")
		return Event{}
	}
}

func collector(n int) (chan Event, Handler) {
	ch := make(chan Event, n)
	return ch, func(_ context.Context, ev Event) error { ch <- ev; return nil }
}

func TestPublishSubscribeAllFields(t *testing.T) {
	_, b := setup(t, testConfig)
	ctx := testCtx(t)
	ch, h := collector(1)
	sub, err := b.Subscribe(ctx, "orders", "order.created", h)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	ev := NewEvent("checkout", "order.created", []byte(`{"id":1}`))
	ev.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if err := b.Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
	got := recv(t, ch)
	if got.ID != ev.ID || got.Source != ev.Source || got.Type != ev.Type ||
		got.DataContentType != ev.DataContentType || got.TraceParent != ev.TraceParent ||
		string(got.Data) != string(ev.Data) || !got.Time.Equal(ev.Time) || got.Attempt != 1 {
		t.Fatalf("got %+v\nwant %+v", got, ev)
	}
}

func TestPublishValidates(t *testing.T) {
	_, b := setup(t, testConfig)
	ctx := testCtx(t)
	good := NewEvent("src", "t", nil)
	for name, mod := range map[string]func(*Event){
		"no id":      func(e *Event) { e.ID = "" },
		"no source":  func(e *Event) { e.Source = "" },
		"no type":    func(e *Event) { e.Type = "" },
		"space":      func(e *Event) { e.Type = "a b" },
		"star":       func(e *Event) { e.Type = "a.*" },
		"gt":         func(e *Event) { e.Type = ">" },
		"empty tok":  func(e *Event) { e.Type = "a..b" },
		"lead dot":   func(e *Event) { e.Type = ".a" },
		"newline id": func(e *Event) { e.ID = "a\r\nb" },
		"long type":  func(e *Event) { e.Type = strings.Repeat("a", abi.MaxEventTypeLen+1) },
	} {
		ev := good
		mod(&ev)
		if err := b.Publish(ctx, ev); err == nil {
			t.Errorf("%s: Publish succeeded", name)
		}
	}
	if _, err := b.Subscribe(ctx, "Bad Service", "t", func(context.Context, Event) error { return nil }); err == nil {
		t.Error("Subscribe with bad service succeeded")
	}
	if _, err := b.Subscribe(ctx, "svc", "a.>", func(context.Context, Event) error { return nil }); err == nil {
		t.Error("Subscribe with wildcard type succeeded")
	}
}

func TestTwoServicesEachGetEveryEvent(t *testing.T) {
	_, b := setup(t, testConfig)
	ctx := testCtx(t)
	const n = 20
	var mu sync.Mutex
	seen := map[string]map[string]int{"billing": {}, "shipping": {}}
	for svc := range seen {
		sub, err := b.Subscribe(ctx, svc, "order", func(_ context.Context, ev Event) error {
			mu.Lock()
			seen[svc][ev.ID]++
			mu.Unlock()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Stop()
	}
	for i := range n {
		if err := b.Publish(ctx, NewEvent("src", "order", fmt.Appendf(nil, "%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	checkFor(t, waitFor, func() error {
		mu.Lock()
		defer mu.Unlock()
		for svc, m := range seen {
			if len(m) != n {
				return fmt.Errorf("%s saw %d of %d events", svc, len(m), n)
			}
		}
		return nil
	})
	// Each acked once: both consumers fully acknowledged, no redeliveries.
	for svc := range seen {
		waitAcked(t, b, svc, "order", n)
	}
	mu.Lock()
	defer mu.Unlock()
	for svc, m := range seen {
		for id, c := range m {
			if c != 1 {
				t.Errorf("%s got %s %d times", svc, id, c)
			}
		}
	}
}

// waitAcked waits until the (service, typ) consumer has acked everything
// and made exactly deliveries deliveries.
func waitAcked(t *testing.T, b *Bus, service, typ string, deliveries uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	defer cancel()
	checkFor(t, waitFor, func() error {
		c, err := b.js.Consumer(ctx, b.cfg.Stream, ConsumerName(service, typ))
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 || info.Delivered.Consumer != deliveries {
			return fmt.Errorf("%s: pending %d, ack pending %d, delivered %d (want %d)",
				service, info.NumPending, info.NumAckPending, info.Delivered.Consumer, deliveries)
		}
		return nil
	})
}

func TestRetryThenSuccess(t *testing.T) {
	cfg := testConfig
	cfg.MaxDeliver = 5
	_, b := setup(t, cfg)
	ctx := testCtx(t)
	var mu sync.Mutex
	var attempts []int
	done := make(chan struct{})
	sub, err := b.Subscribe(ctx, "flaky", "job", func(_ context.Context, ev Event) error {
		mu.Lock()
		defer mu.Unlock()
		attempts = append(attempts, ev.Attempt)
		if len(attempts) < 3 {
			return errors.New("not yet")
		}
		close(done)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	if err := b.Publish(ctx, NewEvent("src", "job", nil)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("handler never succeeded")
	}
	waitAcked(t, b, "flaky", "job", 3)
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(attempts) != "[1 2 3]" {
		t.Fatalf("attempts = %v, want [1 2 3]", attempts)
	}
	if dls, err := b.DeadLetters(ctx, "flaky"); err != nil || len(dls) != 0 {
		t.Fatalf("DeadLetters = %v, %v; want none", dls, err)
	}
}

func TestAlwaysFailingDeadLetters(t *testing.T) {
	_, b := setup(t, testConfig)
	ctx := testCtx(t)
	var calls atomic.Int32
	sub, err := b.Subscribe(ctx, "broken", "job", func(context.Context, Event) error {
		calls.Add(1)
		return errors.New("boom\nsecond line")
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	// Another service on the same type is unaffected.
	okCh, okH := collector(1)
	okSub, err := b.Subscribe(ctx, "fine", "job", okH)
	if err != nil {
		t.Fatal(err)
	}
	defer okSub.Stop()

	ev := NewEvent("src", "job", []byte("payload"))
	if err := b.Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
	recv(t, okCh)
	var dls []DeadLetter
	checkFor(t, waitFor, func() error {
		dls, err = b.DeadLetters(ctx, "broken")
		if err != nil {
			return err
		}
		if len(dls) != 1 {
			return fmt.Errorf("%d dead letters", len(dls))
		}
		return nil
	})
	dl := dls[0]
	if dl.Service != "broken" || dl.Attempts != testConfig.MaxDeliver || !strings.Contains(dl.Reason, "boom") ||
		dl.Event.ID != ev.ID || dl.Event.Type != "job" || string(dl.Event.Data) != "payload" || dl.FailedAt.IsZero() {
		t.Fatalf("dead letter = %+v", dl)
	}
	waitAcked(t, b, "broken", "job", uint64(testConfig.MaxDeliver))
	if got := calls.Load(); got != int32(testConfig.MaxDeliver) {
		t.Fatalf("handler called %d times, want %d", got, testConfig.MaxDeliver)
	}
	if dls, err := b.DeadLetters(ctx, "fine"); err != nil || len(dls) != 0 {
		t.Fatalf("fine DeadLetters = %v, %v", dls, err)
	}
}

func TestPanicIsRetried(t *testing.T) {
	_, b := setup(t, testConfig)
	ctx := testCtx(t)
	var calls atomic.Int32
	done := make(chan struct{})
	sub, err := b.Subscribe(ctx, "panicky", "job", func(context.Context, Event) error {
		if calls.Add(1) == 1 {
			panic("oops")
		}
		close(done)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	if err := b.Publish(ctx, NewEvent("src", "job", nil)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("not redelivered after panic")
	}
	waitAcked(t, b, "panicky", "job", 2)
}

func TestUndecodableDeadLettered(t *testing.T) {
	ns, b := setup(t, testConfig)
	ctx := testCtx(t)
	var calls atomic.Int32
	sub, err := b.Subscribe(ctx, "svc", "raw", func(context.Context, Event) error { calls.Add(1); return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	// A message published straight to the subject, without ce headers.
	if _, err := ns.JetStream().PublishMsg(ctx, &nats.Msg{Subject: DefaultSubjects + ".raw", Data: []byte("junk")}); err != nil {
		t.Fatal(err)
	}
	var dls []DeadLetter
	checkFor(t, waitFor, func() error {
		dls, err = b.DeadLetters(ctx, "svc")
		if err != nil {
			return err
		}
		if len(dls) != 1 {
			return fmt.Errorf("%d dead letters", len(dls))
		}
		return nil
	})
	if !strings.Contains(dls[0].Reason, "undecodable") || dls[0].Attempts != 1 || string(dls[0].Event.Data) != "junk" {
		t.Fatalf("dead letter = %+v", dls[0])
	}
	waitAcked(t, b, "svc", "raw", 1)
	if calls.Load() != 0 {
		t.Fatal("handler called for undecodable event")
	}
}

func TestDuplicatePublishStoredOnce(t *testing.T) {
	_, b := setup(t, testConfig)
	ctx := testCtx(t)
	ev := NewEvent("src", "dup", []byte("x"))
	for range 3 {
		if err := b.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	other := NewEvent("src", "dup", []byte("y"))
	if err := b.Publish(ctx, other); err != nil {
		t.Fatal(err)
	}
	st, err := b.js.Stream(ctx, b.cfg.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("stream holds %d messages, want 2", info.State.Msgs)
	}
	ch, h := collector(4)
	sub, err := b.Subscribe(ctx, "svc", "dup", h)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	got := map[string]bool{recv(t, ch).ID: true, recv(t, ch).ID: true}
	if !got[ev.ID] || !got[other.ID] {
		t.Fatalf("got %v, want %s and %s", got, ev.ID, other.ID)
	}
	waitAcked(t, b, "svc", "dup", 2)
}

func TestEventsBeforeSubscribeDelivered(t *testing.T) {
	_, b := setup(t, testConfig)
	ctx := testCtx(t)
	var ids []string
	for i := range 5 {
		ev := NewEvent("src", "early", fmt.Appendf(nil, "%d", i))
		ids = append(ids, ev.ID)
		if err := b.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	ch, h := collector(5)
	sub, err := b.Subscribe(ctx, "late", "early", h)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	got := map[string]bool{}
	for range ids {
		got[recv(t, ch).ID] = true
	}
	for _, id := range ids {
		if !got[id] {
			t.Errorf("event %s not delivered", id)
		}
	}
}

func TestSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig
	cfg.Concurrency = 1
	ctx := testCtx(t)

	ns1 := startServer(t, dir)
	b1, err := New(ctx, ns1.JetStream(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ch1, h1 := collector(1)
	sub, err := b1.Subscribe(ctx, "svc", "evt", h1)
	if err != nil {
		t.Fatal(err)
	}
	first := NewEvent("src", "evt", []byte("1"))
	if err := b1.Publish(ctx, first); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, ch1); got.ID != first.ID {
		t.Fatalf("got %s", got.ID)
	}
	waitAcked(t, b1, "svc", "evt", 1)
	sub.Stop()
	later := []Event{NewEvent("src", "evt", []byte("2")), NewEvent("src", "evt", []byte("3"))}
	for _, ev := range later {
		if err := b1.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := b1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ns1.Close(); err != nil {
		t.Fatal(err)
	}

	ns2 := startServer(t, dir)
	b2 := newBus(t, ns2.JetStream(), cfg)
	ch2, h2 := collector(4)
	sub2, err := b2.Subscribe(ctx, "svc", "evt", h2)
	if err != nil {
		t.Fatal(err)
	}
	defer sub2.Stop()
	for _, want := range later {
		got := recv(t, ch2)
		if got.ID == first.ID {
			t.Fatalf("acked event %s redelivered after restart", first.ID)
		}
		if got.ID != want.ID {
			t.Fatalf("got %s, want %s", got.ID, want.ID)
		}
	}
	// The consumer's delivery count carries over the restart: 1 + 2.
	waitAcked(t, b2, "svc", "evt", 3)
}

func TestConcurrency(t *testing.T) {
	cfg := testConfig
	cfg.Concurrency = 4
	_, b := setup(t, cfg)
	ctx := testCtx(t)
	const n = 200
	var inFlight, peak atomic.Int32
	var seen sync.Map
	sub, err := b.Subscribe(ctx, "busy", "work", func(_ context.Context, ev Event) error {
		seen.Store(string(ev.Data), true)
		cur := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if cur <= p || peak.CompareAndSwap(p, cur) {
				break
			}
		}
		time.Sleep(time.Millisecond) // simulated work, lets handlers overlap
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	var pub sync.WaitGroup
	for w := range 4 {
		pub.Go(func() {
			for i := range n / 4 {
				if err := b.Publish(ctx, NewEvent("src", "work", fmt.Appendf(nil, "%d-%d", w, i))); err != nil {
					t.Error(err)
				}
			}
		})
	}
	pub.Wait()
	waitAcked(t, b, "busy", "work", n)
	for w := range 4 {
		for i := range n / 4 {
			if _, ok := seen.Load(fmt.Sprintf("%d-%d", w, i)); !ok {
				t.Errorf("event %d-%d not delivered", w, i)
			}
		}
	}
	if p := peak.Load(); p > int32(cfg.Concurrency) || p < 1 {
		t.Fatalf("peak concurrency %d, limit %d", p, cfg.Concurrency)
	}
	t.Logf("peak concurrency %d", peak.Load())
}

func TestStopWaitsForHandlers(t *testing.T) {
	_, b := setup(t, testConfig)
	ctx := testCtx(t)
	started := make(chan struct{})
	release := make(chan struct{})
	var finished atomic.Bool
	sub, err := b.Subscribe(ctx, "slow", "job", func(context.Context, Event) error {
		close(started)
		<-release
		finished.Store(true)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, NewEvent("src", "job", nil)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(waitFor):
		t.Fatal("handler not started")
	}
	stopped := make(chan struct{})
	go func() { sub.Stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("Stop returned while a handler was running")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	select {
	case <-stopped:
	case <-time.After(waitFor):
		t.Fatal("Stop did not return")
	}
	if !finished.Load() {
		t.Fatal("handler not finished")
	}
	sub.Stop() // idempotent
	waitAcked(t, b, "slow", "job", 1)
}

// TestStopHandlesFetchedEvents: events the subscription fetched but had
// not yet handed to a handler when Stop came are handled before Stop
// returns, not left unacknowledged until AckWait redelivers them.
func TestStopHandlesFetchedEvents(t *testing.T) {
	cfg := testConfig
	cfg.Concurrency = 2
	_, b := setup(t, cfg)
	ctx := testCtx(t)
	release := make(chan struct{})
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // before the bus closes, should the test fail early
	var calls, handled atomic.Int64
	// Every handler but the second waits for release. The second returns
	// at once, so its worker's token goes back to the puller, which asks
	// for one more: two events are in handlers, the third is the one a
	// request is open for at Stop.
	sub, err := b.Subscribe(ctx, "drain", "job", func(context.Context, Event) error {
		if calls.Add(1) != 2 {
			<-release
		}
		handled.Add(1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	for range n {
		if err := b.Publish(ctx, NewEvent("src", "job", nil)); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := b.js.Consumer(ctx, b.cfg.Stream, ConsumerName("drain", "job"))
	if err != nil {
		t.Fatal(err)
	}
	checkFor(t, waitFor, func() error {
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumAckPending != 2 || calls.Load() < 3 {
			return fmt.Errorf("%d events fetched and unacknowledged, %d handler calls: want 2 and 3", info.NumAckPending, calls.Load())
		}
		return nil
	})
	stopped := make(chan struct{})
	go func() { sub.Stop(); close(stopped) }()
	unblock()
	select {
	case <-stopped:
	case <-time.After(waitFor):
		t.Fatal("Stop did not return")
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 {
		t.Fatalf("after Stop: %d events fetched and not acknowledged (handled %d); they wait for AckWait",
			info.NumAckPending, handled.Load())
	}
	if h := handled.Load(); h < 3 || h+int64(info.NumPending) != n {
		t.Fatalf("handled %d, %d still in the stream: want the fetched three handled, the rest left in the stream", h, info.NumPending)
	}
}

// TestStoreRefusalIsNotAnAttempt: a handler failing only because the store
// refuses writes (a full disk) is not failing: its event is retried past
// MaxDeliver and handled once the store takes writes, not dead-lettered.
func TestStoreRefusalIsNotAnAttempt(t *testing.T) {
	old := storeRetryDelay
	storeRetryDelay = 10 * time.Millisecond
	t.Cleanup(func() { storeRetryDelay = old })
	_, b := setup(t, testConfig) // MaxDeliver 3
	ctx := testCtx(t)
	var calls atomic.Int64
	handled := make(chan struct{})
	if _, err := b.Subscribe(ctx, "full", "job", func(context.Context, Event) error {
		if calls.Add(1) <= 4 { // one more than MaxDeliver
			return fmt.Errorf("applying 1 kv writes: %w", ErrWritesRefused)
		}
		close(handled)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, NewEvent("src", "job", nil)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-handled:
	case <-time.After(3 * waitFor):
		t.Fatalf("not handled after %d deliveries", calls.Load())
	}
	waitAcked(t, b, "full", "job", 5)
	if dls, err := b.DeadLetters(ctx, "full"); err != nil || len(dls) != 0 {
		t.Fatalf("dead letters for an event the store refused: %v, %v", dls, err)
	}
}

func TestCloseRejectsUse(t *testing.T) {
	_, b := setup(t, testConfig)
	ctx := testCtx(t)
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, NewEvent("s", "t", nil)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}
	if _, err := b.Subscribe(ctx, "s", "t", func(context.Context, Event) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Subscribe after Close: %v", err)
	}
}

func TestConfig(t *testing.T) {
	c := Config{}.withDefaults()
	if err := c.validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if c.Stream != "MESHD_EVENTS" || c.DLQStream != "MESHD_DLQ" || c.MaxDeliver != 5 || c.Concurrency != 4 ||
		c.AckWait != 15*time.Second || c.HandlerTimeout != 10*time.Second || c.DuplicateWindow != 2*time.Minute || len(c.Backoff) != 4 {
		t.Fatalf("defaults = %+v", c)
	}
	bad := Config{AckWait: time.Second, HandlerTimeout: 2 * time.Second, MaxDeliver: -1, Subjects: "a.>", DLQSubjects: "a"}.withDefaults()
	err := bad.validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"AckWait", "MaxDeliver", "subject prefix"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestConsumerNameUnique(t *testing.T) {
	pairs := [][2]string{{"a_b", "c"}, {"a", "b_c"}, {"x", "y.z"}, {"x", "y_z"}}
	seen := map[string]bool{}
	for _, p := range pairs {
		n := ConsumerName(p[0], p[1])
		if seen[n] {
			t.Fatalf("duplicate consumer name %s", n)
		}
		seen[n] = true
		if strings.ContainsAny(n, ".*> ") {
			t.Fatalf("bad consumer name %q", n)
		}
	}
}

func TestBackoff(t *testing.T) {
	b := []time.Duration{1, 2, 3}
	for attempt, want := range map[int]time.Duration{0: 1, 1: 1, 2: 2, 3: 3, 4: 3, 100: 3} {
		if got := backoff(b, attempt); got != want {
			t.Errorf("backoff(%d) = %d, want %d", attempt, got, want)
		}
	}
}
