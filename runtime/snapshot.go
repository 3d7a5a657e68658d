package runtime

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"
)

// A module version's snapshot is the state of its first instance right
// after its initialiser ran: the contents of its linear memory and the
// values of its mutable globals. Every later instance starts from it
// (experimental.WithRestore, our fork's change 12) instead of copying the
// module's data segments and running the initialiser again: wazero
// initialises what is the same in every instance (immutable globals,
// tables, the host's WASI state), the memory comes from the image (mapped
// copy-on-write where the system allows it, see snapshot_linux.go), and
// the mutable globals take the captured values.
//
// What the initialiser computed is then shared by every instance, which
// is what makes a restored instance a fresh one: it would have computed
// the same. The exceptions are what came from outside and must differ per
// instance or be current:
//   - the clock: a guest reads it with WASI's clock_time_get at every use;
//     what it kept of it at init (the Go runtime's monotonic base) is from
//     the same process's clock, so later readings stay consistent;
//   - random bytes (WASI's random_get): a generator seeded from them at
//     init would give every instance the same sequence. The initialiser of
//     the snapshot's instance reads its random bytes through a counter.
//     A guest that read none needs nothing. The Go runtime reads 32 bytes
//     (runtime.randinit) and derives from them every generator it keeps
//     (runtime.rand, behind math/rand, map seeds and map iteration order,
//     hash/maphash): ChaCha8 states (internal/chacha8rand.State) that
//     findChaCha8 finds in the image by recomputing their output, and
//     each restored instance gets fresh random keys in them (reseed).
//     A guest that read random bytes with no generator found in its image,
//     or more than the generators found account for, gets no snapshot:
//     its instances start the ordinary way (fallback).
//
// A guest can also opt out (ModuleConfig.DisableSnapshot).
type snapshot struct {
	globals []uint64 // experimental.MutableGlobals of the first instance
	pages   uint32   // the memory's size, in 64 KiB pages
	image   *memoryImage
	reseed  []uint32 // offsets of the Go runtime's ChaCha8 states
	// hot are the pages a restored instance's first call writes, as
	// learned from a probe (learnHotPages): a restored instance has them
	// copied at once (prefault), in one system call rather than one page
	// fault each during its first call. Set before any instance but the
	// probe is restored. (Mapping the pages it only reads ahead as well
	// saved about as much in the first call as it cost in the restore.)
	hot []pageRun
	// clock is the monotonic clock of instances restored from a snapshot
	// read from disk, when the system's is behind the one it was taken
	// with (nil: the system's); see restoredClock.
	clock sys.Nanotime
}

// pageRun is a run of pages of linear memory: n bytes from off.
type pageRun struct{ off, n uint32 }

// maxHotBytes bounds what a restored instance copies ahead of its first
// call: what a Go-built service's first call writes (about 30 pages) with
// room to spare, a fraction of its memory.
const maxHotBytes = 512 << 10

// SnapshotInfo says whether a module's instances start from a snapshot.
type SnapshotInfo struct {
	// Taken: instances after the first are restored from a snapshot.
	Taken bool
	// Refused says why there is none (empty when Taken): opted out, or a
	// state that cannot be shared safely.
	Refused string
	// MemoryBytes is the size of the snapshot's linear memory.
	MemoryBytes uint64
	// ImageBytes is what the image holds in memory: its pages that are
	// not all zero (a zero page costs nothing).
	ImageBytes uint64
	// CopyOnWrite: instances map the image privately, each costing only
	// the pages it writes; false: each instance copies it.
	CopyOnWrite bool
	// Reseeded counts the random generators reset in each restored
	// instance.
	Reseeded int
	// PrefaultBytes is what each restored instance copies of the image
	// ahead of its first call: the pages a first call writes.
	PrefaultBytes uint64
	// FromCache: the snapshot was read from the compilation cache's
	// directory (snapshot_cache.go), and no initialiser ran in this
	// process.
	FromCache bool
	// NotCached says why a snapshot taken in this process is not kept in
	// the cache directory for the next start (empty when it is, or when
	// none was taken).
	NotCached string
}

// randCounter is the random source of the instance a snapshot is taken
// from: it counts the bytes the initialiser reads.
type randCounter struct{ n atomic.Int64 }

func (r *randCounter) Read(p []byte) (int, error) {
	n, err := io.ReadFull(rand.Reader, p)
	r.n.Add(int64(n))
	return n, err
}

// goRandSeedBytes is what the Go runtime reads from random_get at init
// (runtime.randinit: a 32-byte ChaCha8 key).
const goRandSeedBytes = 32

// takeSnapshot captures inst, fresh from its initialiser, which read
// randBytes random bytes. It returns nil and the reason when its state
// cannot be shared.
func (m *Module) takeSnapshot(inst *instance, randBytes int64) (*snapshot, string) {
	globals, ok := experimental.MutableGlobals(inst.mod)
	if !ok {
		return nil, "a mutable global holds a reference"
	}
	mem := inst.mod.Memory()
	if mem == nil {
		return nil, "no memory"
	}
	size := mem.Size()
	buf, ok := mem.Read(0, size)
	if !ok {
		return nil, "memory unreadable"
	}
	s := &snapshot{globals: globals, pages: size / 65536}
	if randBytes > 0 {
		s.reseed = findChaCha8(buf)
		switch {
		case len(s.reseed) == 0:
			return nil, fmt.Sprintf("the initialiser read %d random bytes and keeps no generator meshd can reseed", randBytes)
		case randBytes > goRandSeedBytes:
			return nil, fmt.Sprintf("the initialiser read %d random bytes, more than the Go runtime's %d", randBytes, goRandSeedBytes)
		}
	}
	img, err := newMemoryImage(buf, m.imageDir())
	if err != nil {
		return nil, fmt.Sprintf("memory image: %v", err)
	}
	s.image = img
	return s, ""
}

// imageDir is where the module's snapshot images get their files: the
// cache directory ("" without one: a memfd).
func (m *Module) imageDir() string {
	if m.snaps == nil {
		return ""
	}
	return m.snaps.dir
}

// close releases the image. No instance may use it afterwards.
func (s *snapshot) close() {
	if s != nil && s.image != nil {
		s.image.close()
	}
}

// restore instantiates the module from s. The caller's ctx already
// carries the call-stack limit and the deadline.
func (m *Module) restore(ctx context.Context, s *snapshot, inst *instance) (api.Module, error) {
	ctx = experimental.WithRestore(ctx, s.globals)
	alloc := &imageAllocator{img: s.image}
	ctx = experimental.WithMemoryAllocator(ctx, alloc)
	mod, err := m.rt.InstantiateModule(ctx, m.compiled, m.restoreCfg.WithNanosleep(inst.sleep))
	if err != nil {
		return nil, err
	}
	fail := func(err error) (api.Module, error) {
		_ = mod.Close(context.Background())
		return nil, err
	}
	mem := mod.Memory()
	if mem == nil {
		return fail(errors.New("restored instance has no memory"))
	}
	if cur := mem.Size() / 65536; cur < s.pages {
		if _, ok := mem.Grow(s.pages - cur); !ok {
			return fail(fmt.Errorf("growing the memory to the snapshot's %d pages", s.pages))
		}
	}
	if len(s.hot) > 0 && !heldPages(alloc.mem) {
		if buf, ok := mem.Read(0, mem.Size()); ok {
			prefault(buf, s.hot)
		}
	}
	if err := reseed(mem, s.reseed); err != nil {
		return fail(err)
	}
	inst.lm = alloc.mem
	return mod, nil
}

// renew makes inst, retired after its share of calls, a fresh instance
// again without instantiating the module: its memory reset to the
// snapshot's image, its globals, tables and segments to what restore
// gives, its random generators reseeded. False when it cannot be (not
// restored, its memory grew or is a copy, a table grew); inst is then
// unchanged but for its memory, and must be closed.
func (m *Module) renew(inst *instance) bool {
	s := m.snap
	if s == nil || inst.lm == nil {
		return false
	}
	mem := inst.mod.Memory()
	if mem == nil || mem.Size() != s.pages*65536 || !s.image.resetInPlace(inst.lm) {
		return false
	}
	if experimental.ResetRestored(inst.mod, s.globals) != nil || reseed(mem, s.reseed) != nil {
		return false
	}
	inst.calls = 0
	return true
}

// learnHotPages runs entry describe on a probe instance restored from s
// and records the pages it wrote (those that differ from the image), up
// to maxHotBytes: the pages any first call writes (the guest's stack,
// scheduler and allocator state) rather than those of one request.
func (m *Module) learnHotPages(ctx context.Context, s *snapshot) {
	probe, err := m.newInstance(ctx)
	if err != nil {
		return
	}
	defer m.closeInstance(probe)
	if m.runDescribe(ctx, probe) != nil {
		return
	}
	mem := probe.mod.Memory()
	buf, ok := mem.Read(0, min(mem.Size(), uint32(len(s.image.data))))
	if !ok {
		return
	}
	var hot []pageRun
	total := 0
	for off := 0; off+4096 <= len(buf) && total < maxHotBytes; off += 4096 {
		if string(buf[off:off+4096]) != string(s.image.data[off:off+4096]) {
			hot = addPage(hot, off)
			total += 4096
		}
	}
	s.hot = hot
}

// runDescribe runs entry describe on inst outside the pool (Start's own
// instances, before the pool serves).
func (m *Module) runDescribe(ctx context.Context, inst *instance) error {
	c := &Call{maxOutput: m.cfg.MaxOutputBytes}
	cc := inst.cc
	cc.parent, cc.call = ctx, c
	cc.deadline = time.Now().Add(m.cfg.CallTimeout)
	inst.timer.Reset(m.cfg.CallTimeout)
	inst.ctx = cc
	err := inst.fn(EntryDescribe).CallWithStack(cc, inst.stack[:1])
	inst.ctx = nil
	inst.timer.Stop()
	cc.parent, cc.call = context.Background(), nil
	return err
}

// hotBytes is the size of s.hot.
func (s *snapshot) hotBytes() uint64 {
	var n uint64
	for _, r := range s.hot {
		n += uint64(r.n)
	}
	return n
}

// addPage adds the page at off to runs, which end before it.
func addPage(runs []pageRun, off int) []pageRun {
	if n := len(runs); n > 0 && runs[n-1].off+runs[n-1].n == uint32(off) {
		runs[n-1].n += 4096
		return runs
	}
	return append(runs, pageRun{uint32(off), 4096})
}

// imageAllocator gives a restored instance its memory: the image, mapped
// copy-on-write or copied (memoryImage.linearMemory), in a reservation of
// the memory's maximum size.
type imageAllocator struct {
	img *memoryImage
	mem experimental.LinearMemory // what Allocate gave
}

func (a *imageAllocator) Allocate(capacity, max uint64) experimental.LinearMemory {
	a.mem = a.img.linearMemory(capacity, max)
	return a.mem
}

// copyMemory is the fallback linear memory: a Go slice holding a copy of
// the image, grown in place up to its capacity (see sliceMemory).
func copyMemory(image []byte, limit uint64) experimental.LinearMemory {
	n := min(uint64(len(image)), limit)
	buf := make([]byte, n, min(limit, 2*n))
	copy(buf, image)
	return &sliceMemory{max: limit, buf: buf}
}

// The layout of the Go runtime's internal/chacha8rand.State, the same
// since Go 1.22: buf [32]uint64, seed [4]uint64, i, n, c uint32.
const (
	chachaBuf   = 0
	chachaSeed  = 256
	chachaI     = 288
	chachaN     = 292
	chachaC     = 296
	chachaState = 300
)

// findChaCha8 returns the offsets in mem of what are, by their contents,
// the Go runtime's ChaCha8 generator states: 8-byte aligned, counters in
// range and, the proof, a buffer that is exactly the ChaCha8 block its
// key and counter give (math/rand/v2's ChaCha8 computes the same blocks
// from the same key). A false positive would need 256 bytes that match a
// ChaCha8 output by chance.
func findChaCha8(mem []byte) []uint32 {
	var found []uint32
	le := binary.LittleEndian
	for p := 0; p+chachaState <= len(mem); p += 8 {
		n := le.Uint32(mem[p+chachaN:])
		if n != 32 && n != 28 {
			continue
		}
		c := le.Uint32(mem[p+chachaC:])
		i := le.Uint32(mem[p+chachaI:])
		if c > 12 || c%4 != 0 || i > n || (n == 28) != (c == 12) {
			continue
		}
		var key [32]byte
		copy(key[:], mem[p+chachaSeed:p+chachaSeed+32])
		if key == [32]byte{} {
			continue
		}
		g := mrand.NewChaCha8(key)
		for range c / 4 * 32 { // the blocks before counter c
			g.Uint64()
		}
		match := true
		for w := range int(n) { // at counter 12 the last 4 words are the next key

			if g.Uint64() != le.Uint64(mem[p+chachaBuf+8*w:]) {
				match = false
				break
			}
		}
		if match {
			found = append(found, uint32(p))
			p += chachaState - 4 // past this state (the loop adds 8, aligned)
		}
	}
	return found
}

// reseed gives each ChaCha8 state at offsets a fresh random key, with
// its buffer used up: the generator's next draw computes a new block from
// that key (the buffer's old contents are never read again).
func reseed(mem api.Memory, offsets []uint32) error {
	if len(offsets) == 0 {
		return nil
	}
	var st [chachaState - chachaSeed]byte // seed, i, n, c
	for _, p := range offsets {
		if _, err := rand.Read(st[:chachaI-chachaSeed]); err != nil {
			return fmt.Errorf("reseeding: %w", err)
		}
		binary.LittleEndian.PutUint32(st[chachaI-chachaSeed:], 32)
		binary.LittleEndian.PutUint32(st[chachaN-chachaSeed:], 32)
		binary.LittleEndian.PutUint32(st[chachaC-chachaSeed:], 0)
		if !mem.Write(p+chachaSeed, st[:]) {
			return errors.New("reseeding: generator state out of the memory")
		}
	}
	return nil
}

// logSnapshot reports the module's snapshot, or why it has none.
func (m *Module) logSnapshot(info SnapshotInfo) {
	if info.Taken {
		m.log.Debug("instances start from a snapshot", slog.String("module", m.cfg.Name),
			slog.Uint64("memory_bytes", info.MemoryBytes), slog.Uint64("image_bytes", info.ImageBytes),
			slog.Bool("copy_on_write", info.CopyOnWrite), slog.Int("reseeded", info.Reseeded),
			slog.Uint64("prefault_bytes", info.PrefaultBytes), slog.Bool("from_cache", info.FromCache),
			slog.String("not_cached", info.NotCached))
		return
	}
	m.log.Info("instances start without a snapshot", slog.String("module", m.cfg.Name),
		slog.String("reason", info.Refused))
}

// nonZeroBytes counts the bytes of mem's 4 KiB pages that are not all zero.
func nonZeroBytes(mem []byte) uint64 {
	var n uint64
	for off := 0; off < len(mem); off += 4096 {
		page := mem[off:min(off+4096, len(mem))]
		if !allZero(page) {
			n += uint64(len(page))
		}
	}
	return n
}

func allZero(p []byte) bool {
	for len(p) >= 8 {
		if binary.LittleEndian.Uint64(p) != 0 {
			return false
		}
		p = p[8:]
	}
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}
