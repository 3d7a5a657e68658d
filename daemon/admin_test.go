package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/syncbuf"
	"github.com/meshd/meshd/internal/testkit"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// adminGet fetches path from the daemon's admin listener.
func adminGet(t testing.TB, td *testDaemon, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+td.AdminAddr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET admin %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// samples parses an exposition into "name{k="v",...}" → value; histograms
// give name_count and name_sum.
func samples(t testing.TB, text string) map[string]float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	out := make(map[string]float64)
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			labels := make([]string, 0, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			key := "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.Counter != nil:
				out[name+key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[name+key] = m.GetGauge().GetValue()
			case m.Untyped != nil:
				out[name+key] = m.GetUntyped().GetValue()
			case m.Histogram != nil:
				out[name+"_count"+key] = float64(m.GetHistogram().GetSampleCount())
				out[name+"_sum"+key] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// sum adds the samples of name whose labels include every one of want
// (`k="v"` strings).
func sum(s map[string]float64, name string, want ...string) float64 {
	var total float64
	for k, v := range s {
		if !strings.HasPrefix(k, name+"{") {
			continue
		}
		labels := strings.Split(strings.TrimSuffix(strings.TrimPrefix(k, name+"{"), "}"), ",")
		ok := true
		for _, w := range want {
			if !slices.Contains(labels, w) {
				ok = false
				break
			}
		}
		if ok {
			total += v
		}
	}
	return total
}

func TestMetricsMoveWithTraffic(t *testing.T) {
	td := startDaemon(t, nil, nil)
	code, before := adminGet(t, td, "/metrics", "")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	b := samples(t, before)

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	var ids []string
	for i := range 3 {
		req, _ := http.NewRequest("POST", td.base+"/orders", strings.NewReader(orderBody))
		req.Header.Set("Content-Type", "application/json")
		if i == 0 {
			req.Header.Set("Traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var o map[string]any
		err = json.NewDecoder(resp.Body).Decode(&o)
		resp.Body.Close()
		if resp.StatusCode != 201 || err != nil {
			t.Fatalf("POST /orders: %d %v", resp.StatusCode, err)
		}
		ids = append(ids, o["id"].(string))
	}
	gets := 0
	for _, id := range ids {
		testkit.Eventually(t, 20*time.Second, func() string {
			gets++
			if m := td.do(t, "GET", "/orders/"+id, "", "").json(t); m["status"] != "PAID" {
				return fmt.Sprintf("order %s is %v", id, m["status"])
			}
			return ""
		})
	}

	// Each PAID order was delivered to payment; its delivery hook may run a
	// moment after the saga finished, so wait for the count, then compare
	// every other series exactly.
	var a map[string]float64
	var after string
	testkit.Eventually(t, 10*time.Second, func() string {
		_, after = adminGet(t, td, "/metrics", "")
		a = samples(t, after)
		d := sum(a, "meshd_events_delivered_total", `service="payment"`, `topic="ORDER_CREATED"`) -
			sum(b, "meshd_events_delivered_total", `service="payment"`, `topic="ORDER_CREATED"`)
		if d < 3 {
			return fmt.Sprintf("%v ORDER_CREATED delivered to payment", d)
		}
		return ""
	})
	delta := func(name string, labels ...string) float64 { return sum(a, name, labels...) - sum(b, name, labels...) }
	for _, c := range []struct {
		what string
		got  float64
		want float64
	}{
		{"POST /orders answered 201", delta("meshd_gateway_requests_total", `service="order"`, `method="POST"`, `code="201"`), 3},
		{"GET /orders/{id} answered 200", delta("meshd_gateway_requests_total", `service="order"`, `method="GET"`, `code="200"`), float64(gets)},
		{"request latency observations", delta("meshd_gateway_request_duration_seconds_count", `service="order"`), float64(3 + gets)},
		{"order http invocations ok", delta("meshd_invocations_total", `service="order"`, `entry="http"`, `result="ok"`), float64(3 + gets)},
		{"invocation duration observations", delta("meshd_invocation_duration_seconds_count", `service="order"`, `entry="http"`), float64(3 + gets)},
		{"ORDER_CREATED published", delta("meshd_events_published_total", `topic="ORDER_CREATED"`), 3},
		{"ORDER_CREATED delivered to payment", delta("meshd_events_delivered_total", `service="payment"`, `topic="ORDER_CREATED"`), 3},
		{"payment event invocations ok", delta("meshd_invocations_total", `service="payment"`, `entry="event"`, `result="ok"`), 3},
		{"no failed deliveries", delta("meshd_event_delivery_failures_total"), 0},
		{"no traps", delta("meshd_invocations_total", `result="trap"`), 0},
		{"order loaded once", sum(a, "meshd_module_loads_total", `service="order"`, `result="ok"`), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s: changed by %v, want %v", c.what, c.got, c.want)
		}
	}
	if got := delta("meshd_kv_operations_total", `service="order"`, `op="put"`); got < 6 { // created, then PAID
		t.Errorf("order kv puts changed by %v, want at least 6", got)
	}
	// The reads of the view by GET /orders/{id} are in the order service's
	// cache once its projections wrote it: the last GET of each order.
	if got := delta("meshd_kv_cache_hits_total", `service="order"`); got < 3 {
		t.Errorf("order kv cache hits changed by %v, want at least 3", got)
	}
	if l, h := delta("meshd_kv_cache_lookups_total", `service="order"`), delta("meshd_kv_cache_hits_total", `service="order"`); l < h || l < float64(gets) {
		t.Errorf("order kv cache lookups changed by %v (hits %v, GETs %d)", l, h, gets)
	}
	if got := sum(a, "meshd_kv_cache_bytes", `service="order"`); got <= 0 {
		t.Errorf("order kv cache holds %v bytes", got)
	}
	if got := sum(a, "meshd_kv_errors_total"); got != 0 {
		t.Errorf("kv errors: %v", got)
	}
	if got := sum(a, "meshd_instances", `service="order"`); got < 1 {
		t.Errorf("order has %v instances", got)
	}
	if got := sum(a, "meshd_instance_memory_bytes", `service="order"`); got < 1<<20 {
		t.Errorf("order instance memory %v bytes, want at least 1 MiB", got)
	}
	if _, ok := a[`meshd_event_consumer_pending{service="payment",topic="ORDER_CREATED"}`]; !ok {
		t.Errorf("no consumer lag for payment/ORDER_CREATED")
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "meshd_build_info"} {
		if sum(a, name) == 0 {
			t.Errorf("no %s", name)
		}
	}

	// One order's trace id is in the log lines of both services.
	for _, svc := range []string{"order", "payment"} {
		found := false
		for _, line := range strings.Split(td.logs.String(), "\n") {
			if strings.Contains(line, "service="+svc+" ") && strings.Contains(line, "trace_id="+traceID) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no log line of service %s carries trace_id=%s", svc, traceID)
		}
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("metrics text not checked with promtool: not installed (Debian package prometheus; `make tools`)")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(after)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestKVCacheOnlyAsSoleWriter: a service's reads are cached only when meshd
// is its store's only writer — not with a client port on the embedded NATS
// server (other nodes or tools could write), nor with the cache turned off.
func TestKVCacheOnlyAsSoleWriter(t *testing.T) {
	for _, c := range []struct {
		name  string
		tweak func(*Config)
		want  bool
	}{
		{"default", nil, true},
		{"nats-listen", func(c *Config) { c.NATSListen, c.NATSAuth.User, c.NATSAuth.Password = "127.0.0.1:0", "tool", "pw" }, false},
		{"kv-cache=0", func(c *Config) { c.KVCacheBytes = 0 }, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			td := startDaemonWith(t, []string{"order"}, nil, c.tweak)
			r := td.do(t, "POST", "/orders", "application/json", orderBody)
			if r.status != 201 {
				t.Fatalf("POST: %d %s", r.status, r.body)
			}
			_, m := adminGet(t, td, "/metrics", "")
			_, has := samples(t, m)[`meshd_kv_cache_lookups_total{service="order"}`]
			if has != c.want {
				t.Fatalf("order has a kv cache: %v, want %v", has, c.want)
			}
		})
	}
}

func TestServicesViewMatchesWhatIsLoaded(t *testing.T) {
	td := startDaemon(t, map[string][]byte{"broken.wasm": []byte("not wasm")}, nil)
	code, body := adminGet(t, td, "/v1/services", "")
	if code != 200 {
		t.Fatalf("/v1/services: %d %s", code, body)
	}
	var v struct {
		Services []struct {
			Name, Version, Status string
			LastError             string `json:"last_error"`
			Instances             struct{ Idle, Busy int }
			Routes, Subscriptions []string
			Grants                struct {
				Publish []string
				KV      bool
			}
		}
	}
	// encoding/json matches the other fields case-insensitively.
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	var names []string
	for _, s := range v.Services {
		names = append(names, s.Name)
		if s.Name == "broken" {
			if s.Status != "FAILED" || s.LastError == "" {
				t.Errorf("broken: %+v", s)
			}
			continue
		}
		live := td.lookup(s.Name)
		if live == nil {
			t.Errorf("%s listed but not loaded", s.Name)
			continue
		}
		if s.Version != live.Version() || s.Status != "UP" || len(s.Routes) != len(live.Declaration().Routes) ||
			len(s.Subscriptions) != len(live.Declaration().Subscriptions) || s.Instances.Idle+s.Instances.Busy < 1 {
			t.Errorf("%s: %+v, loaded version %s with %d routes and %d subscriptions", s.Name, s, live.Version(),
				len(live.Declaration().Routes), len(live.Declaration().Subscriptions))
		}
	}
	want := append(td.Services(), "broken")
	sort.Strings(want)
	if !slices.Equal(names, want) {
		t.Fatalf("/v1/services lists %v, want %v", names, want)
	}
	for _, s := range v.Services {
		if s.Name == "order" && (!slices.Contains(s.Routes, "POST /orders") || !slices.Contains(s.Grants.Publish, "ORDER_CREATED") || !s.Grants.KV) {
			t.Errorf("order: %+v", s)
		}
	}
	_, m := adminGet(t, td, "/metrics", "")
	if got := sum(samples(t, m), "meshd_module_loads_total", `service="broken"`, `result="failed"`); got != 1 {
		t.Errorf("failed loads of broken: %v, want 1", got)
	}
	// A module of the plugin directory that does not serve fails readiness
	// (readiness_test.go); the node stays alive.
	if code, body := adminGet(t, td, "/readyz", ""); code != 503 || !strings.Contains(body, "service broken does not serve") {
		t.Errorf("/readyz: %d %s", code, body)
	}
	if code, _ := adminGet(t, td, "/healthz", ""); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
}

func TestAdminTokenAndLoopback(t *testing.T) {
	cfg := Default()
	cfg.PluginDir = t.TempDir()
	cfg.AdminAddr = "0.0.0.0:0"
	if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), "non-loopback") {
		t.Fatalf("New with a public admin address and no token: %v", err)
	}
	cfg.AdminPublic = true
	if err := cfg.Validate(); err != nil {
		t.Fatalf("forced public admin address: %v", err)
	}
	cfg.AdminAddr = "off"
	cfg.AdminPublic = false
	if err := cfg.Validate(); err != nil {
		t.Fatalf("admin off: %v", err)
	}

	td := startDaemonWith(t, []string{"order"}, nil, func(c *Config) { c.AdminToken = "s3cret" })
	if code, _ := adminGet(t, td, "/metrics", ""); code != 401 {
		t.Errorf("/metrics without token: %d, want 401", code)
	}
	if code, _ := adminGet(t, td, "/v1/services", "wrong"); code != 401 {
		t.Errorf("/v1/services with a wrong token: %d, want 401", code)
	}
	if code, body := adminGet(t, td, "/metrics", "s3cret"); code != 200 || !strings.Contains(body, "meshd_build_info") {
		t.Errorf("/metrics with token: %d", code)
	}
	if code, _ := adminGet(t, td, "/healthz", ""); code != 200 {
		t.Errorf("/healthz without token: %d, want 200", code)
	}

	off := startDaemonWith(t, []string{"order"}, nil, func(c *Config) { c.AdminAddr = "off" })
	if off.AdminAddr() != "" {
		t.Errorf("admin off still listens on %s", off.AdminAddr())
	}
}

// freePort returns a loopback port nothing listens on right now.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestPrometheusScrapesMeshd runs a real Prometheus server against the
// admin listener and queries the request count the test made.
func TestPrometheusScrapesMeshd(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("not run: the prometheus server is not installed (Debian package prometheus; `make tools` installs it)")
	}
	if testing.Short() {
		t.Skip("not run in -short: starts a Prometheus server")
	}
	td := startDaemonWith(t, []string{"order"}, nil, nil)
	for range 3 {
		if r := td.do(t, "POST", "/orders", "application/json", orderBody); r.status != 201 {
			t.Fatalf("POST /orders: %d %s", r.status, r.body)
		}
	}

	dir := t.TempDir()
	conf := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: meshd
    static_configs:
      - targets: [%q]
`, td.AdminAddr())), 0o644); err != nil {
		t.Fatal(err)
	}
	web := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+web, "--log.level=warn")
	out := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", out)
		}
	})

	q := url.Values{"query": {`sum(meshd_gateway_requests_total{service="order",method="POST",code="201"})`}}
	var last string
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp, err := client.Get("http://" + web + "/api/v1/query?" + q.Encode()); err == nil {
			var r struct {
				Status string
				Data   struct {
					Result []struct {
						Value [2]any
					}
				}
			}
			err = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			last = fmt.Sprintf("status %s, %+v, %v", r.Status, r.Data.Result, err)
			if err == nil && r.Status == "success" && len(r.Data.Result) == 1 && r.Data.Result[0].Value[1] == "3" {
				return
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus did not report 3 requests within 60 s; last answer: %s", last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// withCustomSection appends a custom section to a Wasm module: the same
// code, a different version (module hash).
func withCustomSection(wasm []byte, payload string) []byte {
	const name = "meshd-test"
	body := append([]byte{byte(len(name))}, name...)
	body = append(body, payload...)
	out := append([]byte{}, wasm...)
	out = appendLEB(append(out, 0), uint64(len(body))) // custom section id, size
	return append(out, body...)
}

// appendLEB appends v to b as an unsigned LEB128 number.
func appendLEB(b []byte, v uint64) []byte {
	for ; v >= 0x80; v >>= 7 {
		b = append(b, byte(v)|0x80)
	}
	return append(b, byte(v))
}

func TestReloadIsCounted(t *testing.T) {
	td := startDaemonWith(t, []string{"order"}, nil, func(c *Config) { c.NoWatch = true })
	path := filepath.Join(td.dir, "order.wasm")
	old := td.lookup("order").Version()
	if err := os.WriteFile(path, withCustomSection(readFile(t, path), "v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := td.LoadFile(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	if td.lookup("order").Version() == old {
		t.Fatal("the new bytes did not make a new version")
	}
	if err := os.WriteFile(path, []byte("not wasm"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := td.LoadFile(context.Background(), path); err == nil {
		t.Fatal("garbage loaded")
	}
	_, text := adminGet(t, td, "/metrics", "")
	s := samples(t, text)
	for _, c := range []struct {
		name  string
		label string
		want  float64
	}{
		{"meshd_module_loads_total", `result="ok"`, 2},
		{"meshd_module_loads_total", `result="failed"`, 1},
		{"meshd_module_reloads_total", "", 1},
	} {
		labels := []string{`service="order"`}
		if c.label != "" {
			labels = append(labels, c.label)
		}
		if got := sum(s, c.name, labels...); got != c.want {
			t.Errorf("%s{%v}: %v, want %v", c.name, labels, got, c.want)
		}
	}
	_, body := adminGet(t, td, "/v1/services", "")
	if !strings.Contains(body, `"last_error"`) || !strings.Contains(body, `"status": "UP"`) {
		t.Errorf("/v1/services after a refused reload should show the serving version and the error:\n%s", body)
	}
}

func TestDefaultAdminAddressInUseIsNotFatal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	saved := defaultAdminAddr
	defaultAdminAddr = ln.Addr().String()
	defer func() { defaultAdminAddr = saved }()

	td := startDaemonWith(t, []string{"order"}, nil, func(c *Config) { c.AdminAddr = defaultAdminAddr })
	if td.AdminAddr() != "" {
		t.Fatalf("admin listening on %s", td.AdminAddr())
	}
	if !strings.Contains(td.logs.String(), "admin listener not started") {
		t.Fatal("no log line says the admin listener did not start")
	}

	// An address the operator chose must bind.
	defaultAdminAddr = saved
	cfg := Default()
	cfg.PluginDir = t.TempDir()
	cfg.DataDir = t.TempDir()
	cfg.CacheDir = sharedCache
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.AdminAddr = ln.Addr().String()
	d, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = d.Start(context.Background())
	_ = d.Shutdown(context.Background())
	if err == nil || !strings.Contains(err.Error(), "admin") {
		t.Fatalf("Start with a taken admin address: %v", err)
	}
}
