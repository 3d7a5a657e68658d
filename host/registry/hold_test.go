package registry

import (
	"errors"
	"slices"
	"testing"
)

// A drain shows OUT_OF_SERVICE over the served instance, outlives a new
// version, and undrain restores UP; a failing hold shows DOWN and a load
// clears it; every change is reported once, in order.
func TestHolds(t *testing.T) {
	var got []Transition
	r := New(WithObserver(func(tr Transition) { got = append(got, tr) }))
	if err := r.SetDrained("user", true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("drain of an unknown service: %v", err)
	}
	r.Serve(Instance{Service: "user", Version: "v1", Node: "n", Status: Up, Local: fakeLocal("x")})
	g0 := r.Generation()
	if err := r.SetDrained("user", true); err != nil {
		t.Fatal(err)
	}
	if r.Generation() == g0 {
		t.Error("a drain did not move the generation")
	}
	if in, _ := r.Local("user"); in.Status != OutOfService {
		t.Fatalf("drained: %s", in.Status)
	}
	if _, err := r.Pick("user"); !errors.Is(err, ErrNotFound) {
		t.Fatal("a drained instance was picked")
	}
	r.Register(Instance{Service: "user", Version: "v2", Node: "n", Status: Starting})
	r.Serve(Instance{Service: "user", Version: "v2", Node: "n", Status: Up, Local: fakeLocal("x")})
	r.Deregister("user", "v1", "n")
	if st, _ := r.Status("user"); st != OutOfService || !r.Drained("user") {
		t.Fatalf("a new version undrained the service: %s", st)
	}
	if err := r.SetDrained("user", false); err != nil {
		t.Fatal(err)
	}
	if st, _ := r.Status("user"); st != Up {
		t.Fatalf("undrained: %s", st)
	}
	r.SetFailing("user", true)
	if in, _ := r.Local("user"); in.Status != Down {
		t.Fatalf("failing: %s", in.Status)
	}
	r.Serve(Instance{Service: "user", Version: "v2", Node: "n", Status: Up, Local: fakeLocal("x")})
	if st, _ := r.Status("user"); st != Up {
		t.Fatalf("a load did not clear the failing hold: %s", st)
	}
	r.Deregister("user", "v2", "n")
	want := []Transition{
		{"user", "v1", "n", "", Up},
		{"user", "v1", "n", Up, OutOfService},
		{"user", "v2", "n", "", Starting},
		{"user", "v1", "n", OutOfService, Up}, // no longer served: its own status shows
		{"user", "v2", "n", Starting, OutOfService},
		{"user", "v1", "n", Up, ""},
		{"user", "v2", "n", OutOfService, Up},
		{"user", "v2", "n", Up, Down},
		{"user", "v2", "n", Down, Up},
		{"user", "v2", "n", Up, ""},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("transitions:\n got %v\nwant %v", got, want)
	}
}
