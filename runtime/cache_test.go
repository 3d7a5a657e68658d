package runtime_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/meshd/meshd/runtime"
)

// records keeps the log records a module's Logger receives.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

// cacheWarnings returns the messages and attributes of the warnings about
// the compilation cache.
func (r *records) cacheWarnings() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		if rec.Level != slog.LevelWarn || !strings.Contains(rec.Message, "compilation cache") {
			continue
		}
		s := rec.Message
		rec.Attrs(func(a slog.Attr) bool { s += " " + a.String(); return true })
		out = append(out, s)
	}
	return out
}

// cacheFiles returns the compilation cache's entries of compiled code
// under dir.
func cacheFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == "snapshots" {
			return filepath.SkipDir // the snapshots kept beside the code (snapshot_cache.go)
		}
		if err == nil && d.Type().IsRegular() && !strings.HasSuffix(path, ".tmp") {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// loadAndEcho loads the test guest with a fresh Engine on the cache
// directory dir, checks that it answers an echo call, and returns the cache
// warnings its Logger received.
func loadAndEcho(t *testing.T, dir string) []string {
	t.Helper()
	ctx := context.Background()
	e, err := runtime.NewEngine(runtime.EngineConfig{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	var recs records
	m, err := e.Load(ctx, guest(t), testHost, runtime.ModuleConfig{Name: "cached-guest", Logger: slog.New(&recs)})
	if err != nil {
		t.Fatalf("load with the cache: %v", err)
	}
	defer m.Close(ctx)
	c := &runtime.Call{Input: []byte("echo me")}
	if err := m.Invoke(ctx, runtime.EntryHTTP, c); err != nil {
		t.Fatalf("call: %v", err)
	}
	if !bytes.Equal(c.Output, []byte("echo me")) {
		t.Fatalf("call answered %q, want the echo", c.Output)
	}
	return recs.cacheWarnings()
}

// A damaged compilation cache entry is a miss: the module is compiled from
// its bytes, loads and answers, one warning names it, and the entry is
// replaced by a good one. Before wazero's fork checked its entries, a
// truncated one was mapped past the file's end and the first call into it
// killed the process (SIGBUS: this test binary dies); the others refused
// the module.
func TestDamagedCompilationCacheEntryIsAMiss(t *testing.T) {
	damages := []struct {
		name   string
		damage func(good []byte) []byte
	}{
		{"empty", func([]byte) []byte { return nil }},
		{"truncated in the header", func(b []byte) []byte { return b[:10] }},
		{"truncated after the header", func(b []byte) []byte { return b[:100] }},
		{"truncated in the code", func(b []byte) []byte { return b[:len(b)-len(b)/8] }},
		{"truncated by a byte", func(b []byte) []byte { return b[:len(b)-1] }},
		{"garbage", func(b []byte) []byte { return bytes.Repeat([]byte("not code"), len(b)/8) }},
		{"garbage after the header", func(b []byte) []byte {
			return append(b[:40:40], bytes.Repeat([]byte{0xfe}, len(b)-40)...)
		}},
		// The code starts at 64 KiB, after the header and its padding.
		{"a byte of the code flipped", func(b []byte) []byte { b[1<<16+(len(b)-1<<16)/2] ^= 0x40; return b }},
		{"the checksum flipped", func(b []byte) []byte { b[len(b)-1] ^= 0x01; return b }},
		{"a byte appended", func(b []byte) []byte { return append(b, 0) }},
	}
	for _, tc := range damages {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if w := loadAndEcho(t, dir); len(w) != 0 {
				t.Fatalf("warnings on a first compilation: %q", w)
			}
			files := cacheFiles(t, dir)
			if len(files) != 1 {
				t.Fatalf("cache entries %q, want the guest's one", files)
			}
			good, err := os.ReadFile(files[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(files[0], tc.damage(bytes.Clone(good)), 0o600); err != nil {
				t.Fatal(err)
			}

			w := loadAndEcho(t, dir)
			if len(w) != 1 || !strings.Contains(w[0], "module=cached-guest") || !strings.Contains(w[0], "damaged") ||
				!strings.Contains(w[0], filepath.Base(files[0])) {
				t.Fatalf("warnings %q, want one naming the module, the entry and the damage", w)
			}
			got, err := os.ReadFile(files[0])
			if err != nil {
				t.Fatalf("the entry was not written back: %v", err)
			}
			if !bytes.Equal(got, good) {
				t.Fatalf("the entry written back (%d bytes) differs from the one first written (%d bytes)", len(got), len(good))
			}
			if w := loadAndEcho(t, dir); len(w) != 0 {
				t.Fatalf("warnings once the entry is written back: %q", w)
			}
		})
	}
}

// An entry that can be neither read, deleted nor replaced (here a
// directory in its place, with a file in it) costs a compilation at each
// start and warnings, never the module.
func TestUnusableCompilationCacheEntryIsNotFatal(t *testing.T) {
	dir := t.TempDir()
	loadAndEcho(t, dir)
	files := cacheFiles(t, dir)
	if len(files) != 1 {
		t.Fatalf("cache entries %q, want the guest's one", files)
	}
	if err := os.Remove(files[0]); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(files[0], "in the way"), 0o700); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		w := loadAndEcho(t, dir)
		if len(w) != 2 || !strings.Contains(w[0], "damaged") || !strings.Contains(w[0], "deleting entry") ||
			!strings.Contains(w[1], "writing entry") {
			t.Fatalf("warnings %q, want the entry damaged and not deleted, then not written", w)
		}
	}
}

// A module that differs from a cached one only in a custom section (a new
// build id, a stamp a tool appended) loads from the cache: no second entry
// is written, and it answers.
func TestCustomSectionsShareTheCompiledCode(t *testing.T) {
	dir := t.TempDir()
	if w := loadAndEcho(t, dir); len(w) != 0 {
		t.Fatalf("warnings on a first compilation: %q", w)
	}
	if n := len(cacheFiles(t, dir)); n != 1 {
		t.Fatalf("%d cache entries after the first load, want 1", n)
	}
	ctx := context.Background()
	e, err := runtime.NewEngine(runtime.EngineConfig{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	// A custom section (id 0) named "v7" with 16 bytes.
	stamped := append(guest(t), 0, 19, 2, 'v', '7')
	stamped = append(stamped, bytes.Repeat([]byte{'x'}, 16)...)
	m, err := e.Load(ctx, stamped, testHost, runtime.ModuleConfig{Name: "stamped"})
	if err != nil {
		t.Fatalf("load the stamped module: %v", err)
	}
	defer m.Close(ctx)
	c := &runtime.Call{Input: []byte("echo me")}
	if err := m.Invoke(ctx, runtime.EntryHTTP, c); err != nil || string(c.Output) != "echo me" {
		t.Fatalf("call: %q, %v", c.Output, err)
	}
	if files := cacheFiles(t, dir); len(files) != 1 {
		t.Fatalf("cache entries %q after loading the stamped module, want still 1: it was compiled again", files)
	}
}
