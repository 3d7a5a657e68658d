package experimental_test

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/internal/testing/binaryencoding"
	"github.com/tetratelabs/wazero/internal/testing/require"
	"github.com/tetratelabs/wazero/internal/wasm"
)

// prefilled is a linear memory whose first bytes are given.
type prefilled struct{ buf []byte }

func (p *prefilled) Reallocate(size uint64) []byte {
	if size > uint64(cap(p.buf)) {
		return nil
	}
	p.buf = p.buf[:size]
	return p.buf
}
func (p *prefilled) Free() {}

func TestRestore(t *testing.T) {
	ctx := context.Background()
	zero := uint32(0)
	// A start function increments the mutable global $g (exported) and
	// stores it at address 8; a data segment writes "ab" at 0; $c is an
	// immutable global, $n a second mutable one.
	bin := binaryencoding.EncodeModule(&wasm.Module{
		TypeSection:     []wasm.FunctionType{{}},
		FunctionSection: []wasm.Index{0},
		CodeSection: []wasm.Code{{Body: []byte{
			wasm.OpcodeI32Const, 8,
			wasm.OpcodeGlobalGet, 0, wasm.OpcodeI32Const, 1, wasm.OpcodeI32Add, wasm.OpcodeGlobalSet, 0,
			wasm.OpcodeGlobalGet, 0, wasm.OpcodeI32Store8, 0, 0,
			wasm.OpcodeEnd,
		}}},
		MemorySection: &wasm.Memory{Min: 1, Cap: 1, Max: 1, IsMaxEncoded: true},
		GlobalSection: []wasm.Global{
			{Type: wasm.GlobalType{ValType: wasm.ValueTypeI32, Mutable: true}, Init: wasm.ConstantExpression{Data: []byte{wasm.OpcodeI32Const, 7, wasm.OpcodeEnd}}},
			{Type: wasm.GlobalType{ValType: wasm.ValueTypeI32}, Init: wasm.ConstantExpression{Data: []byte{wasm.OpcodeI32Const, 3, wasm.OpcodeEnd}}},
			{Type: wasm.GlobalType{ValType: wasm.ValueTypeI64, Mutable: true}, Init: wasm.ConstantExpression{Data: []byte{wasm.OpcodeI64Const, 5, wasm.OpcodeEnd}}},
		},
		ExportSection: []wasm.Export{
			{Name: "g", Type: wasm.ExternTypeGlobal, Index: 0},
			{Name: "c", Type: wasm.ExternTypeGlobal, Index: 1},
			{Name: "n", Type: wasm.ExternTypeGlobal, Index: 2},
		},
		StartSection: &zero,
		DataSection:  []wasm.DataSegment{{OffsetExpression: wasm.ConstantExpression{Data: []byte{wasm.OpcodeI32Const, 0, wasm.OpcodeEnd}}, Init: []byte("ab")}},
	})
	for _, cfg := range []wazero.RuntimeConfig{wazero.NewRuntimeConfigCompiler(), wazero.NewRuntimeConfigInterpreter()} {
		r := wazero.NewRuntimeWithConfig(ctx, cfg)
		compiled, err := r.CompileModule(ctx, bin)
		require.NoError(t, err)

		first, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(""))
		require.NoError(t, err)
		require.Equal(t, uint64(8), first.ExportedGlobal("g").Get())
		first.ExportedGlobal("n").(api.MutableGlobal).Set(41)
		globals, ok := experimental.MutableGlobals(first)
		require.True(t, ok)
		require.Equal(t, []uint64{8, 0, 41, 0}, globals)

		mem := &prefilled{buf: make([]byte, 0, 65536)}
		mem.buf = append(mem.buf, "xyz"...)
		rctx := experimental.WithMemoryAllocator(experimental.WithRestore(ctx, globals),
			experimental.MemoryAllocatorFunc(func(uint64, uint64) experimental.LinearMemory { return mem }))
		second, err := r.InstantiateModule(rctx, compiled, wazero.NewModuleConfig().WithName(""))
		require.NoError(t, err)
		require.Equal(t, uint64(8), second.ExportedGlobal("g").Get()) // restored; the start function did not run
		require.Equal(t, uint64(3), second.ExportedGlobal("c").Get())
		require.Equal(t, uint64(41), second.ExportedGlobal("n").Get())
		b, _ := second.Memory().Read(0, 9)
		require.Equal(t, []byte("xyz\x00\x00\x00\x00\x00\x00"), b) // no data segment copied

		_, err = r.InstantiateModule(experimental.WithRestore(ctx, globals[:2]), compiled, wazero.NewModuleConfig().WithName(""))
		require.EqualError(t, err, "restore: fewer global values than mutable globals")
		_, err = r.InstantiateModule(experimental.WithRestore(ctx, append(globals, 1, 2)), compiled, wazero.NewModuleConfig().WithName(""))
		require.EqualError(t, err, "restore: more global values than mutable globals")
		require.NoError(t, r.Close(ctx))
	}
}
