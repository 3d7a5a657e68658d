package runtime_test

import (
	"context"
	"errors"
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/meshd/meshd/internal/wattest"
	"github.com/meshd/meshd/runtime"
)

// growBy is the delta the table guests grow by: 67 million entries, 536 MB
// of 8-byte references were it allowed.
const growBy = 67_000_000

// allocatedBy returns the bytes of Go heap allocated while f ran.
func allocatedBy(f func()) uint64 {
	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	f()
	goruntime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func loadTables(t *testing.T, wat string, cfg runtime.ModuleConfig) (*runtime.Module, error) {
	t.Helper()
	cfg.Name = "tables"
	m, err := newEngine(t).Load(context.Background(), wattest.Build(t, "testdata/"+wat), testHost, cfg)
	if err == nil {
		t.Cleanup(func() { _ = m.Close(context.Background()) })
	}
	return m, err
}

// growRefused calls the guest's meshd_http, which returns what table.grow
// returned, and fails unless it was -1 and the call allocated far less than
// the growth would have.
func growRefused(t *testing.T, m *runtime.Module) {
	t.Helper()
	var c *runtime.Call
	var err error
	heap := allocatedBy(func() { c, err = call(m, "grow") })
	if err != nil {
		t.Fatal(err)
	}
	if got := int32(c.Code); got != -1 {
		t.Errorf("table.grow by %d entries returned %d, want -1 (refused)", growBy, got)
	}
	if heap > 64<<20 {
		t.Errorf("the call allocated %d MiB of Go heap", heap>>20)
	}
}

func TestTableWithoutMaximumCannotGrow(t *testing.T) {
	m, err := loadTables(t, "table-grow.wat", runtime.ModuleConfig{})
	if err != nil {
		t.Fatal(err)
	}
	growRefused(t, m)
}

func TestTableGrowthStopsAtItsMaximum(t *testing.T) {
	m, err := loadTables(t, "table-max.wat", runtime.ModuleConfig{})
	if err != nil {
		t.Fatal(err)
	}
	growRefused(t, m)
}

func TestTablesAboveTheCapAreRefused(t *testing.T) {
	for _, tc := range []struct {
		name, wat string
		cap       uint32
		want      string
	}{
		{"a maximum above the cap", "table-max.wat", 50_000,
			"table 1 declares a maximum of 100000 entries, above the cap of 50000"},
		{"maxima summed above the cap", "table-max.wat", 100_010,
			"the module's 2 tables may hold 100016 entries in all, above the cap of 100010"},
		{"an initial size above the cap", "table-grow.wat", 1,
			"table 0 declares an initial size (and no maximum) of 2 entries, above the cap of 1"},
		{"a table import", "table-import.wat", 0,
			`imports table "meshd"."table": meshd links no module that provides tables`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadTables(t, tc.wat, runtime.ModuleConfig{MaxTableEntries: tc.cap})
			if !errors.Is(err, runtime.ErrInvalidModule) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("load: %v, want ErrInvalidModule saying %q", err, tc.want)
			}
		})
	}
}

func TestMemoryLimitOutOfRangeIsRefused(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	_, err := e.Compile(ctx, guest(t), runtime.ModuleConfig{Name: "guest", MemoryLimitPages: runtime.MaxMemoryLimitPages + 1})
	if !errors.Is(err, runtime.ErrInvalidConfig) || !strings.Contains(err.Error(), "65537 pages") {
		t.Fatalf("memory limit of 65537 pages: %v, want ErrInvalidConfig naming it", err)
	}
	m, err := e.Compile(ctx, guest(t), runtime.ModuleConfig{Name: "guest", MemoryLimitPages: runtime.MaxMemoryLimitPages})
	if err != nil {
		t.Fatalf("memory limit of 65536 pages: %v", err)
	}
	_ = m.Close(ctx)
}
