package wazevo

import (
	"bytes"
	"crypto/sha256"
	"hash/crc32"
	"io"
	"testing"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/internal/testing/require"
	"github.com/tetratelabs/wazero/internal/u32"
	"github.com/tetratelabs/wazero/internal/u64"
	"github.com/tetratelabs/wazero/internal/wasm"
)

var testVersion = "0.0.1"

func crcf(b []byte) []byte {
	c := crc32.Checksum(b, crc)
	return u32.LeBytes(c)
}

func TestSerializeCompiledModule(t *testing.T) {
	tests := []struct {
		in  *compiledModule
		exp []byte
	}{
		{
			in: &compiledModule{
				executables:     &executables{executable: []byte{1, 2, 3, 4, 5}},
				functionOffsets: []int{0},
			},
			// meshd patch: code aligned in the file, a checksum at the end.
			exp: entry(
				concat(
					magic,
					[]byte{byte(len(testVersion))},
					[]byte(testVersion),
					u32.LeBytes(1), // number of functions.
					u64.LeBytes(0), // offset.
					u64.LeBytes(5), // length of code.
				),
				[]byte{1, 2, 3, 4, 5}, // code.
				concat(
					crcf([]byte{1, 2, 3, 4, 5}), // crc for the code.
					[]byte{0},                   // no source map.
					u32.LeBytes(0),              // empty catch clause table.
					[]byte{0},                   // meshd patch: the code writes no table.
				),
			),
		},
		{
			in: &compiledModule{
				executables:      &executables{executable: []byte{1, 2, 3, 4, 5}},
				functionOffsets:  []int{0},
				codeWritesTables: true,
			},
			// meshd patch: code aligned in the file, a checksum at the end.
			exp: entry(
				concat(
					magic,
					[]byte{byte(len(testVersion))},
					[]byte(testVersion),
					u32.LeBytes(1), // number of functions.
					u64.LeBytes(0), // offset.
					u64.LeBytes(5), // length of code.
				),
				[]byte{1, 2, 3, 4, 5}, // code.
				concat(
					crcf([]byte{1, 2, 3, 4, 5}), // crc for the code.
					[]byte{0},                   // no source map.
					u32.LeBytes(0),              // empty catch clause table.
					[]byte{1},                   // meshd patch: the code writes a table.
				),
			),
		},
		{
			in: &compiledModule{
				executables:     &executables{executable: []byte{1, 2, 3, 4, 5, 1, 2, 3}},
				functionOffsets: []int{0, 5},
			},
			// meshd patch: code aligned in the file, a checksum at the end.
			exp: entry(
				concat(
					magic,
					[]byte{byte(len(testVersion))},
					[]byte(testVersion),
					u32.LeBytes(2), // number of functions.
					// Function index = 0.
					u64.LeBytes(0), // offset.
					// Function index = 1.
					u64.LeBytes(5), // offset.
					// Executable.
					u64.LeBytes(8), // length of code.
				),
				[]byte{1, 2, 3, 4, 5, 1, 2, 3}, // code.
				concat(
					crcf([]byte{1, 2, 3, 4, 5, 1, 2, 3}), // crc for the code.
					[]byte{0},                            // no source map.
					u32.LeBytes(0),                       // empty catch clause table.
					[]byte{0},                            // meshd patch: the code writes no table.
				),
			),
		},
	}

	for i, tc := range tests {
		actual, err := io.ReadAll(serializeCompiledModule(testVersion, tc.in))
		require.NoError(t, err, i)
		require.Equal(t, tc.exp, actual, i)
	}
}

func concat(ins ...[]byte) (ret []byte) {
	for _, in := range ins {
		ret = append(ret, in...)
	}
	return
}

// entry returns a cache entry of head (up to the code's length), padding,
// code and tail (from the code's checksum on), and the checksum of head and
// tail that ends an entry (meshd patch).
func entry(head, code, tail []byte) []byte {
	return concat(head, make([]byte, codePadding(len(head))), code, tail, crcf(concat(head, tail)))
}

func TestDeserializeCompiledModule(t *testing.T) {
	tests := []struct {
		name                  string
		in                    []byte
		importedFunctionCount uint32
		expCompiledModule     *compiledModule
		expStaleCache         bool
		expErr                string
	}{
		{
			name:   "invalid header",
			in:     []byte{1},
			expErr: "compilationcache: header of 7 bytes at offset 0, past the entry's end (1 bytes)", // meshd patch: sized first,
		},
		{
			name: "invalid magic",
			in: concat(
				[]byte{'a', 'b', 'c', 'd', 'e', 'f'},
				[]byte{byte(len(testVersion))},
				[]byte(testVersion),
				u32.LeBytes(1), // number of functions.
			),
			expErr: `compilationcache: invalid magic number "abcdef"`, // meshd patch,
		},
		{
			name: "version mismatch",
			in: concat(
				magic,
				[]byte{byte(len("1233123.1.1"))},
				[]byte("1233123.1.1"),
				u32.LeBytes(1), // number of functions.
			),
			expStaleCache: true,
		},
		{
			name: "version mismatch",
			in: concat(
				magic,
				[]byte{byte(len("0.0.0"))},
				[]byte("0.0.0"),
				u32.LeBytes(1), // number of functions.
			),
			expStaleCache: true,
		},
		{
			name: "one function",
			// meshd patch: code aligned in the file, a checksum at the end.
			in: entry(
				concat(
					magic,
					[]byte{byte(len(testVersion))},
					[]byte(testVersion),
					u32.LeBytes(1), // number of functions.
					u64.LeBytes(0), // offset.
					// Executable.
					u64.LeBytes(5), // size.
				),
				[]byte{1, 2, 3, 4, 5}, // machine code.
				concat(
					crcf([]byte{1, 2, 3, 4, 5}), // machine code.
					[]byte{0},                   // no source map.
					u32.LeBytes(0),              // empty catch clause table.
					[]byte{0},                   // meshd patch: the code writes no table.
				),
			),
			expCompiledModule: &compiledModule{
				executables:     &executables{executable: []byte{1, 2, 3, 4, 5}},
				functionOffsets: []int{0},
			},
			expStaleCache: false,
			expErr:        "",
		},
		{
			name: "two functions",
			// meshd patch: code aligned in the file, a checksum at the end.
			in: entry(
				concat(
					magic,
					[]byte{byte(len(testVersion))},
					[]byte(testVersion),
					u32.LeBytes(2), // number of functions.
					// Function index = 0.
					u64.LeBytes(0), // offset.
					// Function index = 1.
					u64.LeBytes(7), // offset.
					// Executable.
					u64.LeBytes(10), // size.
				),
				[]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, // machine code.
				concat(
					crcf([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}), // crc for machine code.
					[]byte{0},      // no source map.
					u32.LeBytes(0), // empty catch clause table.
					[]byte{1},      // meshd patch: the code writes a table.
				),
			),
			importedFunctionCount: 1,
			expCompiledModule: &compiledModule{
				executables:      &executables{executable: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
				functionOffsets:  []int{0, 7},
				codeWritesTables: true,
			},
			expStaleCache: false,
			expErr:        "",
		},
		{
			name: "without catch clause table", // meshd patch: damaged, not stale
			in: concat(
				magic,
				[]byte{byte(len(testVersion))},
				[]byte(testVersion),
				u32.LeBytes(1), // number of functions.
				u64.LeBytes(0), // offset.
				// Executable.
				u64.LeBytes(5),                      // size.
				make([]byte, codePadding(16+8*1+8)), // meshd patch: code aligned in the file.
				[]byte{1, 2, 3, 4, 5},               // machine code.
				crcf([]byte{1, 2, 3, 4, 5}),         // machine code.
				[]byte{0},                           // no source map.
				// no catch clause table — old format.
			),
			expErr: "compilationcache: catch clause table of 4 bytes at offset 65546, past the entry's end (65546 bytes)",
		},
		{
			name: "without table writes byte", // meshd patch: damaged, not stale
			in: concat(
				magic, []byte{byte(len(testVersion))}, []byte(testVersion), u32.LeBytes(1), u64.LeBytes(0), u64.LeBytes(5),
				make([]byte, codePadding(16+8*1+8)), []byte{1, 2, 3, 4, 5},
				crcf([]byte{1, 2, 3, 4, 5}), []byte{0}, u32.LeBytes(0),
				// no table writes byte, no entry checksum.
			),
			expErr: "compilationcache: table writes of 1 bytes at offset 65550, past the entry's end (65550 bytes)",
		},
		{
			name: "invalid table writes byte", // meshd patch
			in: entry(
				concat(magic, []byte{byte(len(testVersion))}, []byte(testVersion), u32.LeBytes(1), u64.LeBytes(0), u64.LeBytes(5)),
				[]byte{1, 2, 3, 4, 5},
				concat(crcf([]byte{1, 2, 3, 4, 5}), []byte{0}, u32.LeBytes(0), []byte{2}),
			),
			expErr: "compilationcache: invalid table writes byte 2",
		},
		{
			name: "reading executable offset",
			in: concat(
				[]byte(magic),
				[]byte{byte(len(testVersion))},
				[]byte(testVersion),
				u32.LeBytes(2), // number of functions.
				// Function index = 0.
				u64.LeBytes(5), // offset.
				// Function index = 1.
			),
			expErr: "compilationcache: executable offsets of 16 bytes at offset 16, past the entry's end (24 bytes)", // meshd patch: sized first
		},
		{
			name: "mmapping",
			in: concat(
				[]byte(magic),
				[]byte{byte(len(testVersion))},
				[]byte(testVersion),
				u32.LeBytes(2), // number of functions.
				// Function index = 0.
				u64.LeBytes(0), // offset.
				// Function index = 1.
				u64.LeBytes(3), // offset.
				// Executable.
				u64.LeBytes(5),                      // size of the executable.
				make([]byte, codePadding(16+8*2+8)), // meshd patch: code aligned in the file.
				// Lack of machine code here.
			),
			expErr: "compilationcache: padding and executable of 65501 bytes at offset 40, past the entry's end (65536 bytes)", // meshd patch: sized first
		},
		{
			name: "bad crc",
			in: concat(
				magic,
				[]byte{byte(len(testVersion))},
				[]byte(testVersion),
				u32.LeBytes(1), // number of functions.
				u64.LeBytes(0), // offset.
				// Executable.
				u64.LeBytes(5),                      // size.
				make([]byte, codePadding(16+8*1+8)), // meshd patch: code aligned in the file.
				[]byte{1, 2, 3, 4, 5},               // machine code.
				[]byte{1, 2, 3, 4},                  // crc for machine code.
			),
			expCompiledModule: &compiledModule{
				executables:     &executables{executable: []byte{1, 2, 3, 4, 5}},
				functionOffsets: []int{0},
			},
			expStaleCache: false,
			expErr:        "compilationcache: checksum mismatch (expected 1397854123, got 67305985)",
		},
		{
			name: "missing crc",
			in: concat(
				magic,
				[]byte{byte(len(testVersion))},
				[]byte(testVersion),
				u32.LeBytes(1), // number of functions.
				u64.LeBytes(0), // offset.
				// Executable.
				u64.LeBytes(5),                      // size.
				make([]byte, codePadding(16+8*1+8)), // meshd patch: code aligned in the file.
				[]byte{1, 2, 3, 4, 5},               // machine code.
			),
			expCompiledModule: &compiledModule{
				executables:     &executables{executable: []byte{1, 2, 3, 4, 5}},
				functionOffsets: []int{0},
			},
			expStaleCache: false,
			expErr:        "compilationcache: checksum of 4 bytes at offset 65541, past the entry's end (65541 bytes)", // meshd patch: sized first,
		},
		{
			name: "no source map presence",
			in: concat(
				magic,
				[]byte{byte(len(testVersion))},
				[]byte(testVersion),
				u32.LeBytes(1), // number of functions.
				u64.LeBytes(0), // offset.
				// Executable.
				u64.LeBytes(5),                      // size.
				make([]byte, codePadding(16+8*1+8)), // meshd patch: code aligned in the file.
				[]byte{1, 2, 3, 4, 5},               // machine code.
				crcf([]byte{1, 2, 3, 4, 5}),         // crc for machine code.
			),
			expCompiledModule: &compiledModule{
				executables:     &executables{executable: []byte{1, 2, 3, 4, 5}},
				functionOffsets: []int{0},
			},
			expStaleCache: false,
			expErr:        "compilationcache: source map presence of 1 bytes at offset 65545, past the entry's end (65545 bytes)", // meshd patch: sized first,
		},
	}

	for _, tc := range tests {
		tc := tc
		t.Run(tc.name, func(t *testing.T) {
			cm, staleCache, err := deserializeCompiledModule(testVersion, io.NopCloser(bytes.NewReader(tc.in)))

			if tc.expErr != "" {
				require.EqualError(t, err, tc.expErr)
			} else {
				require.NoError(t, err)
				require.Equal(t, tc.expCompiledModule, cm)
			}

			require.Equal(t, tc.expStaleCache, staleCache)
		})
	}
}

func Test_fileCacheKey(t *testing.T) {
	s := sha256.New()
	s.Write([]byte("hello world"))
	m := &wasm.Module{}
	s.Sum(m.ID[:0])
	original := m.ID
	result := fileCacheKey(m, 0)
	require.Equal(t, original, m.ID)
	require.NotEqual(t, original, result)
	// meshd patch: code validated under other features is another entry.
	require.NotEqual(t, result, fileCacheKey(m, api.CoreFeaturesV2))
}
