package daemon

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/testkit"
	"github.com/meshd/meshd/internal/wattest"
)

// TestSlowInitialiserHoldsUpNothingElse drops a module whose initialiser
// sleeps 30 s (its call_timeout is a minute): while it initialises, a
// change to another service loads, and Shutdown cancels the slow load
// rather than wait for it.
func TestSlowInitialiserHoldsUpNothingElse(t *testing.T) {
	const bound = 10 * time.Second // far below the 30 s sleep
	td := startDaemonWith(t, []string{"conformance"}, nil, nil)
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(td.dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("sleepinit.toml", "[limits]\ncall_timeout = \"60s\"\n")
	write("sleepinit.wasm", string(wattest.Build(t, "testdata/sleepinit.wat")))
	testkit.Eventually(t, bound, func() string {
		if !strings.Contains(td.logs.String(), "file=sleepinit.") {
			return "the watcher has not reported sleepinit.wasm or .toml"
		}
		return ""
	})

	began := time.Now()
	write("conformance.toml", conformanceGrants+"\n[config]\nchanged = \"yes\"\n")
	testkit.Eventually(t, bound, func() string {
		if !strings.Contains(td.logs.String(), "service replaced") {
			return "conformance was not replaced while sleepinit initialises"
		}
		return ""
	})
	if slices.Contains(td.Services(), "sleepinit") || td.LoadErrors()["sleepinit"] != "" {
		t.Fatalf("sleepinit's load ended before the test could see another load pass it (after %s)", time.Since(began))
	}

	began = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = td.Shutdown(ctx)
	if took := time.Since(began); took > bound {
		t.Fatalf("Shutdown waited %s for a load whose initialiser sleeps", took)
	}
}
