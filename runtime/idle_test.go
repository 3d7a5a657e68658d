//go:build linux

package runtime_test

import (
	"bufio"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/runtime"
)

// codeResidentKiB sums the resident memory of this process's mappings of
// compiled code files under dir: wazero's cache files (the snapshots'
// files apart), from /proc/self/smaps.
func codeResidentKiB(t *testing.T, dir string) (kib, mappings int) {
	return residentKiB(t, dir, "/wazero-")
}

// residentKiB sums the resident memory of this process's mappings of files
// under dir whose path holds part, from /proc/self/smaps.
func residentKiB(t *testing.T, dir, part string) (kib, mappings int) {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no smaps: %v", err)
	}
	defer f.Close()
	in := false
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") { // a mapping's first line
			in = len(fields) >= 6 && strings.HasPrefix(fields[5], dir) && strings.Contains(fields[5], part)
			if in {
				mappings++
			}
			continue
		}
		if in && fields[0] == "Rss:" && len(fields) >= 2 {
			n, err := strconv.Atoi(fields[1])
			if err != nil {
				t.Fatal(err)
			}
			kib += n
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return kib, mappings
}

// waitStats polls m's stats until ok holds, for at most 10 s.
func waitStats(t *testing.T, m *runtime.Module, ok func(runtime.Stats) bool) runtime.Stats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := m.Stats()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats never came: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIdleModuleSleepsAndWakes: a module without a call for IdleRelease
// has its instances closed, PoolMin notwithstanding, and its code, mapped
// from the cache file, and its snapshot's image out of resident memory; the next call is served as
// usual, maps the code back and the pool warms PoolMin again.
func TestIdleModuleSleepsAndWakes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := runtime.ModuleConfig{Name: "guest", PoolMin: 2, PoolMax: 2, IdleRelease: 100 * time.Millisecond}
	// The first engine compiles into the cache; the second maps the code
	// from it (an engine keeps what it compiled in anonymous memory).
	for i := range 2 {
		e, err := runtime.NewEngine(runtime.EngineConfig{CacheDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close(ctx)
		m, err := e.Load(ctx, guest(t), testHost, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close(ctx)
		if i == 0 {
			m.Close(ctx)
			continue
		}
		if kib, n := codeResidentKiB(t, dir); n == 0 || kib == 0 {
			t.Skipf("the code is not mapped from the cache file here (%d mappings, %d KiB resident)", n, kib)
		}
		c, err := call(m, "ebefore")
		if err != nil || string(c.Output) != "ebefore" {
			t.Fatalf("call before the sleep: %q, %v", c.Output, err)
		}
		st := waitStats(t, m, func(st runtime.Stats) bool { return st.Asleep })
		if st.Live != 0 || st.Released != 1 {
			t.Fatalf("asleep with %d instances live, released %d times", st.Live, st.Released)
		}
		if kib, _ := codeResidentKiB(t, dir); kib != 0 {
			t.Fatalf("asleep, its code still holds %d KiB resident", kib)
		}
		// guest's image is small: a memfd (an image file is checked by
		// TestSnapshotImageFile)
		if kib, n := residentKiB(t, "/memfd:meshd-snapshot", ""); n == 0 || kib != 0 {
			t.Fatalf("asleep, its snapshot's image holds %d KiB resident in %d mappings", kib, n)
		}
		c, err = call(m, "eafter")
		if err != nil || string(c.Output) != "eafter" {
			t.Fatalf("call after the sleep: %q, %v", c.Output, err)
		}
		if kib, _ := codeResidentKiB(t, dir); kib == 0 {
			t.Fatal("awake, its code is not resident")
		}
		waitStats(t, m, func(st runtime.Stats) bool { return !st.Asleep && st.Idle == 2 })
	}
}

// TestBusyModuleDoesNotSleep: calls closer together than IdleRelease keep
// the pool warm, over three times IdleRelease (a module that slept
// regardless of its calls would sleep within one and a half). The calls
// are 20 ms apart: only a stall of the whole process for a second could
// make the test fail without a fault.
func TestBusyModuleDoesNotSleep(t *testing.T) {
	m := load(t, runtime.ModuleConfig{PoolMin: 1, PoolMax: 1, IdleRelease: time.Second})
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		if _, err := call(m, "ex"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := m.Stats(); st.Released != 0 || st.Asleep {
		t.Fatalf("slept while called every 20 ms: %+v", st)
	}
}
