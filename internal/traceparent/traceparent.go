// Package traceparent reads and starts W3C trace context traceparent values
// ("00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>"), the one format
// the gateway, the daemon and the bus share.
package traceparent

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
)

// Len is the length of a version 00 traceparent.
const Len = 55

// Valid reports whether s is a traceparent of version 00 with lower-case hex
// fields and non-zero trace and parent ids.
func Valid(s string) bool {
	if len(s) != Len || s[0] != '0' || s[1] != '0' || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return false
	}
	return lowerHex(s[3:35], true) && lowerHex(s[36:52], true) && lowerHex(s[53:55], false)
}

// TraceID is the trace id of s for log lines, or "" when s is not valid.
func TraceID(s string) string {
	if !Valid(s) {
		return ""
	}
	return s[3:35]
}

// Append appends a new traceparent to dst: a random trace id and parent id,
// flags 01 (sampled).
func Append(dst []byte) []byte {
	// Trace ids must be unique, not secret: math/rand/v2's per-thread
	// ChaCha8 source, seeded by the runtime, is random enough and five times
	// cheaper than crypto/rand.
	var id [24]byte
	for {
		binary.LittleEndian.PutUint64(id[0:], rand.Uint64())
		binary.LittleEndian.PutUint64(id[8:], rand.Uint64())
		binary.LittleEndian.PutUint64(id[16:], rand.Uint64())
		if !allZero(id[:16]) && !allZero(id[16:]) {
			break
		}
	}
	dst = append(dst, "00-"...)
	dst = hex.AppendEncode(dst, id[:16])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, id[16:])
	return append(dst, "-01"...)
}

// New returns a new traceparent.
func New() string { return string(Append(make([]byte, 0, Len))) }

// lowerHex reports whether s is lower-case hex, and, if nonZero, not all
// zeros.
func lowerHex(s string, nonZero bool) bool {
	zero := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f':
		default:
			return false
		}
		if c != '0' {
			zero = false
		}
	}
	return !nonZero || !zero
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
