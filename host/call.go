package host

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/tetratelabs/wazero/api"

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
// invocation before anything else runs. call, its Request and their
// slices are the binding's, reused by its next call: a Caller keeps none
// of them past its return. Errors are mapped to ABI codes by CallCode; a
// Caller that fails the same way again may return the same error value
// (a pointer), which the binding then recognises and reports without
// formatting it again.
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
	if c, ok := err.(Coder); ok && c.Code() != abi.CodeOK {
		return c.Code() // the mesh client's faults: no errors.As, which allocates
	}
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

// call answers call (ABI v1.2, abi.FnCall): it checks the callee, the
// grant, the flags, the depth and the request, hands the call to
// Env.Call, and holds the encoded response on the invocation for
// call_result. The response is read from there, so reading it again (a
// buffer too small, grow and retry) never runs the call again.
//
// A call allocates nothing of its own once the invocation's buffers have
// grown to its size, but the message of a failure: the callee's name is
// the grant's string, the request, the consumer, the request id and the
// trace context share one buffer, and a failure the Caller answers with
// the same error as the last one (an open breaker's) reuses its message.
func (b *binding) call(ctx context.Context, m api.Module, stack []uint64) {
	c := runtime.CallFrom(ctx)
	np, ok := view(m, stack, c, u32(stack[0]), u32(stack[1]), "service name")
	if !ok {
		return
	}
	rp, ok := view(m, stack, c, u32(stack[2]), u32(stack[3]), "call request")
	if !ok {
		return
	}
	flags := api.DecodeI32(stack[4])
	inv := effects(stack, c, "call")
	if inv == nil {
		return
	}
	inv.hasResult = false // a failed call leaves no result to read
	inv.unavailable = nil
	if len(np) > maxServiceName {
		fail(stack, c, abi.CodeTooLarge, "service name "+quote(np)+" is longer than "+strconv.Itoa(maxServiceName)+" bytes")
		return
	}
	// np is guest memory, which does not change while a host function
	// runs: it is checked in place, and name is a string of its own.
	if !abi.ValidServiceName(guestString(np)) {
		fail(stack, c, abi.CodeInvalid, quote(np)+" is not a service name (a-z, 0-9, '-' and '_')")
		return
	}
	name, granted := calleeName(b.env.Grants.Calls, np)
	switch {
	case !granted:
		// A service name needs no escaping: quote's form, without fmt.
		fail(stack, c, abi.CodeDenied, "service "+b.env.Service+" is not granted calling \""+guestString(np)+"\" (grants.calls)")
		return
	case !abi.ValidCallFlags(flags):
		fail(stack, c, abi.CodeInvalid, "call flags "+strconv.FormatInt(int64(flags), 10)+" hold undefined bits")
		return
	case inv.Depth >= abi.MaxCallDepth:
		fail(stack, c, abi.CodeInvalid, "call to "+quote(name)+" would nest deeper than "+strconv.Itoa(abi.MaxCallDepth)+" calls")
		return
	case inv.calls >= b.env.maxCalls():
		fail(stack, c, abi.CodeTooLarge, "more than "+strconv.Itoa(b.env.maxCalls())+" calls in one invocation")
		return
	case len(rp) > b.env.maxCallBytes():
		fail(stack, c, abi.CodeTooLarge, "call request of "+strconv.Itoa(len(rp))+" bytes passes the cap of "+strconv.Itoa(b.env.maxCallBytes()))
		return
	}
	// The request is copied out of guest memory once: what Env.Call gets
	// does not alias memory the guest (or a memory.grow) may change. The
	// host's fields follow it in the same buffer, sized first so that no
	// append moves what the decoded request points into.
	need := len(rp) + len(abi.ConsumerPrefix) + len(b.env.Service) + len(inv.RequestID) + traceparent.Len
	if cap(inv.callIn) < need {
		inv.callIn = make([]byte, 0, need)
	}
	in := append(inv.callIn[:0], rp...)
	req := &inv.callReq
	if err := req.Decode(in); err != nil {
		fail(stack, c, abi.CodeInvalid, "call request to "+quote(name)+" does not decode: "+err.Error())
		return
	}
	if code, msg := req.Check(); code != abi.CodeOK {
		fail(stack, c, code, "call to "+quote(name)+": "+msg)
		return
	}
	if len(req.Body) > 0 && !json.Valid(req.Body) {
		fail(stack, c, abi.CodeInvalid, "call to "+quote(name)+": the body is not valid JSON")
		return
	}
	if b.env.Call == nil {
		fail(stack, c, abi.CodeUnavailable, "service calls are not available in this host")
		return
	}
	inv.calls++
	start := len(in)
	in = append(append(in, abi.ConsumerPrefix...), b.env.Service...)
	consumer := in[start:len(in):len(in)]
	start = len(in)
	in = append(in, inv.RequestID...)
	requestID := in[start:len(in):len(in)]
	start = len(in)
	in = childTraceParent(in, inv.TraceParent)
	inv.callIn = in
	inv.calleeReq = abi.Request{
		Method: req.Method, Path: req.Path, Query: req.Query, Headers: req.Headers, Body: req.Body,
		Consumer: consumer, RequestID: requestID, TraceParent: in[start:len(in):len(in)],
	}
	sc := serviceCalls.Get().(*ServiceCall)
	*sc = ServiceCall{
		Caller:    b.env.Service,
		Callee:    name,
		Request:   &inv.calleeReq,
		Retryable: flags&abi.CallRetryable != 0 || abi.IdempotentMethod(req.Method),
		Depth:     inv.Depth + 1,
	}
	resp := &inv.callResp
	*resp = abi.Response{}
	err := b.env.Call(ctx, sc, resp)
	*sc = ServiceCall{}
	serviceCalls.Put(sc)
	// Nothing of the callee's output stays alive past this call. (The
	// slices are the Caller's: dropped, not cleared.)
	defer func() { *resp = abi.Response{} }()
	if err != nil {
		code, msg := b.callFailure(name, err)
		if code == abi.CodeUnavailable {
			inv.unavailable = err
		}
		fail(stack, c, code, msg)
		return
	}
	if resp.Status < 100 || resp.Status > 599 {
		fail(stack, c, abi.CodeInternal, "call to "+quote(name)+": the callee answered status "+strconv.FormatUint(uint64(resp.Status), 10))
		return
	}
	if n := responseSize(resp); n > b.env.maxCallBytes() {
		fail(stack, c, abi.CodeTooLarge, "call to "+quote(name)+": response of "+strconv.Itoa(n)+" bytes passes the cap of "+strconv.Itoa(b.env.maxCallBytes()))
		return
	}
	inv.callResult = resp.Append(inv.callResult[:0])
	inv.hasResult = true
	ret(stack, int32(len(inv.callResult)))
}

// serviceCalls holds the ServiceCall a call hands Env.Call, which would
// otherwise be allocated for every call (a pointer given to a function
// value escapes).
var serviceCalls = sync.Pool{New: func() any { return new(ServiceCall) }}

// guestString is p as a string without a copy, for a check that keeps
// nothing of it.
func guestString(p []byte) string {
	if len(p) == 0 {
		return ""
	}
	return unsafe.String(&p[0], len(p))
}

// calleeName returns np, a valid service name, as a string of its own when
// grants (Grants.Calls) allow calling it, and whether they do. A name the
// grants list is that entry, so that a granted call allocates no string
// for it.
func calleeName(grants []string, np []byte) (string, bool) {
	wildcard := false
	for _, g := range grants {
		if g == string(np) {
			return g, true
		}
		wildcard = wildcard || g == "*"
	}
	if !wildcard {
		return "", false
	}
	return string(np), true
}

// failedCall is a Caller's error and the code and message the guest got
// for it.
type failedCall struct {
	err    error
	callee string
	code   abi.Code
	msg    string
}

// callFailure returns the code and message of a failed call to callee.
// When err is the very error of the service's last failed call to the
// same callee (an open breaker answers with one error until it changes),
// they are the ones made then: a call refused fast costs no formatting.
func (b *binding) callFailure(callee string, err error) (abi.Code, string) {
	if last := b.lastFailure.Load(); last != nil && last.callee == callee && sameError(last.err, err) {
		return last.code, last.msg
	}
	f := &failedCall{err: err, callee: callee, code: CallCode(err),
		msg: "call to \"" + callee + "\": " + safeText(err.Error(), 512)}
	b.lastFailure.Store(f)
	return f.code, f.msg
}

// sameError reports whether a and b are the same pointer to an error
// (never comparing values, whose == may panic or be costly).
func sameError(a, b error) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	return va.Kind() == reflect.Pointer && vb.Kind() == reflect.Pointer &&
		va.Type() == vb.Type() && va.Pointer() == vb.Pointer()
}

// responseSize is the length of r's encoding.
func responseSize(r *abi.Response) int {
	n := 4 + 4 + 4 + len(r.Body)
	for _, h := range r.Headers {
		n += 8 + len(h.Key) + len(h.Value)
	}
	return n
}

// openFor is how long, in nanoseconds, the open breaker that refused a
// call with err stays open, from now; 0 when err is anything else.
// The error says so with an OpenUntil method (host/mesh's OpenError),
// itself or what it wraps directly (a fault.Error): two type assertions,
// no errors.As, on a path meant to cost little.
func openFor(err error) int64 {
	type openUntil interface{ OpenUntil() time.Time }
	o, ok := err.(openUntil)
	if !ok {
		if w, isW := err.(interface{ Unwrap() error }); isW {
			o, ok = w.Unwrap().(openUntil)
		}
	}
	if !ok {
		return 0
	}
	until := o.OpenUntil()
	if until.IsZero() {
		return 0
	}
	return max(int64(time.Until(until)), 0)
}

// callRetryAfter answers call_retry_after (ABI v1.3,
// abi.FnCallRetryAfter): openFor of the last call's failure.
func (b *binding) callRetryAfter(ctx context.Context, _ api.Module, stack []uint64) {
	c := runtime.CallFrom(ctx)
	inv := effects(stack, c, "call_retry_after") // outside a call: 0, its error for last_error
	stack[0] = 0
	if inv != nil && inv.unavailable != nil {
		stack[0] = uint64(openFor(inv.unavailable))
	}
}

// callResult answers call_result (ABI v1.2, abi.FnCallResult).
func (b *binding) callResult(ctx context.Context, m api.Module, stack []uint64) {
	c := runtime.CallFrom(ctx)
	if !buffer(m, stack, c, u32(stack[0]), u32(stack[1])) {
		return
	}
	inv := effects(stack, c, "call_result")
	if inv == nil {
		return
	}
	if !inv.hasResult {
		fail(stack, c, abi.CodeNotFound, "no call result: no call of this invocation has answered, or the last one failed")
		return
	}
	fill(m, stack, u32(stack[0]), u32(stack[1]), inv.callResult)
}
