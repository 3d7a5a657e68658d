// Package calls wires service-to-service calls into the daemon: one
// mesh.Client per daemon, whose targets are the services this node serves
// with status UP (read from the registry, cached until it changes), whose
// Target.Invoke matches the call against the callee's routes
// (gateway.Match, internal routes included) and runs it through the
// dispatcher (dispatch.Dispatcher.InvokeCall: the callee's meshd_http
// under the call's deadline and depth, its effects applied on success),
// and whose per-callee settings come from the callers' service files
// ([calls.<callee>] tables).
//
// Who sets what on the callee's request, in one place each: the host
// binding (host/binding.go) sets the consumer ("service:<caller>"), the
// caller's request id and a child span of the caller's traceparent from
// the caller's invocation; the mesh client keeps them (CallOptions leaves
// RequestID and TraceParent empty), giving each retry a span of its own
// and setting the same consumer again; this package adds the route and its
// parameters.
package calls
