// Package mesh is the client side of calls between services: what sits
// between a guest's call host function and the callee's instances.
//
// [Client.Call] gives every call a deadline that never outlives the
// caller's, bounds the depth of call chains, picks an instance by power of
// two choices on in-flight calls, retries only what is safe to retry within
// a per-callee retry budget, and keeps one circuit breaker per (caller,
// callee) pair. Every failure it returns is a [*fault.Error], so the host
// function answers it with [fault.Kind.Code] and the gateway with
// [fault.Kind.Status].
//
// The package knows nothing of Wasm, pools or nodes: a callee's instances
// are [Target] values handed out by a [Resolver], local or remote alike.
//
// # Outcomes
//
// A call attempt ends in one of these, which decide the breaker's count and
// whether the attempt may be retried:
//
//	outcome                               breaker    retried (if the call may be)
//	response status < 500 (2xx, 3xx, 4xx) success    no
//	response status >= 500                failure    yes
//	Busy, Unavailable                     failure    yes
//	Timeout with time left in the call    failure    yes
//	Timeout at the call's deadline        failure    no
//	Failed (trap, error code, bad answer) failure    yes (a fresh instance)
//	StoreRefused                          failure    no
//	TooLarge, Denied, NotFound, Invalid,  not counted no
//	Conflict, CircuitOpen
//	caller cancelled                      not counted no
//
// A response with status >= 500 is returned to the caller as a response,
// not an error, also when the retries run out: the callee's own answer
// (its status, headers and problem detail) tells the caller more than a
// generic error, and an HTTP client behind a proxy sees the same. An error
// is returned only when no attempt produced a response.
package mesh
