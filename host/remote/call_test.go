package remote

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/fault"
	"github.com/meshd/meshd/host/mesh"
	"github.com/meshd/meshd/runtime"
)

// serve starts a Server on b answering service with h.
func serve(t *testing.T, b *node, service string, h Handler, cfg ServerConfig) *Server {
	t.Helper()
	if cfg.Node == "" {
		cfg.Node = "node-b"
	}
	s, err := NewServer(b.nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(ctxFor(t, 20*time.Second)); err != nil {
			t.Error(err)
		}
	})
	if err := s.Serve(service, h); err != nil {
		t.Fatal(err)
	}
	return s
}

func target(t *testing.T, a *node, service string) *Target {
	t.Helper()
	tg, err := NewTarget(a.nc, service)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// kindOfErr returns err's fault kind, failing the test when err is not a
// *fault.Error.
func kindOfErr(t *testing.T, err error) fault.Kind {
	t.Helper()
	var fe *fault.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *fault.Error", err, err)
	}
	return fe.Kind
}

func TestForwardCarriesTheRequest(t *testing.T) {
	ns := startNATS(t)
	a, b := connect(t, ns), connect(t, ns)

	type seen struct {
		method, path, query, route, id, tp, consumer, body string
		headers                                            []string
		params                                             []string
		left                                               time.Duration
		hasDeadline                                        bool
		depth                                              int
	}
	got := make(chan seen, 1)
	serve(t, b, "orders", func(ctx context.Context, req *abi.Request, resp *abi.Response) error {
		var s seen
		s.method, s.path, s.query, s.route = string(req.Method), string(req.Path), string(req.Query), string(req.Route)
		s.id, s.tp, s.consumer, s.body = string(req.RequestID), string(req.TraceParent), string(req.Consumer), string(req.Body)
		for _, h := range req.Headers {
			s.headers = append(s.headers, string(h.Key)+"="+string(h.Value))
		}
		for _, p := range req.Params {
			s.params = append(s.params, string(p.Key)+"="+string(p.Value))
		}
		var dl time.Time
		dl, s.hasDeadline = ctx.Deadline()
		s.left = time.Until(dl)
		s.depth = mesh.DepthFrom(ctx)
		got <- s
		resp.Status = 201
		resp.Headers = []abi.Pair{{Key: []byte("content-type"), Value: []byte("application/json")}}
		resp.Body = []byte(`{"id":"o-1","echo":` + string(req.Body) + `}`)
		return nil
	}, ServerConfig{})

	tg := target(t, a, "orders")
	req := &abi.Request{
		Method: []byte("POST"), Path: []byte("/orders/o-1"), Query: []byte("x=1"), Route: []byte("POST /orders/{id}"),
		Params:      []abi.Pair{{Key: []byte("id"), Value: []byte("o-1")}},
		Headers:     []abi.Pair{{Key: []byte("content-type"), Value: []byte("application/json")}, {Key: []byte("x-a"), Value: []byte("1")}, {Key: []byte("x-a"), Value: []byte("2")}},
		Consumer:    []byte("service:gateway"),
		RequestID:   []byte("req-42"),
		TraceParent: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
		Body:        []byte(`{"sku":"a"}`),
	}
	ctx, cancel := context.WithTimeout(mesh.WithDepth(context.Background(), 2), 3*time.Second)
	defer cancel()
	var resp abi.Response
	if err := tg.Invoke(ctx, req, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Status != 201 || string(resp.Body) != `{"id":"o-1","echo":{"sku":"a"}}` {
		t.Errorf("response %d %q", resp.Status, resp.Body)
	}
	if len(resp.Headers) != 1 || string(resp.Headers[0].Key) != "content-type" || string(resp.Headers[0].Value) != "application/json" {
		t.Errorf("response headers %q", resp.Headers)
	}
	s := <-got
	want := seen{method: "POST", path: "/orders/o-1", query: "x=1", route: "POST /orders/{id}", id: "req-42",
		tp: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", consumer: "service:gateway", body: `{"sku":"a"}`}
	if s.method != want.method || s.path != want.path || s.query != want.query || s.route != want.route ||
		s.id != want.id || s.tp != want.tp || s.consumer != want.consumer || s.body != want.body {
		t.Errorf("handler saw %+v\nwant %+v", s, want)
	}
	if strings.Join(s.headers, ",") != "content-type=application/json,x-a=1,x-a=2" {
		t.Errorf("headers %q", s.headers)
	}
	if strings.Join(s.params, ",") != "id=o-1" {
		t.Errorf("params %q", s.params)
	}
	if s.depth != 2 {
		t.Errorf("depth %d, want 2", s.depth)
	}
	// The callee's deadline is the caller's less a margin: at most 3 s,
	// and not much less (the call took well under a second).
	if !s.hasDeadline || s.left > 3*time.Second || s.left < 2*time.Second {
		t.Errorf("callee's deadline in %v (set %v), want within (2s, 3s]", s.left, s.hasDeadline)
	}
	if tg.InFlight() != 0 {
		t.Errorf("InFlight %d after the call", tg.InFlight())
	}
}

func TestForwardKeepsTheCalleesFaultKind(t *testing.T) {
	ns := startNATS(t)
	a, b := connect(t, ns), connect(t, ns)
	tests := []struct {
		name  string
		err   error
		kind  fault.Kind
		retry time.Duration
	}{
		{"busy", fmt.Errorf("pool: %w", runtime.ErrBusy), fault.Busy, time.Second},
		{"not found", fault.New("users", fault.NotFound, errors.New("no user u-1")), fault.NotFound, 0},
		{"denied", fault.New("users", fault.Denied, errors.New("no grant")), fault.Denied, 0},
		{"store refused", fault.New("users", fault.StoreRefused, errors.New("disk full")), fault.StoreRefused, fault.StoreRetryAfter},
		{"circuit open", &fault.Error{Kind: fault.CircuitOpen, Err: errors.New("open"), RetryAfter: 1500 * time.Millisecond}, fault.CircuitOpen, 1500 * time.Millisecond},
		{"overloaded", &fault.Error{Kind: fault.Overloaded, Err: errors.New("shed"), RetryAfter: 3 * time.Second}, fault.Overloaded, 3 * time.Second},
		{"unclassified", errors.New("trap: unreachable \x00\n\"quoted\""), fault.Failed, 0},
	}
	var which atomic.Int32
	serve(t, b, "users", func(ctx context.Context, req *abi.Request, resp *abi.Response) error {
		return tests[which.Load()].err
	}, ServerConfig{})
	tg := target(t, a, "users")
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			which.Store(int32(i))
			var resp abi.Response
			err := tg.Invoke(ctxFor(t, 5*time.Second), &abi.Request{Method: []byte("GET")}, &resp)
			if k := kindOfErr(t, err); k != tt.kind {
				t.Fatalf("kind %v, want %v (%v)", k, tt.kind, err)
			}
			fe := fault.Classify("users", err)
			if fe.Retry() != tt.retry {
				t.Errorf("Retry-After %v, want %v", fe.Retry(), tt.retry)
			}
			var re *RemoteError
			if !errors.As(err, &re) || re.Node != "node-b" {
				t.Fatalf("error %v carries no RemoteError from node-b", err)
			}
			msg := err.Error()
			if strings.ContainsAny(msg, "\x00\n") {
				t.Errorf("message %q carries control bytes", msg)
			}
			if len(re.Message) > MaxErrorBytes {
				t.Errorf("message of %d bytes, want at most %d", len(re.Message), MaxErrorBytes)
			}
		})
	}
}

func TestForwardBoundsTheCalleesMessage(t *testing.T) {
	ns := startNATS(t)
	a, b := connect(t, ns), connect(t, ns)
	serve(t, b, "users", func(ctx context.Context, req *abi.Request, resp *abi.Response) error {
		return errors.New(strings.Repeat("é\r\n", 10000))
	}, ServerConfig{})
	err := target(t, a, "users").Invoke(ctxFor(t, 5*time.Second), &abi.Request{}, &abi.Response{})
	var re *RemoteError
	if !errors.As(err, &re) {
		t.Fatalf("error %v carries no RemoteError", err)
	}
	if len(re.Message) > MaxErrorBytes || !strings.HasSuffix(re.Message, "bytes)") || strings.ContainsAny(re.Message, "\r\né") {
		t.Errorf("message (%d bytes) %q: want escaped, at most %d bytes, marked as cut", len(re.Message), re.Message, MaxErrorBytes)
	}
}

func TestNoRespondersIsUnavailableAtOnce(t *testing.T) {
	ns := startNATS(t)
	a := connect(t, ns)
	tg := target(t, a, "nobody")
	start := time.Now()
	err := tg.Invoke(ctxFor(t, 10*time.Second), &abi.Request{}, &abi.Response{})
	if k := kindOfErr(t, err); k != fault.Unavailable {
		t.Fatalf("kind %v, want unavailable (%v)", k, err)
	}
	// Liveness, not speed: NATS answers "no responders" itself, so the
	// call must not wait for its 10 s deadline.
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %v: waited for the deadline instead of the no-responders status", took)
	}
}

func TestDeadlineIsHonoured(t *testing.T) {
	ns := startNATS(t)
	a, b := connect(t, ns), connect(t, ns)
	calleeEnded := make(chan error, 1)
	serve(t, b, "slow", func(ctx context.Context, req *abi.Request, resp *abi.Response) error {
		select {
		case <-ctx.Done():
			calleeEnded <- ctx.Err()
			return fmt.Errorf("handler: %w", ctx.Err())
		case <-time.After(30 * time.Second):
			calleeEnded <- nil
			return nil
		}
	}, ServerConfig{})
	tg := target(t, a, "slow")
	const timeout = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	err := tg.Invoke(ctx, &abi.Request{}, &abi.Response{})
	took := time.Since(start)
	if k := kindOfErr(t, err); k != fault.Timeout {
		t.Fatalf("kind %v, want timeout (%v)", k, err)
	}
	// The caller gets its answer by its deadline plus a slack for a
	// shared, loaded machine (liveness: the handler would run 30 s).
	if took > timeout+2*time.Second {
		t.Errorf("took %v for a %v deadline", took, timeout)
	}
	// The callee's context ended too: its node did not keep running the
	// call after the caller gave up.
	select {
	case err := <-calleeEnded:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("callee ended with %v, want its deadline", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the callee's handler is still running 10 s after the deadline")
	}
}

func TestServerBoundsConcurrentCalls(t *testing.T) {
	ns := startNATS(t)
	a, b := connect(t, ns), connect(t, ns)
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	srv := serve(t, b, "held", func(ctx context.Context, req *abi.Request, resp *abi.Response) error {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}, ServerConfig{MaxInFlight: 2})
	tg := target(t, a, "held")
	done := startHeld(t, tg, started, 2)
	if n := tg.InFlight(); n != 2 {
		t.Errorf("InFlight %d with two calls held, want 2", n)
	}
	if n := srv.InFlight("held"); n != 2 {
		t.Errorf("Server.InFlight %d with two calls held, want 2", n)
	}
	err := tg.Invoke(ctxFor(t, 20*time.Second), &abi.Request{}, &abi.Response{})
	if k := kindOfErr(t, err); k != fault.Busy {
		t.Errorf("third call: kind %v, want busy (%v)", k, err)
	}
	close(release)
	for range 2 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func TestBadInput(t *testing.T) {
	if _, err := NewTarget(nil, "a.b"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("NewTarget(a.b): %v, want ErrInvalidName", err)
	}
	if _, err := Subject("orders.>"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Subject(orders.>): %v", err)
	}
	if s, err := Subject("orders"); err != nil || s != "meshd.svc.orders" {
		t.Errorf("Subject(orders) = %q, %v", s, err)
	}
	ns := startNATS(t)
	a, b := connect(t, ns), connect(t, ns)
	if _, err := NewServer(b.nc, ServerConfig{Node: "bad node\n"}); err == nil {
		t.Error("NewServer accepted a node name with a space and a newline")
	}
	s := serve(t, b, "svc", func(ctx context.Context, req *abi.Request, resp *abi.Response) error { return nil }, ServerConfig{})
	if err := s.Serve("Svc*", func(context.Context, *abi.Request, *abi.Response) error { return nil }); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Serve(Svc*): %v", err)
	}
	// A request without its frame, or with garbage in it or after it, is
	// refused as invalid, not run.
	body := (&abi.Request{}).Append(nil)
	// A request of another frame version (a node of another meshd
	// version, as in a rolling upgrade) is unavailable here: the caller
	// may try another node.
	for _, tc := range []struct {
		name string
		data []byte
		kind string
	}{
		{"empty", nil, "invalid"},
		{"short frame", []byte{FrameVersion, 1, 0, 0}, "invalid"},
		{"another version", append([]byte{FrameVersion + 1, 0xe8, 3, 0, 0, 0}, body...), "unavailable"},
		{"the previous version's request", body, "unavailable"},
		{"no deadline", append([]byte{FrameVersion, 0, 0, 0, 0, 0}, body...), "invalid"},
		{"too deep", append([]byte{FrameVersion, 0xe8, 3, 0, 0, mesh.MaxDepth + 1}, body...), "invalid"},
		{"garbled request", []byte{FrameVersion, 0xe8, 3, 0, 0, 0, 1, 2, 3}, "invalid"},
	} {
		reply, err := a.nc.Request("meshd.svc.svc", tc.data, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got := reply.Header.Get(HeaderFault); got != tc.kind {
			t.Errorf("%s: fault %q, want %s", tc.name, got, tc.kind)
		}
		if got := reply.Header.Get(HeaderError); got == "" || len(got) > MaxErrorBytes {
			t.Errorf("%s: message %q, want 1 to %d bytes", tc.name, got, MaxErrorBytes)
		}
	}
	// The same frame with a good deadline and depth is run.
	reply, err := a.nc.Request("meshd.svc.svc", append([]byte{FrameVersion, 0xe8, 3, 0, 0, 0}, body...), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := reply.Header.Get(HeaderFault); got != "" {
		t.Errorf("good frame: fault %q (%s)", got, reply.Header.Get(HeaderError))
	}
	// A call that succeeded is answered without headers.
	if len(reply.Header) != 0 {
		t.Errorf("answer with headers %v, want none", reply.Header)
	}
	var resp abi.Response
	if err := resp.Decode(reply.Data); err != nil {
		t.Errorf("answer: %v", err)
	}
}

func TestRequestPastMaxPayloadIsTooLarge(t *testing.T) {
	ns := startNATS(t)
	a := connect(t, ns)
	tg := target(t, a, "big")
	body := make([]byte, a.nc.MaxPayload()) // with the other fields, past it
	err := tg.Invoke(ctxFor(t, 5*time.Second), &abi.Request{Body: body}, &abi.Response{})
	if k := kindOfErr(t, err); k != fault.TooLarge {
		t.Fatalf("kind %v, want too large (%v)", k, err)
	}
}

func TestAnswerPastMaxPayloadIsFailed(t *testing.T) {
	ns := startNATS(t)
	a, b := connect(t, ns), connect(t, ns)
	serve(t, b, "big", func(ctx context.Context, req *abi.Request, resp *abi.Response) error {
		resp.Status = 200
		resp.Body = make([]byte, b.nc.MaxPayload())
		return nil
	}, ServerConfig{})
	err := target(t, a, "big").Invoke(ctxFor(t, 5*time.Second), &abi.Request{}, &abi.Response{})
	if k := kindOfErr(t, err); k != fault.Failed {
		t.Fatalf("kind %v, want failed (%v)", k, err)
	}
}

func TestHandlerPanicIsFailed(t *testing.T) {
	ns := startNATS(t)
	a, b := connect(t, ns), connect(t, ns)
	serve(t, b, "panicky", func(ctx context.Context, req *abi.Request, resp *abi.Response) error {
		panic("boom")
	}, ServerConfig{})
	err := target(t, a, "panicky").Invoke(ctxFor(t, 5*time.Second), &abi.Request{}, &abi.Response{})
	if k := kindOfErr(t, err); k != fault.Failed || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("kind %v, want failed with the panic's value (%v)", k, err)
	}
}

// startHeld sends n calls to tg, each on its own goroutine, and waits until
// the handler has reported each started on started (the handler holds
// them). It returns where the calls' results arrive.
func startHeld(t *testing.T, tg *Target, started <-chan struct{}, n int) <-chan error {
	t.Helper()
	done := make(chan error, n)
	for range n {
		go func() { done <- tg.Invoke(ctxFor(t, 20*time.Second), &abi.Request{}, &abi.Response{}) }()
	}
	for i := range n {
		select {
		case <-started:
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of %d calls started within 20 s", i, n)
		}
	}
	return done
}
