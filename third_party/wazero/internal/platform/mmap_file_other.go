//go:build !linux

package platform

import (
	"errors"
	"os"
)

// MmapCodeFile is Linux-only (meshd patch); elsewhere cached code is read
// into a code segment.
func MmapCodeFile(*os.File, int64, int) ([]byte, error) { return nil, errors.ErrUnsupported }

// ReleaseFilePages is Linux-only (meshd patch); MmapCodeFile maps nothing
// elsewhere.
func ReleaseFilePages([]byte) error { return errors.ErrUnsupported }

// PopulatePages is Linux-only (meshd patch): elsewhere a no-op.
func PopulatePages([]byte) error { return nil }
