//go:build linux

package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/wattest"
)

// instances makes n instances of m, closed at the test's end.
func instances(t *testing.T, m *Module, n int) []*instance {
	t.Helper()
	var out []*instance
	for range n {
		inst, err := m.newInstance(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.closeInstance(inst) })
		out = append(out, inst)
	}
	return out
}

// callOn runs meshd_http on inst itself (not through the pool) and
// returns its output.
func callOn(t *testing.T, inst *instance, input string) []byte {
	t.Helper()
	c := &Call{Input: []byte(input), maxOutput: 1 << 20}
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), callKey{}, c), 20*time.Second)
	defer cancel()
	inst.stack[0] = uint64(len(c.Input))
	inst.ctx = ctx
	err := inst.fn(EntryHTTP).CallWithStack(ctx, inst.stack)
	inst.ctx = nil
	if err != nil {
		t.Fatal(err)
	}
	return c.Output
}

// marker reads what snap-marker.wat reports: its bytes at 70000 and
// 200000, its initialiser's runs and its data segment's byte.
func marker(t *testing.T, inst *instance) string {
	t.Helper()
	return string(callOn(t, inst, "r"))
}

const markerFresh = "\x11\x22\x01D" // as the initialiser left it, once

// TestSnapshotIsolation: instances restored from one snapshot start as the
// initialiser left the first (memory, grown memory, mutable globals, data)
// without running it again, and a write by one never shows in another,
// whether the image is mapped copy-on-write (from an unnamed file in the
// cache directory, or from a memfd where that file is refused), mapping is
// refused (each instance copies the image), or the image's file is
// refused.
func TestSnapshotIsolation(t *testing.T) {
	wasm := wattest.Build(t, "testdata/snap-marker.wat")
	linux := goruntime.GOOS == "linux"
	for _, tc := range []struct {
		name                            string
		refuseMap, refuseFd, refuseFile bool
		copyOnWrite, mapsHit            bool
		backing                         string
	}{
		{name: "copy-on-write", copyOnWrite: linux, mapsHit: linux, backing: "file"},
		{name: "unnamed file refused: memfd", refuseFile: true, copyOnWrite: linux, mapsHit: linux, backing: "memfd"},
		{name: "mapping refused", refuseMap: true, copyOnWrite: linux, mapsHit: linux},
		{name: "image file refused", refuseFd: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var maps atomic.Int64
			restoreHooks(t)
			prevMap := mapPrivate
			mapPrivate = func(addr uintptr, length, fd int) error {
				maps.Add(1)
				if tc.refuseMap {
					return syscall.EPERM
				}
				return prevMap(addr, length, fd)
			}
			if tc.refuseFd {
				newImageFile = func([]byte, string) (int, error) { return -1, errors.New("refused by the test") }
			}
			minFileImage = 0 // the test guest's image is small
			if tc.refuseFile {
				unnamedFile = func(string, int, func(int) error) (int, error) { return -1, errors.New("refused by the test") }
			}
			m := loadIO(t, wasm, ModuleConfig{Name: "marker"})
			info := m.Snapshot()
			if !info.Taken || info.CopyOnWrite != tc.copyOnWrite || info.MemoryBytes != 4*65536 || info.Reseeded != 0 {
				t.Fatalf("snapshot: %+v", info)
			}
			if got := imageBacking(t, m.snap.image); linux && tc.backing != "" && got != tc.backing {
				t.Fatalf("the image is in a %s, want a %s", got, tc.backing)
			}
			insts := instances(t, m, 2)
			a, b := insts[0], insts[1]
			if got := marker(t, a); got != markerFresh {
				t.Fatalf("restored instance reads %q, want %q", got, markerFresh)
			}
			callOn(t, a, "w")
			if got := marker(t, a); got != "\x77\x77\x01D" {
				t.Fatalf("writer reads %q after its write", got)
			}
			if got := marker(t, b); got != markerFresh {
				t.Fatalf("another instance reads %q after the write, want %q", got, markerFresh)
			}
			if got := marker(t, instances(t, m, 1)[0]); got != markerFresh {
				t.Fatalf("an instance made after the write reads %q, want %q", got, markerFresh)
			}
			if (maps.Load() > 0) != tc.mapsHit {
				t.Fatalf("%d private mappings tried", maps.Load())
			}
			// The pool's instances are restored too (the first one was
			// replaced) and behave the same.
			var c Call
			c.Input = []byte("r")
			if err := m.Invoke(context.Background(), EntryHTTP, &c); err != nil || string(c.Output) != markerFresh {
				t.Fatalf("pooled instance: %q, %v", c.Output, err)
			}
			if st := m.Stats(); st.Restored < 4 || st.Restored != st.Created-1 {
				t.Fatalf("stats: %+v", st)
			}
		})
	}
}

// restoreHooks puts mapPrivate, newImageFile, unnamedFile and minFileImage
// back at the test's end.
func restoreHooks(t *testing.T) {
	prevFile, prevMin := unnamedFile, minFileImage
	t.Cleanup(func() { unnamedFile, minFileImage = prevFile, prevMin })
	prevMap, prevFd := mapPrivate, newImageFile
	t.Cleanup(func() { mapPrivate, newImageFile = prevMap, prevFd })
}

// TestSnapshotOptOut: with DisableSnapshot every instance runs its
// initialiser.
func TestSnapshotOptOut(t *testing.T) {
	m := loadIO(t, wattest.Build(t, "testdata/snap-marker.wat"), ModuleConfig{Name: "marker", DisableSnapshot: true})
	if info := m.Snapshot(); info.Taken || !strings.Contains(info.Refused, "disabled") {
		t.Fatalf("snapshot: %+v", info)
	}
	for _, inst := range instances(t, m, 2) {
		if got := marker(t, inst); got != markerFresh {
			t.Fatalf("instance reads %q", got)
		}
	}
	if st := m.Stats(); st.Restored != 0 {
		t.Fatalf("restored %d instances", st.Restored)
	}
}

// TestSnapshotRefusedForRandomState: an initialiser that read random bytes
// and keeps no generator meshd can reseed gets no snapshot; its instances
// initialise each with their own random bytes.
func TestSnapshotRefusedForRandomState(t *testing.T) {
	m := loadIO(t, wattest.Build(t, "testdata/snap-random.wat"), ModuleConfig{Name: "random"})
	if info := m.Snapshot(); info.Taken || !strings.Contains(info.Refused, "read 16 random bytes") {
		t.Fatalf("snapshot: %+v", info)
	}
	insts := instances(t, m, 2)
	a, b := callOn(t, insts[0], ""), callOn(t, insts[1], "")
	if len(a) != 16 || bytes.Equal(a, b) {
		t.Fatalf("two instances kept %x and %x", a, b)
	}
	if st := m.Stats(); st.Restored != 0 {
		t.Fatalf("restored %d instances", st.Restored)
	}
}

const snapGuest = "testdata/guest-snap.wasm"

// TestSnapshotGoGuestIsUnique: two instances of a Go guest restored from
// one snapshot draw different random values (math/rand/v2 and crypto/rand),
// seed hash/maphash and maps differently (a map's iteration order), read
// the current clock, and still hold what their initialiser computed,
// having run it once.
func TestSnapshotGoGuestIsUnique(t *testing.T) {
	wasm, err := os.ReadFile(snapGuest)
	if err != nil {
		t.Fatalf("%s is missing: run `make fixtures` (or `make test`) first", snapGuest)
	}
	m := loadIO(t, wasm, ModuleConfig{Name: "snap"})
	info := m.Snapshot()
	if !info.Taken || info.Reseeded < 1 || info.PrefaultBytes == 0 { // its describe writes pages
		t.Fatalf("snapshot: %+v", info)
	}
	before := time.Now()
	insts := instances(t, m, 2)
	a, b := report(t, callOn(t, insts[0], "")), report(t, callOn(t, insts[1], ""))
	after := time.Now()
	for _, k := range []string{"rand", "maphash", "order", "crypto"} {
		if a[k] == "" || a[k] == b[k] {
			t.Errorf("%s: both restored instances report %q", k, a[k])
		}
	}
	for _, r := range []map[string]string{a, b} {
		now, err := strconv.ParseInt(r["now"], 10, 64)
		if err != nil || now < before.Add(-time.Second).UnixNano() || now > after.Add(time.Second).UnixNano() {
			t.Errorf("clock %q is not between %v and %v", r["now"], before, after)
		}
		if r["inits"] != "1" || r["calls"] != "1" || r["table"] != "100" {
			t.Errorf("state: inits %s, calls %s, table %s; want 1, 1, 100", r["inits"], r["calls"], r["table"])
		}
	}
}

// report parses guest-snap's "key value" lines.
func report(t *testing.T, out []byte) map[string]string {
	t.Helper()
	r := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("report line %q", line)
		}
		r[k] = v
	}
	return r
}

// TestSnapshotLetsGoOfTheBinary: once a Go guest's snapshot is taken, the
// module drops its function bodies and data segments, and every instance
// after that is restored from the snapshot and serves; a failed restore
// is then an error, never an instance initialised without its data. A
// module without a snapshot keeps them and initialises its instances.
func TestSnapshotLetsGoOfTheBinary(t *testing.T) {
	wasm, err := os.ReadFile(snapGuest)
	if err != nil {
		t.Fatalf("%s is missing: run `make fixtures` (or `make test`) first", snapGuest)
	}
	for _, snap := range []bool{true, false} {
		m := loadIO(t, wasm, ModuleConfig{Name: "snap", PoolMax: 1, MaxCallsPerInstance: 1, DisableSnapshot: !snap})
		if st := m.Stats(); st.SourceReleased != snap {
			t.Fatalf("snapshot %v: source released %v", snap, st.SourceReleased)
		}
		for i := range 3 { // a fresh instance each
			r := report(t, callOn(t, instances(t, m, 1)[0], ""))
			if r["inits"] != "1" || r["calls"] != "1" || r["table"] != "100" {
				t.Fatalf("snapshot %v, call %d: inits %s, calls %s, table %s; want 1, 1, 100", snap, i, r["inits"], r["calls"], r["table"])
			}
		}
	}

	m := loadIO(t, wasm, ModuleConfig{Name: "snap", PoolMax: 1})
	m.snap.globals = m.snap.globals[:0] // restoring fails from now on
	m.closeInstance(<-m.idle)
	m.tokens <- struct{}{}
	c := Call{}
	err = m.Invoke(context.Background(), EntryHTTP, &c)
	if !errors.Is(err, ErrTrap) || !strings.Contains(err.Error(), "restoring from the snapshot") {
		t.Fatalf("a failed restore after the binary went: %v, want an error naming the restore", err)
	}
	if st := m.Stats(); st.Live != 0 {
		t.Fatalf("an instance was made: %+v", st)
	}
}

// imageBacking says what holds img: "file" (a regular file with no name),
// "memfd", "copy" (no descriptor), or what else fstat says.
func imageBacking(t *testing.T, img *memoryImage) string {
	t.Helper()
	if img.fd < 0 {
		return "copy"
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(img.fd, &st); err != nil {
		t.Fatal(err)
	}
	link, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", img.fd))
	switch {
	case strings.HasPrefix(link, "/memfd:"):
		return "memfd"
	case st.Mode&syscall.S_IFMT == syscall.S_IFREG && st.Nlink == 0:
		return "file"
	}
	return fmt.Sprintf("mode %o, %d links, %s", st.Mode, st.Nlink, link)
}

// TestSnapshotImageFile: with a cache directory an image (of
// minFileImage or more) is an unnamed file there, which no descriptor can write (the image's own is
// read-only, and it has no name to open), holding the memory's contents;
// releasePages drops meshd's mapping of it from the resident set and an
// instance restored afterwards still starts from it.
func TestSnapshotImageFile(t *testing.T) {
	restoreHooks(t)
	minFileImage = 0
	m := loadIO(t, wattest.Build(t, "testdata/snap-marker.wat"), ModuleConfig{Name: "marker"})
	img := m.snap.image
	if got := imageBacking(t, img); got != "file" {
		t.Skipf("the image is in a %s here", got)
	}
	if _, err := syscall.Pwrite(img.fd, []byte{1}, 0); err == nil {
		t.Fatal("the image's descriptor writes")
	}
	flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(img.fd), syscall.F_GETFL, 0)
	if errno != 0 || flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		t.Fatalf("the image's descriptor has flags %#x (%v), want read-only", flags, errno)
	}
	if got := marker(t, instances(t, m, 1)[0]); got != markerFresh {
		t.Fatalf("restored instance reads %q, want %q", got, markerFresh)
	}
	img.releasePages()
	if got := marker(t, instances(t, m, 1)[0]); got != markerFresh {
		t.Fatalf("restored after the release, it reads %q, want %q", got, markerFresh)
	}
}
