package sagabench

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// StallBound is how long the saga may pay no order while orders wait
// before the run is called stalled: a liveness bound, not a speed target.
// The stall it guards against held events for the pull iterator's
// missing-heartbeat check (about 5 s), when nothing was paid at all; a
// saga that merely runs behind, on a loaded machine, pays an order every
// few milliseconds however long each has waited.
const StallBound = 2 * time.Second

// Latency is the creation-to-payment latency of one steady run's orders
// (each order's created_at to its paid_at, as the read model serves it).
type Latency struct {
	Orders        int
	P50, P99, Max time.Duration
	// Gap is the longest time no order was paid while one waited (created
	// and not yet paid).
	Gap time.Duration
}

func (l Latency) String() string {
	return fmt.Sprintf("%d orders: p50 %s p99 %s max %s, longest wait with nothing paid %s", l.Orders,
		l.P50.Round(10*time.Microsecond), l.P99.Round(10*time.Microsecond), l.Max.Round(10*time.Microsecond),
		l.Gap.Round(10*time.Microsecond))
}

// Stalled says whether the run paid no order for longer than StallBound
// while orders waited.
func (l Latency) Stalled() bool { return l.Gap > StallBound }

// stallGap is the longest time in which no order was paid while one
// waited: orders sorted by payment, each stretch between two payments (or
// before the first) counted from when an order still to be paid had been
// created.
func stallGap(created, paid []time.Time) time.Duration {
	n := len(paid)
	byPaid := make([]int, n)
	for i := range byPaid {
		byPaid[i] = i
	}
	slices.SortFunc(byPaid, func(a, b int) int { return paid[a].Compare(paid[b]) })
	// waiting[k]: the earliest creation among the orders paid k-th or later.
	waiting := make([]time.Time, n)
	for k := n - 1; k >= 0; k-- {
		waiting[k] = created[byPaid[k]]
		if k+1 < n && waiting[k+1].Before(waiting[k]) {
			waiting[k] = waiting[k+1]
		}
	}
	var gap time.Duration
	for k := range n {
		from := waiting[k] // an order waits from its creation...
		if k > 0 && paid[byPaid[k-1]].After(from) {
			from = paid[byPaid[k-1]] // ...or from the last payment
		}
		gap = max(gap, paid[byPaid[k]].Sub(from))
	}
	return gap
}

// Steady creates n orders on t at a steady rate a second from 8 clients
// (order i is sent at start + i/rate, or as soon as a client is free),
// waits until the read model has every one PAID (at most wait), and
// returns their creation-to-payment latencies.
func Steady(tb testing.TB, t Target, n, rate int, wait time.Duration) Latency {
	tb.Helper()
	if n < 1 || rate < 1 {
		tb.Fatalf("Steady: n %d and rate %d must be positive", n, rate)
	}
	base := t.Projected.Load()
	ids := make([]string, n)
	client := &http.Client{Timeout: 30 * time.Second}
	start := time.Now()
	var wg sync.WaitGroup
	var next atomic.Int64
	var failed atomic.Bool
	for range 8 {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n) && !failed.Load(); i = next.Add(1) {
				time.Sleep(time.Until(start.Add(time.Duration(i-1) * time.Second / time.Duration(rate))))
				// 100 users: each user's index document stays small.
				body := `{"user_id":"steady` + strconv.Itoa(int(i%100)) + `","items":[{"name":"x","price":100}]}`
				id, err := post(client, t.Base+"/orders", body)
				if err != nil {
					failed.Store(true)
					tb.Errorf("order %d: %v", i, err)
					return
				}
				ids[i-1] = id
			}
		})
	}
	wg.Wait()
	if failed.Load() {
		tb.FailNow()
	}
	want := base + 2*int64(n)
	deadline := time.Now().Add(wait)
	for t.Projected.Load() < want {
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d projections %s after the last order", t.Projected.Load()-base, 2*n, wait)
		}
		time.Sleep(time.Millisecond)
	}
	lat := make([]time.Duration, n)
	created, paid := make([]time.Time, n), make([]time.Time, n)
	for i, id := range ids {
		var o struct {
			Status    string
			CreatedAt time.Time `json:"created_at"`
			PaidAt    time.Time `json:"paid_at"`
		}
		v := t.View(id)
		if err := json.Unmarshal(v, &o); err != nil || o.Status != "PAID" {
			tb.Fatalf("order %s: %.200q %v", id, v, err)
		}
		lat[i] = o.PaidAt.Sub(o.CreatedAt)
		created[i], paid[i] = o.CreatedAt, o.PaidAt
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	return Latency{Orders: n, P50: q(0.5), P99: q(0.99), Max: lat[n-1], Gap: stallGap(created, paid)}
}

// Warm sends one order to t and waits (at most a minute) until it is paid:
// t's consumers exist and its pull requests are open.
func Warm(tb testing.TB, t Target) {
	tb.Helper()
	Steady(tb, t, 1, 1, time.Minute)
}

// post sends one order and returns its id.
func post(c *http.Client, url, body string) (string, error) {
	resp, err := c.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("POST /orders: %d %.200q", resp.StatusCode, b)
	}
	var o struct{ ID string }
	if err := json.Unmarshal(b, &o); err != nil || o.ID == "" {
		return "", fmt.Errorf("POST /orders answer %.200q: %v", b, err)
	}
	return o.ID, nil
}

// Merge is the latency of runs taken together as far as their quantiles
// allow: the largest p50, p99 and max of any run.
func Merge(runs []Latency) Latency {
	var m Latency
	for _, r := range runs {
		m.Orders += r.Orders
		m.P50, m.P99, m.Max, m.Gap = max(m.P50, r.P50), max(m.P99, r.P99), max(m.Max, r.Max), max(m.Gap, r.Gap)
	}
	return m
}
