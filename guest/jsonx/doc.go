// Package jsonx is a small JSON toolkit without reflection, for the hot
// paths of WebAssembly guests, where encoding/json runs about twenty times
// slower than native.
//
// A Writer appends JSON to a reusable byte slice: the caller writes the
// structure (ObjectStart, Key, values, ObjectEnd) and the Writer places the
// commas and escapes the strings. It does not check that the structure is
// balanced.
//
// A Reader scans one JSON value in place. It validates strictly (RFC 8259
// grammar, control characters in strings, escapes, nesting depth, trailing
// data) and reports the first problem as a *SyntaxError with its byte
// offset. Objects and arrays are walked with ObjectNext and ArrayNext:
//
//	r.Reset(body)
//	for key, ok := r.ObjectNext(); ok; key, ok = r.ObjectNext() {
//		switch string(key) {
//		case "name":
//			name = r.String()
//		default:
//			r.Skip()
//		}
//	}
//	if err := r.Finish(); err != nil { ... }
//
// Errors are sticky: after the first one every read returns a zero value
// and Err reports it.
package jsonx
