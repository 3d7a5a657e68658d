// Command guest-snap is a test guest for runtime/snapshot_test.go; `make
// fixtures` builds it into runtime/testdata/guest-snap.wasm. It imports
// only input_read and output_write, so the runtime's tests link it
// without the daemon's host.
//
// Its meshd_http answers, whatever its input, with what an instance
// restored from a snapshot must not share with another (one line each):
//
//	rand    16 bytes of math/rand/v2 (the Go runtime's generator), hex
//	maphash a hash/maphash hash of a fixed string under a new seed
//	order   the iteration order of three new maps of 64 keys
//	crypto  16 bytes of crypto/rand (WASI random_get), hex
//	now     time.Now() in Unix nanoseconds
//	inits   how many times this instance's package init ran
//	calls   how many calls this instance served
package main

//lint:file-ignore U1000 the host calls these: go:wasmexport makes them the module's exports

import (
	crand "crypto/rand"
	"encoding/hex"
	"hash/maphash"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

//go:wasmimport meshd input_read
func inputRead(buf unsafe.Pointer, capacity uint32) int32

//go:wasmimport meshd output_write
func outputWrite(p unsafe.Pointer, n uint32) int32

var inits, calls int

// table is made at init: every instance shares it, as they share
// everything their initialiser computed.
var table = map[string]int{}

func init() {
	inits++
	for i := range 100 {
		table[strconv.Itoa(i)] = i
	}
}

//go:wasmexport meshd_abi_v1
func marker() {}

//go:wasmexport meshd_describe
func describe() int32 {
	write(`{"name":"snap"}`)
	return 0
}

//go:wasmexport meshd_http
func serve(n int32) int32 {
	calls++
	if n > 0 {
		buf := make([]byte, n)
		inputRead(unsafe.Pointer(&buf[0]), uint32(n))
	}
	var b strings.Builder
	var r [16]byte
	for i := range r {
		r[i] = byte(rand.Uint32())
	}
	b.WriteString("rand " + hex.EncodeToString(r[:]) + "\n")
	b.WriteString("maphash " + strconv.FormatUint(maphash.String(maphash.MakeSeed(), "meshd"), 16) + "\n")
	b.WriteString("order")
	for range 3 {
		m := make(map[int]bool, 64)
		for k := range 64 {
			m[k] = true
		}
		for k := range m {
			b.WriteString(" " + strconv.Itoa(k))
		}
	}
	b.WriteString("\n")
	_, _ = crand.Read(r[:])
	b.WriteString("crypto " + hex.EncodeToString(r[:]) + "\n")
	b.WriteString("now " + strconv.FormatInt(time.Now().UnixNano(), 10) + "\n")
	b.WriteString("inits " + strconv.Itoa(inits) + "\n")
	b.WriteString("calls " + strconv.Itoa(calls) + "\n")
	b.WriteString("table " + strconv.Itoa(len(table)) + "\n")
	write(b.String())
	return 0
}

func write(s string) {
	if len(s) > 0 {
		outputWrite(unsafe.Pointer(unsafe.StringData(s)), uint32(len(s)))
	}
}

func main() {}
