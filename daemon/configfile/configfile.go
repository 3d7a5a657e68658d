// Package configfile reloads the gateway policies of the daemon's
// configuration file (meshd run --config) all or nothing, and keeps what
// was last applied, when, and why the last reload was refused (GET
// /v1/config on the admin listener).
package configfile

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/meshd/meshd/config"
	"github.com/meshd/meshd/host/gateway"
)

// Status is what GET /v1/config on the admin listener reports.
type Status struct {
	File      string    `json:"file"`
	AppliedAt time.Time `json:"applied_at,omitzero"`
	// Error is why the last reload was refused; the policies applied at
	// AppliedAt keep serving.
	Error string `json:"error,omitempty"`
}

// Reloader applies a configuration file's gateway policies. Its methods
// are safe for concurrent use; a reload runs whole under its lock.
type Reloader struct {
	file    string
	apply   func(gateway.Policies) error // the gateway's SetPolicies
	observe func(err error)              // counts every reload (nil error: applied)
	log     *slog.Logger

	mu      sync.Mutex // held for a whole reload; guards the fields below
	applied *config.File
	at      time.Time // when applied was applied
	err     string    // why the last reload was refused ("" when it was not)
}

// New returns a reloader of file ("" when there is none: every method
// then does nothing) whose policies are applied with apply; observe (may
// be nil) hears the outcome of every reload, not of Start.
func New(file string, apply func(gateway.Policies) error, observe func(error), log *slog.Logger) *Reloader {
	if observe == nil {
		observe = func(error) {}
	}
	return &Reloader{file: file, apply: apply, observe: observe, log: log}
}

// Status reports the file's state.
func (r *Reloader) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Status{File: r.file, AppliedAt: r.at, Error: r.err}
}

// Start reads the file again and applies its policies: it may have
// changed since the command line read it. A file refused now is logged
// and shown by Status; what the command line read keeps serving, and the
// next change or reload tries again.
func (r *Reloader) Start() {
	if r.file == "" {
		return
	}
	f, err := config.Load(r.file)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.at = time.Now()
	if err == nil {
		err = r.apply(f.Policies())
	}
	if err != nil {
		r.err = err.Error()
		r.log.Error("configuration file changed during start and is refused; serving the policies read at start",
			slog.String("file", r.file), slog.Any("error", err))
		return
	}
	r.applied = f
}

// Reload reads the file again and applies its policies.
func (r *Reloader) Reload() error {
	if r.file == "" {
		return nil
	}
	return r.Apply(config.Load(r.file))
}

// Changed applies data, the file's new content (a watcher's).
func (r *Reloader) Changed(data []byte) error {
	return r.Apply(config.Parse(r.file, data))
}

// Apply applies f, the file as read (err: why it could not be): all or
// nothing, so a file with any problem, or policies the gateway refuses,
// leave the running ones serving; the reason is logged and kept for
// Status. Settings that need a restart are not applied; a change to one
// is logged.
func (r *Reloader) Apply(f *config.File, err error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		err = r.apply(f.Policies())
	}
	r.observe(err)
	if err != nil {
		r.err = err.Error()
		r.log.Error("configuration file refused; the running policies keep serving",
			slog.String("file", r.file), slog.Any("error", err))
		return fmt.Errorf("daemon: configuration file: %w", err)
	}
	if keys := config.RestartOnly(r.applied, f); len(keys) > 0 {
		r.log.Warn("configuration file: these settings take effect at the next start",
			slog.String("file", r.file), slog.Any("keys", keys))
	}
	r.applied, r.at, r.err = f, time.Now(), ""
	r.log.Info("configuration file applied: gateway policies replaced", slog.String("file", r.file),
		slog.Int("mounts", len(f.Mount)), slog.Int("authenticators", len(f.Auth)), slog.Int("policies", len(f.Policy)))
	return nil
}

// Handler serves GET /v1/config: Status as JSON.
func (r *Reloader) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(r.Status())
	})
}
