package wazevo

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/tetratelabs/wazero/internal/platform"
	"github.com/tetratelabs/wazero/internal/testing/require"
)

// meshd patch: a cache file's code is mapped from the file, where it is
// aligned, and checked against its checksum; a bad checksum is refused.
func TestDeserializeCompiledModule_mapsTheFile(t *testing.T) {
	code := make([]byte, 3*platform.CodeFileAlign+123) // several pages, a partial last one
	for i := range code {
		code[i] = byte(i * 7)
	}
	cm := &compiledModule{executables: &executables{executable: code}, functionOffsets: []int{0, 100}}
	serialized, err := io.ReadAll(serializeCompiledModule(testVersion, cm))
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "cached")
	require.NoError(t, os.WriteFile(path, serialized, 0o600))

	f, err := os.Open(path)
	require.NoError(t, err)
	got, stale, err := deserializeCompiledModule(testVersion, f)
	require.NoError(t, err)
	require.False(t, stale)
	require.Equal(t, code, got.executable)
	require.Equal(t, []int{0, 100}, got.functionOffsets)
	maps, err := os.ReadFile("/proc/self/maps")
	require.NoError(t, err)
	addr := uintptr(unsafe.Pointer(&got.executable[0]))
	mapped := false
	for _, line := range strings.Split(string(maps), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 6 {
			continue
		}
		lo, hi, _ := strings.Cut(fields[0], "-")
		l, _ := strconv.ParseUint(lo, 16, 64)
		h, _ := strconv.ParseUint(hi, 16, 64)
		if uintptr(l) <= addr && addr < uintptr(h) {
			mapped = fields[5] == path && strings.HasPrefix(fields[1], "r-x")
		}
	}
	require.True(t, mapped, "the code is not an executable mapping of the cache file")
	require.NoError(t, platform.MunmapCodeSegment(got.executable))

	// A flipped byte in the code: the checksum no longer matches.
	serialized[len(serialized)-20-len(code)/2] ^= 0xff
	require.NoError(t, os.WriteFile(path, serialized, 0o600))
	f, err = os.Open(path)
	require.NoError(t, err)
	_, _, err = deserializeCompiledModule(testVersion, f)
	require.Error(t, err)
	require.Contains(t, err.Error(), "checksum mismatch")
}
