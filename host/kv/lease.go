package kv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/host/internal/jsapi"
	"github.com/meshd/meshd/host/internal/jsasync"
)

// A lease is a hold on a name within one service's bucket, taken by one
// holder at a time across every process writing the bucket: what keeps
// two nodes of a mesh from running event handlers of one serial key at
// once (daemon/dispatch). It is one message of the bucket itself, under a
// reserved key (LeasePrefix), written create-if-absent with a per-message
// TTL, so that a holder that dies frees it when the TTL lapses, and
// released by deleting that very message (its revision), so a release
// never frees a lease someone else took since.
//
// Writes made under a lease (ApplyUnder, ApplyEachUnder) are fenced: the
// first carries the condition that the lease's key still holds the
// revision the holder took, which the server checks in the same step as
// it stores the writes (for several writes, in the atomic batch). A holder
// that lost its lease (it paused past the TTL, and another took it) has
// its writes refused, none stored, with an error wrapping ErrLeaseLost.

// LeasePrefix begins the key of every lease in a bucket. The key is
// LeasePrefix, a group, a dot, and the hex SHA-256 of the held name (its
// first 32 digits), never the name's own bytes. A guest cannot read,
// write or list such a key: a guest key is escaped into the NATS key
// alphabet without '.' (see escapeKey), so no guest key's subject is a
// lease's, and Keys leaves leases out.
const LeasePrefix = "_meshd.lease."

// ErrLeaseHeld is wrapped by the error of TakeLease when another holder
// has the lease.
var ErrLeaseHeld = errors.New("kv: lease held by another")

// ErrLeaseLost is wrapped by the error of a write under a lease that is no
// longer the one taken (it lapsed, or another holder took it since), and
// of Lease.Check then: nothing of the write was stored.
var ErrLeaseLost = errors.New("kv: lease lost")

// MinLeaseTTL is the shortest TTL a lease takes: JetStream's least
// per-message TTL.
const MinLeaseTTL = time.Second

// Headers of JetStream's per-message TTL and of the check of the last
// revision of another subject of the stream.
const (
	hdrTTL         = "Nats-TTL"
	hdrExpSubjSeq  = "Nats-Expected-Last-Subject-Sequence"
	hdrExpSubjSubj = "Nats-Expected-Last-Subject-Sequence-Subject"
)

// Lease is a lease taken with TakeLease. Its methods are safe for
// concurrent use, though a lease has one holder.
type Lease struct {
	store   *Store
	key     string // the bucket key, e.g. "_meshd.lease.s.<hash>"
	subject string
	rev     atomic.Uint64 // the revision held; Check moves it forward
	ttl     time.Duration
}

// LeaseKey returns the bucket key of the lease on name in group (a short
// token of [a-z], which keeps leases of different purposes apart).
func LeaseKey(group, name string) string {
	sum := sha256.Sum256([]byte(name))
	return LeasePrefix + group + "." + hex.EncodeToString(sum[:16])
}

// TakeLease takes the lease on name in group for ttl (rounded up to whole
// seconds, at least MinLeaseTTL), if no one holds it. It returns an error
// wrapping ErrLeaseHeld when another holder has it.
//
// A lease's key holds nothing, a lease, or the mark its last holder left
// when releasing it; the take is one write on the condition that the key
// is as this store last saw it (nothing, or the mark of its own last
// release), and, when that fails, one read of the key and a second write
// on the condition of what it read, when that is a release mark.
func (s *Store) TakeLease(ctx context.Context, group, name string, ttl time.Duration) (*Lease, error) {
	if group == "" || strings.Trim(group, "abcdefghijklmnopqrstuvwxyz") != "" {
		return nil, fmt.Errorf("kv: lease group %q: want letters a to z", bound(group))
	}
	ttl = leaseTTL(ttl)
	l := &Lease{store: s, key: LeaseKey(group, name), ttl: ttl}
	l.subject = s.subject + l.key
	expect := s.releasedAt(l.key)
	for try := 0; ; try++ {
		rev, err := l.write(ctx, expect, false)
		if err == nil {
			l.rev.Store(rev)
			return l, nil
		}
		if !wrongLast(err) {
			return nil, fmt.Errorf("kv: take lease %s/%s: %w", s.service, l.key, err)
		}
		if try == 1 { // another took it between the read and the write
			return nil, fmt.Errorf("kv: take lease %s/%s: %w", s.service, l.key, ErrLeaseHeld)
		}
		st, err := s.stream(ctx)
		if err != nil {
			return nil, fmt.Errorf("kv: take lease %s/%s: %w", s.service, l.key, err)
		}
		last, err := st.GetLastMsgForSubject(ctx, l.subject)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			expect = 0
		case err != nil:
			return nil, fmt.Errorf("kv: take lease %s/%s: %w", s.service, l.key, err)
		case last.Header.Get(kvOperation) == "DEL":
			expect = last.Sequence
		default:
			return nil, fmt.Errorf("kv: take lease %s/%s: %w", s.service, l.key, ErrLeaseHeld)
		}
	}
}

// kvOperation is the header of a key-value delete mark.
const kvOperation = "KV-Operation"

// releasedTTL is how long the mark of a release stays in the bucket: one
// is kept per lease key released within it.
const releasedTTL = MinLeaseTTL

// maxReleased bounds the release marks a Store remembers.
const maxReleased = 4096

// write writes the lease's key on the condition that it holds revision
// expect (0: nothing): a lease for its TTL, or with release its release
// mark. It returns the revision written.
func (l *Lease) write(ctx context.Context, expect uint64, release bool) (uint64, error) {
	s := l.store
	m := nats.NewMsg(l.subject)
	ttl := l.ttl
	if release {
		m.Header.Set(kvOperation, "DEL")
		ttl = releasedTTL
	}
	m.Header.Set(hdrTTL, strconv.FormatInt(int64(ttl/time.Second), 10))
	m.Header.Set(hdrExpSubjSeq, strconv.FormatUint(expect, 10))
	w, err := s.health.Begin()
	if err != nil {
		return 0, err
	}
	ack, err := s.js.PublishMsg(ctx, m, jsasync.RetryOpts()...)
	w.End(err)
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// releasedAt returns the revision of the mark this store left at its last
// release of key, 0 when it knows none.
func (s *Store) releasedAt(key string) uint64 {
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	return s.released[key]
}

func (s *Store) setReleased(key string, rev uint64) {
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	if s.released == nil || len(s.released) >= maxReleased {
		s.released = make(map[string]uint64)
	}
	s.released[key] = rev
}

// leaseTTL rounds ttl up to whole seconds, at least MinLeaseTTL.
func leaseTTL(ttl time.Duration) time.Duration {
	ttl = max(ttl, MinLeaseTTL)
	return (ttl + time.Second - 1).Truncate(time.Second)
}

// Key is the lease's key in its bucket.
func (l *Lease) Key() string { return l.key }

// Revision is the revision of the lease's key the holder holds.
func (l *Lease) Revision() uint64 { return l.rev.Load() }

// Check makes sure the lease is still held, and renews it for its TTL:
// it rewrites the lease's key on the condition that it still holds the
// revision taken. For a holder with effects that are not writes to the
// bucket (events) to send only while it holds the lease. It returns an
// error wrapping ErrLeaseLost when the lease is no longer held.
func (l *Lease) Check(ctx context.Context) error {
	rev, err := l.write(ctx, l.rev.Load(), false)
	if err != nil {
		if wrongLast(err) {
			err = ErrLeaseLost
		}
		return fmt.Errorf("kv: check lease %s/%s: %w", l.store.service, l.key, err)
	}
	l.rev.Store(rev)
	return nil
}

// Release gives the lease up: it marks the lease's key released (a
// key-value delete mark with a TTL of its own) on the condition that it
// still holds the revision taken, so a lease another holder took since
// stays theirs. Releasing a lease that lapsed or was taken by another is
// not an error.
func (l *Lease) Release(ctx context.Context) error {
	rev, err := l.write(ctx, l.rev.Load(), true)
	if err != nil {
		if wrongLast(err) {
			return nil
		}
		return fmt.Errorf("kv: release lease %s/%s: %w", l.store.service, l.key, err)
	}
	l.store.setReleased(l.key, rev)
	return nil
}

// stream returns the bucket's stream, looked up once.
func (s *Store) stream(ctx context.Context) (jetstream.Stream, error) {
	if st := s.st.Load(); st != nil {
		return *st, nil
	}
	st, err := jsapi.Stream(ctx, s.js, s.streamName())
	if err != nil {
		return nil, err
	}
	s.st.Store(&st)
	return st, nil
}

// fence sets on m the condition that l is still held.
func (l *Lease) fence(m *nats.Msg) {
	m.Header.Set(hdrExpSubjSeq, strconv.FormatUint(l.rev.Load(), 10))
	m.Header.Set(hdrExpSubjSubj, l.subject)
}

// ApplyUnder makes the writes ops as Apply does, all or none, and only
// while l is held: when l is no longer the lease taken, nothing is stored
// and the error wraps ErrLeaseLost. l must be a lease of this store's
// bucket.
func (s *Store) ApplyUnder(ctx context.Context, l *Lease, ops []Op) error {
	if err := s.checkLease(l); err != nil {
		return err
	}
	return s.leaseErr(l, s.apply(ctx, ops, l))
}

// ApplyEachUnder makes the writes ops as ApplyEach does, but only while l
// is held: the first write is sent on that condition and acknowledged
// before the others are sent, so when l is no longer the lease taken
// nothing is stored and the error wraps ErrLeaseLost. (The others are not
// fenced: one check per write would have the server refuse all but one
// of the writes in flight on one condition.)
func (s *Store) ApplyEachUnder(ctx context.Context, l *Lease, ops []Op) error {
	if err := s.checkLease(l); err != nil {
		return err
	}
	if len(ops) == 0 {
		return nil
	}
	if err := s.leaseErr(l, s.apply(ctx, ops[:1], l)); err != nil {
		return err
	}
	return s.ApplyEach(ctx, ops[1:])
}

func (s *Store) checkLease(l *Lease) error {
	if l == nil || !strings.HasPrefix(l.subject, s.subject+LeasePrefix) {
		return fmt.Errorf("kv: a lease of another bucket than %s's", s.service)
	}
	return nil
}

// leaseErr adds ErrLeaseLost to err when the server refused a write for
// the lease's condition.
func (s *Store) leaseErr(l *Lease, err error) error {
	if err != nil && wrongLast(err) {
		return fmt.Errorf("%w (%s/%s at revision %d): %w", ErrLeaseLost, s.service, l.key, l.rev.Load(), err)
	}
	return err
}

// wrongLast reports whether err is the server's refusal of a write whose
// expected last revision did not hold (10071, or 10164 on a replicated
// stream).
func wrongLast(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// bound cuts s for an error message.
func bound(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
