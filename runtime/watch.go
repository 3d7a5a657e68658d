package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// WatchOp is what happened to a watched file.
type WatchOp int

// Operations a Watcher reports.
const (
	WatchAdd    WatchOp = iota + 1 // a file appeared (or reappeared) with content
	WatchChange                    // a reported file now holds different bytes
	WatchRemove                    // a reported file is gone
)

func (op WatchOp) String() string {
	switch op {
	case WatchAdd:
		return "add"
	case WatchChange:
		return "change"
	case WatchRemove:
		return "remove"
	}
	return fmt.Sprintf("WatchOp(%d)", int(op))
}

// WatchEvent is one settled change of a file in the watched directory.
type WatchEvent struct {
	Op   WatchOp
	Path string // Dir joined with the file's base name
	// Data is the file's content as hashed (nil for WatchRemove): load these
	// bytes rather than reading the file again, which may have changed since.
	Data []byte
	Hash string // hex sha256 of Data
}

// WatchFunc receives the watcher's events, one at a time, on the watcher's
// goroutine. ctx ends when the watcher is closed. An error is logged; the
// same bytes are not reported again, a later change of the file is.
type WatchFunc func(ctx context.Context, ev WatchEvent) error

// WatchConfig configures a Watcher.
type WatchConfig struct {
	Dir string
	// Suffixes selects the files reported; default ".wasm" and ".toml".
	Suffixes []string
	// Quiet is how long a file must stay unchanged (no event, same size and
	// modification time) before it is read and reported; default 250ms.
	Quiet time.Duration
	// Logger receives the watcher's own problems; nil discards them.
	Logger *slog.Logger
}

// DefaultWatchQuiet is WatchConfig.Quiet's default.
const DefaultWatchQuiet = 250 * time.Millisecond

// ErrWatcherClosed is returned by Rescan after Close.
var ErrWatcherClosed = errors.New("runtime: watcher closed")

// Watcher reports added, changed and removed files of one directory
// (not recursive), debounced per file. A file still being written is not
// reported half-written as long as its writer keeps writing: it is read only
// once it has been quiet for WatchConfig.Quiet, and reported only when its
// bytes differ from the last reported ones. A writer that stalls longer than
// the quiet period may get its partial file reported; the callback refuses
// it, and the file is reported again when it changes again.
type Watcher struct {
	cfg WatchConfig
	fn  WatchFunc
	fsw *fsnotify.Watcher
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	rescan chan struct{}
	done   chan struct{}

	mu    sync.Mutex // guards files
	files map[string]*watchedFile
	once  sync.Once
}

// watchedFile is the watcher's view of one file, keyed by base name.
type watchedFile struct {
	reported  bool   // the callback has seen it (add or change)
	hash      string // of the last reported bytes; "" for a seeded file, not read
	pending   bool   // an event arrived; settle and maybe report
	lastEvent time.Time
	sampled   time.Time // when size and mtime were last seen to change
	size      int64
	mtime     time.Time
}

// Watch starts watching cfg.Dir. The files already there are taken as
// reported (the caller loaded them), so only later changes are reported;
// the first event about one of them is reported even when its bytes turn
// out unchanged, since they were not read at start.
// Close stops the watcher.
func Watch(ctx context.Context, cfg WatchConfig, fn WatchFunc) (*Watcher, error) {
	if cfg.Dir == "" {
		return nil, errors.New("runtime: watch: no directory")
	}
	if fn == nil {
		return nil, errors.New("runtime: watch: nil callback")
	}
	if len(cfg.Suffixes) == 0 {
		cfg.Suffixes = []string{".wasm", ".toml"}
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = DefaultWatchQuiet
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("runtime: watch: %w", err)
	}
	if err := fsw.Add(cfg.Dir); err != nil {
		_ = fsw.Close()
		return nil, fmt.Errorf("runtime: watch %s: %w", cfg.Dir, err)
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &Watcher{
		cfg: cfg, fn: fn, fsw: fsw, log: log,
		ctx: wctx, cancel: cancel,
		rescan: make(chan struct{}, 1),
		done:   make(chan struct{}),
		files:  make(map[string]*watchedFile),
	}
	w.seed()
	go w.loop()
	return w, nil
}

// seed records the files present now as reported.
func (w *Watcher) seed() {
	entries, err := os.ReadDir(w.cfg.Dir)
	if err != nil {
		w.log.Warn("watch: reading directory", slog.String("dir", w.cfg.Dir), slog.Any("error", err))
		return
	}
	for _, e := range entries {
		if e.IsDir() || !w.wanted(e.Name()) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		// Not read nor hashed: at start that would double the reading
		// of every module (on a fresh process most of the cost is the
		// memory it is read into). Its first change is reported without
		// comparing bytes; the callback knows what it loaded.
		w.files[e.Name()] = &watchedFile{reported: true, size: fi.Size(), mtime: fi.ModTime()}
	}
}

func (w *Watcher) wanted(base string) bool {
	if strings.HasPrefix(base, ".") { // editors' and rsync's temporary files
		return false
	}
	for _, s := range w.cfg.Suffixes {
		if strings.HasSuffix(base, s) {
			return true
		}
	}
	return false
}

// Rescan looks at every file of the directory again, as if each had an
// event: changed ones are reported, vanished ones removed.
func (w *Watcher) Rescan() error {
	select {
	case <-w.done:
		return ErrWatcherClosed
	default:
	}
	select {
	case w.rescan <- struct{}{}:
	default:
	}
	return nil
}

// Close stops the watcher, cancelling the context of a callback in
// progress, and waits for its goroutine to return (or ctx to end).
// Close is idempotent.
func (w *Watcher) Close(ctx context.Context) error {
	var err error
	w.once.Do(func() {
		w.cancel()
		err = w.fsw.Close()
	})
	select {
	case <-w.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("runtime: watcher still running at close: %w", ctx.Err())
	}
}

func (w *Watcher) loop() {
	defer close(w.done)
	tick := time.NewTicker(max(w.cfg.Quiet/4, 5*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			base := filepath.Base(ev.Name)
			if filepath.Dir(ev.Name) != filepath.Clean(w.cfg.Dir) || !w.wanted(base) {
				continue
			}
			w.mark(base, time.Now())
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			w.log.Warn("watch: file events lost; rescanning the directory", slog.Any("error", err))
			w.markAll()
		case <-w.rescan:
			w.markAll()
		case now := <-tick.C:
			w.settle(now)
		}
	}
}

func (w *Watcher) mark(base string, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f := w.files[base]
	if f == nil {
		f = &watchedFile{}
		w.files[base] = f
	}
	f.pending = true
	f.lastEvent = now
	f.sampled = time.Time{}
}

// markAll marks every known file and every file in the directory pending.
func (w *Watcher) markAll() {
	now := time.Now()
	if entries, err := os.ReadDir(w.cfg.Dir); err == nil {
		for _, e := range entries {
			if !e.IsDir() && w.wanted(e.Name()) {
				w.mark(e.Name(), now)
			}
		}
	}
	w.mu.Lock()
	names := make([]string, 0, len(w.files))
	for n := range w.files {
		names = append(names, n)
	}
	w.mu.Unlock()
	for _, n := range names {
		w.mark(n, now)
	}
}

// settle reports the pending files that have been quiet long enough, in
// name order (so a .toml and its .wasm settle in a stable order).
func (w *Watcher) settle(now time.Time) {
	w.mu.Lock()
	var due []string
	for n, f := range w.files {
		if f.pending && now.Sub(f.lastEvent) >= w.cfg.Quiet {
			due = append(due, n)
		}
	}
	w.mu.Unlock()
	slices.Sort(due)
	for _, n := range due {
		if w.ctx.Err() != nil {
			return
		}
		if ev, ok := w.check(n, now); ok {
			if err := w.fn(w.ctx, ev); err != nil {
				w.log.Debug("watch: callback refused the file", slog.String("file", n), slog.Any("error", err))
			}
		}
	}
}

// check looks at one pending file and returns the event to report, if any.
func (w *Watcher) check(base string, now time.Time) (WatchEvent, bool) {
	path := filepath.Join(w.cfg.Dir, base)
	w.mu.Lock()
	defer w.mu.Unlock()
	f := w.files[base]
	if f == nil || !f.pending {
		return WatchEvent{}, false
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		f.pending = false
		if !f.reported {
			delete(w.files, base)
			return WatchEvent{}, false
		}
		delete(w.files, base)
		return WatchEvent{Op: WatchRemove, Path: path}, true
	case err != nil:
		w.log.Warn("watch: stat", slog.String("file", base), slog.Any("error", err))
		f.pending = false
		return WatchEvent{}, false
	case fi.IsDir():
		f.pending = false
		return WatchEvent{}, false
	}
	if f.sampled.IsZero() || fi.Size() != f.size || !fi.ModTime().Equal(f.mtime) {
		// Still changing (or first look since the last event): sample and wait.
		f.size, f.mtime, f.sampled = fi.Size(), fi.ModTime(), now
		return WatchEvent{}, false
	}
	if now.Sub(f.sampled) < w.cfg.Quiet {
		return WatchEvent{}, false
	}
	if fi.Size() == 0 { // truncated for an in-place copy; wait for the bytes
		f.pending = false
		return WatchEvent{}, false
	}
	data, err := os.ReadFile(path)
	if err != nil {
		f.sampled = time.Time{} // gone or unreadable for a moment: look again
		return WatchEvent{}, false
	}
	if fi2, err := os.Stat(path); err != nil || fi2.Size() != int64(len(data)) || !fi2.ModTime().Equal(fi.ModTime()) {
		f.sampled = time.Time{} // written while we read it
		return WatchEvent{}, false
	}
	f.pending = false
	sum := hashOf(data)
	if f.reported && sum == f.hash {
		return WatchEvent{}, false
	}
	op := WatchChange
	if !f.reported {
		op = WatchAdd
	}
	f.reported, f.hash = true, sum
	return WatchEvent{Op: op, Path: path, Data: data, Hash: sum}, true
}

func hashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
