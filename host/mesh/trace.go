package mesh

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"

	"github.com/meshd/meshd/internal/traceparent"
)

// appendChild appends to dst a traceparent in the trace of parent with a
// new parent id (the call's span) and parent's flags; a new trace when
// parent is not a valid traceparent.
func appendChild(dst []byte, parent string) []byte {
	if !traceparent.Valid(parent) {
		return traceparent.Append(dst)
	}
	dst = append(dst, parent[:36]...) // "00-<trace id>-"
	dst = appendSpanID(dst)
	return append(dst, parent[52:]...) // "-<flags>"
}

// newSpan overwrites the parent id of tp, a valid traceparent made by
// appendChild, with a new one: each attempt of a call is its own span.
func newSpan(tp []byte) {
	if len(tp) == traceparent.Len {
		appendSpanID(tp[36:36])
	}
}

func appendSpanID(dst []byte) []byte {
	var id [8]byte
	for {
		// Unique, not secret: see traceparent.Append.
		binary.LittleEndian.PutUint64(id[:], rand.Uint64())
		if id != [8]byte{} {
			return hex.AppendEncode(dst, id[:])
		}
	}
}
