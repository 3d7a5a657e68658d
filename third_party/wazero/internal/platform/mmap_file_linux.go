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

// ReleaseFilePages drops the pages of b, a private read-only mapping of a
// file (MmapCodeFile), from the process's resident set (meshd patch): the
// page cache keeps them, and the next access maps them back from it. Only
// for such a mapping: anonymous memory would lose its contents.
func ReleaseFilePages(b []byte) error {
	return unix.Madvise(b, unix.MADV_DONTNEED)
}

// PopulatePages maps the pages of b in at once (meshd patch), readable:
// one system call rather than a page fault each at first use
// (MADV_POPULATE_READ, Linux 5.14; before it, MADV_WILLNEED, which only
// starts reading them).
func PopulatePages(b []byte) error {
	if err := unix.Madvise(b, unix.MADV_POPULATE_READ); err == nil {
		return nil
	}
	return unix.Madvise(b, unix.MADV_WILLNEED)
}
