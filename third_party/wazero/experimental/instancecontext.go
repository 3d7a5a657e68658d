package experimental

import (
	"context"

	"github.com/tetratelabs/wazero/internal/expctxkeys"
)

// WithInstanceContext marks a context (and those derived from it) as an
// instance context (meshd patch): the caller passes it, or contexts
// derived from it with the same Done channel, to every call into one
// module instance, and its Done channel closes only to stop that
// instance, never just because a call ended. With
// RuntimeConfig.WithCloseOnContextDone(true), wazero then watches it
// once, for the rest of the instance's life, instead of setting up a
// watch for each call: the instance is closed when it is done, whether a
// call runs or not. Without the mark, each call watches its context for
// the duration of the call.
func WithInstanceContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, expctxkeys.InstanceContextKey{}, true)
}
