package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/meshd/meshd/config"
	"github.com/meshd/meshd/runtime"
)

// configState is the configuration file (Config.ConfigFile) as the daemon
// last applied it, and how its last reload went.
type configState struct {
	mu      sync.Mutex // held for a whole reload; guards the fields
	applied *config.File
	at      time.Time // when applied was applied
	err     string    // why the last reload was refused ("" when it was not)
}

// ConfigStatus is what GET /v1/config on the admin listener reports.
type ConfigStatus struct {
	File      string    `json:"file"`
	AppliedAt time.Time `json:"applied_at,omitzero"`
	// Error is why the last reload was refused; the policies applied at
	// AppliedAt keep serving.
	Error string `json:"error,omitempty"`
}

// ConfigStatus reports the configuration file's state (File is empty when
// meshd runs without one).
func (d *Daemon) ConfigStatus() ConfigStatus {
	d.conf.mu.Lock()
	defer d.conf.mu.Unlock()
	return ConfigStatus{File: d.cfg.ConfigFile, AppliedAt: d.conf.at, Error: d.conf.err}
}

// startConfig watches the configuration file (unless watching is off),
// then reads it again and applies its policies: they may have changed
// since the command line read it, and the watcher reports only changes
// after it started.
func (d *Daemon) startConfig(ctx context.Context) error {
	if d.cfg.ConfigFile == "" {
		return nil
	}
	if !d.cfg.NoWatch {
		name := filepath.Base(d.cfg.ConfigFile)
		_, err := d.watch(ctx, filepath.Dir(d.cfg.ConfigFile), []string{name}, func(ctx context.Context, ev runtime.WatchEvent) error {
			if filepath.Base(ev.Path) != name {
				return nil // another file ending like it
			}
			if ev.Op == runtime.WatchRemove {
				d.log.Warn("configuration file removed; the running policies stay", slog.String("file", d.cfg.ConfigFile))
				return nil
			}
			d.log.Info("configuration file changed", slog.String("file", d.cfg.ConfigFile))
			return d.applyConfig(config.Parse(d.cfg.ConfigFile, ev.Data))
		})
		if err != nil {
			return err
		}
	}
	f, err := config.Load(d.cfg.ConfigFile)
	d.conf.mu.Lock()
	defer d.conf.mu.Unlock()
	d.conf.at = time.Now()
	if err == nil {
		err = d.gateway.SetPolicies(f.Policies())
	}
	if err != nil {
		// Changed since the command line read it: keep what started, and
		// say so; the next change or SIGHUP tries again.
		d.conf.err = err.Error()
		d.log.Error("configuration file changed during start and is refused; serving the policies read at start",
			slog.String("file", d.cfg.ConfigFile), slog.Any("error", err))
		return nil
	}
	d.conf.applied = f
	return nil
}

// ReloadConfig reads the configuration file again and applies its gateway
// policies (mounts, authenticators, route policies) all or nothing: a file
// with any problem, or policies the gateway refuses, leave the running ones
// serving, and the reason is logged, counted and shown by GET /v1/config.
// Settings that need a restart (listen addresses, data directory, timeouts
// of the HTTP server, ...) are not applied; a change to one is logged.
// Reload (SIGHUP) calls it; so does a change of the file.
func (d *Daemon) ReloadConfig(ctx context.Context) error {
	if d.cfg.ConfigFile == "" {
		return nil
	}
	return d.applyConfig(config.Load(d.cfg.ConfigFile))
}

func (d *Daemon) applyConfig(f *config.File, err error) error {
	if d.closed.Load() {
		return ErrClosed
	}
	d.conf.mu.Lock()
	defer d.conf.mu.Unlock()
	if err == nil {
		err = d.gateway.SetPolicies(f.Policies())
	}
	d.obs.metrics.ConfigReloaded(err)
	if err != nil {
		d.conf.err = err.Error()
		d.log.Error("configuration file refused; the running policies keep serving",
			slog.String("file", d.cfg.ConfigFile), slog.Any("error", err))
		return fmt.Errorf("daemon: configuration file: %w", err)
	}
	if keys := config.RestartOnly(d.conf.applied, f); len(keys) > 0 {
		d.log.Warn("configuration file: these settings take effect at the next start",
			slog.String("file", d.cfg.ConfigFile), slog.Any("keys", keys))
	}
	d.conf.applied, d.conf.at, d.conf.err = f, time.Now(), ""
	d.log.Info("configuration file applied: gateway policies replaced", slog.String("file", d.cfg.ConfigFile),
		slog.Int("mounts", len(f.Mount)), slog.Int("authenticators", len(f.Auth)), slog.Int("policies", len(f.Policy)))
	return nil
}

// configHandler serves GET /v1/config.
func (d *Daemon) configHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(d.ConfigStatus())
	})
}
