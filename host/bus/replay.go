package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Replay hands every stored event of the given types to fn, oldest first,
// one at a time, up to the last event stored when Replay started. Redriven
// copies are not replayed (the original is). It returns the number of
// events handed over; fn's first error stops the replay.
func (b *Bus) Replay(ctx context.Context, types []string, fn func(context.Context, Event) error) (int, error) {
	if len(types) == 0 {
		return 0, nil
	}
	filters := make([]string, len(types))
	for i, t := range types {
		if !ValidType(t) {
			return 0, fmt.Errorf("bus: invalid event type %q", t)
		}
		filters[i] = b.cfg.Subjects + "." + t
	}
	cons, err := b.js.OrderedConsumer(ctx, b.cfg.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: filters,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return 0, fmt.Errorf("bus: replay: %w", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("bus: replay: %w", err)
	}
	pending := info.NumPending
	n := 0
	for uint64(n) < pending {
		batch, err := cons.Fetch(int(min(pending-uint64(n), 256)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return n, fmt.Errorf("bus: replay: %w", err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			ev, derr := decodeEvent(msg.Headers(), msg.Data())
			if derr != nil {
				b.log.Warn("bus: replay skips an undecodable event", "error", derr)
				n++
				continue
			}
			ev.Attempt = 1
			if err := fn(ctx, ev); err != nil {
				return n, fmt.Errorf("bus: replay %s %s: %w", ev.Type, ev.ID, err)
			}
			n++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return n, fmt.Errorf("bus: replay: %w", err)
		}
		if got == 0 {
			return n, fmt.Errorf("bus: replay stopped after %d of %d events: no more delivered", n, pending)
		}
	}
	return n, nil
}
