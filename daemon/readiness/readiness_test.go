package readiness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshd/meshd/host/registry"
)

// source is a Source over a plugin directory holding files, with the
// served versions, the registry statuses of services not served, and the
// load and subscription errors given.
func source(t *testing.T, files []string, serving map[string]registry.Status, status map[string]registry.Status, loadErrs, subErrs map[string]string) Source {
	t.Helper()
	dir := t.TempDir()
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Source{
		PluginDir: dir,
		Serving: func(name string) (string, registry.Status, bool) {
			st, ok := serving[name]
			return "v1", st, ok
		},
		Status: func(name string) (registry.Status, bool) {
			st, ok := status[name]
			return st, ok
		},
		LoadErrors:         func() map[string]string { return loadErrs },
		SubscriptionErrors: func() map[string]string { return subErrs },
	}
}

func TestServicesSayWhyNot(t *testing.T) {
	src := source(t,
		[]string{"a.wasm", "b.wasm", "c.wasm", "d.wasm", "e.wasm", "f.wasm", "g.wasm", "a.toml", "notes.txt"},
		map[string]registry.Status{"a": registry.Up, "d": registry.Down, "e": registry.OutOfService, "g": registry.Up},
		map[string]registry.Status{"c": registry.Starting},
		map[string]string{"b": "b.wasm: no memory export", "g": "g.wasm: bad route"},
		map[string]string{"d": "consumer gone"})
	got, err := src.Services()
	if err != nil {
		t.Fatal(err)
	}
	want := []Service{
		{"a", true, ""},
		{"b", false, "refused: b.wasm: no memory export"},
		{"c", false, "loading"},
		{"d", false, "DOWN: consumer gone"},
		{"e", false, "OUT_OF_SERVICE"},
		{"f", false, "not loaded yet"},
		{"g", true, "version v1 serves; the module file was refused: g.wasm: bad route"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("services\n got %v\nwant %v", got, want)
	}
	err = src.Ready()
	if err == nil || strings.Count(err.Error(), "\n") != 4 || !strings.Contains(err.Error(), "service d does not serve: DOWN: consumer gone") {
		t.Fatalf("Ready: %v", err)
	}
	if d := src.Degraded(t.Context()); len(d) != 1 || d[0] != "service g: version v1 serves; the module file was refused: g.wasm: bad route" {
		t.Fatalf("Degraded: %q", d)
	}
	wantMetric := `
# HELP meshd_service_up 1 when the service of a module in the plugin directory serves (status UP), 0 when it does not (refused, DOWN, loading); /readyz says why.
# TYPE meshd_service_up gauge
meshd_service_up{service="a"} 1
meshd_service_up{service="b"} 0
meshd_service_up{service="c"} 0
meshd_service_up{service="d"} 0
meshd_service_up{service="e"} 0
meshd_service_up{service="f"} 0
meshd_service_up{service="g"} 1
`
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(Collector(src))
	if err := testutil.GatherAndCompare(reg, strings.NewReader(wantMetric)); err != nil {
		t.Fatal(err)
	}
}

// /readyz is open to anyone reaching the admin listener: names and reasons
// are bounded and escaped, and past MaxServices services are counted.
func TestReadyIsBounded(t *testing.T) {
	var files []string
	errs := map[string]string{}
	for i := range MaxServices + 5 {
		name := fmt.Sprintf("s%02d", i)
		files = append(files, name+".wasm")
		errs[name] = "bad\x1b[31m " + strings.Repeat("x", 2*ReasonBytes)
	}
	files = append(files, strings.Repeat("n", 200)+".wasm")
	src := source(t, files, nil, nil, errs, nil)
	err := src.Ready()
	if err == nil {
		t.Fatal("ready with nothing serving")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != MaxServices+1 || lines[MaxServices] != "and 6 more services that do not serve" {
		t.Fatalf("%d lines, last %q", len(lines), lines[len(lines)-1])
	}
	if !strings.HasPrefix(lines[0], "service "+strings.Repeat("n", NameBytes)+"… does not serve") || !strings.Contains(lines[1], "service s00 does not serve: refused: bad?[31m xxx") {
		t.Fatalf("lines %q", lines[:2])
	}
	for _, l := range lines[:MaxServices] {
		if strings.ContainsRune(l, 0x1b) || len(l) > len("service ")+NameBytes+len(" does not serve: ")+ReasonBytes+len("…")*2 {
			t.Fatalf("line not bounded or escaped: %q", l)
		}
	}
	if got := Bounded("añb", 2); got != "a…" {
		t.Fatalf("Bounded cut inside a rune: %q", got)
	}
	if got := Bounded("a\xffb\nc", 10); got != "a?b?c" {
		t.Fatalf("Bounded escaping: %q", got)
	}
}
