package expctxkeys

// CompilationCacheErrorHandlerKey is a context.Context key for the function
// CompileModule reports compilation cache failures to (meshd patch).
type CompilationCacheErrorHandlerKey struct{}
