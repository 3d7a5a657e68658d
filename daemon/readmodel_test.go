package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/internal/testkit"
)

// The read-model handlers run one at a time among themselves (a lock of
// their own), they may write only under the prefix, and a type the module
// does not subscribe to is refused at load.
func TestReadModelTypes(t *testing.T) {
	const rmFlaky = flakyGrants + "serial = true\nread_model_prefix = \"count:\"\nread_model_types = [\"FLAKY\"]\n"
	td := startDaemonWith(t, nil, map[string][]byte{
		"flaky.wasm": readFile(t, fixture(t, "testdata/guest-flaky.wasm")),
		"flaky.toml": []byte(rmFlaky),
	}, func(c *Config) {
		c.Events = bus.Config{Backoff: []time.Duration{10 * time.Millisecond}, Concurrency: 8}
		c.NoWatch = true
	})
	ctx := context.Background()
	// Read-modify-write of one key by 200 events handled 8 at a time: the
	// read-model lock still serialises them, so none is lost.
	const n = 200
	countSame(t, td, n)

	// A read-model handler writing outside the prefix fails every attempt.
	toml := filepath.Join(td.cfg.PluginDir, "flaky.toml")
	writeFile(t, toml, flakyGrants+"read_model_prefix = \"rm:\"\nread_model_types = [\"FLAKY\"]\n")
	if err := td.LoadFile(ctx, filepath.Join(td.cfg.PluginDir, "flaky.wasm")); err != nil {
		t.Fatal(err)
	}
	publishFlaky(t, td, "outside", 0)
	var dls []bus.DeadLetter
	testkit.Until(t, 20*time.Second, "dead-lettered", func() bool {
		var err error
		dls, err = td.DeadLetters(ctx, "flaky")
		return err == nil && len(dls) == 1
	})
	if dl := dls[0]; dl.Attempts != 3 || !strings.Contains(dl.Reason, `wrote "count:outside", outside read_model_prefix "rm:"`) {
		t.Fatalf("dead letter %+v", dl)
	}
	if c := td.flakyCount(t, "outside"); c != 0 {
		t.Fatalf("count = %v: a refused handler's writes were applied", c)
	}

	// A type the module does not subscribe to: the version is refused and
	// the one serving stays.
	writeFile(t, toml, flakyGrants+"read_model_prefix = \"count:\"\nread_model_types = [\"NOPE\"]\n")
	err := td.LoadFile(ctx, filepath.Join(td.cfg.PluginDir, "flaky.wasm"))
	if err == nil || !strings.Contains(err.Error(), "events.read_model_types lists NOPE, which the module does not subscribe to") {
		t.Fatalf("load with an unsubscribed read-model type: %v", err)
	}
	if c := td.flakyCount(t, "same"); c != n {
		t.Fatalf("after the refused load: count = %v", c)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
