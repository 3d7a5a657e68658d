package daemon

import (
	"context"
	"log/slog"

	"github.com/meshd/meshd/daemon/readiness"
	"github.com/meshd/meshd/daemon/service"
	"github.com/meshd/meshd/host/registry"
)

// readySource is what /readyz and meshd_service_up read: the modules of the
// plugin directory, the versions this node serves with their registry
// status, and why loads and subscriptions failed.
func (d *Daemon) readySource() readiness.Source {
	return readiness.Source{
		PluginDir: d.cfg.PluginDir,
		Serving: func(name string) (string, registry.Status, bool) {
			s := d.lookup(name)
			if s == nil {
				return "", "", false
			}
			return s.Version(), d.statusOf(s), true
		},
		Status:             func(name string) (registry.Status, bool) { return d.registry.Status(name) },
		LoadErrors:         d.LoadErrors,
		SubscriptionErrors: d.subscriptionErrors,
	}
}

// servicesReady is the services part of /readyz (readiness.Source.Ready).
func (d *Daemon) servicesReady() error { return d.readySource().Ready() }

// degraded is the Degraded source of /readyz (readiness.Source.Degraded).
func (d *Daemon) degraded(ctx context.Context) []string { return d.readySource().Degraded(ctx) }

// startSubscriptions starts delivery on s's subscriptions once s serves.
// They were made deferred (bus.Deferred) before the swap,
// so that a failure to open a durable consumer refuses the load while the
// previous version serves; delivery waits for the swap, so no event is
// handed to a service that is not serving yet, which would cost it a
// delivery attempt. Those handed over by the previous version are running
// already (Start does nothing to them). A failure to start leaves s
// serving its routes but DOWN in the registry, named by /readyz and
// /v1/services, until its next load.
func (d *Daemon) startSubscriptions(s *service.Service) {
	err := s.StartSubscriptions()
	d.setSubscriptionError(s.Name(), err)
	if err != nil {
		_ = d.registry.SetStatus(s.Name(), s.Version(), d.cfg.Node, registry.Down)
		s.Logger().Error("service DOWN: its events are not delivered", slog.String("version", s.Version()), slog.Any("error", err))
	}
}

// subscriptionErrors returns, per service, why its serving version's
// subscriptions could not start (see startSubscriptions). A copy.
func (d *Daemon) subscriptionErrors() map[string]string {
	d.obs.mu.Lock()
	defer d.obs.mu.Unlock()
	out := make(map[string]string, len(d.obs.subErrs))
	for k, v := range d.obs.subErrs {
		out[k] = v
	}
	return out
}

func (d *Daemon) setSubscriptionError(name string, err error) {
	d.obs.mu.Lock()
	defer d.obs.mu.Unlock()
	if err == nil {
		delete(d.obs.subErrs, name)
		return
	}
	d.obs.subErrs[name] = err.Error()
}
