package platform

import (
	"os"

	"golang.org/x/sys/unix"
)

// MmapCodeFile maps n bytes of f from off (a multiple of CodeFileAlign),
// read-only and executable, with the pages the page cache holds mapped at
// once (meshd patch): cached machine code runs straight from the cache
// file, not copied into fresh memory that must first be zeroed. The
// mapping is private, so it cannot write to the file; the file must not be
// modified in place while mapped (the file cache replaces files by rename).
// Release it with MunmapCodeSegment.
func MmapCodeFile(f *os.File, off int64, n int) ([]byte, error) {
	return unix.Mmap(int(f.Fd()), off, n, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_POPULATE)
}

// ReleaseCodeFilePages drops code's pages, a mapping MmapCodeFile made,
// from the process (meshd patch): they stay in the page cache, shared, and
// come back on first use by a minor fault. Reading the whole mapping (its
// checksum) made every page resident: 12 MB of a Go-built module, most of
// which a service never runs. Errors are ignored: the pages then stay.
func ReleaseCodeFilePages(code []byte) {
	_ = unix.Madvise(code, unix.MADV_DONTNEED)
}
