package kv

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// TestApplyAtomic: a batch one of whose writes the server refuses leaves
// none of its writes in the bucket, wherever the refused write is. The
// server, not the Store, refuses it here: the bucket's stream takes
// messages of at most 256 bytes (headers included), which the Store does
// not know.
func TestApplyAtomic(t *testing.T) {
	ns := newJS(t)
	ctx := ctxT(t)
	js := ns.JetStream()
	st := openStore(t, js, "pay", nil)
	if err := st.Put(ctx, "k0", []byte("before")); err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, "KV_"+BucketPrefix+"pay")
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	cfg.MaxMsgSize = 256
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	big := []byte(strings.Repeat("x", 300))
	for _, refused := range []int{0, 1, 2} { // first, middle, the commit
		t.Run(fmt.Sprint("refused=", refused), func(t *testing.T) {
			ops := []Op{{Key: "k0", Value: []byte("after")}, {Key: "k1", Value: []byte("v")}, {Key: "k2", Delete: true}}
			ops[refused] = Op{Key: ops[refused].Key, Value: big}
			if err := st.Apply(ctx, ops); err == nil {
				t.Fatal("Apply of a batch with a refused write succeeded")
			}
			if v, err := st.Get(ctx, "k0"); err != nil || string(v) != "before" {
				t.Errorf("k0 = %q, %v: a write of the refused batch was stored", v, err)
			}
			if v, err := st.Get(ctx, "k1"); !errors.Is(err, ErrNotFound) {
				t.Errorf("k1 = %q, %v: a write of the refused batch was stored", v, err)
			}
		})
	}
	// The same writes, all small, are stored.
	if err := st.Apply(ctx, []Op{{Key: "k0", Value: []byte("after")}, {Key: "k1", Value: []byte("v")}}); err != nil {
		t.Fatal(err)
	}
	if v, err := st.Get(ctx, "k1"); err != nil || string(v) != "v" {
		t.Fatalf("k1 = %q, %v", v, err)
	}
}

// TestApplyBatchLimit: past the Store's limit nothing is sent; past the
// server's (nats-server's default max_batch_size, 1000 messages) the
// server refuses the whole batch.
func TestApplyBatchLimit(t *testing.T) {
	ns := newJS(t)
	ctx := ctxT(t)
	ops := func(n int) []Op {
		o := make([]Op, n)
		for i := range o {
			o[i] = Op{Key: fmt.Sprint("k", i), Value: []byte("v")}
		}
		return o
	}
	st := openStore(t, ns.JetStream(), "svc", nil)
	if err := st.Apply(ctx, ops(DefaultMaxBatch)); err != nil {
		t.Fatalf("Apply of %d writes: %v", DefaultMaxBatch, err)
	}
	if v, err := st.Get(ctx, fmt.Sprint("k", DefaultMaxBatch-1)); err != nil || string(v) != "v" {
		t.Fatalf("last write of a full batch: %q, %v", v, err)
	}
	tooMany := ops(DefaultMaxBatch + 1)
	tooMany[0].Key = "first"
	if err := st.Apply(ctx, tooMany); !errors.Is(err, ErrTooManyWrites) {
		t.Fatalf("Apply of %d writes: %v, want ErrTooManyWrites", DefaultMaxBatch+1, err)
	}
	lax, err := Open(ctx, ns.JetStream(), "svc", Options{MaxBatch: 2 * DefaultMaxBatch})
	if err != nil {
		t.Fatal(err)
	}
	err = lax.Apply(ctx, tooMany)
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("server took a batch of %d writes: %v", DefaultMaxBatch+1, err)
	}
	if _, err := st.Get(ctx, "first"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a write of a batch refused as too large was stored (%v)", err)
	}
	if _, err := Open(ctx, ns.JetStream(), "svc", Options{MaxBatch: -1}); err == nil {
		t.Fatal("a negative MaxBatch was accepted")
	}
}

// TestOpenAllowsAtomic: a bucket made before atomic batches (or by
// something else) gets them turned on when opened, and keeps its data.
func TestOpenAllowsAtomic(t *testing.T) {
	ns := newJS(t)
	ctx := ctxT(t)
	js := ns.JetStream()
	old, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: BucketPrefix + "legacy", History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Put(ctx, "kept", []byte("1")); err != nil {
		t.Fatal(err)
	}
	allowed := func() bool {
		s, err := js.Stream(ctx, "KV_"+BucketPrefix+"legacy")
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().Config.AllowAtomicPublish
	}
	if allowed() {
		t.Fatal("a plain key-value bucket allows atomic batches already: the test proves nothing")
	}
	for range 2 { // opening an up-to-date bucket again keeps it so
		st := openStore(t, js, "legacy", nil)
		if !allowed() {
			t.Fatal("Open did not allow atomic batches")
		}
		if err := st.Apply(ctx, []Op{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("2")}}); err != nil {
			t.Fatal(err)
		}
		if v, err := st.Get(ctx, "kept"); err != nil || string(v) != "1" {
			t.Fatalf("kept = %q, %v", v, err)
		}
	}
}

// TestApplyRevisions: the revisions Apply gives the cache are the ones the
// server stored the writes at.
func TestApplyRevisions(t *testing.T) {
	ctx := ctxT(t)
	c := NewCache(1 << 20)
	st, direct := openCached(t, c)
	if err := direct.Put(ctx, "other", []byte("x")); err != nil { // revisions do not start at 1
		t.Fatal(err)
	}
	for round := range 3 {
		ops := []Op{{Key: "a", Value: []byte("1")}, {Key: "b", Delete: true}, {Key: "a", Value: []byte("2")}, {Key: "c", Value: []byte("3")}}
		if err := st.Apply(ctx, ops); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"a", "b", "c"} {
			var rev uint64
			switch e, err := direct.kv.Get(ctx, escapeKey(k)); {
			case err == nil:
				rev = e.Revision()
			case errors.Is(err, jetstream.ErrKeyDeleted) || errors.Is(err, jetstream.ErrKeyNotFound):
				// Get gives no revision for a deleted key: read its
				// delete marker from the stream.
				s, err := direct.js.Stream(ctx, "KV_"+BucketPrefix+"svc")
				if err != nil {
					t.Fatal(err)
				}
				raw, err := s.GetLastMsgForSubject(ctx, direct.subject+escapeKey(k))
				if err != nil {
					t.Fatal(err)
				}
				rev = raw.Sequence
			default:
				t.Fatal(err)
			}
			c.mu.Lock()
			e, ok := c.lru.Peek(k)
			c.mu.Unlock()
			if !ok || e.rev != rev {
				t.Fatalf("round %d: %s cached at revision %d (%v), stored at %d", round, k, e.rev, ok, rev)
			}
		}
	}
}

// TestApplyEach: ApplyEach stores in order, as Apply does, but one write
// at a time: a refused write leaves those before it stored (what Apply
// never does).
func TestApplyEach(t *testing.T) {
	ns := newJS(t)
	ctx := ctxT(t)
	js := ns.JetStream()
	st := openStore(t, js, "rm", nil)
	if err := st.ApplyEach(ctx, []Op{{Key: "a", Value: []byte("1")}, {Key: "a", Value: []byte("2")}, {Key: "b", Value: []byte("3")}, {Key: "b", Delete: true}}); err != nil {
		t.Fatal(err)
	}
	if v, err := st.Get(ctx, "a"); err != nil || string(v) != "2" {
		t.Fatalf("a = %q, %v", v, err)
	}
	if _, err := st.Get(ctx, "b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("b: %v", err)
	}
	stream, err := js.Stream(ctx, "KV_"+BucketPrefix+"rm")
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	cfg.MaxMsgSize = 256
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := st.ApplyEach(ctx, []Op{{Key: "c", Value: []byte("1")}, {Key: "d", Value: make([]byte, 300)}}); err == nil {
		t.Fatal("ApplyEach with a refused write succeeded")
	}
	if v, err := st.Get(ctx, "c"); err != nil || string(v) != "1" {
		t.Fatalf("c = %q, %v; the write before the refused one is stored", v, err)
	}
}
