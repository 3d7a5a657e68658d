package runtime

import (
	"testing"
	"unsafe"
)

func TestMmapAllocatorGrowsInPlace(t *testing.T) {
	const max = 1 << 20
	mem := mmapAllocator{}.Allocate(0, max)
	if mem == nil {
		t.Fatal("no reservation")
	}
	defer mem.Free()
	small := mem.Reallocate(64 << 10)
	if len(small) != 64<<10 || small[100] != 0 {
		t.Fatalf("first page: len %d", len(small))
	}
	small[100] = 42
	big := mem.Reallocate(max)
	if len(big) != max || unsafe.SliceData(big) != unsafe.SliceData(small) {
		t.Fatal("grew by moving the memory")
	}
	if big[100] != 42 || big[max-1] != 0 {
		t.Fatal("contents not kept, or new pages not zero")
	}
	if mem.Reallocate(max+1) != nil {
		t.Fatal("grew past the maximum")
	}
	mem.Free()
	if mem.Reallocate(1) != nil {
		t.Fatal("usable after Free")
	}
	mem.Free() // twice is harmless
	// No pages at most: a slice, never nil (wazero would panic on nil).
	zero := mmapAllocator{}.Allocate(0, 0)
	if _, ok := zero.(*sliceMemory); !ok || len(zero.Reallocate(0)) != 0 || zero.Reallocate(1) != nil {
		t.Fatalf("zero maximum: %T", zero)
	}
	s := &sliceMemory{max: 3 << 16}
	a := s.Reallocate(1 << 16)
	a[7] = 9
	if b := s.Reallocate(3 << 16); len(b) != 3<<16 || b[7] != 9 || s.Reallocate(4<<16) != nil {
		t.Fatal("slice memory: contents or maximum")
	}
}
