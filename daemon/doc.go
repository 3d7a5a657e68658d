// Package daemon wires meshd together: the embedded (or external) NATS
// server, the event bus, the per-service stores, the registry, the gateway
// and the Wasm runtime. It loads every module of the plugin directory,
// checks each against its operator grants, routes its declared HTTP routes,
// subscribes its declared events and applies the effects of successful
// invocations.
//
// cmd/meshd is a thin shell around it; the end-to-end tests drive it in
// process with the real plugins.
package daemon
