package runtime

import (
	"cmp"
	"slices"
)

// Go's linker splits a module's data into a segment at every run of more
// than a few zero bytes: the order service has 39,339 data segments for
// 973 KB of data. wazero decodes each into a struct of its own (2.5 MB of
// Go heap per module, kept while the module is loaded) and walks them all
// at every load, though a module restored from its snapshot never applies
// them. Compile rewrites the data section of a copy of the module's
// bytes with the segments that lie at most maxDataGap bytes apart merged
// into one, the gap written as zeros: 169 segments for the order service
// (its data section 0.4 MB larger). Compile writes it into the copy that
// bounds the tables (dataEdit, applyEdits): one copy of the module.
//
// The rewrite leaves what an instance's memory holds after instantiation
// unchanged, and the module's code too (the compilation cache keeps the
// code under the original bytes' digest):
//   - only a module whose every segment is active, in memory 0, at an
//     i32.const offset, and not empty is rewritten, and only when no two
//     segments overlap: then each byte of memory is written by one segment
//     at most, in any order, over a memory that starts zeroed, and the
//     zeros written into a gap are what it holds anyway;
//   - a module with a data count section (the one that memory.init and
//     data.drop, which name segments by index, need) is left as it is;
//   - a merged segment reaches as far as the last one it holds, so it is
//     out of the memory's bounds (and instantiation fails) exactly when one
//     of them was.
const maxDataGap = 32

// dataSeg is one active segment: where it goes in memory, and where its
// bytes are in the module (n of them from start).
type dataSeg struct {
	off, start, n uint32
}

// dataEdit returns the data section with the segments merged (see above),
// for applyEdits; nil for bytes it cannot read or a module it may not
// rewrite.
func dataEdit(wasm []byte) *sectionEdit {
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return nil
	}
	r := wasmReader{b: wasm, pos: 8}
	secHeader, secEnd := -1, -1
	var segs []dataSeg
	for r.pos < len(wasm) {
		header := r.pos
		id, start, end, ok := r.section()
		if !ok {
			return nil
		}
		switch id {
		case 12: // data count: segments are named by index
			return nil
		case 11:
			if secHeader >= 0 {
				return nil
			}
			sec := wasmReader{b: wasm[:end], pos: start}
			if segs = readDataSegs(&sec); segs == nil || sec.err != nil || sec.pos != end {
				return nil
			}
			secHeader, secEnd = header, end
		}
		r.pos = end
	}
	if len(segs) < 2 {
		return nil
	}
	slices.SortFunc(segs, func(a, b dataSeg) int { return cmp.Compare(a.off, b.off) })
	sorted := segs
	for i, s := range sorted {
		end := uint64(s.off) + uint64(s.n)
		if end > 1<<32 || (i+1 < len(sorted) && end > uint64(sorted[i+1].off)) {
			return nil // past any memory, or an overlap: the order of writes would matter
		}
	}
	// Runs of segments at most maxDataGap apart: each becomes one segment
	// at the first one's offset, n bytes long.
	type run struct {
		first, last int
		n           uint32
	}
	var runs []run
	for i, s := range sorted {
		if k := len(runs); k > 0 {
			prev := sorted[i-1]
			if uint64(s.off)-(uint64(prev.off)+uint64(prev.n)) <= maxDataGap {
				runs[k-1].last = i
				runs[k-1].n = s.off + s.n - sorted[runs[k-1].first].off
				continue
			}
		}
		runs = append(runs, run{i, i, s.n})
	}
	if len(runs) == len(segs) {
		return nil
	}
	// The section is written straight into the new module: its size first.
	heads := make([][]byte, len(runs)) // each run's flag, offset and size
	size := len(appendU32(nil, uint32(len(runs))))
	for i, rn := range runs {
		h := append([]byte{0x00, 0x41}, appendS32(nil, int32(sorted[rn.first].off))...) // active, memory 0; i32.const
		heads[i] = appendU32(append(h, 0x0b), rn.n)
		size += len(heads[i]) + int(rn.n)
	}
	write := func(out []byte) []byte {
		out = appendU32(out, uint32(len(runs)))
		for i, rn := range runs {
			out = append(out, heads[i]...)
			base, start := len(out), sorted[rn.first].off
			out = out[:base+int(rn.n)]
			clear(out[base:]) // the gaps
			for _, s := range sorted[rn.first : rn.last+1] {
				copy(out[base+int(s.off-start):], wasm[s.start:s.start+s.n])
			}
		}
		return out
	}
	return &sectionEdit{header: secHeader, end: secEnd, id: 11, size: size, write: write}
}

// readDataSegs reads a data section's segments; nil when one is not an
// active, non-empty segment of memory 0 at an i32.const offset.
func readDataSegs(r *wasmReader) []dataSeg {
	n := r.u32()
	if r.err != nil || uint64(n) > uint64(len(r.b)-r.pos) {
		return nil
	}
	segs := make([]dataSeg, 0, n)
	for range n {
		if r.byte() != 0x00 || r.byte() != 0x41 {
			return nil
		}
		off := r.s32()
		if r.byte() != 0x0b {
			return nil
		}
		size := r.u32()
		start := r.pos
		r.skip(int(size))
		if r.err != nil || size == 0 {
			return nil
		}
		segs = append(segs, dataSeg{off: uint32(off), start: uint32(start), n: size})
	}
	return segs
}

// s32 reads a signed LEB128 of at most 32 bits.
func (r *wasmReader) s32() int32 {
	var v int64
	shift := 0
	for {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			break
		}
		if shift >= 35 {
			r.err = errMalformed
			return 0
		}
	}
	if v < -1<<31 || v > 1<<31-1 {
		r.err = errMalformed
		return 0
	}
	return int32(v)
}

// appendS32 appends v as a signed LEB128.
func appendS32(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
