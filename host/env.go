package host

import (
	"context"
	"errors"
	"log/slog"
	"slices"

	"github.com/meshd/meshd/abi"
)

// ErrNotFound is what a KV implementation returns (possibly wrapped) for a
// missing key.
var ErrNotFound = errors.New("host: not found")

// KV is a service's own store as the binding needs it: reads go to the store,
// writes are buffered in the Invocation and applied by the caller.
type KV interface {
	Get(ctx context.Context, key string) ([]byte, error)
}

// Grants is what the operator allows a service. The zero value allows
// nothing beyond logging.
type Grants struct {
	Publish   []string // event types it may publish; "*" for any
	Subscribe []string // event types it may subscribe to; "*" for any
	KV        bool     // whether it has a store
	Discover  []string // services it may discover; "*" for any
	Calls     []string // services it may call (ABI v1.2); "*" for any
}

// MayPublish reports whether typ may be published.
func (g *Grants) MayPublish(typ string) bool { return allowed(g.Publish, typ) }

// MaySubscribe reports whether typ may be subscribed to.
func (g *Grants) MaySubscribe(typ string) bool { return allowed(g.Subscribe, typ) }

// MayDiscover reports whether service may be discovered.
func (g *Grants) MayDiscover(service string) bool { return allowed(g.Discover, service) }

// MayCall reports whether service may be called (FnCall).
func (g *Grants) MayCall(service string) bool { return allowed(g.Calls, service) }

func allowed(list []string, v string) bool {
	return slices.Contains(list, "*") || slices.Contains(list, v)
}

// CheckDeclaration reports every part of d the grants do not allow, joined,
// or nil when all of it is granted.
func (g *Grants) CheckDeclaration(d *abi.Declaration) error {
	var errs []error
	for _, s := range d.Subscriptions {
		if !g.MaySubscribe(s.Type) {
			errs = append(errs, errors.New("subscription to "+s.Type+" is not granted (grants.subscribe)"))
		}
	}
	for _, p := range d.Publishes {
		if !g.MayPublish(p) {
			errs = append(errs, errors.New("publishing "+p+" is not granted (grants.publish)"))
		}
	}
	return errors.Join(errs...)
}

// Env is what one service reaches through the host module.
type Env struct {
	Service string
	Grants  Grants
	Log     *slog.Logger
	// KV is the service's store; nil when not granted.
	KV KV
	// Discover describes a loaded service; ok is false when there is none.
	Discover func(name string) (info abi.ServiceInfo, ok bool)
	// MaxKeyBytes and MaxValueBytes cap keys and values (defaults 1 KiB and 1 MiB).
	MaxKeyBytes, MaxValueBytes int
	// MaxEvents caps the events one invocation may publish (default 100),
	// MaxEventBytes their types and data together (default 4 MiB).
	MaxEvents, MaxEventBytes int
	// MaxWrites caps the keys one invocation may write or delete (default
	// 256), MaxWriteBytes their keys and values together (default 4 MiB).
	// A key written twice holds one pending write, so repeating a key
	// cannot accumulate.
	MaxWrites, MaxWriteBytes int
	// MaxPayload, when set, returns the largest message the NATS connection
	// takes (nats.Conn.MaxPayload). Events and values that would not fit are
	// refused inside the host function, where the guest sees the error,
	// rather than when the invocation's effects are applied. Nil or a
	// result <= 0: no such check.
	MaxPayload func() int64
	// MaxLogBytes caps one guest log line (default 8 KiB); a longer one is
	// cut and marked.
	MaxLogBytes int
	// LogLimits rate-limit the guest's log lines, per service version
	// (defaults: 100 lines and 128 KiB a second, bursts of 1000 lines and
	// 1 MiB); lines past the limit are dropped, counted with LogDropped and
	// summed up in a line at most every LogSummaryEvery.
	LogLimits LogLimits
	// LogDropped, when set, is told of every guest log line dropped.
	LogDropped func(n int)
	// Config is the operator's configuration of the service (the [config]
	// table of its <name>.toml), read with config_get (ABI v1.1).
	Config map[string]string
	// Call, when set, makes a service-to-service call (ABI v1.2, FnCall)
	// for the binding, which has checked the grant, the callee's name, the
	// request and the depth. Nil: every call is CodeUnavailable.
	Call Caller
	// MaxCallBytes caps a call's encoded request and the encoded response
	// the invocation holds for call_result (default 1 MiB, the default
	// input and output caps of a service); the callee's own input cap
	// applies as well.
	MaxCallBytes int
	// MaxCalls caps the calls one invocation may make (default 64).
	MaxCalls int
	// Observe, when set, is told of every key-value operation that reaches
	// the store: op is "get", "put" or "delete"; err is nil on success and
	// for a missing key. The binding calls it for reads; whoever applies
	// the buffered writes calls it for writes.
	Observe func(op string, err error)
}

// observe reports a store operation to Observe, if set.
func (e *Env) observe(op string, err error) {
	if e.Observe != nil {
		if errors.Is(err, ErrNotFound) {
			err = nil
		}
		e.Observe(op, err)
	}
}

// Default limits of an Env (see the fields).
const (
	DefaultMaxKeyBytes       = 1024
	DefaultMaxValueBytes     = 1 << 20
	DefaultMaxEvents         = 100
	DefaultMaxEventBytes     = 4 << 20
	DefaultMaxWrites         = 256
	DefaultMaxWriteBytes     = 4 << 20
	DefaultMaxLogBytes       = 8 << 10
	DefaultLogLinesPerSecond = 100
	DefaultLogBurst          = 1000
	DefaultLogBytesPerSecond = 128 << 10
	DefaultLogBurstBytes     = 1 << 20
	DefaultMaxCallBytes      = 1 << 20
	DefaultMaxCalls          = 64
)

func (e *Env) maxKey() int        { return orDefault(e.MaxKeyBytes, DefaultMaxKeyBytes) }
func (e *Env) maxValue() int      { return orDefault(e.MaxValueBytes, DefaultMaxValueBytes) }
func (e *Env) maxEvents() int     { return orDefault(e.MaxEvents, DefaultMaxEvents) }
func (e *Env) maxEventBytes() int { return orDefault(e.MaxEventBytes, DefaultMaxEventBytes) }
func (e *Env) maxWrites() int     { return orDefault(e.MaxWrites, DefaultMaxWrites) }
func (e *Env) maxWriteBytes() int { return orDefault(e.MaxWriteBytes, DefaultMaxWriteBytes) }
func (e *Env) maxLog() int        { return orDefault(e.MaxLogBytes, DefaultMaxLogBytes) }
func (e *Env) maxCallBytes() int  { return orDefault(e.MaxCallBytes, DefaultMaxCallBytes) }
func (e *Env) maxCalls() int      { return orDefault(e.MaxCalls, DefaultMaxCalls) }

// maxPayload is MaxPayload's answer, or 0 when unknown.
func (e *Env) maxPayload() int64 {
	if e.MaxPayload == nil {
		return 0
	}
	return max(e.MaxPayload(), 0)
}

func orDefault(v, d int) int {
	if v > 0 {
		return v
	}
	return d
}
