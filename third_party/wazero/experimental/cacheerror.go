package experimental

import (
	"context"

	"github.com/tetratelabs/wazero/internal/expctxkeys"
)

// WithCompilationCacheErrorHandler returns a context under which
// wazero.Runtime's CompileModule calls h, on the calling goroutine, with
// each failure of the compilation cache it works around (meshd patch): an
// entry found damaged (truncated, rewritten, unreadable: it is deleted and
// the module compiled from its bytes, then written back), an entry that
// cannot be opened or deleted, compiled code that cannot be written. None
// of them fails CompileModule: the cache only saves compiling again. The
// error names the entry (its file name in the cache directory) and the
// cause. Without a handler the failures are worked around silently.
func WithCompilationCacheErrorHandler(ctx context.Context, h func(error)) context.Context {
	return context.WithValue(ctx, expctxkeys.CompilationCacheErrorHandlerKey{}, h)
}
