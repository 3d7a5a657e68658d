//go:build linux

package runtime

import (
	"bufio"
	"context"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/meshd/meshd/internal/wattest"
)

func heapInuse() int64 {
	goruntime.GC()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// instancePages sums, over /proc/self/smaps, the kB of fields of the
// mappings within the memory reservations of size bytes that start at one
// of addrs (the image's mapping splits a reservation in two).
func instancePages(tb testing.TB, addrs map[uint64]bool, size uint64, fields ...string) map[string]int64 {
	tb.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		tb.Skip(err)
	}
	defer f.Close()
	out := map[string]int64{}
	var in bool
	var reservationEnd uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rng, _, ok := strings.Cut(line, " "); ok && strings.Contains(rng, "-") && !strings.HasSuffix(rng, ":") {
			lo, hi, _ := strings.Cut(rng, "-")
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 == nil && err2 == nil {
				switch {
				case addrs[start]:
					in, reservationEnd = true, start+size
				case in && end <= reservationEnd:
					// the rest of a reservation split by the image's mapping
				default:
					in = false
				}
				continue
			}
		}
		if !in {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, want := range fields {
			if k == want {
				n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				out[k] += n
			}
		}
	}
	return out
}

// benchIdleMemory reports what an idle instance costs: n instances made
// (restored from the snapshot, or initialised with snapshot off), each
// having served one call of input, then left idle. private-KiB is the
// resident memory of its linear memory that is its own (pages it wrote,
// or all of it without a snapshot), shared-KiB what it maps of the
// snapshot's image (shared by every instance of the module version, and
// resident once), heap-KiB the Go heap it holds.
func benchIdleMemory(b *testing.B, wasm []byte, input []byte, cfg ModuleConfig) {
	const n = 32
	m := loadStubbed(b, wasm, cfg)
	ctx := context.Background()
	for b.Loop() {
		h0 := heapInuse()
		insts := make([]*instance, 0, n)
		addrs := map[uint64]bool{}
		for range n {
			inst, err := m.newInstance(ctx)
			if err != nil {
				b.Fatal(err)
			}
			c := &Call{Input: input, maxOutput: 1 << 20}
			cc := inst.cc
			cc.parent, cc.call = ctx, c
			inst.ctx = cc
			if err := inst.fn(EntryHTTP).CallWithStack(cc, append(inst.stack[:0], uint64(len(input)))); err != nil {
				b.Fatal(err)
			}
			inst.ctx, cc.call = nil, nil
			insts = append(insts, inst)
			if buf, ok := inst.mod.Memory().Read(0, 1); ok {
				addrs[uint64(uintptr(unsafe.Pointer(&buf[0])))] = true
			}
		}
		h1 := heapInuse()
		p := instancePages(b, addrs, uint64(m.cfg.MemoryLimitPages)*65536, "Private_Dirty", "Private_Clean", "Shared_Clean", "Shared_Dirty")
		b.ReportMetric(float64(p["Private_Dirty"]+p["Private_Clean"])/n, "private-KiB/instance")
		b.ReportMetric(float64(p["Shared_Clean"]+p["Shared_Dirty"])/n, "shared-KiB/instance")
		b.ReportMetric(float64(h1-h0)/1024/n, "heap-KiB/instance")
		b.ReportMetric(float64(m.Snapshot().ImageBytes)/1024, "image-KiB")
		for _, inst := range insts {
			m.closeInstance(inst)
		}
	}
}

// BenchmarkIdleMemoryGo: idle instances of the order service after a GET.
func BenchmarkIdleMemoryGo(b *testing.B) {
	benchIdleMemory(b, readOrder(b), orderGet(), ModuleConfig{Name: "order"})
}

// BenchmarkIdleMemoryGoNoSnapshot: the same, each instance initialised.
func BenchmarkIdleMemoryGoNoSnapshot(b *testing.B) {
	benchIdleMemory(b, readOrder(b), orderGet(), ModuleConfig{Name: "order", DisableSnapshot: true})
}

// BenchmarkIdleMemoryWAT: idle instances of the WAT guest after an echo.
func BenchmarkIdleMemoryWAT(b *testing.B) {
	benchIdleMemory(b, wattest.Build(b, "testdata/guest.wat"), []byte("e hello"), ModuleConfig{Name: "guest"})
}
