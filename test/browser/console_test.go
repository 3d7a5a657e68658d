// Package browser_test runs the operator console in headless Chromium
// against a real meshd with the demo plugins: `make test` (or `make
// test-browser`) installs what it needs (test/browser/browser.mk).
package browser_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// root is the repository, from this package's directory.
const root = "../.."

var (
	servingLine = regexp.MustCompile(`msg="meshd serving" http=(\S+)`)
	adminLine   = regexp.MustCompile(`msg="admin listening" admin=(\S+)`)
)

// need finds what the browser test needs: Chromium, node and
// playwright-core. Missing, the test skips and says what to run, except
// under CI, which must run it.
func need(t *testing.T) (chromium, node, playwright string) {
	t.Helper()
	missing := func(what string) {
		msg := "browser test not run: " + what + " (run `make browser-tools`, which installs Debian's chromium and playwright-core into build/browser)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	chromium = os.Getenv("MESHD_CHROMIUM")
	if chromium == "" {
		for _, name := range []string{"chromium", "chromium-browser"} {
			if p, err := exec.LookPath(name); err == nil {
				chromium = p
				break
			}
		}
	}
	if chromium == "" {
		missing("no chromium on PATH")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("no node on PATH")
	}
	playwright, err = filepath.Abs(filepath.Join(root, "build/browser/node_modules/playwright-core"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(playwright, "package.json")); err != nil {
		missing("playwright-core is not in build/browser")
	}
	return chromium, node, playwright
}

// meshd is a running daemon.
type meshd struct {
	gateway, admin, token string
	logs                  *logBuffer
}

type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 1<<20 {
		l.b.WriteString(s)
	}
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startMeshd builds meshd, and runs it with the demo plugins and the chaos
// test guest (whose CHAOS_FAIL handler always fails) on free loopback
// ports, with an admin token. Dead letters come after one attempt.
func startMeshd(t *testing.T) *meshd {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "meshd")
	if out, err := exec.Command("go", "build", "-o", bin, root+"/cmd/meshd").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	plugins := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"chaos.wasm": root + "/daemon/testdata/guest-chaos.wasm"}
	for _, s := range []string{"order", "payment"} {
		files[s+".wasm"] = root + "/build/plugins/" + s + ".wasm"
		files[s+".toml"] = root + "/build/plugins/" + s + ".toml"
	}
	for name, src := range files {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatalf("%v (run `make plugins fixtures`)", err)
		}
		if err := os.WriteFile(filepath.Join(plugins, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	grants := "[grants]\npublish = [\"CHAOS_EVENT\", \"CHAOS_FAIL\"]\nsubscribe = [\"CHAOS_EVENT\", \"CHAOS_FAIL\"]\nkv = true\n"
	if err := os.WriteFile(filepath.Join(plugins, "chaos.toml"), []byte(grants), 0o644); err != nil {
		t.Fatal(err)
	}

	token := make([]byte, 16)
	_, _ = rand.Read(token)
	m := &meshd{token: hex.EncodeToString(token), logs: &logBuffer{}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, bin, "run", "--plugins", plugins, "--data", filepath.Join(dir, "data"),
		"--http", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--events-max-attempts", "1", "--no-watch")
	cmd.Env = append(os.Environ(), "MESHD_ADMIN_TOKEN="+m.token)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		var gw, adm string
		for sc.Scan() {
			line := sc.Text()
			m.logs.add(line + "\n")
			if s := servingLine.FindStringSubmatch(line); s != nil {
				gw = s[1]
			}
			if s := adminLine.FindStringSubmatch(line); s != nil {
				adm = s[1]
			}
			if gw != "" && adm != "" && m.gateway == "" {
				m.gateway, m.admin = "http://"+gw, "http://"+adm
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case <-ready:
	case <-time.After(4 * time.Minute):
		t.Fatalf("meshd did not start serving; logs:\n%s", m.logs)
	}
	return m
}

// adminDo sends a request to the admin API with the token.
func (m *meshd) adminDo(t *testing.T, method, path string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, m.admin+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+m.token)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// waitFor polls cond until it holds or 30 s have passed.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: never happened; last: %s", what, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// deadLetters is how many dead letters service has.
func (m *meshd) deadLetters(t *testing.T, service string) (int, string) {
	code, b := m.adminDo(t, "GET", "/v1/events/dlq?service="+service)
	var dls []json.RawMessage
	if code != 200 || json.Unmarshal(b, &dls) != nil {
		return -1, fmt.Sprintf("%d %s", code, b)
	}
	return len(dls), string(b)
}

// metric is the value of the first /metrics line starting with prefix.
func (m *meshd) metric(t *testing.T, prefix string) string {
	_, b := m.adminDo(t, "GET", "/metrics")
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, prefix) {
			return strings.TrimSpace(strings.TrimPrefix(line, prefix))
		}
	}
	return ""
}

// TestConsoleInChromium opens the console of a real meshd in headless
// Chromium, signing in with the admin token as a browser would (Basic):
// the page lists the services; a POST /orders shows in the route's count;
// a dead letter of the failing chaos guest is redriven from the page, after
// a cancelled confirmation sent nothing; a drained service shows
// OUT_OF_SERVICE; the page fits a phone's width and asks nothing of
// another origin. Screenshots go to build/console.png and
// build/console-phone.png.
func TestConsoleInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs meshd and a browser")
	}
	chromium, node, playwright := need(t)
	m := startMeshd(t)

	// A dead letter: the chaos guest's CHAOS_FAIL handler always fails,
	// and one attempt is all an event gets here.
	resp, err := http.Post(m.gateway+"/chaos/fail-event", "application/json", strings.NewReader(`{"why":"console test"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("POST /chaos/fail-event: %s", resp.Status)
	}
	waitFor(t, "a dead letter of chaos", func() (bool, string) {
		n, last := m.deadLetters(t, "chaos")
		return n == 1, last
	})
	failures := `meshd_event_delivery_failures_total{service="chaos",topic="CHAOS_FAIL"} `
	if got := m.metric(t, failures); got != "1" {
		t.Fatalf("chaos failed %q times before the redrive, want 1", got)
	}

	// Drain is an admin endpoint of its own: GET on it is 405 when POST
	// is routed there.
	drain := ""
	if code, _ := m.adminDo(t, "GET", "/v1/services/chaos/drain"); code == http.StatusMethodNotAllowed {
		drain = "chaos"
	}

	shots, err := filepath.Abs(filepath.Join(root, "build"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "console.mjs")
	cmd.Env = append(os.Environ(),
		"PLAYWRIGHT_CORE="+playwright, "CHROMIUM="+chromium,
		"CONSOLE_URL="+m.admin+"/", "GATEWAY_URL="+m.gateway, "ADMIN_TOKEN="+m.token,
		"DLQ_SERVICE=chaos", "DRAIN_SERVICE="+drain, "SHOT_DIR="+shots)
	out, runErr := cmd.CombinedOutput()
	passed := map[string]bool{}
	for line := range strings.SplitSeq(string(out), "\n") {
		if step, ok := strings.CutPrefix(line, "ok "); ok {
			passed[step] = true
		}
	}
	report := func(t *testing.T, step string) {
		t.Helper()
		if !passed[step] {
			t.Fatalf("step %q did not pass (script: %v):\n%s\nmeshd logs (tail):\n%s", step, runErr, out, tail(m.logs.String(), 4000))
		}
	}
	t.Run("lists the services", func(t *testing.T) { report(t, "services") })
	t.Run("POST /orders shows in the route's count", func(t *testing.T) { report(t, "order count") })
	t.Run("a dead letter is redriven from the page", func(t *testing.T) {
		report(t, "redrive")
		// The page's redrive reached the daemon: the event was handled
		// (and failed) a second time.
		waitFor(t, "the redriven event handled again", func() (bool, string) {
			got := m.metric(t, failures)
			return got == "2", got
		})
	})
	t.Run("a drained service shows OUT_OF_SERVICE", func(t *testing.T) {
		if drain == "" {
			t.Skip("drain not built (no POST /v1/services/{name}/drain on the admin API)")
		}
		report(t, "drain")
	})
	t.Run("screenshot", func(t *testing.T) {
		report(t, "screenshot")
		if st, err := os.Stat(filepath.Join(shots, "console.png")); err != nil || st.Size() == 0 {
			t.Fatalf("no screenshot: %v", err)
		}
		t.Logf("screenshots: %s, %s", filepath.Join(shots, "console.png"), filepath.Join(shots, "console-phone.png"))
	})
	t.Run("fits a phone", func(t *testing.T) { report(t, "phone") })
	t.Run("no other origin, no page error", func(t *testing.T) { report(t, "one origin") })
	if runErr != nil && !t.Failed() {
		t.Fatalf("script: %v\n%s", runErr, out)
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
