package conformance

import (
	"os"
	"testing"

	"github.com/meshd/meshd/internal/wattest"
)

func fixture(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s is missing: run `make fixtures` (or `make test`) first", path)
	}
	return b
}

func guests(t *testing.T) []Guest {
	return []Guest{
		{Language: "wat", Service: "conformance", Wasm: wattest.Build(t, "../host/testdata/conformance.wat"), Prefix: "/wat", EventType: "WAT_EVENT"},
		{Language: "go", Service: "conformance-go", Wasm: fixture(t, "testdata/guest-conformance.wasm"), Prefix: "/go", EventType: "GO_EVENT"},
		{Language: "rust", Service: "conformance-rust", Wasm: fixture(t, "testdata/rust-conformance.wasm"), Prefix: "/rust", EventType: "RUST_EVENT"},
	}
}

// TestConformance runs the suite on every guest, then checks that they
// all observed the same.
func TestConformance(t *testing.T) {
	results := map[string][]Outcome{}
	gs := guests(t)
	for _, g := range gs {
		t.Run(g.Language, func(t *testing.T) { results[g.Language] = Run(t, g) })
	}
	ref := results[gs[0].Language]
	if len(ref) != len(cases) {
		t.Fatalf("the %s guest ran %d of %d cases", gs[0].Language, len(ref), len(cases))
	}
	for _, g := range gs[1:] {
		got := results[g.Language]
		if len(got) != len(ref) {
			t.Errorf("the %s guest ran %d cases, the %s guest %d", g.Language, len(got), gs[0].Language, len(ref))
			continue
		}
		for i := range ref {
			if got[i] != ref[i] {
				t.Errorf("%s: the %s guest observed %s, the %s guest %s", ref[i].Case, g.Language, got[i].Result, gs[0].Language, ref[i].Result)
			}
		}
	}
}
