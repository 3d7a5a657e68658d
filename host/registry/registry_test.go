package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/meshd/meshd/runtime"
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

type fakeLocal string

func (fakeLocal) Invoke(context.Context, runtime.Entry, *runtime.Call) error { return nil }

// Serve hands a service over in one step: the new version is the one
// Local returns, the old one keeps its entry without a Local; Register
// keeps an instance's Local; Withdraw takes it off.
func TestServeHandsOver(t *testing.T) {
	r := New()
	if _, ok := r.Local("order"); ok {
		t.Fatal("a Local for an unknown service")
	}
	r.Register(Instance{Service: "order", Version: "v1", Node: "n1", Status: Starting})
	if _, ok := r.Local("order"); ok {
		t.Fatal("a STARTING instance without a handle is served")
	}
	r.Serve(Instance{Service: "order", Version: "v1", Node: "n1", Status: Up, Local: fakeLocal("v1")})
	r.Register(Instance{Service: "order", Version: "v2", Node: "n1", Status: Starting})
	r.Register(Instance{Service: "order", Version: "v1", Node: "n2", Status: Up}) // another node's
	if in, ok := r.Local("order"); !ok || in.Local != fakeLocal("v1") || in.Version != "v1" {
		t.Fatalf("local %+v %v, want v1", in, ok)
	}
	r.Serve(Instance{Service: "order", Version: "v2", Node: "n1", Status: Up, Local: fakeLocal("v2")})
	if in, ok := r.Local("order"); !ok || in.Local != fakeLocal("v2") {
		t.Fatalf("local %+v after the swap, want v2", in)
	}
	if n := len(r.Lookup("order")); n != 3 {
		t.Fatalf("%d instances, want v1 and v2 on n1 and v1 on n2", n)
	}
	// A status change (DOWN) keeps the version served.
	r.Register(Instance{Service: "order", Version: "v2", Node: "n1", Status: Down})
	if in, ok := r.Local("order"); !ok || in.Status != Down || in.Local != fakeLocal("v2") {
		t.Fatalf("local %+v after DOWN", in)
	}
	r.Serve(Instance{Service: "pay", Version: "p", Node: "n1", Status: Up, Local: fakeLocal("p")})
	if ls := r.Locals(); len(ls) != 2 || ls[0].Service != "order" || ls[1].Service != "pay" {
		t.Fatalf("locals %+v", ls)
	}
	r.Withdraw("order", "v2", "n1")
	if _, ok := r.Local("order"); ok {
		t.Fatal("withdrawn version still served")
	}
	if st, _ := r.Status("order"); st != Up { // n2's
		t.Fatalf("status %s", st)
	}
}

// A lookup racing swaps always finds a version served (race detector).
func TestServeConcurrentLookups(t *testing.T) {
	r := New()
	r.Serve(Instance{Service: "s", Version: "v0", Node: "n", Status: Up, Local: fakeLocal("v0")})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var missed atomic.Int64
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, ok := r.Local("s"); !ok {
					missed.Add(1)
				}
			}
		})
	}
	for i := range 500 {
		v := fmt.Sprintf("v%d", i+1)
		r.Register(Instance{Service: "s", Version: v, Node: "n", Status: Starting})
		r.Serve(Instance{Service: "s", Version: v, Node: "n", Status: Up, Local: fakeLocal(v)})
		r.Deregister("s", fmt.Sprintf("v%d", i), "n")
	}
	close(stop)
	wg.Wait()
	if missed.Load() != 0 {
		t.Fatalf("%d lookups found no served version during swaps", missed.Load())
	}
}
