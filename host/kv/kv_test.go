package kv

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/host/natsd"
	"github.com/meshd/meshd/host/natsd/natsdtest"
	"github.com/nats-io/nats.go/jetstream"
)

func newJS(t *testing.T) *natsd.Server { return natsdtest.Server(t) }

// openStore opens service's store on js, with cache c (nil: none).
func openStore(t *testing.T, js jetstream.JetStream, service string, c *Cache) *Store {
	t.Helper()
	st, err := Open(ctxT(t), js, service, Options{Cache: c})
	if err != nil {
		t.Fatalf("Open %s: %v", service, err)
	}
	return st
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestStore(t *testing.T) {
	ns := newJS(t)
	ctx := ctxT(t)
	st := openStore(t, ns.JetStream(), "orders", nil)
	if st.Service() != "orders" {
		t.Fatalf("Service = %q", st.Service())
	}
	keys, err := st.Keys(ctx)
	if err != nil || keys != nil {
		t.Fatalf("Keys on empty = %v, %v; want nil, nil", keys, err)
	}
	if _, err := st.Get(ctx, "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get missing: %v, want ErrNotFound", err)
	}
	if err := st.Delete(ctx, "missing"); err != nil {
		t.Fatalf("Delete missing: %v", err)
	}

	long := strings.Repeat("\xff", MaxKeyLen)
	entries := map[string]string{
		"order/1":    "a",
		"a.b":        "dots",
		"weird key=": "w",
		"":           "",
		long:         "long",
	}
	delete(entries, "")
	for k, v := range entries {
		if err := st.Put(ctx, k, []byte(v)); err != nil {
			t.Fatalf("Put %q: %v", k, err)
		}
	}
	for k, v := range entries {
		got, err := st.Get(ctx, k)
		if err != nil || string(got) != v {
			t.Fatalf("Get %q = %q, %v; want %q", k, got, err, v)
		}
	}
	// Overwrite.
	if err := st.Put(ctx, "order/1", []byte("b")); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Get(ctx, "order/1"); string(got) != "b" {
		t.Fatalf("after overwrite Get = %q", got)
	}
	want := []string{"a.b", "order/1", "weird key=", long}
	slices.Sort(want)
	keys, err = st.Keys(ctx)
	if err != nil || !slices.Equal(keys, want) {
		t.Fatalf("Keys = %q, %v; want %q", keys, err, want)
	}
	if err := st.Delete(ctx, "a.b"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "a.b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get deleted: %v, want ErrNotFound", err)
	}
	keys, err = st.Keys(ctx)
	if err != nil || slices.Contains(keys, "a.b") || len(keys) != 3 {
		t.Fatalf("Keys after delete = %q, %v", keys, err)
	}
	for _, k := range keys {
		_ = st.Delete(ctx, k)
	}
	if keys, err := st.Keys(ctx); err != nil || keys != nil {
		t.Fatalf("Keys after deleting all = %q, %v; want nil, nil", keys, err)
	}
}

func TestBadKeys(t *testing.T) {
	ns := newJS(t)
	ctx := ctxT(t)
	st := openStore(t, ns.JetStream(), "svc", nil)
	for _, k := range []string{"", strings.Repeat("a", MaxKeyLen+1)} {
		if err := st.Put(ctx, k, nil); err == nil {
			t.Errorf("Put %d-byte key succeeded", len(k))
		}
		if _, err := st.Get(ctx, k); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Get %d-byte key: %v", len(k), err)
		}
	}
}

func TestIsolation(t *testing.T) {
	ns := newJS(t)
	ctx := ctxT(t)
	a := openStore(t, ns.JetStream(), "alpha", nil)
	b := openStore(t, ns.JetStream(), "beta", nil)
	if err := a.Put(ctx, "k", []byte("from-a")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("beta sees alpha's key: %v", err)
	}
	if err := b.Put(ctx, "k", []byte("from-b")); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Get(ctx, "k"); string(got) != "from-a" {
		t.Fatalf("alpha k = %q", got)
	}
	if got, _ := b.Get(ctx, "k"); string(got) != "from-b" {
		t.Fatalf("beta k = %q", got)
	}
	if err := b.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Get(ctx, "k"); err != nil || string(got) != "from-a" {
		t.Fatalf("alpha k after beta delete = %q, %v", got, err)
	}
	// Reopening reaches the same data.
	a2 := openStore(t, ns.JetStream(), "alpha", nil)
	if got, _ := a2.Get(ctx, "k"); string(got) != "from-a" {
		t.Fatalf("reopened alpha k = %q", got)
	}
}

func TestOpenValidatesService(t *testing.T) {
	ns := newJS(t)
	ctx := ctxT(t)
	for _, name := range []string{"", "Orders", "-x", "a.b", "a b", "a*", strings.Repeat("a", 64)} {
		if _, err := Open(ctx, ns.JetStream(), name, Options{}); err == nil {
			t.Errorf("Open(%q) succeeded", name)
		}
	}
	for _, name := range []string{"a", "order-svc", "x_1", strings.Repeat("a", 63)} {
		if _, err := Open(ctx, ns.JetStream(), name, Options{}); err != nil {
			t.Errorf("Open(%q): %v", name, err)
		}
	}
}

func TestApply(t *testing.T) {
	ns := newJS(t)
	ctx := ctxT(t)
	st := openStore(t, ns.JetStream(), "orders", nil)
	if err := st.Put(ctx, "gone", []byte("x")); err != nil {
		t.Fatal(err)
	}
	// In order: the later write of a key wins, a delete removes, a delete
	// of an absent key is fine, and keys are escaped as Put escapes them.
	err := st.Apply(ctx, []Op{
		{Key: "a.b", Value: []byte("1")},
		{Key: "gone", Delete: true},
		{Key: "a.b", Value: []byte("2")},
		{Key: "never", Delete: true},
		{Key: "order/1", Value: []byte("o")},
		{Key: "empty", Value: nil},
	})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	want := map[string]string{"a.b": "2", "order/1": "o", "empty": ""}
	for k, v := range want {
		got, err := st.Get(ctx, k)
		if err != nil || string(got) != v {
			t.Errorf("Get(%q) = %q, %v; want %q", k, got, err, v)
		}
	}
	for _, k := range []string{"gone", "never"} {
		if _, err := st.Get(ctx, k); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q): %v, want ErrNotFound", k, err)
		}
	}
	if keys, err := st.Keys(ctx); err != nil || !slices.Equal(keys, []string{"a.b", "empty", "order/1"}) {
		t.Fatalf("Keys = %v, %v", keys, err)
	}

	// A bad key or an oversized value anywhere: nothing is sent.
	max := ns.JetStream().Conn().MaxPayload()
	for name, ops := range map[string][]Op{
		"empty key": {{Key: "x", Value: []byte("new")}, {Key: "", Value: []byte("v")}},
		"long key":  {{Key: "x", Value: []byte("new")}, {Key: strings.Repeat("k", MaxKeyLen+1), Value: []byte("v")}},
		"too large": {{Key: "x", Value: []byte("new")}, {Key: "big", Value: make([]byte, max+1)}},
	} {
		if err := st.Apply(ctx, ops); err == nil {
			t.Errorf("%s: Apply succeeded", name)
		}
		if _, err := st.Get(ctx, "x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: the write before the bad one was stored (%v)", name, err)
		}
	}

	// An ended context is an error, and nothing is sent.
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := st.Apply(done, []Op{{Key: "late", Value: []byte("v")}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply with a cancelled context: %v", err)
	}
	if _, err := st.Get(ctx, "late"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("write sent with an ended context (%v)", err)
	}

	// A write the server does not store (the bucket's stream is gone) is an
	// error, not a silent success.
	if err := ns.JetStream().DeleteStream(ctx, "KV_"+BucketPrefix+"orders"); err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	if err := st.Apply(short, []Op{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("2")}}); err == nil {
		t.Fatal("Apply to a deleted bucket succeeded")
	}
}
