//go:build wasip1

//lint:file-ignore U1000 the host calls these: go:wasmexport makes them the module's exports

package guest

// The module's exports (ABI v1). Each one recovers panics: see serve.go.

//go:wasmexport meshd_abi_v1
func meshdABIv1() {}

//go:wasmexport meshd_describe
func meshdDescribe() int32 { return int32(describe()) }

//go:wasmexport meshd_http
func meshdHTTP(n int32) int32 { return int32(serveHTTP(n)) }

//go:wasmexport meshd_event
func meshdEvent(n int32) int32 { return int32(serveEvent(n)) }
