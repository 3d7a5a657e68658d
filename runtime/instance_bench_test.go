package runtime

import (
	"context"
	"os"
	"sync"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/internal/wattest"
)

// orderWasm is the Go order service as `make plugins` builds it.
const orderWasm = "../build/plugins/order.wasm"

// stubHost links every meshd function m imports as a stub that returns
// zeros: enough to instantiate and initialise a module (and describe it,
// with an empty declaration) without the daemon's host.
func stubHost(m *Module) HostModule {
	return func(ctx context.Context, r wazero.Runtime) error {
		b := r.NewHostModuleBuilder(abi.ModuleName)
		for _, f := range m.compiled.ImportedFunctions() {
			mod, name, _ := f.Import()
			if mod != abi.ModuleName {
				continue
			}
			results := len(f.ResultTypes())
			b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, stack []uint64) {
				clear(stack[:results])
			}), f.ParamTypes(), f.ResultTypes()).Export(name)
		}
		_, err := b.Instantiate(ctx)
		return err
	}
}

// stubEngine is the engine of loadStubbed, shared so that a benchmark run
// again with a larger b.N compiles from its in-memory cache.
var stubEngine = sync.OnceValues(func() (*Engine, error) { return NewEngine(EngineConfig{}) })

// loadStubbed compiles and starts wasm with stubHost.
func loadStubbed(tb testing.TB, wasm []byte, cfg ModuleConfig) *Module {
	tb.Helper()
	ctx := context.Background()
	e, err := stubEngine()
	if err != nil {
		tb.Fatal(err)
	}
	m, err := e.Compile(ctx, wasm, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := m.Start(ctx, stubHost(m)); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = m.Close(ctx) })
	return m
}

func readOrder(tb testing.TB) []byte {
	tb.Helper()
	wasm, err := os.ReadFile(orderWasm)
	if err != nil {
		tb.Skipf("%v: run `make plugins`", err)
	}
	return wasm
}

// benchNewInstance measures a new instance ready to serve: instantiated
// and initialised (or restored from the module's snapshot). Closing it is
// not counted: instances are closed 64 at a time with the timer stopped.
func benchNewInstance(b *testing.B, m *Module) {
	ctx := context.Background()
	var made []*instance
	closeMade := func() {
		for _, inst := range made {
			m.closeInstance(inst)
		}
		made = made[:0]
	}
	defer closeMade()
	b.ReportAllocs()
	for b.Loop() {
		inst, err := m.newInstance(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if made = append(made, inst); len(made) == 64 {
			b.StopTimer()
			closeMade()
			b.StartTimer()
		}
	}
}

// BenchmarkNewInstanceGo: a new instance of the Go order service.
func BenchmarkNewInstanceGo(b *testing.B) {
	benchNewInstance(b, loadStubbed(b, readOrder(b), ModuleConfig{Name: "order"}))
}

// BenchmarkNewInstanceWAT: a new instance of the WAT test guest.
func BenchmarkNewInstanceWAT(b *testing.B) {
	benchNewInstance(b, loadStubbed(b, wattest.Build(b, "testdata/guest.wat"), ModuleConfig{Name: "guest"}))
}

// orderGet is a GET /orders/{id} as the gateway hands it to the order
// service.
func orderGet() []byte {
	r := abi.Request{Method: []byte("GET"), Path: []byte("/orders/o-1"), Route: []byte("GET /orders/{id}"),
		Params: []abi.Pair{{Key: []byte("id"), Value: []byte("o-1")}}, RequestID: []byte("r-1")}
	return r.Append(nil)
}

// benchOrderGet runs GET /orders/{id} on the order service (stub host
// functions: its KV reads find nothing) through the pool, four callers at
// once as the gateway would.
func benchOrderGet(b *testing.B, cfg ModuleConfig) {
	m := loadStubbed(b, readOrder(b), cfg)
	in := orderGet()
	b.ReportAllocs()
	b.SetParallelism(2) // 4 callers on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := &Call{Input: in}
		for pb.Next() {
			if err := m.Invoke(context.Background(), EntryHTTP, c); err != nil {
				b.Error(err)
				return
			}
		}
	})
	st := m.Stats()
	b.ReportMetric(float64(st.Created)/float64(b.N), "instances/op")
}

// BenchmarkOrderGetPooled: pooled instances (PoolMax 4).
func BenchmarkOrderGetPooled(b *testing.B) {
	benchOrderGet(b, ModuleConfig{Name: "order", PoolMax: 4})
}

// BenchmarkOrderGetFresh: a fresh instance for every call (MaxCallsPerInstance
// 1, PoolMax 4), restored from the snapshot.
func BenchmarkOrderGetFresh(b *testing.B) {
	benchOrderGet(b, ModuleConfig{Name: "order", PoolMax: 4, MaxCallsPerInstance: 1})
}

// BenchmarkOrderGetFreshNoSnapshot: the same without the snapshot, each
// instance initialised (the figure before snapshots).
func BenchmarkOrderGetFreshNoSnapshot(b *testing.B) {
	benchOrderGet(b, ModuleConfig{Name: "order", PoolMax: 4, MaxCallsPerInstance: 1, DisableSnapshot: true})
}

// BenchmarkNewInstanceGoNoSnapshot: the same with snapshots off
// (DisableSnapshot): instantiated and initialised, the fallback path.
func BenchmarkNewInstanceGoNoSnapshot(b *testing.B) {
	benchNewInstance(b, loadStubbed(b, readOrder(b), ModuleConfig{Name: "order", DisableSnapshot: true}))
}

// BenchmarkNewInstanceWATNoSnapshot: the WAT guest with snapshots off.
func BenchmarkNewInstanceWATNoSnapshot(b *testing.B) {
	benchNewInstance(b, loadStubbed(b, wattest.Build(b, "testdata/guest.wat"), ModuleConfig{Name: "guest", DisableSnapshot: true}))
}
