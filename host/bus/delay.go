package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/abi"
)

// Delayed events.
//
// PublishDelayed stores the event in the schedule stream with its due time
// in a header. One durable consumer (shared by every node on the same NATS)
// reads that stream: an event not yet due is nak'ed with a delay of the
// time left, so JetStream itself keeps it and hands it back when due; a due
// event is published to the event stream under its own id (a second publish
// after a crash between publish and ack is dropped by the duplicate window)
// and only then acknowledged. Delays therefore survive restarts: the
// schedule is JetStream state, not a timer in memory.

const (
	hdrDeliverAt    = "meshd-deliver-at"
	schedulerName   = "meshd_scheduler"
	maxScheduleWait = time.Hour // re-check at least this often
)

// MaxDelay is the longest delay PublishDelayed accepts (abi.MaxDelay).
const MaxDelay = abi.MaxDelay

// PublishDelayed stores ev to be published after delay (from now). It
// returns once the schedule is stored. A delay <= 0 publishes now.
func (b *Bus) PublishDelayed(ctx context.Context, ev Event, delay time.Duration) error {
	if delay <= 0 {
		return b.Publish(ctx, ev)
	}
	msg, stream, err := b.message(&ev, delay)
	if err != nil {
		return err
	}
	if _, err := b.js.PublishMsg(ctx, msg, jetstream.WithMsgID(ev.ID), jetstream.WithExpectStream(stream)); err != nil {
		return fmt.Errorf("bus: schedule %s %s: %w", ev.Type, ev.ID, err)
	}
	return nil
}

type scheduler struct {
	b        *Bus
	it       jetstream.MessagesContext
	wg       sync.WaitGroup
	stopOnce sync.Once
}

func (b *Bus) startScheduler(ctx context.Context) (*scheduler, error) {
	_, err := ensureStream(ctx, b.js, jetstream.StreamConfig{
		Name:        b.cfg.ScheduleStream,
		Description: "meshd delayed events",
		Subjects:    []string{b.cfg.ScheduleSubject + ".>"},
		Storage:     jetstream.FileStorage,
		// Work queue: a scheduled event is removed once published.
		Retention:  jetstream.WorkQueuePolicy,
		Duplicates: b.cfg.DuplicateWindow,
	})
	if err != nil {
		return nil, fmt.Errorf("bus: stream %s: %w", b.cfg.ScheduleStream, err)
	}
	cons, err := ensureConsumer(ctx, b.js, b.cfg.ScheduleStream, jetstream.ConsumerConfig{
		Durable:       schedulerName,
		Description:   "meshd: publishes delayed events when due",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		// A scheduled event held by a scheduler that stopped or crashed
		// before it naked the event comes back after AckWait; keep that
		// short, since the handling itself is only a header check.
		AckWait:       5 * time.Second,
		MaxDeliver:    -1,
		MaxAckPending: 100000,
	})
	if err != nil {
		return nil, fmt.Errorf("bus: scheduler consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		return nil, fmt.Errorf("bus: scheduler: %w", err)
	}
	s := &scheduler{b: b, it: it}
	s.wg.Add(1)
	go s.loop()
	return s, nil
}

func (s *scheduler) stop() {
	s.stopOnce.Do(func() {
		s.it.Stop()
		s.wg.Wait()
	})
}

func (s *scheduler) loop() {
	defer s.wg.Done()
	for {
		msg, err := s.it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			s.b.log.Warn("bus: scheduler fetch", "error", err)
			time.Sleep(250 * time.Millisecond)
			continue
		}
		s.handle(msg)
	}
}

func (s *scheduler) handle(msg jetstream.Msg) {
	at, err := strconv.ParseInt(msg.Headers().Get(hdrDeliverAt), 10, 64)
	if err == nil {
		if wait := time.Until(time.Unix(0, at)); wait > 0 {
			if err := msg.NakWithDelay(min(wait, maxScheduleWait)); err != nil {
				s.b.log.Warn("bus: scheduler nak", "error", err)
			}
			return
		}
	}
	ev, derr := decodeEvent(msg.Headers(), msg.Data())
	if derr == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		derr = s.b.Publish(ctx, ev)
		cancel()
		if derr != nil {
			s.b.log.Error("bus: publishing delayed event; will retry", "event_id", ev.ID, "error", derr)
			_ = msg.NakWithDelay(time.Second)
			return
		}
	} else {
		s.b.log.Error("bus: undecodable delayed event dropped", "error", derr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := msg.DoubleAck(ctx); err != nil {
		s.b.log.Warn("bus: scheduler ack; the event may be published again (deduplicated by id)", "error", err)
	}
}
