package main

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestClusterForwardedRequestsShed: two meshd processes, order and payment
// on node 1 only, node 2 a gateway that forwards to it. Orders posted as
// fast as node 2's gateway takes them put node 1's saga behind the demo
// order service's 300 ms admission bound; node 1 then sheds the POSTs
// node 2 forwards, and node 2 answers them as a shed of its own: 503
// problem+json titled overloaded, with Retry-After. Every order taken
// (201) settles; no shed POST made an order.
func TestClusterForwardedRequestsShed(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two meshd processes under load; skipped with -short")
	}
	c := startMesh(t, [][]string{{"order", "payment"}, nil}, 0)
	client := newLoadClient()
	orders := []placed{firstOrder(t, c, client, 1, 0, 60*time.Second)}

	const (
		workers     = 16
		maxAttempts = 20_000
		floodFor    = 60 * time.Second // at most; the first shed ends it
	)
	// The flood ends at the first shed (stop), after floodFor, or after
	// maxAttempts POSTs.
	flood, stop := context.WithTimeout(context.Background(), floodFor)
	defer stop()
	var (
		mu        sync.Mutex
		next      = 1
		shed      *refusal
		failures  []error
		sheds     int
		wg        sync.WaitGroup
		attempted int
	)
	for range workers {
		wg.Go(func() {
			for flood.Err() == nil {
				mu.Lock()
				n := next
				next++
				mu.Unlock()
				if n > maxAttempts {
					return
				}
				o := placed{user: loadUsers[n%len(loadUsers)], total: orderTotal(n), gateway: 1}
				var err error
				o.id, _, err = postOrder(client, c.bases[1], o.user, o.total)
				mu.Lock()
				attempted++
				var r *refusal
				switch {
				case err == nil:
					orders = append(orders, o)
				case errors.As(err, &r) && r.status == http.StatusServiceUnavailable && r.title == "overloaded":
					sheds++
					if shed == nil {
						shed = r
					}
					stop()
				default:
					failures = append(failures, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("%d POSTs through node 2: %d taken, %d shed, %d failed", attempted, len(orders)-1, sheds, len(failures))
	if len(failures) > 0 {
		t.Errorf("%d POSTs failed other than shed; the first: %v", len(failures), failures[0])
	}
	if shed == nil {
		t.Fatalf("no POST through node 2 was shed in %d attempts while node 1's saga fell behind\n%s", attempted, c.logs())
	}
	if secs, err := strconv.Atoi(shed.retryAfter); err != nil || secs < 1 || secs > 30 {
		t.Errorf("a shed POST's Retry-After is %q, want 1 to 30 seconds: %v", shed.retryAfter, shed)
	}

	extra, _ := settle(t, c, client, c.bases[1], orders, 150*time.Second, true)
	for _, v := range extra {
		t.Errorf("order %s (user %s, total %d) was made by a POST that got no 201: it is %s", v.ID, v.UserID, v.Total, v.Status)
	}
}
