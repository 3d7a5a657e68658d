package runtime

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Tables are outside wazero's memory limit: a table is a Go slice of
// 8-byte references ([]wasm.Reference, a uintptr each), allocated at
// instantiation for its initial size and grown by table.grow up to its
// declared maximum, or without bound when it declares none (a request that
// grew a table by 67 million entries added 515 MiB of Go heap). So a
// module's tables are bounded at load, from its bytes:
//
//   - a table import is refused: no host module meshd links provides one;
//   - a defined table without a maximum is given its initial size as its
//     maximum (it cannot grow). Go's linker declares its one table so,
//     sized to the functions the program takes the address of, and never
//     grows it; table.grow may fail by the WebAssembly specification, and
//     then returns -1. A guest that grows a table declares a maximum;
//   - the bounds of the defined tables (the declared maximum, or the
//     initial size for a table without one) must sum to at most
//     ModuleConfig.MaxTableEntries, or the module is refused, naming the
//     table.
//
// Giving a table a maximum rewrites the table section of a copy of the
// module's bytes. The rewrite depends on the bytes alone, so the compiled
// code that the compilation cache keeps under the original bytes' digest
// is the same whatever the cap (and wazero's compiled code does not depend
// on a table's maximum, which table.grow reads from the instance).

// errMalformed: the bytes could not be read as a module; wazero then says why.
var errMalformed = errors.New("malformed module")

// tableLimit is one table's limits, where they lie in the module's bytes.
type tableLimit struct {
	limStart, limEnd int // the limits (flag, min, max) in the module's bytes
	flag             byte
	min, max         uint32
	hasMax           bool
}

// tableEdit checks wasm's tables against maxEntries (see above) and
// returns the table section that gives every defined table a maximum (nil
// when all have one), for applyEdits. Bytes it cannot read return
// errMalformed.
func tableEdit(wasm []byte, maxEntries uint32) (*sectionEdit, error) {
	r := wasmReader{b: wasm}
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return nil, errMalformed
	}
	r.pos = 8
	var tables []tableLimit
	secHeader, secStart, secEnd := -1, -1, -1 // the table section, and its content
	var problems []string
	for r.pos < len(wasm) {
		header := r.pos
		id, start, end, ok := r.section()
		if !ok {
			return nil, errMalformed
		}
		sec := wasmReader{b: wasm[:end], pos: start}
		switch id {
		case 2: // imports
			for n := sec.u32(); n > 0 && sec.err == nil; n-- {
				mod, name := sec.name(), sec.name()
				switch kind := sec.byte(); kind {
				case 0x00: // function: type index
					sec.u32()
				case 0x01: // table
					sec.tableType()
					problems = append(problems, fmt.Sprintf("imports table %s.%s: meshd links no module that provides tables",
						quoteName(mod), quoteName(name)))
				case 0x02: // memory
					sec.limits()
				case 0x03: // global: value type, mutability
					sec.valueType()
					sec.byte()
				case 0x04: // tag: attribute, type index
					sec.byte()
					sec.u32()
				default:
					sec.err = errMalformed
				}
			}
		case 4: // tables
			if secHeader >= 0 { // one table section at most; boundTables rewrites only one
				return nil, errMalformed
			}
			secHeader, secStart, secEnd = header, sec.pos, end
			for n := sec.u32(); n > 0 && sec.err == nil; n-- {
				tables = append(tables, sec.tableType())
			}
		default: // not read
			sec.pos = end
		}
		if sec.err != nil || sec.pos != end {
			return nil, errMalformed
		}
		r.pos = end
	}
	var sum uint64
	for i, t := range tables {
		bound := t.min
		if t.hasMax {
			bound = t.max
		}
		if bound > maxEntries {
			what := "an initial size (and no maximum)"
			if t.hasMax {
				what = "a maximum"
			}
			problems = append(problems, fmt.Sprintf("table %d declares %s of %d entries, above the cap of %d",
				i, what, bound, maxEntries))
		}
		sum += uint64(bound)
	}
	if sum > uint64(maxEntries) && len(tables) > 1 {
		problems = append(problems, fmt.Sprintf("the module's %d tables may hold %d entries in all, above the cap of %d",
			len(tables), sum, maxEntries))
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return boundTables(wasm, tables, secHeader, secStart, secEnd), nil
}

// sectionEdit replaces the section at wasm[header:end] (its id, size and
// content) with section id holding size bytes, which write appends.
type sectionEdit struct {
	header, end int
	id          byte
	size        int
	write       func(out []byte) []byte
}

// contentEdit is a sectionEdit whose content is ready.
func contentEdit(header, end int, id byte, content []byte) *sectionEdit {
	return &sectionEdit{header: header, end: end, id: id, size: len(content),
		write: func(out []byte) []byte { return append(out, content...) }}
}

// applyEdits returns wasm, or a copy of it with edits (nil ones skipped)
// made, in one pass; the edits' sections must not overlap.
func applyEdits(wasm []byte, edits ...*sectionEdit) []byte {
	edits = slices.DeleteFunc(edits, func(e *sectionEdit) bool { return e == nil })
	if len(edits) == 0 {
		return wasm
	}
	slices.SortFunc(edits, func(a, b *sectionEdit) int { return cmp.Compare(a.header, b.header) })
	size := len(wasm)
	for _, e := range edits {
		size += e.size + 6 - (e.end - e.header)
	}
	out := make([]byte, 0, size)
	at := 0
	for _, e := range edits {
		out = append(out, wasm[at:e.header]...)
		out = appendU32(append(out, e.id), uint32(e.size))
		out = e.write(out)
		at = e.end
	}
	return append(out, wasm[at:]...)
}

// boundTables returns the table section, at wasm[secHeader] (its id) with
// its content at wasm[secStart:secEnd], in which each of tables without a
// maximum gets its initial size as its maximum; nil when each has one.
func boundTables(wasm []byte, tables []tableLimit, secHeader, secStart, secEnd int) *sectionEdit {
	unbounded := false
	for _, t := range tables {
		unbounded = unbounded || !t.hasMax
	}
	if !unbounded {
		return nil
	}
	content := make([]byte, 0, secEnd-secStart+5*len(tables))
	at := secStart
	for _, t := range tables {
		content = append(content, wasm[at:t.limStart]...)
		if t.hasMax {
			content = append(content, wasm[t.limStart:t.limEnd]...)
		} else {
			content = append(content, t.flag|0x01) // 0x00 → 0x01, shared 0x02 → 0x03
			content = appendU32(content, t.min)
			content = appendU32(content, t.min)
		}
		at = t.limEnd
	}
	content = append(content, wasm[at:secEnd]...)
	return contentEdit(secHeader, secEnd, 4, content)
}

func appendU32(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// quoteName quotes an import's module or field name for a message,
// bounded to 64 bytes.
func quoteName(s string) string {
	if len(s) > 64 {
		return fmt.Sprintf("%q…", s[:64])
	}
	return fmt.Sprintf("%q", s)
}

// wasmReader reads the parts of a module's binary format that tableEdit
// needs. The first error sticks; reads past it return zero.
type wasmReader struct {
	b   []byte
	pos int
	err error
}

// section reads a section's id and size at r.pos and returns the id and
// where the section's content starts and ends; false when the bytes hold
// no whole section.
func (r *wasmReader) section() (id byte, start, end int, ok bool) {
	id = r.byte()
	size := r.u32()
	if r.err != nil || uint64(size) > uint64(len(r.b)-r.pos) {
		return 0, 0, 0, false
	}
	return id, r.pos, r.pos + int(size), true
}

func (r *wasmReader) byte() byte {
	if r.err != nil || r.pos >= len(r.b) {
		r.err = errMalformed
		return 0
	}
	c := r.b[r.pos]
	r.pos++
	return c
}

func (r *wasmReader) skip(n int) {
	if r.err != nil || n > len(r.b)-r.pos {
		r.err = errMalformed
		return
	}
	r.pos += n
}

// u32 reads an unsigned LEB128 of at most 32 bits.
func (r *wasmReader) u32() uint32 {
	var v uint32
	for shift := 0; shift < 35; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		if shift == 28 && c > 0x0f {
			r.err = errMalformed
			return 0
		}
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
	r.err = errMalformed
	return 0
}

// leb skips a LEB128 (signed or not) of at most maxBytes bytes.
func (r *wasmReader) leb(maxBytes int) {
	for range maxBytes {
		if r.byte()&0x80 == 0 {
			return
		}
	}
	r.err = errMalformed
}

func (r *wasmReader) name() string {
	n := r.u32()
	start := r.pos
	r.skip(int(n))
	if r.err != nil {
		return ""
	}
	return string(r.b[start:r.pos])
}

// valueType reads a value type: one byte, or a reference type's prefix
// (0x63 nullable, 0x64 not) and its heap type.
func (r *wasmReader) valueType() {
	if c := r.byte(); c == 0x63 || c == 0x64 {
		r.leb(5) // heap type, s33
	}
}

// limits reads a memory's limits: 0x00 and 0x02 (shared) min, 0x01 and 0x03
// min and max; 0x04 to 0x07 the same with 64-bit bounds (memory64).
func (r *wasmReader) limits() {
	flag := r.byte()
	if flag > 0x07 {
		r.err = errMalformed
		return
	}
	n := 5
	if flag&0x04 != 0 {
		n = 10
	}
	r.leb(n)
	if flag&0x01 != 0 {
		r.leb(n)
	}
}

// tableType reads a table type as wazero decodes it: an optional 0x40 0x00
// prefix (the table has an initialiser expression, after its limits), the
// reference type, and limits 0x00 min or 0x01 min max (0x02 and 0x03, shared,
// are refused by wazero; table64 is not supported by it).
func (r *wasmReader) tableType() tableLimit {
	hasInit := false
	if r.pos < len(r.b) && r.b[r.pos] == 0x40 {
		r.skip(1)
		if r.byte() != 0x00 {
			r.err = errMalformed
		}
		hasInit = true
	}
	r.valueType()
	t := tableLimit{limStart: r.pos}
	t.flag = r.byte()
	switch t.flag {
	case 0x00, 0x02:
		t.min = r.u32()
	case 0x01, 0x03:
		t.min, t.max, t.hasMax = r.u32(), r.u32(), true
	default:
		r.err = errMalformed
	}
	t.limEnd = r.pos
	if hasInit {
		r.constExpr()
	}
	return t
}

// constExpr skips a constant expression, up to its end (0x0b).
func (r *wasmReader) constExpr() {
	for r.err == nil {
		switch op := r.byte(); op {
		case 0x0b: // end
			return
		case 0x41: // i32.const
			r.leb(5)
		case 0x42: // i64.const
			r.leb(10)
		case 0x43: // f32.const
			r.skip(4)
		case 0x44: // f64.const
			r.skip(8)
		case 0x23, 0xd2: // global.get, ref.func
			r.u32()
		case 0xd0: // ref.null heap type
			r.leb(5)
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended constant arithmetic
		case 0xfd: // v128.const
			if r.u32() != 12 {
				r.err = errMalformed
				return
			}
			r.skip(16)
		default:
			r.err = errMalformed
		}
	}
}
