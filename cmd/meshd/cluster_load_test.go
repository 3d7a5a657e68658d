package main

import (
	"context"
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
	const total, workers = 1000, 16
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
				// 429 and 503 are refusals before the order is made:
				// retried, a bounded number of times. Anything else
				// fails the order (a POST is not safe to repeat).
				for attempt := 0; attempt < 20; attempt++ {
					o.id, code, err = postOrder(client, c.bases[o.gateway], o.user, o.total)
					if err == nil || (code != http.StatusTooManyRequests && code != http.StatusServiceUnavailable) {
						break
					}
					mu.Lock()
					refused[code]++
					mu.Unlock()
					time.Sleep(time.Duration(50*(attempt+1)) * time.Millisecond)
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
