package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// afterRedrivePublish calls after once, when the first redriven event has
// been stored in the event stream, before Redrive goes on.
type afterRedrivePublish struct {
	jetstream.JetStream
	called atomic.Bool
	after  func() // may Redrive itself
}

func (j *afterRedrivePublish) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	ack, err := j.JetStream.PublishMsg(ctx, msg, opts...)
	if err == nil && strings.HasPrefix(msg.Subject, DefaultRedriveSubjects+".") {
		if j.after != nil && j.called.CompareAndSwap(false, true) {
			j.after()
		}
	}
	return ack, err
}

// A redriven event that fails again at once is dead-lettered again while
// Redrive still walks the dead-letter stream (a loaded machine, where the
// handler runs before Redrive has removed the dead letter and asked for the
// next one). Redrive sends what was there when it began, once: it does
// not meet the new dead letter and send it again, which handled the event
// twice and stored two dead letters of it.
func TestRedriveSkipsDeadLettersAddedMeanwhile(t *testing.T) {
	ns := startServer(t, t.TempDir())
	js := &afterRedrivePublish{JetStream: ns.JetStream()}
	var deadLettered atomic.Int32
	cfg := testConfig
	cfg.Hooks.DeadLettered = func(string, string) { deadLettered.Add(1) }
	b := newBus(t, js, cfg)
	ctx := testCtx(t)
	var calls atomic.Int32
	sub, err := b.Subscribe(ctx, "chaos", "chaos.fail", func(context.Context, Event) error {
		calls.Add(1)
		return errors.New("always fails")
	}, WithMaxDeliver(1))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	ev := NewEvent("src", "chaos.fail", nil)
	if err := b.Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
	checkFor(t, waitFor, func() error {
		if n := deadLettered.Load(); n != 1 {
			return fmt.Errorf("%d dead letters stored, want 1", n)
		}
		return nil
	})
	// The redriven event is handled and dead-lettered again before
	// Redrive removes the first dead letter and looks for the next.
	js.after = func() {
		deadline := time.Now().Add(waitFor)
		for deadLettered.Load() < 2 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	n, err := b.Redrive(ctx, "chaos")
	if err != nil {
		t.Fatal(err)
	}
	if deadLettered.Load() < 2 {
		t.Fatal("the redriven event was not dead-lettered again while Redrive ran")
	}
	if n != 1 {
		t.Fatalf("redriven %d, want 1: one dead letter was there", n)
	}
	dls, err := b.DeadLetters(ctx, "chaos")
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].Event.ID != ev.ID {
		t.Fatalf("dead letters after redrive: %+v, want the one of %s", dls, ev.ID)
	}
	// Nothing more is delivered: the handler ran for the event and its one
	// redrive.
	checkFor(t, waitFor, allSettled(ctx, b))
	if c := calls.Load(); c != 2 {
		t.Fatalf("handler ran %d times, want 2 (the event, its redrive)", c)
	}
	if c := deadLettered.Load(); c != 2 {
		t.Fatalf("%d dead letters stored, want 2", c)
	}
}

// Two Redrives of the same dead letter at once (two operators, or a client
// retrying a request it thought lost) send it once between them, and
// neither fails: the later publish is a duplicate of the first, and the
// one that finds the dead letter already removed counts nothing.
func TestRedriveConcurrentSendsOnce(t *testing.T) {
	ns := startServer(t, t.TempDir())
	js := &afterRedrivePublish{JetStream: ns.JetStream()}
	b := newBus(t, js, testConfig)
	ctx := testCtx(t)
	var fixed atomic.Bool
	var handled atomic.Int32
	sub, err := b.Subscribe(ctx, "chaos", "chaos.fail", func(context.Context, Event) error {
		if !fixed.Load() {
			return errors.New("broken")
		}
		handled.Add(1)
		return nil
	}, WithMaxDeliver(1))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()
	ev := NewEvent("src", "chaos.fail", nil)
	if err := b.Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
	checkFor(t, waitFor, func() error {
		dls, err := b.DeadLetters(ctx, "chaos")
		if err != nil || len(dls) != 1 {
			return fmt.Errorf("dead letters %d %v, want 1", len(dls), err)
		}
		return nil
	})
	fixed.Store(true)
	// The second Redrive runs to its end after the first has sent the dead
	// letter and before it removes it.
	var n2 int
	var err2 error
	js.after = func() { n2, err2 = b.Redrive(ctx, "chaos") }
	n1, err1 := b.Redrive(ctx, "chaos")
	if err1 != nil || err2 != nil {
		t.Fatalf("concurrent redrives failed: %v; %v", err1, err2)
	}
	if n1+n2 != 1 {
		t.Fatalf("redriven %d and %d, want 1 between them", n1, n2)
	}
	checkFor(t, waitFor, func() error {
		if handled.Load() != 1 {
			return errors.New("redriven event not handled")
		}
		return nil
	})
	if dls, err := b.DeadLetters(ctx, "chaos"); err != nil || len(dls) != 0 {
		t.Fatalf("dead letters after redrive: %+v %v", dls, err)
	}
	checkFor(t, waitFor, allSettled(ctx, b))
	if c := handled.Load(); c != 1 {
		t.Fatalf("redriven event handled %d times, want 1", c)
	}
}
