package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func (b *Bus) redriveSubject(service, typ string) string {
	return b.cfg.RedriveSubjects + "." + service + "." + typ
}

// Redrive sends service's dead letters back to that service only: each is
// published on the service's redrive subject for its type (see
// Config.RedriveSubjects) with its original CloudEvents id, then removed
// from the dead-letter stream. ids selects dead letters by event id; none
// means all of them. Only the dead letters stored when it begins are sent,
// each once: one the redriven event makes meanwhile is left for the next
// Redrive. It returns how many it sent and removed; one another Redrive
// removed first is not counted (nor sent twice: see the message id below).
func (b *Bus) Redrive(ctx context.Context, service string, ids ...string) (int, error) {
	n := 0
	err := b.eachDeadLetter(ctx, service, func(st jetstream.Stream, m *jetstream.RawStreamMsg) error {
		ev, derr := decodeEvent(m.Header, m.Data)
		if len(ids) > 0 && !slices.Contains(ids, ev.ID) {
			return nil
		}
		if derr != nil {
			return fmt.Errorf("dead letter %d is undecodable, not redriven: %w", m.Sequence, derr)
		}
		h := nats.Header{}
		for k, v := range m.Header {
			h[k] = append([]string(nil), v...)
		}
		for _, k := range []string{hdrDLQReason, hdrDLQService, hdrDLQAttempts, hdrDLQTime, hdrDLQSeq} {
			h.Del(k)
		}
		msg := &nats.Msg{Subject: b.redriveSubject(service, ev.Type), Header: h, Data: m.Data}
		// The stream-level id is per redrive of this dead letter, so a
		// retried Redrive does not deliver it twice, and a later redrive of a
		// new dead letter of the same event is not dropped.
		msgID := "redrive/" + service + "/" + strconv.FormatUint(m.Sequence, 10)
		if err := b.send(ctx, msg, msgID, b.cfg.Stream); err != nil {
			return fmt.Errorf("%s: %w", ev.ID, err)
		}
		if err := st.DeleteMsg(ctx, m.Sequence); err != nil {
			// A Redrive running at the same time sent it (this publish was
			// a duplicate of that one's) and removed it: not an error, and
			// not counted twice.
			if _, gerr := st.GetMsg(ctx, m.Sequence); errors.Is(gerr, jetstream.ErrMsgNotFound) {
				return nil
			}
			return fmt.Errorf("removing dead letter %d: %w", m.Sequence, err)
		}
		n++
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("bus: redrive %s: %w", service, err)
	}
	return n, nil
}
