// Package conformance is meshd's cross-language ABI conformance suite: the
// same ABI behaviours (input and output, grow and retry, bad pointers,
// kv, publish, denied, traps, events, calls) driven through the real
// runtime and host binding against a guest in each language, with the
// same expected results for all.
//
// The guests serve the routes of host/testdata/conformance.wat under a
// prefix of their own, subscribe to and publish an event type of their
// own, and call themselves by their service name:
//
//	WAT   host/testdata/conformance.wat                 /wat   WAT_EVENT   conformance
//	Go    conformance/testdata/guest-conformance/      /go    GO_EVENT    conformance-go
//	Rust  conformance/testdata/rust-conformance/       /rust  RUST_EVENT  conformance-rust
//
// A guest in a new language plugs in with a Guest value and Run; its
// results are compared with the others' after normalising the prefix,
// event type and service name.
package conformance
