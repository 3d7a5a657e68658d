package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/gateway"
)

// maxConflictsNamed is how many route conflicts a refusal names before it
// says how many more there are.
const maxConflictsNamed = 4

// claim is the routes a service would serve, for deciding conflicts.
type claim struct {
	name, file string
	incumbent  bool // serving already; not a module of this start
	routes     []gateway.Route
}

// routeConflicts decides the route conflicts between services all at once
// (gateway.Conflicts: a route of one that overlaps a route of another).
// Among newcomers no one wins: each party is refused with a reason naming
// the other, so that file name order does not decide who gets the routes.
// A newcomer that conflicts with an incumbent is refused, and the
// incumbent keeps serving. It returns the refusals by file of the refused
// newcomers.
func routeConflicts(claims []claim) map[string]error {
	var routes []gateway.Route
	by := make(map[string]*claim, len(claims))
	for i := range claims {
		c := &claims[i]
		by[c.name] = c
		routes = append(routes, c.routes...)
	}
	found := make(map[string][]string) // refused file → why
	for _, cf := range gateway.Conflicts(routes) {
		a, b := by[cf.Route.Service], by[cf.Other.Service]
		if a == nil || b == nil || (a.incumbent && b.incumbent) {
			continue
		}
		for _, side := range [2]struct {
			self, other *claim
		}{{a, b}, {b, a}} {
			if side.self.incumbent {
				continue
			}
			why := cf.Error()
			if side.other.incumbent {
				why += fmt.Sprintf("; service %s serves it already and keeps it", abi.Excerpt(side.other.name))
			} else {
				why += fmt.Sprintf("; %s is refused too: at start neither service gets a route the other's overlaps (file names do not decide), remove or fix one of them and reload", abi.Excerpt(side.other.file))
			}
			found[side.self.file] = append(found[side.self.file], why)
		}
	}
	out := make(map[string]error, len(found))
	for file, whys := range found {
		n := len(whys)
		whys = slices.Clip(whys[:min(n, maxConflictsNamed)])
		if n > maxConflictsNamed {
			whys = append(whys, fmt.Sprintf("and %d more route conflicts", n-maxConflictsNamed))
		}
		out[file] = fmt.Errorf("%s: %s", file, strings.Join(whys, "\n"))
	}
	return out
}

// refuseStartConflicts finds, among the modules prepareAll prepared for
// paths and the services serving already, the services whose routes
// conflict, and refuses the newcomers among them (routeConflicts): each is
// discarded, logged and recorded as a load error. A module refused anyway
// for its own reasons (it does not compile, its declaration or its routes
// are invalid, it lacks a grant) takes no part: its own refusal says why.
// It returns the paths refused, for loadDir to skip.
func (d *Daemon) refuseStartConflicts(ctx context.Context, paths []string) map[string]bool {
	d.reload.mu.Lock()
	defer d.reload.mu.Unlock()
	if d.closed.Load() {
		return nil
	}
	var claims []claim
	fileOf := make(map[string]string) // base name → path
	d.preparedMu.Lock()
	for _, path := range paths {
		p := d.prepared[path]
		if p == nil || p.err != nil || p.s == nil {
			continue
		}
		if c, ok := startClaim(p.s); ok {
			claims = append(claims, c)
			fileOf[c.file] = path
		}
	}
	d.preparedMu.Unlock()
	d.mu.Lock()
	for name, s := range d.services {
		if slices.ContainsFunc(claims, func(c claim) bool { return c.name == name }) {
			continue // the version prepared now replaces it
		}
		claims = append(claims, claim{name: name, file: s.file, incumbent: true, routes: routesOf(s)})
	}
	d.mu.Unlock()

	refused := make(map[string]bool)
	for file, err := range routeConflicts(claims) {
		path := fileOf[file]
		refused[path] = true
		d.preparedMu.Lock()
		p := d.prepared[path]
		delete(d.prepared, path)
		d.preparedMu.Unlock()
		if p != nil {
			p.discard()
		}
		d.recordLoad(path, err)
		d.observeLoad(path, err)
		d.log.LogAttrs(ctx, slog.LevelError, "module refused; the serving version (if any) keeps serving",
			slog.String("file", filepath.Base(path)), slog.String("reason", err.Error()))
	}
	return refused
}

// startClaim is the claim of a prepared service, or false when the service
// is refused for its own reasons anyway (loadModule says which).
func startClaim(s *service) (claim, bool) {
	decl, err := abi.ParseDeclaration(s.mod.Declaration())
	if err != nil {
		return claim{}, false
	}
	probe := *s // checkDeclaration reads; the prepared service stays as it is
	probe.decl = decl
	if checkDeclaration(&probe) != nil {
		return claim{}, false
	}
	routes := routesOf(&probe)
	if gateway.New(gateway.Config{}, nil, nil).SetRoutes(routes) != nil {
		return claim{}, false
	}
	return claim{name: s.name, file: s.file, routes: routes}, true
}

// routesOf is the gateway routes s declares.
func routesOf(s *service) []gateway.Route {
	routes := make([]gateway.Route, len(s.decl.Routes))
	for i, r := range s.decl.Routes {
		routes[i] = gateway.Route{Service: s.name, Method: r.Method, Path: r.Path}
	}
	return routes
}
