// Package dispatch runs requests and events on the serving version of a
// service: it holds the call state of an invocation, invokes the
// service's module, applies the effects of a successful invocation (key
// writes, then events), keeps the serial locks of the event handlers and
// the read-model rules of a service's [events] settings, and replays a
// service's events to rebuild its read model.
//
// A request enters through InvokeHTTP (the gateway's Invoker), an event
// through the handler Handler returns (the bus's Handler for one
// service's subscriptions), a replay through Replay. All three resolve
// the service by name at the moment of the call, invoke it, and apply
// its effects with Apply.
package dispatch
