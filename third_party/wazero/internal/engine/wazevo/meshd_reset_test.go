package wazevo_test

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

// resetModule is elementsModule with a mutable global "g" (7) and three
// functions: "bump" adds one to g, "swap" sets table entry 2 (function
// 1, answering 1) to function 3 (answering 3), "fill" sets the empty
// entry 0 to function 1.
func resetModule() []byte { return binaryencoding.EncodeModule(resetModuleDef()) }

func resetModuleDef() *wasm.Module {
	ret := func(v byte) wasm.Code {
		return wasm.Code{Body: []byte{wasm.OpcodeI32Const, v, wasm.OpcodeEnd}}
	}
	refFunc := func(i byte) wasm.ConstantExpression {
		return wasm.ConstantExpression{Data: []byte{wasm.OpcodeRefFunc, i, wasm.OpcodeEnd}}
	}
	i32 := func(v byte) wasm.ConstantExpression {
		return wasm.ConstantExpression{Data: []byte{wasm.OpcodeI32Const, v, wasm.OpcodeEnd}}
	}
	tableSet := func(slot, f byte) wasm.Code {
		return wasm.Code{Body: []byte{wasm.OpcodeI32Const, slot, wasm.OpcodeRefFunc, f, wasm.OpcodeTableSet, 0, wasm.OpcodeEnd}}
	}
	m := &wasm.Module{
		TypeSection: []wasm.FunctionType{
			{Results: []wasm.ValueType{wasm.ValueTypeI32}},
			{Params: []wasm.ValueType{wasm.ValueTypeI32}, Results: []wasm.ValueType{wasm.ValueTypeI32}},
			{},
		},
		ImportSection: []wasm.Import{{Module: "env", Name: "f", Type: wasm.ExternTypeFunc, DescFunc: 0}},
		// 1, 2, 3: the answers; 4: call; 5: bump; 6: swap; 7: fill.
		FunctionSection: []wasm.Index{0, 0, 0, 1, 2, 2, 2},
		TableSection:    []wasm.Table{{Min: 10, Type: wasm.RefTypeFuncref}},
		GlobalSection: []wasm.Global{
			{Type: wasm.GlobalType{ValType: wasm.ValueTypeI32, Mutable: true}, Init: i32(7)},
		},
		ElementSection: []wasm.ElementSegment{
			{OffsetExpr: i32(1), Init: []wasm.ConstantExpression{refFunc(0), refFunc(1), refFunc(2), refFunc(3), refFunc(1), refFunc(0)}, Type: wasm.RefTypeFuncref, Mode: wasm.ElementModeActive},
			{OffsetExpr: i32(8), Init: []wasm.ConstantExpression{refFunc(3)}, Type: wasm.RefTypeFuncref, Mode: wasm.ElementModeActive},
		},
		CodeSection: []wasm.Code{ret(1), ret(2), ret(3), {Body: []byte{
			wasm.OpcodeLocalGet, 0,
			wasm.OpcodeCallIndirect, 0, 0,
			wasm.OpcodeEnd,
		}}, {Body: []byte{
			wasm.OpcodeGlobalGet, 0, wasm.OpcodeI32Const, 1, wasm.OpcodeI32Add, wasm.OpcodeGlobalSet, 0,
			wasm.OpcodeEnd,
		}}, tableSet(2, 3), tableSet(0, 1)},
		ExportSection: []wasm.Export{
			{Name: "call", Type: wasm.ExternTypeFunc, Index: 4},
			{Name: "bump", Type: wasm.ExternTypeFunc, Index: 5},
			{Name: "swap", Type: wasm.ExternTypeFunc, Index: 6},
			{Name: "fill", Type: wasm.ExternTypeFunc, Index: 7},
			{Name: "g", Type: wasm.ExternTypeGlobal, Index: 0},
		},
	}
	return m
}

// TestResetRestored (meshd patch): an instance whose tables are as its
// element segments left them is put back (its mutable globals), and one
// whose table changed, an entry replaced or an empty one filled, is
// refused and left as it was. The interpreter cannot compare references
// and refuses.
func TestResetRestored(t *testing.T) {
	ctx := context.Background()
	for _, interp := range []bool{false, true} {
		cfg := wazero.NewRuntimeConfigCompiler()
		if interp {
			cfg = wazero.NewRuntimeConfigInterpreter()
		}
		r := wazero.NewRuntimeWithConfig(ctx, cfg)
		_, err := r.NewHostModuleBuilder("env").NewFunctionBuilder().
			WithGoFunction(api.GoFunc(func(_ context.Context, stack []uint64) { stack[0] = 42 }), nil, []api.ValueType{api.ValueTypeI32}).
			Export("f").Instantiate(ctx)
		require.NoError(t, err)
		compiled, err := r.CompileModule(ctx, resetModule())
		require.NoError(t, err)
		want := map[uint64]uint64{1: 42, 2: 1, 3: 2, 4: 3, 5: 1, 6: 42, 8: 3}
		check := func(mod api.Module, g uint64) {
			t.Helper()
			require.Equal(t, g, mod.ExportedGlobal("g").Get())
			for i := uint64(0); i < 10; i++ {
				res, err := mod.ExportedFunction("call").Call(ctx, i)
				if w, ok := want[i]; ok {
					require.NoError(t, err, "entry %d", i)
					require.Equal(t, w, res[0], "entry %d", i)
				} else {
					require.Error(t, err, "entry %d is empty", i)
				}
			}
		}
		mod, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(""))
		require.NoError(t, err)
		globals, ok := experimental.MutableGlobals(mod)
		require.True(t, ok)
		_, err = mod.ExportedFunction("bump").Call(ctx)
		require.NoError(t, err)
		check(mod, 8)
		err = experimental.ResetRestored(mod, globals)
		if interp {
			require.EqualError(t, err, "reset: the engine cannot compare references")
			check(mod, 8)
			require.NoError(t, r.Close(ctx))
			continue
		}
		check(mod, 7)
		require.Error(t, experimental.ResetRestored(mod, globals[:1]))

		for _, change := range []string{"swap", "fill"} {
			mod, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(""))
			require.NoError(t, err)
			_, err = mod.ExportedFunction("bump").Call(ctx)
			require.NoError(t, err)
			_, err = mod.ExportedFunction(change).Call(ctx)
			require.NoError(t, err)
			require.EqualError(t, experimental.ResetRestored(mod, globals), "reset: a table changed since the instance was made", change)
			require.Equal(t, uint64(8), mod.ExportedGlobal("g").Get(), change)
			require.NoError(t, mod.Close(ctx))
		}
		require.NoError(t, mod.Close(ctx))
		require.EqualError(t, experimental.ResetRestored(mod, globals), "reset: the instance is closed")
		require.NoError(t, r.Close(ctx))
	}
}

// TestResetRestoredTrustsCodeThatWritesNoTable (meshd patch): a module no
// instruction of which writes a table, and which exports none, has its
// tables left as instantiation made them, so ResetRestored does not compare
// them. That is known from validation when the module is compiled and from
// the cache entry when its code is reused. A table changed behind the
// module's back (here, by the test) shows the comparison was skipped;
// the same change is refused for a module that writes a table or exports
// one.
func TestResetRestoredTrustsCodeThatWritesNoTable(t *testing.T) {
	ctx := context.Background()
	readOnly := resetModuleDef()
	readOnly.FunctionSection = readOnly.FunctionSection[:5] // no swap, no fill
	readOnly.CodeSection = readOnly.CodeSection[:5]
	readOnly.ExportSection = readOnly.ExportSection[:2]
	exported := resetModuleDef()
	exported.FunctionSection, exported.CodeSection = readOnly.FunctionSection, readOnly.CodeSection
	exported.ExportSection = append(append([]wasm.Export(nil), readOnly.ExportSection...), wasm.Export{Name: "t", Type: wasm.ExternTypeTable, Index: 0})

	dir := t.TempDir()
	for _, fromCache := range []bool{false, true} {
		cache, err := wazero.NewCompilationCacheWithDir(dir)
		require.NoError(t, err)
		r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCompilationCache(cache))
		_, err = r.NewHostModuleBuilder("env").NewFunctionBuilder().
			WithGoFunction(api.GoFunc(func(_ context.Context, stack []uint64) { stack[0] = 42 }), nil, []api.ValueType{api.ValueTypeI32}).
			Export("f").Instantiate(ctx)
		require.NoError(t, err)
		for _, tc := range []struct {
			name    string
			bin     []byte
			skipped bool
		}{
			{"writes no table", binaryencoding.EncodeModule(readOnly), true},
			{"writes a table", resetModule(), false},
			{"exports its table", binaryencoding.EncodeModule(exported), false},
		} {
			compiled, err := r.CompileModule(ctx, tc.bin)
			require.NoError(t, err)
			mod, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(""))
			require.NoError(t, err)
			globals, ok := experimental.MutableGlobals(mod)
			require.True(t, ok)
			call := func(i uint64) uint64 {
				res, err := mod.ExportedFunction("call").Call(ctx, i)
				require.NoError(t, err)
				return res[0]
			}
			require.Equal(t, uint64(1), call(2), tc.name)
			refs := mod.(*wasm.ModuleInstance).Tables[0].References
			refs[2] = refs[4] // entry 2 now calls function 3, as swap would
			require.Equal(t, uint64(3), call(2), tc.name)
			err = experimental.ResetRestored(mod, globals)
			if tc.skipped {
				require.NoError(t, err, "%s, from cache %v", tc.name, fromCache)
			} else {
				require.EqualError(t, err, "reset: a table changed since the instance was made", "%s, from cache %v", tc.name, fromCache)
			}
			require.NoError(t, mod.Close(ctx))
		}
		require.NoError(t, r.Close(ctx))
		require.NoError(t, cache.Close(ctx))
	}
}
