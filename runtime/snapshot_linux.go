package runtime

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/tetratelabs/wazero/experimental"
)

// memoryImage is a snapshot's linear memory. On Linux it lives in a file
// written once, without its all-zero pages (holes cost nothing and read as
// zeros), and each restored instance maps it privately at the start of its
// memory's reservation: the instances of a module version share the
// image's pages through the page cache, and a page one of them writes
// becomes its own copy, invisible to the others (copy-on-write). The file
// is, with a cache directory and for an image of minFileImage or more
// (a Go guest's), an unnamed file in it (O_TMPFILE), reopened
// read-only and its writable descriptor closed: its pages are the page
// cache's, which the kernel can write back and reclaim while no instance
// uses them (an asleep service, releasePages), and nothing can write to
// it, having no name to open it by and no writable descriptor. Without a
// cache directory, or where the system refuses such a file, it is a
// sealed memfd (anonymous shared memory, no file system): the seals forbid
// any write. Either way no instance and no bug can change the image under
// the others. Where neither or the mapping is refused, instances get a
// copy of the image (data) instead.
type memoryImage struct {
	fd      int    // the image's file (unnamed, or a memfd), or -1
	data    []byte // the contents: a read-only shared mapping of fd, or a Go copy
	mapped  bool   // data is a mapping (munmap at close)
	nonZero uint64 // bytes of the pages that are not all zero

	// mu guards spare and closed; resets hold it shared (several at once,
	// each with its own memory), so that close cannot unmap the image
	// under one (snapshot_reuse_linux.go).
	mu     sync.RWMutex
	spare  []*imageMemory // retired instances' memories, reset
	closed bool           // no memory is kept any more
}

// Linux memfd_create(2) and fcntl(2) constants not in package syscall.
const (
	mfdCloexec      = 0x1
	mfdAllowSealing = 0x2
	fAddSeals       = 1033
	fSealSeal       = 0x1
	fSealShrink     = 0x2
	fSealGrow       = 0x4
	fSealWrite      = 0x8
)

// pageSize is the granularity of the image's holes and of copy-on-write.
var pageSize = os.Getpagesize()

// newMemoryImage makes the image of mem. It fails only when it cannot
// make a copy; a refused file gives an image that instances copy.
// dir is where its file goes ("": a memfd).
func newMemoryImage(mem []byte, dir string) (*memoryImage, error) {
	img := &memoryImage{fd: -1, nonZero: nonZeroBytes(mem)}
	if fd, err := newImageFile(mem, fileImageDir(dir, img.nonZero)); err == nil {
		data, merr := syscall.Mmap(fd, 0, len(mem), syscall.PROT_READ, syscall.MAP_SHARED)
		if merr == nil || len(mem) == 0 {
			img.fd, img.data, img.mapped = fd, data, merr == nil
			return img, nil
		}
		_ = syscall.Close(fd)
	}
	img.data = append([]byte(nil), mem...)
	return img, nil
}

// newMemoryImagePages makes the image of a memory of size bytes whose
// non-zero 4 KiB pages are idx, their contents one after the other in
// pages (a snapshot read from the cache), without building the memory in
// Go first: only a refused file costs that copy.
func newMemoryImagePages(size int, idx []uint32, pages []byte, dir string) (*memoryImage, error) {
	img := &memoryImage{fd: -1, nonZero: uint64(len(idx)) * snapPage}
	if fd, err := imageFilePages(size, idx, pages, fileImageDir(dir, img.nonZero)); err == nil {
		data, merr := syscall.Mmap(fd, 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
		if merr == nil || size == 0 {
			img.fd, img.data, img.mapped = fd, data, merr == nil
			return img, nil
		}
		_ = syscall.Close(fd)
	}
	img.data = expandPages(size, idx, pages)
	return img, nil
}

// imageFilePages writes the pages idx of a memory of size bytes into a new
// image file (imageFile).
func imageFilePages(size int, idx []uint32, pages []byte, dir string) (int, error) {
	return imageFile(dir, size, func(fd int) error {
		for i := 0; i < len(idx); {
			// A run of consecutive pages in one write.
			j := i + 1
			for j < len(idx) && idx[j] == idx[j-1]+1 {
				j++
			}
			run := pages[i*snapPage : j*snapPage]
			if err := pwriteAll(fd, run, int64(idx[i])*snapPage); err != nil {
				return err
			}
			i = j
		}
		return nil
	})
}

// newImageFile makes the file of an image. A variable, so that tests can
// refuse it.
var newImageFile = imageFileOf

// imageFileOf writes mem's non-zero pages into a new image file
// (imageFile).
func imageFileOf(mem []byte, dir string) (int, error) {
	return imageFile(dir, len(mem), func(fd int) error {
		for off := 0; off < len(mem); off += pageSize {
			page := mem[off:min(off+pageSize, len(mem))]
			if allZero(page) {
				continue
			}
			if err := pwriteAll(fd, page, int64(off)); err != nil {
				return err
			}
		}
		return nil
	})
}

// pwriteAll writes all of p into fd at off.
func pwriteAll(fd int, p []byte, off int64) error {
	for done := 0; done < len(p); {
		n, err := syscall.Pwrite(fd, p[done:], off+int64(done))
		if err != nil {
			return fmt.Errorf("pwrite: %w", err)
		}
		done += n
	}
	return nil
}

// minFileImage is the smallest image (its non-zero bytes) given a file
// rather than a memfd: a file costs about 0.1 ms more to make, and what
// the page cache could reclaim of a smaller image is not worth it. A
// variable, so that tests can lower it.
var minFileImage uint64 = 256 << 10

// fileImageDir is dir for an image of nonZero bytes that gets a file, ""
// for one that gets a memfd.
func fileImageDir(dir string, nonZero uint64) string {
	if nonZero < minFileImage {
		return ""
	}
	return dir
}

// imageFile makes the file of an image of size bytes and has write fill
// it: an unnamed file in dir, returned read-only (unnamedFile), or, when
// dir is empty or that fails, a sealed memfd.
func imageFile(dir string, size int, write func(fd int) error) (int, error) {
	if dir != "" {
		if fd, err := unnamedFile(dir, size, write); err == nil {
			return fd, nil
		}
	}
	return sealedMemfd(size, write)
}

// unnamedFile makes an unnamed file of size bytes in dir (O_TMPFILE: it
// never has a name, and goes when its last descriptor and mapping do), has
// write fill it, and returns a read-only descriptor of it, the writable
// one closed. A variable, so that tests can refuse it.
var unnamedFile = func(dir string, size int, write func(fd int) error) (int, error) {
	if oTmpfile == 0 {
		return -1, errors.New("O_TMPFILE: not on this architecture")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return -1, err
	}
	fd, err := syscall.Open(dir, oTmpfile|syscall.O_RDWR|syscall.O_CLOEXEC, 0o400)
	if err != nil {
		return -1, fmt.Errorf("O_TMPFILE in %s: %w", dir, err)
	}
	defer syscall.Close(fd)
	if err := syscall.Ftruncate(fd, int64(size)); err != nil {
		return -1, fmt.Errorf("ftruncate: %w", err)
	}
	if err := write(fd); err != nil {
		return -1, err
	}
	ro, err := syscall.Open(fmt.Sprintf("/proc/self/fd/%d", fd), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("reopening read-only: %w", err)
	}
	return ro, nil
}

// sealedMemfd makes a memfd of size bytes, has write fill it, and seals it.
func sealedMemfd(size int, write func(fd int) error) (int, error) {
	if sysMemfdCreate < 0 {
		return -1, errors.New("memfd_create: not on this architecture")
	}
	// A fixed label (shown in /proc/PID/maps): a module's name is the
	// guest author's to choose.
	label, err := syscall.BytePtrFromString("meshd-snapshot")
	if err != nil {
		return -1, err
	}
	nr := sysMemfdCreate
	r, _, errno := syscall.Syscall(uintptr(nr), uintptr(unsafe.Pointer(label)), mfdCloexec|mfdAllowSealing, 0)
	if errno != 0 {
		return -1, fmt.Errorf("memfd_create: %w", errno)
	}
	fd := int(r)
	fail := func(err error) (int, error) {
		_ = syscall.Close(fd)
		return -1, err
	}
	if err := syscall.Ftruncate(fd, int64(size)); err != nil {
		return fail(fmt.Errorf("ftruncate: %w", err))
	}
	if err := write(fd); err != nil {
		return fail(err)
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), fAddSeals,
		fSealSeal|fSealShrink|fSealGrow|fSealWrite); errno != 0 {
		return fail(fmt.Errorf("sealing: %w", errno))
	}
	return fd, nil
}

// mapPrivate maps length bytes of fd over the start of the reservation at
// addr, privately (copy-on-write). A variable, so that tests can refuse it.
var mapPrivate = func(addr uintptr, length, fd int) error {
	r, _, errno := syscall.Syscall6(syscall.SYS_MMAP, addr, uintptr(length),
		syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_FIXED, uintptr(fd), 0)
	if errno != 0 {
		return errno
	}
	if r != addr {
		return errors.New("mmap: mapped elsewhere")
	}
	return nil
}

// linearMemory gives a restored instance its memory: a reservation of
// limit bytes (as mmapAllocator's) with the image mapped privately over
// its start, or, where that is refused, copied into it; where even the
// reservation is refused, a Go slice holding a copy.
func (img *memoryImage) linearMemory(capacity, limit uint64) experimental.LinearMemory {
	n := len(img.data)
	if limit == 0 || limit > 1<<32 || uint64(n) > limit {
		return copyMemory(img.data, limit)
	}
	if m := img.takeSpare(limit); m != nil {
		return m
	}
	buf, err := syscall.Mmap(-1, 0, int(limit), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		return copyMemory(img.data, limit)
	}
	if n > 0 {
		if img.fd < 0 || mapPrivate(uintptr(unsafe.Pointer(&buf[0])), n, img.fd) != nil {
			copy(buf, img.data)
			return &mmapMemory{buf: buf}
		}
	}
	return &imageMemory{mmapMemory: mmapMemory{buf: buf}, img: img}
}

// copyOnWrite reports whether instances map the image rather than copy it.
func (img *memoryImage) copyOnWrite() bool { return img.fd >= 0 }

// releasePages drops the image's pages from meshd's own mapping of it
// (an asleep module), and the spare memories it keeps: the pages stay in
// its file, and a restore maps what it needs. Nothing is lost; only the
// resident set shrinks. Of an image in an unnamed file, the kernel may
// then write the pages back and reclaim them.
func (img *memoryImage) releasePages() {
	img.dropSpares()
	if img.mapped && len(img.data) > 0 {
		_ = syscall.Madvise(img.data, syscall.MADV_DONTNEED)
	}
}

func (img *memoryImage) close() {
	img.closeSpares()
	if img.mapped {
		_ = syscall.Munmap(img.data)
	}
	img.data, img.mapped = nil, false
	if img.fd >= 0 {
		_ = syscall.Close(img.fd)
		img.fd = -1
	}
}

// madvPopulateWrite is MADV_POPULATE_WRITE (Linux 5.14): fault pages in
// as if written (here: their private copies made), in one call.
const madvPopulateWrite = 23

// prefaultRefused is set once the kernel refused to populate (older than
// 5.14): the pages are then faulted during the first call.
var prefaultRefused atomic.Bool

// prefault has the runs of mem copied now, as the first write would.
func prefault(mem []byte, runs []pageRun) {
	for _, r := range runs {
		if prefaultRefused.Load() {
			return
		}
		end := uint64(r.off) + uint64(r.n)
		if end > uint64(len(mem)) {
			return
		}
		p := mem[r.off:end]
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), madvPopulateWrite); errno != 0 {
			if errno == syscall.EINVAL {
				prefaultRefused.Store(true)
			}
			return
		}
	}
}
