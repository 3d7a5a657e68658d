package testkit

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// PollInterval is how often Eventually and Until look again.
const PollInterval = 20 * time.Millisecond

// Eventually calls f until it returns "" and fails the test with f's last
// answer when within passes first. f says what it still waits for, so a
// failure names the state that never came ("order o-1 is CREATED, want
// PAID"), not only that time ran out.
func Eventually(t testing.TB, within time.Duration, f func() string) {
	t.Helper()
	if why := poll(within, f); why != "" {
		t.Fatalf("after %v: %s", within, why)
	}
}

// Until is Eventually for a condition with a fixed description.
func Until(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	Eventually(t, within, func() string {
		if cond() {
			return ""
		}
		return "still waiting for " + what
	})
}

// poll returns "" once f does, or f's last answer when within has passed.
// f runs at least once, and once more after the deadline, so a condition
// met while the test slept is not reported as missed.
func poll(within time.Duration, f func() string) string {
	deadline := time.Now().Add(within)
	for {
		why := f()
		if why == "" {
			return ""
		}
		if time.Now().After(deadline) {
			return why
		}
		time.Sleep(PollInterval)
	}
}

// Load bounds a hammer: at most Calls calls in all, for at most For, by
// Workers goroutines at once. Every field must be set: a load loop in a
// test is bounded both in count and in time.
type Load struct {
	Workers int
	Calls   int
	For     time.Duration
}

// Tally is what a hammer did.
type Tally struct {
	Calls  int // calls made
	Failed int // calls that returned an error
	First  error
}

// Hammer runs fn from l.Workers goroutines until l.Calls calls were made,
// l.For passed or ctx ended, and returns how many ran and failed. fn gets
// the call's number (0-based) and a context that ends with the hammer.
func Hammer(ctx context.Context, t testing.TB, l Load, fn func(ctx context.Context, i int) error) Tally {
	t.Helper()
	if l.Workers <= 0 || l.Calls <= 0 || l.For <= 0 {
		t.Fatalf("testkit.Hammer: unbounded load %+v", l)
	}
	ctx, cancel := context.WithTimeout(ctx, l.For)
	defer cancel()
	var (
		next, failed atomic.Int64
		mu           sync.Mutex
		first        error
		wg           sync.WaitGroup
	)
	for range l.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(l.Calls) {
					return
				}
				if err := fn(ctx, int(i)); err != nil && ctx.Err() == nil {
					failed.Add(1)
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	calls := min(next.Load(), int64(l.Calls))
	return Tally{Calls: int(calls), Failed: int(failed.Load()), First: first}
}
