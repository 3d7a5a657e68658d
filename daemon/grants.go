package daemon

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/host/gateway"
	"github.com/meshd/meshd/runtime"
)

// ServiceFile is the operator's configuration for one service, read from
// <name>.toml beside <name>.wasm in the plugin directory. A service without
// one is granted nothing beyond logging: it may serve the routes it declares
// but not subscribe, publish, keep state or discover other services.
type ServiceFile struct {
	Grants struct {
		Publish   []string `toml:"publish"`
		Subscribe []string `toml:"subscribe"`
		KV        bool     `toml:"kv"`
		Discover  []string `toml:"discover"`
		// CatchAll lets the module declare catch-all routes ("/",
		// "/{rest...}"), which answer every path of their method that no
		// other route takes (checkCatchAll).
		CatchAll bool `toml:"catch_all"`
	} `toml:"grants"`
	Limits struct {
		MemoryPages    uint32   `toml:"memory_pages"`
		TableEntries   uint32   `toml:"table_entries"`
		CallTimeout    duration `toml:"call_timeout"`
		PoolMin        int      `toml:"pool_min"`
		PoolMax        int      `toml:"pool_max"`
		AcquireTimeout duration `toml:"acquire_timeout"`
		MaxCalls       int      `toml:"max_calls"`
		MaxInputBytes  int      `toml:"max_input_bytes"`
		MaxOutputBytes int      `toml:"max_output_bytes"`
	} `toml:"limits"`
	// Config is the service's own configuration, read by the guest with
	// config_get (ABI v1.1).
	Config map[string]string `toml:"config"`
	// Events tunes the service's subscriptions (see daemon/events.go).
	Events EventsConfig `toml:"events"`
}

type duration struct{ time.Duration }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	d.Duration = v
	return err
}

// ReadServiceFile parses path. A missing file is not an error: it yields the
// zero ServiceFile and ok false. Unknown keys and bad values are errors that
// name the file and the key.
func ReadServiceFile(path string) (sf ServiceFile, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return sf, false, nil
	}
	if err != nil {
		return sf, false, err
	}
	sf, err = parseServiceFile(path, b)
	return sf, true, err
}

// parseServiceFile parses the content b of the service file path.
func parseServiceFile(path string, b []byte) (sf ServiceFile, err error) {
	md, err := toml.Decode(string(b), &sf)
	if err != nil {
		return sf, fmt.Errorf("%s: %w", path, err)
	}
	var errs []error
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		errs = append(errs, fmt.Errorf("%s: unknown keys: %s", path, strings.Join(keys, ", ")))
	}
	l := &sf.Limits
	if l.PoolMin < 0 || l.PoolMax < 0 || l.MaxCalls < 0 || l.MaxInputBytes < 0 || l.MaxOutputBytes < 0 {
		errs = append(errs, fmt.Errorf("%s: limits: values must not be negative", path))
	}
	if l.PoolMax > 0 && l.PoolMin > l.PoolMax {
		errs = append(errs, fmt.Errorf("%s: limits.pool_min (%d) is above limits.pool_max (%d)", path, l.PoolMin, l.PoolMax))
	}
	if l.MemoryPages > runtime.MaxMemoryLimitPages || (l.MemoryPages == 0 && md.IsDefined("limits", "memory_pages")) {
		errs = append(errs, fmt.Errorf("%s: limits.memory_pages = %d: must be 1 to %d (pages of 64 KiB; %d is the 4 GiB a 32-bit memory can address)",
			path, l.MemoryPages, runtime.MaxMemoryLimitPages, runtime.MaxMemoryLimitPages))
	}
	// Zero would silently mean the default: refuse what the operator wrote.
	for key, v := range map[string]int{"pool_min": l.PoolMin, "pool_max": l.PoolMax, "max_calls": l.MaxCalls,
		"max_input_bytes": l.MaxInputBytes, "max_output_bytes": l.MaxOutputBytes} {
		if v == 0 && md.IsDefined("limits", key) {
			errs = append(errs, fmt.Errorf("%s: limits.%s = 0: must be at least 1 (leave it out for the default)", path, key))
		}
	}
	if l.TableEntries == 0 && md.IsDefined("limits", "table_entries") {
		errs = append(errs, fmt.Errorf("%s: limits.table_entries = 0: must be at least 1", path))
	}
	if l.CallTimeout.Duration < 0 || l.AcquireTimeout.Duration < 0 {
		errs = append(errs, fmt.Errorf("%s: limits: durations must not be negative", path))
	}
	errs = append(errs, sf.Events.check(path)...)
	return sf, errors.Join(errs...)
}

// HostGrants converts the file's grants for the host binding.
func (sf *ServiceFile) HostGrants() host.Grants {
	g := &sf.Grants
	return host.Grants{Publish: g.Publish, Subscribe: g.Subscribe, KV: g.KV, Discover: g.Discover}
}

// ModuleConfig applies the file's limits over base.
func (sf *ServiceFile) ModuleConfig(base runtime.ModuleConfig) runtime.ModuleConfig {
	l := &sf.Limits
	set := func(dst *int, v int) {
		if v > 0 {
			*dst = v
		}
	}
	if l.MemoryPages > 0 {
		base.MemoryLimitPages = l.MemoryPages
	}
	if l.TableEntries > 0 {
		base.MaxTableEntries = l.TableEntries
	}
	if l.CallTimeout.Duration > 0 {
		base.CallTimeout = l.CallTimeout.Duration
	}
	if l.AcquireTimeout.Duration > 0 {
		base.AcquireTimeout = l.AcquireTimeout.Duration
	}
	set(&base.PoolMin, l.PoolMin)
	set(&base.PoolMax, l.PoolMax)
	set(&base.MaxCallsPerInstance, l.MaxCalls)
	set(&base.MaxInputBytes, l.MaxInputBytes)
	set(&base.MaxOutputBytes, l.MaxOutputBytes)
	return base
}

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
