package mesh

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/fault"
	"github.com/meshd/meshd/internal/syncbuf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type transition struct {
	caller, callee string
	from, to       State
}

func TestBreakerOpensFailsFastProbesAndCloses(t *testing.T) {
	var healthy atomic.Bool
	tg := &target{fn: func(_ context.Context, _ int64, _ *abi.Request, resp *abi.Response) error {
		if healthy.Load() {
			resp.Status = 200
			return nil
		}
		return errors.New("wasm error: unreachable") // a trap: Failed
	}}
	var logs syncbuf.Buffer
	var mu sync.Mutex
	var seen []transition
	c := newClient(t, resolveTo(tg), WithMaxAttempts(1),
		WithBreakerSettings("user", Settings{ConsecutiveFailures: 3, OpenFor: 50 * time.Millisecond, Probes: 2}),
		WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))),
		WithObserver(Observer{BreakerTransition: func(caller, callee string, from, to State) {
			mu.Lock()
			seen = append(seen, transition{caller, callee, from, to})
			mu.Unlock()
		}}))
	call := func() error {
		return c.Call(context.Background(), "order", "user", get(), &abi.Response{}, CallOptions{})
	}
	state := func() State { return c.Snapshot()[0].State }

	for i := range 3 {
		if err := call(); kindOf(t, err) != fault.Failed {
			t.Fatalf("call %d: %v, want the trap", i+1, err)
		}
	}
	if s := state(); s != Open {
		t.Fatalf("after 3 failures the breaker is %v, want open", s)
	}

	// Open: fails fast, without calling the target.
	start := time.Now()
	err := call()
	if k := kindOf(t, err); k != fault.CircuitOpen || k.Code() != abi.CodeUnavailable || k.Code() != 6 {
		t.Fatalf("open breaker: %v (kind %v), want circuit open, code 6", err, k)
	}
	var oe *OpenError
	if !errors.As(err, &oe) || oe.Error() != "circuit order→user open" {
		t.Fatalf("cause %v, want circuit order→user open", err)
	}
	var fe *fault.Error
	if errors.As(err, &fe); fe.Retry() <= 0 {
		t.Fatal("no Retry-After on an open breaker's error")
	}
	if n := tg.calls.Load(); n != 3 {
		t.Fatalf("the open breaker let a call through (%d attempts)", n)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("failing fast took seconds")
	}

	// Half-open after OpenFor: a failed probe opens it again.
	eventually(t, "the breaker half-opens", func() bool { return state() == HalfOpen })
	if err := call(); kindOf(t, err) != fault.Failed {
		t.Fatalf("probe: %v", err)
	}
	if s := state(); s != Open {
		t.Fatalf("after a failed probe the breaker is %v, want open", s)
	}

	// Two successful probes close it.
	healthy.Store(true)
	eventually(t, "the breaker half-opens again", func() bool { return state() == HalfOpen })
	if err := call(); err != nil {
		t.Fatal(err)
	}
	if s := state(); s != HalfOpen {
		t.Fatalf("after one of two probes the breaker is %v, want half-open", s)
	}
	if err := call(); err != nil {
		t.Fatal(err)
	}
	b := c.Snapshot()[0]
	if b.State != Closed || b.Caller != "order" || b.Callee != "user" || b.Transitions != 5 || time.Since(b.Since) > time.Minute {
		t.Fatalf("snapshot %+v, want order→user closed after 5 transitions", b)
	}

	want := []transition{
		{"order", "user", Closed, Open}, {"order", "user", Open, HalfOpen}, {"order", "user", HalfOpen, Open},
		{"order", "user", Open, HalfOpen}, {"order", "user", HalfOpen, Closed},
	}
	mu.Lock()
	got := append([]transition(nil), seen...)
	mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("observed %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("transition %d: %v, want %v", i, got[i], want[i])
		}
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d log lines, want %d:\n%s", len(lines), len(want), logs.String())
	}
	for i, line := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec["caller"] != "order" || rec["callee"] != "user" || rec["from"] != want[i].from.String() || rec["to"] != want[i].to.String() {
			t.Fatalf("log line %d: %s", i, line)
		}
		if wantLevel := map[bool]string{true: "WARN", false: "INFO"}[want[i].to == Open]; rec["level"] != wantLevel {
			t.Fatalf("log line %d at %v, want %s", i, rec["level"], wantLevel)
		}
	}
}

func TestBreakerHalfOpenLetsOnlyProbesThrough(t *testing.T) {
	var healthy atomic.Bool
	release := make(chan struct{})
	tg := &target{fn: func(_ context.Context, _ int64, _ *abi.Request, resp *abi.Response) error {
		if !healthy.Load() {
			resp.Status = 500
			return nil
		}
		select {
		case <-release:
		case <-time.After(10 * time.Second): // bounded if the breaker let a third call in
		}
		resp.Status = 200
		return nil
	}}
	c := newClient(t, resolveTo(tg), WithMaxAttempts(1),
		WithBreakerSettings("user", Settings{ConsecutiveFailures: 1, OpenFor: 20 * time.Millisecond, Probes: 2}))
	call := func() error {
		return c.Call(context.Background(), "order", "user", get(), &abi.Response{}, CallOptions{})
	}
	if err := call(); err != nil { // a 500 is a response, and trips it
		t.Fatal(err)
	}
	healthy.Store(true)
	eventually(t, "half-open", func() bool { return c.Snapshot()[0].State == HalfOpen })
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if err := call(); err != nil {
				t.Error(err)
			}
		})
	}
	eventually(t, "two probes in flight", func() bool { return tg.inflight.Load() == 2 })
	err := call()
	var oe *OpenError
	if !errors.As(err, &oe) || oe.State != HalfOpen || kindOf(t, err) != fault.CircuitOpen {
		t.Fatalf("a third call while two probes run: %v, want circuit open (half-open)", err)
	}
	close(release)
	wg.Wait()
	if s := c.Snapshot()[0].State; s != Closed {
		t.Fatalf("after two good probes: %v", s)
	}
}

func TestBreakerIgnoresClientErrors(t *testing.T) {
	tg := &target{fn: status(404)}
	c := newClient(t, resolveTo(tg), WithBreakerSettings("user", Settings{ConsecutiveFailures: 2, MinRequests: 2}))
	for range 10 {
		if err := c.Call(context.Background(), "order", "user", get(), &abi.Response{}, CallOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	tg.fn = failing(fault.Denied)
	for range 10 {
		_ = c.Call(context.Background(), "order", "user", get(), &abi.Response{}, CallOptions{})
	}
	b := c.Snapshot()[0]
	if b.State != Closed || b.Counts.Failures != 0 || b.Counts.Successes != 10 || b.Counts.Excluded != 10 {
		t.Fatalf("after 4xx and denials: %+v, want closed, no failures", b)
	}
}

// A request the callee's node shed (admission control: its events are
// behind) is no failure of the callee: the breaker stays closed.
func TestBreakerIgnoresShedRequests(t *testing.T) {
	tg := &target{fn: failing(fault.Overloaded)}
	c := newClient(t, resolveTo(tg), WithBreakerSettings("user", Settings{ConsecutiveFailures: 2, MinRequests: 2}))
	for range 10 {
		if k := kindOf(t, c.Call(context.Background(), "order", "user", post(), &abi.Response{}, CallOptions{})); k != fault.Overloaded {
			t.Fatalf("kind %v, want %v", k, fault.Overloaded)
		}
	}
	b := c.Snapshot()[0]
	if b.State != Closed || b.Counts.Failures != 0 || b.Counts.Excluded != 10 || tg.calls.Load() != 10 {
		t.Fatalf("after 10 shed requests: %+v, %d attempts; want closed, no failures, 10 attempts", b, tg.calls.Load())
	}
}

func TestBreakerTripsOnFailureRatio(t *testing.T) {
	// Every other call fails: never two in a row, half of all.
	tg := &target{fn: func(_ context.Context, n int64, _ *abi.Request, resp *abi.Response) error {
		resp.Status = 200
		if n%2 == 0 {
			resp.Status = 502
		}
		return nil
	}}
	c := newClient(t, resolveTo(tg), WithMaxAttempts(1),
		WithBreakerSettings("user", Settings{ConsecutiveFailures: 100, FailureRatio: 0.5, MinRequests: 10}))
	for i := range 9 {
		_ = c.Call(context.Background(), "order", "user", get(), &abi.Response{}, CallOptions{})
		if s := c.Snapshot()[0].State; s != Closed {
			t.Fatalf("open after %d calls, before MinRequests", i+1)
		}
	}
	_ = c.Call(context.Background(), "order", "user", get(), &abi.Response{}, CallOptions{})
	if s := c.Snapshot()[0].State; s != Open {
		t.Fatalf("after 10 calls, half failed: %v, want open", s)
	}
}

func TestBreakerPerPair(t *testing.T) {
	tg := &target{fn: status(500)}
	c := newClient(t, resolveTo(tg), WithMaxAttempts(1), WithBreakerSettings("user", Settings{ConsecutiveFailures: 2}))
	for range 2 {
		_ = c.Call(context.Background(), "order", "user", get(), &abi.Response{}, CallOptions{})
	}
	_ = c.Call(context.Background(), "payment", "user", get(), &abi.Response{}, CallOptions{})
	snap := c.Snapshot()
	if len(snap) != 2 || snap[0].Caller != "order" || snap[0].State != Open || snap[1].Caller != "payment" || snap[1].State != Closed {
		t.Fatalf("snapshot %+v: want order→user open, payment→user closed", snap)
	}
	js, err := json.Marshal(snap[0])
	if err != nil || !strings.Contains(string(js), `"state":"open"`) {
		t.Fatalf("JSON %s, %v", js, err)
	}

	// New settings start the callee's breakers over; equal ones do not.
	if err := c.SetBreakerSettings("user", Settings{ConsecutiveFailures: 2}); err != nil {
		t.Fatal(err)
	}
	if c.Snapshot()[0].State != Open {
		t.Fatal("equal settings reset the breaker")
	}
	if err := c.SetBreakerSettings("user", Settings{ConsecutiveFailures: 3}); err != nil {
		t.Fatal(err)
	}
	if n := len(c.Snapshot()); n != 0 {
		t.Fatalf("%d breakers after new settings, want 0 until the next call", n)
	}
	_ = c.Call(context.Background(), "order", "user", get(), &abi.Response{}, CallOptions{})
	if s := c.Snapshot()[0].State; s != Closed {
		t.Fatalf("the new breaker is %v", s)
	}
	c.Forget("user")
	if n := len(c.Snapshot()); n != 0 {
		t.Fatalf("%d breakers after Forget", n)
	}
}

func TestCollector(t *testing.T) {
	tg := &target{fn: failing(fault.Unavailable)}
	c := newClient(t, resolveTo(tg), fast, WithRetryBudget(0, 1),
		WithBreakerSettings("user", Settings{ConsecutiveFailures: 3}))
	for range 3 {
		_ = c.Call(context.Background(), "order", "user", get(), &abi.Response{}, CallOptions{})
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c.Collector()); err != nil {
		t.Fatal(err)
	}
	const want = `
# HELP meshd_breaker_state State of the circuit breaker of a caller's calls to a callee: 0 closed, 1 half-open, 2 open.
# TYPE meshd_breaker_state gauge
meshd_breaker_state{callee="user",caller="order"} 2
# HELP meshd_breaker_transitions_total Changes of state of the circuit breaker of a caller's calls to a callee.
# TYPE meshd_breaker_transitions_total counter
meshd_breaker_transitions_total{callee="user",caller="order"} 1
# HELP meshd_call_retries_total Retries of calls to a service that its retry budget allowed.
# TYPE meshd_call_retries_total counter
meshd_call_retries_total{callee="user"} 1
# HELP meshd_call_retries_refused_total Failed calls to a service that could have been retried but found its retry budget spent.
# TYPE meshd_call_retries_refused_total counter
meshd_call_retries_refused_total{callee="user"} 2
`
	// Call 1: attempt, retry (the 1 a second), attempt, no budget left;
	// call 2: attempt (the breaker's third failure), no budget left; call
	// 3: open.
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if n := tg.calls.Load(); n != 3 {
		t.Fatalf("%d attempts, want 3", n)
	}
}
