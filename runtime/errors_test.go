package runtime_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/runtime"
)

// TestErrorsCarryThePrefix: every error of the package names it, and the
// errors.Is relations callers branch on hold.
func TestErrorsCarryThePrefix(t *testing.T) {
	timeout := &runtime.TimeoutError{Module: "orders", Entry: runtime.EntryHTTP, After: 5 * time.Second}
	errs := []error{
		runtime.ErrInvalidModule, runtime.ErrInvalidConfig, runtime.ErrBusy, runtime.ErrClosed,
		runtime.ErrTimeout, runtime.ErrTrap, runtime.ErrTooLarge, runtime.ErrOutputTooLarge,
		runtime.ErrNoEntry, timeout,
	}
	for _, err := range errs {
		if !strings.HasPrefix(err.Error(), "runtime: ") {
			t.Errorf("%q lacks the runtime: prefix", err)
		}
		if strings.Count(err.Error(), "runtime: ") != 1 {
			t.Errorf("%q repeats the prefix", err)
		}
	}
	if !errors.Is(runtime.ErrOutputTooLarge, runtime.ErrTooLarge) {
		t.Error("ErrOutputTooLarge does not match ErrTooLarge")
	}
	if errors.Is(runtime.ErrTooLarge, runtime.ErrOutputTooLarge) {
		t.Error("ErrTooLarge matches ErrOutputTooLarge")
	}
	wrapped := fmt.Errorf("orders: %w", timeout)
	if !errors.Is(wrapped, runtime.ErrTimeout) {
		t.Error("a TimeoutError does not match ErrTimeout")
	}
	var lim interface{ Limit() time.Duration }
	if !errors.As(wrapped, &lim) || lim.Limit() != 5*time.Second {
		t.Error("a TimeoutError's Limit is not reachable")
	}
	if got := timeout.Error(); !strings.Contains(got, "orders") || !strings.Contains(got, "timed out") || !strings.Contains(got, "5s") {
		t.Errorf("TimeoutError says %q: want the module, timed out and the deadline", got)
	}
}
