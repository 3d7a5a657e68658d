package daemon

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/bench/sagabench"
	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/internal/syncbuf"
	"github.com/meshd/meshd/internal/wattest"
)

// callsPerLoop is how many calls one invocation of the caller's
// /caller/loop makes in the benchmarks below (an invocation may make at
// most host.DefaultMaxCalls, 64).
const callsPerLoop = 50

// startCallBench runs a daemon serving the caller and callee test guests
// (daemon/testdata/guest-caller, guest-callee) and the WAT caller
// (daemon/testdata/guest-caller.wat, service "watcaller") with callerToml
// as both callers' service file, logging at info level (runDaemon's debug
// level would log every invocation, and time that).
func startCallBench(b *testing.B, callerToml string) *testDaemon {
	b.Helper()
	dir := b.TempDir()
	plugins := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		b.Fatal(err)
	}
	for name, content := range map[string][]byte{
		"caller.wasm":    readFile(b, fixture(b, "testdata/guest-caller.wasm")),
		"caller.toml":    []byte(callerToml),
		"watcaller.wasm": wattest.Build(b, "testdata/guest-caller.wat"),
		"watcaller.toml": []byte(callerToml),
		"callee.wasm":    readFile(b, fixture(b, "testdata/guest-callee.wasm")),
		"callee.toml":    []byte("[grants]\nkv = true\n"),
	} {
		if err := os.WriteFile(filepath.Join(plugins, name), content, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	cfg := Default()
	cfg.PluginDir = plugins
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.CacheDir = sharedCache
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.AdminAddr = "127.0.0.1:0"
	cfg.Node = "test"
	logs := &syncbuf.Buffer{}
	d, err := New(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		b.Fatalf("start: %v\nlogs:\n%s", err, logs)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := d.Shutdown(ctx); err != nil {
			b.Errorf("shutdown: %v", err)
		}
		if b.Failed() {
			b.Logf("daemon logs:\n%s", logs)
		}
	})
	return &testDaemon{Daemon: d, base: "http://" + d.Addr(), logs: logs, dir: plugins}
}

// invokeGET runs GET path (route: the route it matches) on service in
// process, through the dispatcher as the gateway does after its match:
// no HTTP, no gateway policies.
func (td *testDaemon) invokeGET(ctx context.Context, service, route, path, query string, resp *abi.Response) error {
	req := abi.Request{Method: []byte("GET"), Path: []byte(path), Query: []byte(query), Route: []byte(route),
		RequestID: []byte("01J9Z3K4XQ8M2N5P7R9T1V3W5Y")}
	*resp = abi.Response{}
	return td.dispatch.InvokeHTTP(ctx, service, &req, resp)
}

// loopResult is what /caller/loop answers.
type loopResult struct {
	OK     int    `json:"ok"`
	Failed int    `json:"failed"`
	Code   string `json:"code"`
}

// runLoop invokes the caller's /caller/loop making n calls of GET path to
// callee, and returns its answer.
func (td *testDaemon) runLoop(b *testing.B, ctx context.Context, callee, path string, n int, resp *abi.Response) loopResult {
	q := "to=" + callee + "&path=" + path + "&n=" + strconv.Itoa(n)
	return td.loop(b, ctx, "caller", "GET /caller/loop", "/caller/loop", q, resp)
}

// runWATLoop is runLoop with the WAT caller (service "watcaller"): its
// GET /watcaller/{callee}/{rest...}?n makes n calls of GET /{rest...}.
func (td *testDaemon) runWATLoop(b *testing.B, ctx context.Context, callee, path string, n int, resp *abi.Response) loopResult {
	return td.loop(b, ctx, "watcaller", "GET /watcaller/{callee}/{rest...}", "/watcaller/"+callee+path, strconv.Itoa(n), resp)
}

func (td *testDaemon) loop(b *testing.B, ctx context.Context, service, route, path, query string, resp *abi.Response) loopResult {
	if err := td.invokeGET(ctx, service, route, path, query, resp); err != nil {
		b.Fatal(err)
	}
	var r loopResult
	if resp.Status != 200 || json.Unmarshal(resp.Body, &r) != nil {
		b.Fatalf("%s: %d %q", path, resp.Status, resp.Body)
	}
	return r
}

// loopRunner is runLoop or runWATLoop.
type loopRunner func(b *testing.B, ctx context.Context, callee, path string, n int, resp *abi.Response) loopResult

// BenchmarkServiceCall is the cost of a call from one guest to another's
// no-op route on the same node:
//
//   - direct: the callee's GET /callee/noop invoked in process through the
//     dispatcher, as the gateway invokes a request it matched (no HTTP):
//     the callee's own cost;
//   - host: the same call made from Go as the host binding hands it to
//     the daemon (daemon/calls, the mesh client, the route's match, the
//     callee's invocation): the host's share, without the caller's guest;
//   - loop-0: the Go caller's /caller/loop making no call: the cost of the
//     caller's invocation itself;
//   - loop-50: the same making 50 calls to /callee/noop (granted, the
//     breaker closed); ns/call is ns/op divided by 50;
//   - denied: 50 calls the caller's grants refuse, answered by the host
//     binding before the mesh client: the floor of a (failing) call;
//   - denied-errors-as: denied with the Go caller reading each error's
//     code with errors.As instead of guest.CodeOf (run right after denied:
//     a sub-benchmark run later, on an instance that served more, measured
//     the same code up to twice as costly);
//   - wat-loop-0, wat-loop-50, wat-denied: the same from the WAT caller
//     (testdata/guest-caller.wat), which makes the ABI's calls with
//     nothing else around them: the runtime's own cost, apart from the Go
//     SDK's.
//
// A call's overhead on top of the callee's own work is about loop-50's
// ns/call minus direct's ns/op (loop-0's share, divided by 50, is small);
// when direct ran first in the same process, the loops report it as
// ns-over-direct/call, and cpu-ns-over-direct/call from the process's
// CPU time (see meter), the steadier of the two on a shared machine.
func BenchmarkServiceCall(b *testing.B) {
	td := startCallBench(b, "[grants]\nkv = true\ncalls = [\"callee\"]\n")
	ctx := context.Background()
	var direct perOp // direct's, once it ran
	b.Run("direct", func(b *testing.B) {
		var resp abi.Response
		b.ReportAllocs()
		m := startMeter(b)
		for b.Loop() {
			if err := td.invokeGET(ctx, "callee", "GET /callee/noop", "/callee/noop", "", &resp); err != nil || resp.Status != 200 {
				b.Fatalf("/callee/noop: %v %d %q", err, resp.Status, resp.Body)
			}
		}
		direct = m.report(b, 1, perOp{})
	})
	b.Run("host", func(b *testing.B) {
		// The call as the binding hands it to the daemon (calls.Call: the
		// mesh client, the route's match, the callee's invocation), from
		// Go: what the call costs the host without the caller's guest.
		var resp abi.Response
		req := abi.Request{Method: []byte("GET"), Path: []byte("/callee/noop"),
			Consumer: []byte("service:caller"), RequestID: []byte("01J9Z3K4XQ8M2N5P7R9T1V3W5Y")}
		b.ReportAllocs()
		m := startMeter(b)
		for b.Loop() {
			sc := host.ServiceCall{Caller: "caller", Callee: "callee", Request: &req, Retryable: true, Depth: 1}
			req.TraceParent = nil
			if err := td.calls.Call(ctx, &sc, &resp); err != nil || resp.Status != 200 {
				b.Fatalf("calls.Call: %v %d %q", err, resp.Status, resp.Body)
			}
		}
		m.report(b, 1, direct)
	})
	for _, c := range []struct {
		prefix string
		run    loopRunner
	}{{"", td.runLoop}, {"wat-", td.runWATLoop}} {
		b.Run(c.prefix+"denied", func(b *testing.B) {
			// A call the caller's grants refuse: the binding answers it
			// before the mesh client, so this is the guest's and the ABI's
			// own cost of a call (a failing one).
			var resp abi.Response
			b.ReportAllocs()
			m := startMeter(b)
			for b.Loop() {
				if r := c.run(b, ctx, "ungranted", "/ungranted/x", callsPerLoop, &resp); r.Failed != callsPerLoop || r.Code != "denied" {
					b.Fatalf("%d ungranted calls: %+v, want every one denied", callsPerLoop, r)
				}
			}
			m.report(b, callsPerLoop, perOp{})
		})
		if c.prefix == "" {
			b.Run("denied-errors-as", func(b *testing.B) {
				// denied with the caller reading each error's code through
				// errors.As rather than guest.CodeOf: what reflection costs a
				// guest that branches on a failed call that way.
				var resp abi.Response
				q := "to=ungranted&path=/ungranted/x&as=1&n=" + strconv.Itoa(callsPerLoop)
				b.ReportAllocs()
				m := startMeter(b)
				for b.Loop() {
					if r := td.loop(b, ctx, "caller", "GET /caller/loop", "/caller/loop", q, &resp); r.Failed != callsPerLoop || r.Code != "denied" {
						b.Fatalf("%d ungranted calls: %+v, want every one denied", callsPerLoop, r)
					}
				}
				m.report(b, callsPerLoop, perOp{})
			})
		}
		for _, n := range []int{0, callsPerLoop} {
			b.Run(c.prefix+"loop-"+strconv.Itoa(n), func(b *testing.B) {
				var resp abi.Response
				b.ReportAllocs()
				m := startMeter(b)
				for b.Loop() {
					if r := c.run(b, ctx, "callee", "/callee/noop", n, &resp); r.OK != n || r.Failed != 0 {
						b.Fatalf("%d calls: %+v", n, r)
					}
				}
				if n > 0 {
					m.report(b, n, direct)
				}
			})
		}
	}
}

// BenchmarkServiceCallOpenBreaker is a guest's call refused by an open
// breaker (caller→callee opened by one failure, for 10 minutes): 50 such
// calls in one invocation of /caller/loop (go) or of the WAT caller (wat),
// ns/call the cost of each.
func BenchmarkServiceCallOpenBreaker(b *testing.B) {
	td := startCallBench(b, `[grants]
kv = true
calls = ["callee"]
[calls.callee]
consecutive_failures = 1
open_for = "10m"
`)
	ctx := context.Background()
	var resp abi.Response
	req := abi.Request{Method: []byte("POST"), Path: []byte("/callee/mode"), Query: []byte("fail=1"), Route: []byte("POST /callee/mode")}
	if err := td.dispatch.InvokeHTTP(ctx, "callee", &req, &resp); err != nil || resp.Status != 200 {
		b.Fatalf("/callee/mode?fail=1: %v %d", err, resp.Status)
	}
	for _, c := range []struct {
		name, caller string
		run          loopRunner
	}{{"go", "caller", td.runLoop}, {"wat", "watcaller", td.runWATLoop}} {
		if r := c.run(b, ctx, "callee", "/callee/maybe", 1, &resp); r.Failed != 1 {
			b.Fatalf("a call from %s to the failing callee: %+v", c.caller, r)
		}
		if st, _ := td.breakerView(b, c.caller, "callee"); st != "open" {
			b.Fatalf("breaker %s→callee %q after a failure, want open", c.caller, st)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			m := startMeter(b)
			for b.Loop() {
				if r := c.run(b, ctx, "callee", "/callee/maybe", callsPerLoop, &resp); r.Failed != callsPerLoop || r.Code != "unavailable" {
					b.Fatalf("%d calls with the breaker open: %+v, want every one unavailable", callsPerLoop, r)
				}
			}
			m.report(b, callsPerLoop, perOp{})
		})
	}
}

// mallocs is the process's count of heap allocations so far.
func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// meter measures a benchmark's calls: allocations (mallocs) and the
// process's CPU time, besides b's own wall time. On a shared machine the
// CPU time is the steadier figure: another process's load stretches wall
// time, not the CPU this one uses.
type meter struct {
	mallocs uint64
	cpu     time.Duration
}

func startMeter(b *testing.B) meter {
	return meter{mallocs: mallocs(), cpu: sagabench.ProcessCPU(b)}
}

// perOp is what one call cost: wall and CPU nanoseconds.
type perOp struct{ ns, cpuNS float64 }

// report reports, per call (each op making n of them): ns/call,
// cpu-ns/call (the process's CPU time: the daemon's background work
// included, a small share) and allocs/call (likewise); with n of 1 the
// per-op figures are b's own and only cpu-ns/op is added. With direct,
// the cost of the callee's route invoked directly in the same process
// (not zero), it also reports ns-over-direct/call and
// cpu-ns-over-direct/call: a call's cost on top of the callee's own work.
// It returns the per-call costs.
func (m meter) report(b *testing.B, n int, direct perOp) perOp {
	if b.N == 0 {
		return perOp{}
	}
	calls := float64(b.N) * float64(n)
	c := perOp{ns: float64(b.Elapsed().Nanoseconds()) / calls,
		cpuNS: float64(sagabench.ProcessCPU(b)-m.cpu) / calls}
	if n == 1 {
		b.ReportMetric(c.cpuNS, "cpu-ns/op")
	} else {
		b.ReportMetric(c.ns, "ns/call")
		b.ReportMetric(c.cpuNS, "cpu-ns/call")
		b.ReportMetric(float64(mallocs()-m.mallocs)/calls, "allocs/call")
	}
	if direct.ns > 0 {
		b.ReportMetric(c.ns-direct.ns, "ns-over-direct/call")
		b.ReportMetric(c.cpuNS-direct.cpuNS, "cpu-ns-over-direct/call")
	}
	return c
}
