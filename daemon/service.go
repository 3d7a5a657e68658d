package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/meshd/meshd/abi"
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

var serviceName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// LoadFile loads one module file and its grants, validates it and starts
// serving it. On any failure nothing of it is left running and the error
// says why.
func (d *Daemon) LoadFile(ctx context.Context, path string) (err error) {
	base := filepath.Base(path)
	name := strings.TrimSuffix(base, ".wasm")
	if !serviceName.MatchString(name) {
		return fmt.Errorf("%s: service name %q (from the file name) must match %s", base, name, serviceName)
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	sf, hasFile, err := ReadServiceFile(filepath.Join(filepath.Dir(path), name+".toml"))
	if err != nil {
		return err
	}
	log := d.log.With(slog.String("service", name))
	if !hasFile {
		log.Warn("no grants file; the service may serve routes but not publish, subscribe, keep state or discover",
			slog.String("expected", name+".toml"))
	}
	sum := sha256.Sum256(wasm)
	s := &service{name: name, file: base, version: hex.EncodeToString(sum[:6]), log: log}
	s.env = &host.Env{Service: name, Grants: sf.HostGrants(), Log: log, Discover: d.discover}
	if s.env.Grants.KV {
		if s.store, err = kv.Open(ctx, d.nats.JetStream(), name); err != nil {
			return fmt.Errorf("%s: key-value store: %w", base, err)
		}
		s.env.KV = kvAdapter{s.store}
	}

	mc := sf.ModuleConfig(d.cfg.Module)
	mc.Name = name
	mc.Logger = log
	mc.Stderr = &logWriter{log: log}
	mc.Stdout = mc.Stderr
	d.registry.Register(registry.Instance{Service: name, Version: s.version, Node: d.cfg.Node, Status: registry.Starting})
	defer func() {
		if err != nil {
			d.registry.Deregister(name, s.version, d.cfg.Node)
			if cerr := s.close(context.WithoutCancel(ctx)); cerr != nil {
				log.Warn("closing refused module", slog.Any("error", cerr))
			}
		}
	}()
	if s.mod, err = d.engine.Load(ctx, wasm, host.Module(s.env), mc); err != nil {
		return fmt.Errorf("%s: %w", base, err)
	}
	if err = json.Unmarshal(s.mod.Declaration(), &s.decl); err != nil {
		return fmt.Errorf("%s: meshd_describe did not return a JSON declaration: %w", base, err)
	}
	if err = d.checkDeclaration(s); err != nil {
		return fmt.Errorf("%s: %w", base, err)
	}
	if s.decl.Version != "" {
		s.version += "+" + s.decl.Version
	}

	d.mu.Lock()
	if old, ok := d.services[name]; ok {
		d.mu.Unlock()
		return fmt.Errorf("%s: service %s is already loaded (version %s); hot replacement is not built yet", base, name, old.version)
	}
	routes := d.routesLocked(s)
	if err = d.gateway.SetRoutes(routes); err != nil {
		d.mu.Unlock()
		return fmt.Errorf("%s: %w", base, err)
	}
	d.services[name] = s
	d.mu.Unlock()

	for _, sub := range s.decl.Subscriptions {
		bs, serr := d.bus.Subscribe(ctx, name, sub.Type, d.eventHandler(s))
		if serr != nil {
			d.unload(name)
			return fmt.Errorf("%s: subscribe %s: %w", base, sub.Type, serr)
		}
		s.subs = append(s.subs, bs)
	}
	d.registry.Register(registry.Instance{Service: name, Version: s.version, Node: d.cfg.Node, Status: registry.Up})
	log.Info("service up", slog.String("file", base), slog.String("version", s.version),
		slog.Int("routes", len(s.decl.Routes)), slog.Int("subscriptions", len(s.decl.Subscriptions)))
	return nil
}

// unload removes a service that failed after it was routed.
func (d *Daemon) unload(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.services, name)
	if err := d.gateway.SetRoutes(d.routesLocked(nil)); err != nil {
		d.log.Error("rebuilding routes", slog.Any("error", err))
	}
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
		add(s)
	}
	if extra != nil {
		add(extra)
	}
	return routes
}

// checkDeclaration matches what the module declares against its exports
// and its grants.
func (d *Daemon) checkDeclaration(s *service) error {
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
	for _, r := range s.decl.Routes {
		if r.Method == "" || !strings.HasPrefix(r.Path, "/") {
			errs = append(errs, fmt.Errorf("route %q %q: need a method and a path starting with /", r.Method, r.Path))
		}
	}
	for _, sub := range s.decl.Subscriptions {
		if err := host.ValidEventType(sub.Type); err != nil {
			errs = append(errs, fmt.Errorf("subscription %q: %w", sub.Type, err))
		}
	}
	if err := s.env.Grants.CheckDeclaration(&s.decl); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// lookup returns the serving version of a service, or nil.
func (d *Daemon) lookup(name string) *service {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.services[name]
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

// logWriter turns a guest's stdout and stderr into log lines.
type logWriter struct{ log *slog.Logger }

func (w *logWriter) Write(p []byte) (int, error) {
	if msg := strings.TrimRight(string(p), "\n"); msg != "" {
		w.log.Info(msg, slog.String("source", "guest-stdio"))
	}
	return len(p), nil
}
