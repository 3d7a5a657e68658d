package host_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/host/fault"
	"github.com/meshd/meshd/host/mesh"
	"github.com/meshd/meshd/internal/traceparent"
	"github.com/meshd/meshd/runtime"
)

// calls records what a fake Caller was handed. The Caller is the seam to
// the mesh client (host/mesh); here the subject is the binding.
type calls struct {
	mu   sync.Mutex
	seen []host.ServiceCall
	reqs []abi.Request // copies of the requests, as the callee got them
}

func (cs *calls) add(call *host.ServiceCall) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.seen = append(cs.seen, *call)
	r := *call.Request
	r.Headers = append([]abi.Pair(nil), r.Headers...)
	cs.reqs = append(cs.reqs, r)
}

func (cs *calls) n() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.seen)
}

// invokeCallee is a Caller that runs the call on callee, a loaded module,
// as the mesh client will: the route is the method and path (the WAT
// guest's routes have no wildcards), the callee's invocation runs at the
// call's depth.
func invokeCallee(callee *runtime.Module, rec *calls) host.Caller {
	return func(ctx context.Context, call *host.ServiceCall, resp *abi.Response) error {
		rec.add(call)
		req := *call.Request
		req.Route = append(append(append([]byte(nil), req.Method...), ' '), req.Path...)
		c := &runtime.Call{Input: req.Append(nil), Data: &host.Invocation{
			RequestID: string(req.RequestID), TraceParent: string(req.TraceParent), Depth: call.Depth}}
		if err := callee.Invoke(ctx, runtime.EntryHTTP, c); err != nil {
			return err
		}
		if c.Code != abi.CodeOK {
			return fmt.Errorf("callee failed (%s)", c.Code)
		}
		return resp.Decode(c.Output)
	}
}

// requestAs is request with the caller's request id and trace context.
func requestAs(t *testing.T, m *runtime.Module, route, body, rid, tp string) (abi.Response, error) {
	t.Helper()
	method, path, _ := strings.Cut(route, " ")
	req := abi.Request{Method: []byte(method), Path: []byte(path), Route: []byte(route), Body: []byte(body)}
	c := &runtime.Call{Input: req.Append(nil), Data: &host.Invocation{RequestID: rid, TraceParent: tp}}
	var resp abi.Response
	if err := m.Invoke(context.Background(), runtime.EntryHTTP, c); err != nil {
		return resp, err
	}
	if c.Code != abi.CodeOK {
		t.Fatalf("%s: code %v: %s", route, c.Code, c.Output)
	}
	if err := resp.Decode(c.Output); err != nil {
		t.Fatalf("%s: response does not decode: %v", route, err)
	}
	return resp, nil
}

// The WAT guest calls a route of another module through call and
// call_result (ABI v1.2).
func TestConformanceGuestCallsAService(t *testing.T) {
	callee := conformance(t, &host.Env{Service: "conformance"})
	rec := &calls{}
	env := granted(nil)
	env.Grants.Calls = []string{"conformance"}
	env.Call = invokeCallee(callee, rec)
	m := conformance(t, env)
	if !strings.Contains(string(m.Declaration()), `{"method":"GET","path":"/wat/whoami","internal":true}`) {
		t.Fatalf("declaration does not mark the internal route: %s", m.Declaration())
	}
	const rid = "req-1"
	tp := traceparent.New()

	t.Run("a call answers the callee's response, read with grow and retry, called once", func(t *testing.T) {
		before := rec.n()
		resp, err := requestAs(t, m, "POST /wat/call", `{"hello":"callee"}`, rid, tp)
		if err != nil || resp.Status != 200 || string(resp.Body) != `{"hello":"callee"}` {
			t.Fatalf("err=%v status=%d body=%q", err, resp.Status, resp.Body)
		}
		// The guest read the result twice (a 4-byte buffer, then a large
		// one): the callee ran once.
		if n := rec.n() - before; n != 1 {
			t.Fatalf("the callee ran %d times, want 1", n)
		}
		call := rec.seen[len(rec.seen)-1]
		if call.Caller != "conformance" || call.Callee != "conformance" || call.Depth != 1 || call.Retryable {
			t.Fatalf("call %+v: want caller and callee conformance, depth 1, POST not retryable", call)
		}
	})
	t.Run("consumer, request id and trace context are the host's", func(t *testing.T) {
		resp, err := requestAs(t, m, "GET /wat/call-whoami", "", rid, tp)
		if err != nil || resp.Status != 200 || string(resp.Body) != "service:conformance" {
			t.Fatalf("err=%v status=%d body=%q: the callee must see consumer service:conformance", err, resp.Status, resp.Body)
		}
		req := rec.reqs[len(rec.reqs)-1]
		if string(req.RequestID) != rid {
			t.Fatalf("request id %q, want the caller's %q", req.RequestID, rid)
		}
		child := string(req.TraceParent)
		if !traceparent.Valid(child) || traceparent.TraceID(child) != traceparent.TraceID(tp) || child[36:52] == tp[36:52] || child[52:] != tp[52:] {
			t.Fatalf("traceparent %q, want a child span of %q (same trace and flags, new span id)", child, tp)
		}
		if !rec.seen[len(rec.seen)-1].Retryable {
			t.Fatal("a GET call is idempotent, so retryable")
		}
		// Without a caller trace context, the call starts a trace.
		if _, err := requestAs(t, m, "GET /wat/call-whoami", "", rid, ""); err != nil {
			t.Fatal(err)
		}
		if tp := string(rec.reqs[len(rec.reqs)-1].TraceParent); !traceparent.Valid(tp) {
			t.Fatalf("traceparent %q of a call from an invocation without one", tp)
		}
	})
	t.Run("an ungranted callee is denied and never called", func(t *testing.T) {
		before := rec.n()
		resp, err := requestAs(t, m, "GET /wat/call-denied", "", rid, tp)
		if err != nil || resp.Status != 403 || !strings.Contains(string(resp.Body), `not granted calling "not-granted" (grants.calls)`) {
			t.Fatalf("err=%v status=%d body=%q", err, resp.Status, resp.Body)
		}
		if n := rec.n() - before; n != 0 {
			t.Fatalf("the Caller ran %d times for a denied call", n)
		}
	})
	t.Run("a bad pointer is an error code, and nothing is called", func(t *testing.T) {
		before := rec.n()
		resp, err := requestAs(t, m, "GET /wat/call-badptr", "", rid, tp)
		if err != nil || resp.Status != 200 || !strings.Contains(string(resp.Body), "outside guest memory") {
			t.Fatalf("err=%v status=%d body=%q", err, resp.Status, resp.Body)
		}
		if n := rec.n() - before; n != 0 {
			t.Fatalf("the Caller ran %d times for a bad pointer", n)
		}
	})
	t.Run("a callee that traps is the caller's error code, not a trap", func(t *testing.T) {
		env := granted(nil)
		env.Grants.Calls = []string{"*"}
		env.Call = func(ctx context.Context, call *host.ServiceCall, resp *abi.Response) error {
			return fmt.Errorf("callee: %w", runtime.ErrTrap)
		}
		m := conformance(t, env)
		resp, err := requestAs(t, m, "POST /wat/call", `{}`, rid, tp)
		if err != nil || resp.Status != 502 || !strings.Contains(string(resp.Body), "guest trapped") {
			t.Fatalf("err=%v status=%d body=%q", err, resp.Status, resp.Body)
		}
	})
}

// callOp adds an op to s: call service name with req and flags.
func callOp(s *script, name string, req abi.CallRequest, flags int32) {
	n := s.put([]byte(name))
	r := req.Append(nil)
	p := s.put(r)
	s.call(fnCall, 1, n, uint32(len(name)), p, uint32(len(r)), uint32(flags))
}

func getReq(path string) abi.CallRequest {
	return abi.CallRequest{Method: []byte("GET"), Path: []byte(path)}
}

// runAt runs s in an invocation at call depth depth.
func runAt(tb testing.TB, m *runtime.Module, s *script, depth int) []int32 {
	tb.Helper()
	c := &runtime.Call{Input: s.input(), Data: &host.Invocation{Depth: depth}}
	if err := m.Invoke(context.Background(), runtime.EntryHTTP, c); err != nil {
		tb.Fatalf("invoke: %v", err)
	}
	res := make([]int32, len(c.Output)/4)
	for i := range res {
		res[i] = int32(binary.LittleEndian.Uint32(c.Output[4*i:]))
	}
	return res
}

// coded is an error with an ABI code, as the mesh client's faults are.
type coded abi.Code

func (c coded) Error() string  { return "coded " + abi.Code(c).String() }
func (c coded) Code() abi.Code { return abi.Code(c) }

func TestCallChecksAndResults(t *testing.T) {
	const (
		badPointer  = -int32(abi.CodeBadPointer)
		notFound    = -int32(abi.CodeNotFound)
		tooLarge    = -int32(abi.CodeTooLarge)
		denied      = -int32(abi.CodeDenied)
		invalid     = -int32(abi.CodeInvalid)
		unavailable = -int32(abi.CodeUnavailable)
		timeout     = -int32(abi.CodeTimeout)
		internal    = -int32(abi.CodeInternal)
	)
	body := []byte(`{"id":"42"}`)
	okResp := abi.Response{Status: 200, Headers: []abi.Pair{{Key: []byte("content-type"), Value: []byte("application/json")}}, Body: body}
	okLen := int32(len(okResp.Append(nil)))
	newEnv := func(rec *calls, answer func(call *host.ServiceCall, resp *abi.Response) error) *host.Env {
		env := hostileEnv()
		env.Grants.Calls = []string{"user"}
		env.Call = func(_ context.Context, call *host.ServiceCall, resp *abi.Response) error {
			rec.add(call)
			if answer != nil {
				return answer(call, resp)
			}
			*resp = okResp
			return nil
		}
		return env
	}

	t.Run("the result is read, grown and read again without calling again", func(t *testing.T) {
		rec := &calls{}
		m := hostile(t, newEnv(rec, nil))
		var s script
		callOp(&s, "user", getReq("/users/42"), 0)
		small := s.put(make([]byte, 8))
		big := s.put(make([]byte, 256))
		s.call(fnCallResult, 1, small, 8)
		s.call(fnCallResult, 1, big, 256)
		s.call(fnCallResult, 1, big, 256)
		res := runAt(t, m, &s, 0)
		want(t, res, okLen, okLen, okLen, okLen)
		if rec.n() != 1 {
			t.Fatalf("the Caller ran %d times, want 1", rec.n())
		}
	})
	t.Run("denied never calls", func(t *testing.T) {
		rec := &calls{}
		m := hostile(t, newEnv(rec, nil))
		var s script
		callOp(&s, "order", getReq("/orders/1"), 0)
		buf := s.put(make([]byte, 64))
		s.call(fnCallResult, 1, buf, 64)
		want(t, runAt(t, m, &s, 0), denied, notFound)
		if rec.n() != 0 {
			t.Fatal("the Caller ran for an ungranted callee")
		}
		msg := lastError(t, m, func(s *script) { callOp(s, "order", getReq("/"), 0) })
		if msg != `service hostile is not granted calling "order" (grants.calls)` {
			t.Fatalf("message %q", msg)
		}
	})
	t.Run("bad pointers", func(t *testing.T) {
		rec := &calls{}
		m := hostile(t, newEnv(rec, nil))
		var s script
		name := s.put([]byte("user"))
		r := getReq("/")
		req := s.put(r.Append(nil))
		s.call(fnCall, 1, badPtr, 4, req, 20, 0)
		s.call(fnCall, 1, name, 4, badPtr, 20, 0)
		s.call(fnCall, 1, name, 4, req, 0xFFFFFFFF, 0)
		callOp(&s, "user", getReq("/"), 0)
		s.call(fnCallResult, 1, badPtr, 64)
		want(t, runAt(t, m, &s, 0), badPointer, badPointer, badPointer, okLen, badPointer)
		if rec.n() != 1 {
			t.Fatalf("the Caller ran %d times, want once (the one good call)", rec.n())
		}
	})
	t.Run("depth", func(t *testing.T) {
		rec := &calls{}
		m := hostile(t, newEnv(rec, nil))
		var s script
		callOp(&s, "user", getReq("/"), 0)
		want(t, runAt(t, m, &s, abi.MaxCallDepth-1), okLen)
		if d := rec.seen[0].Depth; d != abi.MaxCallDepth {
			t.Fatalf("callee depth %d, want %d", d, abi.MaxCallDepth)
		}
		want(t, runAt(t, m, &s, abi.MaxCallDepth), invalid)
		if rec.n() != 1 {
			t.Fatal("the Caller ran past the call depth")
		}
	})
	t.Run("requests the binding refuses", func(t *testing.T) {
		rec := &calls{}
		env := newEnv(rec, nil)
		env.MaxCallBytes = 1024
		m := hostile(t, env)
		for _, tc := range []struct {
			name   string
			callee string
			req    abi.CallRequest
			flags  int32
			code   int32
		}{
			{"not a service name", "User", getReq("/"), 0, invalid},
			{"long name", strings.Repeat("u", 64), getReq("/"), 0, tooLarge},
			{"undefined flag", "user", getReq("/"), 2, invalid},
			{"body over the cap", "user", abi.CallRequest{Method: []byte("POST"), Path: []byte("/"), Body: bytes.Repeat([]byte("1"), 1024)}, 0, tooLarge},
			{"body not JSON", "user", abi.CallRequest{Method: []byte("POST"), Path: []byte("/"), Body: []byte("{nope")}, 0, invalid},
			{"lower-case method", "user", abi.CallRequest{Method: []byte("get"), Path: []byte("/")}, 0, invalid},
			{"forged request id", "user", abi.CallRequest{Method: []byte("GET"), Path: []byte("/"),
				Headers: []abi.Pair{{Key: []byte("x-request-id"), Value: []byte("forged")}}}, 0, invalid},
		} {
			var s script
			callOp(&s, tc.callee, tc.req, tc.flags)
			if res := runAt(t, m, &s, 0); res[0] != tc.code {
				t.Errorf("%s: %d, want %d", tc.name, res[0], tc.code)
			}
		}
		var s script
		n := s.put([]byte("user"))
		s.call(fnCall, 1, n, 4, n, 3, 0) // a request cut short
		want(t, runAt(t, m, &s, 0), invalid)
		if rec.n() != 0 {
			t.Fatalf("the Caller ran %d times for refused requests", rec.n())
		}
	})
	t.Run("errors become codes, and leave no result", func(t *testing.T) {
		for _, tc := range []struct {
			err  error
			code int32
		}{
			{coded(abi.CodeNotFound), notFound},
			{fmt.Errorf("wrapped: %w", coded(abi.CodeUnavailable)), unavailable},
			{context.DeadlineExceeded, timeout},
			{fmt.Errorf("callee: %w", runtime.ErrTimeout), timeout},
			{fmt.Errorf("callee: %w", runtime.ErrTooLarge), tooLarge},
			{fmt.Errorf("callee: %w", runtime.ErrTrap), internal},
			{errors.New("no route to the callee"), unavailable},
		} {
			rec := &calls{}
			m := hostile(t, newEnv(rec, func(call *host.ServiceCall, resp *abi.Response) error {
				if string(call.Request.Path) == "/fail" {
					return tc.err
				}
				*resp = okResp
				return nil
			}))
			// In one invocation: a good call, read; then a failed call,
			// after which call_result must not answer the earlier response.
			var s script
			callOp(&s, "user", getReq("/"), 0)
			buf := s.put(make([]byte, 256))
			s.call(fnCallResult, 1, buf, 256)
			callOp(&s, "user", getReq("/fail"), 0)
			s.call(fnCallResult, 1, buf, 256)
			res := runAt(t, m, &s, 0)
			if !slicesEqual(res, []int32{okLen, okLen, tc.code, notFound}) {
				t.Errorf("%v: results %v, want [%d %d %d %d]", tc.err, res, okLen, okLen, tc.code, notFound)
			}
		}
	})
	t.Run("a response past the cap", func(t *testing.T) {
		rec := &calls{}
		env := newEnv(rec, func(_ *host.ServiceCall, resp *abi.Response) error {
			*resp = abi.Response{Status: 200, Body: bytes.Repeat([]byte("x"), 2000)}
			return nil
		})
		env.MaxCallBytes = 1024
		m := hostile(t, env)
		var s script
		callOp(&s, "user", getReq("/"), 0)
		want(t, runAt(t, m, &s, 0), tooLarge)
	})
	t.Run("a status out of range", func(t *testing.T) {
		m := hostile(t, newEnv(&calls{}, func(_ *host.ServiceCall, resp *abi.Response) error {
			*resp = abi.Response{Status: 42}
			return nil
		}))
		var s script
		callOp(&s, "user", getReq("/"), 0)
		want(t, runAt(t, m, &s, 0), internal)
	})
	t.Run("calls per invocation are capped", func(t *testing.T) {
		rec := &calls{}
		env := newEnv(rec, nil)
		env.MaxCalls = 2
		m := hostile(t, env)
		var s script
		callOp(&s, "user", getReq("/"), 0)
		s.ops = append(s.ops, s.ops[0], s.ops[0])
		want(t, runAt(t, m, &s, 0), okLen, okLen, tooLarge)
	})
	t.Run("retryable", func(t *testing.T) {
		rec := &calls{}
		m := hostile(t, newEnv(rec, nil))
		var s script
		post := abi.CallRequest{Method: []byte("POST"), Path: []byte("/users"), Body: []byte(`{}`)}
		callOp(&s, "user", post, 0)
		callOp(&s, "user", post, abi.CallRetryable)
		callOp(&s, "user", abi.CallRequest{Method: []byte("DELETE"), Path: []byte("/users/1")}, 0)
		want(t, runAt(t, m, &s, 0), okLen, okLen, okLen)
		if rec.seen[0].Retryable || !rec.seen[1].Retryable || !rec.seen[2].Retryable {
			t.Fatalf("retryable: POST %v, POST marked %v, DELETE %v; want false, true, true",
				rec.seen[0].Retryable, rec.seen[1].Retryable, rec.seen[2].Retryable)
		}
		if got := string(rec.reqs[0].Consumer); got != "service:hostile" {
			t.Fatalf("consumer %q", got)
		}
	})
	t.Run("no Caller", func(t *testing.T) {
		env := hostileEnv()
		env.Grants.Calls = []string{"*"}
		m := hostile(t, env)
		var s script
		callOp(&s, "user", getReq("/"), 0)
		want(t, runAt(t, m, &s, 0), unavailable)
	})
}

// openError is a Caller's failure with a code, as the mesh client's fault
// for an open breaker is: a pointer, the same one while the breaker stays
// open.
type openError struct{ n int }

func (e *openError) Error() string  { return "circuit hostile→user open " + strconv.Itoa(e.n) }
func (e *openError) Code() abi.Code { return abi.CodeUnavailable }

// A call allocates nothing of its own once the invocation's buffers grew,
// a denied one only its message, and a failure repeating the last one
// nothing, its message read with last_error included.
func TestCallAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector drops sync.Pool items")
	}
	body := []byte(`{}`)
	okResp := abi.Response{Status: 200, Headers: []abi.Pair{{Key: []byte("content-type"), Value: []byte("application/json")}}, Body: body}
	same := &openError{1}
	env := hostileEnv()
	env.Grants.Calls = []string{"user", "open"}
	env.Call = func(_ context.Context, call *host.ServiceCall, resp *abi.Response) error {
		if call.Callee == "open" {
			return same
		}
		*resp = okResp
		return nil
	}
	m := hostile(t, env)
	// allocs counts the allocations of an invocation running s.
	allocs := func(s *script) float64 {
		in := s.input()
		inv := &host.Invocation{}
		return testing.AllocsPerRun(20, func() {
			inv.Reset()
			inv.RequestID, inv.TraceParent = "01J9Z3K4XQ8M2N5P7R9T1V3W5Y", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
			c := &runtime.Call{Input: in, Data: inv}
			if err := m.Invoke(context.Background(), runtime.EntryHTTP, c); err != nil {
				t.Fatal(err)
			}
		})
	}
	// perCall is what a call to callee allocates: an invocation making 33
	// less one making 1, over 32; with readError, each call followed by
	// last_error (8 pairs less 1, over 7).
	perCall := func(callee string, readError bool) float64 {
		script := func(n uint32) *script {
			var s script
			if !readError {
				callOp(&s, callee, getReq("/"), 0)
				s.ops[0][1] = n
				return &s
			}
			buf := s.put(make([]byte, 512))
			for range n {
				callOp(&s, callee, getReq("/"), 0)
				s.call(fnLastError, 1, buf, 512)
			}
			return &s
		}
		if !readError {
			return (allocs(script(33)) - allocs(script(1))) / 32
		}
		return (allocs(script(8)) - allocs(script(1))) / 7
	}
	for _, tc := range []struct {
		callee    string
		readError bool
		max       float64
	}{
		{"user", false, 0},
		{"open", false, 0},
		{"open", true, 0},   // last_error copies the message without converting it
		{"order", false, 1}, // not granted: its message
		{"order", true, 1},
	} {
		// With last_error, the invocation's growing output (one result per
		// op) adds about 3 allocations over the 7 pairs: 0.5 of slack, less
		// than the one a conversion of the message would add.
		slack := 0.1
		if tc.readError {
			slack = 0.5
		}
		if got := perCall(tc.callee, tc.readError); got > tc.max+slack {
			t.Errorf("a call to %s (last_error read: %v): %.2f allocations, want at most %v", tc.callee, tc.readError, got, tc.max)
		}
	}
}

// A failure is reported with its own message, whether or not the one
// before it was the same.
func TestCallFailureMessages(t *testing.T) {
	var next error
	env := hostileEnv()
	env.Grants.Calls = []string{"user", "order"}
	env.Call = func(context.Context, *host.ServiceCall, *abi.Response) error { return next }
	m := hostile(t, env)
	a, b := &openError{1}, &openError{2}
	for _, tc := range []struct {
		err    error
		callee string
		want   string
	}{
		{a, "user", `call to "user": circuit hostile→user open 1`},
		{a, "user", `call to "user": circuit hostile→user open 1`},
		{b, "user", `call to "user": circuit hostile→user open 2`},
		{b, "order", `call to "order": circuit hostile→user open 2`},
		{coded(abi.CodeTimeout), "order", `call to "order": coded timeout`},
		{a, "user", `call to "user": circuit hostile→user open 1`},
	} {
		next = tc.err
		if got := lastError(t, m, func(s *script) { callOp(s, tc.callee, getReq("/"), 0) }); got != tc.want {
			t.Errorf("%v to %s: %q, want %q", tc.err, tc.callee, got, tc.want)
		}
	}
}

// TestCallRetryAfter: after a call refused by an open breaker,
// call_retry_after (ABI v1.3) answers how long the breaker stays open, in
// nanoseconds; after a half-open refusal, another failure or a success,
// 0.
func TestCallRetryAfter(t *testing.T) {
	var next error
	env := hostileEnv()
	env.Grants.Calls = []string{"user"}
	env.Call = func(_ context.Context, _ *host.ServiceCall, resp *abi.Response) error {
		resp.Status = 200
		return next
	}
	m := loadWAT(t, "testdata/retry-after.wat", "hostile", env)
	req := getReq("/")
	in := req.Append(nil)
	ask := func() (int32, int64) {
		t.Helper()
		c := &runtime.Call{Input: in, Data: &host.Invocation{}}
		if err := m.Invoke(context.Background(), runtime.EntryHTTP, c); err != nil || len(c.Output) != 12 {
			t.Fatalf("invoke: %v, %d bytes", err, len(c.Output))
		}
		return int32(binary.LittleEndian.Uint32(c.Output)), int64(binary.LittleEndian.Uint64(c.Output[4:]))
	}
	open := func(until time.Time, st mesh.State) error {
		return &fault.Error{Service: "user", Kind: fault.CircuitOpen,
			Err: &mesh.OpenError{Caller: "hostile", Callee: "user", State: st, Until: until}}
	}
	unavailable := -int32(abi.CodeUnavailable)

	next = open(time.Now().Add(5*time.Second), mesh.Open)
	if r, d := ask(); r != unavailable || d <= 4*int64(time.Second) || d > 5*int64(time.Second) {
		t.Fatalf("open for 5 s: call %d, retry after %d ns", r, d)
	}
	for _, tc := range []struct {
		name string
		err  error
		call int32
	}{
		{"half-open", open(time.Time{}, mesh.HalfOpen), unavailable},
		{"open, its time up", open(time.Now().Add(-time.Second), mesh.Open), unavailable},
		{"another failure", coded(abi.CodeUnavailable), unavailable},
		{"a timeout", coded(abi.CodeTimeout), -int32(abi.CodeTimeout)},
		{"an answer", nil, 0},
	} {
		next = tc.err
		r, d := ask()
		if tc.err == nil && r > 0 {
			r = 0 // the response's length
		}
		if r != tc.call || d != 0 {
			t.Errorf("%s: call %d, retry after %d ns; want %d and 0", tc.name, r, d, tc.call)
		}
	}
}
