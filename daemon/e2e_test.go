package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/leakcheck"
	"github.com/meshd/meshd/internal/syncbuf"
	"github.com/meshd/meshd/internal/testkit"
	"github.com/meshd/meshd/internal/wattest"
	"github.com/meshd/meshd/runtime"
)

// sharedCache is one compilation cache for every daemon the tests start, so
// only the first compiles the Go plugins (slow under -race).
var sharedCache string

// TestMain also fails a passing run that leaves a goroutine behind: a
// daemon's Shutdown stops everything it started.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "meshd-cache-")
	if err != nil {
		panic(err)
	}
	sharedCache = dir
	leakcheck.Main(m, func() { os.RemoveAll(dir) })
}

// instancesEnv names how the daemons the tests start make their instances
// (`make test` runs this package once more with each): "fresh" gives every
// call a fresh instance (renewed in place from the snapshot), "initialised"
// turns snapshots off, so every instance runs its initialiser; empty keeps
// the defaults. A service file that sets max_calls or snapshot keeps its
// own.
const instancesEnv = "MESHD_TEST_INSTANCES"

// testInstances applies instancesEnv to the module defaults mc.
func testInstances(t testing.TB, mc *runtime.ModuleConfig) {
	t.Helper()
	switch mode := os.Getenv(instancesEnv); mode {
	case "":
	case "fresh":
		mc.MaxCallsPerInstance = 1
	case "initialised":
		mc.DisableSnapshot = true
	default:
		t.Fatalf("%s=%q: want fresh, initialised or nothing", instancesEnv, mode)
	}
}

// fixture returns the path of a built file, failing with a hint when missing.
func fixture(t testing.TB, path string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s is missing: run `make plugins fixtures` (or `make test`) first", path)
	}
	return path
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// conformanceGrants lets the WAT guest use what it exercises, except
// NOT_GRANTED, which it must be denied.
const conformanceGrants = `
[grants]
publish = ["WAT_EVENT"]
subscribe = ["WAT_EVENT"]
kv = true
`

type testDaemon struct {
	*Daemon
	base string
	logs *syncbuf.Buffer
	dir  string
}

// startDaemon runs a daemon on a fresh plugin directory holding the demo
// plugins (order, payment, shipping), the conformance guest and extra files
// (name → content).
func startDaemon(t testing.TB, extra map[string][]byte, tweak func(*Config)) *testDaemon {
	t.Helper()
	return startDaemonWith(t, []string{"order", "payment", "shipping", "conformance"}, extra, tweak)
}

// startDaemonWith is startDaemon with a choice of the demo plugins and the
// conformance guest.
func startDaemonWith(t testing.TB, with []string, extra map[string][]byte, tweak func(*Config)) *testDaemon {
	t.Helper()
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range with {
		if name == "conformance" {
			if err := os.WriteFile(filepath.Join(plugins, "conformance.wasm"), wattest.Build(t, "../host/testdata/conformance.wat"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(plugins, "conformance.toml"), []byte(conformanceGrants), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		for _, f := range []string{name + ".wasm", name + ".toml"} {
			copyFile(t, fixture(t, filepath.Join("..", "build", "plugins", f)), filepath.Join(plugins, f))
		}
	}
	for name, content := range extra {
		if err := os.WriteFile(filepath.Join(plugins, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Default()
	cfg.PluginDir = plugins
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.CacheDir = sharedCache
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.AdminAddr = "127.0.0.1:0" // the default 127.0.0.1:8081 would clash between tests
	cfg.Node = "test"
	if tweak != nil {
		tweak(&cfg)
	}
	return runDaemon(t, cfg, plugins)
}

// runDaemon starts a daemon with cfg, logging into its own buffer, and
// shuts it down at the end of the test (showing its logs on failure). A
// test logs at debug; a benchmark at info, meshd's default, so that it
// measures meshd as it runs, not a log line formatted per invocation.
func runDaemon(t testing.TB, cfg Config, plugins string) *testDaemon {
	t.Helper()
	testInstances(t, &cfg.Module)
	logs := &syncbuf.Buffer{}
	level := slog.LevelDebug
	if _, bench := t.(*testing.B); bench {
		level = slog.LevelInfo
	}
	d, err := New(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level})))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatalf("start: %v\nlogs:\n%s", err, logs)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := d.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if t.Failed() {
			t.Logf("daemon logs:\n%s", logs)
		}
	})
	return &testDaemon{Daemon: d, base: "http://" + d.Addr(), logs: logs, dir: plugins}
}

var client = &http.Client{Timeout: 30 * time.Second}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("status %d body %q: %v", r.status, r.body, err)
	}
	return m
}

func (td *testDaemon) do(t testing.TB, method, path, ctype, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, td.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func wantProblem(t testing.TB, r reply, status int, detailHas string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Fatalf("content type %q, want application/problem+json; body %s", ct, r.body)
	}
	m := r.json(t)
	if int(m["status"].(float64)) != status {
		t.Fatalf("problem status %v, want %d", m["status"], status)
	}
	if d, _ := m["detail"].(string); !strings.Contains(d, detailHas) {
		t.Fatalf("problem detail %q does not contain %q", d, detailHas)
	}
}

const orderBody = `{"user_id":"user123","items":[{"name":"laptop","price":1500000},{"name":"mouse","price":50000}]}`

func TestOrderIsPaidEndToEnd(t *testing.T) {
	td := startDaemon(t, nil, nil)
	// curl -d sends a form content type; it must still be taken as JSON.
	r := td.do(t, "POST", "/orders", "application/x-www-form-urlencoded", orderBody)
	if r.status != http.StatusCreated {
		t.Fatalf("POST /orders: %d %s", r.status, r.body)
	}
	o := r.json(t)
	id, _ := o["id"].(string)
	if len(id) != 36 || o["user_id"] != "user123" || o["total"] != float64(1550000) || o["status"] != "CREATED" {
		t.Fatalf("created order %v", o)
	}
	if items, _ := o["items"].([]any); len(items) != 2 {
		t.Fatalf("items %v", o["items"])
	}
	if r.header.Get("X-Request-Id") == "" {
		t.Fatal("no X-Request-Id")
	}
	testkit.Eventually(t, 10*time.Second, func() string {
		g := td.do(t, "GET", "/orders/"+id, "", "")
		m := g.json(t)
		if g.status != 200 || m["status"] != "PAID" {
			return fmt.Sprintf("GET /orders/%s: %d %v", id, g.status, m)
		}
		if p, _ := m["payment_id"].(string); p == "" {
			return "PAID without payment_id"
		}
		return ""
	})
}

func TestRequestErrors(t *testing.T) {
	td := startDaemon(t, nil, func(c *Config) { c.MaxBodyBytes = 4096 })
	cases := []struct {
		name, method, path, ctype, body string
		status                          int
		detail                          string
	}{
		{"empty order", "POST", "/orders", "application/json", `{"user_id":"","items":[]}`, 400, "user_id"},
		{"no items", "POST", "/orders", "application/json", `{"user_id":"u","items":[]}`, 400, "item"},
		{"negative price", "POST", "/orders", "application/json", `{"user_id":"u","items":[{"name":"a","price":-1}]}`, 400, "price"},
		{"float price", "POST", "/orders", "application/json", `{"user_id":"u","items":[{"name":"a","price":1.5}]}`, 400, "price"},
		{"unnamed item", "POST", "/orders", "application/json", `{"user_id":"u","items":[{"price":1}]}`, 400, "name"},
		{"malformed JSON", "POST", "/orders", "application/json", `{not json`, 400, "JSON"},
		{"form-encoded garbage", "POST", "/orders", "application/x-www-form-urlencoded", `a=b&c=d`, 400, "JSON"},
		{"wrong content type", "POST", "/orders", "text/plain", orderBody, 415, "text/plain"},
		{"oversized body", "POST", "/orders", "application/json", `{"user_id":"` + strings.Repeat("x", 5000) + `","items":[]}`, 413, ""},
		{"unknown order", "GET", "/orders/does-not-exist", "", "", 404, ""},
		{"no route", "GET", "/nowhere", "", "", 404, ""},
		{"wrong method", "DELETE", "/orders", "", "", 405, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantProblem(t, td.do(t, c.method, c.path, c.ctype, c.body), c.status, c.detail)
		})
	}
}
