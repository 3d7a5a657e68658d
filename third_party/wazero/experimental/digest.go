package experimental

import (
	"context"

	"github.com/tetratelabs/wazero/internal/expctxkeys"
)

// WithModuleDigest returns a context under which wazero.Runtime's
// CompileModule takes sum as the sha256 of the module bytes instead of
// hashing them again (meshd patch): a caller that has already hashed a
// module, to name or deduplicate it, saves a pass over megabytes. The
// digest keys the compilation cache, so it must be the sha256 of exactly
// the bytes compiled: a wrong one can run another module's code.
func WithModuleDigest(ctx context.Context, sum [32]byte) context.Context {
	return context.WithValue(ctx, expctxkeys.ModuleDigestKey{}, sum)
}
