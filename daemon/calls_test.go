package daemon

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/testkit"
)

// startMesh runs a daemon serving the caller and callee test guests
// (daemon/testdata/meshguest) with the given service files.
func startMesh(t *testing.T, callerToml, calleeToml string) *testDaemon {
	t.Helper()
	return startMeshWith(t, callerToml, calleeToml, nil)
}

func startMeshWith(t *testing.T, callerToml, calleeToml string, tweak func(*Config)) *testDaemon {
	t.Helper()
	return startDaemonWith(t, nil, map[string][]byte{
		"caller.wasm": readFile(t, fixture(t, "testdata/guest-caller.wasm")),
		"caller.toml": []byte(callerToml),
		"callee.wasm": readFile(t, fixture(t, "testdata/guest-callee.wasm")),
		"callee.toml": []byte(calleeToml),
	}, tweak)
}

// outcome is what a test guest's /P/call and /P/cycle answer: the call's
// response, or its error code.
type outcome struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
	Code   string `json:"code"`
	Error  string `json:"error"`
}

// call makes from's guest call `method path` on to, and returns what the
// call returned to the guest.
func (td *testDaemon) call(t *testing.T, from, to, method, path string, retryable bool) outcome {
	t.Helper()
	q := url.Values{"to": {to}, "method": {method}, "path": {path}}
	if retryable {
		q.Set("retryable", "1")
	}
	r := td.do(t, "GET", "/"+from+"/call?"+q.Encode(), "", "")
	if r.status != 200 {
		t.Fatalf("%s's call to %s %s %s: the caller answered %d %s", from, to, method, path, r.status, r.body)
	}
	var o outcome
	if err := json.Unmarshal(r.body, &o); err != nil {
		t.Fatalf("outcome %q: %v", r.body, err)
	}
	return o
}

// count is the counter key of service's guest (its /P/flaky or /P/maybe
// invocations).
func (td *testDaemon) count(t *testing.T, service, key string) int {
	t.Helper()
	r := td.do(t, "GET", "/"+service+"/count?key="+url.QueryEscape(key), "", "")
	var v struct{ Count int }
	if r.status != 200 || json.Unmarshal(r.body, &v) != nil {
		t.Fatalf("count %s %s: %d %s", service, key, r.status, r.body)
	}
	return v.Count
}

func (td *testDaemon) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	_, m := adminGet(t, td, "/metrics", "")
	return samples(t, m)
}

func adminPost(t *testing.T, td *testDaemon, path string) (int, string) {
	t.Helper()
	resp, err := client.Post("http://"+td.AdminAddr()+path, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// breakerView is caller's breaker of callee in /v1/services.
func (td *testDaemon) breakerView(t testing.TB, caller, callee string) (state string, found bool) {
	t.Helper()
	_, body := adminGet(t, td, "/v1/services", "")
	var v struct {
		Services []struct {
			Name     string
			Breakers []struct{ Caller, Callee, State string }
		}
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatal(err)
	}
	for _, s := range v.Services {
		if s.Name != caller {
			continue
		}
		if s.Breakers == nil {
			t.Fatalf("/v1/services: %s has no breakers field: %s", caller, body)
		}
		for _, b := range s.Breakers {
			if b.Callee == callee {
				return b.State, true
			}
		}
	}
	return "", false
}

// A call the grants refuse is denied and never reaches the callee; a
// granted one reaches an internal route, which the gateway does not serve,
// with the caller as consumer and the caller's request id.
func TestCallGrants(t *testing.T) {
	td := startMesh(t, "[grants]\nkv = true\ncalls = [\"callee\"]\n", "[grants]\nkv = true\n")
	o := td.call(t, "callee", "caller", "GET", "/caller/flaky?key=denied", false)
	if o.Code != "denied" || !strings.Contains(o.Error, "grants.calls") {
		t.Fatalf("ungranted call: %+v, want denied naming grants.calls", o)
	}
	if n := td.count(t, "caller", "denied"); n != 0 {
		t.Fatalf("the callee ran %d times for a denied call", n)
	}
	if r := td.do(t, "GET", "/callee/internal", "", ""); r.status != 404 {
		t.Fatalf("an internal route over HTTP: %d %s", r.status, r.body)
	}
	o = td.call(t, "caller", "callee", "GET", "/callee/internal", false)
	if o.Status != 200 || !strings.Contains(o.Body, `"caller":"caller"`) || strings.Contains(o.Body, `"request_id":""`) {
		t.Fatalf("granted call to an internal route: %+v", o)
	}
	if o := td.call(t, "caller", "callee", "GET", "/callee/nothing-here", false); o.Code != "not found" {
		t.Fatalf("a path no route of the callee matches: %+v, want not found", o)
	}
}

// A callee sleeping past its caller's deadline is cut off: the caller sees
// timeout and still answers its own request (200, not the gateway's 504).
// A [calls.<callee>] timeout shorter than the caller's deadline applies.
func TestCallDeadline(t *testing.T) {
	td := startMesh(t, `[grants]
kv = true
calls = ["callee"]
[limits]
call_timeout = "1s"
`, "[grants]\nkv = true\n")
	start := time.Now()
	o := td.call(t, "caller", "callee", "GET", "/callee/sleep?ms=4000", false)
	took := time.Since(start)
	if o.Code != "timeout" {
		t.Fatalf("call past the caller's deadline: %+v, want timeout", o)
	}
	t.Logf("caller answered after %v (its deadline 1s, the callee's sleep 4s)", took)

	td2 := startMesh(t, `[grants]
kv = true
calls = ["callee"]
[calls.callee]
timeout = "200ms"
`, "[grants]\nkv = true\n")
	if o := td2.call(t, "caller", "callee", "GET", "/callee/sleep?ms=2000", false); o.Code != "timeout" || !strings.Contains(o.Error, "200ms") {
		t.Fatalf("call past its [calls.callee] timeout: %+v, want timeout naming 200ms", o)
	}
}

// A GET whose callee fails twice then answers is retried and succeeds; a
// POST is not retried unless the caller marks it retryable.
func TestCallRetries(t *testing.T) {
	td := startMesh(t, "[grants]\nkv = true\ncalls = [\"callee\"]\n", "[grants]\nkv = true\n")
	if o := td.call(t, "caller", "callee", "GET", "/callee/flaky?key=get&fail=2", false); o.Status != 200 {
		t.Fatalf("GET failing twice: %+v, want 200 after retries", o)
	}
	if n := td.count(t, "callee", "get"); n != 3 {
		t.Fatalf("GET: callee ran %d times, want 3", n)
	}
	if o := td.call(t, "caller", "callee", "POST", "/callee/flaky?key=post&fail=2", false); o.Status != 500 {
		t.Fatalf("POST failing: %+v, want its 500 unretried", o)
	}
	if n := td.count(t, "callee", "post"); n != 1 {
		t.Fatalf("POST: callee ran %d times, want 1", n)
	}
	if o := td.call(t, "caller", "callee", "POST", "/callee/flaky?key=retry&fail=2", true); o.Status != 200 {
		t.Fatalf("retryable POST failing twice: %+v, want 200", o)
	}
	if n := td.count(t, "callee", "retry"); n != 3 {
		t.Fatalf("retryable POST: callee ran %d times, want 3", n)
	}
}

// With the callee failing every call (and its breaker kept closed), the
// retry budget bounds the extra attempts to 20% of the calls plus 10 a
// second, where three attempts a call would make 200%.
func TestCallRetryBudget(t *testing.T) {
	td := startMesh(t, `[grants]
kv = true
calls = ["callee"]
[calls.callee]
consecutive_failures = 10000
min_requests = 10000
`, "[grants]\nkv = true\n")
	const calls, workers = 120, 4
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range calls / workers {
				o := td.call(t, "caller", "callee", "GET", fmt.Sprintf("/callee/flaky?key=storm%d-%d&fail=1000", w, i), false)
				if o.Status != 500 {
					t.Errorf("call %d: %+v, want the callee's 500", i, o)
					return
				}
			}
		}()
	}
	wg.Wait()
	secs := int(time.Since(start)/time.Second) + 1
	attempts := 0
	for w := range workers {
		for i := range calls / workers {
			attempts += td.count(t, "callee", fmt.Sprintf("storm%d-%d", w, i))
		}
	}
	extra := attempts - calls
	bound := calls/5 + 10*(secs+1)
	t.Logf("%d calls over %d s made %d attempts: %d extra (bound %d; without a budget %d)", calls, secs, attempts, extra, bound, 2*calls)
	if extra > bound {
		t.Fatalf("%d extra attempts for %d calls over %d s, above the budget's %d", extra, calls, secs, bound)
	}
	s := td.metrics(t)
	if sum(s, "meshd_call_retries_refused_total", `callee="callee"`) == 0 {
		t.Error("meshd_call_retries_refused_total{callee=\"callee\"} is 0: the budget refused nothing")
	}
}

// With the callee failing, the breaker opens after its threshold and calls
// fail fast without reaching the callee; after open_for it lets a probe
// through (a failing one opens it again); once the callee recovers, a
// probe closes it. The metric and /v1/services show each state.
func TestCallBreaker(t *testing.T) {
	td := startMesh(t, `[grants]
kv = true
calls = ["callee"]
[calls.callee]
consecutive_failures = 3
open_for = "1s"
probes = 1
`, "[grants]\nkv = true\n")
	state := func() (float64, string) {
		s := td.metrics(t)
		st, _ := td.breakerView(t, "caller", "callee")
		return sum(s, "meshd_breaker_state", `caller="caller"`, `callee="callee"`), st
	}
	if o := td.call(t, "caller", "callee", "GET", "/callee/maybe", false); o.Status != 200 {
		t.Fatalf("healthy callee: %+v", o)
	}
	if m, v := state(); m != 0 || v != "closed" {
		t.Fatalf("closed: metric %v, /v1/services %q", m, v)
	}
	if r := td.do(t, "POST", "/callee/mode?fail=1", "", ""); r.status != 200 {
		t.Fatalf("mode: %d", r.status)
	}
	// One GET: three failed attempts trip it.
	if o := td.call(t, "caller", "callee", "GET", "/callee/maybe", false); o.Status != 500 {
		t.Fatalf("failing callee: %+v", o)
	}
	if m, v := state(); m != 2 || v != "open" {
		t.Fatalf("after 3 failures: metric %v, /v1/services %q, want open", m, v)
	}
	hits := td.count(t, "callee", "hits")
	for i := range 5 {
		start := time.Now()
		o := td.call(t, "caller", "callee", "GET", "/callee/maybe", false)
		if o.Code != "unavailable" || !strings.Contains(o.Error, "circuit caller→callee open") {
			t.Fatalf("call %d while open: %+v, want unavailable naming the circuit", i, o)
		}
		t.Logf("failed fast in %v (the whole request through the gateway and the caller)", time.Since(start))
	}
	if n := td.count(t, "callee", "hits"); n != hits {
		t.Fatalf("the callee ran %d times while the breaker was open", n-hits)
	}
	// Half-open after open_for; a failing probe opens it again.
	testkit.Eventually(t, 10*time.Second, func() string {
		if m, v := state(); m != 1 || v != "half-open" {
			return fmt.Sprintf("metric %v, /v1/services %q, want half-open", m, v)
		}
		return ""
	})
	if o := td.call(t, "caller", "callee", "GET", "/callee/maybe", false); o.Status != 500 {
		t.Fatalf("failing probe: %+v", o)
	}
	if n := td.count(t, "callee", "hits"); n != hits+1 {
		t.Fatalf("half-open let %d calls through, want 1 probe", n-hits)
	}
	if m, v := state(); m != 2 || v != "open" {
		t.Fatalf("after a failing probe: metric %v, /v1/services %q, want open", m, v)
	}
	// Recovered: the next probe closes it.
	if r := td.do(t, "POST", "/callee/mode?fail=0", "", ""); r.status != 200 {
		t.Fatalf("mode: %d", r.status)
	}
	testkit.Eventually(t, 10*time.Second, func() string {
		if o := td.call(t, "caller", "callee", "GET", "/callee/maybe", false); o.Status != 200 {
			return fmt.Sprintf("call after recovery: %+v", o)
		}
		return ""
	})
	if m, v := state(); m != 0 || v != "closed" {
		t.Fatalf("after recovery: metric %v, /v1/services %q, want closed", m, v)
	}
	if s := td.metrics(t); sum(s, "meshd_breaker_transitions_total", `caller="caller"`, `callee="callee"`) < 5 {
		t.Errorf("meshd_breaker_transitions_total %v, want at least 5 (closed→open→half-open→open→half-open→closed)",
			sum(s, "meshd_breaker_transitions_total", `caller="caller"`))
	}
	if logs := td.logs.String(); !strings.Contains(logs, "circuit breaker open") || !strings.Contains(logs, "circuit breaker closed") {
		t.Error("breaker transitions are not logged")
	}
}

// a→b→a with pools of one: the inner call waits for a's only instance,
// which is busy with the outer call; it gives up at its deadline and the
// request answers with the error, never hanging.
func TestCallCycle(t *testing.T) {
	toml := func(other string) string {
		return `[grants]
kv = true
calls = ["` + other + `"]
[limits]
pool_min = 1
pool_max = 1
call_timeout = "2s"
`
	}
	td := startMesh(t, toml("callee"), toml("caller"))
	done := make(chan reply, 1)
	go func() { done <- td.do(t, "GET", "/caller/cycle?to=callee", "", "") }()
	select {
	case r := <-done:
		if r.status != 200 {
			t.Fatalf("cycle: %d %s", r.status, r.body)
		}
		var o outcome
		if err := json.Unmarshal(r.body, &o); err != nil {
			t.Fatal(err)
		}
		// The outer call returned: either callee answered with its own
		// failed call inside, or the outer call itself failed.
		if o.Code == "" && !strings.Contains(o.Body, `"code"`) {
			t.Fatalf("a cycle with pools of 1 succeeded: %+v", o)
		}
		t.Logf("cycle answered: %+v", o)
	case <-time.After(20 * time.Second):
		t.Fatal("a→b→a with pools of 1 hung past 20 s")
	}
}

// Drain: the routes answer 503 problem+json with Retry-After, calls fail
// fast with unavailable, /v1/services and meshd_service_status say
// OUT_OF_SERVICE; undrain restores 200. An unknown service is 404.
func TestDrain(t *testing.T) {
	td := startMesh(t, "[grants]\nkv = true\ncalls = [\"callee\"]\n", "[grants]\nkv = true\n")
	if code, _ := adminPost(t, td, "/v1/services/nosuch/drain"); code != 404 {
		t.Fatalf("drain of an unknown service: %d", code)
	}
	if code, body := adminPost(t, td, "/v1/services/callee/drain"); code != 200 || !strings.Contains(body, "OUT_OF_SERVICE") {
		t.Fatalf("drain: %d %s", code, body)
	}
	r := td.do(t, "GET", "/callee/count?key=x", "", "")
	if r.status != 503 || r.header.Get("Retry-After") == "" || !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
		t.Fatalf("drained route: %d %v %s", r.status, r.header, r.body)
	}
	if o := td.call(t, "caller", "callee", "GET", "/callee/internal", false); o.Code != "unavailable" {
		t.Fatalf("call to a drained service: %+v", o)
	}
	if st, _ := td.serviceView(t, "callee"); st != "OUT_OF_SERVICE" {
		t.Fatalf("/v1/services: %s", st)
	}
	if v := td.metrics(t)[`meshd_service_status{service="callee",status="OUT_OF_SERVICE"}`]; v != 1 {
		t.Fatalf("meshd_service_status OUT_OF_SERVICE = %v", v)
	}
	if code, _ := adminPost(t, td, "/v1/services/callee/undrain"); code != 200 {
		t.Fatalf("undrain: %d", code)
	}
	if r := td.do(t, "GET", "/callee/count?key=x", "", ""); r.status != 200 {
		t.Fatalf("undrained route: %d %s", r.status, r.body)
	}
	if o := td.call(t, "caller", "callee", "GET", "/callee/internal", false); o.Status != 200 {
		t.Fatalf("call after undrain: %+v", o)
	}
	if !strings.Contains(td.logs.String(), "service status OUT_OF_SERVICE") {
		t.Error("the transition is not logged")
	}
}

// A service whose invocations keep running past their deadline goes DOWN
// (503 at once, without running it) and comes back UP after the cool-down.
func TestRepeatedFailuresMakeServiceDown(t *testing.T) {
	td := startMeshWith(t, "[grants]\nkv = true\n", "[grants]\nkv = true\n", func(c *Config) { c.RequestTimeout = 200 * time.Millisecond })
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 6 {
				if r := td.do(t, "GET", "/callee/spin", "", ""); r.status != 504 && r.status != 503 {
					t.Errorf("worker %d: spin answered %d", w, r.status)
					return
				}
			}
		}()
	}
	wg.Wait()
	if st, _ := td.serviceView(t, "callee"); st != "DOWN" {
		t.Fatalf("after 24 timeouts: %s, want DOWN", st)
	}
	if r := td.do(t, "GET", "/callee/count?key=x", "", ""); r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Fatalf("a DOWN service's route: %d %v", r.status, r.header)
	}
	if r := td.do(t, "GET", "/caller/count?key=x", "", ""); r.status != 200 {
		t.Fatalf("another service: %d", r.status)
	}
	testkit.Eventually(t, 30*time.Second, func() string {
		if r := td.do(t, "GET", "/callee/count?key=x", "", ""); r.status != http.StatusOK {
			return fmt.Sprintf("still %d after the cool-down", r.status)
		}
		return ""
	})
	if st, _ := td.serviceView(t, "callee"); st != "UP" {
		t.Fatalf("after the cool-down: %s", st)
	}
}
