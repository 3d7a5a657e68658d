package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/internal/testkit"
)

const flakyGrants = `
[grants]
publish = ["FLAKY_DONE"]
subscribe = ["FLAKY"]
kv = true

[events]
max_attempts = 3
`

func startFlaky(t *testing.T) *testDaemon {
	t.Helper()
	return startDaemonWith(t, nil, map[string][]byte{
		"flaky.wasm": readFile(t, fixture(t, "testdata/guest-flaky.wasm")),
		"flaky.toml": []byte(flakyGrants),
	}, func(c *Config) {
		c.Events = bus.Config{Backoff: []time.Duration{10 * time.Millisecond}}
	})
}

func (td *testDaemon) flakyCount(t *testing.T, id string) float64 {
	t.Helper()
	r := td.do(t, "GET", "/flaky/count/"+id, "", "")
	if r.status != 200 {
		t.Fatalf("count: %d %s", r.status, r.body)
	}
	return r.json(t)["count"].(float64)
}

func publishFlaky(t *testing.T, td *testDaemon, id string, fail int) {
	t.Helper()
	ev := bus.NewEvent("test", "FLAKY", fmt.Appendf(nil, `{"id":%q,"fail":%d}`, id, fail))
	if err := td.Bus().Publish(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
}

// A handler that fails twice then succeeds: its effects (a KV write and an
// event) are applied exactly once and nothing is dead-lettered.
func TestFlakyHandlerEffectsAppliedOnce(t *testing.T) {
	td := startFlaky(t)
	publishFlaky(t, td, "a", 2)
	testkit.Until(t, 20*time.Second, "the third attempt succeeds", func() bool { return td.flakyCount(t, "a") >= 1 })
	// The event is published after the key write is applied, so it can
	// trail the count by a moment.
	testkit.Until(t, 20*time.Second, "FLAKY_DONE published", func() bool { return td.eventsStored(t, "FLAKY_DONE") >= 1 })
	if n := td.flakyCount(t, "a"); n != 1 {
		t.Fatalf("count = %v, want 1 (effects of failed attempts applied?)", n)
	}
	if n := td.eventsStored(t, "FLAKY_DONE"); n != 1 {
		t.Fatalf("FLAKY_DONE stored %d times, want 1", n)
	}
	dls, err := td.DeadLetters(context.Background(), "flaky")
	if err != nil || len(dls) != 0 {
		t.Fatalf("dead letters %v %v", dls, err)
	}
}

// A handler that always fails: dead-lettered with the reason and the count
// (the service's max_attempts), then delivered by a redrive once fixed.
func TestAlwaysFailingHandlerDeadLetteredThenRedriven(t *testing.T) {
	td := startFlaky(t)
	ctx := context.Background()
	publishFlaky(t, td, "b", -1)
	var dls []bus.DeadLetter
	testkit.Until(t, 20*time.Second, "dead-lettered", func() bool {
		var err error
		dls, err = td.DeadLetters(ctx, "flaky")
		return err == nil && len(dls) == 1
	})
	if dl := dls[0]; dl.Attempts != 3 || !strings.Contains(dl.Reason, "broken until fixed") || dl.Service != "flaky" || dl.Event.Type != "FLAKY" {
		t.Fatalf("dead letter %+v", dl)
	}
	if n := td.flakyCount(t, "b"); n != 0 {
		t.Fatalf("count = %v after only failures", n)
	}
	// The admin API lists it too.
	if r := td.adminDo(t, "GET", "/v1/events/dlq?service=flaky"); !strings.Contains(r, `"attempts":3`) {
		t.Fatalf("admin dlq list: %s", r)
	}
	if r := td.adminDo(t, "GET", "/v1/events/consumers"); !strings.Contains(r, `"service":"flaky","type":"FLAKY","pending":`) || !strings.Contains(r, `"ack_pending":`) {
		t.Fatalf("admin consumers: %s", r)
	}
	if r := td.do(t, "POST", "/flaky/fix", "", ""); r.status != 200 {
		t.Fatalf("fix: %d", r.status)
	}
	if r := td.adminDo(t, "POST", "/v1/events/dlq/redrive?service=flaky"); !strings.Contains(r, `"redriven":1`) {
		t.Fatalf("redrive: %s", r)
	}
	testkit.Until(t, 20*time.Second, "the redriven event is handled", func() bool { return td.flakyCount(t, "b") == 1 })
	if dls, err := td.DeadLetters(ctx, "flaky"); err != nil || len(dls) != 0 {
		t.Fatalf("dead letters after redrive: %v %v", dls, err)
	}
}

func (td *testDaemon) adminDo(t *testing.T, method, path string) string {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+td.AdminAddr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

type orderView struct {
	ID, UserID, Status, Reason string
	PaymentID                  string `json:"payment_id"`
}

func (td *testDaemon) userOrders(t *testing.T, user string) []orderView {
	t.Helper()
	r := td.do(t, "GET", "/users/"+user+"/orders?limit=1000", "", "")
	if r.status != 200 {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	var page struct{ Orders []orderView }
	if err := json.Unmarshal(r.body, &page); err != nil {
		t.Fatal(err)
	}
	return page.Orders
}

// postOrder makes an order as a patient client would (testkit.PostJSON:
// a request shed while the pipeline lags is sent again); anything but 201
// is an error.
func (td *testDaemon) postOrder(ctx context.Context, body string) error {
	status, b, err := testkit.PostJSON(ctx, client, td.base+"/orders", body)
	if err == nil && status != 201 {
		err = fmt.Errorf("POST /orders: %d %s", status, b[:min(len(b), 512)])
	}
	return err
}

// 1,000 orders, every 4th over the payment limit, all end as the rules
// say; the read model rebuilt by replay equals the one it replaced.
func TestSagaThousandOrdersAndReplay(t *testing.T) {
	td := startDaemonWith(t, []string{"order", "payment"}, nil, nil)
	const n = 1000
	tally := testkit.Hammer(context.Background(), t, testkit.Load{Workers: 8, Calls: n, For: 5 * time.Minute}, func(ctx context.Context, i int) error {
		user, price := "under", 1000
		if i%4 == 0 {
			user, price = "over", 6000000
		}
		return td.postOrder(ctx, fmt.Sprintf(`{"user_id":%q,"items":[{"name":"x","price":%d}]}`, user, price))
	})
	if tally.Calls != n || tally.Failed != 0 {
		t.Fatalf("orders: %d of %d made, %d failed; first: %v", tally.Calls, n, tally.Failed, tally.First)
	}
	settled := func(user, want string, count int) func() bool {
		return func() bool {
			os := td.userOrders(t, user)
			if len(os) != count {
				return false
			}
			for _, o := range os {
				if o.Status != want {
					return false
				}
			}
			return true
		}
	}
	testkit.Until(t, 120*time.Second, "every under-limit order PAID", settled("under", "PAID", n-n/4))
	testkit.Until(t, 120*time.Second, "every over-limit order CANCELLED", settled("over", "CANCELLED", n/4))
	for _, o := range td.userOrders(t, "over") {
		if !strings.Contains(o.Reason, "over the limit") || o.PaymentID != "" {
			t.Fatalf("cancelled order %+v", o)
		}
	}
	under := td.do(t, "GET", "/users/under/orders?limit=1000", "", "").body
	over := td.do(t, "GET", "/users/over/orders?limit=1000", "", "").body

	res, err := td.Replay(context.Background(), "order")
	if err != nil {
		t.Fatal(err)
	}
	if res.Dropped < n || res.Events < 2*n {
		t.Fatalf("replay %+v", res)
	}
	if got := td.do(t, "GET", "/users/under/orders?limit=1000", "", "").body; string(got) != string(under) {
		t.Fatalf("rebuilt read model differs for user under")
	}
	if got := td.do(t, "GET", "/users/over/orders?limit=1000", "", "").body; string(got) != string(over) {
		t.Fatalf("rebuilt read model differs for user over")
	}
}

// No payment result within payment_timeout: the order cancels itself; a
// payment that arrives later is refunded.
func TestPaymentTimeoutThenRefund(t *testing.T) {
	orderToml := readFile(t, fixture(t, "../build/plugins/order.toml"))
	orderToml = []byte(strings.Replace(string(orderToml), `payment_timeout = "30s"`, `payment_timeout = "1s"`, 1))
	td := startDaemonWith(t, []string{}, map[string][]byte{
		"order.wasm": readFile(t, fixture(t, "../build/plugins/order.wasm")),
		"order.toml": orderToml,
	}, func(c *Config) { c.NoWatch = true })
	r := td.do(t, "POST", "/orders", "application/json", `{"user_id":"late","items":[{"name":"x","price":5}]}`)
	if r.status != 201 {
		t.Fatalf("POST: %d %s", r.status, r.body)
	}
	id := r.json(t)["id"].(string)
	var o map[string]any
	testkit.Until(t, 20*time.Second, "cancelled by the timeout", func() bool {
		o = td.do(t, "GET", "/orders/"+id, "", "").json(t)
		return o["status"] == "CANCELLED"
	})
	if o["reason"] != "payment timeout" {
		t.Fatalf("order %v", o)
	}
	// Payment comes up late and pays the order it missed: refunded.
	for _, f := range []string{"payment.wasm", "payment.toml"} {
		copyFile(t, fixture(t, filepath.Join("..", "build", "plugins", f)), filepath.Join(td.dir, f))
	}
	if err := td.LoadFile(context.Background(), filepath.Join(td.dir, "payment.wasm")); err != nil {
		t.Fatal(err)
	}
	testkit.Until(t, 20*time.Second, "PAYMENT_REFUNDED", func() bool { return td.eventsStored(t, "PAYMENT_REFUNDED") == 1 })
	if o := td.do(t, "GET", "/orders/"+id, "", "").json(t); o["status"] != "CANCELLED" {
		t.Fatalf("order after late payment %v", o)
	}
}

// With `serial = true`, handlers that read, add one and write back lose no
// update while the bus delivers events to several handlers at once: 200
// deliveries of one id count to exactly 200.
func TestSerialHandlersLoseNoUpdate(t *testing.T) {
	td := startDaemonWith(t, nil, map[string][]byte{
		"flaky.wasm": readFile(t, fixture(t, "testdata/guest-flaky.wasm")),
		"flaky.toml": []byte(flakyGrants + "serial = true\n"),
	}, func(c *Config) {
		c.Events = bus.Config{Backoff: []time.Duration{10 * time.Millisecond}, Concurrency: 8}
	})
	countSame(t, td, 200)
}

// countSame publishes n FLAKY events of the id "same" and checks that the
// flaky guest's read-add-write counted every one of them once.
func countSame(t *testing.T, td *testDaemon, n int) {
	t.Helper()
	for range n {
		publishFlaky(t, td, "same", 0)
	}
	testkit.Until(t, 60*time.Second, "every event is counted", func() bool { return td.flakyCount(t, "same") >= float64(n) })
	time.Sleep(200 * time.Millisecond) // a late duplicate would show
	if got := td.flakyCount(t, "same"); got != float64(n) {
		t.Fatalf("count = %v after %d events, want %d", got, n, n)
	}
}

// Events that waited while a service was removed are delivered when it
// comes back, and none fails for arriving while the returning version is
// being swapped in (subscriptions start just before the swap): each is
// handled at its first attempt.
func TestEventsWaitingForAServiceFailNoAttempt(t *testing.T) {
	var failed atomic.Int64
	td := startDaemonWith(t, nil, map[string][]byte{
		"flaky.wasm": readFile(t, fixture(t, "testdata/guest-flaky.wasm")),
		"flaky.toml": []byte(flakyGrants),
	}, func(c *Config) {
		c.Events = bus.Config{Backoff: []time.Duration{10 * time.Millisecond}}
		c.NoWatch = true
		c.Events.Hooks.Delivered = func(service, _ string, _ int, err error, _ time.Duration) {
			if service == "flaky" && err != nil {
				failed.Add(1)
			}
		}
	})
	ctx := context.Background()
	path := filepath.Join(td.cfg.PluginDir, "flaky.wasm")
	if err := td.RemoveService(ctx, "flaky"); err != nil {
		t.Fatal(err)
	}
	const n = 300
	for i := range n {
		publishFlaky(t, td, fmt.Sprint(i), 0)
	}
	if err := td.LoadFile(ctx, path); err != nil {
		t.Fatal(err)
	}
	// Handlers run at once and an event that found no service comes back
	// after its own delay: the last one handled says nothing of the others.
	next := 0
	testkit.Until(t, 60*time.Second, "every waiting event is handled", func() bool {
		for next < n && td.flakyCount(t, fmt.Sprint(next)) >= 1 {
			next++
		}
		return next == n
	})
	for i := range n {
		if c := td.flakyCount(t, fmt.Sprint(i)); c != 1 {
			t.Fatalf("event %d counted %v times", i, c)
		}
	}
	if f := failed.Load(); f != 0 {
		t.Fatalf("%d deliveries failed while the service came back", f)
	}
}
