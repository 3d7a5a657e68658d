package expctxkeys

// ModuleDigestKey is a context.Context key for the sha256 of the module bytes
// given to CompileModule (meshd patch).
type ModuleDigestKey struct{}
