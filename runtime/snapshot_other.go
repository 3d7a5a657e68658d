//go:build !linux

package runtime

import "github.com/tetratelabs/wazero/experimental"

// memoryImage is a snapshot's linear memory: where no copy-on-write
// mapping is written, a copy each restored instance copies.
type memoryImage struct {
	data    []byte
	nonZero uint64
}

func newMemoryImage(mem []byte, _ string) (*memoryImage, error) {
	return &memoryImage{data: append([]byte(nil), mem...), nonZero: nonZeroBytes(mem)}, nil
}

func (img *memoryImage) linearMemory(_, limit uint64) experimental.LinearMemory {
	return copyMemory(img.data, limit)
}

func (img *memoryImage) copyOnWrite() bool { return false }

func (img *memoryImage) close() { img.data = nil }

// releasePages does nothing where the image is a copy in the Go heap.
func (img *memoryImage) releasePages() {}

// prefault does nothing where no copy-on-write mapping is written: the
// instance's memory is a copy, all its own already.
func prefault([]byte, []pageRun) {}

// newMemoryImagePages makes the image of a memory of size bytes whose
// non-zero 4 KiB pages are idx, their contents one after the other in
// pages.
func newMemoryImagePages(size int, idx []uint32, pages []byte, _ string) (*memoryImage, error) {
	return &memoryImage{data: expandPages(size, idx, pages), nonZero: uint64(len(idx)) * snapPage}, nil
}

// heldPages is false where memories are copies, never kept.
func heldPages(experimental.LinearMemory) bool { return false }

// resetInPlace is false where memories are copies: an instance is not
// renewed.
func (img *memoryImage) resetInPlace(experimental.LinearMemory) bool { return false }
