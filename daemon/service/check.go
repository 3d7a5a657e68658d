package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/gateway"
	"github.com/meshd/meshd/runtime"
)

// CheckReport is what Check found out about a module.
type CheckReport struct {
	Service     string          // from the file name
	File        string          // the module file checked
	GrantsFile  string          // the grants file used; empty when none
	Version     string          // hash, plus the declared version if any
	Declaration abi.Declaration // what the module declares (zero if it never got that far)
	Exports     []string        // the ABI entry points it exports
	// Needs lists the grants the declaration requires, as TOML lines.
	Needs []string
}

// Check runs the validation the daemon runs before serving a module, without
// a daemon (defaults are the limits a service file overrides): the service name, the grants file (configPath, or <name>.toml
// beside the module when empty; none is fine), compile, ABI checks, warm-up
// with the module's init, describe, the declaration against the exports and
// grants, and the route table the declaration makes. It does not check route
// conflicts with other services (it knows none; see CheckConflicts). The
// report is filled as far as the checks got; err says why the module is
// refused.
func Check(ctx context.Context, wasmPath, configPath string, defaults runtime.ModuleConfig, log *slog.Logger) (*CheckReport, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base := filepath.Base(wasmPath)
	name := strings.TrimSuffix(base, ".wasm")
	rep := &CheckReport{Service: name, File: wasmPath}
	if !abi.ValidServiceName(name) {
		return rep, fmt.Errorf("%s: service name %q (from the file name) must match %s", base, name, abi.ServiceNamePattern)
	}
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		return rep, err
	}
	if configPath == "" {
		configPath = filepath.Join(filepath.Dir(wasmPath), name+".toml")
	} else if _, err := os.Stat(configPath); err != nil {
		return rep, err
	}
	sf, hasFile, err := ReadServiceFile(configPath)
	if err != nil {
		return rep, err
	}
	if hasFile {
		rep.GrantsFile = configPath
	}
	engine, err := runtime.NewEngine(runtime.EngineConfig{DebugInfo: true})
	if err != nil {
		return rep, err
	}
	defer engine.Close(context.WithoutCancel(ctx))
	b := NewBuilder(engine, WithModuleDefaults(defaults), WithLogger(log))
	s, err := b.Check(ctx, wasmPath, wasm, sf)
	if err != nil {
		return rep, err
	}
	defer s.Close(context.WithoutCancel(ctx))
	rep.Version = s.Module().Hash()
	for _, e := range []runtime.Entry{runtime.EntryDescribe, runtime.EntryHTTP, runtime.EntryEvent} {
		if s.Module().Has(e) {
			rep.Exports = append(rep.Exports, e.String())
		}
	}
	err = s.Describe() // the declaration against the exports and grants
	decl := s.Declaration()
	rep.Declaration = *decl
	if decl.Version != "" {
		rep.Version += "+" + decl.Version
	}
	rep.Needs = needs(decl)
	if err != nil {
		return rep, err
	}
	if err = gateway.New(gateway.Config{}, nil, nil).SetRoutes(s.Routes()); err != nil {
		return rep, fmt.Errorf("%s: %w", base, err)
	}
	return rep, nil
}

// CheckConflicts decides the route conflicts between the modules of
// reports (each as Check filled it; pass those it accepted) as the daemon
// does at start: a route of one service that overlaps a route of another
// refuses both services. It returns every refusal, one per module, or nil.
func CheckConflicts(reports []*CheckReport) error {
	claims := make([]Claim, 0, len(reports))
	for _, rep := range reports {
		c := Claim{Name: rep.Service, File: filepath.Base(rep.File)}
		for _, r := range rep.Declaration.Routes {
			c.Routes = append(c.Routes, gateway.Route{Service: rep.Service, Method: r.Method, Path: r.Path})
		}
		claims = append(claims, c)
	}
	refused := Conflicts(claims)
	var errs []error
	for _, c := range claims { // in the order of reports
		if err := refused[c.File]; err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// needs is the [grants] a declaration requires.
func needs(decl *abi.Declaration) []string {
	quote := func(list []string) string {
		q := make([]string, len(list))
		for i, s := range list {
			q[i] = fmt.Sprintf("%q", s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	var out []string
	if len(decl.Publishes) > 0 {
		out = append(out, "publish = "+quote(decl.Publishes))
	}
	if len(decl.Subscriptions) > 0 {
		types := make([]string, len(decl.Subscriptions))
		for i, s := range decl.Subscriptions {
			types[i] = s.Type
		}
		out = append(out, "subscribe = "+quote(types))
	}
	for _, r := range decl.Routes {
		if (gateway.Route{Method: r.Method, Path: r.Path}).CatchAll() {
			out = append(out, "catch_all = true")
			break
		}
	}
	return out
}
