package runtime_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/meshd/meshd/internal/wattest"
	"github.com/meshd/meshd/runtime"
)

var payload1K = append([]byte{'e'}, bytes.Repeat([]byte("x"), 1023)...)

// BenchmarkNativeEcho1K is the baseline for BenchmarkInvokeEcho1K: the same
// copy-in, copy-out work as a plain Go function call.
func BenchmarkNativeEcho1K(b *testing.B) {
	echo := func(c *runtime.Call) {
		in := append([]byte(nil), c.Input...)
		c.Output = append(c.Output[:0], in...)
	}
	c := &runtime.Call{Input: payload1K}
	b.ReportAllocs()
	b.SetBytes(int64(len(payload1K)))
	for b.Loop() {
		echo(c)
	}
}

// BenchmarkInvokeEcho1K is one pooled call through the ABI: acquire an
// instance, input_read 1 KiB into guest memory, output_write it back,
// release. The deadline machinery (WithCloseOnContextDone) is on.
func BenchmarkInvokeEcho1K(b *testing.B) {
	m := load(b, runtime.ModuleConfig{})
	c := &runtime.Call{Input: payload1K}
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(int64(len(payload1K)))
	for b.Loop() {
		if err := m.Invoke(ctx, runtime.EntryHTTP, c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInvokeParallel measures the pool under contention (PoolMax 4).
func BenchmarkInvokeParallel(b *testing.B) {
	m := load(b, runtime.ModuleConfig{PoolMin: 4, PoolMax: 4})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c := &runtime.Call{Input: []byte("e small")}
		for pb.Next() {
			if err := m.Invoke(context.Background(), runtime.EntryHTTP, c); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkLoad measures a full load from the warm compilation cache:
// compile (cached), validate, instantiate one instance, describe.
func BenchmarkLoad(b *testing.B) {
	e := newEngine(b)
	wasm := guest(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		m, err := e.Load(ctx, wasm, testHost, runtime.ModuleConfig{})
		if err != nil {
			b.Fatal(err)
		}
		_ = m.Close(ctx)
	}
}

// BenchmarkInvokeCallTree is the worst case for the termination checks at
// function entry and after calls (third_party/wazero/MESHD-PATCH.md,
// change 9): a call whose guest does nothing but make 2^13 calls
// (term-recursion.wat at depth 12), each of them paying both.
func BenchmarkInvokeCallTree(b *testing.B) {
	ctx := context.Background()
	m, err := newEngine(b).Load(ctx, wattest.Build(b, "testdata/term-recursion.wat"), testHost, runtime.ModuleConfig{Name: "term"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Close(ctx) })
	c := &runtime.Call{Input: make([]byte, 12)}
	for b.Loop() {
		if err := m.Invoke(ctx, runtime.EntryHTTP, c); err != nil {
			b.Fatal(err)
		}
	}
}
