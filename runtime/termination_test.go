package runtime_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	goruntime "runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/wattest"
	"github.com/meshd/meshd/runtime"
)

// termChildEnv, set in a child test process's environment, makes
// TestLoopFreeGuestsAreStopped's subtest run the guest there (see
// runInChild).
const termChildEnv = "MESHD_TERMINATION_CHILD"

// termLiveness bounds how long a guest call, and a garbage collection
// while it runs, may take before the test calls it a hang. It is a hang
// check, not a speed assertion: the calls end in well under a second on a
// quiet machine, but the stack overflow case (64 MiB of frames under a
// collection loop) took over 10 s on a loaded one.
const termLiveness = 60 * time.Second

// TestLoopFreeGuestsAreStopped runs guests whose meshd_http never loops
// but makes calls without end (recursion, call_indirect, both, mutual
// recursion), unwinds a deep stack slowly, or recurses until the stack
// overflows, each while another goroutine
// allocates and collects garbage without pause. Each call must end with
// its error (ErrTimeout at the deadline, ErrTrap on overflow) and the
// collections must keep completing while it runs.
//
// wazero checks for the deadline only where the compiled code calls the
// check-module-exit-code trampoline, which is also the only place the Go
// scheduler can stop the goroutine running it. Without the checks at
// function entry and after calls (MESHD-PATCH.md, change 9) these guests
// never reach one (or, unwinding, not for seconds):
// the call runs on past its deadline and the next collection's
// stop-the-world waits for it forever, with every other goroutine,
// timers included, stopped. No watchdog inside the process could then
// fire, so each case runs in a child process (this test binary, run on
// that one subtest) that the parent kills past the bound.
func TestLoopFreeGuestsAreStopped(t *testing.T) {
	for _, tc := range []struct {
		name, wat string
		timeout   time.Duration
		want      error
		// stack is the case's MaxStackBytes (0: the default, 1 MiB).
		stack int
	}{
		{"recursion", "testdata/term-recursion.wat", 200 * time.Millisecond, runtime.ErrTimeout, 0},
		{"call_indirect", "testdata/term-indirect.wat", 200 * time.Millisecond, runtime.ErrTimeout, 0},
		{"mixed", "testdata/term-mixed.wat", 200 * time.Millisecond, runtime.ErrTimeout, 0},
		{"mutual recursion", "testdata/term-mutual.wat", 200 * time.Millisecond, runtime.ErrTimeout, 0},
		// Checked at function entry only, it ran 30 s past its deadline.
		// Its 200,000 frames take 40 MB of stack: the largest limit.
		{"deep stack unwound", "testdata/term-unwind.wat", 300 * time.Millisecond, runtime.ErrTimeout, runtime.MaxMaxStackBytes},
		// The largest stack limit (64 MiB) is reached in about a second
		// (over 10 s on a loaded machine); the deadline stays out of its
		// way. (The default, 1 MiB, is
		// reached in milliseconds, too soon for a collection to complete
		// meanwhile: stack_test.go tests it.)
		{"stack overflow", "testdata/term-overflow.wat", 45 * time.Second, runtime.ErrTrap, runtime.MaxMaxStackBytes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if os.Getenv(termChildEnv) == "" {
				runInChild(t)
				return
			}
			callUnderGC(t, tc.wat, tc.timeout, tc.stack, tc.want)
		})
	}
}

// runInChild runs the current subtest in a child process of this test
// binary and fails if it fails, or is still running termLiveness plus
// time to start and compile after it began.
func runInChild(t *testing.T) {
	t.Helper()
	parts := strings.Split(t.Name(), "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	ctx, cancel := context.WithTimeout(context.Background(), termLiveness+20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run="+strings.Join(parts, "/"), "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), termChildEnv+"=1")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the child process was still running after %s (a guest call or a garbage collection hung), killed:\n%s", termLiveness+20*time.Second, out)
	}
	if err != nil {
		t.Fatalf("child process: %v\n%s", err, out)
	}
	// A pattern that matched nothing would pass too: the child must have
	// run this subtest.
	if !strings.Contains(string(out), "--- PASS: "+t.Name()+" ") {
		t.Fatalf("the child process did not run %s:\n%s", t.Name(), out)
	}
}

// callUnderGC loads the guest at wat, calls its meshd_http with the given
// deadline while a goroutine allocates and calls goruntime.GC in a loop,
// and checks the call's error and that collections completed during it.
func callUnderGC(t *testing.T, wat string, timeout time.Duration, stack int, want error) {
	ctx := context.Background()
	m, err := newEngine(t).Load(ctx, wattest.Build(t, wat), testHost,
		runtime.ModuleConfig{Name: "term", CallTimeout: timeout, PoolMax: 1, MaxStackBytes: stack})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)

	var collections atomic.Int64
	stop := make(chan struct{})
	collecting := make(chan struct{})
	go func() {
		defer close(collecting)
		var keep [][]byte
		for range 1_000_000 {
			select {
			case <-stop:
				return
			default:
			}
			keep = append(keep, make([]byte, 32<<10))
			if len(keep) == 64 {
				keep = keep[:0]
			}
			goruntime.GC()
			collections.Add(1)
		}
	}()
	defer func() { close(stop); <-collecting }()
	// Under way before the call starts.
	for deadline := time.Now().Add(termLiveness); collections.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no garbage collection completed before the call")
		}
	}

	before := collections.Load()
	start := time.Now()
	done := make(chan error, 1)
	// 40 bytes: term-recursion.wat's depth; the others ignore it.
	input := make([]byte, 40)
	go func() { done <- m.Invoke(ctx, runtime.EntryHTTP, &runtime.Call{Input: input}) }()
	select {
	case err = <-done:
	case <-time.After(termLiveness):
		t.Fatalf("the call did not return within %s (deadline %s)", termLiveness, timeout)
	}
	took := time.Since(start)
	during := collections.Load() - before
	if !errors.Is(err, want) {
		t.Fatalf("call: %v after %s, want %v", err, took, want)
	}
	// The timer above cannot fire while a collection waits for the
	// guest, so a call that held the world up returns late instead.
	if took > termLiveness {
		t.Fatalf("the call returned after %s (deadline %s), past the %s bound", took, timeout, termLiveness)
	}
	// A collection that waited for the guest to stop would complete
	// after the call returned, not during it.
	if during == 0 {
		t.Fatalf("no garbage collection completed during the %s call", took)
	}
	t.Logf("%v after %s; %d collections completed meanwhile", err, took, during)
}
