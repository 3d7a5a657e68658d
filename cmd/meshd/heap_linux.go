package main

import (
	"runtime"
	"syscall"
	"unsafe"
)

// startHeapBytes is how much of the Go heap `meshd run` asks to have in
// transparent huge pages before it starts: about what a start with the
// demo plugins grows the heap to (decoded modules, compiled-code metadata,
// JetStream recovery), rounded up.
const startHeapBytes = 32 << 20

// hugeStartHeap gives the first startHeapBytes of heap the daemon grows into
// 2 MiB pages. The Go runtime maps its heap with 4 KiB pages when the system
// runs transparent huge pages in "madvise" mode (common, and this machine's),
// and on a virtual machine each first touch of a 4 KiB page costs about
// 15 µs: a warm start took some 5,000 such faults in the heap alone, a third
// of its CPU time. So: allocate one object of that size (fresh heap, not yet
// touched), advise huge pages on it, and free it with a collection; the
// runtime then hands those pages out to the allocations that follow, and
// the first touch of each 2 MiB costs one fault. Memory not used is given
// back by the runtime's scavenger as usual. Where huge pages are off the
// advice has no effect, and what is left is the cost of that collection
// (a few milliseconds; runDaemon holds the collector otherwise).
func hugeStartHeap() {
	b := make([]byte, startHeapBytes)
	const huge = 2 << 20
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	first := int((p+huge-1)&^(huge-1) - p)         // first 2 MiB boundary in b
	last := int((p+uintptr(len(b)))&^(huge-1) - p) // last one
	if last > first {
		_ = syscall.Madvise(b[first:last], syscall.MADV_HUGEPAGE)
	}
	runtime.KeepAlive(b)
	b = nil
	runtime.GC()
}
