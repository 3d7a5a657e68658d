package runtime

import (
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

// mmapAllocator backs each instance's linear memory with its own anonymous
// mapping of the memory's maximum size (the module's max, else the
// MemoryLimitPages cap), reserved but not committed: the kernel supplies
// zeroed pages as the guest touches them, so growing the memory never
// copies it and never zeroes it in Go, and closing an instance gives its
// pages straight back to the system. wazero's default, a Go slice, copies
// the whole memory on every memory.grow beyond its capacity; a Go guest
// grows many times while its heap settles, and that copying was a third of
// the time of a GET /orders/{id}.
type mmapAllocator struct{}

// Allocate never returns nil (wazero would panic): a memory it cannot map
// (no pages at most, or the mapping refused) gets a Go slice.
func (mmapAllocator) Allocate(capacity, max uint64) experimental.LinearMemory {
	if max == 0 || max > 1<<32 {
		return &sliceMemory{max: max, buf: make([]byte, 0, min(capacity, max))}
	}
	buf, err := syscall.Mmap(-1, 0, int(max), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		return &sliceMemory{max: max, buf: make([]byte, 0, min(capacity, max))}
	}
	// Transparent huge pages where the system allows them (THP "madvise"
	// mode): a Go guest touches megabytes as its runtime starts, and one
	// page fault per 4 KiB page was most of an instance's start on a
	// virtual machine. The cost is memory rounded up to 2 MiB per region
	// touched (about 11 MB more resident for the demo daemon).
	_ = syscall.Madvise(buf, syscall.MADV_HUGEPAGE)
	return &mmapMemory{buf: buf}
}

type mmapMemory struct{ buf []byte }

// Reallocate returns the first size bytes of the reservation; the address
// never changes.
func (m *mmapMemory) Reallocate(size uint64) []byte {
	if m.buf == nil || size > uint64(len(m.buf)) {
		return nil
	}
	return m.buf[:size:size]
}

// Free unmaps the reservation. wazero calls it once, when the instance is
// closed and no call runs in it.
func (m *mmapMemory) Free() {
	if m.buf != nil {
		_ = syscall.Munmap(m.buf)
		m.buf = nil
	}
}

// memoryAllocator is the allocator instances are created with (nil: wazero's).
var memoryAllocator experimental.MemoryAllocator = mmapAllocator{}
