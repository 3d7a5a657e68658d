// Package names formats the service and node names the host packages put in
// log lines and messages.
package names

import "strconv"

// DisplayLen bounds a name in log lines and error messages.
const DisplayLen = 64

// Display bounds and escapes a name for log lines and messages: a name of
// letters, digits, '.', '_' and '-' up to DisplayLen bytes as is, anything
// else quoted with Go escapes, cut at DisplayLen bytes.
func Display(name string) string {
	if len(name) <= DisplayLen && Plain(name) {
		return name
	}
	if len(name) > DisplayLen {
		return strconv.QuoteToASCII(name[:DisplayLen]) + "…"
	}
	return strconv.QuoteToASCII(name)
}

// Plain reports whether s is non-empty and only letters, digits, '.', '_'
// and '-'.
func Plain(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
