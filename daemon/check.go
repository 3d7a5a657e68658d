package daemon

import (
	"context"
	"log/slog"

	"github.com/meshd/meshd/daemon/service"
)

// CheckReport is what Check found out about a module.
type CheckReport = service.CheckReport

// Check runs the validation the daemon runs before serving a module,
// without a daemon, with the default limits (service.Check): meshd check.
func Check(ctx context.Context, wasmPath, configPath string, log *slog.Logger) (*CheckReport, error) {
	return service.Check(ctx, wasmPath, configPath, Default().Module, log)
}

// CheckConflicts decides the route conflicts between the modules of
// reports as the daemon does at start (service.CheckConflicts).
func CheckConflicts(reports []*CheckReport) error { return service.CheckConflicts(reports) }
