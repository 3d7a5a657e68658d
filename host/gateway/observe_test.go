package gateway

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/meshd/meshd/abi"
)

func TestObserve(t *testing.T) {
	var mu sync.Mutex
	var got []Observation
	cfg := Config{Observe: func(o Observation) {
		mu.Lock()
		got = append(got, o)
		mu.Unlock()
	}}
	g, inv := newTestGateway(t, cfg, testRoutes)

	do(g, "GET", "/orders/1", "", nil)
	do(g, "GET", "/nope", "", nil)
	inv.set(func(ctx context.Context, service string, req *abi.Request, resp *abi.Response) error {
		panic("boom")
	})
	do(g, "POST", "/orders", "", nil)

	want := []Observation{
		{Service: "orders", Route: "GET /orders/{id}", Method: "GET", Status: 200},
		{Method: "GET", Status: 404},
		{Service: "orders", Route: "POST /orders", Method: "POST", Status: 500},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d observations, want %d: %+v", len(got), len(want), got)
	}
	for i, o := range got {
		if o.Duration <= 0 {
			t.Errorf("observation %d: duration %v, want > 0", i, o.Duration)
		}
		o.Duration = 0
		if o != want[i] {
			t.Errorf("observation %d = %+v, want %+v", i, o, want[i])
		}
	}
}

// TestObserveAllocations: observing costs no allocation per request (the
// wrapper is pooled), so a nil Observe costs none either.
func TestObserveAllocations(t *testing.T) {
	routes := []Route{{Service: "orders", Method: "POST", Path: "/orders/{id}/items"}}
	g := New(Config{}, &echoInvoker{}, nil)
	if err := g.SetRoutes(routes); err != nil {
		t.Fatal(err)
	}
	w := &discardWriter{h: make(map[string][]string)}
	r := benchRequest()
	body := strings.NewReader(benchBody)
	run := func() {
		body.Reset(benchBody)
		r.Body = io.NopCloser(body)
		clear(w.h)
		g.ServeHTTP(w, r)
	}
	run()
	base := testing.AllocsPerRun(50, run)
	g2 := New(Config{Observe: func(Observation) {}}, &echoInvoker{}, nil)
	if err := g2.SetRoutes(routes); err != nil {
		t.Fatal(err)
	}
	g = g2
	run()
	with := testing.AllocsPerRun(50, run)
	if raceEnabled {
		t.Log("allocation counts are not meaningful under -race; run without -race to check")
		return
	}
	if with > base {
		t.Fatalf("Observe adds allocations: %v with, %v without", with, base)
	}
}
