package kv

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/host/natsd/natsdtest"
)

// leaseBackends are the servers the lease tests run on: one server, and a
// three-node cluster (a replicated bucket answers a wrong revision with
// another error code).
func leaseBackends(t *testing.T) map[string][2]jetstream.JetStream {
	t.Helper()
	one := newJS(t).JetStream()
	out := map[string][2]jetstream.JetStream{"single": {one, one}}
	if !testing.Short() {
		nodes := natsdtest.Cluster(t, 3)
		out["cluster"] = [2]jetstream.JetStream{nodes[0].JetStream(), nodes[1].JetStream()}
	}
	return out
}

// TestLease: one holder at a time; a release frees the lease for the
// next; a lease's key is neither listed by Keys nor reachable by a guest
// key that spells it.
func TestLease(t *testing.T) {
	for name, js := range leaseBackends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := ctxT(t)
			a, err := Open(ctx, js[0], "orders", Options{Replicas: 1})
			if err != nil {
				t.Fatal(err)
			}
			b, err := Open(ctx, js[1], "orders", Options{Replicas: 1})
			if err != nil {
				t.Fatal(err)
			}
			la, err := a.TakeLease(ctx, "s", "o-1", 30*time.Second)
			if err != nil {
				t.Fatalf("TakeLease: %v", err)
			}
			if _, err := b.TakeLease(ctx, "s", "o-1", 30*time.Second); !errors.Is(err, ErrLeaseHeld) {
				t.Fatalf("second TakeLease = %v, want ErrLeaseHeld", err)
			}
			lo, err := b.TakeLease(ctx, "s", "o-2", 30*time.Second)
			if err != nil {
				t.Fatalf("TakeLease of another name: %v", err)
			}
			lr, err := b.TakeLease(ctx, "r", "o-1", 30*time.Second)
			if err != nil {
				t.Fatalf("TakeLease of the name in another group: %v", err)
			}
			if strings.Contains(la.Key(), "o-1") || !strings.HasPrefix(la.Key(), LeasePrefix) {
				t.Fatalf("lease key %q carries the name, or lacks %q", la.Key(), LeasePrefix)
			}
			// A guest key spelling the lease's key is another key.
			if err := a.Put(ctx, la.Key(), []byte("guest")); err != nil {
				t.Fatalf("Put of a key spelling a lease's: %v", err)
			}
			if err := a.Delete(ctx, la.Key()); err != nil {
				t.Fatal(err)
			}
			if _, err := b.TakeLease(ctx, "s", "o-1", 30*time.Second); !errors.Is(err, ErrLeaseHeld) {
				t.Fatalf("TakeLease after a guest wrote and deleted a key spelling it = %v, want ErrLeaseHeld", err)
			}
			if err := a.Put(ctx, "k", []byte("v")); err != nil {
				t.Fatal(err)
			}
			keys, err := a.Keys(ctx)
			if err != nil || !slices.Equal(keys, []string{"k"}) {
				t.Fatalf("Keys = %q, %v; want [k] (leases hidden)", keys, err)
			}
			if err := la.Release(ctx); err != nil {
				t.Fatalf("Release: %v", err)
			}
			lb, err := b.TakeLease(ctx, "s", "o-1", 30*time.Second)
			if err != nil {
				t.Fatalf("TakeLease after Release: %v", err)
			}
			// A second release of a's lease does not free b's.
			if err := la.Release(ctx); err != nil {
				t.Fatalf("Release again: %v", err)
			}
			if _, err := a.TakeLease(ctx, "s", "o-1", 30*time.Second); !errors.Is(err, ErrLeaseHeld) {
				t.Fatalf("TakeLease after a stale release = %v, want ErrLeaseHeld", err)
			}
			for _, l := range []*Lease{lb, lo, lr} {
				if err := l.Release(ctx); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestLeaseFencing: writes under a lease that lapsed, or that another
// holder took since, are refused with ErrLeaseLost and none is stored,
// one write or an atomic batch; the new holder's writes are stored.
func TestLeaseFencing(t *testing.T) {
	for name, js := range leaseBackends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := ctxT(t)
			a, err := Open(ctx, js[0], "orders", Options{Replicas: 1})
			if err != nil {
				t.Fatal(err)
			}
			b, err := Open(ctx, js[1], "orders", Options{Replicas: 1})
			if err != nil {
				t.Fatal(err)
			}
			put := func(k, v string) Op { return Op{Key: k, Value: []byte(v)} }
			want := func(k, v string) {
				t.Helper()
				got, err := b.Get(ctx, k)
				if string(got) != v || (v != "" && err != nil) {
					t.Fatalf("%s = %q, %v; want %q", k, got, err, v)
				}
			}
			la, err := a.TakeLease(ctx, "s", "o-1", time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.ApplyUnder(ctx, la, []Op{put("n", "1"), put("m", "1")}); err != nil {
				t.Fatalf("ApplyUnder a held lease: %v", err)
			}
			if err := a.ApplyUnder(ctx, la, []Op{put("n", "2")}); err != nil {
				t.Fatalf("ApplyUnder a held lease, one write: %v", err)
			}
			if err := la.Check(ctx); err != nil {
				t.Fatalf("Check of a held lease: %v", err)
			}
			if err := a.ApplyEachUnder(ctx, la, []Op{put("n", "3"), put("m", "3")}); err != nil {
				t.Fatalf("ApplyEachUnder a held lease (after Check moved it): %v", err)
			}
			// a pauses: its lease lapses and b takes it.
			var lb *Lease
			deadline := time.Now().Add(20 * time.Second)
			for lb == nil {
				if time.Now().After(deadline) {
					t.Fatal("the lease of 1 s did not lapse within 20 s")
				}
				if lb, err = b.TakeLease(ctx, "s", "o-1", 30*time.Second); err != nil && !errors.Is(err, ErrLeaseHeld) {
					t.Fatal(err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			refused := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, ErrLeaseLost) {
					t.Fatalf("%s under a lost lease = %v, want ErrLeaseLost", what, err)
				}
			}
			refused("ApplyUnder, a batch", a.ApplyUnder(ctx, la, []Op{put("n", "x"), put("m", "x")}))
			refused("ApplyUnder, one write", a.ApplyUnder(ctx, la, []Op{put("n", "x")}))
			refused("ApplyUnder, a delete", a.ApplyUnder(ctx, la, []Op{{Key: "n", Delete: true}}))
			refused("ApplyEachUnder", a.ApplyEachUnder(ctx, la, []Op{put("n", "x"), put("m", "x")}))
			refused("Check", la.Check(ctx))
			want("n", "3")
			want("m", "3")
			if err := la.Release(ctx); err != nil {
				t.Fatalf("Release of a lost lease: %v", err)
			}
			if err := b.ApplyUnder(ctx, lb, []Op{put("n", "4"), put("m", "4")}); err != nil {
				t.Fatalf("ApplyUnder by the new holder: %v", err)
			}
			want("n", "4")
			// b releases; a takes it again: b's writes are refused now.
			if err := lb.Release(ctx); err != nil {
				t.Fatal(err)
			}
			la2, err := a.TakeLease(ctx, "s", "o-1", 30*time.Second)
			if err != nil {
				t.Fatalf("TakeLease after release: %v", err)
			}
			refused("ApplyUnder after a release and another's take", b.ApplyUnder(ctx, lb, []Op{put("n", "y"), put("m", "y")}))
			want("n", "4")
			want("m", "4")
			other, err := Open(ctx, js[0], "payments", Options{Replicas: 1})
			if err != nil {
				t.Fatal(err)
			}
			if err := other.ApplyUnder(ctx, la2, []Op{put("n", "z")}); err == nil {
				t.Fatal("ApplyUnder took a lease of another bucket")
			}
			_ = la2.Release(ctx)
		})
	}
}
