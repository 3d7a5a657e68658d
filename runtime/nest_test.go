package runtime

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/meshd/meshd/internal/wattest"
)

// lazyDeadline is a context as host/mesh makes for a call: it ends at its
// deadline or with its parent, and makes no timer unless Done is asked
// for (which it counts: the runtime must not ask).
type lazyDeadline struct {
	parent   context.Context
	deadline time.Time
	dones    atomic.Int32
}

func (c *lazyDeadline) Deadline() (time.Time, bool)     { return c.deadline, true }
func (c *lazyDeadline) Value(k any) any                 { return c.parent.Value(k) }
func (c *lazyDeadline) DeadlineParent() context.Context { return c.parent }
func (c *lazyDeadline) Done() <-chan struct{} {
	c.dones.Add(1)
	return c.parent.Done() // wrong at the deadline: the runtime must not rely on it
}
func (c *lazyDeadline) Err() error {
	if err := c.parent.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// A context that ends only at its deadline or with its DeadlineParent
// (host/mesh's call context) is enforced by the instance's own timer and
// a watch on the parent, without its Done: a loop stops at the context's
// deadline, well before the module's timeout, and is the caller's
// deadline, not the module's timeout; the parent's cancellation stops it
// too; and a call that ends in time leaves the instance reusable.
func TestDeadlineContextIsEnforcedWithoutItsDone(t *testing.T) {
	m := loadIO(t, wattest.Build(t, "testdata/guest.wat"), ModuleConfig{Name: "guest", CallTimeout: 10 * time.Second, PoolMax: 1})

	ctx := &lazyDeadline{parent: context.Background(), deadline: time.Now().Add(100 * time.Millisecond)}
	start := time.Now()
	err := m.Invoke(ctx, EntryHTTP, &Call{Input: []byte("l")})
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want the caller's context.DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("stopped after %v: the context's deadline was not enforced", el)
	}

	parent, cancel := context.WithCancel(context.Background())
	ctx = &lazyDeadline{parent: parent, deadline: time.Now().Add(time.Minute)}
	time.AfterFunc(50*time.Millisecond, cancel)
	err = m.Invoke(ctx, EntryHTTP, &Call{Input: []byte("l")})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want the parent's context.Canceled", err)
	}

	ctx = &lazyDeadline{parent: context.Background(), deadline: time.Now().Add(time.Minute)}
	for i := range 3 {
		if i == 1 {
			ctx.dones.Store(0) // the first call may wait for the stopped instance's replacement
		}
		if err := m.Invoke(ctx, EntryHTTP, &Call{Input: []byte("n")}); err != nil {
			t.Fatal(err)
		}
	}
	if n := ctx.dones.Load(); n != 0 {
		t.Fatalf("Done asked for %d times by calls on an idle instance", n)
	}
	if st := m.Stats(); st.Discarded != 2 {
		t.Fatalf("discarded %d instances, want the 2 stopped ones: %+v", st.Discarded, st)
	}
}

// A guest's call into another module (through a host function, with the
// caller's call context as the callee's parent) ends when the caller is
// stopped, with the caller's reason: the callee's instance is linked to the
// caller's call (callCtx.adopt) for that call only, and without a watch of
// its own; a callee whose caller is not stopped runs to its end.
func TestNestedCallStopsWithItsCaller(t *testing.T) {
	inner := loadIO(t, wattest.Build(t, "testdata/guest.wat"), ModuleConfig{Name: "inner", CallTimeout: time.Minute})
	var (
		innerErr atomic.Pointer[error]
		linked   atomic.Bool
		input    atomic.Value
	)
	nested := func(ctx context.Context, r wazero.Runtime) error {
		_, err := ioHostModule(r).NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, _ api.Module, stack []uint64) {
				cc := ctx.(*callCtx)
				done := make(chan struct{})
				go func() { // the link exists while the nested call runs
					for {
						select {
						case <-done:
							return
						case <-time.After(time.Millisecond):
						}
						cc.mu.Lock()
						if cc.child != nil {
							linked.Store(true)
						}
						cc.mu.Unlock()
					}
				}()
				ictx := &lazyDeadline{parent: ctx, deadline: time.Now().Add(time.Minute)}
				err := inner.Invoke(ictx, EntryHTTP, &Call{Input: []byte(input.Load().(string))})
				close(done)
				innerErr.Store(&err)
				stack[0] = 1
			}), nil, []api.ValueType{api.ValueTypeI32}).Export("test_nested").Instantiate(ctx)
		return err
	}
	outer := loadLinked(t, wattest.Build(t, "testdata/nest-call.wat"), nested, ModuleConfig{Name: "outer", CallTimeout: time.Minute})

	input.Store("echo")
	if err := outer.Invoke(context.Background(), EntryHTTP, &Call{}); err != nil || *innerErr.Load() != nil {
		t.Fatalf("a nested call that ends: outer %v, inner %v", err, *innerErr.Load())
	}

	input.Store("l") // the inner guest loops until stopped
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	err := outer.Invoke(ctx, EntryHTTP, &Call{})
	if took := time.Since(began); took > 10*time.Second {
		t.Fatalf("the outer call returned after %s", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("outer: %v, want the caller's deadline", err)
	}
	if ie := *innerErr.Load(); !errors.Is(ie, context.DeadlineExceeded) || errors.Is(ie, ErrTimeout) {
		t.Fatalf("inner: %v, want its caller's context.DeadlineExceeded, not a timeout of its own", ie)
	}
	if !linked.Load() {
		t.Fatal("the inner call was never linked to the outer one")
	}
	if st := inner.Stats(); st.Discarded != 1 {
		t.Fatalf("inner discarded %d instances, want the stopped one: %+v", st.Discarded, st)
	}
	input.Store("echo") // the inner module serves on, linked to a new call
	if err := outer.Invoke(context.Background(), EntryHTTP, &Call{}); err != nil || *innerErr.Load() != nil {
		t.Fatalf("after the stop: outer %v, inner %v", err, *innerErr.Load())
	}
}
