// Command density measures how many services one meshd holds: it
// generates a plugin directory of N services with distinct routes (Go
// services: copies of one Go guest, testdata/guest-density, each with its
// own route; WAT services: generated and compiled with wat2wasm), starts
// bin/meshd on it, and reports
//
//   - the start time, from exec to "meshd serving" (every service loaded),
//     with a cold cache, a warm one (compiled code and snapshots kept), and
//     a warm one without the snapshots (the initialisers run again);
//   - the time until every service answered its first request;
//   - the resident memory (VmRSS, smaps_rollup Pss, and smaps' Pss by
//     kind of mapping) with 0, N/2 and N idle services, each having served
//     one request, and from those the marginal memory of one service;
//   - the same once every service has fallen asleep (--idle-release: its
//     instances closed, its code out of resident memory), and the latency
//     of the request that wakes each, beside that of the next one.
//
// `make density` builds what it needs and runs it; the markdown tables go
// to stdout. It runs the daemon in a scratch directory on loopback ports
// chosen by the system, and stops it after each measure.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "density:", err)
		os.Exit(1)
	}
}

type config struct {
	n     int
	kinds []string
	bin   string
	work  string
	keep  bool
	cold  bool
	reps  int
	wait  time.Duration
	idle  time.Duration
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("density", flag.ContinueOnError)
	var c config
	var kinds string
	fs.IntVar(&c.n, "n", 100, "services per plugin directory")
	fs.StringVar(&kinds, "kinds", "go,wat", "kinds of services, comma-separated: go, wat")
	fs.StringVar(&c.bin, "meshd", "", "meshd binary (default: built from this checkout)")
	fs.StringVar(&c.work, "work", "", "scratch directory (default: a new temporary one)")
	fs.BoolVar(&c.keep, "keep", false, "keep the scratch directory")
	fs.BoolVar(&c.cold, "cold", true, "measure a start with an empty cache (false: the first start only fills the cache, unmeasured; a -work directory kept from an earlier run keeps its cache)")
	fs.IntVar(&c.reps, "repeat", 3, "warm starts of each kind measured (the table gives their median and range)")
	fs.DurationVar(&c.wait, "wait", 30*time.Minute, "longest a start may take")
	fs.DurationVar(&c.idle, "idle-release", time.Second, "meshd's --idle-release for the asleep measure (0: skip it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.n < 2 {
		return fmt.Errorf("-n %d: want at least 2", c.n)
	}
	c.kinds = strings.Split(kinds, ",")
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if c.work == "" {
		if c.work, err = os.MkdirTemp("", "density-"); err != nil {
			return err
		}
	}
	if !c.keep {
		defer os.RemoveAll(c.work)
	}
	if c.bin == "" {
		if c.bin, err = buildMeshd(root, c.work); err != nil {
			return err
		}
	}
	ctx := context.Background()
	zero, err := measureIdle(ctx, c, filepath.Join(c.work, "empty"), filepath.Join(c.work, "empty-data"), nil)
	if err != nil {
		return fmt.Errorf("no services: %w", err)
	}
	fmt.Fprintf(out, "meshd with no service: VmRSS %d KiB, Pss %d KiB\n\n", zero.mem.RSS, zero.mem.PSS)
	for _, kind := range c.kinds {
		if err := measureKind(ctx, c, root, kind, zero, out); err != nil {
			return fmt.Errorf("%s services: %w", kind, err)
		}
	}
	return nil
}

// result is one start of meshd and its memory once idle.
type result struct {
	started   time.Duration // exec to "meshd serving"
	answered  time.Duration // exec to every service's first answer
	mem       memory
	heap      float64 // go_memstats_heap_inuse_bytes
	fromCache int
	taken     int
}

// measureIdle starts meshd on plugins, has each service answer once,
// collects garbage and reads the memory.
func measureIdle(ctx context.Context, c config, plugins, data string, svcs []service) (result, error) {
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		return result{}, err
	}
	t0 := time.Now()
	d, err := startDaemon(c.bin, plugins, data, c.wait)
	if err != nil {
		return result{}, err
	}
	defer d.stop()
	if d.Services != len(svcs) {
		return result{}, fmt.Errorf("meshd serves %d services, want %d: %s", d.Services, len(svcs), strings.Join(d.errors(), "; "))
	}
	if err := verify(ctx, d.http, svcs); err != nil {
		return result{}, err
	}
	r := result{started: d.Started, answered: time.Since(t0)}
	r.fromCache, r.taken = d.snapshots()
	err = settle(ctx, d, &r)
	return r, err
}

// settle has meshd collect garbage twice, a second apart (the second frees
// what the finalisers of the first released), then reads its heap and its
// memory into r.
func settle(ctx context.Context, d *daemon, r *result) (err error) {
	for range 2 {
		if err := d.gc(ctx); err != nil {
			return err
		}
		time.Sleep(time.Second)
	}
	if r.heap, err = d.metric(ctx, "go_memstats_heap_inuse_bytes"); err != nil {
		return err
	}
	r.mem, err = readMemory(d.pid())
	return err
}

// asleep is a start of meshd whose services all fell asleep: its memory
// then, and the latency of the request that woke each service and of the
// next one.
type asleep struct {
	result
	wake, next []time.Duration
}

// measureAsleep starts meshd on plugins with c.idle as idle release, has
// each service answer once, waits until each has fallen asleep, reads the
// memory as measureIdle does, then times a request to each service (it
// wakes it) and another.
func measureAsleep(ctx context.Context, c config, plugins, data string, svcs []service) (asleep, error) {
	d, err := startDaemon(c.bin, plugins, data, c.wait, "--idle-release", c.idle.String())
	if err != nil {
		return asleep{}, err
	}
	defer d.stop()
	if err := verify(ctx, d.http, svcs); err != nil {
		return asleep{}, err
	}
	deadline := time.Now().Add(2*c.idle + time.Minute)
	for {
		n, err := d.asleep(ctx)
		if err != nil {
			return asleep{}, err
		}
		if n == len(svcs) {
			break
		}
		if time.Now().After(deadline) {
			return asleep{}, fmt.Errorf("%d of %d services asleep after %s", n, len(svcs), 2*c.idle+time.Minute)
		}
		time.Sleep(100 * time.Millisecond)
	}
	slept := d.sleeping()
	var r asleep
	if err := settle(ctx, d, &r.result); err != nil {
		return r, err
	}
	if n, err := d.asleep(ctx); err != nil || n != len(svcs) || d.sleeping() != slept {
		return r, fmt.Errorf("%d of %d services asleep after the measure (%v), %d fell asleep during it", n, len(svcs), err, d.sleeping()-slept)
	}
	for _, lat := range []*[]time.Duration{&r.wake, &r.next} {
		for _, s := range svcs {
			t0 := time.Now()
			if err := verify(ctx, d.http, []service{s}); err != nil {
				return r, err
			}
			*lat = append(*lat, time.Since(t0))
		}
	}
	return r, nil
}

// measureKind runs the starts of n services of kind and prints them.
func measureKind(ctx context.Context, c config, root, kind string, zero result, out io.Writer) error {
	dir := filepath.Join(c.work, kind)
	svcs, err := generate(ctx, root, kind, filepath.Join(dir, "all"), c.n)
	if err != nil {
		return err
	}
	half := svcs[:c.n/2]
	halfDir := filepath.Join(dir, "half")
	if err := os.RemoveAll(halfDir); err != nil {
		return err
	}
	if err := os.MkdirAll(halfDir, 0o755); err != nil {
		return err
	}
	for _, s := range half {
		if err := os.Link(filepath.Join(dir, "all", s.name+".wasm"), filepath.Join(halfDir, s.name+".wasm")); err != nil {
			return err
		}
	}
	data := filepath.Join(dir, "data")
	all := filepath.Join(dir, "all")
	if c.cold {
		if err := os.RemoveAll(data); err != nil {
			return err
		}
	}
	cold, err := measureIdle(ctx, c, all, data, svcs)
	if err != nil {
		return fmt.Errorf("cold start: %w", err)
	}
	var warms, noSnaps []result
	for range max(c.reps, 1) {
		warm, err := measureIdle(ctx, c, all, data, svcs)
		if err != nil {
			return fmt.Errorf("warm start: %w", err)
		}
		warms = append(warms, warm)
		if err := os.RemoveAll(filepath.Join(data, "cache", "snapshots")); err != nil {
			return err
		}
		noSnap, err := measureIdle(ctx, c, all, data, svcs)
		if err != nil {
			return fmt.Errorf("warm start without snapshots: %w", err)
		}
		noSnaps = append(noSnaps, noSnap)
	}
	warm := warms[0]
	halfR, err := measureIdle(ctx, c, halfDir, data, half)
	if err != nil {
		return fmt.Errorf("half: %w", err)
	}

	fmt.Fprintf(out, "### %d %s services\n\n", c.n, kind)
	fmt.Fprintf(out, "| start | to serving | to every first answer | snapshots read from the cache / taken |\n|---|---|---|---|\n")
	if c.cold {
		fmt.Fprintf(out, "| cold cache | %s | %s | %d / %d |\n", ms(cold.started), ms(cold.answered), cold.fromCache, cold.taken)
	}
	for _, r := range []struct {
		name string
		rs   []result
	}{{"warm cache", warms}, {"warm code, snapshots removed", noSnaps}} {
		fmt.Fprintf(out, "| %s (median of %d, range) | %s | %s | %d / %d |\n", r.name, len(r.rs),
			spread(r.rs, func(x result) time.Duration { return x.started }),
			spread(r.rs, func(x result) time.Duration { return x.answered }), r.rs[0].fromCache, r.rs[0].taken)
	}
	fmt.Fprintf(out, "\n| idle services | VmRSS | Pss | of it: compiled code | snapshot images | other anonymous | meshd binary | Go heap in use |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range []struct {
		n int
		r result
	}{{0, zero}, {len(half), halfR}, {c.n, warm}} {
		m := r.r.mem
		fmt.Fprintf(out, "| %d | %s | %s | %s | %s | %s | %s | %s |\n", r.n, mib(m.RSS), mib(m.PSS),
			mib(m.Code), mib(m.Images), mib(m.Anon), mib(m.Binary), mib(int64(r.r.heap/1024)))
	}
	per := func(a, b result, n int, f func(memory) int64) string {
		return fmt.Sprintf("%.0f KiB", float64(f(b.mem)-f(a.mem))/float64(n))
	}
	rss := func(m memory) int64 { return m.RSS }
	pss := func(m memory) int64 { return m.PSS }
	shmem := func(m memory) int64 { return m.Shmem }
	imageFiles := func(m memory) int64 { return m.ImageFiles }
	nh := c.n - len(half)
	fmt.Fprintf(out, "\nMarginal memory of one idle %s service: VmRSS %s (from %d to %d services), %s (from 0 to %d); Pss %s, %s.\n",
		kind, per(halfR, warm, nh, rss), len(half), c.n, per(zero, warm, c.n, rss), c.n, per(halfR, warm, nh, pss), per(zero, warm, c.n, pss))
	parts := []struct {
		name string
		f    func(memory) int64
	}{
		{"compiled code", func(m memory) int64 { return m.Code }},
		{"snapshot images", func(m memory) int64 { return m.Images }},
		{"other anonymous (Go heap, instances' own pages, stacks)", func(m memory) int64 { return m.Anon }},
	}
	fmt.Fprintf(out, "Of it (Pss, from %d to %d services):", len(half), c.n)
	for i, p := range parts {
		sep := ","
		if i == len(parts)-1 {
			sep = "."
		}
		fmt.Fprintf(out, " %s %s%s", p.name, per(halfR, warm, nh, p.f), sep)
	}
	fmt.Fprintf(out, " Go heap in use: %.0f KiB. The system's Shmem (the snapshots' memfd images, whole): %s. meshd's unnamed image files (page cache): %s.\n\n",
		(warm.heap-halfR.heap)/1024/float64(nh), per(halfR, warm, nh, shmem), per(halfR, warm, nh, imageFiles))
	if c.idle <= 0 {
		return nil
	}
	sleepAll, err := measureAsleep(ctx, c, all, data, svcs)
	if err != nil {
		return fmt.Errorf("asleep: %w", err)
	}
	sleepHalf, err := measureAsleep(ctx, c, halfDir, data, half)
	if err != nil {
		return fmt.Errorf("asleep, half: %w", err)
	}
	fmt.Fprintf(out, "Asleep (--idle-release %s):\n\n| idle services | VmRSS | Pss | of it: compiled code | snapshot images | other anonymous | Go heap in use |\n|---|---|---|---|---|---|---|\n", c.idle)
	for _, r := range []struct {
		n int
		r asleep
	}{{len(half), sleepHalf}, {c.n, sleepAll}} {
		m := r.r.mem
		fmt.Fprintf(out, "| %d | %s | %s | %s | %s | %s | %s |\n", r.n, mib(m.RSS), mib(m.PSS),
			mib(m.Code), mib(m.Images), mib(m.Anon), mib(int64(r.r.heap/1024)))
	}
	asleepPer := func(f func(memory) int64) string { return per(sleepHalf.result, sleepAll.result, nh, f) }
	fmt.Fprintf(out, "\nMarginal memory of one asleep %s service: VmRSS %s (from %d to %d services); Pss %s; of it compiled code %s, snapshot images %s, other anonymous %s; Go heap in use %.0f KiB. The system's Shmem (the snapshots' memfd images, whole): %s. meshd's unnamed image files (page cache): %s.\n",
		kind, asleepPer(rss), len(half), c.n, asleepPer(pss), asleepPer(parts[0].f), asleepPer(parts[1].f), asleepPer(parts[2].f),
		(sleepAll.heap-sleepHalf.heap)/1024/float64(nh), asleepPer(shmem), asleepPer(imageFiles))
	fmt.Fprintf(out, "The request that wakes a service: %s; the next one: %s (median, range, %d services).\n\n",
		medianRange(sleepAll.wake, msf), medianRange(sleepAll.next, msf), c.n)
	return nil
}

// medianRange is the median of ds and their range, each as f writes it.
func medianRange(ds []time.Duration, f func(time.Duration) string) string {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return fmt.Sprintf("%s (%s–%s)", f(ds[len(ds)/2]), f(ds[0]), f(ds[len(ds)-1]))
}

func msf(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// spread is the median of f over rs, and their range, in whole
// milliseconds.
func spread(rs []result, f func(result) time.Duration) string {
	ds := make([]time.Duration, len(rs))
	for i, r := range rs {
		ds[i] = f(r)
	}
	return medianRange(ds, ms)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }
