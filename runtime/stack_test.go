package runtime_test

import (
	"context"
	"errors"
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/meshd/meshd/internal/wattest"
	"github.com/meshd/meshd/runtime"
)

// stackAllocBound is the most Go heap a call that overflows a stack limit
// of limit bytes may allocate: its stacks, the last at most the limit and
// the ones it outgrew (each at most half the next) less than twice that,
// plus 4 MiB for the rest of the process meanwhile (allocatedBy, in
// table_test.go, counts the whole process's allocations: the pool
// refilling the discarded instance, the test's own).
func stackAllocBound(limit int) uint64 { return uint64(3*limit + 4<<20) }

// invokeDepth calls stack-depth.wat's meshd_http, which recurses depth
// calls deep (0: without end).
func invokeDepth(m *runtime.Module, depth int) error {
	return m.Invoke(context.Background(), runtime.EntryHTTP, &runtime.Call{Input: make([]byte, depth)})
}

func loadStackGuest(t *testing.T, wat string, cfg runtime.ModuleConfig) (*runtime.Module, error) {
	t.Helper()
	cfg.Name = "stack"
	m, err := newEngine(t).Load(context.Background(), wattest.Build(t, wat), testHost, cfg)
	if err == nil {
		t.Cleanup(func() { _ = m.Close(context.Background()) })
	}
	return m, err
}

// TestStackOverflowIsBounded: a guest that recurses without end traps
// (ErrTrap, wazero's stack overflow) at the stack limit, and the call
// allocates no more Go heap than that limit allows. Without the limit
// wazero grew the stack to about 84 MB, allocating about 170 MB in the
// call, for each instance running one.
func TestStackOverflowIsBounded(t *testing.T) {
	m, err := loadStackGuest(t, "testdata/stack-depth.wat", runtime.ModuleConfig{PoolMax: 1})
	if err != nil {
		t.Fatal(err)
	}
	// A modest depth works, and warms the instance.
	if err := invokeDepth(m, 1000); err != nil {
		t.Fatalf("1000 calls deep: %v", err)
	}
	goruntime.GC()
	allocated := allocatedBy(func() { err = invokeDepth(m, 0) })
	if !errors.Is(err, runtime.ErrTrap) || !strings.Contains(err.Error(), "stack overflow") {
		t.Fatalf("recursion without end: %v, want %v (stack overflow)", err, runtime.ErrTrap)
	}
	bound := stackAllocBound(runtime.DefaultMaxStackBytes)
	t.Logf("%v; %d KiB allocated (bound %d KiB)", err, allocated>>10, bound>>10)
	if allocated > bound {
		t.Fatalf("the call allocated %d KiB of Go heap, bound %d KiB for a stack limit of %d KiB",
			allocated>>10, bound>>10, runtime.DefaultMaxStackBytes>>10)
	}
	// The pool replaced the instance: the module still answers.
	if err := invokeDepth(m, 1000); err != nil {
		t.Fatalf("after the overflow: %v", err)
	}
}

// TestMaxStackBytesIsHonoured: a depth that needs more than the default
// stack limit but less than 8 MiB traps under the default and returns
// under MaxStackBytes = 8 MiB.
func TestMaxStackBytesIsHonoured(t *testing.T) {
	// A frame of stack-depth.wat's f takes 56 bytes: 2.8 MB (the default
	// limit holds 18,722 of them).
	const depth = 50_000
	def, err := loadStackGuest(t, "testdata/stack-depth.wat", runtime.ModuleConfig{PoolMax: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := invokeDepth(def, depth); !errors.Is(err, runtime.ErrTrap) {
		t.Fatalf("%d calls deep under the default limit of %d KiB: %v, want %v",
			depth, runtime.DefaultMaxStackBytes>>10, err, runtime.ErrTrap)
	}
	const big = 8 << 20
	large, err := loadStackGuest(t, "testdata/stack-depth.wat", runtime.ModuleConfig{PoolMax: 1, MaxStackBytes: big})
	if err != nil {
		t.Fatal(err)
	}
	if err := invokeDepth(large, depth); err != nil {
		t.Fatalf("%d calls deep under a limit of %d KiB: %v", depth, big>>10, err)
	}
	goruntime.GC()
	allocated := allocatedBy(func() { err = invokeDepth(large, 0) })
	if !errors.Is(err, runtime.ErrTrap) {
		t.Fatalf("recursion without end under a limit of %d KiB: %v, want %v", big>>10, err, runtime.ErrTrap)
	}
	if bound := stackAllocBound(big); allocated > bound {
		t.Fatalf("the call allocated %d KiB of Go heap, bound %d KiB for a stack limit of %d KiB",
			allocated>>10, bound>>10, big>>10)
	}
}

// TestInitialiserStackOverflowIsBounded: the initialiser runs under the
// stack limit too: an initialiser recursing without end fails the load
// at the limit.
func TestInitialiserStackOverflowIsBounded(t *testing.T) {
	wasm := wattest.Build(t, "testdata/stack-init.wat")
	e := newEngine(t)
	var err error
	goruntime.GC()
	allocated := allocatedBy(func() {
		var m *runtime.Module
		m, err = e.Load(context.Background(), wasm, testHost, runtime.ModuleConfig{Name: "stack", PoolMax: 1})
		if err == nil {
			_ = m.Close(context.Background())
		}
	})
	if !errors.Is(err, runtime.ErrInvalidModule) || !strings.Contains(err.Error(), "stack overflow") {
		t.Fatalf("load: %v, want %v (stack overflow)", err, runtime.ErrInvalidModule)
	}
	if bound := stackAllocBound(runtime.DefaultMaxStackBytes); allocated > bound {
		t.Fatalf("the load allocated %d KiB of Go heap, bound %d KiB for a stack limit of %d KiB",
			allocated>>10, bound>>10, runtime.DefaultMaxStackBytes>>10)
	}
}

// TestMaxStackBytesOutOfRange: a stack limit outside its bounds is
// refused with ErrInvalidConfig.
func TestMaxStackBytesOutOfRange(t *testing.T) {
	for _, n := range []int{-1, runtime.MinMaxStackBytes - 1, runtime.MaxMaxStackBytes + 1} {
		_, err := loadStackGuest(t, "testdata/stack-depth.wat", runtime.ModuleConfig{MaxStackBytes: n})
		if !errors.Is(err, runtime.ErrInvalidConfig) {
			t.Errorf("MaxStackBytes %d: %v, want %v", n, err, runtime.ErrInvalidConfig)
		}
	}
	for _, n := range []int{runtime.MinMaxStackBytes, runtime.MaxMaxStackBytes} {
		if _, err := loadStackGuest(t, "testdata/stack-depth.wat", runtime.ModuleConfig{MaxStackBytes: n}); err != nil {
			t.Errorf("MaxStackBytes %d: %v", n, err)
		}
	}
}
