package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/syncbuf"
	"github.com/meshd/meshd/internal/testkit"
)

// buildMeshd builds this command into a temporary directory.
func buildMeshd(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "meshd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// demoPlugins is the map of files pluginDir copies for the demo services
// named (order, payment): each one's module and grants from build/plugins.
func demoPlugins(services ...string) map[string]string {
	files := make(map[string]string)
	for _, s := range services {
		files[s+".wasm"] = "../../build/plugins/" + s + ".wasm"
		files[s+".toml"] = "../../build/plugins/" + s + ".toml"
	}
	return files
}

// pluginDir makes a temporary directory with a plugins directory in it
// holding files (name → source); it returns both.
func pluginDir(t testing.TB, files map[string]string) (dir, plugins string) {
	t.Helper()
	dir = t.TempDir()
	plugins = filepath.Join(dir, "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	copyInto(t, plugins, files)
	return dir, plugins
}

func copyInto(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, src := range files {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatalf("%v (run `make plugins fixtures`)", err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// startBinary runs bin with args (a `run` command listening on a port the
// logs name) and waits until it serves. It returns the process, the
// gateway's base URL and the process's logs; the process is killed at the
// end of the test if still running.
func startBinary(t testing.TB, bin string, args ...string) (*exec.Cmd, string, *syncbuf.Buffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	logs := &syncbuf.Buffer{}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			logs.Write([]byte(line + "\n"))
			if m := servingLine.FindStringSubmatch(line); m != nil {
				addr <- m[1]
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case a := <-addr:
		return cmd, "http://" + a, logs
	case <-time.After(4 * time.Minute):
		t.Fatalf("meshd did not start serving; logs:\n%s", logs)
	}
	return nil, "", nil
}

// TestSIGTERMDrainsInFlightRequests runs the real binary, sends SIGTERM while
// a request is in flight, and expects the request to complete, the process
// to exit 0, and NATS to stop cleanly.
func TestSIGTERMDrainsInFlightRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildMeshd(t)
	files := demoPlugins("order", "payment")
	files["chaos.wasm"] = "../../daemon/testdata/guest-chaos.wasm"
	dir, plugins := pluginDir(t, files)
	grants := "[grants]\npublish = [\"CHAOS_EVENT\", \"CHAOS_FAIL\"]\nsubscribe = [\"CHAOS_EVENT\", \"CHAOS_FAIL\"]\nkv = true\n"
	if err := os.WriteFile(filepath.Join(plugins, "chaos.toml"), []byte(grants), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, base, logs := startBinary(t, bin, "run", "--plugins", plugins, "--data", filepath.Join(dir, "data"),
		"--http", "127.0.0.1:0", "--admin", "off", "--drain-timeout", "20s", "--call-timeout", "20s")

	resp, err := http.Post(base+"/orders", "application/json",
		strings.NewReader(`{"user_id":"u","items":[{"name":"pen","price":100}]}`))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("POST /orders before the signal: %v %v\nlogs:\n%s", err, resp, logs)
	}
	resp.Body.Close()

	type result struct {
		status int
		body   string
		err    error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := http.Get(base + "/chaos/slow?ms=1500")
		if err != nil {
			slow <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		slow <- result{status: resp.StatusCode, body: string(b)}
	}()
	time.Sleep(300 * time.Millisecond) // let the request reach the guest
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-slow
	if r.err != nil || r.status != 200 || !strings.Contains(r.body, `"slow":true`) {
		t.Fatalf("in-flight request across SIGTERM: %+v\nlogs:\n%s", r, logs)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("meshd exited with %v after SIGTERM; logs:\n%s", err, logs)
	}
	if !strings.Contains(logs.String(), `msg=stopped`) {
		t.Fatalf("no clean stop in the logs:\n%s", logs)
	}
}

// TestSIGHUPReloadsConfigFile runs the real binary with --config and
// --no-watch, edits the file's API key and sends SIGHUP: the new key is
// taken, the old one refused; a broken file on the next SIGHUP is refused
// and the running policies stay.
func TestSIGHUPReloadsConfigFile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildMeshd(t)
	dir, plugins := pluginDir(t, demoPlugins("order"))
	conf := filepath.Join(dir, "gateway.toml")
	policy := func(key string) []byte {
		return []byte("[auth.keys]\ntype = \"api_key\"\nkeys = { \"" + key + "\" = \"demo\" }\n\n[[policy]]\nroute = \"POST /orders\"\nauth = \"keys\"\n")
	}
	if err := os.WriteFile(conf, policy("old-key"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, base, logs := startBinary(t, bin, "run", "--plugins", plugins, "--data", filepath.Join(dir, "data"),
		"--http", "127.0.0.1:0", "--admin", "off", "--no-watch", "--config", conf)
	post := func(key string) int {
		req, _ := http.NewRequest("POST", base+"/orders", strings.NewReader(`{"user_id":"u","items":[{"name":"pen","price":100}]}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-API-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if post("old-key") != 201 || post("new-key") != 401 {
		t.Fatalf("at start: old %d, new %d", post("old-key"), post("new-key"))
	}
	// hup sends SIGHUP and waits (bounded) for the log line that ends its handling.
	hup := func(done string) {
		t.Helper()
		n := strings.Count(logs.String(), done)
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 60*time.Second, func() string {
			if strings.Count(logs.String(), done) == n {
				return fmt.Sprintf("no %q after SIGHUP; logs:\n%s", done, logs)
			}
			return ""
		})
	}
	if err := os.WriteFile(conf, policy("new-key"), 0o644); err != nil {
		t.Fatal(err)
	}
	hup("configuration file applied")
	if post("new-key") != 201 || post("old-key") != 401 {
		t.Fatalf("after SIGHUP: new %d, old %d", post("new-key"), post("old-key"))
	}
	if err := os.WriteFile(conf, []byte("[[policy]]\nroute = \"POST /orders\"\nauth = \"missing\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hup("configuration file refused")
	if post("new-key") != 201 || post("") != 401 {
		t.Fatalf("after a refused file: new %d, none %d", post("new-key"), post(""))
	}
}
