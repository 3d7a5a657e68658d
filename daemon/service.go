package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/daemon/service"
	"github.com/meshd/meshd/host/gateway"
	"github.com/meshd/meshd/host/registry"
)

// LoadFile loads one module file and its grants, validates it and starts
// serving it, replacing the serving version of the service if there is one
// (see loadModule). On any failure nothing of it is left running, the
// serving version keeps serving, and the error says why.
func (d *Daemon) LoadFile(ctx context.Context, path string) error {
	wasm, err := os.ReadFile(path)
	if err != nil {
		d.recordLoad(path, err)
		return err
	}
	return d.loadLogged(ctx, path, wasm)
}

// loadModule loads wasm as the module of path's service. The new version is
// prepared (service.Builder), described and checked (Describe) and
// subscribed (Subscribe) while the serving version (if any) keeps
// serving; then it is swapped in at once: routes and the service map,
// and its subscriptions start. The replaced version finishes its in-flight
// work and is closed. The caller holds reload.mu.
func (d *Daemon) loadModule(ctx context.Context, path string, wasm []byte) (err error) {
	defer func() { d.observeLoad(path, err) }() // metrics.go
	base := filepath.Base(path)
	name := strings.TrimSuffix(base, ".wasm")
	if !abi.ValidServiceName(name) {
		return fmt.Errorf("%s: service name %q (from the file name) must match %s", base, name, abi.ServiceNamePattern)
	}
	cur := d.lookup(name) // stable: reload.mu is held
	p, sum := d.stage.Take(path, wasm)
	if p == nil {
		p = d.builder.Prepare(ctx, path, wasm, sum)
	}
	// Same bytes as the serving version (a grants change): same registry
	// entry, which must keep its status until the swap.
	version := p.Version()
	sameVersion := cur != nil && cur.Module().Hash() == version
	reg := func(v string, st registry.Status) {
		d.registry.Register(registry.Instance{Service: name, Version: v, Node: d.cfg.Node, Status: st})
	}
	if !sameVersion {
		reg(version, registry.Starting)
	}
	s := p.Service
	var h *service.Handover
	defer func() {
		if err == nil {
			return
		}
		if !sameVersion {
			d.registry.Deregister(name, version, d.cfg.Node)
		}
		if s == nil {
			return
		}
		s.Abandon(h) // the serving version's subscriptions stay its
		if !sameVersion && s.Version() != version {
			d.registry.Deregister(name, s.Version(), d.cfg.Node)
		}
		if cerr := s.Close(context.WithoutCancel(ctx)); cerr != nil {
			s.Logger().Warn("closing refused module", slog.Any("error", cerr))
		}
	}()
	if p.Err != nil {
		return p.Err
	}
	if err = s.Describe(); err != nil {
		return err
	}
	if s.Version() != version && !sameVersion { // re-key the STARTING entry under the full version
		d.registry.Deregister(name, version, d.cfg.Node)
		reg(s.Version(), registry.Starting)
	}
	if h, err = s.Subscribe(ctx, d.bus, cur, d.dispatch.Handler(s)); err != nil {
		return err
	}
	tSubs := time.Since(p.Began) - p.TKV - p.TModule

	d.mu.Lock()
	if d.lookup(name) != cur {
		d.mu.Unlock()
		return fmt.Errorf("%s: service %s changed while loading; try again", base, name)
	}
	if err = d.gateway.SetRoutes(d.routesLocked(s)); err != nil {
		d.mu.Unlock()
		return fmt.Errorf("%s: %w", base, err)
	}
	d.registry.Serve(registry.Instance{Service: name, Version: s.Version(), Node: d.cfg.Node, Status: registry.Up, Local: s})
	d.mu.Unlock()

	d.startSubscriptions(s)   // readiness.go: DOWN if they cannot start
	d.dispatch.StartOutbox(s) // events of writes stored before a crash
	log := s.Logger()
	if cur == nil {
		log.Info("service up", slog.String("file", base), slog.String("version", s.Version()),
			slog.Int("routes", len(s.Declaration().Routes)), slog.Int("subscriptions", len(s.Declaration().Subscriptions)),
			slog.Duration("took", time.Since(p.Began)), slog.Duration("kv", p.TKV),
			slog.Duration("module", p.TModule), slog.Duration("subscribe", tSubs),
			slog.String("instances", s.SnapshotNote()))
	} else {
		log.Info("service replaced", slog.String("file", base), slog.String("version", s.Version()),
			slog.String("replaced", cur.Version()), slog.String("instances", s.SnapshotNote()),
			slog.Int("routes", len(s.Declaration().Routes)), slog.Int("subscriptions", len(s.Declaration().Subscriptions)))
		s.Activated(cur, h)
		d.retire(ctx, cur, s.Version())
	}
	// Entries of versions removed earlier (OUT_OF_SERVICE) go once a new one is up.
	for _, in := range d.registry.Lookup(name) {
		if in.Node == d.cfg.Node && in.Version != s.Version() {
			d.registry.Deregister(name, in.Version, d.cfg.Node)
		}
	}
	return nil
}

// routesLocked is every served service's routes, plus extra's; the caller
// holds d.mu.
func (d *Daemon) routesLocked(extra *service.Service) []gateway.Route {
	var routes []gateway.Route
	for _, s := range d.locals() {
		if extra != nil && s.Name() == extra.Name() {
			continue // the version extra replaces
		}
		routes = append(routes, s.Routes()...)
	}
	if extra != nil {
		routes = append(routes, extra.Routes()...)
	}
	return d.meshRoutes(routes)
}

// lookup returns the version of a service this node serves (the
// registry's Local instance), or nil.
func (d *Daemon) lookup(name string) *service.Service {
	in, ok := d.registry.Local(name)
	if !ok {
		return nil
	}
	s, _ := in.Local.(*service.Service)
	return s
}

// locals returns every version this node serves, by service name.
func (d *Daemon) locals() []*service.Service {
	ins := d.registry.Locals()
	out := make([]*service.Service, 0, len(ins))
	for _, in := range ins {
		if s, ok := in.Local.(*service.Service); ok {
			out = append(out, s)
		}
	}
	return out
}

// discover answers the discover host function.
func (d *Daemon) discover(name string) (abi.ServiceInfo, bool) {
	st, ok := d.registry.Status(name)
	if !ok {
		return abi.ServiceInfo{}, false
	}
	info := abi.ServiceInfo{Name: name, Status: string(st)}
	for _, in := range d.registry.Lookup(name) {
		if in.Status == registry.Up {
			info.Instances++
			info.Version = in.Version
		}
	}
	return info, true
}
