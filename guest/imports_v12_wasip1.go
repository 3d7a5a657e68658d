//go:build wasip1

package guest

import "unsafe"

// Host functions added in ABI v1.2.

//go:wasmimport meshd call
//go:noescape
func hostCall(name unsafe.Pointer, nameLen uint32, req unsafe.Pointer, reqLen uint32, flags int32) int32

//go:wasmimport meshd call_result
//go:noescape
func hostCallResult(buf unsafe.Pointer, capacity uint32) int32

func (wasmHost) call(service string, req []byte, flags int32) int32 {
	return hostCall(sp(service), uint32(len(service)), bp(req), uint32(len(req)), flags)
}

func (wasmHost) callResult(buf []byte) int32 {
	return hostCallResult(bp(buf), uint32(len(buf)))
}

// Host function added in ABI v1.3.

//go:wasmimport meshd call_retry_after
func hostCallRetryAfter() int64

func (wasmHost) callRetryAfter() int64 { return hostCallRetryAfter() }
