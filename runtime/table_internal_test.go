package runtime

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// limitTables is what Compile does to wasm's tables: tableEdit's check,
// and wasm with its table section rewritten.
func limitTables(wasm []byte, maxEntries uint32) ([]byte, error) {
	edit, err := tableEdit(wasm, maxEntries)
	if err != nil {
		return nil, err
	}
	return applyEdits(wasm, edit), nil
}

// FuzzLimitTables feeds limitTables module bytes: it must not panic, and
// what it returns must have every table bounded (a second pass returns it
// as is).
func FuzzLimitTables(f *testing.F) {
	if tool, err := exec.LookPath("wat2wasm"); err == nil {
		wats, _ := filepath.Glob("testdata/*.wat")
		for _, wat := range wats {
			out := filepath.Join(f.TempDir(), filepath.Base(wat)+".wasm")
			if exec.Command(tool, wat, "-o", out).Run() == nil {
				if b, err := os.ReadFile(out); err == nil {
					f.Add(b)
				}
			}
		}
	}
	f.Add([]byte("\x00asm\x01\x00\x00\x00\x04\x04\x01\x70\x00\x05"))
	f.Fuzz(func(t *testing.T, wasm []byte) {
		out, err := limitTables(wasm, 1000)
		if err != nil {
			return
		}
		again, err := limitTables(out, 1000)
		if err != nil {
			t.Fatalf("bounded bytes refused: %v", err)
		}
		if !bytes.Equal(again, out) || &again[0] != &out[0] {
			t.Fatal("bounded bytes bounded again")
		}
	})
}

func TestLimitTablesBoundsAGoLikeTable(t *testing.T) {
	// A type section, a table section with one funcref table of 6253
	// entries and no maximum (as Go's linker writes it), a custom section.
	in := []byte("\x00asm\x01\x00\x00\x00" +
		"\x01\x04\x01\x60\x00\x00" +
		"\x04\x05\x01\x70\x00\xed\x30" + // min 6253
		"\x00\x03\x01x\x07")
	out, err := limitTables(in, 1<<18)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("\x00asm\x01\x00\x00\x00" +
		"\x01\x04\x01\x60\x00\x00" +
		"\x04\x07\x01\x70\x01\xed\x30\xed\x30" + // min 6253, max 6253
		"\x00\x03\x01x\x07")
	if !bytes.Equal(out, want) {
		t.Fatalf("bounded:\n% x\nwant\n% x", out, want)
	}
}
