package runtime

import (
	"context"
	"os"
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

// loadStubbed compiles and starts wasm with stubHost.
func loadStubbed(tb testing.TB, wasm []byte, cfg ModuleConfig) *Module {
	tb.Helper()
	ctx := context.Background()
	e, err := NewEngine(EngineConfig{CacheDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = e.Close(ctx) })
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
