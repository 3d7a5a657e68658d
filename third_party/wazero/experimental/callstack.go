package experimental

import (
	"context"

	"github.com/tetratelabs/wazero/internal/expctxkeys"
)

// WithCallStackLimit returns a context under which wazero.Runtime's
// InstantiateModule bounds the call stack of the module it instantiates
// (meshd patch): a call into one of its functions, its start functions
// included, that needs more than bytes of stack fails with the stack
// overflow error (wasmruntime.ErrRuntimeStackOverflow) instead of growing
// it further. The compiler keeps each call's stack in a Go []byte that
// doubles as the call deepens, so bytes bounds that allocation: the stack
// never grows past it, and growing copies at most what it replaces (less
// than bytes). Without the option, or with bytes <= 0, the compiler's own
// ceiling holds: a stack grows while under 50,000,000 bytes, to about
// 84 MB. The interpreter ignores the option.
func WithCallStackLimit(ctx context.Context, bytes int) context.Context {
	return context.WithValue(ctx, expctxkeys.CallStackLimitKey{}, bytes)
}
