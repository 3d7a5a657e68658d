package abi

// Host function added in ABI v1.3. It is an optional import: a guest that
// does not import it runs unchanged. See docs/ABI.md, "Added in v1.3".
const (
	// FnCallRetryAfter () -> i64: after the invocation's last FnCall
	// failed with CodeUnavailable because the circuit breaker of the
	// caller→callee pair is open, the nanoseconds until that breaker lets
	// a call through again (a half-open probe); 0 after any other outcome
	// of the last FnCall, or before any. Until then every call to that
	// callee is refused the same way, so a guest may refuse them itself
	// (the Go SDK does, for at most a second at a time).
	FnCallRetryAfter = "call_retry_after"
)
