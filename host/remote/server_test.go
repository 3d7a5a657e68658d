package remote

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/internal/testkit"
)

// goroutineID is the id of the calling goroutine, from its stack's first
// line ("goroutine 42 [running]:").
func goroutineID(t testing.TB) uint64 {
	var buf [64]byte
	line := buf[:runtime.Stack(buf[:], false)]
	line = bytes.TrimPrefix(line, []byte("goroutine "))
	if i := bytes.IndexByte(line, ' '); i > 0 {
		line = line[:i]
	}
	id, err := strconv.ParseUint(string(line), 10, 64)
	if err != nil {
		t.Errorf("goroutine id from %q: %v", buf[:], err)
	}
	return id
}

// pool is what a service's workers do.
type pool struct{ workers, idle, reading, running int }

// workers is what service's workers on s do.
func workers(s *Server, service string) pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sv := s.subs[service]; sv != nil {
		return pool{sv.workers, len(sv.idle), sv.reading, sv.running}
	}
	return pool{}
}

// TestCallsReuseAWorker: calls one after another run on the two readers,
// whose stacks a guest call grew already, not on a new goroutine each.
func TestCallsReuseAWorker(t *testing.T) {
	ns := startNATS(t)
	a, b := connect(t, ns), connect(t, ns)
	var mu sync.Mutex
	ids := map[uint64]int{}
	srv := serve(t, b, "orders", func(ctx context.Context, req *abi.Request, resp *abi.Response) error {
		id := goroutineID(t)
		mu.Lock()
		ids[id]++
		mu.Unlock()
		resp.Status = 200
		return nil
	}, ServerConfig{})
	tg := target(t, a, "orders")
	const calls = 20
	for i := range calls {
		if err := tg.Invoke(ctxFor(t, 20*time.Second), &abi.Request{}, &abi.Response{}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ids) > readers {
		t.Errorf("%d calls one after another ran on %d goroutines, want at most %d: %v", calls, len(ids), readers, ids)
	}
	if p, want := workers(srv, "orders"), (pool{workers: readers, reading: readers}); p != want {
		t.Errorf("after the calls: %+v, want %+v", p, want)
	}
}

// TestIdleWorkersEnd: workers end once they waited the idle time for a
// call, and a call after that starts one again.
func TestIdleWorkersEnd(t *testing.T) {
	ns := startNATS(t)
	a, b := connect(t, ns), connect(t, ns)
	srv, err := NewServer(b.nc, ServerConfig{Node: "node-b"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(ctxFor(t, 20*time.Second)); err != nil {
			t.Error(err)
		}
	})
	srv.idle = 50 * time.Millisecond
	release := make(chan struct{})
	started := make(chan struct{}, 3)
	if err := srv.Serve("held", func(ctx context.Context, req *abi.Request, resp *abi.Response) error {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	tg := target(t, a, "held")
	done := startHeld(t, tg, started, 3)
	// Each taker of a call left no reader, so made one.
	if p, want := workers(srv, "held"), (pool{workers: 4, reading: 1, running: 3}); p != want {
		t.Errorf("three calls held: %+v, want %+v", p, want)
	}
	close(release)
	for range 3 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	// The first done reads again, the others go idle; the idle ones end,
	// and the readers but one.
	testkit.Eventually(t, 20*time.Second, func() string {
		if p, want := workers(srv, "held"), (pool{workers: 1, reading: 1}); p != want {
			return fmt.Sprintf("long after the calls: %+v, want %+v", p, want)
		}
		return ""
	})
	if err := tg.Invoke(ctxFor(t, 20*time.Second), &abi.Request{}, &abi.Response{}); err != nil {
		t.Fatalf("call after the workers ended: %v", err)
	}
	<-started
}

// TestStopEndsWorkers: stopping a service ends its idle workers at once,
// its readers when its subscription is gone, and its busy ones after
// their call, which still gets its answer.
func TestStopEndsWorkers(t *testing.T) {
	ns := startNATS(t)
	a, b := connect(t, ns), connect(t, ns)
	long, short := make(chan struct{}), make(chan struct{})
	started := make(chan struct{}, 3)
	srv := serve(t, b, "held", func(ctx context.Context, req *abi.Request, resp *abi.Response) error {
		started <- struct{}{}
		wait := short
		if string(req.Body) == "long" {
			wait = long
		}
		select {
		case <-wait:
		case <-ctx.Done():
		}
		resp.Status = 200
		return nil
	}, ServerConfig{})
	tg := target(t, a, "held")
	call := func(body string, done chan<- error) {
		done <- tg.Invoke(ctxFor(t, 20*time.Second), &abi.Request{Body: []byte(body)}, &abi.Response{})
	}
	held, brief := make(chan error, 1), make(chan error, 2)
	go call("long", held)
	<-started
	go call("short", brief)
	<-started
	go call("short", brief)
	<-started
	close(short)
	for range 2 {
		if err := <-brief; err != nil {
			t.Fatal(err)
		}
	}
	// Four workers: one held, two reading, one idle.
	srv.mu.Lock()
	sv := srv.subs["held"]
	srv.mu.Unlock()
	count := func() pool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return pool{sv.workers, len(sv.idle), sv.reading, sv.running}
	}
	testkit.Eventually(t, 20*time.Second, func() string {
		if p, want := count(), (pool{workers: 4, idle: 1, reading: 2, running: 1}); p != want {
			return fmt.Sprintf("one call held, two done: %+v, want %+v", p, want)
		}
		return ""
	})
	if err := srv.Stop("held"); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, func() string {
		if p, want := count(), (pool{workers: 1, running: 1}); p != want {
			return fmt.Sprintf("after Stop with one call held: %+v, want %+v", p, want)
		}
		return ""
	})
	close(long)
	if err := <-held; err != nil {
		t.Errorf("call held across Stop: %v", err)
	}
	testkit.Eventually(t, 20*time.Second, func() string {
		if p := count(); p != (pool{}) {
			return fmt.Sprintf("after the held call ended: %+v, want none", p)
		}
		return ""
	})
}
