package conformance

import (
	"context"
	"fmt"
	"testing"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/runtime"
)

// workBody is the benchmark's request: a small JSON order.
const workBody = `{"id":"o-1","sku":"book","qty":2,"note":"gift wrap"}`

// workGuests are the guests with the benchmark's route: the Go and Rust
// ones (the WAT guest has no JSON reader).
func workGuests(tb testing.TB) []Guest {
	return []Guest{
		{Language: "go", Service: "conformance-go", Wasm: fixture(tb, "testdata/guest-conformance.wasm"), Prefix: "/go", EventType: "GO_EVENT"},
		{Language: "rust", Service: "conformance-rust", Wasm: fixture(tb, "testdata/rust-conformance.wasm"), Prefix: "/rust", EventType: "RUST_EVENT"},
	}
}

func loadWork(tb testing.TB, g Guest, cfg runtime.ModuleConfig) *runtime.Module {
	tb.Helper()
	e, err := runtime.NewEngine(runtime.EngineConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = e.Close(context.Background()) })
	env := &host.Env{Service: g.Service, KV: &store{m: map[string][]byte{}},
		Grants: host.Grants{Publish: []string{g.EventType}, Subscribe: []string{g.EventType}, KV: true}}
	cfg.Name = g.Service
	m, err := e.Load(context.Background(), g.Wasm, host.Module(env), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

func workCall(g Guest) *runtime.Call {
	req := abi.Request{Method: []byte("POST"), Path: []byte(g.Prefix + "/work"), Route: []byte("POST " + g.Prefix + "/work"), Body: []byte(workBody)}
	return &runtime.Call{Input: req.Append(nil)}
}

// invokeWork runs the work route once and returns its answer and effects.
func invokeWork(m *runtime.Module, g Guest, c *runtime.Call) (string, error) {
	in := c.Input
	c.Reset()
	inv := &host.Invocation{}
	c.Input, c.Data = in, inv
	if err := m.Invoke(context.Background(), runtime.EntryHTTP, c); err != nil {
		return "", err
	}
	if c.Code != abi.CodeOK {
		return "", fmt.Errorf("code %v: %s", c.Code, c.Output)
	}
	var resp abi.Response
	if err := resp.Decode(c.Output); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d %q%s", resp.Status, resp.Body, effects(inv)), nil
}

// The benchmark compares like with like: both guests give the same answer
// and the same effects for the work route.
func TestWorkIsTheSameInEveryGuest(t *testing.T) {
	const want = `202 "{\"id\":\"o-1\"}" write work:o-1="{\"id\":\"o-1\",\"sku\":\"book\",\"qty\":2}" event {E} "{\"id\":\"o-1\",\"sku\":\"book\",\"qty\":2}"`
	for _, g := range workGuests(t) {
		m := loadWork(t, g, runtime.ModuleConfig{})
		got, err := invokeWork(m, g, workCall(g))
		if err != nil {
			t.Fatalf("%s: %v", g.Language, err)
		}
		h := &harness{g: g}
		if got = h.normalise(got); got != want {
			t.Errorf("%s guest:\n got %s\nwant %s", g.Language, got, want)
		}
	}
}

// BenchmarkGuestWork: the Go and the Rust guest parse a small JSON body,
// write a key and publish an event (POST {p}/work), through the runtime
// and host binding with the deadline machinery on.
//
//   - warm: one pooled instance serves every call: the invocation time.
//   - fresh-instance: every call gets a new instance (recycled after one
//     call), so the difference from warm is the new-instance time.
//
// Each reports the module's size and the linear memory of an instance.
func BenchmarkGuestWork(b *testing.B) {
	for _, g := range workGuests(b) {
		for _, mode := range []struct {
			name string
			cfg  runtime.ModuleConfig
		}{
			{"warm", runtime.ModuleConfig{PoolMin: 1, PoolMax: 1}},
			{"fresh-instance", runtime.ModuleConfig{PoolMin: 1, PoolMax: 1, MaxCallsPerInstance: 1}},
		} {
			b.Run(g.Language+"/"+mode.name, func(b *testing.B) {
				m := loadWork(b, g, mode.cfg)
				c := workCall(g)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := invokeWork(m, g, c); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				st := m.Stats()
				b.ReportMetric(float64(len(g.Wasm)), "module-bytes")
				if st.Live > 0 {
					b.ReportMetric(float64(st.MemoryBytes)/float64(st.Live), "instance-mem-bytes")
				}
			})
		}
	}
}
