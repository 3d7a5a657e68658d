package host

import (
	"context"
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/internal/traceparent"
	"github.com/meshd/meshd/runtime"
)

// ServiceCall is one service-to-service call (ABI v1.2, FnCall) as the
// binding hands it to Env.Call, checked: the caller is granted the callee,
// the callee's name is a valid service name, the request passed
// abi.CallRequest.Check and the body cap, and Depth is within
// abi.MaxCallDepth.
type ServiceCall struct {
	// Caller is the calling service (Env.Service).
	Caller string
	// Callee is the service called.
	Callee string
	// Request is for the callee's meshd_http. Method, Path, Query,
	// Headers and Body are the guest's (copied out of its memory, owned by
	// the caller's Invocation until its next call); Consumer
	// ("service:<caller>"), RequestID (the caller's) and TraceParent (a
	// child span of the caller's) are the host's. Route and Params are
	// empty: Call matches Method and Path against the callee's routes
	// (internal ones included, abi.Route.Internal) and fills them, or
	// fails with CodeNotFound.
	Request *abi.Request
	// Retryable reports whether Call may run the request more than once
	// (on a timeout or an unavailable instance, within the deadline): the
	// method is idempotent (abi.IdempotentMethod) or the guest set
	// abi.CallRetryable.
	Retryable bool
	// Depth is the callee's call depth, 1 to abi.MaxCallDepth: the
	// caller's Invocation.Depth plus one. The callee's Invocation.Depth
	// must be set to it, so that the callee's own calls are bounded.
	Depth int
}

// Caller makes a service-to-service call: it resolves and invokes the
// callee's meshd_http under ctx (the caller's invocation context, whose
// deadline it must not extend), applies the callee's effects when the
// callee's invocation succeeds, and decodes its response into resp. A
// response of any status is a success (nil error). The slices resp holds
// must stay valid after Call returns: the binding copies them into the
// invocation before anything else runs. Errors are mapped to ABI codes by
// CallCode.
type Caller func(ctx context.Context, call *ServiceCall, resp *abi.Response) error

// Coder is an error that knows its ABI code. CallCode reads it through
// errors.As, so the mesh client's typed errors (a fault kind with a
// Code method) need no import here.
type Coder interface {
	Code() abi.Code
}

// CallCode is the ABI code the guest sees for an error from Env.Call: the
// Code of the first error in the chain that has one (Coder), else by the
// error's class: deadlines are CodeTimeout; a busy, closed or cancelled
// callee and anything else unknown are CodeUnavailable (the guest may try
// later); an input over the callee's cap is CodeTooLarge. This is the one
// place calls' errors become codes.
func CallCode(err error) abi.Code {
	var c Coder
	switch {
	case err == nil:
		return abi.CodeOK
	case errors.As(err, &c) && c.Code() != abi.CodeOK:
		return c.Code()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, runtime.ErrTimeout):
		return abi.CodeTimeout
	case errors.Is(err, runtime.ErrOutputTooLarge), errors.Is(err, runtime.ErrTrap):
		// The callee failed, not the caller's request.
		return abi.CodeInternal
	case errors.Is(err, runtime.ErrTooLarge):
		return abi.CodeTooLarge
	}
	return abi.CodeUnavailable
}

// childTraceParent is the trace context of a call made by an invocation
// whose own is parent: the same trace id and flags with a new span id, or
// a new trace when parent is not a valid traceparent.
func childTraceParent(dst []byte, parent string) []byte {
	start := len(dst)
	dst = traceparent.Append(dst)
	if traceparent.Valid(parent) {
		// "00-" trace id "-" | span id | "-" flags
		copy(dst[start:start+36], parent[:36])
		copy(dst[start+52:], parent[52:])
	}
	return dst
}

// safeText is a host-made text that may repeat bytes from elsewhere (an
// error from a call, which can quote a callee's output): cut to n bytes
// and, when it holds a control character or invalid UTF-8, Go-quoted.
func safeText(s string, n int) string {
	s = clip(s, n)
	if !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			return strconv.Quote(s)
		}
	}
	return s
}
