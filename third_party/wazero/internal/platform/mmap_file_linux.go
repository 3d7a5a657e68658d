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
