package daemon

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
	goruntime "runtime"
	"strings"
	"sync"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/config"
	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/host/kv"
)

// prepared is a service built from a module file and its grants file but
// not yet checked against the others or serving: the part of a load that
// takes time (compiling or reading the compiled module from the cache,
// opening the KV bucket, warming an instance) and touches nothing shared.
// It is built in steps: compile and link, which need neither NATS nor the
// bus, and openKV, which needs NATS.
type prepared struct {
	wasm    []byte
	hash    [sha256.Size]byte
	s       *service // nil when err is set
	err     error
	began   time.Time
	tKV     time.Duration
	tModule time.Duration
	stat    os.FileInfo // compileFile's: the file as it was before it was read
}

// prepare builds path's service from wasm, whose sha256 is hash. On
// failure nothing of it is left open.
func (d *Daemon) prepare(ctx context.Context, path string, wasm []byte, hash [sha256.Size]byte) *prepared {
	p := d.compile(ctx, path, wasm, hash)
	d.finish(ctx, p)
	return p
}

// compile is the first step of prepare: the grants file is read and the
// module compiled and checked against the ABI, nothing linked or run.
func (d *Daemon) compile(ctx context.Context, path string, wasm []byte, hash [sha256.Size]byte) *prepared {
	p := &prepared{wasm: wasm, hash: hash, began: time.Now()}
	base := filepath.Base(path)
	name := strings.TrimSuffix(base, ".wasm")
	sf, hasFile, err := readServiceFile(filepath.Join(filepath.Dir(path), name+".toml"))
	if err != nil {
		p.err = err
		return p
	}
	log := d.log.With(slog.String("service", name))
	if !hasFile {
		log.Warn("no grants file; the service may serve routes but not publish, subscribe, keep state or discover",
			slog.String("expected", name+".toml"))
	}
	s := &service{name: name, file: base, version: hex.EncodeToString(p.hash[:6]), log: log, events: sf.Events}
	mc := sf.ModuleConfig(d.cfg.Module)
	mc.Name = name
	mc.SHA256 = p.hash
	mc.Logger = log
	mc.Stderr = d.newLogWriter(name, log)
	mc.Stdout = mc.Stderr
	if s.mod, err = d.engine.Compile(ctx, wasm, mc); err != nil {
		p.err = fmt.Errorf("%s: %w", base, err)
		return p
	}
	s.sf = sf
	p.s = s
	p.tModule = time.Since(p.began)
	return p
}

// finish is the second step of prepare: link, then openKV.
func (d *Daemon) finish(ctx context.Context, p *prepared) {
	d.link(ctx, p)
	d.openKV(ctx, p)
}

// link links the host functions, warms an instance and describes the
// module: everything after compiling that needs no NATS, so compileDir
// does it while NATS starts. The instance's Env gets its KV store from
// openKV, before anything can invoke it (the initialiser and describe do
// not reach the store).
func (d *Daemon) link(ctx context.Context, p *prepared) {
	if p.err != nil {
		return
	}
	s, base := p.s, p.s.file
	began := time.Now()
	s.env = &host.Env{Service: s.name, Grants: s.sf.HostGrants(), Log: s.log, Discover: d.discover,
		Config: s.sf.Config, Observe: d.observeKV(s.name), LogDropped: d.guestLogDropped(s.name),
		MaxPayload: func() int64 { return d.nats.Conn().MaxPayload() }}
	if err := s.mod.Start(ctx, host.Module(s.env)); err != nil { // closes the module
		p.s, p.err = nil, fmt.Errorf("%s: %w", base, err)
		return
	}
	p.tModule += time.Since(began)
}

// openKV opens the service's KV bucket, when it is granted one.
func (d *Daemon) openKV(ctx context.Context, p *prepared) {
	if p.err != nil || !p.s.env.Grants.KV {
		return
	}
	s := p.s
	began := time.Now()
	store, err := kv.Open(ctx, d.nats.JetStream(), s.name, kv.Options{Cache: d.kvCache(s.name)})
	if err != nil {
		_ = s.mod.Close(ctx)
		p.s, p.err = nil, fmt.Errorf("%s: key-value store: %w", s.file, err)
		return
	}
	s.store = store
	s.env.KV = kvAdapter{store}
	p.tKV = time.Since(began)
}

// kvCache returns the cache the stores of service share across its
// versions (a store is opened per load, and an old version may still write
// while a new one serves), or nil when there is none: when it is turned
// off, or when NATS is reachable by others (an external server, or the
// embedded one with a client port), who could write the store behind it.
func (d *Daemon) kvCache(service string) *kv.Cache {
	if d.cfg.KVCacheBytes <= 0 || d.cfg.NATSURL != "" || d.cfg.NATSListen != "" {
		return nil
	}
	return loadOrNew(&d.kvCaches, service, func() *kv.Cache { return kv.NewCache(int(d.cfg.KVCacheBytes)) })
}

// compileDir starts compiling and linking every module of the plugin
// directory, as many at a time as there are CPUs, and returns at once;
// prepareAll waits for each and opens its KV bucket. Called before NATS
// starts, it overlaps the slowest part of a start (reading each module's
// compiled code from the cache, or compiling it, and starting the guest's
// runtime in its first instance) with NATS's and the bus's. Its results stay
// apart from d.prepared, so that a load the watcher starts meanwhile never
// takes a module that is compiled but not finished.
func (d *Daemon) compileDir(ctx context.Context) {
	sem := make(chan struct{}, max(1, goruntime.NumCPU()))
	jobs := make(map[string]*compileJob)
	for _, path := range d.pluginPaths() {
		job := &compileJob{done: make(chan struct{})}
		jobs[path] = job
		go func() {
			defer close(job.done)
			ctx, stop := d.loadContext(ctx) // Shutdown stops an initialiser
			defer stop()
			// A slot for compiling, which takes a CPU; not for the
			// initialiser, which may sleep or loop until its timeout:
			// the other modules go on meanwhile.
			sem <- struct{}{}
			p := d.compileFile(ctx, path)
			<-sem
			if p != nil {
				d.link(ctx, p)
			}
			job.p = p // nil: loadDir reads it again and says why
		}()
	}
	d.preparedMu.Lock()
	d.compiled = jobs
	d.preparedMu.Unlock()
}

// compileJob is one of compileDir's compiles: p is set when done is closed.
type compileJob struct {
	done chan struct{}
	p    *prepared
}

// wait returns the job's result once it is done; nil for no job.
func (j *compileJob) wait() *prepared {
	if j == nil {
		return nil
	}
	<-j.done
	return j.p
}

// compileFile reads path and compiles it (compile), noting the file as it
// was before it was read; nil when it cannot be read.
func (d *Daemon) compileFile(ctx context.Context, path string) *prepared {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	p := d.compile(ctx, path, wasm, sha256.Sum256(wasm))
	p.stat = fi
	return p
}

// pluginPaths lists the module files of the plugin directory (nil when it
// cannot be read; loadDir says why).
func (d *Daemon) pluginPaths() []string {
	entries, err := os.ReadDir(d.cfg.PluginDir)
	if err != nil {
		return nil
	}
	var paths []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".wasm") && abi.ValidServiceName(strings.TrimSuffix(e.Name(), ".wasm")) {
			paths = append(paths, filepath.Join(d.cfg.PluginDir, e.Name()))
		}
	}
	return paths
}

// prepareAll prepares the modules of paths at once, as many at a time as
// there are CPUs, for loadModule to take (takePrepared): those compileDir
// compiled are finished, the others prepared from the start. The checks
// and swaps then run one by one.
func (d *Daemon) prepareAll(ctx context.Context, paths []string) {
	d.preparedMu.Lock()
	compiled := d.compiled
	d.compiled = nil
	d.preparedMu.Unlock()
	results := make([]*prepared, len(paths))
	sem := make(chan struct{}, max(1, goruntime.NumCPU()))
	var wg sync.WaitGroup
	for i, path := range paths {
		job := compiled[path]
		delete(compiled, path)
		wg.Go(func() {
			// Each module is finished as soon as its own compile is done,
			// while the others may still compile.
			p := job.wait()
			ctx, stop := d.loadContext(ctx)
			defer stop()
			// The watcher started after compileDir read the file: a change
			// in between would never be reported, so a file that changed
			// since is prepared again from its bytes now.
			if p != nil && changedSince(path, p.stat) {
				p.discard()
				p = nil
			}
			if p == nil {
				sem <- struct{}{} // for compiling only, as in compileDir
				p = d.compileFile(ctx, path)
				<-sem
				if p == nil {
					return // loadModule reads it again and says why
				}
				d.link(ctx, p)
			}
			d.openKV(ctx, p)
			results[i] = p
		})
	}
	wg.Wait()
	for _, job := range compiled { // gone from the directory since
		if p := job.wait(); p != nil {
			p.discard()
		}
	}
	d.preparedMu.Lock()
	defer d.preparedMu.Unlock()
	if d.prepared == nil {
		d.prepared = make(map[string]*prepared)
	}
	for i, p := range results {
		if p != nil {
			d.prepared[paths[i]] = p
		}
	}
}

// prepareAhead prepares path's module from wasm, unless that was done
// already, and keeps it for loadModule to take: the slow part of a load
// (up to the initialiser's timeout), done before the load takes
// reload.mu, so that other services load meanwhile. The caller holds the
// service's lock.
func (d *Daemon) prepareAhead(ctx context.Context, path string, wasm []byte) {
	if !abi.ValidServiceName(serviceOf(path)) {
		return // loadModule refuses it, and says why
	}
	p, sum := d.takePrepared(path, wasm)
	if p == nil {
		p = d.prepare(ctx, path, wasm, sum)
	}
	d.preparedMu.Lock()
	if d.prepared == nil {
		d.prepared = make(map[string]*prepared)
	}
	old := d.prepared[path]
	d.prepared[path] = p
	d.preparedMu.Unlock()
	if old != nil {
		old.discard()
	}
}

// preparedBytes returns the bytes prepareAll read for path, if any, so
// that loadDir does not read the file again.
func (d *Daemon) preparedBytes(path string) []byte {
	d.preparedMu.Lock()
	defer d.preparedMu.Unlock()
	if p := d.prepared[path]; p != nil {
		return p.wasm
	}
	return nil
}

// takePrepared returns the service prepared for path from the bytes wasm,
// or nil, and the sha256 of wasm. Whatever was prepared for path is no
// longer kept afterwards. When wasm is the very slice prepared (loadDir
// passes it on) it is not hashed again.
func (d *Daemon) takePrepared(path string, wasm []byte) (*prepared, [sha256.Size]byte) {
	d.preparedMu.Lock()
	p := d.prepared[path]
	delete(d.prepared, path)
	d.preparedMu.Unlock()
	if p != nil && len(wasm) > 0 && len(p.wasm) == len(wasm) && &p.wasm[0] == &wasm[0] {
		return p, p.hash
	}
	sum := sha256.Sum256(wasm)
	if p != nil && p.hash != sum { // the file changed since: prepare it again
		p.discard()
		p = nil
	}
	return p, sum
}

// dropPrepared closes whatever was compiled or prepared and not taken.
func (d *Daemon) dropPrepared() {
	d.preparedMu.Lock()
	left, compiled := d.prepared, d.compiled
	d.prepared, d.compiled = nil, nil
	d.preparedMu.Unlock()
	for _, p := range left {
		p.discard()
	}
	for _, job := range compiled { // wait: a compile still running finishes first
		if p := job.wait(); p != nil {
			p.discard()
		}
	}
}

func (p *prepared) discard() {
	if p.s != nil {
		_ = p.s.close(context.Background())
	}
}

// changedSince reports whether path's size or modification time differ
// from was (or path cannot be read).
func changedSince(path string, was os.FileInfo) bool {
	fi, err := os.Stat(path)
	return err != nil || was == nil || fi.Size() != was.Size() || !fi.ModTime().Equal(was.ModTime())
}

// readServiceFile reads the service file at path: a missing one is the
// zero file, with ok false.
func readServiceFile(path string) (sf config.Service, ok bool, err error) {
	f, err := config.LoadService(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return sf, false, nil
	case err != nil:
		return sf, false, err
	}
	return *f, true, nil
}
