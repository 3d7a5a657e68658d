package runtime

import (
	"context"
	"sync"
	"time"

	"github.com/tetratelabs/wazero/experimental"
)

// callCtx is the context of every call into one instance, made once with
// the instance and reused, so that a call costs no context, no timer and
// no goroutine of its own (a call of a few hundred nanoseconds paid more
// for those than for itself):
//   - Done is the instance's stop channel. It closes once, when a call must
//     stop: its deadline passed (the instance's timer, armed for each call)
//     or its caller's context ended (context.AfterFunc, registered for the
//     call when the caller's context can end). wazero closes the instance
//     then (WithCloseOnContextDone; it watches this context once, as an
//     instance context), and a stopped instance is never reused.
//   - Err is the reason: context.DeadlineExceeded or the caller's error.
//   - Deadline is the earlier of the call's and the caller's.
//   - Value gives the running Call for callKey (CallFrom), then the
//     caller's values.
//
// Between calls parent is context.Background and call nil. Host functions
// use it only during the call, on the call's goroutine: a context derived
// from it must be cancelled before the host function returns (go vet's
// lostcancel), or it stays registered with the instance until the
// instance is closed.
type callCtx struct {
	context.Context // the instance's stop context
	stop            context.CancelCauseFunc
	parent          context.Context
	call            *Call
	deadline        time.Time

	// child is the instance running the call this call waits on (a
	// service call to a local callee), stopped when this call is: the
	// callee watches its caller this way instead of with a
	// context.AfterFunc (three allocations and a lock per call). mu
	// guards it; a parent's mu is taken before its child's.
	mu    sync.Mutex
	child *callCtx
}

// halt stops the call with cause, and the call it waits on with it.
func (c *callCtx) halt(cause error) {
	c.stop(cause)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.child != nil {
		c.child.halt(cause)
	}
}

// adopt makes child the call c waits on, stopped when c is (at once when c
// already is); false when c has one already.
func (c *callCtx) adopt(child *callCtx) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.child != nil {
		return false
	}
	c.child = child
	if c.Context.Err() != nil {
		child.halt(c.Err())
	}
	return true
}

// disown ends adopt: child's call is over.
func (c *callCtx) disown() {
	c.mu.Lock()
	c.child = nil
	c.mu.Unlock()
}

func newCallCtx() *callCtx {
	// An instance context (our fork's change 14): wazero watches it once
	// for the instance's life instead of once per call.
	stopCtx, stop := context.WithCancelCause(experimental.WithInstanceContext(context.Background()))
	return &callCtx{Context: stopCtx, stop: stop, parent: context.Background()}
}

// Deadline is the call's deadline, or the caller's when it is earlier.
func (c *callCtx) Deadline() (time.Time, bool) {
	if d, ok := c.parent.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, !c.deadline.IsZero()
}

// Err is nil until the instance is stopped, then why.
func (c *callCtx) Err() error {
	if c.Context.Err() == nil {
		return nil
	}
	return context.Cause(c.Context)
}

// Value is the running Call for callKey; the stop context answers next
// (so that contexts derived from this one, and wazero's watch, register
// with it rather than start a goroutine); then the caller's context.
func (c *callCtx) Value(key any) any {
	if _, ok := key.(callKey); ok {
		return c.call
	}
	if v := c.Context.Value(key); v != nil {
		return v
	}
	return c.parent.Value(key)
}
