package storefail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/internal/syncbuf"
)

// fakeDisk is a file system whose free space a test sets.
type fakeDisk struct{ free atomic.Uint64 }

const fakeTotal = 1 << 30 // Reserve: 10 MiB

func (d *fakeDisk) stat() (uint64, uint64, error) { return d.free.Load(), fakeTotal, nil }

func newTestHealth(d *fakeDisk) (*Health, *syncbuf.Buffer) {
	h := &Health{}
	if d != nil {
		h.free = d.stat
	}
	buf := &syncbuf.Buffer{}
	h.SetLogger(slog.New(slog.NewTextHandler(buf, nil)))
	return h, buf
}

// waitTrial calls Begin until it lets a write through, within a bound.
func waitTrial(t *testing.T, h *Health) Write {
	t.Helper()
	deadline := time.Now().Add(5 * ProbeInterval)
	for time.Now().Before(deadline) {
		if w, err := h.Begin(); err == nil {
			return w
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no write let through within %s; still refusing: %v", 5*ProbeInterval, h.Refusing())
	return Write{}
}

func TestReserve(t *testing.T) {
	for _, c := range []struct{ total, want uint64 }{
		{8 << 20, 1 << 20},      // small: the floor
		{1 << 30, 10737418},     // 1%
		{1 << 40, 64 << 20},     // large: the cap
		{0, 1 << 20},            // unknown size
		{100 << 20, 1 << 20},    // 1% under the floor
		{6400 << 20, 64 << 20},  // exactly the cap
		{12800 << 20, 64 << 20}, // over it
	} {
		if got := Reserve(c.total); got != c.want {
			t.Errorf("Reserve(%d) = %d, want %d", c.total, got, c.want)
		}
	}
}

// TestLowSpaceRefusesFastAndRecovers: free space under the reserve makes
// Begin refuse, at once and without a write; free space back (with the
// margin) lets a trial through after ProbeInterval, whose success ends the
// refusal.
func TestLowSpaceRefusesFastAndRecovers(t *testing.T) {
	d := &fakeDisk{}
	d.free.Store(fakeTotal / 2)
	h, logs := newTestHealth(d)
	w, err := h.Begin()
	if err != nil {
		t.Fatalf("Begin with space: %v", err)
	}
	w.End(nil)

	d.free.Store(Reserve(fakeTotal) - 1)
	h.statAt.Store(0) // the next Begin reads the free space
	if _, err := h.Begin(); !errors.Is(err, ErrWritesRefused) {
		t.Fatalf("Begin under the reserve: %v, want ErrWritesRefused", err)
	}
	if !strings.Contains(h.Refusing().Error(), "bytes free") {
		t.Fatalf("refusal does not say why: %v", h.Refusing())
	}
	for range 10000 {
		if _, err := h.Begin(); !errors.Is(err, ErrWritesRefused) {
			t.Fatalf("Begin while refusing: %v", err)
		}
	}

	// Back over the reserve but under the margin: still refusing.
	d.free.Store(Reserve(fakeTotal) + 1)
	time.Sleep(ProbeInterval + 50*time.Millisecond)
	if _, err := h.Begin(); !errors.Is(err, ErrWritesRefused) {
		t.Fatalf("Begin inside the margin: %v, want ErrWritesRefused", err)
	}

	d.free.Store(fakeTotal / 2)
	w = waitTrial(t, h)
	if w.trial == nil {
		t.Fatal("the first write after a refusal is not a trial")
	}
	// A second Begin while the trial is out is refused.
	if _, err := h.Begin(); !errors.Is(err, ErrWritesRefused) {
		t.Fatalf("Begin during the trial: %v", err)
	}
	w.End(nil)
	if err := h.Refusing(); err != nil {
		t.Fatalf("still refusing after a successful trial: %v", err)
	}
	if _, err := h.Begin(); err != nil {
		t.Fatalf("Begin after recovery: %v", err)
	}
	out := logs.String()
	for _, want := range []string{"store refuses writes", "store takes writes again"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q:\n%s", want, out)
		}
	}
	if m := regexp.MustCompile(`refused=(\d+)`).FindStringSubmatch(out); m == nil {
		t.Errorf("the recovery line does not count the refused writes:\n%s", out)
	} else if n, _ := strconv.Atoi(m[1]); n < 10003 {
		t.Errorf("refused=%d, want at least the 10003 refused here", n)
	}
	if n := strings.Count(out, "\n"); n > 3 {
		t.Errorf("%d log lines for one short episode of 10003 refused writes, want at most 3:\n%s", n, out)
	}
}

// TestStorageErrorRefusesUntilATrialSucceeds: with no free space to read
// (an external server), a storage error from the server starts refusing; a
// failed trial keeps refusing, a successful one ends it.
func TestStorageErrorRefusesUntilATrialSucceeds(t *testing.T) {
	h, _ := newTestHealth(nil)
	w, err := h.Begin()
	if err != nil {
		t.Fatal(err)
	}
	full := &jetstream.APIError{Code: 500, ErrorCode: 10047, Description: "insufficient storage resources available"}
	w.End(fmt.Errorf("publish: %w", full))
	if _, err := h.Begin(); !errors.Is(err, ErrWritesRefused) {
		t.Fatalf("Begin after a storage error: %v, want ErrWritesRefused", err)
	}
	w = waitTrial(t, h)
	w.End(full) // still full
	if _, err := h.Begin(); !errors.Is(err, ErrWritesRefused) {
		t.Fatalf("Begin after a failed trial: %v, want ErrWritesRefused", err)
	}
	w = waitTrial(t, h)
	w.End(nil)
	if err := h.Refusing(); err != nil {
		t.Fatalf("still refusing after a successful trial: %v", err)
	}
}

// TestTimeoutIsDiagnosed: a write that timed out starts refusing only when
// the diagnosis finds the store at fault.
func TestTimeoutIsDiagnosed(t *testing.T) {
	d := &fakeDisk{}
	d.free.Store(fakeTotal / 2)
	h, _ := newTestHealth(d)
	w, _ := h.Begin()
	w.End(context.DeadlineExceeded)
	if err := h.Refusing(); err != nil {
		t.Fatalf("a timeout with space free made the store refuse: %v", err)
	}
	d.free.Store(0)
	w, _ = h.Begin() // StatEvery has not passed: the guard has not looked
	w.End(fmt.Errorf("kv: put: %w", context.DeadlineExceeded))
	if err := h.Refusing(); !errors.Is(err, ErrWritesRefused) {
		t.Fatalf("a timeout with no space free: Refusing = %v", err)
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err  error
		want kind
	}{
		{nil, kindOther},
		{errors.New("kv: empty key"), kindOther},
		{context.Canceled, kindOther},
		{fmt.Errorf("x: %w", ErrWritesRefused), kindOther},
		{errors.New("write /d/1.blk: no space left on device"), kindStorage},
		{&jetstream.APIError{ErrorCode: 10023}, kindStorage},
		{fmt.Errorf("a: %w", &jetstream.APIError{ErrorCode: 10047}), kindStorage},
		{jetstream.ErrJetStreamNotEnabled, kindStorage},
		{&jetstream.APIError{ErrorCode: 10176}, kindMaybe},
		{&jetstream.APIError{ErrorCode: 10071}, kindOther}, // wrong last sequence
		{context.DeadlineExceeded, kindMaybe},
		{nats.ErrTimeout, kindMaybe},
		{nats.ErrNoResponders, kindMaybe},
	} {
		if got := classify(c.err); got != c.want {
			t.Errorf("classify(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

// TestSampler: the first line, then one per Every with the count held back.
func TestSampler(t *testing.T) {
	s := Sampler{Every: time.Hour}
	if ok, held := s.Allow(); !ok || held != 0 {
		t.Fatalf("first Allow = %v, %d", ok, held)
	}
	for range 100 {
		if ok, _ := s.Allow(); ok {
			t.Fatal("a line within Every was allowed")
		}
	}
	s.mu.Lock()
	s.next = time.Now()
	s.mu.Unlock()
	if ok, held := s.Allow(); !ok || held != 100 {
		t.Fatalf("Allow after Every = %v, %d; want true, 100", ok, held)
	}
}

func TestBeginAcceptingAllocatesNothing(t *testing.T) {
	d := &fakeDisk{}
	d.free.Store(fakeTotal / 2)
	h, _ := newTestHealth(d)
	if n := testing.AllocsPerRun(1000, func() {
		w, _ := h.Begin()
		w.End(nil)
	}); n != 0 {
		t.Fatalf("Begin/End allocate %.1f times", n)
	}
}
