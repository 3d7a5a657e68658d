package coalesce

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// spawner runs workers in goroutines a WaitGroup counts.
type spawner struct {
	wg     sync.WaitGroup
	refuse bool
}

func (s *spawner) spawn(fn func()) bool {
	if s.refuse {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
	return true
}

func TestLatestChangeReplacesWaitingOnes(t *testing.T) {
	var sp spawner
	var mu sync.Mutex
	got := map[string][]int{}
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	c := New(sp.spawn, func(key string, v int) {
		if key == "a" && v == 1 {
			entered <- struct{}{}
			<-release // the first change of a is slow
		}
		mu.Lock()
		got[key] = append(got[key], v)
		mu.Unlock()
	})
	c.Put("a", 1)
	select {
	case <-entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the first change was not handled")
	}
	for v := 2; v <= 5; v++ {
		c.Put("a", v) // each replaces the one waiting
	}
	c.Put("b", 1) // another key: its own worker, not held up by a's
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		done := len(got["b"]) == 1
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("key b waited for key a's worker")
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	sp.wg.Wait()
	if !slices.Equal(got["a"], []int{1, 5}) || !slices.Equal(got["b"], []int{1}) {
		t.Fatalf("handled %v, want a: [1 5], b: [1]", got)
	}
	// The worker ended with nothing left: a new change starts a new one.
	c.Put("a", 6)
	sp.wg.Wait()
	if !slices.Equal(got["a"], []int{1, 5, 6}) {
		t.Fatalf("handled %v after the worker ended", got["a"])
	}
}

func TestRefusedSpawnDropsTheChange(t *testing.T) {
	sp := spawner{refuse: true}
	var handled []int
	c := New(sp.spawn, func(_ string, v int) { handled = append(handled, v) })
	if c.Put("a", 1) {
		t.Fatal("Put reported a change no worker takes")
	}
	sp.refuse = false
	if !c.Put("a", 2) {
		t.Fatal("the key stayed marked as having a worker")
	}
	sp.wg.Wait()
	if !slices.Equal(handled, []int{2}) {
		t.Fatalf("handled %v, want [2]", handled)
	}
}
