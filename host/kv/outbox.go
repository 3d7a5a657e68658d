package kv

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/host/internal/jsasync"
)

// An outbox record holds events an invocation is to publish, stored in the
// same atomic batch as the invocation's writes (ApplyWithOutbox), so that
// writes stored never go without their events: whoever publishes them
// (the request that made them, or a relay after a failure or a crash)
// deletes the record afterwards (DeleteOutbox), and a scan of the bucket
// (OutboxRecords) finds those left behind. What a record holds is its
// writer's business; this package stores, lists and deletes it.

// OutboxPrefix begins the key of every outbox record in a bucket: the key
// is OutboxPrefix and the record's id. Like a lease's key (LeasePrefix) it
// holds a '.', which no escaped guest key does (see escapeKey), so a guest
// can neither name nor overwrite a record, and Keys leaves records out.
const OutboxPrefix = "_meshd.outbox."

// metaPrefix begins every key meshd keeps in a service's bucket for itself
// (leases, outbox records): keys no guest can name, left out of Keys.
const metaPrefix = "_meshd."

// MaxOutboxID is the longest outbox record id, in bytes.
const MaxOutboxID = 128

// OutboxRecord is one outbox record: Value stored under OutboxPrefix+ID.
type OutboxRecord struct {
	ID    string
	Value []byte
}

// ErrBadOutboxID is wrapped by the error of an outbox record id that is
// empty, longer than MaxOutboxID or holds bytes other than
// [A-Za-z0-9_-].
var ErrBadOutboxID = errors.New("kv: invalid outbox record id")

func checkOutboxID(id string) error {
	if id == "" || len(id) > MaxOutboxID {
		return fmt.Errorf("%w: %d bytes, want 1 to %d", ErrBadOutboxID, len(id), MaxOutboxID)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !keepByte(c) || c == '/' {
			return fmt.Errorf("%w: byte %q at %d", ErrBadOutboxID, c, i)
		}
	}
	return nil
}

// MaxOutboxValue is the most bytes one outbox record may hold in an atomic
// batch: the server's payload limit less the batch's headers.
func (s *Store) MaxOutboxValue() int64 {
	return s.js.Conn().MaxPayload() - BatchHeaderBytes
}

// ApplyWithOutbox makes the writes ops as Apply does and stores records in
// the same atomic batch, after the writes: all are stored or none. It
// counts the records against the batch limit (Options.MaxBatch) and each
// against MaxOutboxValue.
func (s *Store) ApplyWithOutbox(ctx context.Context, ops []Op, records []OutboxRecord) error {
	extra := make([]*nats.Msg, len(records))
	limit := s.MaxOutboxValue()
	for i, r := range records {
		if err := checkOutboxID(r.ID); err != nil {
			return err
		}
		if int64(len(r.Value)) > limit {
			return fmt.Errorf("kv: outbox record %s/%s of %d bytes exceeds the %d a write may hold: %w",
				s.service, r.ID, len(r.Value), limit, nats.ErrMaxPayload)
		}
		m := nats.NewMsg(s.subject + OutboxPrefix + r.ID) // the batch sets headers
		m.Data = r.Value
		extra[i] = m
	}
	return s.applyWith(ctx, ops, extra, nil)
}

// outboxDeletedTTL is how long the mark of a deleted outbox record stays
// in the bucket: without a TTL, every record ever deleted would leave its
// mark for good (the bucket keeps the last message of every key).
const outboxDeletedTTL = MinLeaseTTL

// DeleteOutbox deletes the outbox records ids: it sends every delete, then
// waits for their acknowledgements. Deleting an absent record is not an
// error. After an error, some may be deleted and others not.
func (s *Store) DeleteOutbox(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	msgs := make([]*nats.Msg, len(ids))
	ttl := strconv.FormatInt(int64(outboxDeletedTTL/time.Second), 10)
	for i, id := range ids {
		if err := checkOutboxID(id); err != nil {
			return err
		}
		m := nats.NewMsg(s.subject + OutboxPrefix + id)
		m.Header.Set(kvOperation, "DEL")
		m.Header.Set(hdrTTL, ttl)
		msgs[i] = m
	}
	w, err := s.health.Begin()
	if err != nil {
		return fmt.Errorf("kv: delete %d outbox records of %s: %w", len(ids), s.service, err)
	}
	var errs []error
	var first error
	for i, r := range jsasync.Publish(ctx, s.js, msgs, nil) {
		if r.Err != nil {
			if first == nil {
				first = r.Err
			}
			errs = append(errs, fmt.Errorf("kv: delete outbox record %s/%s: %w", s.service, ids[i], r.Err))
		}
	}
	w.End(first)
	return errors.Join(errs...)
}

// OutboxRecords returns the outbox records stored in the bucket, at most
// limit of them (in the order the bucket holds them), and whether there
// were more.
func (s *Store) OutboxRecords(ctx context.Context, limit int) ([]OutboxRecord, bool, error) {
	w, err := s.kv.Watch(ctx, OutboxPrefix+">", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, false, fmt.Errorf("kv: outbox records of %s: %w", s.service, err)
	}
	defer func() { _ = w.Stop() }()
	var out []OutboxRecord
	for {
		select {
		case <-ctx.Done():
			return nil, false, fmt.Errorf("kv: outbox records of %s: %w", s.service, ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, false, fmt.Errorf("kv: outbox records of %s: listing ended early", s.service)
			}
			if e == nil { // every stored record was listed
				return out, false, nil
			}
			if e.Operation() != jetstream.KeyValuePut {
				continue
			}
			if len(out) == limit {
				return out, true, nil
			}
			out = append(out, OutboxRecord{ID: strings.TrimPrefix(e.Key(), OutboxPrefix), Value: e.Value()})
		}
	}
}
