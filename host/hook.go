package host

import "github.com/meshd/meshd/runtime"

// CallHook makes an Invocation the runtime.Call hook its host functions
// read (runtime.Call.Data).
func (*Invocation) CallHook() {}

// Interface guards.
var _ runtime.Hook = (*Invocation)(nil)
