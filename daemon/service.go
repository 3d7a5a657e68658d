package daemon

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/config"
	"github.com/meshd/meshd/daemon/dispatch"
	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/gateway"
	"github.com/meshd/meshd/host/kv"
	"github.com/meshd/meshd/host/registry"
	"github.com/meshd/meshd/runtime"
)

// service is one loaded service version with what it was granted.
type service struct {
	name    string
	file    string
	version string // module hash, plus the declared version if any
	mod     *runtime.Module
	decl    abi.Declaration
	env     *host.Env
	store   *kv.Store
	subs    []*bus.Subscription
	log     *slog.Logger
	events  config.Events  // [events] of the service file
	sf      config.Service // the service file it was loaded with
}

func (s *service) close(ctx context.Context) error {
	var errs []error
	for _, sub := range s.subs {
		sub.Stop()
	}
	if s.mod != nil {
		errs = append(errs, s.mod.Close(ctx))
	}
	return errors.Join(errs...)
}

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
// compiled, validated, warmed, described and checked against its grants and
// the other services' routes while the serving version (if any) keeps
// serving; then it is swapped in at once: service map, routes and
// subscriptions (the same durable consumers carry on). The replaced version
// finishes its in-flight work and is closed. The caller holds reload.mu.
func (d *Daemon) loadModule(ctx context.Context, path string, wasm []byte) (err error) {
	defer func() { d.observeLoad(path, err) }() // metrics.go
	base := filepath.Base(path)
	name := strings.TrimSuffix(base, ".wasm")
	if !abi.ValidServiceName(name) {
		return fmt.Errorf("%s: service name %q (from the file name) must match %s", base, name, abi.ServiceNamePattern)
	}
	cur := d.lookup(name) // stable: reload.mu is held
	p, sum := d.takePrepared(path, wasm)
	version := hex.EncodeToString(sum[:6])
	log := d.log.With(slog.String("service", name))
	// Same bytes as the serving version (a grants change): same registry
	// entry, which must keep its status until the swap.
	sameVersion := cur != nil && cur.mod.Hash() == version
	if !sameVersion {
		d.registry.Register(registry.Instance{Service: name, Version: version, Node: d.cfg.Node, Status: registry.Starting})
	}
	var s *service
	var subs []*bus.Subscription // subscriptions this load started
	defer func() {
		if err != nil {
			if !sameVersion {
				d.registry.Deregister(name, version, d.cfg.Node)
			}
			if s == nil {
				return
			}
			for _, sub := range subs {
				sub.Stop()
			}
			s.subs = nil // the others belong to the serving version
			if !sameVersion && s.version != version {
				d.registry.Deregister(name, s.version, d.cfg.Node)
			}
			if cerr := s.close(context.WithoutCancel(ctx)); cerr != nil {
				log.Warn("closing refused module", slog.Any("error", cerr))
			}
		}
	}()
	if p == nil {
		p = d.prepare(ctx, path, wasm, sum)
	}
	if p.err != nil {
		return p.err
	}
	s = p.s
	began, tKV, tModule := p.began, p.tKV, p.tModule
	var tSubs time.Duration
	if s.decl, err = abi.ParseDeclaration(s.mod.Declaration()); err != nil {
		return fmt.Errorf("%s: meshd_describe: %w", base, err)
	}
	if err = checkDeclaration(s); err != nil {
		return fmt.Errorf("%s: %w", base, err)
	}
	if s.decl.Version != "" {
		if !sameVersion { // re-key the STARTING entry under the full version
			d.registry.Deregister(name, s.version, d.cfg.Node)
		}
		s.version += "+" + s.decl.Version
		if !sameVersion {
			d.registry.Register(registry.Instance{Service: name, Version: s.version, Node: d.cfg.Node, Status: registry.Starting})
		}
	}

	// Subscriptions: the serving version's carry on for the types the new
	// one declares too (their handler looks the service up at delivery);
	// types only the new version declares are subscribed now, before the
	// swap; types it drops are stopped after it, their durable consumers
	// kept so events wait for a future version.
	kept := make(map[string]*bus.Subscription)
	if cur != nil { // cur.subs[i] delivers cur.decl.Subscriptions[i]
		for i, sub := range cur.subs {
			kept[cur.decl.Subscriptions[i].Type] = sub
		}
	}
	s.subs = make([]*bus.Subscription, len(s.decl.Subscriptions))
	var fresh []int // indexes of the types to subscribe now
	for i, sub := range s.decl.Subscriptions {
		if bs, ok := kept[sub.Type]; ok {
			s.subs[i] = bs
			delete(kept, sub.Type)
			continue
		}
		fresh = append(fresh, i)
	}
	// At once: each is a JetStream request or two (the durable consumer).
	serrs := make([]error, len(s.decl.Subscriptions))
	var wg sync.WaitGroup
	for _, i := range fresh {
		wg.Go(func() {
			s.subs[i], serrs[i] = d.bus.Subscribe(ctx, name, s.decl.Subscriptions[i].Type, d.dispatch.Handler(s),
				bus.WithMaxDeliver(s.events.MaxAttempts), bus.Deferred()) // started after the swap
		})
	}
	wg.Wait()
	for _, i := range fresh {
		if s.subs[i] != nil {
			subs = append(subs, s.subs[i])
		}
	}
	for _, i := range fresh {
		if serrs[i] != nil {
			return fmt.Errorf("%s: subscribe %s: %w", base, s.decl.Subscriptions[i].Type, serrs[i])
		}
	}

	tSubs = time.Since(began) - tKV - tModule
	d.mu.Lock()
	if d.services[name] != cur {
		d.mu.Unlock()
		return fmt.Errorf("%s: service %s changed while loading; try again", base, name)
	}
	routes := d.routesLocked(s)
	if err = d.gateway.SetRoutes(routes); err != nil {
		d.mu.Unlock()
		return fmt.Errorf("%s: %w", base, err)
	}
	d.services[name] = s
	d.mu.Unlock()

	d.registry.Register(registry.Instance{Service: name, Version: s.version, Node: d.cfg.Node, Status: registry.Up})
	d.startSubscriptions(s) // readiness.go: DOWN if they cannot start
	if cur == nil {
		log.Info("service up", slog.String("file", base), slog.String("version", s.version),
			slog.Int("routes", len(s.decl.Routes)), slog.Int("subscriptions", len(s.decl.Subscriptions)),
			slog.Duration("took", time.Since(began)), slog.Duration("kv", tKV),
			slog.Duration("module", tModule), slog.Duration("subscribe", tSubs))
	} else {
		log.Info("service replaced", slog.String("file", base), slog.String("version", s.version),
			slog.String("replaced", cur.version),
			slog.Int("routes", len(s.decl.Routes)), slog.Int("subscriptions", len(s.decl.Subscriptions)))
		cur.subs = nil
		for _, sub := range kept {
			sub.Stop()
		}
		d.retire(ctx, cur, s.version)
	}
	// Entries of versions removed earlier (OUT_OF_SERVICE) go once a new one is up.
	for _, in := range d.registry.Lookup(name) {
		if in.Node == d.cfg.Node && in.Version != s.version {
			d.registry.Deregister(name, in.Version, d.cfg.Node)
		}
	}
	return nil
}

// routesLocked is every loaded service's routes, plus extra's.
func (d *Daemon) routesLocked(extra *service) []gateway.Route {
	var routes []gateway.Route
	add := func(s *service) {
		for _, r := range s.decl.Routes {
			routes = append(routes, gateway.Route{Service: s.name, Method: r.Method, Path: r.Path})
		}
	}
	for _, s := range d.services {
		if extra != nil && s.name == extra.name {
			continue // the version extra replaces
		}
		add(s)
	}
	if extra != nil {
		add(extra)
	}
	return routes
}

// checkDeclaration matches what the module declares against its exports
// and its grants.
func checkDeclaration(s *service) error {
	var errs []error
	if s.decl.Name != "" && s.decl.Name != s.name {
		errs = append(errs, fmt.Errorf("module declares name %q but its file names service %q", s.decl.Name, s.name))
	}
	if len(s.decl.Routes) > 0 && !s.mod.Has(runtime.EntryHTTP) {
		errs = append(errs, fmt.Errorf("module declares routes but does not export %s", abi.ExportHTTP))
	}
	if len(s.decl.Subscriptions) > 0 && !s.mod.Has(runtime.EntryEvent) {
		errs = append(errs, fmt.Errorf("module declares subscriptions but does not export %s", abi.ExportEvent))
	}
	if err := s.env.Grants.CheckDeclaration(&s.decl); err != nil {
		errs = append(errs, err)
	}
	if err := checkCatchAll(s); err != nil { // grants.go
		errs = append(errs, err)
	}
	subscribed := func(typ string) bool {
		return slices.ContainsFunc(s.decl.Subscriptions, func(sub abi.Subscription) bool { return sub.Type == typ })
	}
	for _, typ := range s.events.ReadModelTypes {
		if !subscribed(typ) {
			errs = append(errs, fmt.Errorf("events.read_model_types lists %s, which the module does not subscribe to", typ))
		}
	}
	for _, typ := range slices.Sorted(maps.Keys(s.events.SerialKeys)) {
		if !subscribed(typ) {
			errs = append(errs, fmt.Errorf("events.serial_keys lists %s, which the module does not subscribe to", typ))
		}
	}
	return errors.Join(errs...)
}

// lookup returns the serving version of a service, or nil.
func (d *Daemon) lookup(name string) *service {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.services[name]
}

// lookupDispatch is lookup for the dispatcher (nil, not a nil *service,
// when there is none).
func (d *Daemon) lookupDispatch(name string) dispatch.Service {
	if s := d.lookup(name); s != nil {
		return s
	}
	return nil
}

// Name, Invoke, Logger, Events, Store, Subscriptions and ObserveKV make
// a service a dispatch.Service.
func (s *service) Name() string { return s.name }
func (s *service) Invoke(ctx context.Context, entry runtime.Entry, call *runtime.Call) error {
	return s.mod.Invoke(ctx, entry, call)
}
func (s *service) Logger() *slog.Logger   { return s.log }
func (s *service) Events() *config.Events { return &s.events }
func (s *service) Store() *kv.Store       { return s.store }
func (s *service) Subscriptions() []string {
	types := make([]string, len(s.decl.Subscriptions))
	for i, sub := range s.decl.Subscriptions {
		types[i] = sub.Type
	}
	return types
}

// ObserveKV reports a write the daemon applied to s's store.
func (s *service) ObserveKV(op string, err error) {
	if s.env != nil && s.env.Observe != nil {
		s.env.Observe(op, err)
	}
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

// kvAdapter maps the kv package's not-found error onto the binding's.
type kvAdapter struct{ s *kv.Store }

func (a kvAdapter) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := a.s.Get(ctx, key)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, host.ErrNotFound
	}
	return v, err
}
