package host

import (
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/meshd/meshd/abi"
)

// Event is an event published during an invocation, not yet sent.
type Event struct {
	Type string
	Data []byte
	// Delay, when positive, delivers the event that long after it is
	// applied (publish_delayed, ABI v1.1).
	Delay time.Duration
}

// KVOp is a buffered write: a Put, or a Delete when Delete is set.
type KVOp struct {
	Key    string
	Value  []byte
	Delete bool
}

// Invocation carries one invocation's request context and buffered effects.
// The caller puts it in runtime.Call.Data, invokes, and on success applies
// Events and Writes (in order); on failure it drops them. Writes holds at
// most one op per key: a later kv_set or kv_delete of a key replaces its
// pending op and moves it to the end, so Writes is in the order of each
// key's last change and applying it in order leaves what the guest wrote.
type Invocation struct {
	RequestID   string
	TraceParent string
	Events      []Event
	Writes      []KVOp
	// Base, if set, replaces the Env's logger for this invocation, and Attrs
	// (request or event id, trace id) are added to it for every line about
	// the invocation. The logger is built on first use (Logger), so an
	// invocation that logs nothing pays nothing for it.
	Base  *slog.Logger
	Attrs []slog.Attr
	log   *slog.Logger

	// Depth is how deep in a chain of service calls the invocation runs:
	// 0 for a gateway request or an event, ServiceCall.Depth for a call's
	// callee. Calls past abi.MaxCallDepth are refused.
	Depth int

	// Bytes held by the buffered effects, against the Env's caps.
	writeBytes, eventBytes int

	// Service calls (ABI v1.2): how many were made, the guest's request
	// copied out of its memory, the callee's request built from it, and
	// the encoded response of the last call that succeeded, which
	// call_result reads (hasResult).
	calls      int
	callIn     []byte
	callReq    abi.CallRequest
	calleeReq  abi.Request
	callResp   abi.Response
	callResult []byte
	hasResult  bool
	// unavailable is the last call's failure when its code was
	// unavailable, for call_retry_after (ABI v1.3) to read, only if asked.
	unavailable error
}

// maxKeptCallBuffer is the largest call buffer an Invocation keeps for
// reuse after Reset; a larger one is dropped, so a pooled invocation does
// not hold a megabyte because one call once needed it.
const maxKeptCallBuffer = 64 << 10

// Logger is Base with Attrs, or nil when Base is nil.
func (inv *Invocation) Logger() *slog.Logger {
	if inv.log == nil && inv.Base != nil {
		inv.log = slog.New(inv.Base.Handler().WithAttrs(inv.Attrs))
	}
	return inv.log
}

// Reset empties the invocation for reuse.
func (inv *Invocation) Reset() {
	clear(inv.Events)
	clear(inv.Writes)
	clear(inv.Attrs) // no request ids kept alive by the pool
	*inv = Invocation{Events: inv.Events[:0], Writes: inv.Writes[:0], Attrs: inv.Attrs[:0],
		callIn: keep(inv.callIn), callResult: keep(inv.callResult)}
}

// keep is b emptied for reuse, or nil when it is too large to keep.
func keep(b []byte) []byte {
	if cap(b) > maxKeptCallBuffer {
		return nil
	}
	return b[:0]
}

// pending returns the buffered state of key: found reports whether the
// invocation wrote or deleted it; deleted whether the last op was a delete.
func (inv *Invocation) pending(key string) (val []byte, deleted, found bool) {
	if i := inv.pendingIndex(key); i >= 0 {
		w := &inv.Writes[i]
		return w.Value, w.Delete, true
	}
	return nil, false, false
}

// pendingIndex is the index of key's op in Writes, or -1. (A scan: Writes
// holds at most Env.MaxWrites ops.)
func (inv *Invocation) pendingIndex(key string) int {
	for i := range inv.Writes {
		if inv.Writes[i].Key == key {
			return i
		}
	}
	return -1
}

// opBytes is what a buffered op counts against Env.MaxWriteBytes.
func opBytes(key string, value []byte) int { return len(key) + len(value) }

// checkWrite reports why a write of key with a value of n bytes (0 for a
// delete) cannot be buffered, or "" when it fits the caps: at most
// maxWrites distinct keys and maxBytes of keys and values in all.
func (inv *Invocation) checkWrite(key string, n, maxWrites, maxBytes int) string {
	total := inv.writeBytes + len(key) + n
	if i := inv.pendingIndex(key); i >= 0 {
		total -= opBytes(inv.Writes[i].Key, inv.Writes[i].Value)
	} else if len(inv.Writes) >= maxWrites {
		return "more than " + strconv.Itoa(maxWrites) + " keys written in one invocation"
	}
	if total > maxBytes {
		return "keys and values written in one invocation pass " + strconv.Itoa(maxBytes) + " bytes"
	}
	return ""
}

// bufferWrite adds op (checked with checkWrite), replacing the pending op
// of the same key.
func (inv *Invocation) bufferWrite(op KVOp) {
	if i := inv.pendingIndex(op.Key); i >= 0 {
		inv.writeBytes -= opBytes(inv.Writes[i].Key, inv.Writes[i].Value)
		inv.Writes = slices.Delete(inv.Writes, i, i+1)
	}
	inv.writeBytes += opBytes(op.Key, op.Value)
	inv.Writes = append(inv.Writes, op)
}
