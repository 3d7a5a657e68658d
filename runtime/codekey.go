package runtime

import (
	"crypto/sha256"
	"hash"
	"strings"
)

// The compilation cache and the snapshot store are keyed by a module's
// code, not by its file: codeKey digests the module's bytes without the
// custom sections that change nothing compiled or run. A rebuild that only
// stamps a new build id or producer, or a file a tool appended a section
// to, then loads from the cache instead of compiling again, which for a Go
// guest takes seconds of a core that requests and events need.
//
// Kept: the "name" section, whose function names wazero puts in a trap's
// stack trace, and, when the engine keeps debug information, the DWARF
// sections (".debug_*") it reads for source lines. Every other custom
// section is skipped: wazero keeps none (meshd never asks it for custom
// sections), and the WebAssembly specification gives them no effect on
// execution.

// codeKey returns the sha256 of wasm's header and its sections but the
// custom ones neither kept (above); sum, the sha256 of all of wasm, when
// there are none to skip, and also when wasm cannot be read as sections
// (wazero then says what is wrong with it).
func codeKey(wasm []byte, sum [sha256.Size]byte, debug bool) [sha256.Size]byte {
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return sum
	}
	r := wasmReader{b: wasm, pos: 8}
	var h hash.Hash
	kept := 0 // wasm[:kept] is hashed, or skipped up to a section boundary
	for r.pos < len(wasm) {
		header := r.pos
		id, content, end, ok := r.section()
		if !ok {
			return sum
		}
		if id != 0 {
			r.pos = end
			continue
		}
		sec := wasmReader{b: wasm[:end], pos: content}
		name := sec.name()
		if sec.err != nil {
			return sum
		}
		r.pos = end
		if name == "name" || (debug && strings.HasPrefix(name, ".debug_")) {
			continue
		}
		if h == nil {
			h = sha256.New()
		}
		h.Write(wasm[kept:header])
		kept = end
	}
	if h == nil {
		return sum
	}
	h.Write(wasm[kept:])
	var key [sha256.Size]byte
	h.Sum(key[:0])
	return key
}
