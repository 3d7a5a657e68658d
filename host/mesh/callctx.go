package mesh

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// callContext is the context a call's target runs under: the caller's
// values and cancellation, the call's deadline and its depth, in one
// allocation and without a timer. A call to a local instance never asks
// for Done: the runtime arms its own per-instance timer at the deadline
// and watches the caller's context (DeadlineParent). context.WithDeadline
// and WithValue cost a local call five allocations, a timer started and
// stopped, and, with the runtime watching the timer context, three more.
//
// Whoever asks for Done gets a real context made then (the caller's
// context with the deadline): a remote target's request, a derived
// context, a wait between retries. Err needs no Done: it reads the
// caller's context and the clock.
type callContext struct {
	parent   context.Context
	deadline time.Time
	depth    int

	mu    sync.Mutex
	timed atomic.Pointer[timed] // made by the first Done
}

type timed struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func newCallContext(parent context.Context, deadline time.Time, depth int) *callContext {
	return &callContext{parent: parent, deadline: deadline, depth: depth}
}

func (c *callContext) Deadline() (time.Time, bool) { return c.deadline, true }

// Done is the channel of the caller's context with the deadline, made on
// the first call.
func (c *callContext) Done() <-chan struct{} {
	if t := c.timed.Load(); t != nil {
		return t.ctx.Done()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.timed.Load()
	if t == nil {
		ctx, cancel := context.WithDeadline(c.parent, c.deadline)
		t = &timed{ctx: ctx, cancel: cancel}
		c.timed.Store(t)
	}
	return t.ctx.Done()
}

// Err is the caller's context's error, else DeadlineExceeded once the
// deadline passed; once Done was asked for, that context's Err, so that Err
// is nil while Done is open.
func (c *callContext) Err() error {
	if t := c.timed.Load(); t != nil {
		return t.ctx.Err()
	}
	if err := c.parent.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// Value is the call's depth for depthKey, else the caller's value; once
// Done was asked for, the context made then answers (a context derived
// from this one then registers with it, not with a goroutine of its own).
func (c *callContext) Value(key any) any {
	if _, ok := key.(depthKey); ok {
		return c.depth
	}
	if t := c.timed.Load(); t != nil {
		return t.ctx.Value(key)
	}
	return c.parent.Value(key)
}

// DeadlineParent is the context whose end, besides the deadline, ends this
// one: a runtime that enforces the deadline itself watches it instead.
func (c *callContext) DeadlineParent() context.Context { return c.parent }

// release frees the context Done made, if any: the call is over.
func (c *callContext) release() {
	if t := c.timed.Load(); t != nil {
		t.cancel()
	}
}

func (c *callContext) String() string { return "mesh.callContext" }
