package runtime

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/internal/wattest"
)

// ioHost links input_read and output_write, the two host functions the
// snapshot test guests import.
func ioHost(ctx context.Context, r wazero.Runtime) error {
	_, err := ioHostModule(r).Instantiate(ctx)
	return err
}

// ioHostModule is ioHost's module, to add functions to.
func ioHostModule(r wazero.Runtime) wazero.HostModuleBuilder {
	i32 := api.ValueTypeI32
	b := r.NewHostModuleBuilder(abi.ModuleName)
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, stack []uint64) {
		c := CallFrom(ctx)
		buf, capacity := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
		in := c.Input[:min(len(c.Input), int(capacity))]
		if !m.Memory().Write(buf, in) {
			stack[0] = api.EncodeI32(c.SetError(abi.CodeBadPointer, "bad buffer"))
			return
		}
		stack[0] = api.EncodeI32(int32(len(in)))
	}), []api.ValueType{i32, i32}, []api.ValueType{i32}).Export(abi.FnInputRead)
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, stack []uint64) {
		c := CallFrom(ctx)
		p, ok := m.Memory().Read(api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
		if !ok {
			stack[0] = api.EncodeI32(c.SetError(abi.CodeBadPointer, "bad buffer"))
			return
		}
		stack[0] = api.EncodeI32(-int32(c.WriteOutput(p)))
	}), []api.ValueType{i32, i32}, []api.ValueType{i32}).Export(abi.FnOutputWrite)
	return b
}

// loadIO loads wasm linked with ioHost.
func loadIO(tb testing.TB, wasm []byte, cfg ModuleConfig) *Module {
	tb.Helper()
	return loadLinked(tb, wasm, ioHost, cfg)
}

// loadLinked loads wasm linked with link, on an engine of its own.
func loadLinked(tb testing.TB, wasm []byte, link func(context.Context, wazero.Runtime) error, cfg ModuleConfig) *Module {
	tb.Helper()
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

type testKey struct{}

// seen is what a host function saw of its context during a call.
type seen struct {
	ctx      context.Context
	call     *Call
	deadline time.Time
	hasDL    bool
	value    any
	err      error
}

// seeingHost is ioHost with an input_read that records its context.
func seeingHost(got *seen) HostModule {
	return func(ctx context.Context, r wazero.Runtime) error {
		i32 := api.ValueTypeI32
		b := r.NewHostModuleBuilder(abi.ModuleName)
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, stack []uint64) {
			c := CallFrom(ctx)
			*got = seen{ctx: ctx, call: c, value: ctx.Value(testKey{}), err: ctx.Err()}
			got.deadline, got.hasDL = ctx.Deadline()
			buf, capacity := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
			in := c.Input[:min(len(c.Input), int(capacity))]
			m.Memory().Write(buf, in)
			stack[0] = api.EncodeI32(int32(len(in)))
		}), []api.ValueType{i32, i32}, []api.ValueType{i32}).Export(abi.FnInputRead)
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, stack []uint64) {
			p, _ := m.Memory().Read(api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
			stack[0] = api.EncodeI32(-int32(CallFrom(ctx).WriteOutput(p)))
		}), []api.ValueType{i32, i32}, []api.ValueType{i32}).Export(abi.FnOutputWrite)
		_, err := b.Instantiate(ctx)
		return err
	}
}

// TestCallContext: a host function sees, through the instance's reused
// call context, the running Call, the caller's values, the earlier of the
// call's and the caller's deadlines, and no error; after the call the
// context no longer gives the Call.
func TestCallContext(t *testing.T) {
	var got seen
	ctx := context.Background()
	e, err := NewEngine(EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	m, err := e.Load(ctx, wattest.Build(t, "testdata/guest.wat"), seeingHost(&got), ModuleConfig{Name: "guest", CallTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)

	c := &Call{Input: []byte("e hello")}
	before := time.Now()
	if err := m.Invoke(context.WithValue(ctx, testKey{}, "caller's"), EntryHTTP, c); err != nil || string(c.Output) != "e hello" {
		t.Fatalf("echo: %q, %v", c.Output, err)
	}
	if got.call != c || got.value != "caller's" || got.err != nil {
		t.Fatalf("host function saw call %p (want %p), value %v, err %v", got.call, c, got.value, got.err)
	}
	if !got.hasDL || got.deadline.Before(before.Add(10*time.Second)) || got.deadline.After(time.Now().Add(10*time.Second)) {
		t.Fatalf("deadline %v (%v): want the call's, 10s after the call began", got.deadline, got.hasDL)
	}
	if CallFrom(got.ctx) != nil {
		t.Fatal("the context still gives the Call after it returned")
	}

	// A caller's earlier deadline is the one host functions see.
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	want, _ := short.Deadline()
	if err := m.Invoke(short, EntryHTTP, c); err != nil {
		t.Fatal(err)
	}
	if !got.deadline.Equal(want) {
		t.Fatalf("deadline %v, want the caller's %v", got.deadline, want)
	}

	// A caller's context already done: the call does not run, and the
	// instance is not harmed.
	done, cancelDone := context.WithCancel(ctx)
	cancelDone()
	if err := m.Invoke(done, EntryHTTP, c); !errors.Is(err, context.Canceled) {
		t.Fatalf("done caller: %v, want context.Canceled", err)
	}
	if st := m.Stats(); st.Discarded != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestDeadlineRearmedOnReuse: the instance's deadline timer is armed for
// every call: after many quick calls on one instance, a looping call is
// still stopped at its deadline (and its instance is thrown away), and the
// next call gets a working instance.
func TestDeadlineRearmedOnReuse(t *testing.T) {
	ctx := context.Background()
	m := loadIO(t, wattest.Build(t, "testdata/guest.wat"), ModuleConfig{Name: "guest", PoolMax: 1, CallTimeout: 300 * time.Millisecond})
	c := &Call{}
	for range 200 {
		c.Input = []byte("e")
		if err := m.Invoke(ctx, EntryHTTP, c); err != nil {
			t.Fatal(err)
		}
	}
	loop := &Call{Input: []byte("l")}
	res := make(chan error, 1)
	go func() { res <- m.Invoke(ctx, EntryHTTP, loop) }()
	select {
	case err := <-res:
		var te *TimeoutError
		if !errors.As(err, &te) {
			t.Fatalf("looping call: %v, want a TimeoutError", err)
		}
	case <-time.After(20 * time.Second):
		stop, cancel := context.WithTimeout(ctx, time.Millisecond)
		defer cancel()
		_ = m.Close(stop) // gives up on the call rather than wait for it
		t.Fatal("looping call not stopped within 20s of its 300ms deadline")
	}
	c.Input = []byte("n")
	if err := m.Invoke(ctx, EntryHTTP, c); err != nil || len(c.Output) != 2 || c.Output[0] != 1 {
		t.Fatalf("next call: %v %v, want a fresh instance's first call", c.Output, err)
	}
	if st := m.Stats(); st.Discarded != 1 {
		t.Fatalf("stats: %+v", st)
	}
}
