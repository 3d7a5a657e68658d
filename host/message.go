package host

import (
	"strconv"
	"unicode/utf8"
)

// maxQuoted is the most guest bytes a host message quotes.
const maxQuoted = 64

// quote is how guest bytes appear in a host function's error message: at
// most maxQuoted bytes, %q-quoted (control bytes, quotes and invalid UTF-8
// escaped), followed by "…(N bytes)" when b is longer. It copies at most
// maxQuoted bytes of b, however long b is.
func quote[T ~string | ~[]byte](b T) string {
	if len(b) <= maxQuoted {
		return strconv.Quote(string(b))
	}
	return strconv.Quote(string(b[:maxQuoted])) + "…(" + strconv.Itoa(len(b)) + " bytes)"
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
