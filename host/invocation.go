package host

import (
	"log/slog"
	"time"
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
// Events and Writes (in order); on failure it drops them.
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
}

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
	*inv = Invocation{Events: inv.Events[:0], Writes: inv.Writes[:0], Attrs: inv.Attrs[:0]}
}

// pending returns the buffered state of key: found reports whether the
// invocation wrote or deleted it; deleted whether the last op was a delete.
func (inv *Invocation) pending(key string) (val []byte, deleted, found bool) {
	for i := len(inv.Writes) - 1; i >= 0; i-- {
		if w := &inv.Writes[i]; w.Key == key {
			return w.Value, w.Delete, true
		}
	}
	return nil, false, false
}
