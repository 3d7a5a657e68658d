package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshd/meshd/host/gateway"
	"github.com/meshd/meshd/host/registry"
	"github.com/meshd/meshd/internal/testkit"
	"github.com/meshd/meshd/internal/wattest"
	"github.com/meshd/meshd/runtime"
)

// fastWatch makes the watcher settle quickly in tests.
func fastWatch(c *Config) { c.WatchQuiet = 50 * time.Millisecond }

// variant is wasm with a custom section holding "v<n>" appended: a
// different file hash, the same behaviour.
func variant(wasm []byte, n int) []byte { return withCustomSection(wasm, fmt.Sprintf("v%d", n)) }

// codeVariant is wasm with one more function, never called, whose body
// holds n: the same behaviour, new code, so the compilation cache (keyed
// by the code) holds none of it and the swap compiles, as a real new
// version does. The function takes type 0 (its body ends unreachable,
// valid for any type) and comes after every other, so no index moves.
func codeVariant(t testing.TB, wasm []byte, n int) []byte {
	t.Helper()
	readLEB := func(b []byte, pos int) (uint64, int) {
		var v uint64
		for shift := 0; ; shift += 7 {
			c := b[pos]
			pos++
			v |= uint64(c&0x7f) << shift
			if c < 0x80 {
				return v, pos
			}
		}
	}
	out := append([]byte(nil), wasm[:8]...)
	grown := 0
	for pos := 8; pos < len(wasm); {
		id := wasm[pos]
		size, start := readLEB(wasm, pos+1)
		end := start + int(size)
		body := wasm[start:end]
		if id == 3 || id == 10 { // function, code
			count, at := readLEB(body, 0)
			item := []byte{0x00} // its type: index 0
			if id == 10 {
				code := appendLEB([]byte{0x00, 0x42}, uint64(n)) // no locals; i64.const n
				code = append(code, 0x1a, 0x00, 0x0b)            // drop, unreachable, end
				item = appendLEB(nil, uint64(len(code)))
				item = append(item, code...)
			}
			body = append(append(appendLEB(nil, count+1), body[at:]...), item...)
			grown++
		}
		out = append(appendLEB(append(out, id), uint64(len(body))), body...)
		pos = end
	}
	if grown != 2 {
		t.Fatalf("codeVariant: %d of the function and code sections found", grown)
	}
	return out
}

func hash12(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

// dropRename writes content beside the plugin directory and renames it into
// place, as `mv` does.
func dropRename(t testing.TB, dst string, content []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(filepath.Dir(dst)), "next.wasm")
	if err := os.WriteFile(tmp, content, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// dropInPlace truncates dst and writes content in chunks, as `cat >` or
// `cp` onto an existing file does.
func dropInPlace(t testing.TB, dst string, content []byte) {
	t.Helper()
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_TRUNC|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(content); off += 256 << 10 {
		if _, err := f.Write(content[off:min(off+256<<10, len(content))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// serving is the hash of the version serving name, or "".
func (td *testDaemon) serving(name string) string {
	if s := td.lookup(name); s != nil {
		return s.Module().Hash()
	}
	return ""
}

func openFDs() int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(entries)
}

// goroutines counts the goroutines that run module code or the runtime's
// pools (where a replaced version would live on), leaving out event
// handlers and calls in flight (the backlog of events a load creates drains
// at its own pace) and NATS internals. It also counts the pool refillers,
// one per loaded version, and returns the grouped dump.
func goroutines() (n, refillers int, dump string) {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
	dump = buf.String()
	count := 0
	var rec strings.Builder
	flush := func() {
		r := rec.String()
		if (strings.Contains(r, "tetratelabs/wazero") || strings.Contains(r, "meshd/meshd/runtime.")) &&
			!strings.Contains(r, "bus.(*Subscription).handle") && // an event handler in flight
			!strings.Contains(r, "closeModuleOnCanceledOrTimeout") { // the deadline watch of a call in flight
			n += count
		}
		if strings.Contains(r, "runtime.(*Module).refiller") {
			refillers += count
		}
		rec.Reset()
		count = 0
	}
	for _, line := range strings.Split(dump, "\n") {
		var c int
		if _, err := fmt.Sscanf(line, "%d @", &c); err == nil {
			flush()
			count = c
		}
		rec.WriteString(line + "\n")
	}
	flush()
	return n, refillers, dump
}

// latency is one request's start and duration.
type latency struct {
	start time.Time
	d     time.Duration
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(float64(len(ds))*p))]
}

// TestReloadUnderLoad replaces order.wasm ten times, alternating rename
// into place and in-place copy, while 16 clients POST and GET orders: no
// request fails, every replaced version is closed, and no goroutine or file
// handle is left behind. It logs the time from file written to new version
// serving and the latency during swaps against steady state. Under -race it
// swaps twice with 4 clients: each swap compiles a new module, about 20×
// slower there.
func TestReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("long: 10 swaps under load")
	}
	td := startDaemon(t, nil, func(c *Config) {
		fastWatch(c)
		// 16 clients share 4 instances while a new version compiles on the
		// same 2 cores: let a request wait for an instance rather than get
		// a 503 for capacity, which is not what this test measures.
		c.Module.AcquireTimeout = 10 * time.Second
	})
	orderPath := filepath.Join(td.dir, "order.wasm")
	orig, err := os.ReadFile(orderPath)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 32}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	do := func(method, path, body string) (int, []byte, error) {
		req, err := http.NewRequest(method, td.base+path, strings.NewReader(body))
		if err != nil {
			return 0, nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
	if code, b, err := do("POST", "/orders", orderBody); err != nil || code != 201 {
		t.Fatalf("warm-up: %d %s %v", code, b, err)
	}
	tr.CloseIdleConnections()
	baseG, _, _ := goroutines()
	baseFD := openFDs()

	clients, maxPerClient := 16, 3000
	if raceEnabled {
		clients = 4 // leave the compiler some of the two cores
	}
	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
		lats     []latency
		total    atomic.Int64
		shed     atomic.Int64 // POSTs admission refused (503 overloaded)
	)
	fail := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, s)
		}
	}
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []latency
			for i := 0; i < maxPerClient && !stop.Load(); i++ {
				start := time.Now()
				code, b, err := do("POST", "/orders", orderBody)
				mine = append(mine, latency{start, time.Since(start)})
				total.Add(1)
				if err == nil && code == http.StatusServiceUnavailable && strings.Contains(string(b), `"title":"overloaded"`) {
					// Admission shed it: the saga fell behind these clients
					// at full speed (under -race, beside a compile on the
					// same cores). Not a request the swap dropped.
					shed.Add(1)
					continue
				}
				if err != nil || code != 201 {
					fail(fmt.Sprintf("client %d: POST /orders: %d %s %v", c, code, b, err))
					continue
				}
				var o struct{ ID string }
				if err := json.Unmarshal(b, &o); err != nil || o.ID == "" {
					fail(fmt.Sprintf("client %d: POST /orders body %s", c, b))
					continue
				}
				start = time.Now()
				code, b, err = do("GET", "/orders/"+o.ID, "")
				mine = append(mine, latency{start, time.Since(start)})
				total.Add(1)
				if err != nil || code != 200 {
					fail(fmt.Sprintf("client %d: GET /orders/%s: %d %s %v", c, o.ID, code, b, err))
				}
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		}()
	}

	defer func() { stop.Store(true); wg.Wait() }() // on an early failure too

	type window struct{ from, to time.Time }
	var (
		swaps    []window
		replaced []*runtime.Module
		toServe  []time.Duration
	)
	time.Sleep(500 * time.Millisecond) // some steady state first
	swapCount := 10
	if raceEnabled {
		swapCount = 2 // one in place, one renamed: each compile takes ~20 s under -race
	}
	for n := 1; n <= swapCount; n++ {
		old := td.lookup("order")
		next := codeVariant(t, orig, n)
		written := time.Now()
		if n%2 == 0 {
			dropRename(t, orderPath, next)
		} else {
			dropInPlace(t, orderPath, next)
		}
		want := hash12(next)
		testkit.Eventually(t, 240*time.Second, func() string {
			if got := td.serving("order"); got != want {
				return fmt.Sprintf("swap %d: serving %s, want %s; load errors %v", n, got, want, td.LoadErrors())
			}
			return ""
		})
		served := time.Now()
		toServe = append(toServe, served.Sub(written))
		swaps = append(swaps, window{written, served})
		replaced = append(replaced, old.Module())
		time.Sleep(300 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	if len(failures) > 0 {
		t.Fatalf("%d requests of %d failed during reloads; first: %s", len(failures), total.Load(), strings.Join(failures, "\n"))
	}
	if n := total.Load() - shed.Load(); n < 100 {
		t.Fatalf("only %d requests completed (%d shed by admission)", n, shed.Load())
	}
	t.Logf("%d requests, %d shed by admission", total.Load(), shed.Load())
	// Every replaced version is closed and holds no instance (the last
	// one is retired, drained then closed, after the swap: waited for).
	for i, m := range replaced {
		testkit.Eventually(t, 30*time.Second, func() string {
			if st := m.Stats(); st.Live != 0 {
				return fmt.Sprintf("replaced version %d (%s) still has %d live instances", i, m.Hash(), st.Live)
			}
			return ""
		})
		if err := m.Invoke(context.Background(), runtime.EntryDescribe, &runtime.Call{}); err == nil {
			t.Errorf("replaced version %d (%s) still takes calls", i, m.Hash())
		}
	}
	// The registry holds the last version only, UP.
	ins := td.Registry().Lookup("order")
	if len(ins) != 1 || !strings.HasPrefix(ins[0].Version, hash12(codeVariant(t, orig, swapCount))) || ins[0].Status != registry.Up {
		t.Fatalf("registry after reloads: %+v", ins)
	}
	if errs := td.LoadErrors(); len(errs) != 0 {
		t.Fatalf("load errors after good reloads: %v", errs)
	}
	// Goroutines and file handles back to the baseline.
	tr.CloseIdleConnections()
	// (The event backlog the load created drains meanwhile; a leak of
	// the ten replaced versions would show as ten or more.)
	testkit.Eventually(t, 30*time.Second, func() string {
		g, refillers, dump := goroutines()
		fd := openFDs()
		if g > baseG || fd > baseFD+2 {
			return fmt.Sprintf("goroutines %d (baseline %d), open files %d (baseline %d)\n%s", g, baseG, fd, baseFD, dump)
		}
		if refillers != len(td.Services()) {
			return fmt.Sprintf("%d pool refillers for %d services: a replaced version lives on\n%s", refillers, len(td.Services()), dump)
		}
		return ""
	})

	// Requests started while a new version compiled, around the swap
	// itself (-50ms..+250ms of the moment it was seen serving), and the rest.
	var compiling, swapping, steady []time.Duration
	for _, l := range lats {
		kind := &steady
		for _, w := range swaps {
			switch {
			case !l.start.Before(w.to.Add(-50*time.Millisecond)) && l.start.Before(w.to.Add(250*time.Millisecond)):
				kind = &swapping
			case !l.start.Before(w.from) && l.start.Before(w.to):
				kind = &compiling
			default:
				continue
			}
			break
		}
		*kind = append(*kind, l.d)
	}
	slices.Sort(toServe)
	t.Logf("%d requests, 0 failed, %d swaps; file written → new version serving: median %v, max %v",
		total.Load(), swapCount, toServe[len(toServe)/2], toServe[len(toServe)-1])
	t.Logf("latency p50/p99: steady %v/%v (%d requests); while compiling %v/%v (%d); at the swap %v/%v (%d)",
		percentile(steady, 0.5), percentile(steady, 0.99), len(steady),
		percentile(compiling, 0.5), percentile(compiling, 0.99), len(compiling),
		percentile(swapping, 0.5), percentile(swapping, 0.99), len(swapping))
}

// TestReloadRefusedKeepsServing drops bad modules over working ones: each is
// refused with its reason (log and LoadErrors) and the working version keeps
// serving; putting the good file back clears the error.
func TestReloadRefusedKeepsServing(t *testing.T) {
	td := startDaemon(t, nil, fastWatch)
	orderWasm, err := os.ReadFile(filepath.Join(td.dir, "order.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	conformanceWasm, err := os.ReadFile(filepath.Join(td.dir, "conformance.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	good := map[string][]byte{"order": orderWasm, "conformance": conformanceWasm}
	cases := []struct {
		name, service string
		content       []byte
		reason        string
	}{
		{"corrupt", "order", []byte("\x00asm\x01\x00\x00\x00garbage"), "not a valid WebAssembly module"},
		{"truncated", "order", orderWasm[:len(orderWasm)/2], "not a valid WebAssembly module"},
		{"init trap", "order", wattest.Build(t, "testdata/inittrap.wat"), "invalid module"},
		// Over a service whose file has no [events] settings the module's
		// subscriptions would have to match (payment.toml's serial_keys
		// would refuse it first).
		{"route owned by another service", "conformance", wattest.Build(t, "testdata/duproute.wat"), "POST /orders"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(td.dir, c.service+".wasm")
			before := td.serving(c.service)
			if i%2 == 0 {
				dropInPlace(t, path, c.content)
			} else {
				dropRename(t, path, c.content)
			}
			testkit.Eventually(t, 30*time.Second, func() string {
				if e := td.LoadErrors()[c.service]; !strings.Contains(e, c.reason) {
					return fmt.Sprintf("load error of %s: %q, want one containing %q", c.service, e, c.reason)
				}
				return ""
			})
			if got := td.serving(c.service); got != before {
				t.Fatalf("serving %s, want the old version %s", got, before)
			}
			if r := td.do(t, "POST", "/orders", "application/json", orderBody); r.status != 201 {
				t.Fatalf("POST /orders after a refused drop: %d %s", r.status, r.body)
			}
			if !slices.ContainsFunc(td.gateway.Routes(), func(r gateway.Route) bool { return r.Service == c.service }) {
				t.Fatalf("routes of %s gone after a refused drop: %v", c.service, td.gateway.Routes())
			}
			if logs := td.logs.String(); !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "file="+c.service+".wasm") {
				t.Fatalf("no ERROR log naming %s.wasm", c.service)
			}
			// The good file back: nothing to load, the error is cleared.
			dropInPlace(t, path, good[c.service])
			testkit.Eventually(t, 30*time.Second, func() string {
				if e, ok := td.LoadErrors()[c.service]; ok {
					return "load error still reported: " + e
				}
				return ""
			})
			if got := td.serving(c.service); got != before {
				t.Fatalf("serving %s, want %s", got, before)
			}
		})
	}
}

// startWithOrderGrants starts a daemon with the demo plugins watched and
// returns it with the path and content of order.toml.
func startWithOrderGrants(t *testing.T) (td *testDaemon, path string, grants []byte) {
	t.Helper()
	td = startDaemon(t, nil, fastWatch)
	path = filepath.Join(td.dir, "order.toml")
	grants, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return td, path, grants
}

// A grants file touched or rewritten with the same grants reloads nothing,
// including the first time after start, when the watcher has not read it.
func TestSameGrantsReloadNothing(t *testing.T) {
	td, tomlPath, grants := startWithOrderGrants(t)
	before := td.lookup("order")
	if err := os.WriteFile(tomlPath, append(grants, "\n# a comment\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() string {
		if !strings.Contains(td.logs.String(), `msg="plugin file changed" file=order.toml`) {
			return "the change was not seen"
		}
		return ""
	})
	time.Sleep(300 * time.Millisecond) // a reload would be under way by now
	if td.lookup("order") != before || strings.Contains(td.logs.String(), "service replaced") {
		t.Fatal("the same grants reloaded the service")
	}
}

// TestReloadGrantsChange reloads a service when its grants file changes,
// all or nothing.
func TestReloadGrantsChange(t *testing.T) {
	td, tomlPath, grants := startWithOrderGrants(t)
	before := td.lookup("order")
	// Grants without the subscription the module declares: refused.
	if err := os.WriteFile(tomlPath, []byte("[grants]\nkv = true\npublish = [\"*\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, func() string {
		if e := td.LoadErrors()["order"]; !strings.Contains(e, "not granted") {
			return fmt.Sprintf("load error %q", e)
		}
		return ""
	})
	if td.lookup("order") != before {
		t.Fatal("a refused grants change replaced the service")
	}
	if r := td.do(t, "POST", "/orders", "application/json", orderBody); r.status != 201 {
		t.Fatalf("POST /orders: %d %s", r.status, r.body)
	}
	// The serving version's grants back (plus a comment, so the bytes
	// differ): nothing to reload, and nothing refused any more.
	if err := os.WriteFile(tomlPath, append(grants, "\n# back\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, func() string {
		if e, ok := td.LoadErrors()["order"]; ok {
			return "load error still recorded: " + e
		}
		return ""
	})
	if td.lookup("order") != before {
		t.Fatal("the serving version's own grants reloaded it")
	}
	// A real change (one more service it may discover): reloaded, same version.
	changed := bytes.Replace(grants, []byte(`discover = ["payment"]`), []byte(`discover = ["payment", "inventory"]`), 1)
	if bytes.Equal(changed, grants) {
		t.Fatal(`order.toml has no discover = ["payment"] line to change`)
	}
	if err := os.WriteFile(tomlPath, changed, 0o644); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, func() string {
		if td.lookup("order") == before {
			return "not reloaded"
		}
		if e, ok := td.LoadErrors()["order"]; ok {
			return "load error: " + e
		}
		return ""
	})
	if ins := td.Registry().Lookup("order"); len(ins) != 1 || ins[0].Status != registry.Up || ins[0].Version != before.Version() {
		t.Fatalf("registry after a grants reload: %+v", ins)
	}
	// The new version serves before the old one is retired (drained, then
	// closed): wait for that, not just for the swap.
	testkit.Eventually(t, 30*time.Second, func() string {
		if st := before.Module().Stats(); st.Live != 0 {
			return fmt.Sprintf("replaced version has %d live instances", st.Live)
		}
		return ""
	})
	r := td.do(t, "POST", "/orders", "application/json", orderBody)
	if r.status != 201 {
		t.Fatalf("POST /orders: %d %s", r.status, r.body)
	}
	id, _ := r.json(t)["id"].(string)
	// The subscription carried over: the order still gets paid.
	testkit.Eventually(t, 20*time.Second, func() string {
		g := td.do(t, "GET", "/orders/"+id, "", "")
		if m := g.json(t); m["status"] != "PAID" {
			return fmt.Sprintf("order %s: %v", id, m)
		}
		return ""
	})
}

// TestReloadRemoveAndReadd removes payment.wasm: its routes answer 404 and
// its registry status is OUT_OF_SERVICE; orders created meanwhile are paid
// once it is back (their events waited in the stream).
func TestReloadRemoveAndReadd(t *testing.T) {
	td := startDaemon(t, nil, fastWatch)
	path := filepath.Join(td.dir, "payment.wasm")
	wasm, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	version := td.lookup("payment").Version()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, func() string {
		if td.lookup("payment") != nil {
			return "payment still loaded"
		}
		return ""
	})
	wantProblem(t, td.do(t, "GET", "/payments/x", "", ""), 404, "")
	if st, _ := td.Registry().Status("payment"); st != registry.OutOfService {
		t.Fatalf("registry status %q, want %s", st, registry.OutOfService)
	}
	var ids []string
	for range 3 {
		r := td.do(t, "POST", "/orders", "application/json", orderBody)
		if r.status != 201 {
			t.Fatalf("POST /orders: %d %s", r.status, r.body)
		}
		ids = append(ids, r.json(t)["id"].(string))
	}
	time.Sleep(300 * time.Millisecond) // would be enough to pay them if payment were there
	for _, id := range ids {
		if m := td.do(t, "GET", "/orders/"+id, "", "").json(t); m["status"] == "PAID" {
			t.Fatalf("order %s paid while payment was removed", id)
		}
	}
	dropInPlace(t, path, wasm)
	testkit.Eventually(t, 30*time.Second, func() string {
		if td.lookup("payment") == nil {
			return "payment not back"
		}
		return ""
	})
	for _, id := range ids {
		testkit.Eventually(t, 20*time.Second, func() string {
			if m := td.do(t, "GET", "/orders/"+id, "", "").json(t); m["status"] != "PAID" {
				return fmt.Sprintf("order %s: %v", id, m)
			}
			return ""
		})
	}
	if ins := td.Registry().Lookup("payment"); len(ins) != 1 || ins[0].Version != version || ins[0].Status != registry.Up {
		t.Fatalf("registry after re-add: %+v", ins)
	}
}

// TestReloadSIGHUP is Reload without the watcher: a changed module is
// swapped in, a removed one removed.
func TestReloadSIGHUP(t *testing.T) {
	td := startDaemon(t, nil, func(c *Config) { c.NoWatch = true })
	orderPath := filepath.Join(td.dir, "order.wasm")
	orig, err := os.ReadFile(orderPath)
	if err != nil {
		t.Fatal(err)
	}
	next := variant(orig, 1)
	dropInPlace(t, orderPath, next)
	if err := os.Remove(filepath.Join(td.dir, "conformance.wasm")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if got := td.serving("order"); got != hash12(orig) {
		t.Fatalf("reloaded without a watcher or SIGHUP: %s", got)
	}
	if err := td.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := td.serving("order"); got != hash12(next) {
		t.Fatalf("after Reload serving %s, want %s", got, hash12(next))
	}
	if got := td.Services(); slices.Contains(got, "conformance") {
		t.Fatalf("conformance still loaded after its file went: %v", got)
	}
	if r := td.do(t, "POST", "/orders", "application/json", orderBody); r.status != 201 {
		t.Fatalf("POST /orders: %d %s", r.status, r.body)
	}
}

// BenchmarkStartup measures daemon start to the first served request with
// the order and payment plugins, with an empty compilation cache (cold) and
// with a filled one (warm).
func BenchmarkStartup(b *testing.B) {
	for _, kind := range []string{"cold", "warm"} {
		b.Run(kind, func(b *testing.B) {
			cache := b.TempDir()
			if kind == "warm" {
				startOnce(b, cache) // fill the cache
			}
			for b.Loop() {
				if kind == "cold" {
					cache = b.TempDir()
				}
				startOnce(b, cache)
			}
		})
	}
}

// startOnce starts a daemon on cache, serves one POST /orders and stops it.
func startOnce(b *testing.B, cache string) {
	td := startDaemonWith(b, []string{"order", "payment"}, nil, func(c *Config) { c.CacheDir = cache })
	if r := td.do(b, "POST", "/orders", "application/json", orderBody); r.status != 201 {
		b.Fatalf("POST /orders: %d %s", r.status, r.body)
	}
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := td.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
}

// compiledAtStart starts a daemon with the order plugin and runs its
// compileDir again, as a start does before NATS; it returns the daemon and
// order.wasm's path and bytes.
func compiledAtStart(t *testing.T) (td *testDaemon, path string, wasm []byte) {
	t.Helper()
	td = startDaemonWith(t, []string{"order"}, nil, nil)
	path = filepath.Join(td.cfg.PluginDir, "order.wasm")
	wasm, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	td.compileDir(context.Background())
	td.stage.WaitCompiled()
	return td, path, wasm
}

// compileDir reads the plugin directory before the watcher starts; a file
// changed in between is prepared again from its current bytes, never
// served as compiled (the watcher would not report that change).
func TestStartPreparesAgainAFileChangedAfterCompiling(t *testing.T) {
	td, path, orig := compiledAtStart(t)
	ctx := context.Background()
	changed := variant(orig, 1)
	if err := os.WriteFile(path, changed, 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Second) // a different mtime even on a coarse clock
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	td.stage.PrepareAll(ctx, []string{path})
	defer td.dropPrepared()
	p := td.stage.Peek(path)
	if p == nil || p.Err != nil {
		t.Fatalf("prepared = %+v", p)
	}
	if p.Hash != sha256.Sum256(changed) {
		t.Fatal("prepared the bytes compiled before the change, not the file's current bytes")
	}
}

// What compileDir compiled is not finished (no KV store): a load the
// watcher starts before loadDir must not take it.
func TestCompiledAtStartIsNotTakenUnfinished(t *testing.T) {
	td, path, wasm := compiledAtStart(t)
	defer td.dropPrepared()
	if p, _ := td.stage.Take(path, wasm); p != nil {
		p.Discard()
		t.Fatal("takePrepared handed out a module compileDir compiled but nothing finished")
	}
}
