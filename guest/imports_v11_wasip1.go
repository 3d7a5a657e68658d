//go:build wasip1

package guest

import "unsafe"

// Host functions added in ABI v1.1.

//go:wasmimport meshd publish_delayed
//go:noescape
func hostPublishDelayed(typ unsafe.Pointer, typLen uint32, data unsafe.Pointer, dataLen uint32, delayMS int32) int32

//go:wasmimport meshd config_get
//go:noescape
func hostConfigGet(key unsafe.Pointer, keyLen uint32, buf unsafe.Pointer, capacity uint32) int32

func (wasmHost) publishDelayed(typ string, data []byte, delayMS int32) int32 {
	return hostPublishDelayed(sp(typ), uint32(len(typ)), bp(data), uint32(len(data)), delayMS)
}

func (wasmHost) configGet(key string, buf []byte) int32 {
	return hostConfigGet(sp(key), uint32(len(key)), bp(buf), uint32(len(buf)))
}
