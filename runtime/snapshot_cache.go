package runtime

import (
	"bufio"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	_ "unsafe" // go:linkname runtime.nanotime

	"github.com/tetratelabs/wazero/sys"

	"github.com/meshd/meshd/abi"
)

// A snapshot is kept in the compilation cache's directory, beside the
// compiled code, so that a restart restores a module's instances without
// running its initialiser even once: one file per module version under
// <cache dir>/snapshots/, named by the snapshot's key. The key is the
// sha256 of the module's bytes, the limits that shape its instances
// (memory and table limits), the architecture and the build of meshd
// itself (its Go build ID: the wazero fork and this code are part of it),
// so a new meshd or a changed module never reads another's snapshot.
//
// The file holds what restore needs and nothing of the host: the mutable
// globals, the memory's size, its non-zero 4 KiB pages, the offsets of the
// Go runtime's generators to reseed, the hot pages, and the monotonic
// clock at capture; it ends with the CRC-32C of all that (as the compiled
// code's entries do: the directory is trusted, the checksum finds damage,
// and it costs a tenth of a millisecond where a sha256 of a Go guest's
// image took one and a half). A file that is
// short, long, fails its checksum or its bounds, or names another key is
// a miss: logged once, deleted, the snapshot taken again and written back.
// A file that cannot be written costs an initialiser at the next start.
//
// A snapshot is kept on disk only when the initialiser used nothing of the
// host but WASI: an initialiser that called a host function (read its
// configuration, logged, read a key) may have kept what it got, which can
// change between two starts; its snapshot is used for this process only.
type snapshotStore struct {
	dir     string
	version string // the build of meshd (buildVersion)
}

// snapshotDir is the directory of the cache holding the snapshots.
const snapshotDir = "snapshots"

// snapshotFormat names the file layout and restore's meaning of it;
// a change of either changes it.
const snapshotFormat = "meshd-snapshot-2"

// snapshotMagic starts every snapshot file.
var snapshotMagic = [8]byte{'M', 'S', 'H', 'D', 'S', 'N', 'P', '2'}

// castagnoli is the CRC-32C table (hardware-assisted on amd64 and arm64).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// snapPage is the unit of the file's sparse image.
const snapPage = 4096

// Bounds of a snapshot file's counts, beyond which it is damaged.
const (
	maxSnapGlobals = 1 << 16
	maxSnapReseed  = 1 << 10
)

func newSnapshotStore(cacheDir string) *snapshotStore {
	return &snapshotStore{dir: filepath.Join(cacheDir, snapshotDir), version: buildVersion()}
}

// buildVersion identifies the running meshd build: the Go build ID of its
// executable (a hash of everything it was built from), else what its
// build information says of it and of wazero.
var buildVersion = sync.OnceValue(func() string {
	if exe, err := os.Executable(); err == nil {
		if id := goBuildID(exe); id != "" {
			return "buildid:" + id
		}
		if bi, err := buildinfo.ReadFile(exe); err == nil {
			return "buildinfo:" + bi.String()
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		return "buildinfo:" + bi.String()
	}
	return "unknown"
})

// goBuildID reads the Go build ID note of the ELF executable at path.
func goBuildID(path string) string {
	f, err := elf.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sec := f.Section(".note.go.buildid")
	if sec == nil {
		return ""
	}
	note, err := sec.Data()
	if err != nil || len(note) < 16 {
		return ""
	}
	// namesz, descsz, type, "Go\x00\x00", then the ID.
	descsz := binary.LittleEndian.Uint32(note[4:])
	if uint64(16)+uint64(descsz) > uint64(len(note)) {
		return ""
	}
	return string(note[16 : 16+descsz])
}

// key is the snapshot key of the module of digest sum under cfg.
func (st *snapshotStore) key(sum [32]byte, cfg ModuleConfig) [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%x\x00%d\x00%d\x00", snapshotFormat, st.version, goruntime.GOARCH,
		sum, cfg.MemoryLimitPages, cfg.MaxTableEntries)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (st *snapshotStore) path(key [32]byte) string {
	return filepath.Join(st.dir, hex.EncodeToString(key[:16])+".snap")
}

// nanotime is the Go runtime's monotonic clock, wazero's WithSysNanotime.
//
//go:linkname nanotime runtime.nanotime
func nanotime() int64

// errSnapshotDamaged marks a snapshot file that is not what was written.
var errSnapshotDamaged = errors.New("damaged")

// cachedSnapshot reads the module's snapshot from the store. A missing
// file is a quiet miss; any other failure is logged, and a damaged file
// deleted (the snapshot is then taken and written again).
func (m *Module) cachedSnapshot() *snapshot {
	st := m.snaps
	if st == nil {
		return nil
	}
	path := st.path(m.snapKey)
	s, err := readSnapshot(path, m.snapKey, m.cfg.MemoryLimitPages, st.dir)
	if err == nil {
		return s
	}
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil // a miss; a directory in the way is reported when writing
	}
	attrs := []any{slog.String("module", m.cfg.Name), slog.String("entry", filepath.Base(path)), slog.Any("error", err)}
	if errors.Is(err, errSnapshotDamaged) {
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			attrs = append(attrs, slog.Any("delete_error", rerr))
		}
	}
	m.log.Warn("snapshot cache failed; the snapshot is taken again", attrs...)
	return nil
}

// readSnapshot reads and checks the snapshot file at path.
// Its image's file goes in dir (newMemoryImage).
func readSnapshot(path string, key [32]byte, limitPages uint32, dir string) (*snapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	memMax := uint64(limitPages) * 65536
	// magic, key, pages, clock, 3 counts, the image's count, its pages and
	// their indices, the hot runs, globals and offsets, the checksum.
	bound := 8 + 32 + 4 + 8 + 4*4 + memMax + memMax/snapPage*(4+8) + maxSnapGlobals*8 + maxSnapReseed*4 + 4
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: not a regular file", errSnapshotDamaged)
	}
	if uint64(fi.Size()) > bound {
		return nil, fmt.Errorf("%w: %d bytes, more than a snapshot of %d pages can hold", errSnapshotDamaged, fi.Size(), limitPages)
	}
	data := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("%w: %w", errSnapshotDamaged, err)
	}
	s, nano, err := decodeSnapshot(data, key, limitPages, dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errSnapshotDamaged, err)
	}
	s.clock = restoredClock(nano)
	return s, nil
}

// decodeSnapshot parses a snapshot file's bytes. It builds the image only
// once every check passed.
func decodeSnapshot(data []byte, key [32]byte, limitPages uint32, dir string) (*snapshot, int64, error) {
	if len(data) < len(snapshotMagic)+32+4 {
		return nil, 0, errors.New("truncated")
	}
	body, sum := data[:len(data)-4], data[len(data)-4:]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(sum) {
		return nil, 0, errors.New("checksum mismatch")
	}
	r := snapReader{b: body}
	if string(r.bytes(8)) != string(snapshotMagic[:]) {
		return nil, 0, errors.New("not a snapshot file")
	}
	if string(r.bytes(32)) != string(key[:]) {
		return nil, 0, errors.New("written for another module or build")
	}
	s := &snapshot{pages: r.u32()}
	nano := int64(r.u64())
	if r.err != nil {
		return nil, 0, r.err
	}
	if s.pages > limitPages {
		return nil, 0, fmt.Errorf("memory of %d pages, above the limit of %d", s.pages, limitPages)
	}
	memLen := uint64(s.pages) * 65536
	n := r.count(maxSnapGlobals)
	for range n {
		s.globals = append(s.globals, r.u64())
	}
	n = r.count(maxSnapReseed)
	for range n {
		off := r.u32()
		if uint64(off)+chachaState > memLen {
			r.fail("a generator state past the memory")
		}
		s.reseed = append(s.reseed, off)
	}
	n = r.count(int(memLen / snapPage))
	var end uint64
	for range n {
		run := pageRun{r.u32(), r.u32()}
		if uint64(run.off) < end || run.n == 0 || run.off%snapPage != 0 || run.n%snapPage != 0 ||
			uint64(run.off)+uint64(run.n) > memLen {
			r.fail("a hot page run out of order or past the memory")
		}
		end = uint64(run.off) + uint64(run.n)
		s.hot = append(s.hot, run)
	}
	n = r.count(int(memLen / snapPage))
	idx := make([]uint32, 0, n)
	for i := range n {
		p := r.u32()
		if uint64(p) >= memLen/snapPage || (i > 0 && p <= idx[i-1]) {
			r.fail("an image page out of order or past the memory")
			break
		}
		idx = append(idx, p)
	}
	pages := r.bytes(len(idx) * snapPage)
	if r.err != nil {
		return nil, 0, r.err
	}
	if len(r.b) != 0 {
		return nil, 0, fmt.Errorf("%d bytes after the image", len(r.b))
	}
	img, err := newMemoryImagePages(int(memLen), idx, pages, dir)
	if err != nil {
		return nil, 0, err
	}
	s.image = img
	return s, nano, nil
}

// expandPages returns a memory of size bytes whose non-zero 4 KiB pages
// are idx, their contents one after the other in pages.
func expandPages(size int, idx []uint32, pages []byte) []byte {
	mem := make([]byte, size)
	for i, p := range idx {
		copy(mem[int(p)*snapPage:], pages[i*snapPage:(i+1)*snapPage])
	}
	return mem
}

// snapReader reads a snapshot file's fields; past its end or a failed
// check it returns zeros and keeps the first error.
type snapReader struct {
	b   []byte
	err error
}

func (r *snapReader) fail(msg string) {
	if r.err == nil {
		r.err = errors.New(msg)
	}
}

func (r *snapReader) bytes(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b) {
		r.fail("truncated")
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *snapReader) u32() uint32 {
	if p := r.bytes(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

func (r *snapReader) u64() uint64 {
	if p := r.bytes(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

// count reads a count of at most limit.
func (r *snapReader) count(limit int) int {
	n := r.u32()
	if uint64(n) > uint64(limit) {
		r.fail(fmt.Sprintf("a count of %d, above %d", n, limit))
		return 0
	}
	return int(n)
}

// storeSnapshot writes s to the store, taken at the monotonic time nano.
// A failure is logged and costs an initialiser at the next start.
func (m *Module) storeSnapshot(s *snapshot, nano int64) {
	st := m.snaps
	if st == nil {
		return
	}
	path := st.path(m.snapKey)
	if err := writeSnapshot(st.dir, path, m.snapKey, s, nano); err != nil {
		m.log.Warn("snapshot cache: writing the snapshot failed; the next start runs the initialiser",
			slog.String("module", m.cfg.Name), slog.String("entry", filepath.Base(path)), slog.Any("error", err))
	}
}

// writeSnapshot writes s into a temporary file of dir renamed to path
// once complete, so a reader never sees half a file under its name.
func writeSnapshot(dir, path string, key [32]byte, s *snapshot, nano int64) (err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "snap-*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	h := crc32.New(castagnoli)
	w := &snapWriter{w: bufio.NewWriterSize(io.MultiWriter(f, h), 64<<10), h: h}
	w.raw(snapshotMagic[:])
	w.raw(key[:])
	w.u32(s.pages)
	w.u64(uint64(nano))
	w.u32(uint32(len(s.globals)))
	for _, g := range s.globals {
		w.u64(g)
	}
	w.u32(uint32(len(s.reseed)))
	for _, off := range s.reseed {
		w.u32(off)
	}
	w.u32(uint32(len(s.hot)))
	for _, run := range s.hot {
		w.u32(run.off)
		w.u32(run.n)
	}
	mem := s.image.data
	var idx []uint32
	for off := 0; off+snapPage <= len(mem); off += snapPage {
		if !allZero(mem[off : off+snapPage]) {
			idx = append(idx, uint32(off/snapPage))
		}
	}
	w.u32(uint32(len(idx)))
	for _, p := range idx {
		w.u32(p)
	}
	for _, p := range idx {
		w.raw(mem[int(p)*snapPage : int(p+1)*snapPage])
	}
	if err := w.finish(f); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// snapWriter writes a snapshot file's fields and, last, their CRC-32C.
type snapWriter struct {
	w   *bufio.Writer
	h   hash.Hash32
	err error
	buf [8]byte
}

func (w *snapWriter) raw(p []byte) {
	if w.err == nil {
		_, w.err = w.w.Write(p)
	}
}

func (w *snapWriter) u32(v uint32) {
	binary.LittleEndian.PutUint32(w.buf[:], v)
	w.raw(w.buf[:4])
}

func (w *snapWriter) u64(v uint64) {
	binary.LittleEndian.PutUint64(w.buf[:], v)
	w.raw(w.buf[:8])
}

// finish flushes the fields and appends their checksum to f.
func (w *snapWriter) finish(f io.Writer) error {
	if w.err == nil {
		w.err = w.w.Flush()
	}
	if w.err != nil {
		return w.err
	}
	binary.LittleEndian.PutUint32(w.buf[:4], w.h.Sum32())
	_, err := f.Write(w.buf[:4])
	return err
}

// restoredClock is the monotonic clock of instances restored from a
// snapshot read from disk whose memory kept the clock at nano (the Go
// runtime keeps its start time and its timers in it): the system's, when
// it is past nano (the same boot), else the system's shifted to continue
// from nano, so the guest never sees its clock go back (after a reboot).
// nil: the system's.
func restoredClock(nano int64) sys.Nanotime {
	now := nanotime()
	if now > nano {
		return nil
	}
	shift := nano - now + 1
	return func() int64 { return nanotime() + shift }
}

// hostWatch is the context the initialiser of the instance a snapshot is
// taken from runs under: it counts the host functions that asked for
// their call (every host function of meshd's ABI looks its call up with
// CallFrom), so that a snapshot whose initialiser used the host is not
// kept across restarts.
type hostWatch struct {
	context.Context
	calls atomic.Int64
}

func (w *hostWatch) Value(key any) any {
	if _, ok := key.(callKey); ok {
		w.calls.Add(1)
	}
	return w.Context.Value(key)
}

// firstInstance makes the module's first instance and its snapshot: read
// from the store, or taken from an instance that ran its initialiser (and
// then written to the store when it may be kept). It sets m.snap and
// m.snapInfo, and logs them.
func (m *Module) firstInstance(ctx context.Context) (*instance, error) {
	defer func() { m.logSnapshot(m.snapInfo) }()
	m.snapInfo.Refused = "disabled by the module's configuration"
	if m.cfg.DisableSnapshot {
		return m.instantiate(ctx, nil)
	}
	if s := m.cachedSnapshot(); s != nil {
		m.snap = s
		if s.clock != nil {
			m.restoreCfg = m.restoreCfg.WithNanotime(s.clock, sys.ClockResolution(1))
		}
		m.snapInfo = s.info()
		m.snapInfo.FromCache = true
		return m.newInstance(ctx)
	}
	// The first instance initialises the ordinary way; its state, fresh
	// from the initialiser, is the snapshot the others start from.
	rc := new(randCounter)
	watch := &hostWatch{Context: ctx}
	first, err := m.instantiate(watch, rc)
	if err != nil {
		return nil, err
	}
	// Its describe call runs before the capture: the Go runtime's
	// allocator caches and scheduler settle there once rather than in
	// every restored instance's first call (describe is pure; its output
	// is the same in every instance).
	if m.has[EntryDescribe] {
		if err := m.runDescribe(watch, first); err != nil {
			m.closeInstance(first)
			return nil, fmt.Errorf("%s: %w", abi.ExportDescribe, err)
		}
	}
	nano := nanotime()
	m.snap, m.snapInfo.Refused = m.takeSnapshot(first, rc.n.Load())
	s := m.snap
	if s == nil {
		return first, nil
	}
	m.snapInfo = s.info()
	// The first instance holds all its memory as its own; one restored in
	// its place shares the image's pages and, idle, costs only the few it
	// wrote.
	m.closeInstance(first)
	m.learnHotPages(ctx, s)
	m.snapInfo.PrefaultBytes = s.hotBytes()
	switch {
	case m.snaps == nil:
		m.snapInfo.NotCached = "no cache directory"
	case watch.calls.Load() > 0:
		m.snapInfo.NotCached = "the initialiser called host functions"
	default:
		m.storeSnapshot(s, nano)
	}
	return m.newInstance(ctx)
}

// info describes a snapshot that is taken.
func (s *snapshot) info() SnapshotInfo {
	return SnapshotInfo{Taken: true, MemoryBytes: uint64(s.pages) * 65536, ImageBytes: s.image.nonZero,
		CopyOnWrite: s.image.copyOnWrite(), Reseeded: len(s.reseed), PrefaultBytes: s.hotBytes()}
}
