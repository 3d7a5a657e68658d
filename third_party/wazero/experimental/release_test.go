package experimental_test

import (
	"bufio"
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/internal/testing/binaryencoding"
	"github.com/tetratelabs/wazero/internal/testing/require"
	"github.com/tetratelabs/wazero/internal/wasm"
)

// releaseModule has a data segment ("ab" at 0) and exports f, which
// returns the byte at 1.
func releaseModule(dataCount bool) []byte {
	m := &wasm.Module{
		TypeSection:     []wasm.FunctionType{{Results: []wasm.ValueType{wasm.ValueTypeI32}, ResultNumInUint64: 1}},
		FunctionSection: []wasm.Index{0},
		CodeSection: []wasm.Code{{Body: []byte{
			wasm.OpcodeI32Const, 1, wasm.OpcodeI32Load8U, 0, 0, wasm.OpcodeEnd,
		}}},
		MemorySection: &wasm.Memory{Min: 1, Cap: 1, Max: 1, IsMaxEncoded: true},
		ExportSection: []wasm.Export{{Name: "f", Type: wasm.ExternTypeFunc, Index: 0}},
		DataSection:   []wasm.DataSegment{{OffsetExpression: wasm.ConstantExpression{Data: []byte{wasm.OpcodeI32Const, 0, wasm.OpcodeEnd}}, Init: []byte("ab")}},
	}
	if dataCount {
		n := uint32(1)
		m.DataCountSection = &n
	}
	return binaryencoding.EncodeModule(m)
}

func TestReleaseSource(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
	defer r.Close(ctx)
	compiled, err := r.CompileModule(ctx, releaseModule(false))
	require.NoError(t, err)
	first, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(""))
	require.NoError(t, err)
	res, err := first.ExportedFunction("f").Call(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64('b'), res[0])
	image, _ := first.Memory().Read(0, first.Memory().Size())
	image = append([]byte(nil), image...)
	globals, ok := experimental.MutableGlobals(first)
	require.True(t, ok)

	require.True(t, experimental.ReleaseSource(compiled))
	_, err = r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(""))
	require.EqualError(t, err, "the module's data segments were released (ReleaseSource): it can only be restored")
	mem := &prefilled{buf: image}
	rctx := experimental.WithMemoryAllocator(experimental.WithRestore(ctx, globals),
		experimental.MemoryAllocatorFunc(func(uint64, uint64) experimental.LinearMemory { return mem }))
	second, err := r.InstantiateModule(rctx, compiled, wazero.NewModuleConfig().WithName(""))
	require.NoError(t, err)
	res, err = second.ExportedFunction("f").Call(ctx) // compiled code, no body needed
	require.NoError(t, err)
	require.Equal(t, uint64('b'), res[0])

	// With a data count section, memory.init could read the segments:
	// they stay, and so does ordinary instantiation.
	compiled, err = r.CompileModule(ctx, releaseModule(true))
	require.NoError(t, err)
	require.False(t, experimental.ReleaseSource(compiled))
	third, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(""))
	require.NoError(t, err)
	res, err = third.ExportedFunction("f").Call(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64('b'), res[0])

	require.False(t, experimental.ReleaseSource(struct{}{}))
}

// residentKiB sums the resident memory of this process's mappings of files
// under dir (/proc/self/smaps).
func residentKiB(t *testing.T, dir string) int {
	f, err := os.Open("/proc/self/smaps")
	require.NoError(t, err)
	defer f.Close()
	sum, in := 0, false
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		fields := strings.Fields(line)
		if len(fields) > 0 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = len(fields) >= 6 && strings.HasPrefix(fields[5], dir)
			continue
		}
		if in && len(fields) >= 2 && fields[0] == "Rss:" {
			n, err := strconv.Atoi(fields[1])
			require.NoError(t, err)
			sum += n
		}
	}
	require.NoError(t, s.Err())
	return sum
}

func TestReleaseCodePages(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("code is mapped from the cache file on Linux only")
	}
	ctx := context.Background()
	dir := t.TempDir()
	bin := releaseModule(false)
	newRuntime := func() wazero.Runtime { // each with its own in-memory cache
		cache, err := wazero.NewCompilationCacheWithDir(dir)
		require.NoError(t, err)
		return wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCompilationCache(cache))
	}

	// Compiled here: anonymous memory, left alone.
	r := newRuntime()
	compiled, err := r.CompileModule(ctx, bin)
	require.NoError(t, err)
	released, err := experimental.ReleaseCodePages(compiled)
	require.NoError(t, err)
	require.False(t, released)
	require.NoError(t, r.Close(ctx))

	// From the cache file: mapped, released, faulted back by a call.
	r = newRuntime()
	defer r.Close(ctx)
	compiled, err = r.CompileModule(ctx, bin)
	require.NoError(t, err)
	mod, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(""))
	require.NoError(t, err)
	require.True(t, residentKiB(t, dir) > 0)
	released, err = experimental.ReleaseCodePages(compiled)
	require.NoError(t, err)
	require.True(t, released)
	require.Equal(t, 0, residentKiB(t, dir))
	res, err := mod.ExportedFunction("f").Call(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64('b'), res[0])
	require.True(t, residentKiB(t, dir) > 0)

	released, err = experimental.ReleaseCodePages(compiled)
	require.NoError(t, err)
	require.True(t, released)
	require.Equal(t, 0, residentKiB(t, dir))
	require.NoError(t, experimental.PopulateCodePages(compiled))
	require.True(t, residentKiB(t, dir) > 0)
}
