// Package fault is meshd's one error vocabulary: the kinds of failure an
// invocation, a call between services or an admin operation can meet, each
// with its HTTP status and its ABI code, in one place.
//
// A layer that knows why something failed returns a [*Error] carrying a
// [Kind]; the layer that answers (the gateway over HTTP, the call host
// function over the ABI, the admin API) recovers it with [errors.As] and
// reads [Kind.Status], [Kind.Code] and [Error.Retry] instead of keeping a
// switch of its own. [Classify] turns the runtime's errors, and a store
// refusing writes, into a *Error.
package fault
