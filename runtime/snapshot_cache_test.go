//go:build linux

package runtime

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/internal/wattest"
)

// cacheGuest is a test guest whose initialiser tells the host it ran (it
// writes "init\n" to its WASI stdout), counts its runs in $inits, grows
// its memory and writes 0x11 at 70000; with host, it also calls the host
// function "probe" (which looks up its call, as every host function of
// the ABI does). meshd_http outputs the byte at 70000 and $inits.
func cacheGuest(t *testing.T, host bool) []byte {
	t.Helper()
	probe, call := "", ""
	if host {
		probe = `(import "meshd" "probe" (func $probe (result i32)))`
		call = `(drop (call $probe))`
	}
	name := "snap-cache"
	if host {
		name += "-host"
	}
	return wattest.Compile(t, name, `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  `+probe+`
  (memory (export "memory") 2 64)
  (global $inits (mut i32) (i32.const 0))
  (data (i32.const 32) "init\n")
  (func (export "meshd_abi_v1"))
  (func (export "_initialize")
    `+call+`
    (global.set $inits (i32.add (global.get $inits) (i32.const 1)))
    (i32.store (i32.const 0) (i32.const 32))
    (i32.store (i32.const 4) (i32.const 5))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 24)))
    (drop (memory.grow (i32.const 2)))
    (i32.store8 (i32.const 70000) (i32.const 0x11)))
  (func (export "meshd_describe") (result i32)
    (drop (call $output_write (i32.const 32) (i32.const 1)))
    (i32.const 0))
  (func (export "meshd_http") (param i32) (result i32)
    (i32.store8 (i32.const 2048) (i32.load8_u (i32.const 70000)))
    (i32.store8 (i32.const 2049) (global.get $inits))
    (drop (call $output_write (i32.const 2048) (i32.const 2)))
    (i32.const 0))
)`)
}

// cacheHost links output_write and probe, which looks its call up like
// the daemon's host functions and, during an initialiser, finds none.
func cacheHost(ctx context.Context, r wazero.Runtime) error {
	i32 := api.ValueTypeI32
	b := r.NewHostModuleBuilder(abi.ModuleName)
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, stack []uint64) {
		c := CallFrom(ctx)
		p, _ := m.Memory().Read(api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
		stack[0] = api.EncodeI32(-int32(c.WriteOutput(p)))
	}), []api.ValueType{i32, i32}, []api.ValueType{i32}).Export(abi.FnOutputWrite)
	b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, _ api.Module, stack []uint64) {
		if CallFrom(ctx) == nil {
			stack[0] = 0
		} else {
			stack[0] = 1
		}
	}), nil, []api.ValueType{i32}).Export("probe")
	_, err := b.Instantiate(ctx)
	return err
}

// syncBuffer is a bytes.Buffer safe for the guest's and the test's use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// logRecords keeps the messages and attributes of the warnings logged.
type logRecords struct {
	mu   sync.Mutex
	warn []string
}

func (r *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecords) Handle(_ context.Context, rec slog.Record) error {
	if rec.Level < slog.LevelWarn {
		return nil
	}
	s := rec.Message
	rec.Attrs(func(a slog.Attr) bool { s += " " + a.String(); return true })
	r.mu.Lock()
	defer r.mu.Unlock()
	r.warn = append(r.warn, s)
	return nil
}
func (r *logRecords) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecords) WithGroup(string) slog.Handler      { return r }

func (r *logRecords) warnings() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.warn...)
}

// started is one start of a module on a cache directory.
type started struct {
	info   SnapshotInfo
	stats  Stats
	stdout string // what its instances' initialisers wrote
	answer string // its answer to one call: the byte at 70000, $inits
	warn   []string
}

// startOn loads wasm with a fresh Engine on the cache directory dir, as a
// restarted daemon would, calls it once and closes it.
func startOn(t *testing.T, dir string, wasm []byte, host HostModule, cfg ModuleConfig) started {
	t.Helper()
	ctx := context.Background()
	e, err := NewEngine(EngineConfig{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	var out syncBuffer
	var recs logRecords
	cfg.Name, cfg.Stdout, cfg.Logger = "cached", &out, slog.New(&recs)
	m, err := e.Load(ctx, wasm, host, cfg)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	defer m.Close(ctx)
	var c Call
	if err := m.Invoke(ctx, EntryHTTP, &c); err != nil {
		t.Fatalf("call: %v", err)
	}
	return started{info: m.Snapshot(), stats: m.Stats(), stdout: out.String(), answer: string(c.Output), warn: recs.warnings()}
}

// snapFiles lists the snapshot files under the cache directory dir.
func snapFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, snapshotDir, "*.snap"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

const cacheFresh = "\x11\x01" // the initialiser's byte, one run

// TestSnapshotCacheRestart: a restart restores the module's instances from
// the snapshot kept in the cache directory, and its initialiser does not
// run at all (nothing on its stdout), while every instance still starts as
// the initialiser left the first.
func TestSnapshotCacheRestart(t *testing.T) {
	dir := t.TempDir()
	wasm := cacheGuest(t, false)
	first := startOn(t, dir, wasm, cacheHost, ModuleConfig{})
	if first.stdout != "init\n" || first.info.FromCache || !first.info.Taken || first.info.NotCached != "" {
		t.Fatalf("first start: initialiser wrote %q, snapshot %+v", first.stdout, first.info)
	}
	if len(snapFiles(t, dir)) != 1 || len(first.warn) != 0 {
		t.Fatalf("snapshot files %q, warnings %q", snapFiles(t, dir), first.warn)
	}
	for range 2 {
		again := startOn(t, dir, wasm, cacheHost, ModuleConfig{PoolMin: 2})
		if again.stdout != "" || !again.info.FromCache || !again.info.Taken {
			t.Fatalf("restart: initialiser wrote %q, snapshot %+v", again.stdout, again.info)
		}
		if again.answer != cacheFresh || again.info != first.info.withFromCache() {
			t.Fatalf("restart: answer %q, snapshot %+v; first %+v", again.answer, again.info, first.info)
		}
		if again.stats.Restored != again.stats.Created || again.stats.Created < 2 || len(again.warn) != 0 {
			t.Fatalf("restart: stats %+v, warnings %q", again.stats, again.warn)
		}
	}
	// Another limit is another key: the initialiser runs.
	other := startOn(t, dir, wasm, cacheHost, ModuleConfig{MemoryLimitPages: 32})
	if other.stdout != "init\n" || other.info.FromCache || len(snapFiles(t, dir)) != 2 {
		t.Fatalf("another memory limit: initialiser wrote %q, snapshot %+v", other.stdout, other.info)
	}
}

func (i SnapshotInfo) withFromCache() SnapshotInfo { i.FromCache = true; return i }

// TestSnapshotCacheDamagedIsAMiss: a snapshot file that is not the one
// written is a miss: one warning names the module and the entry, the
// initialiser runs, the module serves as it should, and a good file is
// written back, which the next start reads.
func TestSnapshotCacheDamagedIsAMiss(t *testing.T) {
	wasm := cacheGuest(t, false)
	for _, tc := range []struct {
		name   string
		damage func(good []byte) []byte
	}{
		{"empty", func([]byte) []byte { return nil }},
		{"truncated in the header", func(b []byte) []byte { return b[:20] }},
		{"truncated by a byte", func(b []byte) []byte { return b[:len(b)-1] }},
		{"a byte appended", func(b []byte) []byte { return append(b, 0) }},
		{"a byte of the image flipped", func(b []byte) []byte { b[len(b)-100] ^= 0x40; return b }},
		{"the checksum flipped", func(b []byte) []byte { b[len(b)-1] ^= 0x01; return b }},
		{"garbage", func(b []byte) []byte { return bytes.Repeat([]byte("no snap!"), len(b)/8) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			startOn(t, dir, wasm, cacheHost, ModuleConfig{})
			files := snapFiles(t, dir)
			if len(files) != 1 {
				t.Fatalf("snapshot files %q", files)
			}
			good, err := os.ReadFile(files[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(files[0], tc.damage(bytes.Clone(good)), 0o600); err != nil {
				t.Fatal(err)
			}
			s := startOn(t, dir, wasm, cacheHost, ModuleConfig{})
			if len(s.warn) != 1 || !strings.Contains(s.warn[0], "snapshot cache") || !strings.Contains(s.warn[0], "damaged") ||
				!strings.Contains(s.warn[0], "module=cached") || !strings.Contains(s.warn[0], filepath.Base(files[0])) {
				t.Fatalf("warnings %q, want one naming the module, the entry and the damage", s.warn)
			}
			if s.stdout != "init\n" || s.info.FromCache || !s.info.Taken || s.answer != cacheFresh {
				t.Fatalf("after the damage: initialiser wrote %q, snapshot %+v, answer %q", s.stdout, s.info, s.answer)
			}
			again := startOn(t, dir, wasm, cacheHost, ModuleConfig{})
			if again.stdout != "" || !again.info.FromCache || len(again.warn) != 0 || again.answer != cacheFresh {
				t.Fatalf("once written back: initialiser wrote %q, snapshot %+v, warnings %q", again.stdout, again.info, again.warn)
			}
		})
	}
}

// TestSnapshotCacheOtherKey: a good snapshot file of another module under
// this module's name is refused (its key differs), never restored.
func TestSnapshotCacheOtherKey(t *testing.T) {
	dir := t.TempDir()
	wasm := cacheGuest(t, false)
	startOn(t, dir, wasm, cacheHost, ModuleConfig{})
	startOn(t, dir, wasm, cacheHost, ModuleConfig{MemoryLimitPages: 32})
	files := snapFiles(t, dir)
	if len(files) != 2 {
		t.Fatalf("snapshot files %q", files)
	}
	a, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files[1], a, 0o600); err != nil {
		t.Fatal(err)
	}
	var s started
	for _, cfg := range []ModuleConfig{{}, {MemoryLimitPages: 32}} {
		if s = startOn(t, dir, wasm, cacheHost, cfg); !s.info.FromCache {
			break // the file renamed is this one
		}
	}
	if s.info.FromCache || len(s.warn) != 1 || !strings.Contains(s.warn[0], "another module or build") || s.stdout != "init\n" {
		t.Fatalf("snapshot %+v, warnings %q, initialiser wrote %q", s.info, s.warn, s.stdout)
	}
}

// TestSnapshotCacheSkipsHostInit: the snapshot of an initialiser that
// called a host function may hold what the host answered, which can
// change between two starts: it serves this process and is not kept.
func TestSnapshotCacheSkipsHostInit(t *testing.T) {
	dir := t.TempDir()
	wasm := cacheGuest(t, true)
	for range 2 {
		s := startOn(t, dir, wasm, cacheHost, ModuleConfig{})
		if s.stdout != "init\n" || s.info.FromCache || !s.info.Taken || !strings.Contains(s.info.NotCached, "host functions") {
			t.Fatalf("initialiser wrote %q, snapshot %+v", s.stdout, s.info)
		}
		if s.answer != cacheFresh || s.stats.Restored != s.stats.Created-1 {
			t.Fatalf("answer %q, stats %+v", s.answer, s.stats)
		}
	}
	if files := snapFiles(t, dir); len(files) != 0 {
		t.Fatalf("snapshot files %q", files)
	}
}

// TestSnapshotCacheUnwritable: a cache whose snapshot directory cannot be
// made costs a warning and the initialiser at each start, never the
// module.
func TestSnapshotCacheUnwritable(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, snapshotDir), []byte("in the way"), 0o600); err != nil {
		t.Fatal(err)
	}
	wasm := cacheGuest(t, false)
	for range 2 {
		s := startOn(t, dir, wasm, cacheHost, ModuleConfig{})
		if s.stdout != "init\n" || s.answer != cacheFresh || len(s.warn) != 1 || !strings.Contains(s.warn[0], "writing the snapshot failed") {
			t.Fatalf("initialiser wrote %q, answer %q, warnings %q", s.stdout, s.answer, s.warn)
		}
	}
}

// TestSnapshotCacheGoGuest: a Go guest restored after a restart from the
// kept snapshot ran its package init once, in the process that took it,
// and its instances still draw their own random values and read the
// current clock.
func TestSnapshotCacheGoGuest(t *testing.T) {
	wasm, err := os.ReadFile(snapGuest)
	if err != nil {
		t.Fatalf("%s is missing: run `make fixtures` (or `make test`) first", snapGuest)
	}
	dir := t.TempDir()
	ctx := context.Background()
	for i := range 2 {
		t.Run("start", func(t *testing.T) {
			e, err := NewEngine(EngineConfig{CacheDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = e.Close(ctx) })
			m, err := e.Load(ctx, wasm, ioHost, ModuleConfig{Name: "snap"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = m.Close(ctx) })
			info := m.Snapshot()
			if !info.Taken || info.FromCache != (i == 1) || info.Reseeded < 1 || info.PrefaultBytes == 0 {
				t.Fatalf("start %d: snapshot %+v", i, info)
			}
			before := time.Now()
			insts := instances(t, m, 2)
			a, b := report(t, callOn(t, insts[0], "")), report(t, callOn(t, insts[1], ""))
			after := time.Now()
			for _, k := range []string{"rand", "maphash", "order", "crypto"} {
				if a[k] == "" || a[k] == b[k] {
					t.Errorf("start %d: %s: both restored instances report %q", i, k, a[k])
				}
			}
			for _, r := range []map[string]string{a, b} {
				now, err := strconv.ParseInt(r["now"], 10, 64)
				if err != nil || now < before.Add(-time.Second).UnixNano() || now > after.Add(time.Second).UnixNano() {
					t.Errorf("start %d: clock %q is not between %v and %v", i, r["now"], before, after)
				}
				if r["inits"] != "1" || r["table"] != "100" {
					t.Errorf("start %d: inits %s, table %s", i, r["inits"], r["table"])
				}
			}
		})
	}
}

// TestRestoredClock: after a reboot the system's monotonic clock restarts
// behind the one a kept snapshot was taken with; restored instances then
// get one that continues from it.
func TestRestoredClock(t *testing.T) {
	if restoredClock(0) != nil {
		t.Fatal("a snapshot taken before now needs no shifted clock")
	}
	ahead := nanotime() + 1e15 // a snapshot taken 11 days of uptime ago
	clock := restoredClock(ahead)
	if clock == nil {
		t.Fatal("no shifted clock for a snapshot taken ahead of the system's clock")
	}
	a := clock()
	b := clock()
	if a <= ahead || b < a {
		t.Fatalf("shifted clock reads %d then %d, want past %d and never back", a, b, ahead)
	}
}

// TestMemoryImagePages: an image made from a snapshot file's pages holds
// the memory the pages came from, whether in a memfd or expanded in Go.
func TestMemoryImagePages(t *testing.T) {
	mem := make([]byte, 16*snapPage)
	var idx []uint32
	var pages []byte
	for _, p := range []uint32{1, 2, 3, 7, 15} {
		for i := range snapPage {
			mem[int(p)*snapPage+i] = byte(p*31 + uint32(i))
		}
		idx = append(idx, p)
		pages = append(pages, mem[int(p)*snapPage:int(p+1)*snapPage]...)
	}
	img, err := newMemoryImagePages(len(mem), idx, pages, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer img.close()
	if !bytes.Equal(img.data, mem) || img.nonZero != 5*snapPage {
		t.Fatalf("image differs from the memory (non-zero %d)", img.nonZero)
	}
	if !bytes.Equal(expandPages(len(mem), idx, pages), mem) {
		t.Fatal("expanded pages differ from the memory")
	}
}

// TestWASILinkedOnlyWhenImported: a module that imports from WASI gets it
// (the cache guest's initialiser writes to stdout through fd_write); one
// that imports none does not, and still serves: a WAT service pays for no
// WASI host module (its compiled trampolines and system context).
func TestWASILinkedOnlyWhenImported(t *testing.T) {
	ctx := context.Background()
	e, err := NewEngine(EngineConfig{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	plain := wattest.Compile(t, "no-wasi", `(module
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "ok")
  (func (export "meshd_abi_v1"))
  (func (export "meshd_describe") (result i32) (i32.const 0))
  (func (export "meshd_http") (param i32) (result i32)
    (drop (call $output_write (i32.const 16) (i32.const 2)))
    (i32.const 0))
)`)
	for _, tc := range []struct {
		name     string
		wasm     []byte
		wantWASI bool
		answer   string
	}{
		{"imports fd_write", cacheGuest(t, false), true, cacheFresh},
		{"imports none of WASI", plain, false, "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out syncBuffer
			m, err := e.Load(ctx, tc.wasm, cacheHost, ModuleConfig{Name: "w", Stdout: &out})
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			defer m.Close(ctx)
			if got := m.rt.Module(wasi_snapshot_preview1.ModuleName) != nil; got != tc.wantWASI {
				t.Errorf("WASI linked: %v, want %v", got, tc.wantWASI)
			}
			var c Call
			if err := m.Invoke(ctx, EntryHTTP, &c); err != nil || string(c.Output) != tc.answer {
				t.Fatalf("call = %q, %v; want %q", c.Output, err, tc.answer)
			}
			if tc.wantWASI && out.String() != "init\n" {
				t.Errorf("stdout %q, want the initialiser's \"init\\n\" through WASI", out.String())
			}
		})
	}
}
