package daemon

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"

	"github.com/meshd/meshd/daemon/service"
)

// refuseStartConflicts finds, among the modules prepareAll prepared for
// paths and the services serving already, the services whose routes
// conflict, and refuses the newcomers among them (service.Conflicts): each is
// discarded, logged and recorded as a load error. A module refused anyway
// for its own reasons (it does not compile, its declaration or its routes
// are invalid, it lacks a grant) takes no part: its own refusal says why.
// It returns the paths refused, for loadDir to skip.
func (d *Daemon) refuseStartConflicts(ctx context.Context, paths []string) map[string]bool {
	d.reload.mu.Lock()
	defer d.reload.mu.Unlock()
	if d.closed.Load() {
		return nil
	}
	var claims []service.Claim
	fileOf := make(map[string]string) // base name → path
	for _, path := range paths {
		p := d.stage.Peek(path)
		if p == nil || p.Err != nil || p.Service == nil {
			continue
		}
		if c, ok := p.Service.Claim(); ok {
			claims = append(claims, c)
			fileOf[c.File] = path
		}
	}
	for _, s := range d.locals() {
		if slices.ContainsFunc(claims, func(c service.Claim) bool { return c.Name == s.Name() }) {
			continue // the version prepared now replaces it
		}
		claims = append(claims, s.Incumbent())
	}

	refused := make(map[string]bool)
	for file, err := range service.Conflicts(claims) {
		path := fileOf[file]
		refused[path] = true
		d.stage.Discard(path)
		d.recordLoad(path, err)
		d.observeLoad(path, err)
		d.log.LogAttrs(ctx, slog.LevelError, "module refused; the serving version (if any) keeps serving",
			slog.String("file", filepath.Base(path)), slog.String("reason", err.Error()))
	}
	return refused
}
