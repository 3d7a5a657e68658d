package wazevo_test

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/internal/testing/binaryencoding"
	"github.com/tetratelabs/wazero/internal/testing/require"
	"github.com/tetratelabs/wazero/internal/wasm"
)

// elementsModule imports env.f (answering 42) and defines three
// functions answering 1, 2 and 3; its table holds, from the active
// segment at offset 1, [f, 1, 2, 3, 1, f], and from another at 8, [3].
// "call" (i32) -> i32 calls table entry i.
func elementsModule() []byte {
	ret := func(v byte) wasm.Code {
		return wasm.Code{Body: []byte{wasm.OpcodeI32Const, v, wasm.OpcodeEnd}}
	}
	refFunc := func(i byte) wasm.ConstantExpression {
		return wasm.ConstantExpression{Data: []byte{wasm.OpcodeRefFunc, i, wasm.OpcodeEnd}}
	}
	i32 := func(v byte) wasm.ConstantExpression {
		return wasm.ConstantExpression{Data: []byte{wasm.OpcodeI32Const, v, wasm.OpcodeEnd}}
	}
	m := &wasm.Module{
		TypeSection: []wasm.FunctionType{
			{Results: []wasm.ValueType{wasm.ValueTypeI32}},
			{Params: []wasm.ValueType{wasm.ValueTypeI32}, Results: []wasm.ValueType{wasm.ValueTypeI32}},
		},
		ImportSection: []wasm.Import{{Module: "env", Name: "f", Type: wasm.ExternTypeFunc, DescFunc: 0}},
		// 1, 2, 3: the answers; 4: call.
		FunctionSection: []wasm.Index{0, 0, 0, 1},
		TableSection:    []wasm.Table{{Min: 10, Type: wasm.RefTypeFuncref}},
		ElementSection: []wasm.ElementSegment{
			{OffsetExpr: i32(1), Init: []wasm.ConstantExpression{refFunc(0), refFunc(1), refFunc(2), refFunc(3), refFunc(1), refFunc(0)}, Type: wasm.RefTypeFuncref, Mode: wasm.ElementModeActive},
			{OffsetExpr: i32(8), Init: []wasm.ConstantExpression{refFunc(3)}, Type: wasm.RefTypeFuncref, Mode: wasm.ElementModeActive},
		},
		CodeSection: []wasm.Code{ret(1), ret(2), ret(3), {Body: []byte{
			wasm.OpcodeLocalGet, 0,
			wasm.OpcodeCallIndirect, 0, 0,
			wasm.OpcodeEnd,
		}}},
		ExportSection: []wasm.Export{{Name: "call", Type: wasm.ExternTypeFunc, Index: 4}},
	}
	return binaryencoding.EncodeModule(m)
}

// TestElementSegmentsOfRefFuncs (meshd patch): the table entries a
// segment of ref.func inits makes, decoded once per module and made all
// at once, call the functions they name, imported or local, in every
// instance of the module.
func TestElementSegmentsOfRefFuncs(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer func() { require.NoError(t, r.Close(ctx)) }()
	_, err := r.NewHostModuleBuilder("env").NewFunctionBuilder().
		WithGoFunction(api.GoFunc(func(_ context.Context, stack []uint64) { stack[0] = 42 }), nil, []api.ValueType{api.ValueTypeI32}).
		Export("f").Instantiate(ctx)
	require.NoError(t, err)
	compiled, err := r.CompileModule(ctx, elementsModule())
	require.NoError(t, err)
	want := map[uint64]uint64{1: 42, 2: 1, 3: 2, 4: 3, 5: 1, 6: 42, 8: 3}
	for n := range 3 {
		mod, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(""))
		require.NoError(t, err)
		call := mod.ExportedFunction("call")
		for i := uint64(0); i < 10; i++ {
			res, err := call.Call(ctx, i)
			if w, ok := want[i]; ok {
				require.NoError(t, err, "instance %d, entry %d", n, i)
				require.Equal(t, w, res[0], "instance %d, entry %d", n, i)
			} else {
				require.Error(t, err, "instance %d, entry %d is empty", n, i)
			}
		}
		require.NoError(t, mod.Close(ctx))
	}
}
