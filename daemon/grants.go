package daemon

import (
	"errors"
	"fmt"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/gateway"
)

// checkCatchAll refuses the catch-all routes of s's declaration ("/",
// "/{rest...}": every path of their method that no more specific route
// takes) unless its service file grants catch_all. Such a route yields to
// every more specific route of another service, but it gets the requests of
// a service that is not loaded, removed or refused: the operator decides.
func checkCatchAll(s *service) error {
	if s.sf.Grants.CatchAll {
		return nil
	}
	var errs []error
	for _, r := range s.decl.Routes {
		gr := gateway.Route{Service: s.name, Method: r.Method, Path: r.Path}
		if gr.CatchAll() {
			errs = append(errs, fmt.Errorf("route %s matches every path (a catch-all) and needs catch_all = true under [grants] in %s.toml",
				abi.Excerpt(gr.Pattern()), s.name))
		}
	}
	return errors.Join(errs...)
}
