// Package runtime runs meshd service modules on wazero.
//
// An Engine owns the compilation cache shared by every module. Engine.Load
// compiles one module into its own wazero.Runtime (so the memory limit is
// per service), links the host module it is given, checks the ABI v1
// exports, warms an instance pool and asks the module to describe itself.
// It is Engine.Compile (compile and check; no host needed, so it can run
// while the rest of a daemon starts) then Module.Start (link, warm,
// describe).
// Module.Invoke runs one call on a pooled instance under a deadline, with
// caps on the bytes crossing the boundary; an instance whose call failed in
// any way is thrown away, never reused.
//
// The package knows nothing of HTTP, NATS or business logic: host functions
// reach the running call through CallFrom.
package runtime
