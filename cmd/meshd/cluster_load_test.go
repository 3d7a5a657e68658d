package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// clusterServices is what each node of the load tests runs: order and
// payment on nodes 1 and 2, nothing on node 3 (its gateway forwards).
var clusterServices = [][]string{{"order", "payment"}, {"order", "payment"}, nil}

// loadUsers are the users the load tests' orders belong to: few, so
// each user's order list takes many orders from every node at once.
var loadUsers = []string{"load-u0", "load-u1", "load-u2", "load-u3", "load-u4", "load-u5", "load-u6", "load-u7"}

// firstOrder posts order n to gateway gw until a gateway takes it, for at
// most d: the cluster has formed and the gateway reaches the services.
func firstOrder(t *testing.T, c *meshCluster, client *http.Client, gw, n int, d time.Duration) placed {
	t.Helper()
	o := placed{user: loadUsers[n%len(loadUsers)], total: orderTotal(n), gateway: gw}
	var err error
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if o.id, _, err = postOrder(client, c.bases[gw], o.user, o.total); err == nil {
			return o
		}
	}
	t.Fatalf("node %d's gateway took no order within %v: %v\n%s", gw+1, d, err, c.logs())
	return o
}

// settle checks that every order of orders settled once: the read model
// lists each in its final state (within d), the payment service holds its
// one payment, and the event stream holds one outcome per order (exact)
// or repeats of the same one (not exact). It returns the listed orders
// that are not among orders, and how many outcomes were repeated.
func settle(t *testing.T, c *meshCluster, client *http.Client, base string, orders []placed, d time.Duration, exact bool) (extra []view, repeats int) {
	t.Helper()
	start := time.Now()
	views := readModel(t, client, base, loadUsers, orders, d)
	t.Logf("read model: %d orders listed, settled %v after the last was accepted", len(views), time.Since(start).Round(100*time.Millisecond))
	if checkOrders(t, client, base, orders, views) > 0 {
		t.Logf("logs:\n%s", c.logs())
	}
	checkPayments(t, client, base, orders)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	counts, err := c.readEvents(ctx)
	if err != nil {
		t.Fatalf("reading the event stream: %v", err)
	}
	repeats = checkEvents(t, counts, orders, exact)
	return extraOrders(views, orders), repeats
}

// TestClusterThousandOrders: three meshd processes, order and payment on
// nodes 1 and 2 only; 1,000 orders posted round-robin over the three
// gateways by 16 workers, every third over the payment limit. Every order
// is taken (201), and settles once: under the limit PAID by its one
// payment, over it CANCELLED for the limit; one payment outcome and one
// final order event each in the event stream, no refund; every order in
// its user's order list, and no other.
func TestClusterThousandOrders(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three meshd processes under load; skipped with -short")
	}
	c := startMesh(t, clusterServices, 2)
	client := newLoadClient()
	const (
		total, workers = 1000, 16
		retryFor       = 90 * time.Second
	)
	orders := []placed{firstOrder(t, c, client, 2, 0, 60*time.Second)}

	var mu sync.Mutex
	refused := map[int]int{} // status → refusals retried (429, 503)
	var failures []string
	work := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for n := range work {
				o := placed{user: loadUsers[n%len(loadUsers)], total: orderTotal(n), gateway: n % 3}
				var code int
				var err error
				// Admission control's 429 and 503 overloaded are
				// refusals before the order is made (it sheds POST
				// /orders while the events behind it lag): retried,
				// pausing longer each time (at most 1 s, Retry-After's
				// least), for at most retryFor. Anything else fails the
				// order (a POST is not safe to repeat).
				giveUp := time.Now().Add(retryFor)
				for attempt := 0; ; attempt++ {
					o.id, code, err = postOrder(client, c.bases[o.gateway], o.user, o.total)
					if !shed(err) {
						break
					}
					mu.Lock()
					if refused[code]++; refused[code] == 1 {
						t.Logf("first %d, retried: %v", code, err)
					}
					mu.Unlock()
					if time.Now().After(giveUp) {
						break
					}
					time.Sleep(min(time.Second, 50*time.Millisecond<<min(attempt, 5)))
				}
				mu.Lock()
				if err == nil {
					orders = append(orders, o)
				} else {
					failures = append(failures, fmt.Sprintf("order %d via node %d: %v", n, o.gateway+1, err))
				}
				mu.Unlock()
			}
		})
	}
	for n := 1; n < total; n++ {
		work <- n
	}
	close(work)
	wg.Wait()
	took := time.Since(start)
	t.Logf("%d orders taken in %v over 3 gateways by %d workers: %.0f orders/s; refusals retried: %s",
		len(orders)-1, took.Round(10*time.Millisecond), workers, float64(len(orders)-1)/took.Seconds(), statusCounts(refused))
	if len(failures) > 0 {
		t.Fatalf("%d of %d orders were not taken, first: %s\n%s", len(failures), total-1, failures[0], c.logs())
	}

	extra, _ := settle(t, c, client, c.bases[2], orders, 150*time.Second, true)
	if len(extra) > 0 {
		t.Errorf("the order lists hold %d orders no POST made, first %+v", len(extra), extra[0])
	}
	t.Logf("all %d orders posted, settled and checked %v after the first POST of the load", len(orders), time.Since(start).Round(100*time.Millisecond))
}

// attempt is one POST /orders of the kill test.
type attempt struct {
	// start and end are when the POST was sent and when it returned.
	start, end time.Time
	gw         int
	total      int64
	code       int // 201 taken; 0 no answer
	err        error
}

// shed reports whether the POST was refused by admission control (429, or
// 503 overloaded: the events behind the route lag), a refusal before the
// order is made and no failure of the mesh.
func (a attempt) shed() bool { return shed(a.err) }

// shed reports whether err is admission control's refusal of a POST.
func shed(err error) bool {
	var r *refusal
	return errors.As(err, &r) && (r.status == http.StatusTooManyRequests ||
		r.status == http.StatusServiceUnavailable && r.title == "overloaded")
}

// failed reports whether the POST failed other than by admission control.
func (a attempt) failed() bool { return a.err != nil && !a.shed() }

// TestClusterKillNineUnderLoad: three meshd processes, order and payment
// on nodes 1 and 2 only; orders posted over the gateways of nodes 2 and 3
// at a bounded rate; node 1 SIGKILLed in the middle. Within 45 s of the
// kill (a liveness bound, not the figure: the directory's TTL, the gateway
// breaker's cool-down, perhaps opened again, and the leader elections add
// up to 6-25 s on a loaded machine) both gateways take orders again and
// keep taking them; every order taken (201) settles once, as in
// TestClusterThousandOrders, but for outcomes published again (an event
// handled again after the crash); no order is made by a POST answered 503
// or 429 (retry later). Node 1, restarted on its data directory with its
// flags, rejoins: its gateway takes orders, and they settle.
func TestClusterKillNineUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three meshd processes under load and kills one; skipped with -short")
	}
	c := startMesh(t, clusterServices, 2)
	client := newLoadClient()
	orders := []placed{firstOrder(t, c, client, 2, 0, 60*time.Second)}

	const (
		workers = 12 // enough that POSTs held up by the kill do not stop the load
		// At most 20 orders/s: the saga on one node keeps up with that
		// while the other packages' tests load the machine. At 40, with
		// CI beside it, node 2 alone fell behind after the kill and
		// admission shed (503, retry later) almost every POST for a
		// minute: the gateways answered, but this test saw node 2 take
		// no orders.
		pace        = 50 * time.Millisecond
		maxAttempts = 1500
		killAfter   = 150 // orders taken before the kill
		liveness    = 45 * time.Second
		loadFor     = 60 * time.Second // after the kill, at most
		steady      = 5 * time.Second  // without failures, and steadyOK taken on each gateway, ends the load early
		steadyOK    = 20
	)
	var (
		mu       sync.Mutex
		attempts []attempt
		killed   time.Time // zero before the kill
	)
	ticks := time.NewTicker(pace)
	defer ticks.Stop()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	next := 1
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-ticks.C:
				}
				mu.Lock()
				n := next
				next++
				mu.Unlock()
				if n > maxAttempts {
					return
				}
				o := placed{user: loadUsers[n%len(loadUsers)], total: orderTotal(n), gateway: 1 + n%2}
				var err error
				var code int
				sent := time.Now()
				o.id, code, err = postOrder(client, c.bases[o.gateway], o.user, o.total)
				mu.Lock()
				attempts = append(attempts, attempt{start: sent, end: time.Now(), gw: o.gateway, total: o.total, code: code, err: err})
				if err == nil {
					orders = append(orders, o)
				}
				mu.Unlock()
			}
		})
	}
	// state reports the load so far: orders taken, and of the POSTs that
	// returned after the kill, when the last that failed was sent, and per
	// gateway how many sent after it and after the kill succeeded.
	state := func() (taken int, lastFail time.Time, okSince [3]int) {
		mu.Lock()
		defer mu.Unlock()
		if killed.IsZero() {
			return len(orders), lastFail, okSince
		}
		for _, a := range attempts {
			if a.failed() && a.end.After(killed) && a.start.After(lastFail) {
				lastFail = a.start
			}
		}
		for _, a := range attempts {
			if a.err == nil && a.start.After(killed) && a.start.After(lastFail) {
				okSince[a.gw]++
			}
		}
		return len(orders), lastFail, okSince
	}
	loadDeadline := time.Now().Add(2 * time.Minute)
	for {
		taken, _, _ := state()
		if taken >= killAfter {
			break
		}
		if time.Now().After(loadDeadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("only %d orders taken in 2 min before the kill\n%s", taken, c.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.kill(0)
	mu.Lock()
	killed = time.Now()
	mu.Unlock()
	for {
		time.Sleep(100 * time.Millisecond)
		_, lastFail, okSince := state()
		since := time.Since(killed)
		quietFor := since
		if lastFail.After(killed) {
			quietFor = time.Since(lastFail)
		}
		if since > loadFor || (quietFor > steady && okSince[1] >= steadyOK && okSince[2] >= steadyOK) {
			break
		}
		mu.Lock()
		done := next > maxAttempts
		mu.Unlock()
		if done {
			break
		}
	}
	close(stop)
	wg.Wait()

	// The figures, and the liveness bound.
	before, after := map[int]int{}, map[int]int{}
	var firstErr error
	shedBefore, shedAfter := 0, 0
	var longest time.Duration // of the POSTs that returned after the kill
	var firstAfter, lastAfter *attempt
	failsAfter := [3]int{} // per gateway
	for _, a := range attempts {
		if a.end.After(killed) {
			longest = max(longest, a.end.Sub(a.start))
			if a.failed() {
				failsAfter[a.gw]++
				if firstAfter == nil {
					firstAfter = &a
				}
				if lastAfter == nil || a.start.After(lastAfter.start) {
					lastAfter = &a
				}
			}
		}
		m := after
		if a.end.Before(killed) {
			m = before
		}
		if a.shed() {
			if a.end.Before(killed) {
				shedBefore++
			} else {
				shedAfter++
			}
		}
		m[a.code]++
		if a.failed() && firstErr == nil {
			firstErr = a.err
		}
	}
	_, lastFail, okSince := state()
	recovered := time.Duration(0) // a POST sent this long after the kill failed, none after it
	if lastFail.After(killed) {
		recovered = lastFail.Sub(killed)
	}
	t.Logf("%d attempts, %d orders taken; before the kill %s (%d shed by admission), after it %s (%d shed); last failure %v after the kill; then %d taken via node 2 and %d via node 3; longest POST after the kill %v",
		len(attempts), len(orders), statusCounts(before), shedBefore, statusCounts(after), shedAfter, recovered.Round(10*time.Millisecond), okSince[1], okSince[2],
		longest.Round(10*time.Millisecond))
	if firstAfter != nil {
		t.Logf("after the kill %d POSTs failed via node 2, %d via node 3; the first via node %d: %v; the last via node %d: %v",
			failsAfter[1], failsAfter[2], firstAfter.gw+1, firstAfter.err, lastAfter.gw+1, lastAfter.err)
	}
	if firstErr != nil && before[http.StatusCreated]+shedBefore != sumCounts(before) {
		t.Errorf("orders failed before the kill: %s (first: %v)", statusCounts(before), firstErr)
	}
	if recovered > liveness || okSince[1] < steadyOK || okSince[2] < steadyOK {
		t.Fatalf("after the kill the gateways of nodes 2 and 3 did not both take orders again within %v: last failure %v after it, then %d and %d taken\n%s",
			liveness, recovered, okSince[1], okSince[2], c.logs())
	}

	// Node 1 rejoins on its data directory: its gateway takes orders.
	restart := time.Now()
	c.restart(0, 2*time.Minute)
	rejoined := firstOrder(t, c, client, 0, maxAttempts+1, 60*time.Second)
	orders = append(orders, rejoined)
	// While the restarted node catches up, admission control may shed a
	// POST (503 overloaded, retry later): a client retries it, as it
	// would; a shed POST must make no order (checked below with the rest).
	shedRestart := 0
	for n := maxAttempts + 2; n < maxAttempts+11; n++ { // and over the limit too
		o := placed{user: loadUsers[n%len(loadUsers)], total: orderTotal(n), gateway: 0}
		for retryUntil := time.Now().Add(30 * time.Second); ; {
			var err error
			var code int
			sent := time.Now()
			o.id, code, err = postOrder(client, c.bases[0], o.user, o.total)
			if err == nil {
				break
			}
			if !shed(err) || time.Now().After(retryUntil) {
				t.Fatalf("node 1 took an order after its restart, then refused one: %v (%d shed before it)\n%s", err, shedRestart, c.logs())
			}
			shedRestart++
			attempts = append(attempts, attempt{start: sent, end: time.Now(), gw: 0, total: o.total, code: code, err: err})
			time.Sleep(500 * time.Millisecond)
		}
		orders = append(orders, o)
	}
	t.Logf("node 1 restarted and took an order %v after its start; %d POSTs to it shed by admission while it caught up",
		time.Since(restart).Round(100*time.Millisecond), shedRestart)

	failed := make(map[int64]attempt) // each order's total differs
	for _, a := range attempts {
		if a.err != nil {
			failed[a.total] = a
		}
	}
	extra, repeats := settle(t, c, client, c.bases[2], orders, 150*time.Second, false)
	t.Logf("outcomes published again after the kill: %d", repeats)
	for _, v := range extra {
		// A POST that timed out (no answer, 504) may have made its
		// order: say what became of it. One answered 503 or 429 (retry
		// later) must not have: a client that retries it pays twice.
		a := failed[v.Total]
		report := t.Logf
		if a.code == http.StatusServiceUnavailable || a.code == http.StatusTooManyRequests {
			report = t.Errorf
		}
		report("order %s (user %s, total %d) was made by a POST to node %d sent %v after the kill that got no 201 (%v): it is %s",
			v.ID, v.UserID, v.Total, a.gw+1, a.start.Sub(killed).Round(time.Millisecond), a.err, v.Status)
	}
}

func sumCounts(m map[int]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
