package wazero

import (
	"context"
	"crypto/sha256"
	"testing"

	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/internal/testing/binaryencoding"
	"github.com/tetratelabs/wazero/internal/testing/require"
	"github.com/tetratelabs/wazero/internal/wasm"
)

// meshd patch: CompileModule under experimental.WithModuleDigest takes the
// digest instead of hashing the bytes: the module ID is the same as without
// it when the digest is right, and follows the digest when it is not.
func TestRuntime_CompileModule_WithModuleDigest(t *testing.T) {
	ctx := context.Background()
	bin := binaryencoding.EncodeModule(&wasm.Module{NameSection: &wasm.NameSection{ModuleName: "digest"}})
	id := func(ctx context.Context) wasm.ModuleID {
		r := NewRuntime(ctx)
		defer r.Close(ctx)
		c, err := r.CompileModule(ctx, bin)
		require.NoError(t, err)
		return c.(*compiledModule).module.ID
	}
	plain := id(ctx)
	require.Equal(t, plain, id(experimental.WithModuleDigest(ctx, sha256.Sum256(bin))))
	require.NotEqual(t, plain, id(experimental.WithModuleDigest(ctx, sha256.Sum256([]byte("other")))))
}
