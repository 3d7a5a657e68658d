package bus

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/internal/storefail"
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
//
// A due event that cannot be published (the store refuses writes: a full
// disk) is retried after a delay that doubles with how long it has been
// overdue (retryDelay: from MinRetryDelay to MaxRetryDelay, jittered), so
// that thousands of due events cost a few retries a second, not thousands;
// and the scheduler's errors are sampled: the first is logged, then one
// line every LogSampleEvery saying how many were held back.

const (
	hdrDeliverAt    = "meshd-deliver-at"
	schedulerName   = "meshd_scheduler"
	maxScheduleWait = time.Hour // re-check at least this often
)

// Retries of due events that could not be published, and the sampling of
// the scheduler's log lines.
const (
	MinRetryDelay  = time.Second
	MaxRetryDelay  = time.Minute
	LogSampleEvery = 10 * time.Second
)

// retryDelay is how long a due event, overdue by overdue, waits before its
// next publish attempt: as long as it has been overdue, from MinRetryDelay
// to MaxRetryDelay, less up to a fifth at random (so that events due
// together do not retry together). Each retry thus about doubles the time
// the event has been overdue: an exponential backoff that needs no count
// of attempts and survives restarts.
func retryDelay(overdue time.Duration) time.Duration {
	d := min(max(overdue, MinRetryDelay), MaxRetryDelay)
	return d - time.Duration(rand.Int64N(int64(d)/5+1))
}

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
	if err := b.publish(ctx, msg, ev.ID, stream); err != nil {
		return fmt.Errorf("bus: schedule %s %s: %w", ev.Type, ev.ID, err)
	}
	return nil
}

type scheduler struct {
	b        *Bus
	it       jetstream.MessagesContext
	wg       sync.WaitGroup
	stopOnce sync.Once

	// One sampler per kind of line: publish failures, naks, fetches.
	pubLog, nakLog, fetchLog storefail.Sampler
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
		Replicas:   b.cfg.Replicas,
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
	// A short pull expiry: after the server's JetStream restarts (a
	// repair after a full disk, storefail) the iterator notices the lost
	// pull within seconds rather than the default 30.
	it, err := cons.Messages(jetstream.PullMaxMessages(256), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("bus: scheduler: %w", err)
	}
	s := &scheduler{b: b, it: it}
	s.pubLog.Every, s.nakLog.Every, s.fetchLog.Every = LogSampleEvery, LogSampleEvery, LogSampleEvery
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
			if ok, held := s.fetchLog.Allow(); ok {
				s.b.log.Warn("bus: scheduler fetch", "error", err, "held_back", held)
			}
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
			s.nak(msg, min(wait, maxScheduleWait))
			return
		}
	}
	ev, derr := decodeEvent(msg.Headers(), msg.Data())
	if derr == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		derr = s.b.Publish(ctx, ev)
		cancel()
		if derr != nil {
			var overdue time.Duration
			if err == nil {
				overdue = time.Since(time.Unix(0, at))
			}
			delay := retryDelay(overdue)
			if ok, held := s.pubLog.Allow(); ok {
				s.b.log.Error("bus: publishing delayed event; will retry", "event_id", ev.ID, "error", derr,
					"retry_in", delay, "held_back", held)
			}
			s.nak(msg, delay)
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

// nak hands msg back to the server, to be delivered again after delay.
func (s *scheduler) nak(msg jetstream.Msg, delay time.Duration) {
	if err := msg.NakWithDelay(delay); err != nil {
		if ok, held := s.nakLog.Allow(); ok {
			s.b.log.Warn("bus: scheduler nak; the event comes back after AckWait", "error", err, "held_back", held)
		}
	}
}
