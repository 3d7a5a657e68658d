package guest

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestKey(t *testing.T) {
	for _, tc := range []struct {
		parts []string
		want  string
	}{
		{[]string{"order", "0b5e6c1e-9a8f-4f7e-8a43-0c1d2e3f4a5b"}, "order:0b5e6c1e-9a8f-4f7e-8a43-0c1d2e3f4a5b"},
		{[]string{"rm", "user", "alice", "0"}, "rm:user:alice:0"},
		{[]string{"rm", "user", "alice:0"}, "rm:user:alice%3A0"},
		{[]string{"a%3A"}, "a%253A"},
		{[]string{"v\xff"}, "v%FF"},
		{[]string{"é/* >"}, "%C3%A9%2F%2A%20%3E"},
		{[]string{"x", ""}, "x:"},
		{[]string{""}, ""},
		{nil, ""},
	} {
		if got := Key(tc.parts...); got != tc.want {
			t.Errorf("Key(%q) = %q, want %q", tc.parts, got, tc.want)
		}
	}
}

func TestParseKeyRefuses(t *testing.T) {
	for _, k := range []string{"a b", "a%3", "a%", "a%3a", "a%41", "a%ZZ", "é", "a/b"} {
		if p, err := ParseKey(k); !errors.Is(err, ErrKeyParts) {
			t.Errorf("ParseKey(%q) = %q, %v; want ErrKeyParts", k, p, err)
		}
	}
}

// randomPart returns a string of separators, escapes, wildcards, spaces,
// multi-byte and invalid UTF-8 and plain characters.
func randomPart(r *rand.Rand) string {
	pieces := []string{":", "/", ".", "%", "%3A", "*", ">", " ", "é", "日", "\xff", "\x00", "a", "Z", "0", "-", "_", "=", "\t"}
	var b strings.Builder
	for range r.IntN(6) {
		b.WriteString(pieces[r.IntN(len(pieces))])
	}
	return b.String()
}

// TestKeyProperty: Key is one-to-one over lists of parts (ParseKey gives
// the parts back), and the key of one list is never the key of another
// nor a prefix of another's that only adds parts.
func TestKeyProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	seen := map[string][]string{}
	for range 20000 {
		parts := make([]string, 1+r.IntN(4))
		for i := range parts {
			parts[i] = randomPart(r)
		}
		k := Key(parts...)
		got, err := ParseKey(k)
		if err != nil || !slices.Equal(got, parts) {
			t.Fatalf("ParseKey(Key(%q)) = %q, %v", parts, got, err)
		}
		if other, ok := seen[k]; ok && !slices.Equal(other, parts) {
			t.Fatalf("Key(%q) = Key(%q) = %q", parts, other, k)
		}
		seen[k] = parts
		for _, c := range []byte(k) {
			if c >= 0x80 || c <= ' ' || strings.IndexByte("*>/", c) >= 0 {
				t.Fatalf("Key(%q) = %q holds %q", parts, k, c)
			}
		}
	}
}

func FuzzParseKey(f *testing.F) {
	f.Add("rm:user:alice%3A0:0")
	f.Add("a%FF")
	f.Fuzz(func(t *testing.T, k string) {
		parts, err := ParseKey(k)
		if err != nil {
			return
		}
		if again := Key(parts...); again != k {
			t.Fatalf("Key(ParseKey(%q)) = %q", k, again)
		}
	})
}
