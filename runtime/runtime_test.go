package runtime_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/internal/wattest"
	"github.com/meshd/meshd/runtime"
)

// testHost links the two host functions the test guests use.
func testHost(ctx context.Context, r wazero.Runtime) error {
	i32 := api.ValueTypeI32
	b := r.NewHostModuleBuilder(abi.ModuleName)
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, stack []uint64) {
		c := runtime.CallFrom(ctx)
		buf, capacity := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
		if int(capacity) >= len(c.Input) && !m.Memory().Write(buf, c.Input) {
			stack[0] = api.EncodeI32(c.SetError(abi.CodeBadPointer, "bad buffer"))
			return
		}
		stack[0] = api.EncodeI32(int32(len(c.Input)))
	}), []api.ValueType{i32, i32}, []api.ValueType{i32}).Export(abi.FnInputRead)
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, stack []uint64) {
		c := runtime.CallFrom(ctx)
		p, ok := m.Memory().Read(api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
		if !ok {
			stack[0] = api.EncodeI32(c.SetError(abi.CodeBadPointer, "bad buffer"))
			return
		}
		stack[0] = api.EncodeI32(-int32(c.WriteOutput(p)))
	}), []api.ValueType{i32, i32}, []api.ValueType{i32}).Export(abi.FnOutputWrite)
	_, err := b.Instantiate(ctx)
	return err
}

var (
	guestOnce sync.Once
	guestWasm []byte
)

func guest(tb testing.TB) []byte {
	guestOnce.Do(func() { guestWasm = wattest.Build(tb, "testdata/guest.wat") })
	return guestWasm
}

func newEngine(tb testing.TB) *runtime.Engine {
	tb.Helper()
	e, err := runtime.NewEngine(runtime.EngineConfig{CacheDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = e.Close(context.Background()) })
	return e
}

func load(tb testing.TB, cfg runtime.ModuleConfig) *runtime.Module {
	tb.Helper()
	if cfg.Name == "" {
		cfg.Name = "guest"
	}
	m, err := newEngine(tb).Load(context.Background(), guest(tb), testHost, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

func call(m *runtime.Module, input string) (*runtime.Call, error) {
	c := &runtime.Call{Input: []byte(input)}
	return c, m.Invoke(context.Background(), runtime.EntryHTTP, c)
}

func TestLoadDescribesAndEchoes(t *testing.T) {
	m := load(t, runtime.ModuleConfig{})
	if got := string(m.Declaration()); got != `{"name":"guest"}` {
		t.Fatalf("declaration = %q", got)
	}
	if !m.Has(runtime.EntryHTTP) || m.Has(runtime.EntryEvent) {
		t.Fatalf("Has(http)=%v Has(event)=%v, want true false", m.Has(runtime.EntryHTTP), m.Has(runtime.EntryEvent))
	}
	sum := sha256.Sum256(guest(t))
	if want := hex.EncodeToString(sum[:6]); m.Hash() != want {
		t.Fatalf("hash %q, want %q (the first 12 hex digits of the sha256)", m.Hash(), want)
	}
	c, err := call(m, "echo me")
	if err != nil || c.Code != abi.CodeOK || string(c.Output) != "echo me" {
		t.Fatalf("echo: err=%v code=%v output=%q", err, c.Code, c.Output)
	}
	if err := m.Invoke(context.Background(), runtime.EntryEvent, &runtime.Call{}); !errors.Is(err, runtime.ErrNoEntry) {
		t.Fatalf("event on a module without meshd_event: %v, want ErrNoEntry", err)
	}
	if runtime.CallFrom(context.Background()) != nil {
		t.Fatal("CallFrom outside a call is not nil")
	}
}

func TestGuestCodeIsNotAFailure(t *testing.T) {
	m := load(t, runtime.ModuleConfig{})
	c, err := call(m, "c")
	if err != nil || c.Code != abi.CodeInvalid || string(c.Output) != "bad input" {
		t.Fatalf("err=%v code=%v output=%q, want nil, invalid argument, bad input", err, c.Code, c.Output)
	}
	if st := m.Stats(); st.Discarded != 0 || st.Failures != 0 {
		t.Fatalf("a returned code discarded the instance: %+v", st)
	}
}

// TestFailuresDiscardTheInstance covers each way a call can break: the call
// fails with the right error, the instance is thrown away, and the module
// keeps serving.
func TestFailuresDiscardTheInstance(t *testing.T) {
	for _, tc := range []struct {
		name, input string
		want        error
	}{
		{"trap", "t", runtime.ErrTrap},
		{"endless loop", "l", runtime.ErrTimeout},
		{"memory exhaustion", "m", runtime.ErrTrap},
		{"output past the cap", "o", runtime.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			timeout := 5 * time.Second
			if tc.want == runtime.ErrTimeout {
				timeout = 200 * time.Millisecond
			}
			m := load(t, runtime.ModuleConfig{CallTimeout: timeout, MemoryLimitPages: 64, PoolMax: 1})
			if _, err := call(m, tc.input); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if st := m.Stats(); st.Discarded != 1 || st.Failures != 1 {
				t.Fatalf("stats after failure = %+v, want 1 discarded, 1 failure", st)
			}
			c, err := call(m, "n")
			if err != nil {
				t.Fatalf("call after failure: %v", err)
			}
			if c.Output[0] != 1 {
				t.Fatalf("call after failure ran on an instance that had served %d calls; want a fresh one", c.Output[0])
			}
		})
	}
}

func TestInputCap(t *testing.T) {
	m := load(t, runtime.ModuleConfig{MaxInputBytes: 8})
	if _, err := call(m, "echo more than eight bytes"); !errors.Is(err, runtime.ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if _, err := call(m, "e1234567"); err != nil {
		t.Fatalf("input at the cap: %v", err)
	}
}

func TestCallerCancellationIsNotATimeout(t *testing.T) {
	m := load(t, runtime.ModuleConfig{CallTimeout: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := m.Invoke(ctx, runtime.EntryHTTP, &runtime.Call{Input: []byte("l")})
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, runtime.ErrTimeout) {
		t.Fatalf("err = %v, want the caller's context.DeadlineExceeded", err)
	}
}

func TestRecycleAfterMaxCalls(t *testing.T) {
	m := load(t, runtime.ModuleConfig{PoolMax: 1, MaxCallsPerInstance: 3})
	// The first instance also ran meshd_describe at load, so it serves two.
	var served []byte
	for range 7 {
		c, err := call(m, "n")
		if err != nil {
			t.Fatal(err)
		}
		if c.Output[1] != 1 {
			t.Fatalf("_initialize ran %d times on this instance, want 1", c.Output[1])
		}
		served = append(served, c.Output[0])
	}
	if want := []byte{1, 2, 1, 2, 3, 1, 2}; !bytes.Equal(served, want) {
		t.Fatalf("calls per instance = %v, want %v", served, want)
	}
	if st := m.Stats(); st.Recycled != 2 {
		t.Fatalf("recycled = %d, want 2", st.Recycled)
	}
}

func TestBusyAfterAcquireTimeout(t *testing.T) {
	m := load(t, runtime.ModuleConfig{PoolMax: 1, AcquireTimeout: 50 * time.Millisecond, CallTimeout: 3 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	base := m.Stats().Calls
	go func() { done <- m.Invoke(ctx, runtime.EntryHTTP, &runtime.Call{Input: []byte("l")}) }()
	deadline := time.Now().Add(5 * time.Second)
	for m.Stats().Calls == base && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	_, err := call(m, "e")
	if !errors.Is(err, runtime.ErrBusy) {
		t.Fatalf("err = %v, want ErrBusy", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("looping call: %v, want context.Canceled", err)
	}
	if _, err := call(m, "e"); err != nil {
		t.Fatalf("after the slot freed: %v", err)
	}
	if st := m.Stats(); st.Busy != 1 {
		t.Fatalf("busy = %d, want 1", st.Busy)
	}
}

func TestCloseDrainsInFlightCalls(t *testing.T) {
	m := load(t, runtime.ModuleConfig{CallTimeout: 10 * time.Second})
	done := make(chan error, 1)
	base := m.Stats().Calls
	go func() {
		done <- m.Invoke(context.Background(), runtime.EntryHTTP, &runtime.Call{Input: []byte(strings.Repeat("s", 16))})
	}()
	deadline := time.Now().Add(5 * time.Second)
	for m.Stats().Calls == base && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("in-flight call was not drained: %v", err)
	}
	if _, err := call(m, "e"); !errors.Is(err, runtime.ErrClosed) {
		t.Fatalf("call after close: %v, want ErrClosed", err)
	}
	if err := m.Close(ctx); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestInvalidModulesFailAtLoad(t *testing.T) {
	e := newEngine(t)
	const good = `(func (export "meshd_abi_v1")) (memory (export "memory") 1)`
	for _, tc := range []struct{ name, wat, want string }{
		{"no marker", `(module (memory (export "memory") 1) (func (export "meshd_describe") (result i32) i32.const 0))`, "missing export meshd_abi_v1"},
		{"no describe", `(module ` + good + `)`, "missing export meshd_describe"},
		{"describe signature", `(module ` + good + ` (func (export "meshd_describe") (param i32) (result i32) i32.const 0))`, "export meshd_describe has signature (i32) -> (i32), want () -> (i32)"},
		{"http signature", `(module ` + good + ` (func (export "meshd_describe") (result i32) i32.const 0) (func (export "meshd_http") (result i32) i32.const 0))`, "export meshd_http has signature"},
		{"no memory", `(module (func (export "meshd_abi_v1")) (func (export "meshd_describe") (result i32) i32.const 0))`, "missing export memory"},
		{"foreign import", `(module (import "env" "f" (func)) ` + good + ` (func (export "meshd_describe") (result i32) i32.const 0))`, "imports env.f"},
		{"init traps", `(module ` + good + ` (func (export "_initialize") unreachable) (func (export "meshd_describe") (result i32) i32.const 0))`, "instantiating"},
		{"describe fails", `(module ` + good + ` (func (export "meshd_describe") (result i32) i32.const 8))`, "meshd_describe returned internal error"},
		{"memory over the limit", `(module (func (export "meshd_abi_v1")) (memory (export "memory") 2000) (func (export "meshd_describe") (result i32) i32.const 0))`, "not a valid WebAssembly module"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wasm := wattest.Compile(t, "bad", tc.wat)
			for range 2 { // the second time as well: nothing of it was cached
				_, err := e.Load(context.Background(), wasm, testHost, runtime.ModuleConfig{Name: "bad"})
				if !errors.Is(err, runtime.ErrInvalidModule) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want ErrInvalidModule saying %q", err, tc.want)
				}
			}
		})
	}
	if _, err := e.Load(context.Background(), []byte("\x00asm garbage"), testHost, runtime.ModuleConfig{}); !errors.Is(err, runtime.ErrInvalidModule) {
		t.Fatalf("garbage bytes: %v, want ErrInvalidModule", err)
	}

	// A function body that does not type-check (wat2wasm would refuse to
	// write it, so its bytes are patched: "i32.const 1234567" becomes
	// nops, leaving no result). wazero skips validating the bodies of code
	// it finds compiled in the cache (third_party/wazero); these bytes never
	// compiled, so they are validated each time.
	wasm := wattest.Compile(t, "body", `(module `+good+` (func (export "meshd_describe") (result i32) i32.const 1234567))`)
	konst := []byte{0x41, 0x87, 0xad, 0xcb, 0x00}
	if bytes.Count(wasm, konst) != 1 {
		t.Fatal("i32.const 1234567 not found once in the module")
	}
	wasm = bytes.Replace(wasm, konst, bytes.Repeat([]byte{0x01}, len(konst)), 1)
	for range 2 {
		if _, err := e.Load(context.Background(), wasm, testHost, runtime.ModuleConfig{Name: "body"}); !errors.Is(err, runtime.ErrInvalidModule) || !strings.Contains(err.Error(), "not a valid WebAssembly module") {
			t.Fatalf("invalid function body: %v, want ErrInvalidModule (not a valid WebAssembly module)", err)
		}
	}
}

// Compile needs no host functions; Start links them and runs the module.
func TestCompileThenStart(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	m, err := e.Compile(ctx, guest(t), runtime.ModuleConfig{Name: "guest"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(ctx); err != nil { // never started
		t.Fatalf("close of a compiled module: %v", err)
	}
	m, err = e.Compile(ctx, guest(t), runtime.ModuleConfig{Name: "guest"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx, nil); !errors.Is(err, runtime.ErrInvalidModule) || !strings.Contains(err.Error(), "instantiating") {
		t.Fatalf("start without the host functions it imports: %v, want ErrInvalidModule (instantiating)", err)
	}
	m, err = e.Compile(ctx, guest(t), runtime.ModuleConfig{Name: "guest"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx, testHost); err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	if c, err := call(m, "echo me"); err != nil || string(c.Output) != "echo me" {
		t.Fatalf("echo after Start: %v %q", err, c.Output)
	}
}

// A caller that has already hashed the bytes passes the sum, and the
// module's identity is taken from it, not computed again. (A wrong sum, as
// here, would also key the compilation cache wrongly; this engine's cache
// is a temporary directory of this test.)
func TestCompileTakesTheCallersHash(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	var sum [32]byte
	copy(sum[:], "given hash, not the bytes' own!!")
	m, err := e.Compile(ctx, guest(t), runtime.ModuleConfig{Name: "guest", SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	if want := hex.EncodeToString(sum[:6]); m.Hash() != want {
		t.Fatalf("hash %q, want %q from the given sum", m.Hash(), want)
	}
}

func TestCompilationCacheIsWritten(t *testing.T) {
	dir := t.TempDir()
	e, err := runtime.NewEngine(runtime.EngineConfig{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	m, err := e.Load(context.Background(), guest(t), testHost, runtime.ModuleConfig{})
	if err != nil {
		t.Fatal(err)
	}
	_ = m.Close(context.Background())
	_ = e.Close(context.Background())
	var files int
	_ = walk(dir, func() { files++ })
	if files == 0 {
		t.Fatal("no compiled code in the cache directory")
	}
}

func walk(dir string, f func()) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			_ = walk(dir+"/"+e.Name(), f)
		} else {
			f()
		}
	}
	return nil
}

// TestPoolHammer runs echo and trapping calls from many goroutines; with
// -race it proves the pool never shares an instance and never leaks one.
func TestPoolHammer(t *testing.T) {
	m := load(t, runtime.ModuleConfig{PoolMax: 3, PoolMin: 2, MaxCallsPerInstance: 50, AcquireTimeout: 10 * time.Second})
	const workers, calls = 8, 150
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &runtime.Call{}
			for i := range calls {
				in := []byte{'e', byte(w), byte(i)}
				if i%25 == 7 {
					in[0] = 't'
				}
				c.Reset()
				c.Input = append(c.Input, in...)
				err := m.Invoke(context.Background(), runtime.EntryHTTP, c)
				switch {
				case in[0] == 't' && !errors.Is(err, runtime.ErrTrap):
					errs <- err
					return
				case in[0] == 'e' && (err != nil || !bytes.Equal(c.Output, in)):
					errs <- errors.New("echo mismatch or error")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := m.Stats()
	if st.Live > 3 || st.Calls != workers*calls+1 || st.Discarded != workers*6 {
		t.Fatalf("stats = %+v; want live <= 3, %d calls, %d discarded", st, workers*calls+1, workers*6)
	}
}

// TestLoopingGuestDoesNotHoldUpGC runs a guest that loops forever (until its
// 30 s deadline) and asks for a garbage collection meanwhile: the
// collection must finish while the guest is still looping. Compiled guest
// code reaches a Go preemption point only where wazero's termination check
// exits to Go (every 1000 loop iterations with meshd's wazero patch, see
// third_party/wazero/MESHD-PATCH.md); without one, the stop-the-world would
// wait for the call to end. Broken, this test hangs rather than fails (with
// WithCloseOnContextDone off it hung until killed): the test binary's own
// timeout cannot fire while the world is being stopped.
func TestLoopingGuestDoesNotHoldUpGC(t *testing.T) {
	m := load(t, runtime.ModuleConfig{CallTimeout: 30 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base := m.Stats().Calls
	looping := make(chan error, 1)
	go func() { looping <- m.Invoke(ctx, runtime.EntryHTTP, &runtime.Call{Input: []byte("l")}) }()
	for deadline := time.Now().Add(10 * time.Second); m.Stats().Calls == base; {
		if time.Now().After(deadline) {
			t.Fatal("the looping call did not start")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // well inside the loop now
	collected := make(chan struct{})
	go func() { goruntime.GC(); close(collected) }()
	select {
	case <-collected:
	case err := <-looping:
		t.Fatalf("the guest call ended (%v) before a garbage collection could finish", err)
	}
	cancel()
	if err := <-looping; !errors.Is(err, context.Canceled) {
		t.Fatalf("looping call: %v, want context.Canceled", err)
	}
}
