package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"time"

	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/host/kv"
)

// prepared is a service built from a module file and its grants file but
// not yet checked against the others or serving: the part of a load that
// takes time (opening the KV bucket, compiling or reading the compiled
// module from the cache, warming an instance) and touches nothing shared.
type prepared struct {
	wasm    []byte
	hash    [sha256.Size]byte
	s       *service // nil when err is set
	err     error
	began   time.Time
	tKV     time.Duration
	tModule time.Duration
}

// prepare builds path's service from wasm, whose sha256 is hash. On
// failure nothing of it is left open.
func (d *Daemon) prepare(ctx context.Context, path string, wasm []byte, hash [sha256.Size]byte) *prepared {
	p := &prepared{wasm: wasm, hash: hash, began: time.Now()}
	base := filepath.Base(path)
	name := strings.TrimSuffix(base, ".wasm")
	sf, hasFile, err := ReadServiceFile(filepath.Join(filepath.Dir(path), name+".toml"))
	if err != nil {
		p.err = err
		return p
	}
	log := d.log.With(slog.String("service", name))
	if !hasFile {
		log.Warn("no grants file; the service may serve routes but not publish, subscribe, keep state or discover",
			slog.String("expected", name+".toml"))
	}
	s := &service{name: name, file: base, version: hex.EncodeToString(p.hash[:6]), log: log}
	s.env = &host.Env{Service: name, Grants: sf.HostGrants(), Log: log, Discover: d.discover, Config: sf.Config,
		Observe: d.observeKV(name)}
	s.events = sf.Events
	if s.env.Grants.KV {
		if s.store, err = kv.Open(ctx, d.nats.JetStream(), name); err != nil {
			p.err = fmt.Errorf("%s: key-value store: %w", base, err)
			return p
		}
		s.env.KV = kvAdapter{s.store}
	}
	p.tKV = time.Since(p.began)
	mc := sf.ModuleConfig(d.cfg.Module)
	mc.Name = name
	mc.Logger = log
	mc.Stderr = &logWriter{log: log}
	mc.Stdout = mc.Stderr
	if s.mod, err = d.engine.Load(ctx, wasm, host.Module(s.env), mc); err != nil {
		p.err = fmt.Errorf("%s: %w", base, err)
		return p
	}
	p.tModule = time.Since(p.began) - p.tKV
	p.s = s
	return p
}

// prepareAll prepares the modules of paths at once, as many at a time as
// there are CPUs, for loadModule to take (takePrepared); at start this
// overlaps the compile-cache reads and instance warm-ups of the services
// instead of doing them one after the other.
func (d *Daemon) prepareAll(ctx context.Context, paths []string) {
	if len(paths) < 2 {
		return
	}
	results := make([]*prepared, len(paths))
	sem := make(chan struct{}, max(1, goruntime.NumCPU()))
	var wg sync.WaitGroup
	for i, path := range paths {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			wasm, err := os.ReadFile(path)
			if err != nil {
				return // loadModule reads it again and says why
			}
			results[i] = d.prepare(ctx, path, wasm, sha256.Sum256(wasm))
		})
	}
	wg.Wait()
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

// takePrepared returns the service prepared for path from the same bytes,
// or nil. Whatever was prepared for path is no longer kept afterwards.
func (d *Daemon) takePrepared(path string, hash [sha256.Size]byte) *prepared {
	d.preparedMu.Lock()
	p := d.prepared[path]
	delete(d.prepared, path)
	d.preparedMu.Unlock()
	if p == nil {
		return nil
	}
	if p.hash != hash { // the file changed since: prepare it again
		p.discard()
		return nil
	}
	return p
}

// dropPrepared closes whatever was prepared and not taken.
func (d *Daemon) dropPrepared() {
	d.preparedMu.Lock()
	left := d.prepared
	d.prepared = nil
	d.preparedMu.Unlock()
	for _, p := range left {
		p.discard()
	}
}

func (p *prepared) discard() {
	if p.s != nil {
		_ = p.s.close(context.Background())
	}
}
