//go:build linux

package storefail

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/host/natsd"
	"github.com/meshd/meshd/internal/testkit"
)

// fill writes a file into dir until its file system is full and returns
// the file's path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "fill")
	testkit.FillDisk(t, path)
	return path
}

// TestRepairOnRealFullDisk breaks a stream for real (a write past a full
// tmpfs, which nats-server keeps failing even once space is back), frees
// the space, and expects the Health to diagnose the timeout, restart the
// embedded JetStream and take writes again, with what was stored before
// still there.
func TestRepairOnRealFullDisk(t *testing.T) {
	dir := testkit.MountTmpfs(t, "8m")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := natsd.Start(ctx, natsd.Config{DataDir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	js := srv.JetStream()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EV", Subjects: []string{"ev.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	h := For(js)
	if h.srv == nil || h.free == nil {
		t.Fatal("the Health of an in-process connection does not know its server")
	}
	payload := make([]byte, 8<<10)
	for range 3 {
		if _, err := js.Publish(ctx, "ev.a", payload); err != nil {
			t.Fatal(err)
		}
	}

	path := fill(t, dir)
	// Write past the Health (as a write under way when the disk filled
	// would) until the stream keeps the error: the server then stops
	// answering.
	broke := false
	for i := 0; i < 10 && !broke; i++ {
		c, cancel := context.WithTimeout(ctx, time.Second)
		_, err := js.Publish(c, "ev.a", payload)
		cancel()
		broke = errors.Is(err, context.DeadlineExceeded)
	}
	if !broke || len(brokenStreams(h.srv)) == 0 {
		t.Fatalf("the stream did not break (timeout %v, server reports %v)", broke, brokenStreams(h.srv))
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}

	// Space is back, but the stream still fails: the next write times out
	// and the diagnosis finds the stream's error.
	w, err := h.Begin()
	if err != nil {
		t.Fatalf("Begin with space back: %v", err)
	}
	c, cancel2 := context.WithTimeout(ctx, time.Second)
	_, err = js.Publish(c, "ev.a", payload)
	cancel2()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("write to the broken stream: %v, want a timeout", err)
	}
	w.End(err)
	if !errors.Is(h.Refusing(), ErrWritesRefused) {
		t.Fatal("a timeout on a stream with a kept write error did not make the store refuse")
	}
	start := time.Now()
	if _, err := h.Begin(); !errors.Is(err, ErrWritesRefused) {
		t.Fatalf("Begin right after: %v, want ErrWritesRefused", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("a refused Begin took %s", d)
	}

	w = waitTrial(t, h)
	_, err = js.Publish(ctx, "ev.a", payload)
	w.End(err)
	if err != nil {
		t.Fatalf("the trial write after the repair: %v", err)
	}
	if h.Refusing() != nil || h.Restarts() != 1 {
		t.Fatalf("after the trial: refusing %v, %d JetStream restarts; want none and 1", h.Refusing(), h.Restarts())
	}
	st, err := js.Stream(ctx, "EV")
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n < 4 {
		t.Fatalf("the stream holds %d messages after the repair, want the 3 stored before and the trial's", n)
	}
}
