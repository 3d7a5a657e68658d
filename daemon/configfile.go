package daemon

import (
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"

	"github.com/meshd/meshd/daemon/configfile"
	"github.com/meshd/meshd/runtime"
)

// configState is the configuration file's reloader (Config.ConfigFile),
// made on first use.
type configState struct {
	once sync.Once
	r    *configfile.Reloader
}

// ConfigStatus is what GET /v1/config on the admin listener reports.
type ConfigStatus = configfile.Status

// configFile is the reloader of the configuration file's gateway policies.
func (d *Daemon) configFile() *configfile.Reloader {
	d.conf.once.Do(func() {
		d.conf.r = configfile.New(d.cfg.ConfigFile, d.gateway.SetPolicies,
			func(err error) { d.obs.metrics.ConfigReloaded(err) }, d.log)
	})
	return d.conf.r
}

// ConfigStatus reports the configuration file's state (File is empty when
// meshd runs without one).
func (d *Daemon) ConfigStatus() ConfigStatus { return d.configFile().Status() }

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
			switch {
			case filepath.Base(ev.Path) != name:
				return nil // another file ending like it
			case ev.Op == runtime.WatchRemove:
				d.log.Warn("configuration file removed; the running policies stay", slog.String("file", d.cfg.ConfigFile))
				return nil
			case d.closed.Load():
				return ErrClosed
			}
			d.log.Info("configuration file changed", slog.String("file", d.cfg.ConfigFile))
			return d.configFile().Changed(ev.Data)
		})
		if err != nil {
			return err
		}
	}
	d.configFile().Start()
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
	if d.closed.Load() {
		return ErrClosed
	}
	return d.configFile().Reload()
}

// configHandler serves GET /v1/config.
func (d *Daemon) configHandler() http.Handler { return d.configFile().Handler() }
