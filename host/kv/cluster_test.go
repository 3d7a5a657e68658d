package kv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/host/natsd/natsdtest"
	"github.com/meshd/meshd/internal/testkit"
)

func streamOf(t *testing.T, js jetstream.JetStream, service string) jetstream.StreamConfig {
	t.Helper()
	st, err := js.Stream(ctxT(t), "KV_"+BucketPrefix+service)
	if err != nil {
		t.Fatalf("bucket stream of %s: %v", service, err)
	}
	return st.CachedInfo().Config
}

// replicasOf returns the replica count of service's bucket as js sees it.
func replicasOf(t *testing.T, js jetstream.JetStream, service string) int {
	t.Helper()
	st, err := js.Stream(ctxT(t), "KV_"+BucketPrefix+service)
	if err != nil {
		t.Fatalf("bucket stream of %s: %v", service, err)
	}
	return st.CachedInfo().Config.Replicas
}

// TestClusterReplicatedBucket: a bucket of three replicas opened through
// node 1 of a three-node cluster is read through node 3; with node 1
// closed, writes through node 2 (a Put, an atomic Apply) still succeed and
// node 3 reads them.
func TestClusterReplicatedBucket(t *testing.T) {
	nodes := natsdtest.Cluster(t, 3)
	ctx := ctxT(t)
	open := func(i int) *Store {
		t.Helper()
		st, err := Open(ctx, nodes[i].JetStream(), "orders", Options{Replicas: nodes[i].Replicas(0)})
		if err != nil {
			t.Fatalf("Open through node %d: %v", i+1, err)
		}
		return st
	}
	st1 := open(0)
	if got := replicasOf(t, nodes[0].JetStream(), "orders"); got != 3 {
		t.Fatalf("bucket replicas = %d, want 3", got)
	}
	if err := st1.Put(ctx, "o-1", []byte("CREATED")); err != nil {
		t.Fatalf("Put through node 1: %v", err)
	}
	st2, st3 := open(1), open(2)
	if v, err := st3.Get(ctx, "o-1"); err != nil || string(v) != "CREATED" {
		t.Fatalf("Get through node 3 = %q, %v; want CREATED", v, err)
	}

	if err := nodes[0].Close(); err != nil {
		t.Fatalf("close node 1: %v", err)
	}
	// Node 1 may have led the bucket: writes may fail until the other two
	// elect a new leader.
	testkit.Eventually(t, 30*time.Second, func() string {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := st2.Put(wctx, "o-1", []byte("PAID")); err != nil {
			return fmt.Sprintf("Put through node 2 with node 1 down: %v", err)
		}
		return ""
	})
	testkit.Eventually(t, 30*time.Second, func() string {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := st2.Apply(wctx, []Op{{Key: "o-2", Value: []byte("CREATED")}, {Key: "o-3", Value: []byte("CREATED")}}); err != nil {
			return fmt.Sprintf("Apply through node 2 with node 1 down: %v", err)
		}
		return ""
	})
	testkit.Eventually(t, 30*time.Second, func() string {
		for key, want := range map[string]string{"o-1": "PAID", "o-2": "CREATED", "o-3": "CREATED"} {
			v, err := st3.Get(ctx, key)
			if err != nil || string(v) != want {
				return fmt.Sprintf("Get %s through node 3 = %q, %v; want %s", key, v, err, want)
			}
		}
		return ""
	})
}

// TestClusterReplicasRaised: a bucket made with one replica gets three
// when opened asking for three (its keys kept, atomic batches still on),
// and keeps three when opened asking for one.
func TestClusterReplicasRaised(t *testing.T) {
	nodes := natsdtest.Cluster(t, 3)
	ctx := ctxT(t)
	js := nodes[0].JetStream()
	st, err := Open(ctx, js, "payments", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := replicasOf(t, js, "payments"); got != 1 {
		t.Fatalf("replicas = %d, want 1 by default", got)
	}
	if err := st.Put(ctx, "p-1", []byte("v")); err != nil {
		t.Fatal(err)
	}
	st, err = Open(ctx, nodes[1].JetStream(), "payments", Options{Replicas: 3})
	if err != nil {
		t.Fatalf("Open asking for 3: %v", err)
	}
	if got := replicasOf(t, js, "payments"); got != 3 {
		t.Fatalf("replicas = %d after asking for 3", got)
	}
	if v, err := st.Get(ctx, "p-1"); err != nil || string(v) != "v" {
		t.Fatalf("Get p-1 = %q, %v after raising", v, err)
	}
	if c := streamOf(t, js, "payments"); !c.AllowAtomicPublish {
		t.Fatal("atomic batches off after raising")
	}
	if err := st.Put(ctx, "p-0", []byte("x")); err != nil {
		t.Fatalf("Put after raising: %v", err)
	}
	testkit.Eventually(t, 30*time.Second, func() string {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if err := st.Apply(actx, []Op{{Key: "p-2", Value: []byte("a")}, {Key: "p-3", Value: []byte("b")}}); err != nil {
			return fmt.Sprintf("Apply after raising: %v", err)
		}
		return ""
	})
	if _, err := Open(ctx, js, "payments", Options{Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	if got := replicasOf(t, js, "payments"); got != 3 {
		t.Fatalf("replicas = %d after asking for 1, want 3 kept", got)
	}
}

func TestOpenReplicasBounds(t *testing.T) {
	ns := newJS(t)
	for _, n := range []int{-1, MaxReplicas + 1} {
		if _, err := Open(ctxT(t), ns.JetStream(), "orders", Options{Replicas: n}); err == nil {
			t.Errorf("Open with Replicas %d succeeded", n)
		}
	}
	// Alone, a bucket asking for more replicas than there are nodes is
	// refused by the server: callers ask natsd.Server.Replicas.
	if _, err := Open(ctxT(t), ns.JetStream(), "orders", Options{Replicas: 3}); err == nil {
		t.Fatal("a bucket of 3 replicas opened on a lone server")
	}
}
