package sagabench

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestNative drives the native target as the saga benchmarks do: one
// order posted, both its projections counted, and the read model serving
// it PAID with its payment time.
func TestNative(t *testing.T) {
	tg := Native(t, "")
	resp, err := http.Post(tg.Base+"/orders", "application/json",
		strings.NewReader(`{"user_id":"u1","items":[{"name":"x","price":100}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var o struct{ ID string }
	err = json.NewDecoder(resp.Body).Decode(&o)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || err != nil || o.ID == "" {
		t.Fatalf("POST /orders: %d %v %q", resp.StatusCode, err, o.ID)
	}
	deadline := time.Now().Add(20 * time.Second)
	for tg.Projected.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 2 projections after 20 s", tg.Projected.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	var view struct {
		Status string
		PaidAt time.Time `json:"paid_at"`
	}
	v := tg.View(o.ID)
	if err := json.Unmarshal(v, &view); err != nil || view.Status != "PAID" || view.PaidAt.IsZero() {
		t.Fatalf("view %s: %v", v, err)
	}
}

func TestSyncName(t *testing.T) {
	for mode, want := range map[string]string{"": "sync=lazy", "always": "sync=always"} {
		if got := SyncName(mode); got != want {
			t.Errorf("SyncName(%q) = %q, want %q", mode, got, want)
		}
	}
}

// TestProcessCPU: the process's CPU time is positive and grows while the
// test burns CPU (bounded by a deadline, not a speed).
func TestProcessCPU(t *testing.T) {
	start := ProcessCPU(t)
	if start <= 0 {
		t.Fatalf("ProcessCPU = %v", start)
	}
	deadline := time.Now().Add(20 * time.Second)
	x := uint64(1)
	for ProcessCPU(t) <= start {
		if time.Now().After(deadline) {
			t.Fatalf("ProcessCPU stayed at %v for 20 s of busy work", start)
		}
		for i := range 1_000_000 {
			x = x*6364136223846793005 + uint64(i)
		}
	}
	_ = x
}

// stallGap counts only time in which orders waited and none was paid: a
// backlog paid steadily is no stall however long its orders wait, a
// pipeline that pays nothing for 5 s is, and an idle stretch with nothing
// to pay is not.
func TestStallGap(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	var created, paid []time.Time
	order := func(c, p time.Duration) { created, paid = append(created, at(c)), append(paid, at(p)) }

	// A growing backlog: an order every 10 ms, paid every 15 ms; the last
	// waits about 5 s.
	for i := range 1000 {
		c := time.Duration(i) * 10 * time.Millisecond
		order(c, c+10*time.Millisecond+time.Duration(i)*5*time.Millisecond)
	}
	if g := stallGap(created, paid); g > 20*time.Millisecond {
		t.Fatalf("backlog paid steadily: gap %s", g)
	}

	// A stall: orders created from 1 s to 6 s are all paid after 6 s.
	created, paid = nil, nil
	for i := range 600 {
		c := time.Duration(i) * 10 * time.Millisecond
		p := c + 5*time.Millisecond
		if c >= time.Second && c < 6*time.Second {
			p = 6*time.Second + time.Duration(i)*time.Microsecond
		}
		order(c, p)
	}
	if g := stallGap(created, paid); g < 4900*time.Millisecond || g > 5100*time.Millisecond {
		t.Fatalf("5 s stall: gap %s", g)
	}

	// Idle: nothing created for 5 s between two busy stretches. Listed out
	// of order: the gap does not depend on it.
	created, paid = nil, nil
	order(7*time.Second, 7*time.Second+5*time.Millisecond)
	for i := range 100 {
		c := time.Duration(i) * 10 * time.Millisecond
		order(c, c+5*time.Millisecond)
	}
	if g := stallGap(created, paid); g != 5*time.Millisecond {
		t.Fatalf("idle stretch: gap %s, want 5ms", g)
	}
}
