package main

import (
	"context"
	"os"
	"path/filepath"
	goruntime "runtime"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/runtime"
)

// stubHost returns a HostModule exporting, for every meshd function wasm
// imports, a function of its signature that returns zeros (what a module
// needs to instantiate and describe itself, no more).
func stubHost(tb testing.TB, wasm []byte) runtime.HostModule {
	ctx := context.Background()
	// The interpreter only decodes: the imports are all this needs.
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	compiled, err := r.CompileModule(ctx, wasm)
	if err != nil {
		tb.Fatal(err)
	}
	type fn struct {
		name            string
		params, results []api.ValueType
	}
	var fns []fn
	for _, f := range compiled.ImportedFunctions() {
		if mod, name, _ := f.Import(); mod == abi.ModuleName {
			fns = append(fns, fn{name, f.ParamTypes(), f.ResultTypes()})
		}
	}
	return func(ctx context.Context, r wazero.Runtime) error {
		b := r.NewHostModuleBuilder(abi.ModuleName)
		for _, f := range fns {
			b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, stack []uint64) {
				clear(stack)
			}), f.params, f.results).Export(f.name)
		}
		_, err := b.Instantiate(ctx)
		return err
	}
}

// BenchmarkModuleHeap measures what the runtime package alone keeps on
// the Go heap per loaded module (its wazero runtime, the compiled module
// read from the warm cache, WASI and the host module linked, one instance
// restored from the snapshot), without the daemon's share (gateway,
// registry, key-value bucket, consumers, metrics): heap-KiB/module.
func BenchmarkModuleHeap(b *testing.B) {
	goWasm := readGoGuest(b)
	watDir := b.TempDir()
	s, err := watService(context.Background(), watDir, b.TempDir(), 0)
	if err != nil {
		b.Fatal(err)
	}
	watWasm, err := os.ReadFile(filepath.Join(watDir, s.name+".wasm"))
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		wasm []byte
		n    int
	}{{"wat", watWasm, 100}, {"go", goWasm, 10}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			// DENSITY_CACHE keeps the cache across runs (a profile of warm
			// loads then holds no compilation).
			dir := os.Getenv("DENSITY_CACHE")
			if dir == "" {
				dir = b.TempDir()
			}
			e, err := runtime.NewEngine(runtime.EngineConfig{CacheDir: dir})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close(ctx)
			host := stubHost(b, tc.wasm)
			// The first load compiles into the cache and keeps the snapshot.
			m, err := e.Load(ctx, tc.wasm, host, runtime.ModuleConfig{Name: "first"})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close(ctx)
			var perModule float64
			for range b.N {
				var before, after goruntime.MemStats
				goruntime.GC()
				goruntime.ReadMemStats(&before)
				mods := make([]*runtime.Module, 0, tc.n)
				for range tc.n {
					m, err := e.Load(ctx, tc.wasm, host, runtime.ModuleConfig{Name: "m"})
					if err != nil {
						b.Fatal(err)
					}
					if !m.Snapshot().FromCache {
						b.Fatalf("snapshot %+v: not read from the cache", m.Snapshot())
					}
					mods = append(mods, m)
				}
				goruntime.GC()
				goruntime.ReadMemStats(&after)
				perModule = float64(after.HeapInuse-before.HeapInuse) / float64(tc.n) / 1024
				for _, m := range mods {
					_ = m.Close(ctx)
				}
			}
			b.ReportMetric(perModule, "heap-KiB/module")
		})
	}
}

// BenchmarkLoadGo: loading the Go service from a warm compilation cache,
// its snapshot read from the cache (kept) or taken again by running its
// initialiser and a probe call (taken: the snapshots removed before each
// load), in one process: what the kept snapshot saves per service at a
// restart.
func BenchmarkLoadGo(b *testing.B) {
	wasm := readGoGuest(b)
	ctx := context.Background()
	dir := os.Getenv("DENSITY_CACHE")
	if dir == "" {
		dir = b.TempDir()
	}
	e, err := runtime.NewEngine(runtime.EngineConfig{CacheDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close(ctx)
	host := stubHost(b, wasm)
	m, err := e.Load(ctx, wasm, host, runtime.ModuleConfig{Name: "first"}) // fills the cache
	if err != nil {
		b.Fatal(err)
	}
	_ = m.Close(ctx)
	for _, kept := range []bool{true, false} {
		name := "kept"
		if !kept {
			name = "taken"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if !kept {
					b.StopTimer()
					if err := os.RemoveAll(filepath.Join(dir, "snapshots")); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				m, err := e.Load(ctx, wasm, host, runtime.ModuleConfig{Name: "m"})
				if err != nil {
					b.Fatal(err)
				}
				if m.Snapshot().FromCache != kept {
					b.Fatalf("snapshot %+v", m.Snapshot())
				}
				b.StopTimer()
				_ = m.Close(ctx)
				b.StartTimer()
			}
		})
	}
}
