package service

import (
	"fmt"
	"slices"
	"strings"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/gateway"
)

// maxConflictsNamed is how many route conflicts a refusal names before it
// says how many more there are.
const maxConflictsNamed = 4

// Claim is the routes a service would serve, for deciding conflicts.
type Claim struct {
	Name, File string
	Incumbent  bool // serving already; not a module of this start
	Routes     []gateway.Route
}

// Conflicts decides the route conflicts between services all at once
// (gateway.Conflicts: a route of one that overlaps a route of another).
// Among newcomers no one wins: each party is refused with a reason naming
// the other, so that file name order does not decide who gets the routes.
// A newcomer that conflicts with an incumbent is refused, and the
// incumbent keeps serving. It returns the refusals by file of the refused
// newcomers.
func Conflicts(claims []Claim) map[string]error {
	var routes []gateway.Route
	by := make(map[string]*Claim, len(claims))
	for i := range claims {
		c := &claims[i]
		by[c.Name] = c
		for _, r := range c.Routes {
			if !r.Internal { // takes no HTTP request: conflicts with no other service
				routes = append(routes, r)
			}
		}
	}
	found := make(map[string][]string) // refused file → why
	for _, cf := range gateway.Conflicts(routes) {
		a, b := by[cf.Route.Service], by[cf.Other.Service]
		if a == nil || b == nil || (a.Incumbent && b.Incumbent) {
			continue
		}
		for _, side := range [2]struct {
			self, other *Claim
		}{{a, b}, {b, a}} {
			if side.self.Incumbent {
				continue
			}
			why := cf.Error()
			if side.other.Incumbent {
				why += fmt.Sprintf("; service %s serves it already and keeps it", abi.Excerpt(side.other.Name))
			} else {
				why += fmt.Sprintf("; %s is refused too: at start neither service gets a route the other's overlaps (file names do not decide), remove or fix one of them and reload", abi.Excerpt(side.other.File))
			}
			found[side.self.File] = append(found[side.self.File], why)
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

// Claim is the claim of a prepared service, or false when the service is
// refused for its own reasons anyway (Describe and the gateway say which).
func (s *Service) Claim() (Claim, bool) {
	decl, err := abi.ParseDeclaration(s.mod.Declaration())
	if err != nil {
		return Claim{}, false
	}
	probe := *s // check reads; the prepared service stays as it is
	probe.decl = decl
	if probe.check() != nil {
		return Claim{}, false
	}
	routes := probe.Routes()
	if gateway.New(gateway.Config{}, nil, nil).SetRoutes(routes) != nil {
		return Claim{}, false
	}
	return Claim{Name: s.name, File: s.file, Routes: routes}, true
}

// Incumbent is the claim of a serving version.
func (s *Service) Incumbent() Claim {
	return Claim{Name: s.name, File: s.file, Incumbent: true, Routes: s.Routes()}
}
