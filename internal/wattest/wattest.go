// Package wattest builds WebAssembly text-format test guests with wat2wasm
// (Debian's wabt, installed by `make tools`).
package wattest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Build compiles the .wat file at path and returns the module's bytes.
func Build(tb testing.TB, path string) []byte {
	tb.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return Compile(tb, filepath.Base(path), string(src))
}

// Compile compiles WAT source text and returns the module's bytes.
func Compile(tb testing.TB, name, src string) []byte {
	tb.Helper()
	tool, err := exec.LookPath("wat2wasm")
	if err != nil {
		tb.Fatal("wat2wasm not found: install wabt (`make tools`)")
	}
	dir := tb.TempDir()
	in := filepath.Join(dir, strings.TrimSuffix(name, ".wat")+".wat")
	out := strings.TrimSuffix(in, ".wat") + ".wasm"
	if err := os.WriteFile(in, []byte(src), 0o644); err != nil {
		tb.Fatal(err)
	}
	if b, err := exec.Command(tool, in, "-o", out).CombinedOutput(); err != nil {
		tb.Fatalf("wat2wasm %s: %v\n%s", name, err, b)
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	return wasm
}
