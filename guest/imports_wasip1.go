//go:build wasip1

package guest

import "unsafe"

// The host functions of ABI v1 (module "meshd"). Pointers are offsets into
// linear memory; the compiler lowers unsafe.Pointer to i32.

//go:wasmimport meshd input_read
//go:noescape
func hostInputRead(buf unsafe.Pointer, capacity uint32) int32

//go:wasmimport meshd output_write
//go:noescape
func hostOutputWrite(ptr unsafe.Pointer, n uint32) int32

//go:wasmimport meshd last_error
//go:noescape
func hostLastError(buf unsafe.Pointer, capacity uint32) int32

//go:wasmimport meshd log
//go:noescape
func hostLog(level int32, ptr unsafe.Pointer, n uint32) int32

//go:wasmimport meshd publish
//go:noescape
func hostPublish(typ unsafe.Pointer, typLen uint32, data unsafe.Pointer, dataLen uint32) int32

//go:wasmimport meshd kv_get
//go:noescape
func hostKVGet(key unsafe.Pointer, keyLen uint32, buf unsafe.Pointer, capacity uint32) int32

//go:wasmimport meshd kv_set
//go:noescape
func hostKVSet(key unsafe.Pointer, keyLen uint32, val unsafe.Pointer, valLen uint32) int32

//go:wasmimport meshd kv_delete
//go:noescape
func hostKVDelete(key unsafe.Pointer, keyLen uint32) int32

//go:wasmimport meshd discover
//go:noescape
func hostDiscover(name unsafe.Pointer, nameLen uint32, buf unsafe.Pointer, capacity uint32) int32

func bp(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }
func sp(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

// wasmHost binds hostAPI to the imports.
type wasmHost struct{}

var host hostAPI = wasmHost{}

func (wasmHost) inputRead(buf []byte) int32 { return hostInputRead(bp(buf), uint32(len(buf))) }
func (wasmHost) outputWrite(b []byte) int32 { return hostOutputWrite(bp(b), uint32(len(b))) }
func (wasmHost) lastError(buf []byte) int32 { return hostLastError(bp(buf), uint32(len(buf))) }
func (wasmHost) log(level int32, msg string) int32 {
	return hostLog(level, sp(msg), uint32(len(msg)))
}
func (wasmHost) publish(typ string, data []byte) int32 {
	return hostPublish(sp(typ), uint32(len(typ)), bp(data), uint32(len(data)))
}
func (wasmHost) kvGet(key string, buf []byte) int32 {
	return hostKVGet(sp(key), uint32(len(key)), bp(buf), uint32(len(buf)))
}
func (wasmHost) kvSet(key string, val []byte) int32 {
	return hostKVSet(sp(key), uint32(len(key)), bp(val), uint32(len(val)))
}
func (wasmHost) kvDelete(key string) int32 { return hostKVDelete(sp(key), uint32(len(key))) }
func (wasmHost) discover(name string, buf []byte) int32 {
	return hostDiscover(sp(name), uint32(len(name)), bp(buf), uint32(len(buf)))
}
