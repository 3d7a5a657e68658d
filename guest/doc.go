// Package guest is the Go SDK for meshd services: the guest half of ABI v1
// (docs/ABI.md). A service registers its handlers from init and is built as
// a WebAssembly reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o order.wasm ./plugins/order
//
//	func init() {
//		guest.Declare("order", "1.0.0")
//		guest.Handle("GET /orders/{id}", getOrder)
//		guest.Subscribe("PAYMENT_COMPLETED", paymentCompleted)
//		guest.Publishes("ORDER_CREATED")
//	}
//
// The package provides the module's exports (meshd_abi_v1, meshd_describe,
// meshd_http, meshd_event) and wraps the host functions (KVGet, Publish,
// Log, Discover, Call to another service's route, ...). Every export recovers a handler's panic and turns it
// into a failed call with the panic message, so an instance is never left
// poisoned by a Go panic.
//
// The API compiles on every platform so that plugin logic can be unit-tested
// on the host; outside wasip1 the host functions return an error saying they
// are only available in WebAssembly.
//
// Calls are served one at a time per instance, so the package reuses its
// buffers between calls: a Request, its Body and the Event Data are valid
// only until the handler returns. Copy what you keep.
//
// Use package guest/jsonx to read and write JSON on hot paths; encoding/json
// runs about twenty times slower inside a Go guest.
package guest
