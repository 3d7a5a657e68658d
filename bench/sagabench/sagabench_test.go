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
