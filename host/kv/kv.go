// Package kv gives each meshd service its own key-value store: one NATS
// JetStream KV bucket per service ("a database per service").
//
// Isolation is structural: a Store is bound to one bucket when it is opened
// and has no way to name another. Guest keys are arbitrary byte strings; they
// are escaped into the NATS key alphabet (see escapeKey) so any key a guest
// can send is storable, and Keys returns them decoded.
package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/internal/jsasync"
)

// ErrNotFound is returned by Get when the key is absent or was deleted.
var ErrNotFound = errors.New("kv: key not found")

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
}

// Options tune OpenWith.
type Options struct {
	// Cache, when set, serves Gets of keys this process wrote or read
	// before. Only correct when every write to the bucket goes through
	// Stores sharing this Cache (see Cache).
	Cache *Cache
}

// Open creates (or updates) the bucket of service and returns its Store.
// Buckets keep one revision per key (History 1).
func Open(ctx context.Context, js jetstream.JetStream, service string) (*Store, error) {
	return OpenWith(ctx, js, service, Options{})
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, js jetstream.JetStream, service string, opts Options) (*Store, error) {
	if !ValidService(service) {
		return nil, fmt.Errorf("kv: invalid service name %q (want %s)", service, abi.ServiceNamePattern)
	}
	bucket := BucketPrefix + service
	b, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "meshd state of service " + service,
		History:     1,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("kv: open bucket %s: %w", bucket, err)
	}
	return &Store{service: service, kv: b, js: js, subject: "$KV." + bucket + ".", cache: opts.Cache}, nil
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
	return s.write(ctx, Op{Key: key, Value: value})
}

// Delete removes key. Deleting an absent key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return s.write(ctx, Op{Key: key, Delete: true})
}

// write sends one checked op and waits for it to be stored; its revision
// goes to the cache.
func (s *Store) write(ctx context.Context, op Op) error {
	ack, err := s.js.PublishMsg(ctx, s.message(op))
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

// Apply makes the writes ops, in order, as Put and Delete would, but sends
// them all before waiting for the acknowledgements: one round trip to the
// server for the lot instead of one each (a single write is a plain Put or
// Delete). The bucket's stream stores them in the order given, so a later
// write of a key wins. Every key and value is checked before anything is
// sent; an error after that (a write the server refused or did not
// acknowledge in time) can leave some of ops stored and others not, which
// is also what a sequence of Put calls stopped by an error leaves.
func (s *Store) Apply(ctx context.Context, ops []Op) error {
	if len(ops) == 1 {
		op := ops[0]
		if op.Delete {
			return s.Delete(ctx, op.Key)
		}
		return s.Put(ctx, op.Key, op.Value)
	}
	maxPayload := s.js.Conn().MaxPayload()
	msgs := make([]*nats.Msg, len(ops))
	for i, op := range ops {
		if err := checkKey(op.Key); err != nil {
			return err
		}
		if int64(len(op.Value)) > maxPayload {
			return fmt.Errorf("kv: put %s/%q: value of %d bytes exceeds the server's %d: %w",
				s.service, op.Key, len(op.Value), maxPayload, nats.ErrMaxPayload)
		}
		msgs[i] = s.message(op)
	}
	var errs []error
	for i, r := range jsasync.Publish(ctx, s.js, msgs, nil) {
		s.wrote(ops[i], r.Seq, r.Err)
		if r.Err != nil {
			errs = append(errs, s.opErr(ops[i], r.Err))
		}
	}
	return errors.Join(errs...)
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
// err is not nil, unknown (the server may still store it).
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
