package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/config"
	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/gateway"
	"github.com/meshd/meshd/host/kv"
	"github.com/meshd/meshd/runtime"
)

// Service is one loaded service version with what it was granted.
type Service struct {
	name    string
	file    string
	version string // module hash, plus the declared version if any
	mod     *runtime.Module
	decl    abi.Declaration
	env     *host.Env
	store   *kv.Store
	subs    []*bus.Subscription // subs[i] delivers decl.Subscriptions[i]
	log     *slog.Logger
	sf      config.Service // the service file it was loaded with
	// settle retries the making of a durable consumer (WithSettle); nil:
	// one try.
	settle func(ctx context.Context, what string, f func(context.Context) error) error
}

// Name is the service's name (its module file's, without .wasm).
func (s *Service) Name() string { return s.name }

// File is the module file's base name.
func (s *Service) File() string { return s.file }

// Version is the module hash, plus the declared version if any.
func (s *Service) Version() string { return s.version }

// Module is the compiled module and its instance pool.
func (s *Service) Module() *runtime.Module { return s.mod }

// Declaration is what the module declares (after Describe).
func (s *Service) Declaration() *abi.Declaration { return &s.decl }

// Grants are the grants of the version's service file.
func (s *Service) Grants() host.Grants { return s.env.Grants }

// ServiceFile is the service file the version was loaded with.
func (s *Service) ServiceFile() *config.Service { return &s.sf }

// Logger is the service's logger.
func (s *Service) Logger() *slog.Logger { return s.log }

// Events is the [events] table of the service file.
func (s *Service) Events() *config.Events { return &s.sf.Events }

// Store is the service's key-value store, nil when it has none.
func (s *Service) Store() *kv.Store { return s.store }

// Subscriptions are the event types the version subscribes to.
func (s *Service) Subscriptions() []string {
	types := make([]string, len(s.decl.Subscriptions))
	for i, sub := range s.decl.Subscriptions {
		types[i] = sub.Type
	}
	return types
}

// Invoke runs entry on one of the version's instances.
func (s *Service) Invoke(ctx context.Context, entry runtime.Entry, call *runtime.Call) error {
	return s.mod.Invoke(ctx, entry, call)
}

// ObserveKV reports a write applied to the service's store.
func (s *Service) ObserveKV(op string, err error) {
	if s.env != nil && s.env.Observe != nil {
		s.env.Observe(op, err)
	}
}

// Routes is the gateway routes the version declares.
func (s *Service) Routes() []gateway.Route {
	routes := make([]gateway.Route, len(s.decl.Routes))
	for i, r := range s.decl.Routes {
		routes[i] = gateway.Route{Service: s.name, Method: r.Method, Path: r.Path, Internal: r.Internal}
	}
	return routes
}

// Close stops the version's subscriptions and closes its module, once its
// in-flight calls are done (or ctx ends).
func (s *Service) Close(ctx context.Context) error {
	var errs []error
	for _, sub := range s.subs {
		sub.Stop()
	}
	if s.mod != nil {
		errs = append(errs, s.mod.Close(ctx))
	}
	return errors.Join(errs...)
}

// Describe reads the module's declaration and checks it against the
// module's exports, its grants and its [events] settings; a declared
// version is appended to the version.
func (s *Service) Describe() error {
	var err error
	if s.decl, err = abi.ParseDeclaration(s.mod.Declaration()); err != nil {
		return fmt.Errorf("%s: meshd_describe: %w", s.file, err)
	}
	if err = s.check(); err != nil {
		return fmt.Errorf("%s: %w", s.file, err)
	}
	if s.decl.Version != "" {
		s.version += "+" + s.decl.Version
	}
	return nil
}

// check matches what the module declares against its exports and its
// grants.
func (s *Service) check() error {
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
	if err := s.checkCatchAll(); err != nil {
		errs = append(errs, err)
	}
	subscribed := func(typ string) bool {
		return slices.ContainsFunc(s.decl.Subscriptions, func(sub abi.Subscription) bool { return sub.Type == typ })
	}
	events := s.Events()
	for _, typ := range events.ReadModelTypes {
		if !subscribed(typ) {
			errs = append(errs, fmt.Errorf("events.read_model_types lists %s, which the module does not subscribe to", typ))
		}
	}
	for _, typ := range slices.Sorted(maps.Keys(events.SerialKeys)) {
		if !subscribed(typ) {
			errs = append(errs, fmt.Errorf("events.serial_keys lists %s, which the module does not subscribe to", typ))
		}
	}
	return errors.Join(errs...)
}

// checkCatchAll refuses the catch-all routes of s's declaration ("/",
// "/{rest...}": every path of their method that no more specific route
// takes) unless its service file grants catch_all. Such a route yields to
// every more specific route of another service, but it gets the requests of
// a service that is not loaded, removed or refused: the operator decides.
func (s *Service) checkCatchAll() error {
	if s.sf.Grants.CatchAll {
		return nil
	}
	var errs []error
	for _, gr := range s.Routes() {
		if gr.CatchAll() {
			errs = append(errs, fmt.Errorf("route %s matches every path (a catch-all) and needs catch_all = true under [grants] in %s.toml",
				abi.Excerpt(gr.Pattern()), s.name))
		}
	}
	return errors.Join(errs...)
}

// SnapshotNote says, for the load's log line, how the version's instances
// start: "restored" (from its snapshot, copy-on-write or copied), or
// "initialised: <why not>".
func (s *Service) SnapshotNote() string {
	info := s.mod.Snapshot()
	switch {
	case info.Taken && info.CopyOnWrite:
		return "restored, copy-on-write"
	case info.Taken:
		return "restored, copied"
	case info.Refused != "":
		return "initialised: " + info.Refused
	}
	return "initialised"
}

// settleOr runs f through settle (WithSettle), or once when settle is nil.
func settleOr(ctx context.Context, settle func(ctx context.Context, what string, f func(context.Context) error) error,
	what string, f func(context.Context) error) error {
	if settle == nil {
		return f(ctx)
	}
	return settle(ctx, what, f)
}
