package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/registry"
	"github.com/meshd/meshd/internal/testkit"
	"github.com/meshd/meshd/internal/wattest"
)

// restart shuts td down, runs meanwhile, and starts a daemon on the same
// plugin and data directories.
func (td *testDaemon) restart(t *testing.T, meanwhile func()) *testDaemon {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := td.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	meanwhile()
	cfg := td.cfg
	cfg.Events.Hooks = bus.Hooks{} // td's, with its metrics chained in
	return runDaemon(t, cfg, td.dir)
}

// consumerStateDir is where the embedded server keeps the state of durable
// name of the event stream.
func (td *testDaemon) consumerStateDir(name string) string {
	return filepath.Join(td.cfg.DataDir, "nats", "jetstream", "$G", "streams", bus.DefaultStream, "obs", name)
}

// damageConsumer overwrites the stored state of a durable with garbage;
// with also, the same damaged state is put under the names of every
// replacement the bus would try.
func (td *testDaemon) damageConsumer(t *testing.T, name string, also bool) {
	t.Helper()
	odat := filepath.Join(td.consumerStateDir(name), "o.dat")
	if _, err := os.Stat(odat); err != nil {
		t.Fatalf("no consumer state to damage: %v", err)
	}
	if err := os.WriteFile(odat, []byte("\xff\xfe garbage, not a consumer state"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !also {
		return
	}
	for n := 1; n <= bus.MaxConsumerReplacements; n++ {
		dst := td.consumerStateDir(name + "_r" + strconv.Itoa(n))
		if err := os.CopyFS(dst, os.DirFS(td.consumerStateDir(name))); err != nil {
			t.Fatal(err)
		}
	}
}

// orderPaid creates an order and waits for the saga to mark it PAID.
func (td *testDaemon) orderPaid(t *testing.T, wait time.Duration) {
	t.Helper()
	r := td.do(t, "POST", "/orders", "application/json", orderBody)
	if r.status != 201 {
		t.Fatalf("POST /orders: %d %s", r.status, r.body)
	}
	id, _ := r.json(t)["id"].(string)
	testkit.Eventually(t, wait, func() string {
		g := td.do(t, "GET", "/orders/"+id, "", "")
		if m := g.json(t); g.status != 200 || m["status"] != "PAID" {
			return fmt.Sprintf("GET /orders/%s: %d %v", id, g.status, m)
		}
		return ""
	})
}

// serviceView is one entry of /v1/services.
func (td *testDaemon) serviceView(t *testing.T, name string) (status, lastError string) {
	t.Helper()
	_, body := adminGet(t, td, "/v1/services", "")
	var v struct {
		Services []struct {
			Name, Status string
			LastError    string `json:"last_error"`
		}
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	for _, s := range v.Services {
		if s.Name == name {
			return s.Status, s.LastError
		}
	}
	return "", ""
}

// The payment service's durable consumer of ORDER_CREATED is damaged on
// disk while meshd is down. At the restart the bus replaces it: payment
// serves, /readyz says ready, and a new order is paid (before, payment
// was refused, every new order was cancelled after its payment timeout,
// and /readyz said ready).
func TestDamagedConsumerStateIsRepaired(t *testing.T) {
	td := startDaemonWith(t, []string{"order", "payment"}, nil, nil)
	td.orderPaid(t, 30*time.Second)
	td = td.restart(t, func() { td.damageConsumer(t, bus.ConsumerName("payment", "ORDER_CREATED"), false) })
	if code, body := adminGet(t, td, "/readyz", ""); code != 200 {
		t.Fatalf("/readyz after the repair: %d %s", code, body)
	}
	td.orderPaid(t, 30*time.Second)
	_, m := adminGet(t, td, "/metrics", "")
	s := samples(t, m)
	if got := sum(s, "meshd_event_consumers_replaced_total", `service="payment"`, `topic="ORDER_CREATED"`); got != 1 {
		t.Errorf("meshd_event_consumers_replaced_total of payment's ORDER_CREATED = %v, want 1", got)
	}
	if got := sum(s, "meshd_service_up", `service="payment"`); got != 1 {
		t.Errorf("meshd_service_up of payment = %v, want 1", got)
	}
	if !strings.Contains(td.logs.String(), "its replacement delivers every stored event") {
		t.Error("the replacement is not logged")
	}
}

// When no durable can be opened (the consumer and every replacement the
// bus may make are damaged), payment is refused and is visibly DOWN:
// /readyz fails naming it and why, the registry says DOWN, /v1/services
// shows the error, meshd_service_up is 0. The other service serves.
func TestUnrepairableConsumerIsDown(t *testing.T) {
	td := startDaemonWith(t, []string{"order", "payment"}, nil, nil)
	td.orderPaid(t, 30*time.Second)
	td = td.restart(t, func() { td.damageConsumer(t, bus.ConsumerName("payment", "ORDER_CREATED"), true) })
	code, body := adminGet(t, td, "/readyz", "")
	if code != 503 || !strings.Contains(body, "service payment does not serve") || !strings.Contains(body, "cannot open the stored state") ||
		strings.Contains(body, "service order") {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	if st, _ := td.Registry().Status("payment"); st != registry.Down {
		t.Errorf("registry status of payment %q, want DOWN", st)
	}
	if st, why := td.serviceView(t, "payment"); st != "FAILED" || !strings.Contains(why, "cannot open the stored state") {
		t.Errorf("/v1/services payment: %s %q", st, why)
	}
	_, m := adminGet(t, td, "/metrics", "")
	s := samples(t, m)
	if got, ok := s[`meshd_service_up{service="payment"}`]; !ok || got != 0 {
		t.Errorf("meshd_service_up of payment = %v (present %v), want 0", got, ok)
	}
	if got := sum(s, "meshd_service_up", `service="order"`); got != 1 {
		t.Errorf("meshd_service_up of order = %v, want 1", got)
	}
}

// /readyz fails while a module of the plugin directory does not serve and
// names it with the reason; a module refused while its previous version
// serves leaves the node ready, named as degraded.
func TestReadyzNamesServicesThatDoNotServe(t *testing.T) {
	td := startDaemonWith(t, []string{"order"}, map[string][]byte{"broken.wasm": []byte("not wasm\n\x1b[31m")}, func(c *Config) { c.NoWatch = true })
	code, body := adminGet(t, td, "/readyz", "")
	if code != 503 || !strings.Contains(body, "service broken does not serve: refused: broken.wasm") || strings.Contains(body, "service order") {
		t.Fatalf("/readyz with a refused module: %d %q", code, body)
	}
	if strings.ContainsAny(body, "\x1b") {
		t.Fatalf("/readyz passes control bytes through: %q", body)
	}
	if st, _ := td.Registry().Status("broken"); st != registry.Down {
		t.Errorf("registry status of broken %q, want DOWN", st)
	}
	if err := os.Remove(filepath.Join(td.dir, "broken.wasm")); err != nil {
		t.Fatal(err)
	}
	if code, body := adminGet(t, td, "/readyz", ""); code != 200 || strings.Contains(body, "degraded") {
		t.Fatalf("/readyz once the refused file is gone: %d %q", code, body)
	}

	// A refused newer module: order keeps serving its previous version.
	path := filepath.Join(td.dir, "order.wasm")
	if err := os.WriteFile(path, []byte("not wasm either"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := td.LoadFile(context.Background(), path); err == nil {
		t.Fatal("garbage loaded")
	}
	code, body = adminGet(t, td, "/readyz", "")
	if code != 200 || !strings.Contains(body, "degraded: service order: version "+td.lookup("order").Version()+" serves; the module file was refused") {
		t.Fatalf("/readyz with order degraded: %d %q", code, body)
	}
	if st, _ := td.Registry().Status("order"); st != registry.Up {
		t.Errorf("registry status of order %q, want UP", st)
	}
}

// lateGuest is a WAT guest subscribing LATE (handled at once), with the
// given routes.
func lateGuest(t *testing.T, routes ...string) []byte {
	t.Helper()
	decl := abi.Declaration{Subscriptions: []abi.Subscription{{Type: "LATE"}}, Routes: declaredRoutes(routes...)}
	dj, err := json.Marshal(decl)
	if err != nil {
		t.Fatal(err)
	}
	src := `(module
  (import "meshd" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 4096) ` + watString(dj) + `)
  (func (export "meshd_abi_v1"))
  (func (export "meshd_describe") (result i32)
    (drop (call $output_write (i32.const 4096) (i32.const ` + strconv.Itoa(len(dj)) + `)))
    (i32.const 0))
  (func (export "meshd_http") (param i32) (result i32) (i32.const 1))
  (func (export "meshd_event") (param i32) (result i32) (i32.const 0)))`
	return wattest.Compile(t, "late.wat", src)
}

// Events waiting for a service are not handed to it while it loads: a
// load refused after its subscriptions were made (here a route conflict,
// decided at the swap) delivers none of them, and the load that succeeds
// hands each over at its first attempt.
func TestLoadingServiceIsHandedNoEvent(t *testing.T) {
	var failed, delivered, later atomic.Int64
	td := startDaemonWith(t, []string{"order"}, nil, func(c *Config) {
		c.NoWatch = true
		c.Events.Hooks.Delivered = func(service, _ string, attempt int, err error, _ time.Duration) {
			if service != "late" {
				return
			}
			delivered.Add(1)
			if err != nil {
				failed.Add(1)
			}
			if attempt > 1 {
				later.Add(1)
			}
		}
	})
	ctx := context.Background()
	const n = 40
	for i := range n {
		if err := td.Bus().Publish(ctx, bus.NewEvent("test", "LATE", []byte(strconv.Itoa(i)))); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(td.dir, "late.wasm")
	if err := os.WriteFile(filepath.Join(td.dir, "late.toml"), []byte("[grants]\nsubscribe = [\"LATE\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, lateGuest(t, "POST /orders"), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := td.LoadFile(ctx, path); err == nil || !strings.Contains(err.Error(), "POST /orders") {
			t.Fatalf("a module taking order's route: %v", err)
		}
	}
	if d := delivered.Load(); d != 0 {
		t.Fatalf("%d deliveries to a service whose load was refused (%d failed)", d, failed.Load())
	}
	infos, err := td.Bus().Consumers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ci := range infos {
		if ci.Service == "late" && (ci.Pending != n || ci.AckPending != 0 || ci.Redelivered != 0) {
			t.Fatalf("late's consumer after refused loads: %+v, want all %d pending", ci, n)
		}
	}

	if err := os.WriteFile(path, lateGuest(t), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := td.LoadFile(ctx, path); err != nil {
		t.Fatal(err)
	}
	testkit.Until(t, 30*time.Second, "every waiting event handled", func() bool { return delivered.Load() >= n })
	if f, l := failed.Load(), later.Load(); f != 0 || l != 0 {
		t.Fatalf("%d deliveries failed, %d were not the first attempt", f, l)
	}
}
