package runtime

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// recorder collects watch events.
type recorder struct {
	mu     sync.Mutex
	events []WatchEvent
	fail   func(WatchEvent) error
}

func (r *recorder) fn(_ context.Context, ev WatchEvent) error {
	r.mu.Lock()
	r.events = append(r.events, ev)
	fail := r.fail
	r.mu.Unlock()
	if fail != nil {
		return fail(ev)
	}
	return nil
}

func (r *recorder) snapshot() []WatchEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]WatchEvent(nil), r.events...)
}

// waitFor polls until n events arrived or the wait passes.
func (r *recorder) waitFor(t *testing.T, n int, wait time.Duration) []WatchEvent {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		evs := r.snapshot()
		if len(evs) >= n {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %d events, want %d: %+v", wait, len(evs), n, evs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startWatch(t *testing.T, dir string, r *recorder) *Watcher {
	t.Helper()
	w, err := Watch(context.Background(), WatchConfig{Dir: dir, Quiet: 50 * time.Millisecond}, r.fn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := w.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return w
}

func TestWatchAddChangeRemove(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "seed.wasm"), []byte("seed"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	startWatch(t, dir, r)

	path := filepath.Join(dir, "a.wasm")
	if err := os.WriteFile(path, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	evs := r.waitFor(t, 1, 5*time.Second)
	if evs[0].Op != WatchAdd || evs[0].Path != path || string(evs[0].Data) != "one" || evs[0].Hash != hashOf([]byte("one")) {
		t.Fatalf("first event %+v", evs[0])
	}
	// Ignored: other suffixes, hidden files, and rewriting the same bytes.
	for name, content := range map[string]string{"notes.txt": "x", ".a.wasm.tmp": "x", ".hidden.wasm": "x", "a.wasm": "one"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "a.toml"), []byte("[grants]"), 0o644); err != nil {
		t.Fatal(err)
	}
	evs = r.waitFor(t, 2, 5*time.Second)
	if evs[1].Op != WatchAdd || filepath.Base(evs[1].Path) != "a.toml" {
		t.Fatalf("second event %+v, want add of a.toml (others ignored)", evs[1])
	}
	if err := os.WriteFile(path, []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	evs = r.waitFor(t, 3, 5*time.Second)
	if evs[2].Op != WatchChange || string(evs[2].Data) != "two" {
		t.Fatalf("third event %+v", evs[2])
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	evs = r.waitFor(t, 4, 5*time.Second)
	if evs[3].Op != WatchRemove || evs[3].Path != path || evs[3].Data != nil {
		t.Fatalf("fourth event %+v", evs[3])
	}
	// The seeded file was never reported.
	for _, ev := range r.snapshot() {
		if filepath.Base(ev.Path) == "seed.wasm" || filepath.Base(ev.Path) == "notes.txt" {
			t.Fatalf("unexpected event %+v", ev)
		}
	}
}

// A file copied in slowly, in place, is reported once, whole.
func TestWatchSlowWriterReportedWhole(t *testing.T) {
	dir := t.TempDir()
	r := &recorder{}
	startWatch(t, dir, r)
	want := bytes.Repeat([]byte("0123456789abcdef"), 64)
	f, err := os.Create(filepath.Join(dir, "slow.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(want); i += 64 { // 16 chunks, each well inside the quiet period
		if _, err := f.Write(want[i : i+64]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	evs := r.waitFor(t, 1, 5*time.Second)
	if !bytes.Equal(evs[0].Data, want) {
		t.Fatalf("reported %d bytes, want the whole %d", len(evs[0].Data), len(want))
	}
	// Settle a while: no second report of the same bytes.
	time.Sleep(200 * time.Millisecond)
	if n := len(r.snapshot()); n != 1 {
		t.Fatalf("%d events, want 1: %+v", n, r.snapshot())
	}
}

// A rename into place reports a change of the target; the same bytes
// refused by the callback are not reported again, new bytes are.
func TestWatchRenameAndRetryAfterRefusal(t *testing.T) {
	dir := t.TempDir()
	other := t.TempDir()
	target := filepath.Join(dir, "m.wasm")
	if err := os.WriteFile(target, []byte("v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &recorder{fail: func(ev WatchEvent) error {
		if string(ev.Data) == "bad" {
			return os.ErrInvalid
		}
		return nil
	}}
	startWatch(t, dir, r)
	tmp := filepath.Join(other, "next")
	if err := os.WriteFile(tmp, []byte("bad"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, target); err != nil {
		t.Fatal(err)
	}
	evs := r.waitFor(t, 1, 5*time.Second)
	if evs[0].Op != WatchChange || string(evs[0].Data) != "bad" {
		t.Fatalf("event %+v", evs[0])
	}
	if err := os.Chtimes(target, time.Now(), time.Now()); err != nil { // touched, same bytes
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // ten quiet periods: the touch has settled
	if evs := r.snapshot(); len(evs) != 1 {
		t.Fatalf("the refused bytes were reported again after a touch: %+v", evs)
	}
	if err := os.WriteFile(target, []byte("v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	evs = r.waitFor(t, 2, 5*time.Second)
	if evs[1].Op != WatchChange || string(evs[1].Data) != "v2" {
		t.Fatalf("event %+v", evs[1])
	}
}

// Rescan reports what changed behind the watcher's back; Close is
// idempotent and Rescan after it fails.
func TestWatchRescanAndClose(t *testing.T) {
	dir := t.TempDir()
	r := &recorder{}
	w, err := Watch(context.Background(), WatchConfig{Dir: dir, Quiet: 20 * time.Millisecond}, r.fn)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x.wasm"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, 1, 5*time.Second)
	if err := w.Rescan(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(r.snapshot()); n != 1 {
		t.Fatalf("rescan of unchanged files reported %d events, want 1 in all", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Rescan(); err != ErrWatcherClosed {
		t.Fatalf("rescan after close: %v", err)
	}
	if _, err := Watch(context.Background(), WatchConfig{Dir: filepath.Join(dir, "missing")}, r.fn); err == nil {
		t.Fatal("watching a missing directory succeeded")
	}
}

// A file present at start is not read then: its first event is reported
// even with the same bytes (the caller compares with what it loaded), and
// from then on the same bytes again report nothing.
func TestWatchSeededFileReportedOnceWhenRewritten(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "seed.wasm")
	if err := os.WriteFile(path, []byte("seed"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	startWatch(t, dir, r)
	if err := os.WriteFile(path, []byte("seed"), 0o644); err != nil {
		t.Fatal(err)
	}
	evs := r.waitFor(t, 1, 5*time.Second)
	if evs[0].Op != WatchChange || string(evs[0].Data) != "seed" || evs[0].Hash != hashOf([]byte("seed")) {
		t.Fatalf("first event %+v, want a change with the bytes", evs[0])
	}
	if err := os.WriteFile(path, []byte("seed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "marker.wasm"), []byte("m"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, 2, 5*time.Second) // the marker's add comes after the rewrite settled
	time.Sleep(200 * time.Millisecond)
	if evs = r.snapshot(); len(evs) != 2 || filepath.Base(evs[1].Path) != "marker.wasm" {
		t.Fatalf("events %+v: the same bytes again were reported", evs)
	}
}
