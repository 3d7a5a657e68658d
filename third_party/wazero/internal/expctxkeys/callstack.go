package expctxkeys

// CallStackLimitKey is a context.Context Value key. Its associated value
// is an int: the most bytes a function's call stack may grow to (meshd
// patch).
type CallStackLimitKey struct{}
