package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DeadLetter is an event a service could not handle.
type DeadLetter struct {
	// Event as it was delivered (fields that could not be decoded are
	// empty); Attempt is the last attempt.
	Event Event
	// Service that failed to handle it.
	Service string
	// Reason is the last handler error, or why the event was undecodable.
	Reason string
	// Attempts is the number of deliveries made.
	Attempts int
	// FailedAt is when the event was dead-lettered.
	FailedAt time.Time
}

// DeadLetters returns the dead letters of service, oldest first.
func (b *Bus) DeadLetters(ctx context.Context, service string) ([]DeadLetter, error) {
	var out []DeadLetter
	err := b.eachDeadLetter(ctx, service, func(_ jetstream.Stream, m *jetstream.RawStreamMsg) error {
		ev, _ := decodeEvent(m.Header, m.Data)
		attempts, _ := strconv.Atoi(m.Header.Get(hdrDLQAttempts))
		ev.Attempt = attempts
		failed, err := time.Parse(time.RFC3339Nano, m.Header.Get(hdrDLQTime))
		if err != nil {
			failed = m.Time
		}
		out = append(out, DeadLetter{
			Event:    ev,
			Service:  m.Header.Get(hdrDLQService),
			Reason:   m.Header.Get(hdrDLQReason),
			Attempts: attempts,
			FailedAt: failed,
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bus: dead letters of %s: %w", service, err)
	}
	return out, nil
}

// dlqSubject is the dead-letter subject of service's events of typ (">"
// for all of them).
func (b *Bus) dlqSubject(service, typ string) string {
	return b.cfg.DLQSubjects + "." + service + "." + typ
}

// eachDeadLetter calls fn on service's dead letters stored when it begins,
// oldest first, until fn returns an error, which it returns. Dead letters
// stored meanwhile are not visited: a redriven event that fails again at
// once is dead-lettered again while Redrive still walks the stream, and
// visiting that new dead letter would send the event once more, and again
// for as long as its handler keeps up.
func (b *Bus) eachDeadLetter(ctx context.Context, service string, fn func(jetstream.Stream, *jetstream.RawStreamMsg) error) error {
	if !ValidService(service) {
		return fmt.Errorf("invalid service name %q", service)
	}
	st, err := b.js.Stream(ctx, b.cfg.DLQStream)
	if err != nil {
		return err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	last := info.State.LastSeq
	filter := b.dlqSubject(service, ">")
	for seq := uint64(1); seq <= last; {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if m.Sequence > last {
			return nil
		}
		seq = m.Sequence + 1
		if err := fn(st, m); err != nil {
			return err
		}
	}
	return nil
}
