package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/testkit"
	"github.com/meshd/meshd/internal/wattest"
)

// The hostile-guest suite: small modules written against docs/ABI.md by an
// attacker (host/testdata/hostile/*.wat, each saying what it does and what
// must happen), loaded beside the demo services into one real meshd
// process. Each attack must cost its own request or its own load and
// nothing else: the demo services keep answering throughout, the daemon's
// Go heap and log stay within bounds, and SIGTERM with attacks in flight
// stops the process within the drain timeout.

const hostileDir = "../../host/testdata/hostile"

// Bounds the suite holds the daemon to (README, "What happens to bad input").
const (
	hostileHeapBound = 64 << 20 // growth of the Go heap in use after a collection
	hostileLogBound  = 16 << 20 // bytes of daemon log the floods may add
)

// hostileGrants are the service files of the attackers that need grants to
// reach the host function they abuse.
var hostileGrants = map[string]string{
	"kvflood":  "[grants]\nkv = true\n",
	"bigevent": "[grants]\nkv = true\npublish = [\"H_BIG\"]\n",
	"badptr":   "[grants]\nkv = true\npublish = [\"H_BAD\"]\ndiscover = [\"ghost\"]\n[config]\ncfg = \"x\"\n",
	"hugename": "[grants]\nkv = true\n",
}

// refusedAtLoad are the attackers that must not load, with a word their
// refusal must contain (lower case).
var refusedAtLoad = map[string]string{
	"l-badjson":   "",
	"l-hugedecl":  "",
	"l-wrongsig":  "signature",
	"l-import":    "env.steal",
	"l-initloop":  "",
	"l-initsleep": "",
	"l-inittrap":  "",
	"l-ungranted": "order_created",
	"l-badroute":  "brew",
	"l-catchall":  "catch-all",
}

// hostileRequest is one attack over HTTP and what must come of it.
type hostileRequest struct {
	name  string
	ok    func(status int) bool
	check func(t *testing.T, body []byte)
}

func status(codes ...int) func(int) bool {
	return func(s int) bool {
		for _, c := range codes {
			if s == c {
				return true
			}
		}
		return false
	}
}

func serverError(s int) bool { return s >= 500 && s <= 599 }

// negativeCodes checks a body of i32 results, each between -8 and -1 (or
// exactly want when want is set).
func negativeCodes(n int, want int32) func(t *testing.T, body []byte) {
	return func(t *testing.T, body []byte) {
		t.Helper()
		if len(body) != 4*n {
			t.Fatalf("body of %d bytes, want %d results", len(body), n)
		}
		for i := range n {
			v := int32(binary.LittleEndian.Uint32(body[4*i:]))
			if (want != 0 && v != want) || v >= 0 || v < -8 {
				t.Errorf("host call %d returned %d, want %s", i, v, map[bool]string{true: strconv.Itoa(int(want)), false: "a negative code"}[want != 0])
			}
		}
	}
}

var hostileRequests = []hostileRequest{
	{name: "calltree", ok: status(504)},
	{name: "tablecall", ok: status(504)},
	{name: "loop", ok: status(504)},
	{name: "sleep", ok: status(504)},
	{name: "stack", ok: serverError},
	{name: "memgrow", ok: serverError},
	{name: "tablegrow", ok: status(200)},
	{name: "notable", ok: status(200)},
	{name: "output", ok: serverError},
	{name: "logflood", ok: status(200, 504)},
	{name: "stdio", ok: status(200, 504)},
	{name: "kvflood", ok: func(s int) bool { return s == 200 || serverError(s) }},
	{name: "bigevent", ok: status(500)},
	{name: "hugename", ok: status(200), check: negativeCodes(3, 0)},
	{name: "badptr", ok: status(200), check: negativeCodes(18, -1)},
}

var adminLine = regexp.MustCompile(`msg="admin listening" admin=(\S+)`)

func TestHostileGuests(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildMeshd(t)
	dir, plugins := pluginDir(t, demoPlugins("order", "payment"))
	wats, err := filepath.Glob(filepath.Join(hostileDir, "*.wat"))
	if err != nil || len(wats) == 0 {
		t.Fatalf("no hostile guests in %s: %v", hostileDir, err)
	}
	late := map[string][]byte{} // dropped in after start (hot reload)
	for _, path := range wats {
		name := strings.TrimSuffix(filepath.Base(path), ".wat")
		wasm := wattest.Build(t, path)
		if strings.HasPrefix(name, "r-") {
			late[name] = wasm
			continue
		}
		writeFile(t, filepath.Join(plugins, name+".wasm"), wasm)
	}
	for name, grants := range hostileGrants {
		writeFile(t, filepath.Join(plugins, name+".toml"), []byte(grants))
	}

	cmd, base, logs := startBinary(t, bin, "run", "--plugins", plugins, "--data", filepath.Join(dir, "data"),
		"--http", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--call-timeout", "1s", "--drain-timeout", "5s")
	m := adminLine.FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("no admin address in the logs:\n%s", logs)
	}
	admin := "http://" + m[1]

	// Every attacker refused at load is FAILED with its reason; the rest are UP.
	services := servicesByName(t, admin)
	for name, word := range refusedAtLoad {
		s, ok := services[name]
		switch {
		case !ok:
			t.Errorf("%s: not listed by /v1/services", name)
		case s.Status != "FAILED" || s.LastError == "":
			t.Errorf("%s: status %s, error %q: want refused at load", name, s.Status, s.LastError)
		case !strings.Contains(strings.ToLower(s.LastError), word):
			t.Errorf("%s: refused with %q, want it to say %q", name, s.LastError, word)
		}
		if len(s.LastError) > 4096 {
			t.Errorf("%s: load error of %d bytes: guest bytes are not bounded", name, len(s.LastError))
		}
	}
	for _, r := range hostileRequests {
		if s := services[r.name]; s.Status != "UP" {
			t.Errorf("%s: status %q (%s), want UP", r.name, s.Status, s.LastError)
		}
	}
	for _, name := range []string{"order", "payment"} {
		if s := services[name]; s.Status != "UP" {
			t.Fatalf("%s: status %q (%s): the demo services must load beside the attackers", name, s.Status, s.LastError)
		}
	}

	// The bystander: the order service answers throughout.
	id := createOrder(t, base)
	var bystanderOK, bystanderFailed atomic.Int64
	var bystanderErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		client := &http.Client{Timeout: 15 * time.Second}
		for n := 0; n < 100000; n++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			resp, err := client.Get(base + "/orders/" + id)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					bystanderOK.Add(1)
					continue
				}
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
			bystanderFailed.Add(1)
			bystanderErr.Store(err.Error())
		}
	})

	heapBefore := heapInUse(t, admin)
	logsBefore := logs.Len()
	client := &http.Client{Timeout: 60 * time.Second}
	for _, r := range hostileRequests {
		// Two at once, twice: the pool loses instances and makes new ones.
		for range 2 {
			var rw sync.WaitGroup
			for range 2 {
				rw.Go(func() {
					start := time.Now()
					resp, err := client.Get(base + "/h/" + r.name)
					if err != nil {
						t.Errorf("%s: %v after %s", r.name, err, time.Since(start))
						return
					}
					body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
					resp.Body.Close()
					if !r.ok(resp.StatusCode) {
						t.Errorf("%s: status %d (%s)", r.name, resp.StatusCode, truncate(body))
						return
					}
					if r.check != nil {
						r.check(t, body)
					}
				})
			}
			rw.Wait()
		}
	}
	heapAfter := heapInUse(t, admin)
	grew := heapAfter - heapBefore
	t.Logf("Go heap in use after a collection: %d MiB before the attacks, %d MiB after; log grew by %d KiB",
		heapBefore>>20, heapAfter>>20, (logs.Len()-logsBefore)>>10)
	if grew > hostileHeapBound {
		t.Errorf("the Go heap grew by %d MiB under attack, bound %d MiB", grew>>20, hostileHeapBound>>20)
	}
	if n := logs.Len() - logsBefore; n > hostileLogBound {
		t.Errorf("the floods added %d MiB of daemon log, bound %d MiB", n>>20, hostileLogBound>>20)
	}

	// Shadowing another service's routes on reload: refused, order keeps them.
	for name, wasm := range late {
		writeFile(t, filepath.Join(plugins, name+".wasm"), wasm)
	}
	testkit.Until(t, 60*time.Second, "the shadowing modules to be refused", func() bool {
		s := servicesByName(t, admin)
		return s["r-shadow"].Status == "FAILED" && s["r-head"].Status == "FAILED"
	})
	if code := statusOf(t, "GET", base+"/orders/hostile-shadow"); code != 404 {
		t.Errorf("GET /orders/hostile-shadow: %d, want order's 404 for an unknown order", code)
	}
	if code := statusOf(t, "HEAD", base+"/orders/no-such-order"); code != 404 {
		t.Errorf("HEAD /orders/no-such-order: %d, want order's 404", code)
	}
	close(stop)
	wg.Wait()
	if n := bystanderFailed.Load(); n > 0 || bystanderOK.Load() == 0 {
		t.Errorf("the order service failed %d of %d requests during the attacks (last: %v)",
			n, n+bystanderOK.Load(), bystanderErr.Load())
	}

	// SIGTERM with attacks in flight: the process stops within the drain
	// timeout (5 s) plus the call timeout, not when the guests would.
	for _, name := range []string{"sleep", "sleep", "loop", "calltree"} {
		go func() {
			resp, err := client.Get(base + "/h/" + name)
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // let them reach their guests
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("meshd exited with %v after SIGTERM", err)
		}
		t.Logf("stopped %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		t.Fatalf("meshd still running 20 s after SIGTERM (drain timeout 5 s); logs:\n%s", tail(logs.String(), 4000))
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

type serviceView struct {
	Name      string `json:"name"`
	Status    string `json:"status"`
	LastError string `json:"last_error"`
}

func servicesByName(t *testing.T, admin string) map[string]serviceView {
	t.Helper()
	resp, err := http.Get(admin + "/v1/services")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Services []serviceView `json:"services"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatalf("/v1/services: %v", err)
	}
	out := make(map[string]serviceView, len(list.Services))
	for _, s := range list.Services {
		out[s.Name] = s
	}
	return out
}

var heapInUseLine = regexp.MustCompile(`# HeapInuse = (\d+)`)

// heapInUse is the daemon's Go heap in use right after a collection
// (pprof's heap profile with gc=1).
func heapInUse(t *testing.T, admin string) int64 {
	t.Helper()
	resp, err := http.Get(admin + "/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := heapInUseLine.FindSubmatch(b)
	if m == nil {
		t.Fatalf("no HeapInuse in the heap profile (status %d)", resp.StatusCode)
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}

func createOrder(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Post(base+"/orders", "application/json",
		strings.NewReader(`{"user_id":"bystander","items":[{"name":"pen","price":100}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var o struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil || resp.StatusCode != 201 || o.ID == "" {
		t.Fatalf("POST /orders: %d %v", resp.StatusCode, err)
	}
	return o.ID
}

func statusOf(t *testing.T, method, url string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
