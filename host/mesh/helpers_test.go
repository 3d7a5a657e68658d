package mesh

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/fault"
)

// target is a Target whose behaviour is a function of the attempt number
// (1-based, over all calls it received).
type target struct {
	name     string
	load     int // added to InFlight, to make it look busy
	inflight atomic.Int64
	calls    atomic.Int64
	fn       func(ctx context.Context, n int64, req *abi.Request, resp *abi.Response) error

	mu   sync.Mutex
	seen []seenReq // requests as the target saw them
}

type seenReq struct {
	consumer, requestID, traceParent string
	depth                            int
	deadline                         time.Time
	hasDeadline                      bool
}

func (t *target) Invoke(ctx context.Context, req *abi.Request, resp *abi.Response) error {
	t.inflight.Add(1)
	defer t.inflight.Add(-1)
	n := t.calls.Add(1)
	dl, ok := ctx.Deadline()
	t.mu.Lock()
	t.seen = append(t.seen, seenReq{string(req.Consumer), string(req.RequestID), string(req.TraceParent), DepthFrom(ctx), dl, ok})
	t.mu.Unlock()
	if t.fn == nil {
		resp.Status = 200
		return nil
	}
	return t.fn(ctx, n, req, resp)
}

func (t *target) InFlight() int { return t.load + int(t.inflight.Load()) }

func (t *target) requests() []seenReq {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]seenReq(nil), t.seen...)
}

func resolveTo(ts ...Target) Resolver {
	return func(string) []Target { return ts }
}

// status answers every attempt with code.
func status(code uint32) func(context.Context, int64, *abi.Request, *abi.Response) error {
	return func(_ context.Context, _ int64, _ *abi.Request, resp *abi.Response) error {
		resp.Status = code
		return nil
	}
}

// failing fails every attempt with kind.
func failing(kind fault.Kind) func(context.Context, int64, *abi.Request, *abi.Response) error {
	return func(context.Context, int64, *abi.Request, *abi.Response) error {
		return fault.New("user", kind, errors.New("target failed"))
	}
}

func newClient(t testing.TB, resolve Resolver, opts ...Option) *Client {
	t.Helper()
	c, err := New(resolve, append([]Option{WithLogger(slog.New(slog.DiscardHandler))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func get() *abi.Request  { return &abi.Request{Method: []byte("GET"), Path: []byte("/users/1")} }
func post() *abi.Request { return &abi.Request{Method: []byte("POST"), Path: []byte("/users")} }

// kindOf returns err's fault kind, failing the test when err is not a
// *fault.Error.
func kindOf(t *testing.T, err error) fault.Kind {
	t.Helper()
	var fe *fault.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *fault.Error", err, err)
	}
	return fe.Kind
}

// eventually polls cond every 5 ms until it holds or 10 s have passed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// quiet are options that keep breakers out of a test about something else.
var quiet = WithDefaultBreakerSettings(Settings{ConsecutiveFailures: maxConsecutive, MinRequests: maxConsecutive})

// fast makes retries wait at most 2 ms.
var fast = WithBackoff(time.Millisecond, 2*time.Millisecond)
