package kv

import (
	"regexp"
	"strings"
	"testing"
)

// natsKeyRE is the key syntax NATS KV accepts (jetstream validKeyRe).
var natsKeyRE = regexp.MustCompile(`^[-/_=\.a-zA-Z0-9]+$`)

func validNATSKey(k string) bool {
	return natsKeyRE.MatchString(k) && !strings.HasPrefix(k, ".") && !strings.HasSuffix(k, ".")
}

func TestEscapeKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"abc", "abc"},
		{"A-Z_0/9", "A-Z_0/9"},
		{"a.b", "a=2Eb"},
		{".", "=2E"},
		{"=", "=3D"},
		{"a=b", "a=3Db"},
		{"hello world", "hello=20world"},
		{"*", "=2A"},
		{">", "=3E"},
		{"\x00\xff", "=00=FF"},
		{"é", "=C3=A9"},
		{"user:42", "user=3A42"},
	}
	for _, tt := range tests {
		got := escapeKey(tt.in)
		if got != tt.want {
			t.Errorf("escapeKey(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if !validNATSKey(got) {
			t.Errorf("escapeKey(%q) = %q is not a valid NATS key", tt.in, got)
		}
		back, err := unescapeKey(got)
		if err != nil || back != tt.in {
			t.Errorf("unescapeKey(%q) = %q, %v; want %q", got, back, err, tt.in)
		}
	}
}

func TestUnescapeKeyRejects(t *testing.T) {
	for _, in := range []string{
		"a.b",  // raw '.' is never produced
		"=",    // truncated
		"=4",   // truncated
		"ab=",  // truncated
		"=2e",  // lower-case hex
		"=ZZ",  // not hex
		"=41",  // 'A' escaped: non-canonical
		"a b",  // byte outside the alphabet
		"=2F",  // '/' escaped: non-canonical
		"x=2G", // bad hex digit
	} {
		if got, err := unescapeKey(in); err == nil {
			t.Errorf("unescapeKey(%q) = %q, want error", in, got)
		}
	}
}

func FuzzEscapeKey(f *testing.F) {
	for _, s := range []string{"a", ".", "=", "a.b.", "\x00", "é", "k=3D", "..", "/a/b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if key == "" {
			return
		}
		e := escapeKey(key)
		if !validNATSKey(e) {
			t.Fatalf("escapeKey(%q) = %q: invalid NATS key", key, e)
		}
		if len(e) > 3*len(key) {
			t.Fatalf("escapeKey(%q) grew to %d bytes", key, len(e))
		}
		back, err := unescapeKey(e)
		if err != nil {
			t.Fatalf("unescapeKey(%q): %v", e, err)
		}
		if back != key {
			t.Fatalf("round trip %q -> %q -> %q", key, e, back)
		}
		// Injective in the other direction too: anything unescapeKey
		// accepts escapes back to itself.
		if d, err := unescapeKey(key); err == nil && escapeKey(d) != key {
			t.Fatalf("unescapeKey(%q) = %q, which escapes to %q", key, d, escapeKey(d))
		}
	})
}
