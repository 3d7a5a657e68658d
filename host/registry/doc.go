// Package registry keeps the service registry: which services exist, which
// versions of them run on which node, and their status.
//
// An Instance in the registry is one version of a service served by one node
// (its Wasm instance pool counts as one registry instance). Status moves
// STARTING → UP when the version is warm, OUT_OF_SERVICE while it drains
// before removal, and DOWN when it failed.
//
// Two holds per service override the status of the instances a node
// serves: an operator's drain (SetDrained: OUT_OF_SERVICE until undrained,
// across loads) and the daemon's judgement that the service keeps failing
// (SetFailing: DOWN until cleared or the next load). Lookups report the
// status with the holds applied, and an observer (WithObserver) hears every
// change of it. Lookups return copies; the registry is safe for concurrent
// use.
package registry
