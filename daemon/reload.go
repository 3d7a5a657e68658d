package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"

	"github.com/meshd/meshd/config"
	"github.com/meshd/meshd/daemon/internal/coalesce"
	"github.com/meshd/meshd/daemon/internal/loadgate"
	"github.com/meshd/meshd/daemon/service"
	"github.com/meshd/meshd/host/registry"
	"github.com/meshd/meshd/runtime"
)

// reloadState is the daemon's hot-reload machinery: the plugin-directory
// watcher, the locks that order loads, replacements and removals, the
// loads in progress, and the last load error of each service.
//
// A load prepares its module (compile, instantiate, run the initialiser,
// open the KV bucket: the slow part, up to the initialiser's timeout)
// holding only its service's lock, so that loads of different services
// run side by side and one slow initialiser costs only its own service;
// the checks against the other services and the swap then run one at a
// time, under mu. Shutdown cancels the loads in progress and waits for
// them.
//
// Lock order: a service's lock (services), then reloadState.mu, then
// Daemon.mu, then the registry's (the whole order is written above
// Daemon, in daemon.go).
type reloadState struct {
	mu       sync.Mutex // held for the checks and swap of a load, and for a removal
	services sync.Map   // service name → *sync.Mutex held for its whole load or removal

	once    sync.Once
	gate    *loadgate.Gate                          // loads and file-change workers in progress
	changes *coalesce.Coalescer[runtime.WatchEvent] // per service: its latest change not handled yet

	wmu      sync.Mutex       // guards watcher and watchers
	watcher  *runtime.Watcher // of the plugin directory (Reload rescans it)
	watchers []*runtime.Watcher

	errMu sync.Mutex
	errs  map[string]string // service → why its last load was refused
}

// LoadErrors returns, per service, why the last attempt to load or replace
// it was refused ("file: reason"). A service whose last load succeeded is
// absent. The map is a copy.
func (d *Daemon) LoadErrors() map[string]string {
	d.reload.errMu.Lock()
	defer d.reload.errMu.Unlock()
	return maps.Clone(d.reload.errs)
}

// recordLoad remembers the outcome of loading path.
func (d *Daemon) recordLoad(path string, err error) {
	name := serviceOf(path)
	d.reload.errMu.Lock()
	defer d.reload.errMu.Unlock()
	if err == nil {
		delete(d.reload.errs, name)
		return
	}
	if d.reload.errs == nil {
		d.reload.errs = make(map[string]string)
	}
	d.reload.errs[name] = err.Error()
}

// serviceOf is the service a plugin-directory file belongs to: "order" for
// order.wasm and order.toml.
func serviceOf(path string) string {
	base := filepath.Base(path)
	return strings.TrimSuffix(strings.TrimSuffix(base, ".wasm"), ".toml")
}

// watch starts a watcher of dir's files ending in suffixes (nil: modules
// and grants files), for stopWatchers to stop.
func (d *Daemon) watch(ctx context.Context, dir string, suffixes []string, fn runtime.WatchFunc) (*runtime.Watcher, error) {
	w, err := runtime.Watch(ctx, runtime.WatchConfig{
		Dir:      dir,
		Suffixes: suffixes,
		Quiet:    d.cfg.WatchQuiet,
		Logger:   d.log.With(slog.String("component", "watcher")),
	}, fn)
	if err != nil {
		return nil, fmt.Errorf("daemon: watching %s: %w", dir, err)
	}
	d.reload.wmu.Lock()
	d.reload.watchers = append(d.reload.watchers, w)
	d.reload.wmu.Unlock()
	return w, nil
}

// startWatcher starts watching the plugin directory, unless disabled.
func (d *Daemon) startWatcher(ctx context.Context) error {
	if d.cfg.NoWatch {
		return nil
	}
	w, err := d.watch(ctx, d.cfg.PluginDir, nil, d.onFileChange)
	if err != nil {
		return err
	}
	d.reload.wmu.Lock()
	d.reload.watcher = w
	d.reload.wmu.Unlock()
	return nil
}

// stopWatchers cancels the loads in progress, stops every watcher and
// waits for the loads. Shutdown calls it once d.closed is set.
func (d *Daemon) stopWatchers(ctx context.Context) error {
	d.loads().Cancel()
	d.reload.wmu.Lock()
	ws := d.reload.watchers
	d.reload.watcher, d.reload.watchers = nil, nil
	d.reload.wmu.Unlock()
	var errs []error
	for _, w := range ws {
		errs = append(errs, w.Close(ctx))
	}
	// Wait for the loads in progress (watcher, Reload, LoadFile), cancelled
	// above: an initialiser stops at once; compiling cannot be cancelled,
	// and the engine it compiles with is closed next. Later loads see
	// d.closed and do nothing.
	d.loads().Close()
	return errors.Join(errs...)
}

// loads is the gate of loads in progress, refusing once Shutdown began,
// and the coalescer of plugin-file changes, made on first use.
func (d *Daemon) loads() *loadgate.Gate {
	d.reload.once.Do(func() {
		d.reload.gate = loadgate.New(d.closed.Load)
		d.reload.changes = coalesce.New(d.reload.gate.Go, d.handleChange)
	})
	return d.reload.gate
}

// loadContext is ctx, also cancelled when Shutdown begins: loads run under
// it, so that an initialiser that sleeps or loops does not hold Shutdown
// up to its timeout. Call stop when the load is done.
func (d *Daemon) loadContext(ctx context.Context) (_ context.Context, stop func()) {
	return d.loads().Context(ctx)
}

// serviceLock is held for the whole of a load or removal of the service
// name: that service's changes apply one at a time, in order.
func (d *Daemon) serviceLock(name string) *sync.Mutex {
	return loadOrNew(&d.reload.services, name, func() *sync.Mutex { return new(sync.Mutex) })
}

// onFileChange hands one settled change in the plugin directory to its
// service's worker and returns at once: the watcher goes on to the next
// change while a module loads, so a slow load holds up no other service.
// A service's changes are handled one at a time; one that arrives while
// another of the same service waits replaces it (only the latest state of
// the files matters). Refusals are logged by the worker.
func (d *Daemon) onFileChange(_ context.Context, ev runtime.WatchEvent) error {
	d.loads()
	if !d.reload.changes.Put(serviceOf(ev.Path), ev) {
		return ErrClosed
	}
	return nil
}

// handleChange is the worker's handling of one change of a service.
func (d *Daemon) handleChange(_ string, ev runtime.WatchEvent) {
	if err := d.handleFileChange(context.Background(), ev); err != nil && !errors.Is(err, ErrClosed) {
		d.log.Warn("plugin file change", slog.String("file", filepath.Base(ev.Path)), slog.Any("error", err))
	}
}

// handleFileChange handles one settled change in the plugin directory.
func (d *Daemon) handleFileChange(ctx context.Context, ev runtime.WatchEvent) error {
	if d.closed.Load() {
		return ErrClosed
	}
	base := filepath.Base(ev.Path)
	d.log.Info("plugin file changed", slog.String("file", base), slog.String("change", ev.Op.String()))
	switch {
	case strings.HasSuffix(base, ".wasm") && ev.Op == runtime.WatchRemove:
		return d.RemoveService(ctx, serviceOf(base))
	case strings.HasSuffix(base, ".wasm"):
		if s := d.lookup(serviceOf(base)); s != nil && strings.HasPrefix(ev.Hash, s.Module().Hash()) {
			d.recordLoad(ev.Path, nil) // back to the serving version: nothing refused
			return nil
		}
		return d.loadLogged(ctx, ev.Path, ev.Data)
	case strings.HasSuffix(base, ".toml"):
		// Grants changed: reload the module with them, all or nothing.
		// The same grants as the serving version's (a touch, or a file the
		// watcher had not read yet) change nothing.
		if s := d.lookup(serviceOf(base)); s != nil {
			if sf, err := config.ParseService(ev.Path, ev.Data); err == nil && reflect.DeepEqual(sf, s.ServiceFile()) {
				d.recordLoad(filepath.Join(filepath.Dir(ev.Path), s.File()), nil) // nothing refused
				return nil
			}
		}
		wasm := strings.TrimSuffix(ev.Path, ".toml") + ".wasm"
		data, err := os.ReadFile(wasm)
		if errors.Is(err, os.ErrNotExist) {
			return nil // grants for a module not dropped yet
		}
		if err != nil {
			return err
		}
		return d.loadLogged(ctx, wasm, data)
	}
	return nil
}

// loadLogged loads or replaces a service from wasm and logs a refusal. The
// module is prepared holding only its service's lock, then checked and
// swapped in under reload.mu (see reloadState).
func (d *Daemon) loadLogged(ctx context.Context, path string, wasm []byte) error {
	if !d.loads().Begin() {
		return ErrClosed
	}
	defer d.loads().Done()
	ctx, stop := d.loadContext(ctx)
	defer stop()
	lock := d.serviceLock(serviceOf(path))
	lock.Lock()
	defer lock.Unlock()
	d.prepareAhead(ctx, path, wasm)
	d.reload.mu.Lock()
	if d.closed.Load() {
		d.reload.mu.Unlock()
		return ErrClosed // what was prepared: dropPrepared closes it
	}
	err := d.loadModule(ctx, path, wasm)
	d.recordLoad(path, err)
	d.reload.mu.Unlock()
	if err != nil {
		attrs := []any{slog.String("file", filepath.Base(path)), slog.String("reason", err.Error())}
		if s := d.lookup(serviceOf(path)); s != nil {
			attrs = append(attrs, slog.String("serving", s.Version()))
		}
		d.log.Error("module refused; the serving version (if any) keeps serving", attrs...)
	}
	return err
}

// Reload rescans the plugin directory (SIGHUP): every module is loaded
// again with its current grants file, and replaces the serving version if
// it passes every check; a service whose module file is gone is removed.
// It returns every refusal joined.
func (d *Daemon) Reload(ctx context.Context) error {
	if d.closed.Load() {
		return ErrClosed
	}
	var errs []error
	if err := d.ReloadConfig(ctx); err != nil {
		errs = append(errs, err)
	}
	entries, err := os.ReadDir(d.cfg.PluginDir)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("daemon: reload: %w", err))...)
	}
	// Modules of services that serve nothing now (refused at start, say, for
	// a route conflict) are decided together as at start: both parties of a
	// conflict among them stay refused, rather than the first in name order
	// taking the contested routes.
	var idle []string
	for _, path := range d.pluginPaths() {
		if d.lookup(serviceOf(path)) == nil {
			idle = append(idle, path)
		}
	}
	d.stage.PrepareAll(ctx, idle)
	defer d.dropPrepared()
	refused := d.refuseStartConflicts(ctx, idle)
	present := make(map[string]bool)
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".wasm") {
			continue
		}
		path := filepath.Join(d.cfg.PluginDir, e.Name())
		present[serviceOf(path)] = true
		if refused[path] {
			errs = append(errs, fmt.Errorf("daemon: reload: %s refused: its routes conflict with another module's", e.Name()))
			continue
		}
		wasm := d.stage.Bytes(path)
		var err error
		if wasm == nil {
			wasm, err = os.ReadFile(path)
		}
		if err == nil {
			err = d.loadLogged(ctx, path, wasm)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, name := range d.Services() {
		if !present[name] {
			errs = append(errs, d.RemoveService(ctx, name))
		}
	}
	if w := d.currentWatcher(); w != nil {
		_ = w.Rescan() // resync the watcher's view; what it finds unchanged it ignores
	}
	return errors.Join(errs...)
}

func (d *Daemon) currentWatcher() *runtime.Watcher {
	d.reload.wmu.Lock()
	defer d.reload.wmu.Unlock()
	return d.reload.watcher
}

// RemoveService takes a service out of service: its registry status becomes
// OUT_OF_SERVICE, its subscriptions stop (events wait in the stream for a
// future version), its routes are removed (requests get 404), in-flight
// work finishes (up to the drain timeout), then its module is closed.
func (d *Daemon) RemoveService(ctx context.Context, name string) error {
	lock := d.serviceLock(name)
	lock.Lock()
	defer lock.Unlock()
	d.reload.mu.Lock()
	defer d.reload.mu.Unlock()
	s := d.lookup(name)
	if s == nil || d.closed.Load() {
		return nil
	}
	_ = d.registry.SetStatus(name, s.Version(), d.cfg.Node, registry.OutOfService)
	// Stop event delivery first, while the service still answers, so that no
	// delivery fails (and counts an attempt) because the service is gone.
	s.StopSubscriptions()
	d.mu.Lock()
	d.registry.Withdraw(name, s.Version(), d.cfg.Node)
	err := d.gateway.SetRoutes(d.routesLocked(nil))
	d.mu.Unlock()
	if err != nil {
		d.log.Error("rebuilding routes", slog.Any("error", err))
	}
	d.recordLoad(name, nil)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.DrainTimeout)
	defer cancel()
	cerr := s.Close(cctx)
	d.log.Info("service removed", slog.String("service", name), slog.String("version", s.Version()))
	return cerr
}

// retire drains and closes a replaced version and drops it from the
// registry. Its subscriptions were handed over or stopped by the caller.
func (d *Daemon) retire(ctx context.Context, old *service.Service, by string) {
	if old.Version() != by {
		_ = d.registry.SetStatus(old.Name(), old.Version(), d.cfg.Node, registry.OutOfService)
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.DrainTimeout)
	defer cancel()
	if err := old.Close(cctx); err != nil {
		old.Logger().Warn("closing replaced version", slog.String("version", old.Version()), slog.Any("error", err))
	}
	if old.Version() != by {
		d.registry.Deregister(old.Name(), old.Version(), d.cfg.Node)
	}
}
