// Package kv gives each meshd service its own key-value store: one NATS
// JetStream KV bucket per service ("a database per service").
//
// Isolation is structural: a Store is bound to one bucket when it is opened
// and has no way to name another. Guest keys are arbitrary byte strings; they
// are escaped into the NATS key alphabet (see escapeKey) so any key a guest
// can send is storable, and Keys returns them decoded.
//
// Apply makes an invocation's writes all or none: several writes go as one
// JetStream atomic batch (nats-server 2.12 and later), at most
// DefaultMaxBatch of them. ApplyEach is the cheaper path for writes that
// need no atomicity.
//
// Every write path first asks the store's health (one per NATS connection,
// shared with the event bus): while the store refuses writes (its disk is
// full or failing) a write fails at once with an error wrapping
// ErrWritesRefused, and nothing of it is sent; the store takes writes
// again by itself once space returns.
package kv

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/internal/jsapi"
	"github.com/meshd/meshd/host/internal/jsasync"
	"github.com/meshd/meshd/host/internal/jsreplicas"
	"github.com/meshd/meshd/host/internal/storefail"
)

// ErrNotFound is returned by Get when the key is absent or was deleted.
var ErrNotFound = errors.New("kv: key not found")

// ErrWritesRefused is wrapped by the error of a write refused at once
// because the store refuses writes (its disk is full or failing): nothing
// of the write was sent. It is the same error as the event bus's
// (bus.ErrWritesRefused): one store behind both.
var ErrWritesRefused = storefail.ErrWritesRefused

// MaxKeyLen is the longest key, in bytes before escaping, a Store accepts.
const MaxKeyLen = 1024

// BucketPrefix is prepended to the service name to form its bucket name.
const BucketPrefix = "meshd_svc_"

// ValidService reports whether name is a valid service name for a bucket
// (abi.ValidServiceName).
func ValidService(name string) bool { return abi.ValidServiceName(name) }

// Store is one service's key-value store. It is safe for concurrent use.
type Store struct {
	service string
	kv      jetstream.KeyValue
	js      jetstream.JetStream
	subject string // "$KV.<bucket>.": a key's subject is this plus the escaped key
	cache   *Cache // nil: every Get asks the server
	health  *storefail.Health

	maxBatch int           // writes an Apply may send as one batch
	slots    chan struct{} // batches of the bucket in flight, process-wide

	// leaderReads: the bucket is replicated, and Get reads through its
	// stream's leader (leader.go), with apiPrefix, js's API prefix.
	leaderReads bool
	apiPrefix   string

	st       atomic.Pointer[jetstream.Stream] // the bucket's stream, once looked up (lease.go)
	leaseMu  sync.Mutex
	released map[string]uint64 // lease key → revision of this store's last release mark (lease.go)
}

// Options tune Open; the zero value takes the defaults.
type Options struct {
	// Cache, when set, serves Gets of keys this process wrote or read
	// before. Only correct when every write to the bucket goes through
	// Stores sharing this Cache (see Cache).
	Cache *Cache

	// MaxBatch is the most writes one Apply takes (DefaultMaxBatch when
	// 0): they go to the server as one atomic batch, and the server refuses
	// a batch larger than its own limit (JetStream's max_batch_size).
	MaxBatch int

	// Replicas is how many copies of the bucket JetStream keeps, on as
	// many nodes of a cluster (1 when 0; at most MaxReplicas). A bucket
	// created with fewer is raised to it when opened; one with more is
	// left as it is (another node may have asked for them).
	Replicas int
}

// MaxReplicas is the most replicas JetStream keeps of a bucket.
const MaxReplicas = 5

// DefaultMaxBatch is nats-server's default limit on the messages of one
// atomic batch (2.12 and later; the server option max_batch_size changes
// it), so the most writes one Apply takes by default.
const DefaultMaxBatch = 1000

// MaxBatchesInFlight is how many atomic batches this process has open at
// once on one bucket: nats-server's default limit per stream, past which it
// refuses a batch. Applies past it wait.
const MaxBatchesInFlight = 50

// ErrTooManyWrites is the error of an Apply with more writes than one
// atomic batch may hold.
var ErrTooManyWrites = errors.New("kv: too many writes for one atomic batch")

// BatchHeaderBytes bounds the headers a write carries in an atomic batch
// (batch id, sequence, commit, a delete's operation: 123 bytes at most),
// which count toward the server's payload limit: a value in a batch may
// hold the payload limit less this.
const BatchHeaderBytes = 128

var slotsByBucket sync.Map // bucket name → chan struct{} of MaxBatchesInFlight

func batchSlots(bucket string) chan struct{} {
	c, _ := slotsByBucket.LoadOrStore(bucket, make(chan struct{}, MaxBatchesInFlight))
	return c.(chan struct{})
}

// Open creates (or updates) the bucket of service and returns its Store.
// Buckets keep one revision per key (History 1), take atomic batches
// (their stream's AllowAtomicPublish), which Apply uses, and per-message
// TTLs (AllowMsgTTL), which leases use (TakeLease). Both are turned on in
// an existing bucket; JetStream never turns a TTL setting off again.
func Open(ctx context.Context, js jetstream.JetStream, service string, opts Options) (*Store, error) {
	if !ValidService(service) {
		return nil, fmt.Errorf("kv: invalid service name %q (want %s)", service, abi.ServiceNamePattern)
	}
	if opts.MaxBatch < 0 {
		return nil, fmt.Errorf("kv: MaxBatch %d is negative", opts.MaxBatch)
	}
	if opts.Replicas < 0 || opts.Replicas > MaxReplicas {
		return nil, fmt.Errorf("kv: Replicas %d: want 1 to %d (0 for 1)", opts.Replicas, MaxReplicas)
	}
	bucket := BucketPrefix + service
	b, replicas, err := openBucket(ctx, js, service, bucket, max(opts.Replicas, 1))
	if err != nil {
		return nil, fmt.Errorf("kv: open bucket %s: %w", bucket, err)
	}
	return &Store{service: service, kv: b, js: js, subject: "$KV." + bucket + ".", cache: opts.Cache,
		leaderReads: replicas > 1, apiPrefix: apiPrefix(js.Options()),
		health:   storefail.For(js),
		maxBatch: cmp.Or(opts.MaxBatch, DefaultMaxBatch), slots: batchSlots(bucket)}, nil
}

// openBucket binds the bucket when it is already as wanted; otherwise it
// creates or updates it, then turns on atomic batches, which the key-value
// API has no setting for. A bucket left as it is is never updated, so
// opening a store (at every load of a service) never turns atomic batches
// off under another store of the bucket writing one; one with fewer than
// replicas is raised to them by an update of its stream's replica count
// alone (JetStream adds the copies), and one with more keeps them. It
// returns the bucket and its replica count.
func openBucket(ctx context.Context, js jetstream.JetStream, service, bucket string, replicas int) (jetstream.KeyValue, int, error) {
	name := "KV_" + bucket // the stream behind a bucket
	raise := false         // an existing stream gets more replicas
	if st, err := jsapi.Stream(ctx, js, name); err == nil {
		c := st.CachedInfo().Config
		if c.AllowAtomicPublish && c.MaxMsgsPerSubject == 1 && c.Storage == jetstream.FileStorage {
			if !c.AllowMsgTTL {
				// A bucket of an earlier meshd: turned on alone, not
				// through the key-value API, whose update would ask to
				// turn it off again (which the server refuses) on a
				// stream another node turned it on in meanwhile.
				c.AllowMsgTTL = true
				if _, err := jsapi.UpdateStream(ctx, js, c); err != nil {
					return nil, 0, fmt.Errorf("allowing per-message TTLs: %w", err)
				}
			}
			if c.Replicas < replicas {
				have := c.Replicas
				c.Replicas = replicas
				st, err := jsapi.UpdateStream(ctx, js, c)
				if err != nil {
					return nil, 0, fmt.Errorf("raising its replicas from %d to %d: %w", have, replicas, err)
				}
				if err := jsreplicas.Wait(ctx, st, replicas); err != nil {
					return nil, 0, fmt.Errorf("raising its replicas from %d to %d: %w", have, replicas, err)
				}
			}
			b, err := jsapi.KeyValue(ctx, js, bucket)
			return b, max(c.Replicas, replicas), err
		}
		raise = c.Replicas < replicas
		replicas = max(replicas, c.Replicas)
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, 0, err
	}
	kvc := jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "meshd state of service " + service,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
	b, err := jsapi.CreateOrUpdateKeyValue(ctx, js, kvc)
	if err != nil {
		return nil, 0, err
	}
	st, err := jsapi.Stream(ctx, js, name)
	if err != nil {
		return nil, 0, err
	}
	if c := st.CachedInfo().Config; !c.AllowAtomicPublish || !c.AllowMsgTTL {
		c.AllowAtomicPublish = true
		c.AllowMsgTTL = true
		if _, err := jsapi.UpdateStream(ctx, js, c); err != nil {
			return nil, 0, fmt.Errorf("allowing atomic batches and per-message TTLs: %w", err)
		}
	}
	if raise {
		if err := jsreplicas.Wait(ctx, st, replicas); err != nil {
			return nil, 0, fmt.Errorf("raising its replicas to %d: %w", replicas, err)
		}
	}
	return b, replicas, nil
}

// Service returns the name of the service the Store belongs to.
func (s *Store) Service() string { return s.service }

func checkKey(key string) error {
	if key == "" {
		return errors.New("kv: empty key")
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("kv: key of %d bytes exceeds %d", len(key), MaxKeyLen)
	}
	return nil
}

// Get returns the value of key, or ErrNotFound when it is absent or deleted.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if s.cache != nil {
		if v, deleted, ok := s.cache.get(key); ok {
			if deleted {
				return nil, ErrNotFound
			}
			return bytes.Clone(v), nil // the caller may change it
		}
	}
	if s.leaderReads {
		v, err := s.getLeader(ctx, escapeKey(key))
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("kv: get %s/%q: %w", s.service, key, err)
		}
		return v, err
	}
	e, err := s.kv.Get(ctx, escapeKey(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("kv: get %s/%q: %w", s.service, key, err)
	}
	if s.cache != nil {
		s.cache.fill(key, bytes.Clone(e.Value()), e.Revision())
	}
	return e.Value(), nil
}

// Put sets key to value.
func (s *Store) Put(ctx context.Context, key string, value []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return s.write(ctx, Op{Key: key, Value: value}, nil)
}

// Delete removes key. Deleting an absent key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return s.write(ctx, Op{Key: key, Delete: true}, nil)
}

// write sends one checked op (only while fence is held, when it is not
// nil) and waits for it to be stored; its revision goes to the cache.
func (s *Store) write(ctx context.Context, op Op, fence *Lease) error {
	w, err := s.health.Begin()
	if err != nil {
		return s.opErr(op, err)
	}
	m := s.message(op)
	if fence != nil {
		fence.fence(m)
	}
	ack, err := s.js.PublishMsg(ctx, m, jsasync.RetryOpts()...)
	w.End(err)
	var rev uint64
	if err == nil {
		rev = ack.Sequence
	}
	s.wrote(op, rev, err)
	if err != nil {
		return s.opErr(op, err)
	}
	return nil
}

// Op is one write of Apply: Value stored under Key, or Key deleted.
type Op struct {
	Key    string
	Value  []byte
	Delete bool
}

// Apply makes the writes ops, in order, as Put and Delete would, all or
// none: several writes go to the server as one atomic batch, which it
// stores whole, at consecutive revisions in the order given (so a later
// write of a key wins), or not at all (a single write is a plain Put or
// Delete). Every key and value is checked, and the count against the batch
// limit (Options.MaxBatch), before anything is sent. After an error none of
// ops is stored, except when the commit was sent and its answer was lost
// (ctx ended, the connection broke): then the server may still have stored
// all of them. (A server that fails to write its disk halfway through a
// commit stores the rest when it next starts.)
func (s *Store) Apply(ctx context.Context, ops []Op) error {
	return s.apply(ctx, ops, nil)
}

// apply is Apply, fenced by a lease when fence is not nil: the first
// write carries the lease's condition.
func (s *Store) apply(ctx context.Context, ops []Op, fence *Lease) error {
	switch len(ops) {
	case 0:
		return nil
	case 1:
		if err := checkKey(ops[0].Key); err != nil {
			return err
		}
		return s.write(ctx, ops[0], fence)
	}
	return s.applyWith(ctx, ops, nil, fence)
}

// applyWith stores ops and extra, messages of meshd's own keys
// (outbox.go), after them as one atomic batch, fenced by a lease when
// fence is not nil.
func (s *Store) applyWith(ctx context.Context, ops []Op, extra []*nats.Msg, fence *Lease) error {
	if n := len(ops) + len(extra); n > s.maxBatch {
		return fmt.Errorf("%w: %d writes to %s, at most %d", ErrTooManyWrites, n, s.service, s.maxBatch)
	}
	msgs, err := s.messages(ops, BatchHeaderBytes)
	if err != nil {
		return err
	}
	msgs = append(msgs, extra...)
	if fence != nil {
		fence.fence(msgs[0])
	}
	w, err := s.health.Begin()
	if err != nil {
		return fmt.Errorf("kv: apply %d writes to %s: %w", len(ops), s.service, err)
	}
	var first uint64
	select {
	case s.slots <- struct{}{}:
		first, err = jsasync.PublishAtomic(ctx, s.js, msgs)
		<-s.slots
		w.End(err)
	case <-ctx.Done():
		err = ctx.Err()
		w.End(err)
	}
	for i, op := range ops {
		s.wrote(op, first+uint64(i), err)
	}
	if err != nil {
		return fmt.Errorf("kv: apply %d writes to %s: %w", len(ops), s.service, err)
	}
	return nil
}

// ApplyEach makes the writes ops, in order, as Apply does, but not as one
// batch: it sends them all, then waits for every acknowledgement, so an
// error or a crash can leave some stored and others not. It is for writes
// that need no atomicity and many of which are made (a read model's, which
// its idempotent projections and a replay repair): an atomic batch costs
// the server its staging (on a single-replica file stream, a file written
// before the commit) and the client a round trip per write, which makes an
// Apply of two writes about 2.5 times slower than this (BenchmarkApply:
// 0.25-0.28 ms against 94-109 µs under lazy sync, on a slow day).
func (s *Store) ApplyEach(ctx context.Context, ops []Op) error {
	msgs, err := s.messages(ops, 0)
	if err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	w, err := s.health.Begin()
	if err != nil {
		return fmt.Errorf("kv: apply %d writes to %s: %w", len(ops), s.service, err)
	}
	var errs []error
	var first error // the first the server answered, for the store's health
	opts := slices.Repeat([][]jetstream.PublishOpt{jsasync.RetryOpts()}, len(msgs))
	for i, r := range jsasync.Publish(ctx, s.js, msgs, opts) {
		s.wrote(ops[i], r.Seq, r.Err)
		if r.Err != nil {
			if first == nil {
				first = r.Err
			}
			errs = append(errs, s.opErr(ops[i], r.Err))
		}
	}
	w.End(first)
	return errors.Join(errs...)
}

// messages checks every key and value of ops, values against the server's
// payload limit less headroom (for headers the messages will get), and
// returns the messages that store them.
func (s *Store) messages(ops []Op, headroom int64) ([]*nats.Msg, error) {
	maxPayload := s.js.Conn().MaxPayload() - headroom
	msgs := make([]*nats.Msg, len(ops))
	for i, op := range ops {
		if err := checkKey(op.Key); err != nil {
			return nil, err
		}
		if int64(len(op.Value)) > maxPayload {
			return nil, fmt.Errorf("kv: put %s/%q: value of %d bytes exceeds the %d a write may hold: %w",
				s.service, op.Key, len(op.Value), maxPayload, nats.ErrMaxPayload)
		}
		msgs[i] = s.message(op)
	}
	return msgs, nil
}

// message is the message that stores op in the bucket, as KeyValue.Put and
// KeyValue.Delete (a delete marker) publish it.
func (s *Store) message(op Op) *nats.Msg {
	m := nats.NewMsg(s.subject + escapeKey(op.Key))
	if op.Delete {
		m.Header.Set("KV-Operation", "DEL")
	} else {
		m.Data = op.Value
	}
	return m
}

// wrote tells the cache what became of a write: stored at rev, or, when
// err is not nil, unknown (the server may still store it). A batch that
// failed makes all its keys unknown, even where the error says none was
// stored: errors are rare, and the cache stays on the safe side.
func (s *Store) wrote(op Op, rev uint64, err error) {
	switch {
	case s.cache == nil:
	case err != nil && !errors.Is(err, jsasync.ErrNotSent):
		s.cache.forget(op.Key)
	case err == nil:
		var v []byte
		if !op.Delete {
			v = bytes.Clone(op.Value) // the caller may reuse it
		}
		s.cache.wrote(op.Key, v, op.Delete, rev)
	}
}

func (s *Store) opErr(op Op, err error) error {
	if op.Delete {
		return fmt.Errorf("kv: delete %s/%q: %w", s.service, op.Key, err)
	}
	return fmt.Errorf("kv: put %s/%q: %w", s.service, op.Key, err)
}

// Keys returns every live key, decoded and sorted. An empty store returns
// nil and no error.
func (s *Store) Keys(ctx context.Context) ([]string, error) {
	raw, err := s.kv.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err == nil {
		// The watcher behind Keys ends early, without an error, when ctx
		// ends; never return a partial listing as if it were complete.
		err = ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("kv: keys %s: %w", s.service, err)
	}
	keys := make([]string, 0, len(raw))
	for _, k := range raw {
		if strings.HasPrefix(k, metaPrefix) {
			continue // meshd's own (lease.go, outbox.go), not the service's
		}
		d, err := unescapeKey(k)
		if err != nil {
			// Written by something other than meshd: report, don't hide.
			return nil, fmt.Errorf("kv: keys %s: %w", s.service, err)
		}
		keys = append(keys, d)
	}
	slices.Sort(keys)
	return keys, nil
}
