package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/meshd/meshd/daemon/service"
	"github.com/meshd/meshd/host/admin"
	"github.com/meshd/meshd/host/registry"
)

// adminState is the admin listener and what /readyz reports on.
type adminState struct {
	server *admin.Server
	// loaded is set once the plugin directory was scanned at start.
	loaded atomic.Bool
}

// defaultAdminAddr is Config.AdminAddr's default. Binding it is best
// effort: when another process (typically a second meshd on the host)
// holds it, the daemon logs why and runs without an admin listener. An
// address the operator chose must bind, or Start fails. (A variable for
// tests.)
var defaultAdminAddr = "127.0.0.1:8081"

// adminConfig is the admin listener's configuration.
func (c *Config) adminConfig() admin.Config {
	return admin.Config{Addr: c.AdminAddr, Token: c.AdminToken, Public: c.AdminPublic, AllowedHosts: c.AdminAllowedHosts}
}

// adminEnabled reports whether Config.AdminAddr asks for a listener.
func (c *Config) adminEnabled() bool { return c.AdminAddr != "" && c.AdminAddr != "off" }

// startAdmin opens the admin listener (a no-op when disabled). It runs
// after the plugin directory was loaded.
func (d *Daemon) startAdmin(ctx context.Context) error {
	d.obs.admin.loaded.Store(true)
	if !d.cfg.adminEnabled() {
		return nil
	}
	srv, err := admin.New(d.cfg.adminConfig(),
		admin.Source{Registry: d.obs.metrics.Registry(), Ready: d.ready, Degraded: d.degraded, Services: d.servicesView},
		d.log.With(slog.String("component", "admin")))
	if err != nil {
		return err
	}
	srv.Handle("/v1/events/", d.EventsHandler(srv.Jobs()))
	srv.Handle("GET /v1/config", d.configHandler()) // daemon/configfile.go
	srv.Handle("POST /v1/services/{name}/drain", service.DrainHandler(d.registry, true))
	srv.Handle("POST /v1/services/{name}/undrain", service.DrainHandler(d.registry, false))
	if err := srv.Start(ctx); err != nil {
		if d.cfg.AdminAddr == defaultAdminAddr && errors.Is(err, syscall.EADDRINUSE) {
			d.log.Error("admin listener not started: its default address is in use; metrics, health and /v1/services are unavailable (choose one with --admin ADDR, or --admin off)",
				slog.String("admin", d.cfg.AdminAddr), slog.Any("error", err))
			return nil
		}
		return err
	}
	d.obs.admin.server = srv
	d.log.Info("admin listening", slog.String("admin", srv.Addr()), slog.Bool("token", d.cfg.AdminToken != ""))
	return nil
}

// closeAdmin stops the admin listener.
func (d *Daemon) closeAdmin(ctx context.Context) error {
	if d.obs.admin.server == nil {
		return nil
	}
	return d.obs.admin.server.Close(ctx)
}

// AdminAddr is the admin listener's address (useful with port 0), empty
// when it is off or not started.
func (d *Daemon) AdminAddr() string {
	if d.obs.admin.server == nil {
		return ""
	}
	return d.obs.admin.server.Addr()
}

// ready is /readyz: the plugin directory was loaded, NATS is connected,
// the daemon is not shutting down, and the service of every module in the
// plugin directory serves (a version swapped in, registry status UP): a
// module refused with no previous version serving, a service whose
// subscriptions could not start (DOWN), or one still loading, fails it,
// named with why (readiness.go). A service whose newer module file was
// refused while its previous version serves does not fail it: it serves
// what it served, and a rollout that waits for readiness would otherwise
// take every node out on one bad file. /readyz names it as degraded
// instead, and /v1/services shows the refusal.
func (d *Daemon) ready(context.Context) error {
	var errs []error
	if d.closed.Load() {
		errs = append(errs, errors.New("shutting down"))
	}
	if !d.obs.admin.loaded.Load() {
		errs = append(errs, errors.New("plugins not loaded yet"))
	}
	switch {
	case d.nats == nil || d.nats.Conn() == nil:
		errs = append(errs, errors.New("NATS not started"))
	case d.nats.Conn().Status() != nats.CONNECTED:
		errs = append(errs, fmt.Errorf("NATS connection is %s", d.nats.Conn().Status()))
	}
	if d.bus == nil {
		errs = append(errs, errors.New("event bus not started"))
	}
	if d.obs.admin.loaded.Load() {
		if err := d.servicesReady(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// servicesView is /v1/services: every serving service, and every service
// whose last load failed (with the version still serving, if any).
func (d *Daemon) servicesView() []admin.Service {
	loadErrs := d.LoadErrors()
	subErrs := d.subscriptionErrors()
	svcs := d.locals() // the registry's record of what this node serves

	d.obs.mu.Lock()
	loadedAt := maps.Clone(d.obs.loadedAt)
	d.obs.mu.Unlock()

	out := make([]admin.Service, 0, len(svcs)+len(loadErrs))
	seen := make(map[string]bool, len(svcs))
	for _, s := range svcs {
		seen[s.Name()] = true
		st := s.Module().Stats()
		g, decl := s.Grants(), s.Declaration()
		v := admin.Service{
			Name:          s.Name(),
			Version:       s.Version(),
			File:          s.File(),
			Status:        string(d.statusOf(s)),
			Instances:     admin.Instances{Idle: st.Idle, Busy: max(st.Live-st.Idle, 0), Asleep: st.Asleep},
			Routes:        []string{},
			Subscriptions: []string{},
			Publishes:     append([]string{}, decl.Publishes...),
			Grants: admin.Grants{
				Publish:   nonNil(g.Publish),
				Subscribe: nonNil(g.Subscribe),
				KV:        g.KV,
				Discover:  nonNil(g.Discover),
			},
			LastError: loadErrs[s.Name()],
			Breakers:  d.calls.Breakers(s.Name()),
		}
		v.LoadedAt = loadedAt[s.Name()]
		if why := subErrs[s.Name()]; why != "" { // the serving version is DOWN
			v.LastError = errors.Join(errors.New(why), errorOrNil(v.LastError)).Error()
		}
		for _, r := range decl.Routes {
			v.Routes = append(v.Routes, r.Method+" "+r.Path)
		}
		for _, sub := range decl.Subscriptions {
			v.Subscriptions = append(v.Subscriptions, sub.Type)
		}
		out = append(out, v)
	}
	for name, why := range loadErrs {
		if seen[name] {
			continue
		}
		out = append(out, admin.Service{Name: name, Status: "FAILED", LastError: why,
			Routes: []string{}, Subscriptions: []string{}, Publishes: []string{},
			Grants: admin.Grants{Publish: []string{}, Subscribe: []string{}, Discover: []string{}}})
	}
	if d.cluster != nil {
		for i := range out {
			out[i].Node = d.cfg.Node
		}
		out = append(out, d.cluster.Services()...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// statusOf is the registry status of s's version on this node.
func (d *Daemon) statusOf(s *service.Service) registry.Status {
	for _, in := range d.registry.Lookup(s.Name()) {
		if in.Version == s.Version() && in.Node == d.cfg.Node {
			return in.Status
		}
	}
	if st, ok := d.registry.Status(s.Name()); ok {
		return st
	}
	return registry.Status("UNKNOWN")
}

// errorOrNil is why as an error, nil when empty.
func errorOrNil(why string) error {
	if why == "" {
		return nil
	}
	return errors.New(why)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

// validateAdmin reports problems of the admin fields.
func (c *Config) validateAdmin() error {
	if !c.adminEnabled() {
		return nil
	}
	ac := c.adminConfig()
	if err := ac.Validate(); err != nil {
		return fmt.Errorf("admin: %s", strings.TrimPrefix(err.Error(), "admin: "))
	}
	return nil
}
