package jsonx

import (
	"strconv"
	"unicode/utf8"
)

// Writer appends JSON text to a buffer it reuses after Reset. The zero value
// is ready to use.
//
// Commas are placed automatically: a value or key written after a complete
// value at the same level is preceded by a comma. The Writer does not check
// that the caller's structure is balanced or that keys and values alternate.
type Writer struct {
	buf   []byte
	comma bool // the last thing written was a complete value
}

// NewWriter returns a Writer that appends to buf[:0].
func NewWriter(buf []byte) *Writer { return &Writer{buf: buf[:0]} }

// Reset empties the Writer, keeping its buffer.
func (w *Writer) Reset() { w.buf = w.buf[:0]; w.comma = false }

// Bytes returns the text written so far. It aliases the Writer's buffer and
// is valid until the next write or Reset.
func (w *Writer) Bytes() []byte { return w.buf }

// Len returns the number of bytes written.
func (w *Writer) Len() int { return len(w.buf) }

// firstCap is the buffer a Writer without one allocates at its first
// write: an event or a stored record fits, so it is written with one
// allocation rather than the five or six of growing from nothing, each of
// which a Go guest pays for.
const firstCap = 256

func (w *Writer) sep() {
	if w.comma {
		w.buf = append(w.buf, ',')
	} else if w.buf == nil {
		w.buf = make([]byte, 0, firstCap)
	}
}

// ObjectStart writes '{'.
func (w *Writer) ObjectStart() { w.sep(); w.buf = append(w.buf, '{'); w.comma = false }

// ObjectEnd writes '}'.
func (w *Writer) ObjectEnd() { w.buf = append(w.buf, '}'); w.comma = true }

// ArrayStart writes '['.
func (w *Writer) ArrayStart() { w.sep(); w.buf = append(w.buf, '['); w.comma = false }

// ArrayEnd writes ']'.
func (w *Writer) ArrayEnd() { w.buf = append(w.buf, ']'); w.comma = true }

// Key writes an object key and the colon after it.
func (w *Writer) Key(k string) {
	w.sep()
	w.buf = AppendString(w.buf, k)
	w.buf = append(w.buf, ':')
	w.comma = false
}

// String writes s as a JSON string.
func (w *Writer) String(s string) { w.sep(); w.buf = AppendString(w.buf, s); w.comma = true }

// StringBytes writes b as a JSON string.
func (w *Writer) StringBytes(b []byte) { w.sep(); w.buf = appendStringBytes(w.buf, b); w.comma = true }

// Int writes an integer.
func (w *Writer) Int(v int64) { w.sep(); w.buf = strconv.AppendInt(w.buf, v, 10); w.comma = true }

// Uint writes an unsigned integer.
func (w *Writer) Uint(v uint64) { w.sep(); w.buf = strconv.AppendUint(w.buf, v, 10); w.comma = true }

// Bool writes true or false.
func (w *Writer) Bool(v bool) {
	w.sep()
	if v {
		w.buf = append(w.buf, "true"...)
	} else {
		w.buf = append(w.buf, "false"...)
	}
	w.comma = true
}

// Null writes null.
func (w *Writer) Null() { w.sep(); w.buf = append(w.buf, "null"...); w.comma = true }

// Raw writes b unchanged as one value. b must be valid JSON.
func (w *Writer) Raw(b []byte) { w.sep(); w.buf = append(w.buf, b...); w.comma = true }

// StringField writes a key and a string value.
func (w *Writer) StringField(k, v string) { w.Key(k); w.String(v) }

// IntField writes a key and an integer value.
func (w *Writer) IntField(k string, v int64) { w.Key(k); w.Int(v) }

// BoolField writes a key and a boolean value.
func (w *Writer) BoolField(k string, v bool) { w.Key(k); w.Bool(v) }

// RawField writes a key and a raw JSON value.
func (w *Writer) RawField(k string, v []byte) { w.Key(k); w.Raw(v) }

const hex = "0123456789abcdef"

// AppendString appends s to dst as a quoted JSON string. '"', '\\' and
// control characters are escaped, as are U+2028 and U+2029; each byte of
// invalid UTF-8 becomes \ufffd.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = appendEscape(dst, c)
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\u202`...)
			dst = append(dst, hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendStringBytes is AppendString for a byte slice. The conversion does
// not allocate: the compiler passes the bytes through.
func appendStringBytes(dst, b []byte) []byte {
	return AppendString(dst, unsafeString(b))
}

func appendEscape(dst []byte, c byte) []byte {
	switch c {
	case '"':
		return append(dst, '\\', '"')
	case '\\':
		return append(dst, '\\', '\\')
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	case '\b':
		return append(dst, '\\', 'b')
	case '\f':
		return append(dst, '\\', 'f')
	}
	return append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
}
