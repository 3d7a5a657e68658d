package bus

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// A delayed event is stored in JetStream, so it is delivered after a
// restart of the bus and the server on the same data directory.
func TestDelayedEventSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ns := startServer(t, dir)
	b := newBus(t, ns.JetStream(), testConfig)
	ctx := testCtx(t)
	ev := NewEvent("src", "later", []byte(`{}`))
	if err := b.PublishDelayed(ctx, ev, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	_ = ns.Close()

	ns2 := startServer(t, dir)
	b2 := newBus(t, ns2.JetStream(), testConfig)
	ch, h := collector(2)
	sub, err := b2.Subscribe(ctx, "svc", "later", h)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	got := recv(t, ch)
	if got.ID != ev.ID {
		t.Fatalf("got %s want %s", got.ID, ev.ID)
	}
	if time.Since(ev.Time) < 1500*time.Millisecond {
		t.Fatalf("delivered %s after publishing, before the delay", time.Since(ev.Time))
	}
}

// Redrive delivers a dead letter again to its service only, not to the
// other subscribers of the type.
func TestRedriveIsPerService(t *testing.T) {
	_, b := setup(t, testConfig)
	ctx := testCtx(t)
	var fixed atomic.Bool
	var okCalls, otherCalls atomic.Int32
	sub, err := b.Subscribe(ctx, "broken", "t.x", func(context.Context, Event) error {
		if !fixed.Load() {
			return errors.New("broken")
		}
		okCalls.Add(1)
		return nil
	}, WithMaxDeliver(2))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	other, err := b.Subscribe(ctx, "other", "t.x", func(context.Context, Event) error { otherCalls.Add(1); return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer other.Stop()
	ev := NewEvent("src", "t.x", nil)
	if err := b.Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
	var dls []DeadLetter
	checkFor(t, waitFor, func() error {
		dls, err = b.DeadLetters(ctx, "broken")
		if err != nil || len(dls) != 1 {
			return errors.New("not dead-lettered")
		}
		return nil
	})
	if dls[0].Attempts != 2 || dls[0].Event.ID != ev.ID {
		t.Fatalf("dead letter %+v (per-subscription MaxDeliver 2)", dls[0])
	}
	fixed.Store(true)
	n, err := b.Redrive(ctx, "broken", "not-an-id")
	if err != nil || n != 0 {
		t.Fatalf("redrive of an unknown id: %d %v", n, err)
	}
	if n, err := b.Redrive(ctx, "broken"); err != nil || n != 1 {
		t.Fatalf("redrive: %d %v", n, err)
	}
	checkFor(t, waitFor, func() error {
		if okCalls.Load() != 1 {
			return errors.New("redriven event not handled")
		}
		return nil
	})
	if dls, _ := b.DeadLetters(ctx, "broken"); len(dls) != 0 {
		t.Fatalf("dead letter kept after redrive: %+v", dls)
	}
	// Everything "broken" got is settled; "other" saw the event once.
	checkFor(t, waitFor, allSettled(ctx, b))
	if otherCalls.Load() != 1 {
		t.Fatalf("other service handled the event %d times, want 1", otherCalls.Load())
	}
}

// Replay hands over every stored event of the types, in order, and not the
// redriven copies.
func TestReplay(t *testing.T) {
	_, b := setup(t, testConfig)
	ctx := testCtx(t)
	var ids []string
	for i := range 5 {
		typ := "a"
		if i%2 == 1 {
			typ = "b"
		}
		ev := NewEvent("src", typ, nil)
		ids = append(ids, ev.ID)
		if err := b.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Publish(ctx, NewEvent("src", "c", nil)); err != nil {
		t.Fatal(err)
	}
	var got []string
	n, err := b.Replay(ctx, []string{"a", "b"}, func(_ context.Context, ev Event) error {
		got = append(got, ev.ID)
		return nil
	})
	if err != nil || n != 5 {
		t.Fatalf("replay: %d %v", n, err)
	}
	for i := range ids {
		if got[i] != ids[i] {
			t.Fatalf("replayed %v, want %v", got, ids)
		}
	}
	if n, err := b.Replay(ctx, []string{"none"}, func(context.Context, Event) error { return nil }); n != 0 || err != nil {
		t.Fatalf("empty replay: %d %v", n, err)
	}
}

func TestPublishAll(t *testing.T) {
	var published atomic.Int64
	cfg := testConfig
	cfg.Hooks.Published = func(string) { published.Add(1) }
	// One handler at a time: the order of delivery is the stream's, which
	// several workers would not keep.
	cfg.Concurrency = 1
	_, b := setup(t, cfg)
	ctx := testCtx(t)

	// One bad event anywhere: an error, and nothing is sent.
	bad := NewEvent("src", "a b", nil)
	if err := b.PublishAll(ctx, []Pending{{Event: NewEvent("src", "all", nil)}, {Event: bad}}); err == nil {
		t.Fatal("PublishAll with an invalid event succeeded")
	}
	if err := b.PublishAll(ctx, []Pending{{Event: NewEvent("src", "all", nil)}, {Event: NewEvent("src", "all", nil), Delay: MaxDelay + time.Second}}); err == nil {
		t.Fatal("PublishAll with a delay over MaxDelay succeeded")
	}
	if n := streamMsgs(t, ctx, b, b.cfg.Stream); n != 0 {
		t.Fatalf("event stream holds %d messages after refused batches", n)
	}

	ch, h := collector(4)
	sub, err := b.Subscribe(ctx, "svc", "all", h)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	first, second := NewEvent("src", "all", []byte("1")), NewEvent("src", "all", []byte("2"))
	later := NewEvent("src", "all", []byte("later"))
	start := time.Now()
	if err := b.PublishAll(ctx, []Pending{{Event: first}, {Event: later, Delay: 300 * time.Millisecond}, {Event: second}}); err != nil {
		t.Fatal(err)
	}
	// Immediate events in the order given, the delayed one after its delay.
	for _, want := range []Event{first, second, later} {
		if got := recv(t, ch); got.ID != want.ID || string(got.Data) != string(want.Data) {
			t.Fatalf("got %s %q, want %s %q", got.ID, got.Data, want.ID, want.Data)
		}
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Fatalf("delayed event delivered after %s, before its 300ms", el)
	}
	// The hook counts events stored on the event stream: the two immediate
	// ones by PublishAll, the delayed one when the scheduler publishes it.
	checkFor(t, waitFor, func() error {
		if n := published.Load(); n != 3 {
			return fmt.Errorf("Published hook ran %d times, want 3", n)
		}
		return nil
	})

	// Publishing the same ids again stores nothing new.
	before := streamMsgs(t, ctx, b, b.cfg.Stream)
	if err := b.PublishAll(ctx, []Pending{{Event: first}, {Event: second}}); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, ctx, b, b.cfg.Stream); n != before {
		t.Fatalf("republished ids stored again: %d messages, was %d", n, before)
	}

	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.PublishAll(done, []Pending{{Event: NewEvent("src", "all", nil)}, {Event: NewEvent("src", "all", nil)}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("PublishAll with a cancelled context: %v", err)
	}

	// An event the server does not store (its stream is gone) is an error,
	// even when the others of the batch were stored.
	if err := b.js.DeleteStream(ctx, b.cfg.ScheduleStream); err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	if err := b.PublishAll(short, []Pending{{Event: NewEvent("src", "all", nil)}, {Event: NewEvent("src", "all", nil), Delay: time.Minute}}); err == nil {
		t.Fatal("PublishAll with its schedule stream deleted succeeded")
	}
}
