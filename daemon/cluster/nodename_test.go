package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/meshd/meshd/host/natsd"
	"github.com/meshd/meshd/host/remote"
)

// TestCheckName: a name no node announces is free at once; one a live
// node announces (its directory heartbeats) is taken; one whose
// announcement is not rewritten (a node killed before its TTL lapsed) is
// free once the wait is over.
func TestCheckName(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := natsd.Start(ctx, natsd.Config{DataDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	js := s.JetStream()

	if taken, err := checkName(ctx, js, "a", time.Second); err != nil || taken {
		t.Fatalf("no bucket: taken %v, err %v; want free", taken, err)
	}
	dir, err := remote.StartDirectory(ctx, js, remote.DirectoryConfig{Node: "a", Heartbeat: 200 * time.Millisecond, TTL: 5 * time.Second,
		Local: func() []remote.Service { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close(context.Background())
	kv, err := js.KeyValue(ctx, remote.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	// StartDirectory returns before its first heartbeat is written.
	for _, err := kv.Get(ctx, "a"); err != nil; _, err = kv.Get(ctx, "a") {
		if ctx.Err() != nil {
			t.Fatalf("a's announcement never written: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if taken, err := checkName(ctx, js, "a", 2*time.Second); err != nil || !taken {
		t.Fatalf("a live node a: taken %v, err %v; want taken", taken, err)
	}
	if taken, err := checkName(ctx, js, "b", 2*time.Second); err != nil || taken {
		t.Fatalf("b, announced by no one: taken %v, err %v; want free", taken, err)
	}

	// A dead node's announcement: written once, never again.
	ann, _ := json.Marshal(remote.Announcement{Node: "c", TTLMs: 60000})
	if _, err := kv.Put(ctx, "c", ann); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if taken, err := checkName(ctx, js, "c", 700*time.Millisecond); err != nil || taken {
		t.Fatalf("a dead node c: taken %v, err %v; want free", taken, err)
	}
	if d := time.Since(began); d < 700*time.Millisecond {
		t.Fatalf("a dead node c: free after %v, before the wait was over", d)
	}
	if !errors.Is(nameTaken("a"), ErrNodeTaken) {
		t.Fatal("nameTaken does not wrap ErrNodeTaken")
	}
}
