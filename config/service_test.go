package config

import (
	"errors"
	"io/fs"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/runtime"
)

func TestServiceFileLimitsRange(t *testing.T) {
	for _, tc := range []struct {
		name, toml, want string // want "": accepted
	}{
		{"the largest memory", "[limits]\nmemory_pages = 65536\n", ""},
		{"memory past 4 GiB", "[limits]\nmemory_pages = 65537\n",
			"line 2: limits.memory_pages: 65537: must be 1 to 65536"},
		{"no memory", "[limits]\nmemory_pages = 0\n",
			"line 2: limits.memory_pages: 0: must be 1 to 65536"},
		{"negative memory", "[limits]\nmemory_pages = -1\n", "memory_pages"},
		{"a table cap", "[limits]\ntable_entries = 100\n", ""},
		{"no table entries", "[limits]\ntable_entries = 0\n",
			"line 2: limits.table_entries: 0: must be at least 1"},
		{"no warm instance", "[limits]\npool_min = 0\n", "line 2: limits.pool_min: 0: must be at least 1"},
		{"no instance at all", "[limits]\npool_max = 0\n", "limits.pool_max: 0"},
		{"no calls", "[limits]\nmax_calls = 0\n", "limits.max_calls: 0"},
		{"one warm instance", "[limits]\npool_min = 1\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sf, err := ParseService("svc.toml", []byte(tc.toml))
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
	sf, err := ParseService("svc.toml", []byte("[limits]\ntable_entries = 100\nmemory_pages = 65536\n"))
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

func TestEventsConfigChecks(t *testing.T) {
	for file, want := range map[string]string{
		"[events]\nread_model_types = [\"A\"]\n":                                                      "events.read_model_types: needs events.read_model_prefix",
		"[events]\nread_model_prefix = \"rm:\"\nread_model_types = [\"a b\"]\n":                       `events.read_model_types: "a b"`,
		"[events]\nmax_attempts = -1\n":                                                               "events.max_attempts: must not be negative",
		"[events]\nserial = true\nread_model_prefix = \"rm:\"\nread_model_types = [\"A\", \"B.c\"]\n": "",
	} {
		_, err := ParseService("svc.toml", []byte(file))
		switch {
		case want == "" && err != nil:
			t.Errorf("%q: %v", file, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: error %v, want one containing %q", file, err, want)
		}
	}
}

// A service file with several problems reports each, with its key and
// the line that sets it, in line order.
func TestServiceFileProblems(t *testing.T) {
	const file = `# line 1
[grants]
publish = ["ORDER_CREATED"]
colour = "blue"

[limits]
pool_min = 4
pool_max = 2
max_calls = 0
call_timeout = "-1s"

[events]
max_attempts = -1
serial_keys = { ORDER_CREATED = "" }
`
	_, err := ParseService("svc.toml", []byte(file))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want an *Error", err, err)
	}
	want := []Problem{
		{Key: "grants.colour", Line: 4, Msg: "unknown key"},
		{Key: "limits.pool_min", Line: 7, Msg: "4 is above limits.pool_max (2)"},
		{Key: "limits.max_calls", Line: 9, Msg: "0: must be at least 1 (leave it out for the default)"},
		{Key: "limits.call_timeout", Line: 10, Msg: "must not be negative"},
		{Key: "events.max_attempts", Line: 13, Msg: "must not be negative"},
		{Key: "events.serial_keys", Line: 14, Msg: "needs events.serial = true"},
		{Key: "events.serial_keys", Line: 14, Msg: `"ORDER_CREATED" names no field`},
	}
	if e.File != "svc.toml" || !reflect.DeepEqual(e.Problems, want) {
		t.Fatalf("problems of %s:\n%+v\nwant\n%+v", e.File, e.Problems, want)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "svc.toml: 7 problem(s):\n  line 4: grants.colour: unknown key\n") {
		t.Fatalf("message %q", msg)
	}
	// A syntax error is one problem, with its line.
	_, err = ParseService("svc.toml", []byte("[grants]\nkv = true\npublish = [\"A\"\n"))
	if !errors.As(err, &e) || len(e.Problems) != 1 || e.Problems[0].Line != 3 {
		t.Fatalf("syntax error: %v", err)
	}
}

func TestLoadServiceMissing(t *testing.T) {
	_, err := LoadService(filepath.Join(t.TempDir(), "none.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// FuzzServiceFile: the operator's <service>.toml is parsed without a
// panic, and what parses parses the same way twice.
func FuzzServiceFile(f *testing.F) {
	for _, s := range []string{
		"[grants]\npublish = [\"ORDER_CREATED\"]\nkv = true\ncatch_all = false\n",
		"[limits]\nmemory_pages = 65537\npool_min = 0\n",
		"[events]\nserial = true\nserial_keys = { ORDER_CREATED = \"order_id\" }\n",
		"[config]\nk = \"v\"\n", "x = 1\n", "[grants\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sf, err := ParseService("svc.toml", b)
		if err != nil {
			return
		}
		again, err := ParseService("svc.toml", b)
		if err != nil || !reflect.DeepEqual(sf, again) {
			t.Fatalf("second parse differs: %v", err)
		}
	})
}

func TestServiceCallsGrant(t *testing.T) {
	sf, err := ParseService("user.toml", []byte("[grants]\ncalls = [\"order\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	g := sf.HostGrants()
	if !g.MayCall("order") || g.MayCall("payment") {
		t.Fatalf("grants %+v: want order callable and payment not", g)
	}
}

func TestServiceSnapshotOptOut(t *testing.T) {
	for _, c := range []struct {
		file string
		off  bool
	}{{"", false}, {"[limits]\nsnapshot = true\n", false}, {"[limits]\nsnapshot = false\n", true}} {
		sf, err := ParseService("s.toml", []byte(c.file))
		if err != nil {
			t.Fatal(err)
		}
		if got := sf.ModuleConfig(runtime.ModuleConfig{}).DisableSnapshot; got != c.off {
			t.Errorf("%q: DisableSnapshot %v, want %v", c.file, got, c.off)
		}
	}
}

func TestServiceIdleRelease(t *testing.T) {
	base := runtime.ModuleConfig{IdleRelease: DefaultIdleRelease}
	for _, c := range []struct {
		file string
		want time.Duration
	}{{"", DefaultIdleRelease}, {"[limits]\nidle_release = \"0s\"\n", 0}, {"[limits]\nidle_release = \"30s\"\n", 30 * time.Second}} {
		sf, err := ParseService("s.toml", []byte(c.file))
		if err != nil {
			t.Fatal(err)
		}
		if got := sf.ModuleConfig(base).IdleRelease; got != c.want {
			t.Errorf("%q: IdleRelease %v, want %v", c.file, got, c.want)
		}
	}
	for _, bad := range []string{"10ms", "-1s"} {
		_, err := ParseService("s.toml", []byte("[limits]\nidle_release = \""+bad+"\"\n"))
		if err == nil || !strings.Contains(err.Error(), "limits.idle_release") {
			t.Errorf("idle_release = %q: %v, want a problem naming limits.idle_release", bad, err)
		}
	}
}
