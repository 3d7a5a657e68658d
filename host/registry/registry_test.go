package registry

import (
	"errors"
	"sync"
	"testing"
)

func TestLifecycle(t *testing.T) {
	r := New()
	if _, ok := r.Status("order"); ok {
		t.Fatal("unknown service has a status")
	}
	r.Register(Instance{Service: "order", Version: "v1", Node: "n1", Status: Starting})
	if s, _ := r.Status("order"); s != Starting {
		t.Fatalf("status %s", s)
	}
	if _, err := r.Pick("order"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("picked a STARTING instance: %v", err)
	}
	if err := r.SetStatus("order", "v1", "n1", Up); err != nil {
		t.Fatal(err)
	}
	if in, err := r.Pick("order"); err != nil || in.Version != "v1" {
		t.Fatalf("pick %+v %v", in, err)
	}
	if err := r.SetStatus("order", "v9", "n1", Up); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown version: %v", err)
	}
	// A second version starting does not hide the UP one.
	r.Register(Instance{Service: "order", Version: "v2", Node: "n1", Status: Starting})
	if s, _ := r.Status("order"); s != Up {
		t.Fatalf("status %s while v1 is up", s)
	}
	r.Deregister("order", "v1", "n1")
	if s, _ := r.Status("order"); s != Starting {
		t.Fatalf("status %s after v1 left", s)
	}
	r.Deregister("order", "v2", "n1")
	if got := r.Services(); len(got) != 0 {
		t.Fatalf("services %v", got)
	}
}

func TestPickRoundRobin(t *testing.T) {
	r := New()
	for _, n := range []string{"a", "b", "c"} {
		r.Register(Instance{Service: "s", Version: "v", Node: n, Status: Up})
	}
	r.Register(Instance{Service: "s", Version: "v", Node: "down", Status: Down})
	seen := map[string]int{}
	for range 300 {
		in, err := r.Pick("s")
		if err != nil {
			t.Fatal(err)
		}
		seen[in.Node]++
	}
	if len(seen) != 3 || seen["a"] != 100 || seen["b"] != 100 || seen["c"] != 100 {
		t.Fatalf("uneven or wrong picks: %v", seen)
	}
}

func TestConcurrent(t *testing.T) {
	r := New()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := string(rune('a' + g))
			for i := range 200 {
				r.Register(Instance{Service: "s", Version: "v", Node: node, Status: Up})
				_, _ = r.Pick("s")
				_ = r.Lookup("s")
				if i%2 == 0 {
					r.Deregister("s", "v", node)
				}
			}
		}()
	}
	wg.Wait()
	if got := len(r.Lookup("s")); got > 4 {
		t.Fatalf("%d instances for 4 nodes", got)
	}
}
