package guest

import (
	"testing"
	"time"

	"github.com/meshd/meshd/abi"
)

// TestCallRefusedLocallyWhileTheBreakerIsOpen: after a call refused by an
// open breaker, Call refuses that callee itself, with the same error,
// for as long as the host says the breaker stays open (at most a second),
// then asks the host again; other callees, and a refusal the host gives
// no time for, are not affected.
func TestCallRefusedLocallyWhileTheBreakerIsOpen(t *testing.T) {
	f := newFakeV12Host(t)
	t.Cleanup(func() { refusals = nil })
	f.code, f.retryAfter = abi.CodeUnavailable, int64(50*time.Millisecond)
	req := &CallRequest{Path: "/x"}
	_, first := Call("callee", req)
	if CodeOf(first) != abi.CodeUnavailable || len(f.calls) != 1 {
		t.Fatalf("first call: %v, %d host calls", first, len(f.calls))
	}
	for range 3 {
		if _, err := Call("callee", req); err != first {
			t.Fatalf("refused again: %v, want the first refusal's error %v", err, first)
		}
	}
	if len(f.calls) != 1 {
		t.Fatalf("%d host calls while the breaker is open, want 1", len(f.calls))
	}
	f.resp = abi.Response{Status: 200}
	f.code = abi.CodeOK
	if _, err := Call("other", req); err != nil || len(f.calls) != 2 {
		t.Fatalf("a call to another callee: %v, %d host calls", err, len(f.calls))
	}
	time.Sleep(60 * time.Millisecond)
	if resp, err := Call("callee", req); err != nil || resp.Status != 200 || len(f.calls) != 3 {
		t.Fatalf("after the breaker's time: %v %v, %d host calls", resp, err, len(f.calls))
	}
	if len(refusals) != 0 {
		t.Fatalf("still refused after an answer: %+v", refusals)
	}

	// At most a second at a time, whatever the host says.
	f.code, f.retryAfter = abi.CodeUnavailable, int64(10*time.Minute)
	Call("callee", req)
	if len(refusals) != 1 || refusals[0].until-nanotime() > maxLocalRefusal {
		t.Fatalf("refusals %+v: want one, ending within %d ns", refusals, maxLocalRefusal)
	}
	refusals = nil

	// Unavailable for another reason (no time given): every call asks.
	f.retryAfter = 0
	n := len(f.calls)
	Call("callee", req)
	Call("callee", req)
	if len(f.calls) != n+2 || len(refusals) != 0 {
		t.Fatalf("%d host calls for 2, refusals %+v", len(f.calls)-n, refusals)
	}
}

// TestRefusalsAreBounded: at most maxRefusals callees are remembered.
func TestRefusalsAreBounded(t *testing.T) {
	f := newFakeV12Host(t)
	t.Cleanup(func() { refusals = nil })
	f.code, f.retryAfter = abi.CodeUnavailable, int64(time.Minute)
	for i := range 3 * maxRefusals {
		Call("callee-"+string(rune('a'+i)), &CallRequest{Path: "/x"})
	}
	if len(refusals) != maxRefusals {
		t.Fatalf("%d refusals kept, want %d", len(refusals), maxRefusals)
	}
}
