package mesh

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/fault"
	"github.com/meshd/meshd/host/internal/names"
	"github.com/meshd/meshd/internal/traceparent"
)

func TestDeadlineIsTheEarlierOfCallersAndOwn(t *testing.T) {
	for _, tc := range []struct {
		name      string
		caller    time.Duration // 0: no deadline
		own       time.Duration
		reserve   time.Duration
		wantOwn   bool          // the call's deadline is now + own
		wantLess  time.Duration // else: the caller's deadline less this
		tolerance time.Duration
	}{
		{name: "own earlier", caller: time.Hour, own: time.Second, reserve: DefaultReserve, wantOwn: true},
		{name: "no caller deadline", own: 3 * time.Second, reserve: DefaultReserve, wantOwn: true},
		{name: "caller earlier, no reserve", caller: time.Second, own: time.Hour, reserve: 0},
		{name: "caller earlier, reserve capped", caller: 10 * time.Second, own: time.Hour, reserve: DefaultReserve, wantLess: DefaultReserve},
		{name: "caller earlier, a tenth of it", caller: 200 * time.Millisecond, own: time.Hour, reserve: DefaultReserve, wantLess: 20 * time.Millisecond, tolerance: time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := &target{}
			c := newClient(t, resolveTo(tg), WithDeadlineReserve(tc.reserve))
			ctx := context.Background()
			var callerDL time.Time
			if tc.caller > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.caller)
				defer cancel()
				callerDL, _ = ctx.Deadline()
			}
			before := time.Now()
			if err := c.Call(ctx, "order", "user", get(), &abi.Response{}, CallOptions{Timeout: tc.own}); err != nil {
				t.Fatal(err)
			}
			after := time.Now()
			seen := tg.requests()[0]
			if !seen.hasDeadline {
				t.Fatal("the target's context has no deadline")
			}
			if tc.wantOwn {
				if seen.deadline.Before(before.Add(tc.own)) || seen.deadline.After(after.Add(tc.own)) {
					t.Fatalf("deadline %v, want between %v and %v (now + own timeout)", seen.deadline, before.Add(tc.own), after.Add(tc.own))
				}
				return
			}
			want := callerDL.Add(-tc.wantLess)
			if d := seen.deadline.Sub(want).Abs(); d > tc.tolerance {
				t.Fatalf("deadline %v, want the caller's %v less %v (off by %v)", seen.deadline, callerDL, tc.wantLess, d)
			}
			if seen.deadline.After(callerDL) {
				t.Fatal("the call outlives its caller")
			}
		})
	}
}

func TestCalleePastCallersDeadlineIsCutOff(t *testing.T) {
	// The callee hangs (or waits for an instance) until its context ends.
	tg := &target{fn: func(ctx context.Context, _ int64, _ *abi.Request, _ *abi.Response) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Second):
			return nil
		}
	}}
	c := newClient(t, resolveTo(tg), WithDeadlineReserve(200*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	callerDL, _ := ctx.Deadline()
	err := c.Call(ctx, "order", "user", get(), &abi.Response{}, CallOptions{Timeout: time.Minute})
	if time.Now().After(callerDL) || ctx.Err() != nil {
		t.Fatalf("the call returned after its caller's deadline")
	}
	if k := kindOf(t, err); k != fault.Timeout {
		t.Fatalf("kind %v, want timeout: %v", k, err)
	}
	if !strings.Contains(err.Error(), "order→user ran past its caller's deadline") {
		t.Fatalf("message %q does not say which deadline", err)
	}
	if n := tg.calls.Load(); n != 1 {
		t.Fatalf("%d attempts, want 1: no time was left to retry", n)
	}
}

func TestOwnTimeoutNamedInError(t *testing.T) {
	tg := &target{fn: func(ctx context.Context, _ int64, _ *abi.Request, _ *abi.Response) error {
		<-ctx.Done()
		return ctx.Err()
	}}
	c := newClient(t, resolveTo(tg), WithPairTimeout("order", "user", 50*time.Millisecond))
	err := c.Call(context.Background(), "order", "user", get(), &abi.Response{}, CallOptions{})
	if k := kindOf(t, err); k != fault.Timeout || !strings.Contains(err.Error(), "its timeout of 50ms") {
		t.Fatalf("got %v (%v), want a timeout naming the pair's 50ms", err, k)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("the cause is lost")
	}
}

func TestCallerWithoutTimeLeftIsNotCalled(t *testing.T) {
	tg := &target{}
	c := newClient(t, resolveTo(tg))
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	err := c.Call(ctx, "order", "user", get(), &abi.Response{}, CallOptions{})
	if k := kindOf(t, err); k != fault.Timeout {
		t.Fatalf("kind %v, want timeout", k)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if err := c.Call(ctx, "order", "user", get(), &abi.Response{}, CallOptions{}); err == nil {
		t.Fatal("a cancelled caller's call succeeded")
	}
	if n := tg.calls.Load(); n != 0 {
		t.Fatalf("the target was called %d times", n)
	}
}

func TestRetries(t *testing.T) {
	failTwice := func(kind fault.Kind) func(context.Context, int64, *abi.Request, *abi.Response) error {
		return func(_ context.Context, n int64, _ *abi.Request, resp *abi.Response) error {
			if n <= 2 {
				return fault.New("user", kind, errors.New("not yet"))
			}
			resp.Status = 200
			return nil
		}
	}
	for _, tc := range []struct {
		name       string
		req        *abi.Request
		o          CallOptions
		fn         func(context.Context, int64, *abi.Request, *abi.Response) error
		wantCalls  int64
		wantKind   fault.Kind // when wantErr
		wantErr    bool
		wantStatus uint32
	}{
		{"GET after two unavailable", get(), CallOptions{}, failTwice(fault.Unavailable), 3, 0, false, 200},
		{"GET after two busy", get(), CallOptions{}, failTwice(fault.Busy), 3, 0, false, 200},
		{"GET after two traps", get(), CallOptions{}, failTwice(fault.Failed), 3, 0, false, 200},
		{"GET after two timeouts with time left", get(), CallOptions{}, failTwice(fault.Timeout), 3, 0, false, 200},
		{"PUT after two 503", &abi.Request{Method: []byte("PUT")}, CallOptions{},
			func(_ context.Context, n int64, _ *abi.Request, resp *abi.Response) error {
				resp.Status = 503
				if n > 2 {
					resp.Status = 204
				}
				return nil
			}, 3, 0, false, 204},
		{"POST not retried", post(), CallOptions{}, failTwice(fault.Unavailable), 1, fault.Unavailable, true, 0},
		{"POST marked retryable", post(), CallOptions{Retryable: true}, failTwice(fault.Unavailable), 3, 0, false, 200},
		{"GET 404 not retried", get(), CallOptions{}, status(404), 1, 0, false, 404},
		{"GET denied not retried", get(), CallOptions{}, failing(fault.Denied), 1, fault.Denied, true, 0},
		{"GET invalid not retried", get(), CallOptions{}, failing(fault.Invalid), 1, fault.Invalid, true, 0},
		{"GET store refusing not retried", get(), CallOptions{}, failing(fault.StoreRefused), 1, fault.StoreRefused, true, 0},
		{"GET shed by admission not retried", get(), CallOptions{}, failing(fault.Overloaded), 1, fault.Overloaded, true, 0},
		{"GET 500 every time: the last response", get(), CallOptions{}, status(500), 3, 0, false, 500},
		{"GET unavailable every time: the last error", get(), CallOptions{}, failing(fault.Unavailable), 3, fault.Unavailable, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := &target{fn: tc.fn}
			c := newClient(t, resolveTo(tg), fast, quiet)
			resp := &abi.Response{}
			err := c.Call(context.Background(), "order", "user", tc.req, resp, tc.o)
			if n := tg.calls.Load(); n != tc.wantCalls {
				t.Errorf("%d attempts, want %d", n, tc.wantCalls)
			}
			if tc.wantErr {
				if k := kindOf(t, err); k != tc.wantKind {
					t.Fatalf("kind %v, want %v: %v", k, tc.wantKind, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.Status, tc.wantStatus)
			}
		})
	}
}

func TestOutgoingRequestFields(t *testing.T) {
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tg := &target{fn: func(_ context.Context, n int64, _ *abi.Request, resp *abi.Response) error {
		if n < 3 {
			return fault.New("user", fault.Unavailable, errors.New("not yet"))
		}
		resp.Status = 200
		return nil
	}}
	c := newClient(t, resolveTo(tg), fast, quiet)
	req := get()
	if err := c.Call(context.Background(), "order", "user", req, &abi.Response{}, CallOptions{RequestID: "req-42", TraceParent: parent}); err != nil {
		t.Fatal(err)
	}
	seen := tg.requests()
	if len(seen) != 3 {
		t.Fatalf("%d attempts, want 3", len(seen))
	}
	spans := map[string]bool{}
	for i, s := range seen {
		if s.consumer != "service:order" || s.requestID != "req-42" {
			t.Errorf("attempt %d: consumer %q, request id %q; want service:order, req-42", i+1, s.consumer, s.requestID)
		}
		if !traceparent.Valid(s.traceParent) || traceparent.TraceID(s.traceParent) != traceparent.TraceID(parent) ||
			s.traceParent[52:] != parent[52:] || s.traceParent[36:52] == parent[36:52] {
			t.Errorf("attempt %d: traceparent %q is not a child of %q", i+1, s.traceParent, parent)
		}
		spans[s.traceParent[36:52]] = true
		if s.depth != 1 {
			t.Errorf("attempt %d: depth %d, want 1", i+1, s.depth)
		}
	}
	if len(spans) != 3 {
		t.Errorf("%d distinct spans over 3 attempts, want one each", len(spans))
	}

	// The caller (the host binding) set the call's request id and span on
	// req: the first attempt keeps them, a retry gets a span of its own,
	// and the caller's buffer is not written to.
	const span = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01"
	tg.calls.Store(0)
	tg.mu.Lock()
	tg.seen = nil
	tg.mu.Unlock()
	req = get()
	req.RequestID, req.TraceParent = []byte("pre"), []byte(span)
	own := req.TraceParent
	if err := c.Call(context.Background(), "order", "user", req, &abi.Response{}, CallOptions{}); err != nil {
		t.Fatal(err)
	}
	seen = tg.requests()
	if len(seen) != 3 || seen[0].traceParent != span || seen[0].requestID != "pre" ||
		traceparent.TraceID(seen[1].traceParent) != traceparent.TraceID(span) || seen[1].traceParent == span {
		t.Fatalf("attempts saw %+v, want the caller's span first, then new spans in its trace", seen)
	}
	if string(own) != span {
		t.Fatalf("the caller's traceparent buffer became %q", own)
	}

	// Without a valid traceparent from the caller, a new trace.
	tg2 := &target{}
	c2 := newClient(t, resolveTo(tg2))
	if err := c2.Call(context.Background(), "order", "user", get(), &abi.Response{}, CallOptions{TraceParent: "garbage"}); err != nil {
		t.Fatal(err)
	}
	if tp := tg2.requests()[0].traceParent; !traceparent.Valid(tp) {
		t.Fatalf("traceparent %q is not valid", tp)
	}
}

func TestRetryBudget(t *testing.T) {
	const (
		calls     = 200
		ratio     = 0.2
		minPerSec = 5
	)
	tg := &target{fn: failing(fault.Unavailable)}
	c := newClient(t, resolveTo(tg), fast, quiet, WithRetryBudget(ratio, minPerSec))
	now := time.Unix(1_000_000, 0)
	c.now = func() time.Time { return now } // every call within one second
	for range calls {
		if err := c.Call(context.Background(), "order", "user", get(), &abi.Response{}, CallOptions{}); err == nil {
			t.Fatal("a call to a failing callee succeeded")
		}
	}
	extra := tg.calls.Load() - calls
	limit := int64(ratio*calls) + minPerSec
	t.Logf("%d calls to a callee failing all of them: %d extra attempts, budget %d (without it %d)", calls, extra, limit, (DefaultMaxAttempts-1)*calls)
	if extra > limit {
		t.Fatalf("%d extra attempts, more than the budget of %d", extra, limit)
	}
	if extra < minPerSec {
		t.Fatalf("%d extra attempts: the budget's minimum of %d was not used", extra, minPerSec)
	}

	// The budget is the callee's: another caller of it finds it spent.
	before := tg.calls.Load()
	if err := c.Call(context.Background(), "payment", "user", get(), &abi.Response{}, CallOptions{}); err == nil {
		t.Fatal("success from a failing callee")
	}
	if n := tg.calls.Load() - before; n != 1 {
		t.Fatalf("another caller got %d attempts from a spent budget, want 1", n)
	}

	// Ten seconds later the window has moved on: minPerSec again.
	now = now.Add(BudgetWindow)
	before = tg.calls.Load()
	for range minPerSec + 5 {
		_ = c.Call(context.Background(), "order", "user", get(), &abi.Response{}, CallOptions{})
	}
	if extra := tg.calls.Load() - before - (minPerSec + 5); extra < minPerSec || extra > minPerSec+int64(ratio*(minPerSec+5)) {
		t.Fatalf("%d extra attempts in a fresh window, want %d to %d", extra, minPerSec, minPerSec+int64(ratio*(minPerSec+5)))
	}
}

func TestDepth(t *testing.T) {
	tg := &target{}
	c := newClient(t, resolveTo(tg))
	err := c.Call(WithDepth(context.Background(), MaxDepth), "order", "user", get(), &abi.Response{}, CallOptions{})
	if k := kindOf(t, err); k != fault.Invalid || k.Code() != abi.CodeInvalid {
		t.Fatalf("a call at depth %d: kind %v, want invalid", MaxDepth+1, k)
	}
	if tg.calls.Load() != 0 {
		t.Fatal("the target was called past the depth limit")
	}
	if err := c.Call(WithDepth(context.Background(), MaxDepth-1), "order", "user", get(), &abi.Response{}, CallOptions{}); err != nil {
		t.Fatalf("a call at depth %d: %v", MaxDepth, err)
	}
	if d := tg.requests()[0].depth; d != MaxDepth {
		t.Fatalf("the callee runs at depth %d, want %d", d, MaxDepth)
	}
}

// A chain of services each calling the next through the Client, the way
// the daemon runs a callee with the context Call hands its target: the
// ninth call is refused.
func TestDepthChain(t *testing.T) {
	var c *Client
	var deepest int
	chain := &target{fn: func(ctx context.Context, _ int64, _ *abi.Request, resp *abi.Response) error {
		deepest = max(deepest, DepthFrom(ctx))
		if DepthFrom(ctx) > 3*MaxDepth {
			return errors.New("the chain was not stopped")
		}
		resp.Status = 200
		return c.Call(ctx, "svc", "svc", get(), resp, CallOptions{})
	}}
	c = newClient(t, resolveTo(chain), WithMaxAttempts(1))
	err := c.Call(context.Background(), "svc", "svc", get(), &abi.Response{}, CallOptions{})
	if k := kindOf(t, err); k != fault.Invalid || !strings.Contains(err.Error(), "past the limit of 8") {
		t.Fatalf("an endless chain ended with %v, want the depth limit", err)
	}
	if deepest != MaxDepth {
		t.Fatalf("the chain went %d deep, want %d", deepest, MaxDepth)
	}
}

func TestPickPrefersLessLoaded(t *testing.T) {
	busy := &target{name: "busy", load: 5}
	idle := &target{name: "idle"}
	for range 200 {
		if got := pick([]Target{busy, idle}); got != idle {
			t.Fatal("picked the busier of two")
		}
		if got := pick([]Target{idle, busy}); got != idle {
			t.Fatal("picked the busier of two")
		}
	}
	// Of three, the busiest is never picked, and both others are.
	a, b, worst := &target{name: "a", load: 1}, &target{name: "b", load: 1}, &target{name: "worst", load: 9}
	count := map[Target]int{}
	for range 600 {
		count[pick([]Target{a, worst, b})]++
	}
	if count[worst] != 0 || count[a] == 0 || count[b] == 0 {
		t.Fatalf("picks a %d, b %d, worst %d", count[a], count[b], count[worst])
	}

	// Through the Client.
	c := newClient(t, resolveTo(busy, idle))
	for range 50 {
		if err := c.Call(context.Background(), "order", "user", get(), &abi.Response{}, CallOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if busy.calls.Load() != 0 || idle.calls.Load() != 50 {
		t.Fatalf("busy served %d, idle %d", busy.calls.Load(), idle.calls.Load())
	}
}

func TestNoTargetIsUnavailableFast(t *testing.T) {
	c := newClient(t, resolveTo(), WithBreakerSettings("user", Settings{ConsecutiveFailures: 1}))
	for range 3 {
		err := c.Call(context.Background(), "order", "user", get(), &abi.Response{}, CallOptions{})
		if k := kindOf(t, err); k != fault.Unavailable {
			t.Fatalf("kind %v, want unavailable", k)
		}
		if !strings.Contains(err.Error(), "no instance of user is up") {
			t.Fatalf("message %q", err)
		}
	}
	// Not the callee's failure: the breaker did not count it.
	for _, b := range c.Snapshot() {
		if b.State != Closed || b.Counts.Failures != 0 {
			t.Fatalf("breaker %+v after calls with no target", b)
		}
	}
}

func TestNamesBoundedAndEscaped(t *testing.T) {
	c := newClient(t, resolveTo())
	err := c.Call(context.Background(), "order", "us\ner\x1b[31m", get(), &abi.Response{}, CallOptions{})
	if msg := err.Error(); strings.ContainsAny(msg, "\n\x1b") || !strings.Contains(msg, `"us\ner\x1b[31m"`) {
		t.Fatalf("message %q carries the raw name", msg)
	}
	long := strings.Repeat("x", MaxNameLen+1)
	err = c.Call(context.Background(), "order", long, get(), &abi.Response{}, CallOptions{})
	if k := kindOf(t, err); k != fault.Invalid || len(err.Error()) > 2*MaxNameLen+100 {
		t.Fatalf("a %d-byte name: %v (%d bytes)", len(long), err, len(err.Error()))
	}
	if got := names.Display(strings.Repeat("é", 100)); len(got) > 4*names.DisplayLen+10 || !strings.HasSuffix(got, "…") {
		t.Fatalf("display of a long name: %q", got)
	}
}

func TestNewReportsEveryBadOption(t *testing.T) {
	_, err := New(nil, WithTimeout(0), WithMaxAttempts(0), WithBackoff(time.Second, time.Millisecond),
		WithRetryBudget(2, -1), WithDeadlineReserve(-1), WithBreakerSettings("user", Settings{FailureRatio: 1.5, Probes: 1000}),
		WithPairTimeout("a", "b", -time.Second))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"resolver", "timeout: 0s", "max attempts", "backoff", "retry budget", "deadline reserve",
		"failure_ratio", "probes", "timeout of a→b"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestSettingsValidate(t *testing.T) {
	if err := DefaultSettings().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (Settings{}).Validate(); err != nil {
		t.Fatalf("zero settings (all defaults): %v", err)
	}
	bad := Settings{ConsecutiveFailures: maxConsecutive + 1, FailureRatio: -0.1, MinRequests: maxConsecutive + 1,
		Window: time.Millisecond, OpenFor: time.Hour, Probes: maxProbes + 1}
	err := bad.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, f := range []string{"consecutive_failures", "failure_ratio", "min_requests", "window", "open_for", "probes"} {
		if !strings.Contains(err.Error(), f+":") {
			t.Errorf("%q does not report %s", err, f)
		}
	}
}

func TestConcurrentCallers(t *testing.T) {
	flaky := func(_ context.Context, n int64, _ *abi.Request, resp *abi.Response) error {
		switch n % 4 {
		case 0:
			return fault.New("user", fault.Busy, errors.New("busy"))
		case 1:
			resp.Status = 503
		default:
			resp.Status = 200
		}
		return nil
	}
	a, b := &target{fn: flaky}, &target{fn: flaky}
	c := newClient(t, resolveTo(a, b), fast, WithBreakerSettings("user", Settings{OpenFor: 10 * time.Millisecond}))
	var wg sync.WaitGroup
	var mu sync.Mutex
	kinds := map[string]int{}
	for g := range 8 {
		wg.Go(func() {
			caller := []string{"order", "payment"}[g%2]
			for range 200 {
				resp := &abi.Response{}
				err := c.Call(context.Background(), caller, "user", get(), resp, CallOptions{RequestID: "r"})
				var k string
				switch {
				case err == nil:
					k = "response"
					if resp.Status == 0 {
						t.Error("nil error without a response")
					}
				default:
					var fe *fault.Error
					if !errors.As(err, &fe) {
						t.Errorf("error %T: %v", err, err)
						return
					}
					k = fe.Kind.String()
				}
				mu.Lock()
				kinds[k]++
				mu.Unlock()
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			_ = c.Snapshot()
			_ = c.SetPairTimeout("order", "user", time.Second)
		}
	})
	wg.Wait()
	total := 0
	for _, n := range kinds {
		total += n
	}
	if total != 8*200 || kinds["response"] == 0 {
		t.Fatalf("outcomes %v", kinds)
	}
	t.Logf("outcomes %v, attempts %d", kinds, a.calls.Load()+b.calls.Load())
	if len(c.Snapshot()) != 2 {
		t.Fatalf("%d breakers, want 2", len(c.Snapshot()))
	}
}
