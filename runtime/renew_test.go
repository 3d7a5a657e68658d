//go:build linux

package runtime

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/wattest"
)

// renewFresh is what snap-renew reports of a fresh instance: its
// initialiser's byte, no calls, slot 1 as the element segment set it, four
// pages, nothing at 300.
const renewFresh = "\x11\x00A\x04\x00"

// invokeRenew runs one call of snap-renew through the pool.
func invokeRenew(t *testing.T, m *Module, op string) string {
	t.Helper()
	c := Call{Input: []byte(op)}
	if err := m.Invoke(context.Background(), EntryHTTP, &c); err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	return string(c.Output)
}

// waitIdle waits until m's instance has come back to the pool: a retired
// instance is renewed or replaced in the background.
func waitIdle(t *testing.T, m *Module) Stats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := m.Stats()
		if st.Idle == 1 || time.Now().After(deadline) {
			return st
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRenewedInstanceIsFresh: with a fresh instance for every call, an
// instance renewed in place (its memory reset to the image, its globals,
// tables and dropped segments put back) shows nothing of the call before
// it; one whose table or memory size changed is not renewed but replaced,
// and its replacement is fresh too.
func TestRenewedInstanceIsFresh(t *testing.T) {
	if pagemap() == nil {
		t.Skip("no /proc/self/pagemap: memories are not reset in place")
	}
	m := loadIO(t, wattest.Build(t, "testdata/snap-renew.wat"),
		ModuleConfig{Name: "renew", PoolMin: 1, PoolMax: 1, MaxCallsPerInstance: 1})
	if info := m.Snapshot(); !info.Taken || !info.CopyOnWrite {
		t.Skipf("no copy-on-write snapshot here: %+v", info)
	}
	if got := invokeRenew(t, m, "r"); got != renewFresh {
		t.Fatalf("first call reads %q, want %q", got, renewFresh)
	}
	renewed := func(want uint64) {
		t.Helper()
		if st := waitIdle(t, m); st.Renewed != want {
			t.Fatalf("renewed %d instances, want %d (stats %+v)", st.Renewed, want, st)
		}
	}
	renewed(1)
	invokeRenew(t, m, "w")
	renewed(2)
	if got := invokeRenew(t, m, "r"); got != renewFresh {
		t.Fatalf("after a write, the next call reads %q, want %q", got, renewFresh)
	}
	renewed(3)
	invokeRenew(t, m, "x") // drops the passive segment
	renewed(4)
	if got := invokeRenew(t, m, "i"); got != "P" {
		t.Fatalf("the passive segment reads %q after a drop in the call before, want P", got)
	}
	renewed(5)

	// A table changed, a null slot set, a memory grown: not renewed.
	for _, op := range []string{"s", "n", "g"} {
		before := waitIdle(t, m)
		invokeRenew(t, m, op)
		st := waitIdle(t, m)
		if st.Renewed != before.Renewed || st.Created != before.Created+1 {
			t.Fatalf("%s: renewed %d → %d, created %d → %d: want the instance replaced, not renewed",
				op, before.Renewed, st.Renewed, before.Created, st.Created)
		}
		if got := invokeRenew(t, m, "r"); got != renewFresh {
			t.Fatalf("after %s, the next call reads %q, want %q", op, got, renewFresh)
		}
	}
	if st := waitIdle(t, m); st.Live != 1 || st.Failures != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestRenewedGoGuestIsUnique: a Go guest renewed in place for every call
// draws new random values and hash seeds each time, reads the current
// clock, and sees its initialiser's state and no earlier call.
func TestRenewedGoGuestIsUnique(t *testing.T) {
	if pagemap() == nil {
		t.Skip("no /proc/self/pagemap: memories are not reset in place")
	}
	wasm, err := os.ReadFile(snapGuest)
	if err != nil {
		t.Fatalf("%s is missing: run `make fixtures` (or `make test`) first", snapGuest)
	}
	m := loadIO(t, wasm, ModuleConfig{Name: "snap", PoolMin: 1, PoolMax: 1, MaxCallsPerInstance: 1})
	var reports []map[string]string
	for range 3 {
		waitIdle(t, m)
		before := time.Now()
		c := Call{}
		if err := m.Invoke(context.Background(), EntryHTTP, &c); err != nil {
			t.Fatal(err)
		}
		r := report(t, c.Output)
		if r["inits"] != "1" || r["calls"] != "1" || r["table"] != "100" {
			t.Errorf("state: inits %s, calls %s, table %s; want 1, 1, 100", r["inits"], r["calls"], r["table"])
		}
		now, err := strconv.ParseInt(r["now"], 10, 64)
		if err != nil || now < before.Add(-time.Second).UnixNano() || now > time.Now().Add(time.Second).UnixNano() {
			t.Errorf("clock %q is not the current time (%v)", r["now"], before)
		}
		reports = append(reports, r)
	}
	for _, k := range []string{"rand", "maphash", "order", "crypto"} {
		if reports[1][k] == "" || reports[1][k] == reports[2][k] || reports[0][k] == reports[1][k] {
			t.Errorf("%s: renewed instances report %q, %q, %q", k, reports[0][k], reports[1][k], reports[2][k])
		}
	}
	if st := waitIdle(t, m); st.Renewed < 2 {
		t.Fatalf("renewed %d instances, want 2 or more (stats %+v)", st.Renewed, st)
	}
}
