package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/daemon/service"
	"github.com/meshd/meshd/host/metrics"
	"github.com/meshd/meshd/host/registry"
)

// Bounds of what /readyz says about services: it is open to any caller
// that reaches the admin listener (no token), so it says which service
// and why in a bounded, escaped line each.
const (
	readyMaxServices = 20  // services named; the others are counted
	readyReasonBytes = 300 // of one reason
	readyNameBytes   = 64  // of a service name (the file name's; a valid one is at most 63)
)

// serviceReadiness is one module of the plugin directory as /readyz sees
// its service.
type serviceReadiness struct {
	name string
	// up: its service serves (a version is swapped in and its registry
	// status is UP).
	up bool
	// why it does not serve, or (up) why it serves but not as deployed: a
	// newer module file was refused and the previous version serves.
	reason string
}

// pluginReadiness says, of every module file in the plugin directory
// (the files loadDir loads), whether its service serves and why not.
func (d *Daemon) pluginReadiness() ([]serviceReadiness, error) {
	entries, err := os.ReadDir(d.cfg.PluginDir)
	if err != nil {
		return nil, err
	}
	loadErrs := d.LoadErrors()
	subErrs := d.subscriptionErrors()
	var out []serviceReadiness
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".wasm") {
			continue
		}
		r := serviceReadiness{name: serviceOf(e.Name())}
		s := d.lookup(r.name)
		switch {
		case s == nil && loadErrs[r.name] != "":
			r.reason = "refused: " + loadErrs[r.name]
		case s == nil:
			if st, ok := d.registry.Status(r.name); ok && st == registry.Starting {
				r.reason = "loading"
			} else {
				r.reason = "not loaded yet"
			}
		default:
			st := d.statusOf(s)
			r.up = st == registry.Up
			switch {
			case !r.up && subErrs[r.name] != "":
				r.reason = string(st) + ": " + subErrs[r.name]
			case !r.up:
				r.reason = string(st)
			case loadErrs[r.name] != "":
				r.reason = "version " + s.Version() + " serves; the module file was refused: " + loadErrs[r.name]
			}
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// servicesReady is the services part of /readyz: an error naming every
// module of the plugin directory whose service does not serve, with why.
func (d *Daemon) servicesReady() error {
	rs, err := d.pluginReadiness()
	if err != nil {
		return fmt.Errorf("plugin directory: %w", err)
	}
	var lines []string
	down := 0
	for _, r := range rs {
		if r.up {
			continue
		}
		down++
		if len(lines) < readyMaxServices {
			lines = append(lines, "service "+bounded(r.name, readyNameBytes)+" does not serve: "+bounded(r.reason, readyReasonBytes))
		}
	}
	if down > len(lines) {
		lines = append(lines, fmt.Sprintf("and %d more services that do not serve", down-len(lines)))
	}
	if len(lines) == 0 {
		return nil
	}
	return errors.New(strings.Join(lines, "\n"))
}

// degraded is the Degraded source of /readyz: services that serve, but an
// older version than their module file (which was refused).
func (d *Daemon) degraded(context.Context) []string {
	rs, err := d.pluginReadiness()
	if err != nil {
		return nil // ready says why
	}
	var lines []string
	for _, r := range rs {
		if r.up && r.reason != "" && len(lines) < readyMaxServices {
			lines = append(lines, "service "+bounded(r.name, readyNameBytes)+": "+bounded(r.reason, readyReasonBytes))
		}
	}
	return lines
}

// bounded is s cut to at most n bytes (on a rune boundary) and escaped
// into one printable line.
func bounded(s string, n int) string {
	cut := len(s) > n
	if cut {
		i := n
		for i > 0 && !utf8.RuneStart(s[i]) {
			i--
		}
		s = s[:i]
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) || r == utf8.RuneError {
			return '?'
		}
		return r
	}, s)
	if cut {
		s += "…"
	}
	return s
}

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

// serviceUpDesc is meshd_service_up, read from the plugin directory at
// scrape time.
var serviceUpDesc = prometheus.NewDesc(prometheus.BuildFQName(metrics.Namespace, "", "service_up"),
	"1 when the service of a module in the plugin directory serves (status UP), 0 when it does not (refused, DOWN, loading); /readyz says why.",
	[]string{"service"}, nil)

// serviceUpCollector reports meshd_service_up.
type serviceUpCollector struct{ d *Daemon }

func (c serviceUpCollector) Describe(ch chan<- *prometheus.Desc) { ch <- serviceUpDesc }

func (c serviceUpCollector) Collect(ch chan<- prometheus.Metric) {
	rs, err := c.d.pluginReadiness()
	if err != nil {
		return
	}
	for _, r := range rs {
		if !abi.ValidServiceName(r.name) {
			continue // a label must be bounded; /readyz names it
		}
		v := 0.0
		if r.up {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(serviceUpDesc, prometheus.GaugeValue, v, r.name)
	}
}

// Interface guards.
var _ prometheus.Collector = serviceUpCollector{}
