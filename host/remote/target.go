package remote

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/fault"
	"github.com/meshd/meshd/host/mesh"
	"github.com/nats-io/nats.go"
)

// DefaultTimeout bounds a call whose context has no deadline (the mesh
// client always gives one).
const DefaultTimeout = 5 * time.Second

// Target sends calls of one service to the nodes serving it: a mesh.Target
// for a callee with no instance on this node. NATS hands each call to one
// node of the service's queue group. It is safe for concurrent use and
// holds nothing but memory.
type Target struct {
	nc       *nats.Conn
	service  string
	subject  string
	inflight atomic.Int64
}

// NewTarget returns the Target of service over nc.
func NewTarget(nc *nats.Conn, service string) (*Target, error) {
	subj, err := Subject(service)
	if err != nil {
		return nil, err
	}
	if nc == nil {
		return nil, errors.New("remote: NewTarget: nil connection")
	}
	return &Target{nc: nc, service: service, subject: subj}, nil
}

// Service is the service the Target calls.
func (t *Target) Service() string { return t.service }

// InFlight is how many calls through t are waiting for their answer.
func (t *Target) InFlight() int { return int(t.inflight.Load()) }

// bufPool holds request encoding buffers; a buffer grown past maxPooled is
// dropped rather than kept.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const maxPooled = 64 << 10

// Invoke sends req to a node serving the service and fills resp with its
// answer, by ctx's deadline (DefaultTimeout when ctx has none). resp
// aliases the reply's data, which nothing else holds. Failures are
// *fault.Error: Unavailable when no node serves the service (at once) or
// the connection is closed, Timeout at the deadline, TooLarge when the
// request does not fit the connection's maximum payload, Failed for a
// garbled answer, and the callee node's kind for a failure there.
func (t *Target) Invoke(ctx context.Context, req *abi.Request, resp *abi.Response) error {
	t.inflight.Add(1)
	defer t.inflight.Add(-1)

	dl, ok := ctx.Deadline()
	if !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
		dl, _ = ctx.Deadline()
	}
	left := time.Until(dl)
	if left <= 0 || ctx.Err() != nil {
		return t.ctxError(ctx, ctx.Err())
	}
	// The callee's node gets a little less than the time left, so that
	// its answer (a timeout included) comes back before the caller stops
	// waiting: a tenth of it, at most 10 ms.
	left -= min(left/10, 10*time.Millisecond)

	bp := bufPool.Get().(*[]byte)
	data := appendFrame((*bp)[:0], left, mesh.DepthFrom(ctx))
	data = req.Append(data)
	defer func() {
		if cap(data) <= maxPooled {
			*bp = data[:0]
			bufPool.Put(bp)
		}
	}()
	if limit := t.nc.MaxPayload() - headerRoom; int64(len(data)) > limit {
		return fault.New(t.service, fault.TooLarge,
			fmt.Errorf("remote: call to %s: request of %d bytes passes the %d bytes a NATS message may carry", t.service, len(data), limit))
	}
	reply, err := t.nc.RequestWithContext(ctx, t.subject, data)
	if err != nil {
		return t.requestError(ctx, err)
	}
	if name := reply.Header.Get(HeaderFault); name != "" {
		fe := fault.New(t.service, kindOf(name), &RemoteError{
			Node:    boundedNode(reply.Header.Get(HeaderNode)),
			Message: bounded(reply.Header.Get(HeaderError), MaxErrorBytes),
		})
		if ms, err := strconv.ParseInt(reply.Header.Get(HeaderRetry), 10, 32); err == nil && ms > 0 {
			fe.RetryAfter = time.Duration(ms) * time.Millisecond
		}
		return fe
	}
	if err := resp.Decode(reply.Data); err != nil {
		return fault.New(t.service, fault.Failed,
			fmt.Errorf("remote: call to %s: garbled answer of %d bytes: %w", t.service, len(reply.Data), err))
	}
	return nil
}

// requestError classifies an error of a NATS request.
func (t *Target) requestError(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fault.New(t.service, fault.Unavailable,
			fmt.Errorf("remote: call to %s: no node serves it: %w", t.service, err))
	case ctx.Err() != nil:
		return t.ctxError(ctx, err)
	case errors.Is(err, nats.ErrTimeout):
		return fault.New(t.service, fault.Timeout, fmt.Errorf("remote: call to %s: %w", t.service, err))
	case errors.Is(err, nats.ErrMaxPayload):
		return fault.New(t.service, fault.TooLarge, fmt.Errorf("remote: call to %s: %w", t.service, err))
	default:
		// The connection is closed, draining or reconnecting: nothing
		// can serve the call through it now.
		return fault.New(t.service, fault.Unavailable, fmt.Errorf("remote: call to %s: %w", t.service, err))
	}
}

// ctxError is the error of a call whose context ended: Timeout at its
// deadline, else Unavailable (the caller went away).
func (t *Target) ctxError(ctx context.Context, err error) error {
	if err == nil {
		err = ctx.Err()
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return fault.New(t.service, fault.Timeout, fmt.Errorf("remote: call to %s ran past its deadline: %w", t.service, err))
	}
	return fault.New(t.service, fault.Unavailable, fmt.Errorf("remote: call to %s: the caller went away: %w", t.service, err))
}

// boundedNode keeps a node name from a reply when it is plain and short,
// else an escaped excerpt.
func boundedNode(s string) string {
	if s == "" {
		return ""
	}
	return bounded(s, MaxNodeBytes)
}

// Interface guards.
var _ mesh.Target = (*Target)(nil)
