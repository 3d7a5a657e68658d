package expctxkeys

// InstanceContextKey is a context.Context Value key. Its associated value
// is true for a context reused for every call into one instance, done
// only when the instance must stop (meshd patch).
type InstanceContextKey struct{}
