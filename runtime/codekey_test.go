package runtime

import (
	"crypto/sha256"
	"testing"

	"github.com/meshd/meshd/internal/wattest"
)

// custom returns a custom section named name holding payload.
func custom(name, payload string) []byte {
	body := appendU32(nil, uint32(len(name)))
	body = append(body, name...)
	body = append(body, payload...)
	return append(appendU32([]byte{0}, uint32(len(body))), body...)
}

// withSection returns wasm with sec inserted after its header (before every
// other section) or appended at its end.
func withSection(wasm, sec []byte, first bool) []byte {
	if first {
		return append(append(append([]byte(nil), wasm[:8]...), sec...), wasm[8:]...)
	}
	return append(append([]byte(nil), wasm...), sec...)
}

func TestCodeKey(t *testing.T) {
	wasm := wattest.Build(t, "testdata/guest.wat")
	other := wattest.Build(t, "testdata/sleep-call.wat")
	key := func(b []byte, debug bool) [32]byte { return codeKey(b, sha256.Sum256(b), debug) }
	base := key(wasm, false)
	if base != sha256.Sum256(wasm) {
		t.Fatalf("a module with no custom section to skip: key is not its sha256")
	}
	same := map[string][]byte{
		"a section appended":          withSection(wasm, custom("v1", "xxxxxxxx"), false),
		"another appended":            withSection(wasm, custom("v2", "yy"), false),
		"a build id first":            withSection(wasm, custom("go:buildid", "abc"), true),
		"two sections":                withSection(withSection(wasm, custom("producers", "p"), true), custom("v3", ""), false),
		"DWARF without debug info on": withSection(wasm, custom(".debug_line", "lines"), false),
	}
	for name, b := range same {
		if got := key(b, false); got != base {
			t.Errorf("%s: the code's key changed", name)
		}
	}
	differ := map[string][2][]byte{
		"other code":     {wasm, other},
		"a name section": {wasm, withSection(wasm, custom("name", "\x00\x01f"), false)},
		"DWARF with debug info on": {withSection(wasm, custom(".debug_line", "a"), false),
			withSection(wasm, custom(".debug_line", "b"), false)},
	}
	for name, pair := range differ {
		debug := name == "DWARF with debug info on"
		if key(pair[0], debug) == key(pair[1], debug) {
			t.Errorf("%s: the same key", name)
		}
	}
	// Bytes that are not sections keep their own sha256: wazero refuses
	// them with its reason.
	for _, b := range [][]byte{wasm[:7], append(append([]byte(nil), wasm...), 0, 0xff), []byte("\x00asm\x01\x00\x00\x00\x00\x05\x09")} {
		if key(b, false) != sha256.Sum256(b) {
			t.Errorf("unreadable bytes %x: key is not their sha256", b[min(len(b), 8):])
		}
	}
}
