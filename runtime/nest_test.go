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

// nestedCtx is a call's context as host/mesh makes it: the caller's
// context (here the outer instance's call context) with a deadline, ended
// by either.
type nestedCtx struct {
	context.Context // the caller's
	deadline        time.Time
}

func (c nestedCtx) Deadline() (time.Time, bool)     { return c.deadline, true }
func (c nestedCtx) DeadlineParent() context.Context { return c.Context }
func (c nestedCtx) Err() error {
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// A guest's call into another module (through a host function, with the
// caller's call context as the callee's parent) ends when the caller is
// stopped, with the caller's reason: the callee's instance is linked to the
// caller's call (callCtx.adopt) for that call only, and without a watch of
// its own; a callee whose caller is not stopped runs to its end.
func TestNestedCallStopsWithItsCaller(t *testing.T) {
	inner := load1(t, wattest.Build(t, "testdata/guest.wat"), nil, ModuleConfig{Name: "inner", CallTimeout: time.Minute})
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
				err := inner.Invoke(nestedCtx{ctx, time.Now().Add(time.Minute)}, EntryHTTP, &Call{Input: []byte(input.Load().(string))})
				close(done)
				innerErr.Store(&err)
				stack[0] = 1
			}), nil, []api.ValueType{api.ValueTypeI32}).Export("test_nested").Instantiate(ctx)
		return err
	}
	outer := load1(t, wattest.Build(t, "testdata/nest-call.wat"), nested, ModuleConfig{Name: "outer", CallTimeout: time.Minute})

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

// load1 loads wasm linked with link (ioHost when nil).
func load1(tb testing.TB, wasm []byte, link func(context.Context, wazero.Runtime) error, cfg ModuleConfig) *Module {
	tb.Helper()
	if link == nil {
		link = ioHost
	}
	ctx := context.Background()
	e, err := NewEngine(EngineConfig{CacheDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = e.Close(ctx) })
	m, err := e.Load(ctx, wasm, link, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = m.Close(ctx) })
	return m
}
