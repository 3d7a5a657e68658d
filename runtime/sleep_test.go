package runtime_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/wattest"
	"github.com/meshd/meshd/runtime"
)

// The guests of these tests sleep 30 s with WASI poll_oneoff; liveBound is
// far below that, so a sleep that ignores the deadline fails them.
const liveBound = 10 * time.Second

func loadSleeper(t *testing.T, wat string, cfg runtime.ModuleConfig) (*runtime.Module, error) {
	t.Helper()
	cfg.Name = "sleeper"
	m, err := newEngine(t).Load(context.Background(), wattest.Build(t, "testdata/"+wat), testHost, cfg)
	if err == nil {
		t.Cleanup(func() { _ = m.Close(context.Background()) })
	}
	return m, err
}

func TestSleepEndsAtTheCallDeadline(t *testing.T) {
	m, err := loadSleeper(t, "sleep-call.wat", runtime.ModuleConfig{CallTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	_, err = call(m, "sleep")
	if took := time.Since(began); took > liveBound {
		t.Fatalf("a call sleeping 30 s returned after %s, want its deadline (200ms)", took)
	}
	if !errors.Is(err, runtime.ErrTimeout) {
		t.Fatalf("sleeping past the deadline: %v, want ErrTimeout", err)
	}
	if st := m.Stats(); st.Discarded != 1 || st.Failures != 1 {
		t.Fatalf("the instance that slept past its deadline was kept: %+v", st)
	}
	c, err := call(m, "echo")
	if err != nil || string(c.Output) != "echo" {
		t.Fatalf("the call after a timeout: err=%v output=%q", err, c.Output)
	}
}

func TestSleepEndsWhenTheCallerCancels(t *testing.T) {
	m, err := loadSleeper(t, "sleep-call.wat", runtime.ModuleConfig{CallTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	err = m.Invoke(ctx, runtime.EntryHTTP, &runtime.Call{Input: []byte("sleep")})
	if took := time.Since(began); took > liveBound {
		t.Fatalf("a cancelled call sleeping 30 s returned after %s", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, runtime.ErrTimeout) {
		t.Fatalf("caller's deadline during a sleep: %v, want the caller's context error, not ErrTimeout", err)
	}
}

func TestSleepInInitialiserFailsTheLoad(t *testing.T) {
	began := time.Now()
	_, err := loadSleeper(t, "sleep-init.wat", runtime.ModuleConfig{CallTimeout: 200 * time.Millisecond})
	if took := time.Since(began); took > liveBound {
		t.Fatalf("a load whose initialiser sleeps 30 s returned after %s, want its deadline (200ms)", took)
	}
	if !errors.Is(err, runtime.ErrInvalidModule) || !errors.Is(err, runtime.ErrTimeout) {
		t.Fatalf("initialiser sleeping past its deadline: %v, want ErrInvalidModule and ErrTimeout", err)
	}
	if !strings.Contains(err.Error(), "_initialize") {
		t.Fatalf("error %q does not name the initialiser", err)
	}
}

func TestSleepInInitialiserEndsWhenTheLoadIsCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	began := time.Now()
	m, err := newEngine(t).Load(ctx, wattest.Build(t, "testdata/sleep-init.wat"), testHost,
		runtime.ModuleConfig{CallTimeout: time.Minute})
	if took := time.Since(began); took > liveBound {
		t.Fatalf("a cancelled load whose initialiser sleeps 30 s returned after %s", took)
	}
	if err == nil {
		_ = m.Close(context.Background())
		t.Fatal("a load cancelled during its initialiser succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled load: %v, want context.Canceled", err)
	}
}

func TestCloseDoesNotWaitForASleep(t *testing.T) {
	m, err := loadSleeper(t, "sleep-call.wat", runtime.ModuleConfig{CallTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	calls := m.Stats().Calls // meshd_describe's, at load
	errc := make(chan error, 1)
	go func() { _, err := call(m, "sleep"); errc <- err }()
	for deadline := time.Now().Add(liveBound); m.Stats().Calls == calls; {
		if time.Now().After(deadline) {
			t.Fatal("the sleeping call never started")
		}
		time.Sleep(time.Millisecond)
	}
	began := time.Now()
	_ = m.Close(context.Background()) // drains the call: it ends at its deadline
	if took := time.Since(began); took > liveBound {
		t.Fatalf("Close waited %s for a call sleeping 30 s, want its deadline (1s)", took)
	}
	if err := <-errc; !errors.Is(err, runtime.ErrTimeout) {
		t.Fatalf("the sleeping call: %v, want ErrTimeout", err)
	}
}
