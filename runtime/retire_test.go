package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/meshd/meshd/runtime"
)

// TestRetiredInstancesAreClosed runs calls on a fresh instance each
// (MaxCallsPerInstance 1), which retire their instances to the closer and
// have replacements made in the background: every call runs on a fresh
// instance, at no moment are more than PoolMax instances live nor more
// than 2*PoolMax+1 mapped (live or closing: PoolMax+1 for the closer, and
// those calls close themselves in their slots when its queue is full),
// and every retired instance is
// closed (its memory no longer counted) soon after, and at Close.
func TestRetiredInstancesAreClosed(t *testing.T) {
	const poolMax, workers, calls = 2, 4, 40
	m := load(t, runtime.ModuleConfig{PoolMax: poolMax, MaxCallsPerInstance: 1, AcquireTimeout: 10 * time.Second})
	stop := make(chan struct{})
	sampled := make(chan error, 1)
	go func() { // samples the bounds while the calls run
		var err error
		for n := 0; ; n++ {
			st := m.Stats()
			if err == nil && (st.Live > poolMax || st.Live+st.Closing > 2*poolMax+1) {
				err = fmt.Errorf("sample %d: %d live, %d closing; want at most %d live, %d in all", n, st.Live, st.Closing, poolMax, 2*poolMax+1)
			}
			select {
			case <-stop:
				sampled <- err
				return
			case <-time.After(100 * time.Microsecond):
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range calls {
				c, err := call(m, "n")
				if err == nil && c.Output[0] != 1 {
					err = fmt.Errorf("a call ran on an instance that had served %d calls, want a fresh one", c.Output[0])
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := <-sampled; err != nil {
		t.Fatal(err)
	}
	// Retired instances are closed, or renewed in place, in the background:
	// wait until none is closing and every live one is back in the pool.
	var st runtime.Stats
	for deadline := time.Now().Add(20 * time.Second); ; {
		if st = m.Stats(); st.Closing == 0 && st.Idle == st.Live {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retired instances still being closed or renewed after 20 s: %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
	// meshd_describe at load retired the first instance as well.
	if want := uint64(workers*calls + 1); st.Recycled != want || st.Calls != want {
		t.Fatalf("stats %+v: want %d calls and as many instances recycled", st, want)
	}
	// Taking the snapshot at load closed two instances: the first and the
	// probe that learned the pages a call writes.
	var atLoad uint64
	if m.Snapshot().Taken {
		atLoad = 2
	}
	if st.Live > poolMax || st.Created != st.Recycled+uint64(st.Live)+atLoad {
		t.Fatalf("stats %+v: want at most %d live, every other instance made recycled (%d closed at load)", st, poolMax, atLoad)
	}
	if want := uint64(st.Live) * 65536; st.MemoryBytes != want {
		t.Fatalf("memory %d bytes with %d live instances of one page: closed instances still counted", st.MemoryBytes, st.Live)
	}
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := m.Stats(); st.Live != 0 || st.Closing != 0 || st.MemoryBytes != 0 {
		t.Fatalf("after Close: %+v, want nothing live, closing or counted", st)
	}
}

// TestTrappedInstanceIsNeverReused alternates a trapping call and one that
// reports how many calls its instance served, on a pool of one: the
// second always runs on a fresh instance (made in the background in the
// trapped one's place), never on the one that trapped.
func TestTrappedInstanceIsNeverReused(t *testing.T) {
	m := load(t, runtime.ModuleConfig{PoolMax: 1, AcquireTimeout: 10 * time.Second})
	const rounds = 20
	for i := range rounds {
		if _, err := call(m, "t"); !errors.Is(err, runtime.ErrTrap) {
			t.Fatalf("round %d: err = %v, want ErrTrap", i, err)
		}
		c, err := call(m, "n")
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if c.Output[0] != 1 {
			t.Fatalf("round %d: the call after a trap ran on an instance that had served %d calls, want a fresh one", i, c.Output[0])
		}
		// The instance "n" ran on serves the next trap: recycled rather
		// than kept, it would make the next "n" see 2.
	}
	if st := m.Stats(); st.Discarded != rounds || st.Live > 1 {
		t.Fatalf("stats %+v: want %d discarded, at most 1 live", st, rounds)
	}
}

// TestPoolStartsWithPoolMin: a module whose describe call retires its
// instance at Start (MaxCallsPerInstance 1) still has PoolMin instances
// idle soon after Start: the one retired before the background work ran
// is made again by the refiller, not left to the first call.
func TestPoolStartsWithPoolMin(t *testing.T) {
	m := load(t, runtime.ModuleConfig{PoolMin: 2, PoolMax: 4, MaxCallsPerInstance: 1})
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := m.Stats()
		if st.Idle >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d idle instances 20 s after Start, want PoolMin 2 (%d live, %d created, %d recycled)", st.Idle, st.Live, st.Created, st.Recycled)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
