package wazevo

import (
	"context"
	"encoding/hex"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/internal/engine/wazevo/wazevoapi"
	"github.com/tetratelabs/wazero/internal/filecache"
	"github.com/tetratelabs/wazero/internal/platform"
	"github.com/tetratelabs/wazero/internal/testing/require"
	"github.com/tetratelabs/wazero/internal/wasm"
)

// damageTestEntry returns a cache entry with every part present: several
// pages of code, function offsets, a source map and catch clauses.
func damageTestEntry(t *testing.T) (entry []byte, codeOff, codeLen int) {
	code := make([]byte, 3*platform.CodeFileAlign+123)
	for i := range code {
		code[i] = byte(i * 7)
	}
	base := uintptr(unsafe.Pointer(&code[0]))
	cm := &compiledModule{
		executables:     &executables{executable: code},
		functionOffsets: []int{0, 100, 5000},
		sourceMap: sourceMap{
			wasmBinaryOffsets: []uint64{10, 20},
			executableOffsets: []uintptr{base, base + 100},
		},
		catchClauseTable: [][]wazevoapi.CatchClauseInstance{{{Kind: 1, TagIndex: 2}}, {}},
	}
	entry, err := io.ReadAll(serializeCompiledModule(testVersion, cm))
	require.NoError(t, err)
	codeOff = len(magic) + 1 + len(testVersion) + 4 + 8*3 + 8
	codeOff += codePadding(codeOff)
	return entry, codeOff, len(code)
}

// deserializeFile writes b to a file and deserializes it from the file,
// which the code is mapped from (on Linux).
func deserializeFile(t *testing.T, path string, b []byte) (*compiledModule, bool, error) {
	require.NoError(t, os.WriteFile(path, b, 0o600))
	f, err := os.Open(path)
	require.NoError(t, err)
	return deserializeCompiledModule(testVersion, f)
}

// meshd patch: a damaged entry is an error (the caller deletes it and
// compiles), never a panic, nor a crash of the process. Without the checks
// of the entry's size, a truncated entry's code is mapped past the file's
// end and its checksum faults (SIGBUS): the test binary dies.
func TestDeserializeCompiledModule_damaged(t *testing.T) {
	entry, codeOff, codeLen := damageTestEntry(t)
	path := filepath.Join(t.TempDir(), "entry")

	// The entry as written is read back whole, from the file and from memory.
	cm, stale, err := deserializeFile(t, path, entry)
	require.NoError(t, err)
	require.False(t, stale)
	require.Equal(t, []int{0, 100, 5000}, cm.functionOffsets)
	require.Equal(t, []uint64{10, 20}, cm.sourceMap.wasmBinaryOffsets)
	require.Equal(t, 2, len(cm.catchClauseTable))
	require.NoError(t, platform.MunmapCodeSegment(cm.executable))

	refused := func(t *testing.T, what string, cm *compiledModule, stale bool, err error) {
		t.Helper()
		if err == nil || stale {
			t.Fatalf("%s: got stale %v, err %v; want an error", what, stale, err)
		}
		if cm != nil {
			t.Errorf("%s: a module with the error", what)
		}
	}

	t.Run("truncated", func(t *testing.T) {
		// Every length short of the whole before the padding and after the
		// code; in the padding and the code, at and around each page
		// boundary and a few places in between.
		headerEnd := len(magic) + 1 + len(testVersion) + 4 + 8*3 + 8
		var lengths []int
		for n := 0; n < len(entry); n++ {
			inside := n > headerEnd+1 && n < codeOff+codeLen-1
			if !inside || n%4093 == 0 || n%4096 < 2 || n%4096 == 4095 {
				lengths = append(lengths, n)
			}
		}
		for _, n := range lengths {
			cm, stale, err := deserializeFile(t, path, entry[:n])
			refused(t, "truncated to "+strconv.Itoa(n), cm, stale, err)
			cm, stale, err = deserializeCompiledModule(testVersion, io.NopCloser(strings.NewReader(string(entry[:n]))))
			refused(t, "in memory, truncated to "+strconv.Itoa(n), cm, stale, err)
		}
	})

	t.Run("empty", func(t *testing.T) {
		cm, stale, err := deserializeFile(t, path, nil)
		refused(t, "empty", cm, stale, err)
	})

	t.Run("garbage", func(t *testing.T) {
		rnd := rand.New(rand.NewSource(1))
		header := entry[:len(magic)+1+len(testVersion)]
		for _, n := range []int{1, 7, 100, 4096, codeOff + 10, len(entry)} {
			b := make([]byte, n)
			rnd.Read(b)
			cm, stale, err := deserializeFile(t, path, b)
			refused(t, "garbage of "+strconv.Itoa(n), cm, stale, err)
			// The same after a valid header: lengths, offsets and all are garbage.
			b = append(append([]byte{}, header...), b...)
			cm, stale, err = deserializeFile(t, path, b)
			refused(t, "garbage after a header, "+strconv.Itoa(n), cm, stale, err)
		}
		// Bytes appended to a valid entry.
		cm, stale, err := deserializeFile(t, path, append(append([]byte{}, entry...), 0))
		refused(t, "a byte appended", cm, stale, err)
	})

	t.Run("flipped", func(t *testing.T) {
		versionEnd := len(magic) + 1 + len(testVersion)
		headerEnd := codeOff - codePadding(versionEnd+4+8*3+8)
		for i := range entry {
			if i >= headerEnd && i < codeOff {
				continue // the padding: never read
			}
			if i > codeOff && i < codeOff+codeLen-1 && i%997 != 0 {
				continue // the code: a sample
			}
			b := append([]byte{}, entry...)
			b[i] ^= 0x10
			cm, stale, err := deserializeFile(t, path, b)
			if i >= len(magic) && i < versionEnd {
				// The version's length or the version: another version's entry.
				if err != nil || !stale {
					t.Fatalf("byte %d flipped in the version: err %v, stale %v; want stale", i, err, stale)
				}
				continue
			}
			refused(t, "byte "+strconv.Itoa(i)+" flipped", cm, stale, err)
		}
		// The code's checksum and the entry's, in full.
		for _, at := range []int{codeOff + codeLen, len(entry) - 4} {
			b := append([]byte{}, entry...)
			for i := at; i < at+4; i++ {
				b[i] = ^b[i]
			}
			cm, stale, err := deserializeFile(t, path, b)
			refused(t, "checksum at "+strconv.Itoa(at)+" flipped", cm, stale, err)
			require.Contains(t, err.Error(), "checksum mismatch")
		}
	})
}

// meshd patch: the engine takes a damaged entry for a miss: it reports it
// to the context's handler, deletes it, compiles the module and writes a
// good entry back; the next engine on the directory reads that.
func TestEngine_CompileModule_damagedCacheEntry(t *testing.T) {
	module := func() *wasm.Module {
		return &wasm.Module{
			TypeSection:     []wasm.FunctionType{{}},
			FunctionSection: []wasm.Index{0, 0},
			CodeSection:     []wasm.Code{{Body: []byte{wasm.OpcodeEnd}}, {Body: []byte{wasm.OpcodeNop, wasm.OpcodeEnd}}},
			ID:              wasm.ModuleID{0xde, 0xad},
		}
	}
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"truncated in the code", func(b []byte) []byte { return b[:platform.CodeFileAlign+8] }},
		{"truncated in the header", func(b []byte) []byte { return b[:20] }},
		{"empty", func([]byte) []byte { return nil }},
		{"garbage", func(b []byte) []byte { return []byte(strings.Repeat("garbage!", len(b)/8)) }},
		{"checksum flipped", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var reported []error
			ctx := experimental.WithCompilationCacheErrorHandler(context.Background(), func(err error) { reported = append(reported, err) })

			e := NewEngine(ctx, 0, filecache.New(dir)).(*engine)
			require.NoError(t, e.CompileModule(ctx, module(), nil, false))
			key := fileCacheKey(module(), e.features)
			path := filepath.Join(dir, hex.EncodeToString(key[:]))
			good, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, 0, len(reported))
			require.NoError(t, os.WriteFile(path, tc.damage(append([]byte{}, good...)), 0o600))

			// A fresh engine: nothing in memory, the damaged file is read.
			e = NewEngine(ctx, 0, filecache.New(dir)).(*engine)
			require.NoError(t, e.CompileModule(ctx, module(), nil, false))
			require.Equal(t, 1, len(reported))
			require.Contains(t, reported[0].Error(), "is damaged")
			require.Contains(t, reported[0].Error(), hex.EncodeToString(key[:]))
			rewritten, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, good, rewritten)

			// The next engine hits the entry written back.
			e = NewEngine(ctx, 0, filecache.New(dir)).(*engine)
			_, hit, err := e.getCompiledModuleFromCache(module())
			require.NoError(t, err)
			require.True(t, hit)
			require.NoError(t, e.CompileModule(ctx, module(), nil, false))
			require.Equal(t, 1, len(reported))
		})
	}
}

// meshd patch: a file truncated in place after it was sized and mapped
// (wazero never does; an outside writer could) faults where the checksum
// reads past its new end: an error, not a crash.
func TestChecksumCode_truncatedWhileMapped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "entry")
	require.NoError(t, os.WriteFile(path, make([]byte, 4*platform.CodeFileAlign), 0o600))
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	code, err := platform.MmapCodeFile(f, 0, 4*platform.CodeFileAlign)
	if err != nil {
		t.Skip("code is not mapped from files here:", err)
	}
	defer platform.MunmapCodeSegment(code) //nolint:errcheck
	_, err = checksumCode(code)
	require.NoError(t, err)

	require.NoError(t, os.Truncate(path, platform.CodeFileAlign))
	_, err = checksumCode(code)
	require.Error(t, err)
	require.Contains(t, err.Error(), "changed while mapped")
	// The goroutine's setting is back: a fault would crash again.
	require.False(t, debug.SetPanicOnFault(false))
}
