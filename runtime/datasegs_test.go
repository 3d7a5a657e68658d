package runtime

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/meshd/meshd/internal/wattest"
)

// mergeData is what Compile does to wasm's data: wasm, or a copy of it
// with dataEdit's section.
func mergeData(wasm []byte) []byte { return applyEdits(wasm, dataEdit(wasm)) }

// memoryAfterInstantiation instantiates wasm (no imports, no start
// function run) and returns its memory's contents.
func memoryAfterInstantiation(t *testing.T, wasm []byte) ([]byte, error) {
	t.Helper()
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	mod, err := r.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithStartFunctions())
	if err != nil {
		return nil, err
	}
	buf, _ := mod.Memory().Read(0, mod.Memory().Size())
	return bytes.Clone(buf), nil
}

// dataSegments counts the segments of wasm's data section (-1: none read).
func dataSegments(wasm []byte) int {
	r := wasmReader{b: wasm, pos: 8}
	for r.pos < len(wasm) {
		id := r.byte()
		size := r.u32()
		if r.err != nil {
			return -1
		}
		if id == 11 {
			return int(r.u32())
		}
		r.skip(int(size))
	}
	return -1
}

// Segments out of order, some adjacent, some a few bytes apart, one far
// away: merged where close, and the memory after instantiation is byte for
// byte the same.
func TestMergeDataKeepsTheMemory(t *testing.T) {
	const segs = `(data (i32.const 100) "ccc")
  (data (i32.const 10) "aaaa")
  (data (i32.const 14) "bb")
  (data (i32.const 40) "dd")
  (data (i32.const 65000) "far")
  (data (i32.const 65536) "next page")`
	wasm := wattest.Compile(t, "segs.wat", `(module (memory 2) `+segs+` (data (i32.const 102) ""))`)
	// The empty segment stops the rewrite; without it, it goes ahead.
	if got := mergeData(wasm); !bytes.Equal(got, wasm) {
		t.Fatal("a module with an empty segment was rewritten")
	}
	wasm = wattest.Compile(t, "segs.wat", `(module (memory 2) `+segs+`)`)
	merged := mergeData(wasm)
	if n := dataSegments(merged); n != 4 { // 10–41, 100–102, 65000–65002, 65536–
		t.Fatalf("%d segments after the merge, want 4", n)
	}
	want, err := memoryAfterInstantiation(t, wasm)
	if err != nil {
		t.Fatal(err)
	}
	got, err := memoryAfterInstantiation(t, merged)
	if err != nil {
		t.Fatalf("merged module: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the merged module's memory differs from the original's")
	}
}

// Segments past the memory: instantiation fails after the merge as it did
// before.
func TestMergeDataOutOfBounds(t *testing.T) {
	wasm := wattest.Compile(t, "oob.wat", `(module (memory 1)
  (data (i32.const 65530) "abc")
  (data (i32.const 65534) "xyz")
  (data (i32.const 10) "a"))`)
	merged := mergeData(wasm)
	if dataSegments(merged) != 2 {
		t.Fatalf("%d segments after the merge, want 2", dataSegments(merged))
	}
	if _, err := memoryAfterInstantiation(t, wasm); err == nil {
		t.Fatal("the original instantiated")
	}
	if _, err := memoryAfterInstantiation(t, merged); err == nil {
		t.Fatal("the merged module instantiated past its memory")
	}
}

// Modules the merge must leave alone: overlapping segments (the later
// write wins), a data count section (memory.init names segments), a
// passive segment.
func TestMergeDataLeavesAlone(t *testing.T) {
	for name, src := range map[string]string{
		"overlap": `(module (memory 1) (data (i32.const 10) "aaaa") (data (i32.const 12) "bb"))`,
		"data count": `(module (memory 1) (data (i32.const 10) "aa") (data (i32.const 14) "bb")
  (func (memory.init 1 (i32.const 0) (i32.const 0) (i32.const 1))))`,
		"passive": `(module (memory 1) (data (i32.const 10) "aa") (data "bb") (data (i32.const 14) "cc"))`,
	} {
		wasm := wattest.Compile(t, name+".wat", src)
		if got := mergeData(wasm); !bytes.Equal(got, wasm) {
			t.Errorf("%s: rewritten", name)
		}
	}
}

// The Go order service: tens of thousands of segments become a few
// hundred, and the memory after instantiation is the same.
func TestMergeDataGoModule(t *testing.T) {
	wasm, err := os.ReadFile("../build/plugins/order.wasm")
	if err != nil {
		t.Skip("build/plugins/order.wasm is missing: run `make plugins`")
	}
	merged := mergeData(wasm)
	before, after := dataSegments(wasm), dataSegments(merged)
	if before < 10000 || after > 1000 {
		t.Fatalf("%d segments merged into %d", before, after)
	}
	img := func(w []byte) []byte {
		mem := make([]byte, 64<<20)
		r := wasmReader{b: w, pos: 8}
		for r.pos < len(w) {
			id := r.byte()
			size := r.u32()
			end := r.pos + int(size)
			if id == 11 {
				sec := wasmReader{b: w[:end], pos: r.pos}
				for _, s := range readDataSegs(&sec) {
					copy(mem[s.off:], w[s.start:s.start+s.n])
				}
			}
			r.pos = end
		}
		return mem
	}
	if !bytes.Equal(img(wasm), img(merged)) {
		t.Fatal("the merged segments write other bytes")
	}
	t.Logf("%d segments → %d; module %d → %d bytes", before, after, len(wasm), len(merged))
}

// FuzzMergeData feeds mergeData module bytes: it must not panic, and what
// it returns, merged, is merged already (a second pass returns it as is).
func FuzzMergeData(f *testing.F) {
	f.Add([]byte("\x00asm\x01\x00\x00\x00\x05\x03\x01\x00\x01" +
		"\x0b\x0f\x02\x00\x41\x0a\x0b\x02ab\x00\x41\x10\x0b\x02cd"))
	if wasm, err := os.ReadFile("testdata/guest-snap.wasm"); err == nil {
		f.Add(wasm)
	}
	f.Fuzz(func(t *testing.T, wasm []byte) {
		out := mergeData(wasm)
		if again := mergeData(out); !bytes.Equal(again, out) {
			t.Fatal("merged bytes merged again")
		}
	})
}
