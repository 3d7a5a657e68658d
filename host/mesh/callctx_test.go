package mesh

import (
	"context"
	"errors"
	"testing"
	"time"
)

type ctxKey struct{}

// The call context answers Err from its parent and the clock alone, with
// no Done made; Done, once asked for, closes at the deadline or with the
// parent, and Err then agrees with it; depth and the parent's values read
// through.
func TestCallContext(t *testing.T) {
	parent := context.WithValue(context.Background(), ctxKey{}, "v")

	c := newCallContext(parent, time.Now().Add(30*time.Millisecond), 3)
	if c.Err() != nil || DepthFrom(c) != 3 || c.Value(ctxKey{}) != "v" {
		t.Fatalf("fresh: err %v, depth %d, value %v", c.Err(), DepthFrom(c), c.Value(ctxKey{}))
	}
	if d, ok := c.Deadline(); !ok || !d.Equal(c.deadline) {
		t.Fatalf("deadline %v %v", d, ok)
	}
	time.Sleep(40 * time.Millisecond)
	if !errors.Is(c.Err(), context.DeadlineExceeded) || c.timed.Load() != nil {
		t.Fatalf("past the deadline without Done: err %v, Done made: %v", c.Err(), c.timed.Load() != nil)
	}
	c.release()

	c = newCallContext(parent, time.Now().Add(30*time.Millisecond), 1)
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done did not close at the deadline")
	}
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Fatalf("err %v after Done closed", c.Err())
	}
	c.release()

	p, cancel := context.WithCancel(parent)
	c = newCallContext(p, time.Now().Add(time.Hour), 1)
	if c.DeadlineParent() != p {
		t.Fatal("DeadlineParent is not the parent")
	}
	derived, stop := context.WithCancel(c) // asks for Done, registers with it
	defer stop()
	if c.Err() != nil || derived.Err() != nil {
		t.Fatalf("before the cancel: %v, %v", c.Err(), derived.Err())
	}
	cancel()
	select {
	case <-derived.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a context derived from the call's did not end with the caller's")
	}
	if !errors.Is(c.Err(), context.Canceled) || DepthFrom(derived) != 1 || derived.Value(ctxKey{}) != "v" {
		t.Fatalf("after the cancel: err %v, depth %d, value %v", c.Err(), DepthFrom(derived), derived.Value(ctxKey{}))
	}
	c.release()

	// Cancelled without Done: Err says so at once.
	p, cancel = context.WithCancel(parent)
	c = newCallContext(p, time.Now().Add(time.Hour), 1)
	cancel()
	if !errors.Is(c.Err(), context.Canceled) {
		t.Fatalf("err %v after the parent's cancel", c.Err())
	}
}
