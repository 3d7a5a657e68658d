// Package readiness says, of every module in the plugin directory, whether
// its service serves on this node and why not: the services part of
// /readyz, its degraded list, and the meshd_service_up gauge. It reads
// what the daemon knows (the version it serves and its registry status,
// the last load error, the subscriptions that could not start) through a
// Source, at every question: nothing is cached.
package readiness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/metrics"
	"github.com/meshd/meshd/host/registry"
)

// Bounds of what /readyz says about services: it is open to any caller
// that reaches the admin listener (no token), so it says which service
// and why in a bounded, escaped line each.
const (
	MaxServices = 20  // services named; the others are counted
	ReasonBytes = 300 // of one reason
	NameBytes   = 64  // of a service name (the file name's; a valid one is at most 63)
)

// Source is what readiness is computed from.
type Source struct {
	// PluginDir holds the modules (<service>.wasm) whose services should
	// serve.
	PluginDir string
	// Serving reports the version of service name this node serves and
	// its registry status; ok is false when it serves none.
	Serving func(name string) (version string, status registry.Status, ok bool)
	// Status is the registry status of a service this node does not serve
	// (STARTING while its first version loads); ok is false when the
	// registry knows none.
	Status func(name string) (status registry.Status, ok bool)
	// LoadErrors returns, per service, why its last load was refused.
	LoadErrors func() map[string]string
	// SubscriptionErrors returns, per service, why its serving version's
	// subscriptions could not start.
	SubscriptionErrors func() map[string]string
}

// Service is one module of the plugin directory as /readyz sees its
// service.
type Service struct {
	Name string
	// Up: its service serves (a version is swapped in and its registry
	// status is UP).
	Up bool
	// Reason is why it does not serve, or (Up) why it serves but not as
	// deployed: a newer module file was refused and the previous version
	// serves.
	Reason string
}

// Services says, of every module file in the plugin directory, whether its
// service serves and why not, by name.
func (src Source) Services() ([]Service, error) {
	entries, err := os.ReadDir(src.PluginDir)
	if err != nil {
		return nil, err
	}
	loadErrs := src.LoadErrors()
	subErrs := src.SubscriptionErrors()
	var out []Service
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".wasm") {
			continue
		}
		r := Service{Name: strings.TrimSuffix(strings.TrimSuffix(e.Name(), ".wasm"), ".toml")} // as the daemon names it
		version, st, serving := src.Serving(r.Name)
		switch {
		case !serving && loadErrs[r.Name] != "":
			r.Reason = "refused: " + loadErrs[r.Name]
		case !serving:
			if st, ok := src.Status(r.Name); ok && st == registry.Starting {
				r.Reason = "loading"
			} else {
				r.Reason = "not loaded yet"
			}
		default:
			r.Up = st == registry.Up
			switch {
			case !r.Up && subErrs[r.Name] != "":
				r.Reason = string(st) + ": " + subErrs[r.Name]
			case !r.Up:
				r.Reason = string(st)
			case loadErrs[r.Name] != "":
				r.Reason = "version " + version + " serves; the module file was refused: " + loadErrs[r.Name]
			}
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Ready is the services part of /readyz: an error naming every module of
// the plugin directory whose service does not serve, with why (at most
// MaxServices named, the others counted), nil when all serve.
func (src Source) Ready() error {
	rs, err := src.Services()
	if err != nil {
		return fmt.Errorf("plugin directory: %w", err)
	}
	var lines []string
	down := 0
	for _, r := range rs {
		if r.Up {
			continue
		}
		down++
		if len(lines) < MaxServices {
			lines = append(lines, "service "+Bounded(r.Name, NameBytes)+" does not serve: "+Bounded(r.Reason, ReasonBytes))
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

// Degraded is the Degraded source of /readyz: services that serve, but an
// older version than their module file (which was refused).
func (src Source) Degraded(context.Context) []string {
	rs, err := src.Services()
	if err != nil {
		return nil // Ready says why
	}
	var lines []string
	for _, r := range rs {
		if r.Up && r.Reason != "" && len(lines) < MaxServices {
			lines = append(lines, "service "+Bounded(r.Name, NameBytes)+": "+Bounded(r.Reason, ReasonBytes))
		}
	}
	return lines
}

// Bounded is s cut to at most n bytes (on a rune boundary, marked with
// "…") with what is not printable (control characters, invalid UTF-8)
// replaced by '?': one printable line.
func Bounded(s string, n int) string {
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

// serviceUpDesc is meshd_service_up, read from the plugin directory at
// scrape time.
var serviceUpDesc = prometheus.NewDesc(prometheus.BuildFQName(metrics.Namespace, "", "service_up"),
	"1 when the service of a module in the plugin directory serves (status UP), 0 when it does not (refused, DOWN, loading); /readyz says why.",
	[]string{"service"}, nil)

// Collector reports meshd_service_up of src's services: 1 when one serves,
// 0 when not. A module whose file name is no valid service name has no
// series (a label must be bounded; /readyz names it).
func Collector(src Source) prometheus.Collector { return collector{src} }

type collector struct{ src Source }

func (c collector) Describe(ch chan<- *prometheus.Desc) { ch <- serviceUpDesc }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	rs, err := c.src.Services()
	if err != nil {
		return
	}
	for _, r := range rs {
		if !abi.ValidServiceName(r.Name) {
			continue
		}
		v := 0.0
		if r.Up {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(serviceUpDesc, prometheus.GaugeValue, v, r.Name)
	}
}

// Interface guards.
var _ prometheus.Collector = collector{}
