package runtime

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"testing"
	"unsafe"

	"github.com/meshd/meshd/internal/wattest"
	"github.com/tetratelabs/wazero/experimental"
)

// A memory reset for reuse holds exactly the image again, whatever its
// last instance wrote in the image's range, read there, or grew beyond it.
func TestImageMemoryResetIsTheImage(t *testing.T) {
	const size, limit = 64 * 4096, 1 << 24
	image := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for off := 0; off < size; off += 4096 {
		if off/4096%3 != 0 { // every third page a hole (zero)
			for i := off; i < off+4096; i += 8 {
				image[i] = byte(rng.Uint32())
			}
		}
	}
	img, err := newMemoryImage(image, "")
	if err != nil {
		t.Fatal(err)
	}
	defer img.close()
	if !img.copyOnWrite() {
		t.Skip("no memfd here: memories are copies, never reset")
	}
	if pagemap() == nil {
		t.Skip("no /proc/self/pagemap: memories are not kept")
	}
	lm := img.linearMemory(size, limit)
	m, ok := lm.(*imageMemory)
	if !ok {
		t.Fatalf("linearMemory gave %T, want *imageMemory", lm)
	}
	addr := unsafe.Pointer(&m.buf[0])
	for round := range 3 {
		grown := size + (round+1)*5*4096
		buf := m.Reallocate(uint64(grown))
		if !bytes.Equal(buf[:size], image) {
			t.Fatalf("round %d: the memory does not start as the image", round)
		}
		for i, c := range buf[size:] {
			if c != 0 {
				t.Fatalf("round %d: byte %d past the image is %#x, want 0", round, size+i, c)
			}
		}
		// Write some pages (one byte of them, or all of them), read others,
		// and write past the image.
		var sink byte
		for off := 0; off < size; off += 4096 {
			switch rng.IntN(3) {
			case 0:
				buf[off+rng.IntN(4096)] ^= 0xff
			case 1:
				for i := off; i < off+4096; i++ {
					buf[i] = byte(round + 1)
				}
			case 2:
				sink ^= buf[off]
			}
		}
		_ = sink
		for i := size; i < grown; i += 512 {
			buf[i] = 0xee
		}
		lm.Free()
		next := img.linearMemory(size, limit)
		if n, ok := next.(*imageMemory); !ok || unsafe.Pointer(&n.buf[0]) != addr {
			t.Fatalf("round %d: the freed memory was not reused", round)
		}
		lm = next
	}
	lm.Free()
	// A memory kept with another limit is not handed out for this one,
	// nor does it hide one that fits.
	other := img.linearMemory(size, 2*limit).(*imageMemory)
	if unsafe.Pointer(&other.buf[0]) == addr || len(other.buf) != 2*limit {
		t.Fatal("a memory of another limit was handed out")
	}
	other.Free()
	if m := img.linearMemory(size, limit).(*imageMemory); unsafe.Pointer(&m.buf[0]) != addr {
		t.Fatal("the kept memory of this limit was not reused behind one of another")
	} else {
		m.Free()
	}
	img.close()
	if len(img.spare) != 0 {
		t.Fatalf("%d memories kept after the image closed", len(img.spare))
	}
}

// An instance restored into the memory of a closed one that wrote to it
// reads the snapshot, not what the closed one wrote, and no new mapping
// was made for it.
func TestRestoredIntoAReusedMemory(t *testing.T) {
	if pagemap() == nil {
		t.Skip("no /proc/self/pagemap: memories are not kept")
	}
	restoreHooks(t)
	var maps atomic.Int64
	prevMap := mapPrivate
	mapPrivate = func(addr uintptr, length, fd int) error {
		maps.Add(1)
		return prevMap(addr, length, fd)
	}
	m := loadIO(t, wattest.Build(t, "testdata/snap-marker.wat"), ModuleConfig{Name: "marker"})
	a, err := m.newInstance(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	callOn(t, a, "w")
	if got := marker(t, a); got != "\x77\x77\x01D" {
		t.Fatalf("writer reads %q after its write", got)
	}
	m.closeInstance(a)
	before := maps.Load()
	b := instances(t, m, 1)[0]
	if got := marker(t, b); got != markerFresh {
		t.Fatalf("an instance in the writer's memory reads %q, want %q", got, markerFresh)
	}
	if maps.Load() != before {
		t.Fatalf("a new mapping was made (%d → %d): the memory was not reused", before, maps.Load())
	}
}

// Memories of one image are reset side by side (each with its own pagemap
// buffer), in place and for reuse, and each holds exactly the image
// after; the image closing while they are reset never unmaps it under a
// reset (run with -race).
func TestImageMemoriesResetSideBySide(t *testing.T) {
	const size, limit, workers, rounds = 32 * 4096, 1 << 22, 4, 40
	image := make([]byte, size)
	for i := range image {
		image[i] = byte(i*7 + i/4096)
	}
	img, err := newMemoryImage(image, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !img.copyOnWrite() || pagemap() == nil {
		img.close()
		t.Skip("memories are copies or not kept here")
	}
	var wrong atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lm := img.linearMemory(size, limit)
			for r := range rounds {
				buf := lm.Reallocate(size)
				for off := (w + r) % 3 * 4096; off < size; off += 3 * 4096 {
					buf[off+w] = byte(0xa0 + w) // this worker's marks
				}
				if r%2 == 0 && img.resetInPlace(lm) {
					if !bytes.Equal(lm.Reallocate(size), image) {
						wrong.Add(1)
					}
					continue
				}
				lm.Free() // reset and kept, or unmapped
				lm = img.linearMemory(size, limit)
				if !bytes.Equal(lm.Reallocate(size), image) {
					wrong.Add(1)
				}
			}
			lm.Free()
		}()
	}
	wg.Wait()
	if n := wrong.Load(); n != 0 {
		t.Fatalf("%d memories did not hold the image after a reset", n)
	}
	// Closing while others reset: each reset either ran before the close
	// or is refused after it.
	lms := make([]experimental.LinearMemory, workers)
	for i := range lms {
		lms[i] = img.linearMemory(size, limit)
		lms[i].Reallocate(size)[0] = 1
	}
	for _, lm := range lms {
		wg.Add(1)
		go func() { defer wg.Done(); img.resetInPlace(lm); lm.Free() }()
	}
	img.close()
	wg.Wait()
	if len(img.spare) != 0 {
		t.Fatalf("%d memories kept after the image closed", len(img.spare))
	}
}
