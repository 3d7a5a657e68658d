package binary

import (
	"bytes"
	"io"
	"testing"

	"github.com/tetratelabs/wazero/internal/testing/require"
)

// meshd patch: readShared slices the source instead of copying, and fails
// as io.ReadFull does.
func TestReadShared(t *testing.T) {
	src := []byte("0123456789")
	r := bytes.NewReader(src)
	_, _ = r.Seek(2, io.SeekStart)
	b, err := readShared(r, src, 3)
	require.NoError(t, err)
	require.Equal(t, []byte("234"), b)
	require.Equal(t, 3, cap(b)) // an append cannot write into src
	require.Equal(t, &src[2], &b[0])
	require.Equal(t, 5, r.Len())

	_, err = readShared(r, src, 6)
	require.Equal(t, io.ErrUnexpectedEOF, err)
	_, err = readShared(r, src, 1)
	require.Equal(t, io.EOF, err)
	_, err = readShared(r, src, -1)
	require.Equal(t, io.ErrUnexpectedEOF, err)
	b, err = readShared(r, src, 0)
	require.NoError(t, err)
	require.Equal(t, 0, len(b))
}
