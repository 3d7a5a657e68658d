package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// burstServices are the Go services a burst run loads: each takes one
// burst from a cold pool; the last warms the client's connections first.
const burstServices = 5

// burstSize is the burst's concurrency, and the pool's cap.
const burstSize = 64

// burstEnv is what every run of BenchmarkBurst shares: meshd built once,
// the services generated once, their compilation cache and snapshots warm.
type burstEnvT struct {
	work, bin, plugins, data string
	svcs                     []service
}

var (
	burstOnce sync.Once
	burstEnv  burstEnvT
	burstErr  error
)

func setupBurst(work string) (burstEnvT, error) {
	root, err := moduleRoot()
	if err != nil {
		return burstEnvT{}, err
	}
	env := burstEnvT{work: work, plugins: filepath.Join(work, "plugins"), data: filepath.Join(work, "data")}
	if env.bin, err = buildMeshd(root, work); err != nil {
		return env, err
	}
	if env.svcs, err = generate(context.Background(), root, "go", env.plugins, burstServices); err != nil {
		return env, err
	}
	// One start compiles the services into the cache and keeps their
	// snapshots, so the runs measure warm starts.
	d, err := startDaemon(env.bin, env.plugins, env.data, 10*time.Minute)
	if err != nil {
		return env, err
	}
	d.stop()
	return env, nil
}

// TestMain removes what the burst runs left in the temporary directory.
func TestMain(m *testing.M) {
	code := m.Run()
	if burstEnv.work != "" {
		_ = os.RemoveAll(burstEnv.work)
	}
	os.Exit(code)
}

// burstClient keeps a connection per concurrent request.
var burstClient = &http.Client{
	Timeout:   20 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 2 * burstSize, IdleConnTimeout: time.Minute},
}

// fire sends n concurrent GETs of url, released together, and returns
// their latencies; any answer but a 200 holding want fails.
func fire(url, want string, n int) ([]time.Duration, error) {
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			resp, err := burstClient.Get(url)
			if err != nil {
				errs[i] = err
				return
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			lat[i] = time.Since(t0)
			if err == nil && (resp.StatusCode != 200 || !bytes.Contains(body, []byte(want))) {
				err = fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, bound(string(body), 200))
			}
			errs[i] = err
		}()
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return lat, nil
}

// steady sends requests from workers concurrent workers, each perWorker
// one after the other, and returns their latencies.
func steady(url, want string, workers, perWorker int) ([]time.Duration, error) {
	var mu sync.Mutex
	var all []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				lat, err := fire(url, want, 1)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				all = append(all, lat...)
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	return all, firstErr
}

// p99 is the 99th percentile of lat (nearest rank).
func p99(lat []time.Duration) time.Duration {
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[(len(s)*99+99)/100-1]
}

// created reads meshd_instances_created_total of service from meshd's
// metrics.
func (d *daemon) created(ctx context.Context, service string) (float64, error) {
	code, body, err := get(ctx, "http://"+d.admin+"/metrics")
	if err != nil || code != 200 {
		return 0, fmt.Errorf("metrics: %d %v", code, err)
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if strings.HasPrefix(line, "meshd_instances_created_total{") && strings.Contains(line, `service="`+service+`"`) {
			f := strings.Fields(line)
			return strconv.ParseFloat(f[len(f)-1], 64)
		}
	}
	return 0, fmt.Errorf("metrics: no meshd_instances_created_total of %s", service)
}

// BenchmarkBurst: from a pool of one warm instance (pool_min 1, pool_max
// 64), a burst of 64 concurrent GETs to one Go service; its p99 is set
// against the p99 of 8 concurrent clients on the pool the burst left
// (steady) and of the same burst again on that pool, in the same run.
// Two routes: items answers at once, so the calls of a burst barely
// overlap and the pool grows little; hold keeps its instance 10 ms (a
// guest sleep), so the burst needs 64 instances and grows the pool to
// its cap. Each iteration starts meshd from a warm cache and bursts
// burstServices-1 services in turn (the last one warms the client's
// connections). `make bench` runs it (meshd built from this checkout;
// make fixtures for the Go guest).
func BenchmarkBurst(b *testing.B) {
	if testing.Short() {
		b.Skip("starts meshd")
	}
	burstOnce.Do(func() {
		work, err := os.MkdirTemp("", "burst-")
		if err != nil {
			burstErr = err
			return
		}
		burstEnv, burstErr = setupBurst(work)
		burstEnv.work = work
	})
	if burstErr != nil {
		b.Fatal(burstErr)
	}
	for _, route := range []string{"items/42", "hold"} {
		b.Run(strings.ReplaceAll(route, "/", "-"), func(b *testing.B) { benchBurst(b, burstEnv, route) })
	}
}

func benchBurst(b *testing.B, env burstEnvT, route string) {
	var cold, warm, calm []time.Duration
	var grown []float64
	for range b.N {
		d, err := startDaemon(env.bin, env.plugins, env.data, 10*time.Minute,
			"--pool-min", "1", "--pool-max", strconv.Itoa(burstSize))
		if err != nil {
			b.Fatal(err)
		}
		err = func() error {
			defer d.stop()
			ctx := context.Background()
			warmup := env.svcs[len(env.svcs)-1]
			if _, err := fire("http://"+d.http+"/"+warmup.tag+"/"+route, warmup.tag, burstSize); err != nil {
				return err
			}
			for _, s := range env.svcs[:len(env.svcs)-1] {
				url := "http://" + d.http + "/" + s.tag + "/" + route
				before, err := d.created(ctx, s.name)
				if err != nil {
					return err
				}
				lat, err := fire(url, s.tag, burstSize)
				if err != nil {
					return err
				}
				cold = append(cold, lat...)
				after, err := d.created(ctx, s.name)
				if err != nil {
					return err
				}
				grown = append(grown, after-before)
				if lat, err = steady(url, s.tag, 8, 100); err != nil {
					return err
				}
				calm = append(calm, lat...)
				for range 4 {
					if lat, err = fire(url, s.tag, burstSize); err != nil {
						return err
					}
					warm = append(warm, lat...)
				}
			}
			return nil
		}()
		if err != nil {
			b.Fatal(err)
		}
	}
	msf := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(msf(p99(cold)), "burst-p99-ms")
	b.ReportMetric(msf(p99(warm)), "warm-burst-p99-ms")
	b.ReportMetric(msf(p99(calm)), "steady8-p99-ms")
	b.ReportMetric(float64(p99(cold))/float64(p99(calm)), "burst/steady")
	b.ReportMetric(float64(p99(cold))/float64(p99(warm)), "burst/warm-burst")
	var sum float64
	for _, n := range grown {
		sum += n
	}
	b.ReportMetric(sum/float64(len(grown)), "instances-per-burst")
}

// TestGoServicesAreDistinct: the copies of guest-density each hold their
// own tag where the marker was (their route and answer), and differ.
func TestGoServicesAreDistinct(t *testing.T) {
	base := readGoGuest(t)
	dir := t.TempDir()
	var mods [][]byte
	for i := range 2 {
		s, err := goService(dir, base, i)
		if err != nil {
			t.Fatal(err)
		}
		wasm, err := os.ReadFile(filepath.Join(dir, s.name+".wasm"))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(wasm, []byte(goMarker)) || !bytes.Contains(wasm, []byte("GET /"+s.tag+"/items/{id}")) || len(wasm) != len(base) {
			t.Fatalf("copy %d (%s): marker left or route %q missing", i, s.name, "GET /"+s.tag+"/items/{id}")
		}
		mods = append(mods, wasm)
	}
	if bytes.Equal(mods[0], mods[1]) {
		t.Fatal("two copies are the same module")
	}
	if _, err := goService(dir, []byte("no marker here"), 0); err == nil {
		t.Fatal("a module without the marker was copied")
	}
}

// readGoGuest returns the guest-density module the Go services copy
// (built by `make fixtures`).
func readGoGuest(tb testing.TB) []byte {
	tb.Helper()
	root, err := moduleRoot()
	if err != nil {
		tb.Fatal(err)
	}
	wasm, err := os.ReadFile(filepath.Join(root, goGuest))
	if err != nil {
		tb.Fatalf("%s is missing: run `make fixtures` first", goGuest)
	}
	return wasm
}
