package mesh

import (
	"context"

	"github.com/meshd/meshd/abi"
)

// MaxDepth bounds call chains (abi.MaxCallDepth): a request from the
// gateway or an event runs at depth 0, the callee of its call at depth 1,
// and a call that would run its callee past MaxDepth fails with
// [fault.Invalid] (CodeInvalid). With every call
// under a deadline that never grows, this bounds a cycle of services
// calling each other (order → user → order → ...) to MaxDepth instances
// held at once instead of a pool exhausted until the deadlines fire.
const MaxDepth = abi.MaxCallDepth

type depthKey struct{}

// WithDepth returns ctx carrying call depth n. [Client.Call] hands its
// targets a context carrying the caller's depth plus one; the daemon must
// run the callee's invocation with that context (or WithDepth of its
// depth), so that calls the callee makes are counted from there.
func WithDepth(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, depthKey{}, n)
}

// DepthFrom returns the call depth ctx carries, 0 when none.
func DepthFrom(ctx context.Context) int {
	n, _ := ctx.Value(depthKey{}).(int)
	return n
}
