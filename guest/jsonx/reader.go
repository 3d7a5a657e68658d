package jsonx

import (
	"strconv"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of objects and arrays a Reader accepts.
const MaxDepth = 1000

// SyntaxError reports malformed JSON or a value of the wrong kind, with the
// byte offset where the problem was found.
type SyntaxError struct {
	Offset int    // byte offset in the input
	Msg    string // what was wrong
}

func (e *SyntaxError) Error() string {
	return "jsonx: " + e.Msg + " at offset " + strconv.Itoa(e.Offset)
}

// Kind is the kind of a JSON value.
type Kind uint8

// Kinds of values, as reported by Reader.Kind.
const (
	Invalid Kind = iota
	Object
	Array
	String
	Number
	Bool
	Null
)

var kindNames = [...]string{"invalid", "object", "array", "string", "number", "bool", "null"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind " + strconv.Itoa(int(k))
}

// Reader scans one JSON value in place. The zero value reads an empty input;
// use Reset to point it at data. A Reader reuses its buffers across Resets.
//
// Byte slices a Reader returns (keys, StringBytes, Number, Raw) alias the
// input or the Reader's scratch buffer and are valid until the next call.
type Reader struct {
	data    []byte
	pos     int
	err     error
	stack   []byte // open containers: '{' or '['
	expect  bool   // the next thing to read is a value
	scratch []byte // unescaped strings
	// replaced: the last string read had invalid UTF-8 or an unpaired
	// surrogate escape, which became U+FFFD
	replaced bool
}

// NewReader returns a Reader over data.
func NewReader(data []byte) *Reader {
	r := &Reader{}
	r.Reset(data)
	return r
}

// Reset points the Reader at data and clears any error.
func (r *Reader) Reset(data []byte) {
	r.data = data
	r.pos = 0
	r.err = nil
	r.stack = r.stack[:0]
	r.expect = true
}

// Err returns the first error met, or nil.
func (r *Reader) Err() error { return r.err }

// Offset returns the current byte offset in the input.
func (r *Reader) Offset() int { return r.pos }

func (r *Reader) fail(off int, msg string) {
	if r.err == nil {
		r.err = &SyntaxError{Offset: off, Msg: msg}
	}
}

func (r *Reader) failAt(msg string) { r.fail(r.pos, msg) }

// Finish checks that exactly one complete value was read and that only
// whitespace follows it. It returns the first error met.
func (r *Reader) Finish() error {
	if r.err != nil {
		return r.err
	}
	if r.expect || len(r.stack) > 0 {
		r.failAt("value not fully read")
		return r.err
	}
	r.ws()
	if r.pos < len(r.data) {
		r.failAt("invalid character " + quoteByte(r.data[r.pos]) + " after top-level value")
	}
	return r.err
}

func quoteByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		if c == '\'' {
			return `'\''`
		}
		return "'" + string(rune(c)) + "'"
	}
	return "0x" + string([]byte{hex[c>>4], hex[c&0xF]})
}

func (r *Reader) ws() {
	for r.pos < len(r.data) {
		switch r.data[r.pos] {
		case ' ', '\t', '\n', '\r':
			r.pos++
		default:
			return
		}
	}
}

// peek skips whitespace and returns the next byte, or 0 at the end.
func (r *Reader) peek() byte {
	r.ws()
	if r.pos < len(r.data) {
		return r.data[r.pos]
	}
	return 0
}

func (r *Reader) unexpected(what string) {
	if r.pos >= len(r.data) {
		r.failAt("unexpected end of input, expected " + what)
		return
	}
	r.failAt("invalid character " + quoteByte(r.data[r.pos]) + ", expected " + what)
}

// Kind reports the kind of the next value without consuming it. It returns
// Invalid, and sets the error, when no value can start there.
func (r *Reader) Kind() Kind {
	if r.err != nil {
		return Invalid
	}
	if !r.expect {
		r.failAt("Kind called where no value is expected")
		return Invalid
	}
	switch c := r.peek(); {
	case c == '{':
		return Object
	case c == '[':
		return Array
	case c == '"':
		return String
	case c == '-' || (c >= '0' && c <= '9'):
		return Number
	case c == 't' || c == 'f':
		return Bool
	case c == 'n':
		return Null
	}
	r.unexpected("a value")
	return Invalid
}

// value checks that a value may be read here and positions on it.
func (r *Reader) value() bool {
	if r.err != nil {
		return false
	}
	if !r.expect {
		r.failAt("value read where none is expected")
		return false
	}
	r.ws()
	return true
}

func (r *Reader) push(c byte) bool {
	if len(r.stack) >= MaxDepth {
		r.fail(r.pos-1, "nesting too deep")
		return false
	}
	r.stack = append(r.stack, c)
	return true
}

// ObjectNext steps through an object. Called where a value is expected, it
// enters the object; called after a member's value has been read, it moves
// to the next member. It returns the member's key, with the Reader
// positioned on its value, or ok == false when the object ended (the object
// is then consumed) or on error.
func (r *Reader) ObjectNext() (key []byte, ok bool) {
	if r.err != nil {
		return nil, false
	}
	if r.expect {
		if !r.enter('{', '}') {
			return nil, false
		}
		return r.member()
	}
	if len(r.stack) == 0 || r.stack[len(r.stack)-1] != '{' {
		r.failAt("ObjectNext called outside an object")
		return nil, false
	}
	switch r.peek() {
	case ',':
		r.pos++
		r.ws()
		return r.member()
	case '}':
		r.leave()
		return nil, false
	}
	r.unexpected("',' or '}' after object member")
	return nil, false
}

// enter consumes the open bracket of a container where a value is
// expected. It reports whether the container has a first item; an empty
// container is consumed whole, and an error also reports false.
func (r *Reader) enter(open, close byte) bool {
	if r.peek() != open {
		r.unexpected("'" + string(open) + "'")
		return false
	}
	r.pos++
	if !r.push(open) {
		return false
	}
	if r.peek() == close {
		r.leave()
		r.expect = false
		return false
	}
	return true
}

// leave consumes the close bracket of the innermost container.
func (r *Reader) leave() {
	r.pos++
	r.stack = r.stack[:len(r.stack)-1]
}

func (r *Reader) member() ([]byte, bool) {
	if r.pos >= len(r.data) || r.data[r.pos] != '"' {
		r.unexpected("string for object key")
		return nil, false
	}
	key := r.str()
	if r.err != nil {
		return nil, false
	}
	if r.peek() != ':' {
		r.unexpected("':' after object key")
		return nil, false
	}
	r.pos++
	r.expect = true
	return key, true
}

// ArrayNext steps through an array. Called where a value is expected, it
// enters the array; called after an element has been read, it moves to the
// next one. It returns true with the Reader positioned on an element, or
// false when the array ended (the array is then consumed) or on error.
func (r *Reader) ArrayNext() bool {
	if r.err != nil {
		return false
	}
	if r.expect {
		return r.enter('[', ']')
	}
	if len(r.stack) == 0 || r.stack[len(r.stack)-1] != '[' {
		r.failAt("ArrayNext called outside an array")
		return false
	}
	switch r.peek() {
	case ',':
		r.pos++
		r.expect = true
		return true
	case ']':
		r.leave()
		return false
	}
	r.unexpected("',' or ']' after array element")
	return false
}

// Skip consumes the next value, whatever it is, validating it.
func (r *Reader) Skip() {
	if !r.value() {
		return
	}
	base := len(r.stack)
	for r.err == nil {
		if r.expect {
			switch r.Kind() {
			case Object:
				r.ObjectNext()
			case Array:
				r.ArrayNext()
			case String:
				r.str()
				r.expect = false
			case Number:
				r.number()
				r.expect = false
			case Bool, Null:
				r.literal()
			}
		} else if len(r.stack) > base {
			if r.stack[len(r.stack)-1] == '{' {
				r.ObjectNext()
			} else {
				r.ArrayNext()
			}
		}
		if !r.expect && len(r.stack) == base {
			return
		}
	}
}

// Raw consumes the next value and returns its text, without surrounding
// whitespace.
func (r *Reader) Raw() []byte {
	if !r.value() {
		return nil
	}
	start := r.pos
	r.Skip()
	if r.err != nil {
		return nil
	}
	return r.data[start:r.pos]
}

func (r *Reader) literal() (isTrue bool, kind Kind) {
	rest := r.data[r.pos:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		r.pos += 4
		isTrue, kind = true, Bool
	case len(rest) >= 5 && string(rest[:5]) == "false":
		r.pos += 5
		kind = Bool
	case len(rest) >= 4 && string(rest[:4]) == "null":
		r.pos += 4
		kind = Null
	default:
		r.failAt("invalid literal")
		return false, Invalid
	}
	r.expect = false
	return isTrue, kind
}

// Bool reads true or false.
func (r *Reader) Bool() bool {
	if !r.value() {
		return false
	}
	start := r.pos
	v, k := r.literal()
	if k != Bool && r.err == nil {
		r.fail(start, "expected a boolean")
	}
	return v
}

// Null reads null.
func (r *Reader) Null() {
	if !r.value() {
		return
	}
	start := r.pos
	if _, k := r.literal(); k != Null && r.err == nil {
		r.fail(start, "expected null")
	}
}

// Number reads a number and returns its text.
func (r *Reader) Number() []byte {
	if !r.value() {
		return nil
	}
	return r.number()
}

func (r *Reader) number() []byte {
	d := r.data
	i := r.pos
	start := i
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	default:
		r.fail(i, "invalid number")
		return nil
	}
	if i < len(d) && d[i] == '.' {
		i++
		j := i
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
		if i == j {
			r.fail(i, "invalid number: no digits after '.'")
			return nil
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		j := i
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
		if i == j {
			r.fail(i, "invalid number: no digits in exponent")
			return nil
		}
	}
	r.pos = i
	r.expect = false
	return d[start:i]
}

// numberValue reads the number expected at the Reader's position and
// returns where it starts and its text, or a nil text on error.
func (r *Reader) numberValue() (start int, b []byte) {
	if !r.value() {
		return 0, nil
	}
	start = r.pos
	if c := r.peek(); c != '-' && (c < '0' || c > '9') {
		r.unexpected("a number")
		return 0, nil
	}
	b = r.number()
	if r.err != nil {
		return 0, nil
	}
	return start, b
}

// Int reads an integer that fits in an int64. A number with a fraction or
// an exponent, or one out of range, is an error.
func (r *Reader) Int() int64 {
	start, b := r.numberValue()
	if b == nil {
		return 0
	}
	v, err := ParseInt(b)
	if err != nil {
		r.fail(start, err.Error())
	}
	return v
}

// Float reads a number as a float64.
func (r *Reader) Float() float64 {
	start, b := r.numberValue()
	if b == nil {
		return 0
	}
	v, err := strconv.ParseFloat(unsafeString(b), 64)
	if err != nil {
		r.fail(start, "number out of range")
	}
	return v
}

type intError string

func (e intError) Error() string { return string(e) }

// Errors of ParseInt.
const (
	ErrNotInteger = intError("number is not an integer")
	ErrRange      = intError("integer out of range")
)

// ParseInt parses the text of a JSON number as an int64. It returns
// ErrNotInteger for a malformed number or one with a fraction or exponent,
// and ErrRange when it does not fit.
func ParseInt(b []byte) (int64, error) {
	neg := false
	i := 0
	if len(b) > 0 && b[0] == '-' {
		neg = true
		i = 1
	}
	if i >= len(b) || (b[i] == '0' && len(b) > i+1) {
		return 0, ErrNotInteger
	}
	var u uint64
	for ; i < len(b); i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, ErrNotInteger
		}
		if u > (1<<63)/10 {
			return 0, ErrRange
		}
		u = u*10 + uint64(c-'0')
		if u > 1<<63 {
			return 0, ErrRange
		}
	}
	if neg {
		return -int64(u), nil // -(1<<63) wraps to itself, which is right
	}
	if u > 1<<63-1 {
		return 0, ErrRange
	}
	return int64(u), nil
}

// String reads a string and returns a copy of its unescaped value.
func (r *Reader) String() string {
	return string(r.StringBytes())
}

// StringUTF8 is String that also reports whether the string was valid
// Unicode: valid is false when it held invalid UTF-8 or an unpaired
// surrogate escape, which String replaces with U+FFFD, so that two
// different inputs (a user "v\xff" and a user "v\xfe") read the same.
// Read ids with it and refuse the invalid ones. A string that could not be
// read (see Err) is not valid.
func (r *Reader) StringUTF8() (s string, valid bool) {
	r.replaced = false
	b := r.StringBytes()
	return string(b), r.err == nil && !r.replaced
}

// StringBytes reads a string and returns its unescaped value, which aliases
// the input or the Reader's scratch buffer and is valid until the next call.
func (r *Reader) StringBytes() []byte {
	if !r.value() {
		return nil
	}
	if r.pos >= len(r.data) || r.data[r.pos] != '"' {
		r.unexpected("a string")
		return nil
	}
	s := r.str()
	r.expect = false
	return s
}

// str reads the string at r.pos (which is '"'), validating and unescaping.
// Invalid UTF-8 and lone surrogates become U+FFFD, as in encoding/json.
func (r *Reader) str() []byte {
	d := r.data
	start := r.pos + 1
	i := start
	ascii := true
	for i < len(d) {
		c := d[i]
		switch {
		case c == '"':
			s := d[start:i]
			if !ascii && !utf8.Valid(s) {
				return r.strSlow(start)
			}
			r.pos = i + 1
			return s
		case c == '\\':
			return r.strSlow(start)
		case c < 0x20:
			r.fail(i, "invalid control character in string")
			return nil
		case c >= utf8.RuneSelf:
			ascii = false
		}
		i++
	}
	r.fail(len(d), "unexpected end of input in string")
	return nil
}

func (r *Reader) strSlow(start int) []byte {
	d := r.data
	out := r.scratch[:0]
	i := start
	for i < len(d) {
		c := d[i]
		switch {
		case c == '"':
			r.pos = i + 1
			r.scratch = out
			return out
		case c < 0x20:
			r.fail(i, "invalid control character in string")
			return nil
		case c == '\\':
			if i+1 >= len(d) {
				r.fail(len(d), "unexpected end of input in string")
				return nil
			}
			esc := d[i+1]
			switch esc {
			case '"', '\\', '/':
				out = append(out, esc)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				v, ok := hex4(d, i+2)
				if !ok {
					r.fail(i, "invalid \\u escape in string")
					return nil
				}
				i += 6
				rn := rune(v)
				if rn >= 0xD800 && rn < 0xDC00 {
					// A high surrogate: combine with a following low one.
					if i+1 < len(d) && d[i] == '\\' && d[i+1] == 'u' {
						if v2, ok := hex4(d, i+2); ok && v2 >= 0xDC00 && v2 < 0xE000 {
							rn = 0x10000 + (rn-0xD800)<<10 + rune(v2-0xDC00)
							i += 6
						} else {
							rn, r.replaced = utf8.RuneError, true
						}
					} else {
						rn, r.replaced = utf8.RuneError, true
					}
				} else if rn >= 0xDC00 && rn < 0xE000 {
					rn, r.replaced = utf8.RuneError, true
				}
				out = utf8.AppendRune(out, rn)
				continue
			default:
				r.fail(i, "invalid escape in string")
				return nil
			}
			i += 2
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			rn, size := utf8.DecodeRune(d[i:])
			if rn == utf8.RuneError && size == 1 {
				out = append(out, "\uFFFD"...)
				r.replaced = true
			} else {
				out = append(out, d[i:i+size]...)
			}
			i += size
		}
	}
	r.scratch = out
	r.fail(len(d), "unexpected end of input in string")
	return nil
}

func hex4(d []byte, i int) (uint32, bool) {
	if i+4 > len(d) {
		return 0, false
	}
	var v uint32
	for _, c := range d[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint32(c)
	}
	return v, true
}

// Validate reports whether data is exactly one valid JSON value, possibly
// surrounded by whitespace.
func Validate(data []byte) error {
	var r Reader
	r.Reset(data)
	r.Skip()
	return r.Finish()
}
