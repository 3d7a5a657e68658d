//go:build !wasip1

package guest

import "github.com/meshd/meshd/abi"

// errWasmOnly is what every host function answers outside WebAssembly.
const errWasmOnly = "host functions are only available in wasm (GOOS=wasip1)"

// stubHost answers every call with CodeUnavailable, so code using the SDK
// compiles and can be unit-tested on the host.
type stubHost struct{}

var host hostAPI = stubHost{}

func fail() int32 { return -int32(abi.CodeUnavailable) }

func (stubHost) inputRead([]byte) int32       { return fail() }
func (stubHost) outputWrite([]byte) int32     { return fail() }
func (stubHost) log(int32, string) int32      { return fail() }
func (stubHost) publish(string, []byte) int32 { return fail() }
func (stubHost) kvGet(string, []byte) int32   { return fail() }
func (stubHost) kvSet(string, []byte) int32   { return fail() }
func (stubHost) kvDelete(string) int32        { return fail() }
func (stubHost) discover(string, []byte) int32 {
	return fail()
}

func (stubHost) lastError(buf []byte) int32 {
	if len(buf) >= len(errWasmOnly) {
		copy(buf, errWasmOnly)
	}
	return int32(len(errWasmOnly))
}
