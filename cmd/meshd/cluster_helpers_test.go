package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshd/meshd/host/natsd/natsdtest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The helpers of the cluster process tests (cluster_load_test.go): a mesh
// of real meshd processes on loopback, orders posted to its gateways, and
// the checks that every accepted order settled once.

// paymentLimit is the payment service's [config] limit in
// plugins/payment/payment.toml: an order whose total is over it is
// declined (PAYMENT_FAILED) and cancelled with limitReason.
const paymentLimit = 5000000

// limitReason is the reason a cancelled order over the limit carries
// (plugins/payment's orderCreated).
func limitReason(total int64) string {
	return "amount " + strconv.FormatInt(total, 10) + " is over the limit of " + strconv.Itoa(paymentLimit)
}

// streamUser and its password may read the event stream through the
// client port of the mesh's stream node.
const (
	streamUser     = "reader"
	streamPassword = "cluster-load-test-password"
)

// meshCluster is three meshd processes on loopback forming one NATS
// cluster. Node streamNode also opens a NATS client port (only the
// JetStream API and inboxes granted) from which the test reads the event
// stream.
type meshCluster struct {
	t     *testing.T
	bin   string
	args  [][]string // each node's command line, for a restart
	nodes []*clusterNode
	bases []string // each node's gateway, http://host:port
	// before holds the logs of the nodes' earlier runs (restart).
	before []string
	// streamNode is the index of the node with the client port, natsURL
	// that port.
	streamNode int
	natsURL    string
}

// startMesh starts one node per entry of services (the demo plugins each
// runs) and waits until every node serves.
func startMesh(t *testing.T, services [][]string, streamNode int) *meshCluster {
	t.Helper()
	c := &meshCluster{t: t, bin: buildMeshd(t), streamNode: streamNode}
	ports := natsdtest.FreePorts(t, len(services))
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	for i, p := range ports {
		var files map[string]string
		if len(services[i]) > 0 {
			files = demoPlugins(services[i]...)
		}
		dir, plugins := pluginDir(t, files)
		args := []string{"run", "--plugins", plugins, "--data", filepath.Join(dir, "data"),
			"--http", "127.0.0.1:0", "--admin", "off", "--no-watch", "--node", fmt.Sprintf("n%d", i+1),
			"--cluster-name", "load", "--cluster-listen", fmt.Sprintf("127.0.0.1:%d", p), "--cluster-routes", strings.Join(routes, ",")}
		if i == streamNode {
			pw := writeSecret(t, dir, "nats.pw", streamPassword+"\n")
			args = append(args, "--nats-listen", "127.0.0.1:0", "--nats-user", streamUser, "--nats-password-file", pw,
				"--nats-allow-publish", "$JS.API.>", "--nats-allow-subscribe", "_INBOX.>")
		}
		c.args = append(c.args, args)
		c.nodes = append(c.nodes, startClusterNode(t, c.bin, args...))
	}
	t.Cleanup(c.saveLogs)
	c.bases = make([]string, len(c.nodes))
	for i := range c.nodes {
		c.bases[i] = c.waitServing(i, 4*time.Minute)
	}
	m := natsClientURL.FindStringSubmatch(c.nodes[streamNode].logs.String())
	if m == nil {
		t.Fatalf("node %d names no client_url; logs:\n%s", streamNode+1, tail(c.nodes[streamNode].logs.String(), 4000))
	}
	c.natsURL = m[1]
	return c
}

// waitServing waits at most d for node i to serve and returns its gateway.
func (c *meshCluster) waitServing(i int, d time.Duration) string {
	c.t.Helper()
	select {
	case a := <-c.nodes[i].addr:
		return "http://" + a
	case <-time.After(d):
		c.t.Fatalf("node %d did not start serving within %v; logs:\n%s", i+1, d, tail(c.nodes[i].logs.String(), 4000))
	}
	return ""
}

// kill SIGKILLs node i and reaps it.
func (c *meshCluster) kill(i int) {
	c.t.Helper()
	if err := c.nodes[i].cmd.Process.Kill(); err != nil {
		c.t.Fatal(err)
	}
	_ = c.nodes[i].cmd.Wait()
}

// restart starts node i again with its data directory and flags and waits
// at most d until it serves.
func (c *meshCluster) restart(i int, d time.Duration) {
	c.t.Helper()
	c.before = append(c.before, fmt.Sprintf("n%d-run%d.log\n%s", i+1, len(c.before)+1, c.nodes[i].logs.String()))
	c.nodes[i] = startClusterNode(c.t, c.bin, c.args[i]...)
	c.bases[i] = c.waitServing(i, d)
}

// saveLogs writes every node's whole log into the test's artifact
// directory when the test failed (kept with go test -artifacts).
func (c *meshCluster) saveLogs() {
	if !c.t.Failed() {
		return
	}
	dir := c.t.ArtifactDir()
	write := func(name, logs string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(logs), 0o644); err != nil {
			c.t.Log(err)
		}
	}
	for _, b := range c.before {
		name, logs, _ := strings.Cut(b, "\n")
		write(name, logs)
	}
	for i, n := range c.nodes {
		write(fmt.Sprintf("n%d.log", i+1), n.logs.String())
	}
	c.t.Logf("the nodes' logs are in %s", dir)
}

// logs is every node's recent log, without route noise, for a failure.
func (c *meshCluster) logs() string {
	var b strings.Builder
	for i, n := range c.nodes {
		fmt.Fprintf(&b, "--- node %d:\n%s\n", i+1, quiet(n.logs.String(), 3000))
	}
	return b.String()
}

// placed is an order the test posted and a gateway took (201).
type placed struct {
	id, user string
	total    int64
	gateway  int // index of the node whose gateway took it
}

// over reports whether the order is over the payment limit.
func (o placed) over() bool { return o.total > paymentLimit }

// orderTotal is the total of the n-th order of a test: every third is
// over the payment limit, the others under it; all differ.
func orderTotal(n int) int64 {
	if n%3 == 2 {
		return paymentLimit + 1 + int64(n)
	}
	return 1000 + int64(n)
}

// newLoadClient is an HTTP client for many concurrent requests to a few
// gateways.
func newLoadClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &http.Client{Timeout: 10 * time.Second, Transport: tr}
}

// postOrder posts one order of total to base. It returns the order's id
// when the gateway took it (201), else the status (0: no answer) and why.
func postOrder(client *http.Client, base, user string, total int64) (id string, status int, err error) {
	body := fmt.Sprintf(`{"user_id":%q,"items":[{"name":"load","price":%d}]}`, user, total)
	resp, err := client.Post(base+"/orders", "application/json", strings.NewReader(body))
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusCreated {
		var p struct {
			Title string `json:"title"`
		}
		_ = json.Unmarshal(b, &p)
		return "", resp.StatusCode, &refusal{status: resp.StatusCode, title: p.Title, retryAfter: resp.Header.Get("Retry-After"), body: cut(string(b), 300)}
	}
	var o struct {
		ID    string `json:"id"`
		Total int64  `json:"total"`
	}
	if err := json.Unmarshal(b, &o); err != nil || o.ID == "" || o.Total != total {
		return "", resp.StatusCode, fmt.Errorf("POST /orders: 201 with %s", strconv.Quote(cut(string(b), 300)))
	}
	return o.ID, resp.StatusCode, nil
}

// refusal is the error of a POST /orders answered other than 201: its
// status, its problem's title, its Retry-After, and its body (cut).
type refusal struct {
	status     int
	title      string
	retryAfter string
	body       string
}

func (r *refusal) Error() string {
	return fmt.Sprintf("POST /orders: %d %s", r.status, strconv.Quote(r.body))
}

// cut is s cut to at most n bytes.
func cut(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// view is an order as the order service serves it.
type view struct {
	ID        string `json:"id"`
	UserID    string `json:"user_id"`
	Total     int64  `json:"total"`
	Status    string `json:"status"`
	PaymentID string `json:"payment_id"`
	Reason    string `json:"reason"`
}

func final(status string) bool { return status == "PAID" || status == "CANCELLED" }

// getJSON GETs base+path into v; it returns the status (0: no answer).
func getJSON(client *http.Client, base, path string, v any) (int, error) {
	resp, err := client.Get(base + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, strconv.Quote(cut(string(b), 300)))
	}
	return resp.StatusCode, json.Unmarshal(b, v)
}

// userOrders reads a user's whole order list (the read model), page by
// page (at most 100 pages).
func userOrders(client *http.Client, base, user string) ([]view, error) {
	var all []view
	cursor := ""
	for range 100 {
		q := url.Values{"limit": {"1000"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page struct {
			Orders     []view `json:"orders"`
			NextCursor string `json:"next_cursor"`
		}
		if _, err := getJSON(client, base, "/users/"+url.PathEscape(user)+"/orders?"+q.Encode(), &page); err != nil {
			return nil, err
		}
		all = append(all, page.Orders...)
		if cursor = page.NextCursor; cursor == "" {
			return all, nil
		}
	}
	return nil, errors.New("more than 100 pages")
}

// readModel polls the users' order lists on base until every order of
// orders is listed with a final status, or until d passes; it returns the
// last lists read, by order id.
func readModel(t *testing.T, client *http.Client, base string, users []string, orders []placed, d time.Duration) map[string]view {
	t.Helper()
	var views map[string]view
	var lastErr error
	for deadline := time.Now().Add(d); ; time.Sleep(500 * time.Millisecond) {
		views, lastErr = make(map[string]view), nil
		for _, u := range users {
			list, err := userOrders(client, base, u)
			if err != nil {
				lastErr = err
				break
			}
			for _, v := range list {
				views[v.ID] = v
			}
		}
		done := lastErr == nil
		for _, o := range orders {
			if v, ok := views[o.id]; !ok || !final(v.Status) {
				done = false
				break
			}
		}
		if done || time.Now().After(deadline) {
			break
		}
	}
	if lastErr != nil {
		t.Logf("reading the order lists: %v", lastErr)
	}
	return views
}

// checkOrders asserts that every order of orders is listed in its user's
// order list with its final state: CANCELLED for the limit when over it,
// else PAID by the payment whose id derives from the order's. A missing
// or unsettled order is looked up on the command side (GET /orders/{id})
// for the report. It returns how many orders failed the check.
func checkOrders(t *testing.T, client *http.Client, base string, orders []placed, views map[string]view) int {
	t.Helper()
	bad := 0
	for _, o := range orders {
		v, ok := views[o.id]
		var problem string
		switch {
		case !ok:
			problem = "not in its user's order list"
		case v.UserID != o.user || v.Total != o.total:
			problem = fmt.Sprintf("listed as user %q total %d", v.UserID, v.Total)
		case o.over() && (v.Status != "CANCELLED" || v.Reason != limitReason(o.total)):
			problem = fmt.Sprintf("is %s (reason %q), want CANCELLED (reason %q)", v.Status, v.Reason, limitReason(o.total))
		case !o.over() && (v.Status != "PAID" || v.PaymentID != "pay-"+o.id):
			problem = fmt.Sprintf("is %s (payment %q), want PAID by %q", v.Status, v.PaymentID, "pay-"+o.id)
		}
		if problem == "" {
			continue
		}
		if bad++; bad <= 10 {
			var cmd view
			code, err := getJSON(client, base, "/orders/"+url.PathEscape(o.id), &cmd)
			t.Errorf("order %s (total %d, via node %d) %s; GET /orders/{id}: %d %s %v", o.id, o.total, o.gateway+1, problem, code, cmd.Status, err)
		}
	}
	if bad > 10 {
		t.Errorf("... %d orders in all failed the check", bad)
	}
	return bad
}

// extraOrders is the orders the lists hold that are not among orders:
// none, or orders whose POST got no 201 but that were made (a request
// lost with a node).
func extraOrders(views map[string]view, orders []placed) []view {
	known := make(map[string]bool, len(orders))
	for _, o := range orders {
		known[o.id] = true
	}
	var extra []view
	for id, v := range views {
		if !known[id] {
			extra = append(extra, v)
		}
	}
	return extra
}

// payment is a payment as the payment service serves it.
type payment struct {
	ID      string `json:"id"`
	OrderID string `json:"order_id"`
	Amount  int64  `json:"amount"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
}

// checkPayments asserts, through base's gateway, that each order has its
// one payment (id "pay-" + the order's) with the order's total: COMPLETED
// under the limit, DECLINED over it (never REFUNDED).
func checkPayments(t *testing.T, client *http.Client, base string, orders []placed) {
	t.Helper()
	var mu sync.Mutex
	bad := 0
	work := make(chan placed)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for o := range work {
				var p payment
				var err error
				for attempt := 0; attempt < 3; attempt++ { // a GET is safe to repeat
					if _, err = getJSON(client, base, "/payments/"+url.PathEscape("pay-"+o.id), &p); err == nil {
						break
					}
				}
				want := "COMPLETED"
				if o.over() {
					want = "DECLINED"
				}
				if err == nil && p.ID == "pay-"+o.id && p.OrderID == o.id && p.Amount == o.total && p.Status == want {
					continue
				}
				mu.Lock()
				if bad++; bad <= 10 {
					t.Errorf("payment of order %s (total %d): %+v, %v; want %s", o.id, o.total, p, err, want)
				}
				mu.Unlock()
			}
		})
	}
	for _, o := range orders {
		work <- o
	}
	close(work)
	wg.Wait()
	if bad > 10 {
		t.Errorf("... %d payments in all failed the check", bad)
	}
}

// eventCounts counts, per order id, the saga's events in the event
// stream: the event type → how many, and the payment ids the payment
// events named.
type eventCounts struct {
	types    map[string]int
	payments map[string]bool
}

// sagaTypes are the event types readEvents counts.
var sagaTypes = map[string]bool{
	"ORDER_CREATED": true, "PAYMENT_COMPLETED": true, "PAYMENT_FAILED": true, "ORDER_PAID": true,
	"ORDER_CANCELLED": true, "REFUND_REQUESTED": true, "PAYMENT_REFUNDED": true,
}

// readEvents reads the event stream (MESHD_EVENTS) through the stream
// node's client port, up to its last event at the time of the call, and
// counts the saga's events per order id. It reads again, until ctx ends,
// while JetStream does not answer (a node restarted a moment ago, a
// stream electing its leader).
func (c *meshCluster) readEvents(ctx context.Context) (map[string]*eventCounts, error) {
	for {
		counts, err := c.readEventsOnce(ctx)
		if err == nil || ctx.Err() != nil || !(errors.Is(err, nats.ErrNoResponders) ||
			errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrTimeout) ||
			errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, context.DeadlineExceeded)) {
			return counts, err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// readEventsOnce is one try of readEvents.
func (c *meshCluster) readEventsOnce(ctx context.Context) (map[string]*eventCounts, error) {
	nc, err := nats.Connect(c.natsURL, nats.UserInfo(streamUser, streamPassword), nats.NoReconnect())
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	stream, err := js.Stream(ctx, "MESHD_EVENTS")
	if err != nil {
		return nil, fmt.Errorf("stream MESHD_EVENTS: %w", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, err
	}
	last := info.State.LastSeq
	counts := make(map[string]*eventCounts)
	if info.State.Msgs == 0 {
		return counts, nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"meshd.events.>"}})
	if err != nil {
		return nil, err
	}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		for msg := range batch.Messages() {
			meta, err := msg.Metadata()
			if err != nil {
				return nil, err
			}
			if meta.Sequence.Stream > last {
				return counts, nil
			}
			typ := strings.TrimPrefix(msg.Subject(), "meshd.events.")
			if sagaTypes[typ] {
				var d struct {
					ID        string `json:"id"`
					OrderID   string `json:"order_id"`
					PaymentID string `json:"payment_id"`
				}
				if err := json.Unmarshal(msg.Data(), &d); err != nil {
					return nil, fmt.Errorf("event %d %s: %w", meta.Sequence.Stream, typ, err)
				}
				id := d.OrderID
				if typ == "ORDER_CREATED" {
					id = d.ID
				}
				ec := counts[id]
				if ec == nil {
					ec = &eventCounts{types: map[string]int{}, payments: map[string]bool{}}
					counts[id] = ec
				}
				ec.types[typ]++
				if d.PaymentID != "" {
					ec.payments[d.PaymentID] = true
				}
			}
			if meta.Sequence.Stream >= last {
				return counts, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, err
		}
	}
	return nil, ctx.Err()
}

// checkEvents asserts the event stream's view of each order: one
// ORDER_CREATED; one payment outcome of the right kind (PAYMENT_FAILED
// over the limit, PAYMENT_COMPLETED under it) and one final order event
// (ORDER_CANCELLED, ORDER_PAID), or, when exact is false (a node was
// killed: an event handled again after a crash publishes its outcome
// again), at least one of each and none of the other kind; the payment
// events name only the order's one payment; no refund anywhere. It
// returns how many outcomes were published more than once.
func checkEvents(t *testing.T, counts map[string]*eventCounts, orders []placed, exact bool) (repeats int) {
	t.Helper()
	bad := 0
	for _, o := range orders {
		ec := counts[o.id]
		if ec == nil {
			ec = &eventCounts{types: map[string]int{}, payments: map[string]bool{}}
		}
		outcome, other, end, otherEnd := "PAYMENT_COMPLETED", "PAYMENT_FAILED", "ORDER_PAID", "ORDER_CANCELLED"
		if o.over() {
			outcome, other, end, otherEnd = other, outcome, otherEnd, end
		}
		n := ec.types
		ok := n["ORDER_CREATED"] == 1 && n[outcome] >= 1 && n[end] >= 1 && n[other] == 0 && n[otherEnd] == 0 &&
			n["REFUND_REQUESTED"] == 0 && n["PAYMENT_REFUNDED"] == 0 &&
			len(ec.payments) == 1 && ec.payments["pay-"+o.id]
		if exact {
			ok = ok && n[outcome] == 1 && n[end] == 1
		}
		repeats += max(n[outcome]-1, 0)
		if ok {
			continue
		}
		if bad++; bad <= 10 {
			t.Errorf("order %s (total %d): events %v, payment ids %v; want one ORDER_CREATED, %s and %s, payment %q only",
				o.id, o.total, n, keys(ec.payments), outcome, end, "pay-"+o.id)
		}
	}
	if bad > 10 {
		t.Errorf("... %d orders in all with the wrong events", bad)
	}
	return repeats
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// statusCounts formats a status → count map for a report, in a stable
// order.
func statusCounts(m map[int]int) string {
	var b bytes.Buffer
	for code := 0; code < 600; code++ {
		if n := m[code]; n > 0 {
			fmt.Fprintf(&b, " %d×%d", code, n)
		}
	}
	return strings.TrimSpace(b.String())
}
