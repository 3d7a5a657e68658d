package leakcheck

import (
	"strings"
	"testing"
	"time"
)

// A goroutine that ends a moment after the tests is no leak: find waits.
func TestFindWaitsForAGoroutineOnItsWayOut(t *testing.T) {
	done := make(chan struct{})
	go func() {
		time.Sleep(700 * time.Millisecond) // longer than goleak's own retries
		close(done)
	}()
	if err := find(20 * time.Second); err != nil {
		t.Fatalf("a goroutine that ended within the wait was reported: %v", err)
	}
	select {
	case <-done:
	default:
		t.Fatal("find returned before the goroutine ended")
	}
}

// A goroutine that never ends is reported, with its stack, once the wait
// has passed.
func TestFindReportsAGoroutineThatStays(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	go stayUntil(stop)
	err := find(300 * time.Millisecond)
	if err == nil {
		t.Fatal("a goroutine still running was not reported")
	}
	if !strings.Contains(err.Error(), "stayUntil") {
		t.Fatalf("the report does not name the goroutine's function: %v", err)
	}
}

func stayUntil(stop chan struct{}) { <-stop }
