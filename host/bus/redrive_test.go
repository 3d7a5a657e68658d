package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
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
	once  sync.Once
	after func()
}

func (j *afterRedrivePublish) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	ack, err := j.JetStream.PublishMsg(ctx, msg, opts...)
	if err == nil && strings.HasPrefix(msg.Subject, DefaultRedriveSubjects+".") {
		j.once.Do(j.after)
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
	checkFor(t, waitFor, func() error {
		cs, err := b.Consumers(ctx)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if c.Pending+c.AckPending != 0 {
				return errors.New("still pending")
			}
		}
		return nil
	})
	if c := calls.Load(); c != 2 {
		t.Fatalf("handler ran %d times, want 2 (the event, its redrive)", c)
	}
	if c := deadLettered.Load(); c != 2 {
		t.Fatalf("%d dead letters stored, want 2", c)
	}
}
