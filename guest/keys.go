package guest

import (
	"errors"
	"strings"
)

// KeySep separates the parts of a key built by Key.
const KeySep = ':'

// Key builds a key-value key from parts, joined by ':' with each part
// escaped, so that no part can reach into another: distinct lists of parts
// give distinct keys, whatever bytes they hold. Build every key that holds
// a value from a user or an event with it:
//
//	guest.Key("rm", "user", userID, strconv.Itoa(page))
//
// A byte of a part that is not an ASCII letter, digit, '.', '_' or '-'
// becomes '%' and two upper-case hex digits (':' is "%3A", '%' is "%25",
// 'é' is "%C3%A9"), so a part made only of those characters (a UUID, a
// plain name, a constant) is kept as it is. A part grows at most three
// times. ParseKey reverses Key (Key() with no parts is "", as Key("")).
func Key(parts ...string) string {
	n := len(parts)
	for _, p := range parts {
		n += len(p)
	}
	var b strings.Builder
	b.Grow(n)
	for i, p := range parts {
		if i > 0 {
			b.WriteByte(KeySep)
		}
		appendKeyPart(&b, p)
	}
	return b.String()
}

func appendKeyPart(b *strings.Builder, p string) {
	const hex = "0123456789ABCDEF"
	start := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if keyByte(c) {
			continue
		}
		b.WriteString(p[start:i])
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0x0F])
		start = i + 1
	}
	b.WriteString(p[start:])
}

// keyByte reports whether c stands for itself in a key part.
func keyByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}

// ErrKeyParts is the error of ParseKey for a string Key cannot return.
var ErrKeyParts = errors.New("guest: not a key built by Key")

// ParseKey returns the parts Key built key from. It refuses (ErrKeyParts)
// any string Key cannot return: bytes that Key escapes, truncated or
// lower-case escapes, and escapes of bytes Key keeps.
func ParseKey(key string) ([]string, error) {
	parts := strings.Split(key, string(KeySep))
	for i, p := range parts {
		if strings.IndexByte(p, '%') < 0 {
			for j := 0; j < len(p); j++ {
				if !keyByte(p[j]) {
					return nil, ErrKeyParts
				}
			}
			continue
		}
		var b strings.Builder
		for j := 0; j < len(p); j++ {
			c := p[j]
			switch {
			case keyByte(c):
				b.WriteByte(c)
				continue
			case c != '%' || j+2 >= len(p):
				return nil, ErrKeyParts
			}
			hi, ok1 := unhexUpper(p[j+1])
			lo, ok2 := unhexUpper(p[j+2])
			if v := hi<<4 | lo; !ok1 || !ok2 || keyByte(v) {
				return nil, ErrKeyParts
			}
			b.WriteByte(hi<<4 | lo)
			j += 2
		}
		parts[i] = b.String()
	}
	return parts, nil
}

func unhexUpper(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
