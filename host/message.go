package host

import (
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/meshd/meshd/abi"
)

// quote is how guest bytes appear in a host function's message:
// abi.Excerpt (Go-quoted, cut to 64 bytes with the full length after it).
// Bytes are handed to Excerpt without a copy (Excerpt keeps nothing of its
// argument; guest memory does not change while a host function runs), so a
// guest range of any length costs 64 bytes.
func quote[T string | []byte](b T) string {
	if len(b) == 0 {
		return abi.Excerpt("")
	}
	if s, ok := any(b).(string); ok {
		return abi.Excerpt(s)
	}
	p := []byte(b) // no copy: T is a byte slice here
	return abi.Excerpt(unsafe.String(&p[0], len(p)))
}

// clip cuts a host-made text (an error from a store) to n bytes, marked.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// logText is a guest log message as a string: p, or when p is longer than
// n bytes its first n bytes (cut at a UTF-8 boundary) and a marker. It
// copies at most n bytes of p.
func logText(p []byte, n int) string {
	if len(p) <= n {
		return string(p)
	}
	cut := n
	for i := 0; i < utf8.UTFMax && cut > 0 && !utf8.RuneStart(p[cut]); i++ {
		cut--
	}
	if !utf8.RuneStart(p[cut]) {
		cut = n // not UTF-8 here anyway
	}
	return string(p[:cut]) + "…(truncated, " + strconv.Itoa(len(p)) + " bytes)"
}
