// Package host binds meshd's services to guests: it builds the "meshd" host
// module of ABI v1 (see docs/ABI.md) that every loaded service links against.
//
// The binding is the only place that touches guest memory. Every pointer and
// length a guest hands over is checked against the memory's size and answered
// with abi.CodeBadPointer when out of range, so guest input never panics the
// host.
//
// What a service can reach is an Env: its grants, its own key-value store, a
// logger and a way to discover other services. Effects of an invocation
// (published events and key writes) are buffered in an Invocation and applied
// by the caller only when the invocation succeeded.
//
// The capabilities themselves live in sub-packages (registry, gateway, bus,
// kv); this package depends on none of them, only on small interfaces.
package host
