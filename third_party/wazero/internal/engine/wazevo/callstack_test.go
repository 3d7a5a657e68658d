package wazevo_test

import (
	"context"
	"runtime"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/internal/testing/binaryencoding"
	"github.com/tetratelabs/wazero/internal/testing/require"
	"github.com/tetratelabs/wazero/internal/wasm"
	"github.com/tetratelabs/wazero/internal/wasmruntime"
)

// recursionModule returns a module whose function 0, exported as "f",
// counts its depth in the exported global "depth" and calls itself
// without end; with start, it is also the start function.
func recursionModule(start bool) []byte {
	m := &wasm.Module{
		TypeSection:     []wasm.FunctionType{{}},
		FunctionSection: []wasm.Index{0},
		GlobalSection: []wasm.Global{{
			Type: wasm.GlobalType{ValType: wasm.ValueTypeI32, Mutable: true},
			Init: wasm.ConstantExpression{Data: []byte{wasm.OpcodeI32Const, 0, wasm.OpcodeEnd}},
		}},
		CodeSection: []wasm.Code{{Body: []byte{
			wasm.OpcodeGlobalGet, 0,
			wasm.OpcodeI32Const, 1,
			wasm.OpcodeI32Add,
			wasm.OpcodeGlobalSet, 0,
			wasm.OpcodeCall, 0,
			wasm.OpcodeEnd,
		}}},
		ExportSection: []wasm.Export{
			{Name: "f", Type: wasm.ExternTypeFunc, Index: 0},
			{Name: "depth", Type: wasm.ExternTypeGlobal, Index: 0},
		},
	}
	if start {
		idx := wasm.Index(0)
		m.StartSection = &idx
	}
	return binaryencoding.EncodeModule(m)
}

// TestCallStackLimit (meshd patch): a module instantiated under
// experimental.WithCallStackLimit overflows its stack at that limit, with
// the stack overflow error, and the Go heap the call allocates stays
// within three times the limit: the last stack is at most the limit and
// the ones it outgrew, each at most half the next, less than twice that.
// The compiler's own ceiling let it allocate about 170 MB.
func TestCallStackLimit(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer func() { require.NoError(t, r.Close(ctx)) }()
	compiled, err := r.CompileModule(ctx, recursionModule(false))
	require.NoError(t, err)

	depthAt := func(t *testing.T, limit int) uint64 {
		inst, err := r.InstantiateModule(experimental.WithCallStackLimit(ctx, limit), compiled, wazero.NewModuleConfig().WithName(""))
		require.NoError(t, err)
		defer func() { require.NoError(t, inst.Close(ctx)) }()

		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err = inst.ExportedFunction("f").Call(ctx)
		runtime.ReadMemStats(&after)
		require.ErrorIs(t, err, wasmruntime.ErrRuntimeStackOverflow)
		allocated := after.TotalAlloc - before.TotalAlloc
		t.Logf("limit %d: %d bytes allocated, depth %d", limit, allocated, inst.ExportedGlobal("depth").Get())
		require.True(t, allocated < uint64(3*limit+1<<20), "%d bytes allocated under a limit of %d", allocated, limit)
		return inst.ExportedGlobal("depth").Get()
	}
	small, large := depthAt(t, 256<<10), depthAt(t, 4<<20)
	// Each frame takes the same space: the depth reached follows the
	// limit (16 times the stack, at least 15 times the frames; the first
	// 10 KiB are allocated whatever the limit).
	require.True(t, small > 1000, "depth %d", small)
	require.True(t, large > 15*small, "depth %d under 4 MiB, %d under 256 KiB", large, small)
}

// TestCallStackLimit_start (meshd patch): the limit holds for the start
// function, which runs during the instantiation.
func TestCallStackLimit_start(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer func() { require.NoError(t, r.Close(ctx)) }()
	compiled, err := r.CompileModule(ctx, recursionModule(true))
	require.NoError(t, err)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = r.InstantiateModule(experimental.WithCallStackLimit(ctx, 64<<10), compiled, wazero.NewModuleConfig())
	runtime.ReadMemStats(&after)
	require.ErrorIs(t, err, wasmruntime.ErrRuntimeStackOverflow)
	allocated := after.TotalAlloc - before.TotalAlloc
	require.True(t, allocated < 1<<20, "%d bytes allocated under a limit of 64 KiB", allocated)
}
