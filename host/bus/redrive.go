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
// means all of them. It returns how many were sent.
func (b *Bus) Redrive(ctx context.Context, service string, ids ...string) (int, error) {
	if !ValidService(service) {
		return 0, fmt.Errorf("bus: invalid service name %q", service)
	}
	st, err := b.js.Stream(ctx, b.cfg.DLQStream)
	if err != nil {
		return 0, fmt.Errorf("bus: redrive: %w", err)
	}
	filter := b.cfg.DLQSubjects + "." + service + ".>"
	n := 0
	for seq := uint64(1); ; {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("bus: redrive %s: %w", service, err)
		}
		seq = m.Sequence + 1
		ev, derr := decodeEvent(m.Header, m.Data)
		if len(ids) > 0 && !slices.Contains(ids, ev.ID) {
			continue
		}
		if derr != nil {
			return n, fmt.Errorf("bus: dead letter %d of %s is undecodable, not redriven: %w", m.Sequence, service, derr)
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
		if _, err := b.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID), jetstream.WithExpectStream(b.cfg.Stream)); err != nil {
			return n, fmt.Errorf("bus: redrive %s %s: %w", service, ev.ID, err)
		}
		if err := st.DeleteMsg(ctx, m.Sequence); err != nil {
			return n, fmt.Errorf("bus: redrive %s: removing dead letter %d: %w", service, m.Sequence, err)
		}
		n++
	}
}
