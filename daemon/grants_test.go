package daemon

import (
	"strings"
	"testing"

	"github.com/meshd/meshd/runtime"
)

func TestServiceFileLimitsRange(t *testing.T) {
	for _, tc := range []struct {
		name, toml, want string // want "": accepted
	}{
		{"the largest memory", "[limits]\nmemory_pages = 65536\n", ""},
		{"memory past 4 GiB", "[limits]\nmemory_pages = 65537\n",
			"svc.toml: limits.memory_pages = 65537: must be 1 to 65536"},
		{"no memory", "[limits]\nmemory_pages = 0\n",
			"svc.toml: limits.memory_pages = 0: must be 1 to 65536"},
		{"negative memory", "[limits]\nmemory_pages = -1\n", "memory_pages"},
		{"a table cap", "[limits]\ntable_entries = 100\n", ""},
		{"no table entries", "[limits]\ntable_entries = 0\n",
			"svc.toml: limits.table_entries = 0: must be at least 1"},
		{"no warm instance", "[limits]\npool_min = 0\n", "svc.toml: limits.pool_min = 0: must be at least 1"},
		{"no instance at all", "[limits]\npool_max = 0\n", "limits.pool_max = 0"},
		{"no calls", "[limits]\nmax_calls = 0\n", "limits.max_calls = 0"},
		{"one warm instance", "[limits]\npool_min = 1\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sf, err := parseServiceFile("svc.toml", []byte(tc.toml))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
			if err != nil {
				return
			}
			// What is accepted reaches the runtime, which must take it.
			mc := sf.ModuleConfig(runtime.ModuleConfig{})
			if _, err := newTestEngine(t).Compile(t.Context(), minimalModule, mc); err != nil && strings.Contains(err.Error(), "memory limit") {
				t.Fatalf("the runtime refused an accepted limit: %v", err)
			}
		})
	}
	sf, err := parseServiceFile("svc.toml", []byte("[limits]\ntable_entries = 100\nmemory_pages = 65536\n"))
	if err != nil {
		t.Fatal(err)
	}
	if mc := sf.ModuleConfig(runtime.ModuleConfig{}); mc.MaxTableEntries != 100 || mc.MemoryLimitPages != 65536 {
		t.Fatalf("module config %d table entries, %d pages; want 100, 65536", mc.MaxTableEntries, mc.MemoryLimitPages)
	}
}

// minimalModule is an empty module: compiling it checks the limits before
// the ABI refuses it.
var minimalModule = []byte("\x00asm\x01\x00\x00\x00")

func newTestEngine(t *testing.T) *runtime.Engine {
	t.Helper()
	e, err := runtime.NewEngine(runtime.EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(t.Context()) })
	return e
}
