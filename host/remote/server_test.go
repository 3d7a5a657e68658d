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

// workers is how many workers service has on s, and how many of them are
// idle.
func workers(s *Server, service string) (n, idle int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sv := s.subs[service]; sv != nil {
		return sv.workers, len(sv.idle)
	}
	return 0, 0
}

// TestCallsReuseAWorker: calls one after another run on one goroutine,
// whose stack a guest call grew already, not on a new goroutine each.
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
	if len(ids) != 1 {
		t.Errorf("%d calls one after another ran on %d goroutines, want 1: %v", calls, len(ids), ids)
	}
	if n, idle := workers(srv, "orders"); n != 1 || idle != 1 {
		t.Errorf("%d workers, %d idle after the calls, want 1 and 1", n, idle)
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
	if n, idle := workers(srv, "held"); n != 3 || idle != 0 {
		t.Errorf("%d workers, %d idle with three calls held, want 3 and 0", n, idle)
	}
	close(release)
	for range 3 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	testkit.Eventually(t, 20*time.Second, func() string {
		if n, idle := workers(srv, "held"); n != 0 || idle != 0 {
			return fmt.Sprintf("%d workers, %d idle long after the calls, want none", n, idle)
		}
		return ""
	})
	if err := tg.Invoke(ctxFor(t, 20*time.Second), &abi.Request{}, &abi.Response{}); err != nil {
		t.Fatalf("call after the workers ended: %v", err)
	}
	<-started
}

// TestStopEndsWorkers: stopping a service ends its idle workers at once
// and its busy ones after their call, which still gets its answer.
func TestStopEndsWorkers(t *testing.T) {
	ns := startNATS(t)
	a, b := connect(t, ns), connect(t, ns)
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	srv := serve(t, b, "held", func(ctx context.Context, req *abi.Request, resp *abi.Response) error {
		started <- struct{}{}
		if len(req.Body) > 0 {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		resp.Status = 200
		return nil
	}, ServerConfig{})
	tg := target(t, a, "held")
	// Two workers: one held, one idle after its call.
	held := make(chan error, 1)
	go func() {
		held <- tg.Invoke(ctxFor(t, 20*time.Second), &abi.Request{Body: []byte("hold")}, &abi.Response{})
	}()
	<-started
	if err := tg.Invoke(ctxFor(t, 20*time.Second), &abi.Request{}, &abi.Response{}); err != nil {
		t.Fatal(err)
	}
	<-started
	srv.mu.Lock()
	sv := srv.subs["held"]
	srv.mu.Unlock()
	if n, idle := workers(srv, "held"); n != 2 || idle != 1 {
		t.Fatalf("%d workers, %d idle, want 2 and 1", n, idle)
	}
	if err := srv.Stop("held"); err != nil {
		t.Fatal(err)
	}
	count := func() (int, int) {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return sv.workers, len(sv.idle)
	}
	if n, idle := count(); n != 1 || idle != 0 {
		t.Errorf("%d workers, %d idle after Stop with one call held, want 1 and 0", n, idle)
	}
	close(release)
	if err := <-held; err != nil {
		t.Errorf("call held across Stop: %v", err)
	}
	testkit.Eventually(t, 20*time.Second, func() string {
		if n, idle := count(); n != 0 || idle != 0 {
			return fmt.Sprintf("%d workers, %d idle after the held call ended, want none", n, idle)
		}
		return ""
	})
}
