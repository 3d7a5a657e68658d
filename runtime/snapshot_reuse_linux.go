package runtime

import (
	"encoding/binary"
	"os"
	"slices"
	"sync"
	"syscall"
	"unsafe"

	"github.com/tetratelabs/wazero/experimental"
)

// A retired instance's memory is reset to its snapshot's image and kept
// for the next instance restored from that image, instead of unmapped
// (imageMemory). A fresh instance in a new mapping paid a page fault for
// every page its first call read or wrote (on this machine's virtual
// machines about 15 µs a fault, most of a fresh instance's cost); a reset
// memory keeps its page tables: the pages the last instance read stay
// mapped to the image, those it wrote stay its private copies, and only
// their contents are put back.
//
// The reset must leave exactly the image: the next instance is a fresh
// one, and nothing of the last request may reach it. It asks the kernel
// (/proc/self/pagemap) which pages of the image's range are no longer the
// image's: a page of the private mapping that was written became an
// anonymous copy; one only read is still the memfd's page and holds the
// image. Every present or swapped page that is not the memfd's gets the
// image's contents copied over it. What the memory grew beyond the image
// is dropped (MADV_DONTNEED: zero pages on the next touch). Where the
// kernel cannot say (no pagemap), memories are not kept.

// maxSpareMemories bounds the reset memories an image keeps: enough for a
// pool's worth of instances retired at once, each holding the pages its
// instance wrote.
const maxSpareMemories = 8

// imageMemory is a restored instance's linear memory with the image
// mapped copy-on-write over the start of its reservation.
type imageMemory struct {
	mmapMemory
	img *memoryImage
	// grown is the most of buf any instance used: what a reset drops
	// beyond the image.
	grown uint64
	// reused: an earlier instance's, reset (its page tables kept).
	reused bool
	// pagemapBuf holds a reset's pagemap entries, kept for the next.
	pagemapBuf []byte
}

// heldPages reports whether lm is a reset memory of an earlier instance:
// the pages a first call writes are its own already, and prefaulting
// them again would only walk them.
func heldPages(lm experimental.LinearMemory) bool {
	m, ok := lm.(*imageMemory)
	return ok && m.reused
}

func (m *imageMemory) Reallocate(size uint64) []byte {
	b := m.mmapMemory.Reallocate(size)
	if b != nil && size > m.grown {
		m.grown = size
	}
	return b
}

// Free resets the memory and gives it to the image for the next instance,
// or unmaps it when the image keeps enough, is closed, or the reset
// failed.
func (m *imageMemory) Free() {
	if m.buf == nil {
		return
	}
	if !m.img.keep(m) {
		m.mmapMemory.Free()
	}
}

// keep resets m and adds it to img's spares; false when it did not.
func (img *memoryImage) keep(m *imageMemory) bool {
	img.mu.RLock()
	full := len(img.spare) >= maxSpareMemories
	img.mu.RUnlock()
	if full || !img.reset(m, false) {
		return false
	}
	img.mu.Lock()
	defer img.mu.Unlock()
	if img.closed || len(img.spare) >= maxSpareMemories {
		return false
	}
	m.grown = uint64(len(img.data))
	img.spare = append(img.spare, m)
	return true
}

// resetInPlace resets lm, a live instance's memory no larger than the
// image, to the image, and reports whether it did.
func (img *memoryImage) resetInPlace(lm experimental.LinearMemory) bool {
	m, ok := lm.(*imageMemory)
	return ok && m.img == img && img.reset(m, true)
}

// reset resets m to the image while img is open; inPlace, only if m did
// not grow past the image. It holds img.mu shared, so close cannot unmap
// the image under it while other memories of img are reset beside it.
func (img *memoryImage) reset(m *imageMemory, inPlace bool) bool {
	img.mu.RLock()
	defer img.mu.RUnlock()
	if img.closed || inPlace && m.grown != uint64(len(img.data)) {
		return false
	}
	return resetMemory(m.buf, img.data, m.grown, &m.pagemapBuf) == nil
}

// takeSpare returns a reset memory of img's with a reservation of limit
// bytes, or nil.
func (img *memoryImage) takeSpare(limit uint64) *imageMemory {
	img.mu.Lock()
	defer img.mu.Unlock()
	for i := len(img.spare) - 1; i >= 0; i-- {
		if m := img.spare[i]; uint64(len(m.buf)) == limit {
			img.spare = slices.Delete(img.spare, i, i+1)
			m.reused = true
			return m
		}
	}
	return nil
}

// dropSpares unmaps the spare memories img keeps (an asleep module): the
// next instances map the image afresh.
func (img *memoryImage) dropSpares() { img.freeSpares(false) }

// closeSpares unmaps the memories img keeps, and keeps none from now on.
func (img *memoryImage) closeSpares() { img.freeSpares(true) }

// freeSpares unmaps the spare memories, and with closing keeps none from
// now on (under the same lock, so that none is added after).
func (img *memoryImage) freeSpares(closing bool) {
	img.mu.Lock()
	spare := img.spare
	img.spare = nil
	img.closed = img.closed || closing
	img.mu.Unlock()
	for _, m := range spare {
		m.mmapMemory.Free()
	}
}

// pagemap is /proc/self/pagemap, opened once; nil when it cannot be.
var pagemap = sync.OnceValue(func() *os.File {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return nil
	}
	return f
})

// pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst).
const (
	pmPresent = 1 << 63
	pmSwapped = 1 << 62
	pmFile    = 1 << 61 // a file page or shared anonymous: here, the memfd's
)

// resetMemory makes buf's first len(image) bytes the image again (buf
// maps image's memfd privately there) and drops what lies between them
// and grown. It reads the pagemap entries into *scratch, grown to fit
// and kept for the next reset.
func resetMemory(buf, image []byte, grown uint64, scratch *[]byte) error {
	f := pagemap()
	if f == nil {
		return os.ErrNotExist
	}
	n := len(image)
	if n > len(buf) || n%pageSize != 0 {
		return syscall.EINVAL
	}
	if n > 0 {
		base := uintptr(unsafe.Pointer(&buf[0]))
		pages := n / pageSize
		if cap(*scratch) < 8*pages {
			*scratch = make([]byte, 8*pages)
		}
		entries := (*scratch)[:8*pages]
		if _, err := f.ReadAt(entries, int64(base/uintptr(pageSize))*8); err != nil {
			return err
		}
		for i := range pages {
			e := binary.LittleEndian.Uint64(entries[8*i:])
			if e&(pmPresent|pmSwapped) != 0 && e&pmFile == 0 {
				off := i * pageSize
				copy(buf[off:off+pageSize], image[off:off+pageSize])
			}
		}
	}
	if end := min(grown, uint64(len(buf))); end > uint64(n) {
		if err := syscall.Madvise(buf[n:end], syscall.MADV_DONTNEED); err != nil {
			return err
		}
	}
	return nil
}
