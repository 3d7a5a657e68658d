package kv

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/host/internal/storefail"
)

// failingJS is a JetStream whose single publishes fail with an injected
// error while one is set; it counts the publishes that reach it.
type failingJS struct {
	jetstream.JetStream
	fail  atomic.Pointer[error]
	sends atomic.Int64
}

func (f *failingJS) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	f.sends.Add(1)
	if err := f.fail.Load(); err != nil {
		return nil, *err
	}
	return f.JetStream.PublishMsg(ctx, m, opts...)
}

func (f *failingJS) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	f.sends.Add(1)
	return f.JetStream.PublishMsgAsync(m, opts...)
}

// errStorage is what nats-server answers a write past its storage limits.
var errStorage error = &jetstream.APIError{Code: 500, ErrorCode: 10047, Description: "insufficient storage resources available"}

// TestWriteErrorRefusesFastThenRecovers: a write the server refuses for
// want of space makes every write path fail at once (nothing sent) with
// ErrWritesRefused, and writes come back by themselves once the server
// takes them again.
func TestWriteErrorRefusesFastThenRecovers(t *testing.T) {
	ns := newJS(t)
	ctx := ctxT(t)
	js := &failingJS{JetStream: ns.JetStream()}
	st := openStore(t, js, "orders", NewCache(1<<20))
	if err := st.Put(ctx, "a", []byte("1")); err != nil {
		t.Fatal(err)
	}

	js.fail.Store(&errStorage)
	if err := st.Put(ctx, "a", []byte("2")); !errors.Is(err, errStorage) {
		t.Fatalf("Put refused by the server: %v", err)
	}
	sent := js.sends.Load()
	start := time.Now()
	for name, write := range map[string]func() error{
		"Put":    func() error { return st.Put(ctx, "a", []byte("3")) },
		"Delete": func() error { return st.Delete(ctx, "a") },
		"Apply": func() error {
			return st.Apply(ctx, []Op{{Key: "a", Value: []byte("4")}, {Key: "b", Value: []byte("4")}})
		},
		"ApplyEach": func() error {
			return st.ApplyEach(ctx, []Op{{Key: "a", Value: []byte("5")}, {Key: "b", Value: []byte("5")}})
		},
	} {
		if err := write(); !errors.Is(err, ErrWritesRefused) {
			t.Errorf("%s while the store refuses writes: %v, want ErrWritesRefused", name, err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("four refused writes took %s", d) // a liveness bound: each is a check, not a round trip
	}
	if n := js.sends.Load() - sent; n != 0 {
		t.Errorf("%d publishes sent while the store refuses writes", n)
	}
	// The Apply that was refused is not in the store, nor in the cache.
	if v, err := st.Get(ctx, "a"); err != nil || string(v) != "1" {
		t.Fatalf("Get a = %q, %v; want the value stored before, 1", v, err)
	}
	if _, err := st.Get(ctx, "b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get b: %v, want ErrNotFound", err)
	}

	// The server takes writes again: within a probe or two, so does the store.
	js.fail.Store(nil)
	var err error
	for deadline := time.Now().Add(10 * storefail.ProbeInterval); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err = st.Apply(ctx, []Op{{Key: "a", Value: []byte("6")}, {Key: "b", Value: []byte("6")}}); err == nil {
			break
		}
		if !errors.Is(err, ErrWritesRefused) {
			t.Fatalf("Apply while recovering: %v", err)
		}
	}
	if err != nil {
		t.Fatalf("writes did not come back: %v", err)
	}
	if v, err := st.Get(ctx, "b"); err != nil || string(v) != "6" {
		t.Fatalf("Get b = %q, %v after recovery", v, err)
	}
}

// TestLowFreeSpaceRefusesBeforeWriting: free space under the reserve
// refuses writes before any is sent (the server never meets a full disk),
// and space back ends the refusal.
func TestLowFreeSpaceRefusesBeforeWriting(t *testing.T) {
	ns := newJS(t)
	ctx := ctxT(t)
	js := &failingJS{JetStream: ns.JetStream()}
	st := openStore(t, js, "orders", nil)
	var free atomic.Uint64
	free.Store(0)
	st.health.SetFreeSpace(func() (uint64, uint64, error) { return free.Load(), 1 << 30, nil })

	sent := js.sends.Load()
	if err := st.Put(ctx, "a", []byte("1")); !errors.Is(err, ErrWritesRefused) {
		t.Fatalf("Put with no free space: %v, want ErrWritesRefused", err)
	}
	if n := js.sends.Load() - sent; n != 0 {
		t.Fatalf("%d publishes sent with no free space", n)
	}
	free.Store(1 << 29)
	var err error
	for deadline := time.Now().Add(10 * storefail.ProbeInterval); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err = st.Put(ctx, "a", []byte("1")); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("writes did not come back with space: %v", err)
	}
}
