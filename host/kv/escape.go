package kv

import (
	"fmt"
	"strings"
)

// escapeKey maps an arbitrary byte string to a valid NATS KV key.
//
// NATS keys allow only [-/_=.a-zA-Z0-9] and no leading or trailing '.'.
// Bytes in [A-Za-z0-9_/-] are kept; every other byte, including '=' and '.',
// becomes "=XX" with XX its value in upper-case hex. The output therefore
// never contains '.', so it is a single subject token and cannot start or
// end with a dot, and '=' only ever begins an escape, which makes the
// mapping reversible (see unescapeKey). A key grows at most three times.
func escapeKey(key string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(key))
	for i := 0; i < len(key); i++ {
		c := key[i]
		if keepByte(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('=')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0x0F])
	}
	return b.String()
}

// unescapeKey reverses escapeKey. It rejects any string escapeKey cannot
// produce: bytes outside the kept set, truncated or lower-case escapes, and
// escapes of bytes that would have been kept.
func unescapeKey(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if keepByte(c) {
			b.WriteByte(c)
			continue
		}
		if c != '=' {
			return "", fmt.Errorf("kv: invalid byte %q at %d in stored key %q", c, i, s)
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("kv: truncated escape at %d in stored key %q", i, s)
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("kv: bad escape %q at %d in stored key %q", s[i:i+3], i, s)
		}
		v := hi<<4 | lo
		if keepByte(v) {
			return "", fmt.Errorf("kv: non-canonical escape %q at %d in stored key %q", s[i:i+3], i, s)
		}
		b.WriteByte(v)
		i += 2
	}
	return b.String(), nil
}

func keepByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '_' || c == '-' || c == '/'
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
