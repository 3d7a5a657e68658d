package kv

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// openCached opens service's store with cache c, and a second store of the
// same bucket without one (to read what the server holds).
func openCached(t *testing.T, c *Cache) (cached, direct *Store) {
	t.Helper()
	ns := newJS(t)
	return openStore(t, ns.JetStream(), "svc", c), openStore(t, ns.JetStream(), "svc", nil)
}

// TestCacheServesWhatItWrote: after a write (Put, Delete, Apply) a Get is
// answered from memory — shown by a change made behind the cache's back,
// which it does not see — and a value handed out is the caller's own.
func TestCacheServesWhatItWrote(t *testing.T) {
	ctx := ctxT(t)
	c := NewCache(1 << 20)
	st, direct := openCached(t, c)
	if err := st.Put(ctx, "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(ctx, []Op{{Key: "b", Value: []byte("2")}, {Key: "c", Value: []byte("3")}, {Key: "a", Delete: true}}); err != nil {
		t.Fatal(err)
	}
	// Another writer: what the cache exists to rule out in meshd.
	for _, k := range []string{"a", "b", "c"} {
		if err := direct.Put(ctx, k, []byte("behind")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Get(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get a = %v; want the cached delete", err)
	}
	for k, want := range map[string]string{"b": "2", "c": "3"} {
		v, err := st.Get(ctx, k)
		if err != nil || string(v) != want {
			t.Fatalf("Get %s = %q, %v; want the cached %q", k, v, err, want)
		}
		v[0] = 'x' // the caller's copy
		if v, _ := st.Get(ctx, k); string(v) != want {
			t.Fatalf("Get %s after changing the returned slice = %q", k, v)
		}
	}
	if s := c.Stats(); s.Hits != 5 || s.Lookups != 5 || s.Keys != 3 {
		t.Fatalf("stats %+v; want 5 hits of 5 lookups, 3 keys", s)
	}
	// A key read from the server is cached from then on.
	if err := direct.Put(ctx, "d", []byte("4")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if v, err := st.Get(ctx, "d"); err != nil || string(v) != "4" {
			t.Fatalf("Get d = %q, %v", v, err)
		}
	}
	if s := c.Stats(); s.Hits != 6 || s.Lookups != 7 {
		t.Fatalf("stats %+v; want 6 hits of 7 lookups", s)
	}
}

// TestCacheRevisions: an entry is replaced only by a newer revision, an
// evicted key comes back only at or above the highest revision evicted,
// and a key whose write failed is not cached again.
func TestCacheRevisions(t *testing.T) {
	c := NewCache(1 << 20)
	c.wrote("k", []byte("new"), false, 5)
	c.fill("k", []byte("old"), 3) // a read that started before the write
	if v, _, _ := c.get("k"); string(v) != "new" {
		t.Fatalf("k = %q; an older revision replaced a newer", v)
	}
	c.wrote("k", nil, true, 6)
	if _, deleted, ok := c.get("k"); !ok || !deleted {
		t.Fatal("the delete at revision 6 is not cached")
	}

	small := NewCache(2 * (entryOverhead + 2))
	small.wrote("a", []byte("1"), false, 10)
	small.wrote("b", []byte("2"), false, 11)
	small.wrote("c", []byte("3"), false, 12) // evicts a (revision 10)
	if _, _, ok := small.get("a"); ok {
		t.Fatal("a not evicted")
	}
	small.fill("a", []byte("0"), 9) // read before the write at 10: stale
	if _, _, ok := small.get("a"); ok {
		t.Fatal("a stale read was cached after its key's newer write was evicted")
	}
	small.fill("a", []byte("1"), 10)
	if v, _, ok := small.get("a"); !ok || string(v) != "1" {
		t.Fatalf("a = %q, %v; a read at the floor is current", v, ok)
	}
	big := NewCache(10)
	big.wrote("x", make([]byte, 100), false, 1)
	if big.Stats().Keys != 0 {
		t.Fatal("an entry larger than the whole cache was kept")
	}

	c.forget("k")
	c.wrote("k", []byte("later"), false, 7)
	c.fill("k", []byte("later"), 7)
	if _, _, ok := c.get("k"); ok {
		t.Fatal("a key whose write failed was cached again")
	}
}

// TestCacheFailedWrite: writes the server may or may not have stored are
// never answered from the cache.
func TestCacheFailedWrite(t *testing.T) {
	ctx := ctxT(t)
	c := NewCache(1 << 20)
	st, direct := openCached(t, c)
	if err := st.Put(ctx, "k", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if err := st.Apply(ended, []Op{{Key: "k", Value: []byte("v2")}, {Key: "j", Value: []byte("x")}}); err == nil {
		t.Fatal("Apply on an ended context succeeded")
	}
	if err := direct.Put(ctx, "k", []byte("v3")); err != nil {
		t.Fatal(err)
	}
	if v, err := st.Get(ctx, "k"); err != nil || string(v) != "v3" {
		t.Fatalf("Get k = %q, %v; want the server's v3", v, err)
	}
}

// TestCacheConcurrent runs writers and readers of a few keys through two
// stores sharing a cache small enough to evict all the time, then checks
// that every key the cache answers for holds what the server holds.
func TestCacheConcurrent(t *testing.T) {
	ctx := ctxT(t)
	c := NewCache(4 * (entryOverhead + 8))
	st1, direct := openCached(t, c)
	st2 := openStore(t, direct.js, "svc", c)
	const keys, workers, ops = 8, 6, 300
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		st := []*Store{st1, st2}[w%2]
		wg.Go(func() {
			for i := range ops {
				k := fmt.Sprintf("k%d", rand.IntN(keys))
				var err error
				switch rand.IntN(5) {
				case 0:
					err = st.Put(ctx, k, fmt.Appendf(nil, "%d-%d", w, i))
				case 1:
					err = st.Delete(ctx, k)
				case 2:
					err = st.Apply(ctx, []Op{{Key: k, Value: fmt.Appendf(nil, "%d-%d", w, i)}, {Key: fmt.Sprintf("k%d", rand.IntN(keys)), Delete: true}})
				default:
					if _, err = st.Get(ctx, k); errors.Is(err, ErrNotFound) {
						err = nil
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if s := c.Stats(); s.Hits == 0 {
		t.Fatalf("stats %+v: the cache never answered", s)
	}
	for i := range keys {
		k := fmt.Sprintf("k%d", i)
		want, werr := direct.Get(ctx, k)
		v, deleted, ok := c.get(k)
		switch {
		case !ok:
		case deleted != errors.Is(werr, ErrNotFound) || !deleted && string(v) != string(want):
			t.Errorf("%s: cache %q (deleted %v), server %q (%v)", k, v, deleted, want, werr)
		}
	}
}
