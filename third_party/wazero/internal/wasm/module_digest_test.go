package wasm

import (
	"crypto/sha256"
	"testing"

	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/internal/testing/require"
)

// meshd patch: an ID assigned from the bytes' digest is the one assigned
// from the bytes, and still depends on the bytes and the other args.
func TestModule_AssignModuleIDFromDigest(t *testing.T) {
	ml := &mockListener{}
	for _, lsns := range [][]experimental.FunctionListener{nil, {ml}, {nil, ml}} {
		for _, et := range []bool{false, true} {
			bin := []byte{1, 2, 3}
			var a, b, c Module
			a.AssignModuleID(bin, lsns, et)
			b.AssignModuleIDFromDigest(sha256.Sum256(bin), lsns, et)
			require.Equal(t, a.ID, b.ID)
			c.AssignModuleID([]byte{1, 2, 4}, lsns, et)
			require.NotEqual(t, a.ID, c.ID)
		}
	}
}
