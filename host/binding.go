package host

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/runtime"
)

// Module returns the runtime.HostModule that links env into a service's
// runtime as the "meshd" import module of ABI v1.
func Module(env *Env) runtime.HostModule {
	return func(ctx context.Context, r wazero.Runtime) error {
		b := &binding{env: env, logs: NewLogLimiter(env.LogLimits, "guest log", env.LogDropped)}
		i32 := api.ValueTypeI32
		fns := []struct {
			name   string
			fn     api.GoModuleFunc
			params int
		}{
			{abi.FnInputRead, b.inputRead, 2},
			{abi.FnOutputWrite, b.outputWrite, 2},
			{abi.FnLastError, b.lastError, 2},
			{abi.FnLog, b.log, 3},
			{abi.FnPublish, b.publish, 4},
			{abi.FnKVGet, b.kvGet, 4},
			{abi.FnKVSet, b.kvSet, 4},
			{abi.FnKVDelete, b.kvDelete, 2},
			{abi.FnDiscover, b.discover, 4},
			// Added in v1.1 (optional imports).
			{abi.FnPublishDelayed, b.publishDelayed, 5},
			{abi.FnConfigGet, b.configGet, 4},
			// Added in v1.2 (optional imports).
			{abi.FnCall, b.call, 5},
			{abi.FnCallResult, b.callResult, 2},
		}
		mb := r.NewHostModuleBuilder(abi.ModuleName)
		for _, f := range fns {
			params := make([]api.ValueType, f.params)
			for i := range params {
				params[i] = i32
			}
			mb.NewFunctionBuilder().WithGoModuleFunction(f.fn, params, []api.ValueType{i32}).Export(f.name)
		}
		// Added in v1.3 (optional import).
		mb.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(b.callRetryAfter), nil,
			[]api.ValueType{api.ValueTypeI64}).Export(abi.FnCallRetryAfter)
		compiled, err := mb.Compile(ctx)
		if err != nil {
			return err
		}
		_, err = r.InstantiateModule(ctx, compiled, runtime.HostModuleConfig())
		return err
	}
}

type binding struct {
	env  *Env
	logs *LogLimiter // shared by the instances of the service version
	// lastFailure is the last failed service call's error and message
	// (call.go: callFailure).
	lastFailure atomic.Pointer[failedCall]
}

// eventOverhead bounds the bytes of an event's NATS message besides its
// data, type, source and traceparent, as host/bus and JetStream send it:
// the NATS header line, the CloudEvents headers (spec version, a UUID id,
// the time in RFC 3339 with nanoseconds, the content type), the delivery
// time of a delayed event, and JetStream's message id and expected-stream
// headers. With the default stream names that is about 300 bytes; the
// rest is room for longer configured stream names.
const eventOverhead = 1024

// kvBatchHeadroom is what the store keeps of the NATS payload limit for the
// headers of a write in an atomic batch (host/kv's batchHeaderBytes), so
// the largest value kv_set takes is the limit less this.
const kvBatchHeadroom = 128

// ret stores an i32 result.
func ret(stack []uint64, v int32) { stack[0] = api.EncodeI32(v) }

// fail records msg as the call's last error and returns -code. msg must be
// bounded: guest bytes reach it only through quote.
func fail(stack []uint64, c *runtime.Call, code abi.Code, msg string) {
	if c == nil {
		ret(stack, -int32(code))
		return
	}
	ret(stack, c.SetError(code, msg))
}

// buffer checks a grow-and-retry function's output buffer [buf, buf+cap)
// against guest memory, before anything else is looked up: a bad buffer is
// a bad pointer whether or not there is anything to copy.
func buffer(m api.Module, stack []uint64, c *runtime.Call, buf, capacity uint32) bool {
	_, ok := view(m, stack, c, buf, capacity, "buffer")
	return ok
}

// fill answers a grow-and-retry function whose buffer passed the check: it
// copies v into the guest buffer when it fits and returns len(v) either way.
func fill(m api.Module, stack []uint64, buf, capacity uint32, v []byte) {
	if uint64(len(v)) <= uint64(capacity) {
		m.Memory().Write(buf, v)
	}
	ret(stack, int32(len(v)))
}

// fillString is fill for a string, which it writes without converting it
// to bytes (a copy).
func fillString(m api.Module, stack []uint64, buf, capacity uint32, v string) {
	if uint64(len(v)) <= uint64(capacity) {
		m.Memory().WriteString(buf, v)
	}
	ret(stack, int32(len(v)))
}

// view returns guest memory [ptr, ptr+n) (no copy) or reports a bad pointer.
func view(m api.Module, stack []uint64, c *runtime.Call, ptr, n uint32, what string) ([]byte, bool) {
	b, ok := m.Memory().Read(ptr, n)
	if !ok {
		fail(stack, c, abi.CodeBadPointer, what+" outside guest memory")
	}
	return b, ok
}

func u32(v uint64) uint32 { return api.DecodeU32(v) }

func (b *binding) inputRead(ctx context.Context, m api.Module, stack []uint64) {
	c := runtime.CallFrom(ctx)
	if !buffer(m, stack, c, u32(stack[0]), u32(stack[1])) {
		return
	}
	if c == nil {
		fail(stack, nil, abi.CodeNotFound, "")
		return
	}
	fill(m, stack, u32(stack[0]), u32(stack[1]), c.Input)
}

func (b *binding) outputWrite(ctx context.Context, m api.Module, stack []uint64) {
	c := runtime.CallFrom(ctx)
	p, ok := view(m, stack, c, u32(stack[0]), u32(stack[1]), "output")
	if !ok {
		return
	}
	if c == nil {
		fail(stack, nil, abi.CodeUnavailable, "")
		return
	}
	if code := c.WriteOutput(p); code != abi.CodeOK {
		fail(stack, c, code, "output passes the cap")
		return
	}
	ret(stack, 0)
}

func (b *binding) lastError(ctx context.Context, m api.Module, stack []uint64) {
	c := runtime.CallFrom(ctx)
	if !buffer(m, stack, c, u32(stack[0]), u32(stack[1])) {
		return
	}
	var msg string
	if c != nil {
		msg = c.LastError()
	}
	fillString(m, stack, u32(stack[0]), u32(stack[1]), msg)
}

// log writes a guest log line: at most Env.MaxLogBytes of it, and only
// while the service's rate limit allows. A line dropped by the limit still
// answers 0: logging is never a reason for a handler to fail.
func (b *binding) log(ctx context.Context, m api.Module, stack []uint64) {
	c := runtime.CallFrom(ctx)
	level := api.DecodeI32(stack[0])
	p, ok := view(m, stack, c, u32(stack[1]), u32(stack[2]), "log message")
	if !ok {
		return
	}
	l := b.env.Log
	if inv := invocation(c); inv != nil && inv.Base != nil {
		l = inv.Logger()
	}
	if l != nil {
		lvl := slog.Level(max(min(level, abi.LevelError), abi.LevelDebug) * 4)
		summary := b.env.Log
		if summary == nil {
			summary = l
		}
		if l.Enabled(ctx, lvl) && b.logs.Allow(ctx, summary, min(len(p), b.env.maxLog())) {
			l.LogAttrs(ctx, lvl, logText(p, b.env.maxLog()), slog.String("source", "guest"))
		}
	}
	ret(stack, 0)
}

func invocation(c *runtime.Call) *Invocation {
	if c == nil {
		return nil
	}
	inv, _ := c.Data.(*Invocation)
	return inv
}

// effects returns the running invocation or fails the host call.
func effects(stack []uint64, c *runtime.Call, what string) *Invocation {
	inv := invocation(c)
	if inv == nil {
		fail(stack, c, abi.CodeUnavailable, what+" is not available outside a request or event")
	}
	return inv
}

func (b *binding) publish(ctx context.Context, m api.Module, stack []uint64) {
	b.publishAfter(ctx, m, stack, 0)
}

// publishDelayed is publish with a delay in milliseconds (ABI v1.1).
func (b *binding) publishDelayed(ctx context.Context, m api.Module, stack []uint64) {
	ms := api.DecodeI32(stack[4])
	if ms < 0 || int64(ms) > int64(abi.MaxDelay/time.Millisecond) {
		fail(stack, runtime.CallFrom(ctx), abi.CodeInvalid, "delay_ms must be between 0 and 2147483647 (about 24.8 days)")
		return
	}
	b.publishAfter(ctx, m, stack, time.Duration(ms)*time.Millisecond)
}

// maxConfigKey is the longest config_get key looked up; a longer one is
// refused before it is hashed or copied.
const maxConfigKey = 1024

// configGet answers config_get (ABI v1.1).
func (b *binding) configGet(ctx context.Context, m api.Module, stack []uint64) {
	c := runtime.CallFrom(ctx)
	k, ok := view(m, stack, c, u32(stack[0]), u32(stack[1]), "config key")
	if !ok || !buffer(m, stack, c, u32(stack[2]), u32(stack[3])) {
		return
	}
	if len(k) > maxConfigKey {
		fail(stack, c, abi.CodeTooLarge, "config key "+quote(k)+" is longer than "+strconv.Itoa(maxConfigKey)+" bytes")
		return
	}
	v, found := b.env.Config[string(k)] // no copy: a map index by string(bytes)
	if !found {
		fail(stack, c, abi.CodeNotFound, "no config key "+quote(k))
		return
	}
	fill(m, stack, u32(stack[2]), u32(stack[3]), []byte(v))
}

func (b *binding) publishAfter(ctx context.Context, m api.Module, stack []uint64, delay time.Duration) {
	c := runtime.CallFrom(ctx)
	tp, ok := view(m, stack, c, u32(stack[0]), u32(stack[1]), "event type")
	if !ok {
		return
	}
	data, ok := view(m, stack, c, u32(stack[2]), u32(stack[3]), "event data")
	if !ok {
		return
	}
	inv := effects(stack, c, "publish")
	if inv == nil {
		return
	}
	if len(tp) > abi.MaxEventTypeLen {
		fail(stack, c, abi.CodeInvalid, "event type "+quote(tp)+" is longer than "+strconv.Itoa(abi.MaxEventTypeLen)+" bytes")
		return
	}
	typ := string(tp)
	if err := abi.ValidEventType(typ); err != nil {
		fail(stack, c, abi.CodeInvalid, err.Error()+": "+quote(typ))
		return
	}
	if !b.env.Grants.MayPublish(typ) {
		fail(stack, c, abi.CodeDenied, "service "+b.env.Service+" is not granted publishing "+quote(typ))
		return
	}
	if len(data) > b.env.maxValue() {
		fail(stack, c, abi.CodeTooLarge, "event data of "+strconv.Itoa(len(data))+" bytes passes the cap of "+strconv.Itoa(b.env.maxValue()))
		return
	}
	if mp := b.env.maxPayload(); mp > 0 {
		if size := int64(len(data) + len(typ) + len(b.env.Service) + len(inv.TraceParent) + eventOverhead); size > mp {
			fail(stack, c, abi.CodeTooLarge, "event of "+strconv.Itoa(len(data))+" bytes of data does not fit the event bus's message size ("+
				strconv.FormatInt(mp, 10)+" bytes with about "+strconv.FormatInt(size-int64(len(data)), 10)+" bytes of headers)")
			return
		}
	}
	if len(inv.Events) >= b.env.maxEvents() {
		fail(stack, c, abi.CodeTooLarge, "more than "+strconv.Itoa(b.env.maxEvents())+" events in one invocation")
		return
	}
	if inv.eventBytes+len(typ)+len(data) > b.env.maxEventBytes() {
		fail(stack, c, abi.CodeTooLarge, "event types and data published in one invocation pass "+strconv.Itoa(b.env.maxEventBytes())+" bytes")
		return
	}
	if !json.Valid(data) {
		fail(stack, c, abi.CodeInvalid, "event data is not valid JSON")
		return
	}
	inv.eventBytes += len(typ) + len(data)
	inv.Events = append(inv.Events, Event{Type: typ, Data: append([]byte(nil), data...), Delay: delay})
	ret(stack, 0)
}

// key reads and checks a key argument; the key's range has passed view.
func (b *binding) key(stack []uint64, c *runtime.Call, k []byte) (string, bool) {
	if b.env.KV == nil {
		fail(stack, c, abi.CodeDenied, "service "+b.env.Service+" is not granted a key-value store (grants.kv)")
		return "", false
	}
	switch {
	case len(k) == 0:
		fail(stack, c, abi.CodeInvalid, "key is empty")
		return "", false
	case len(k) > b.env.maxKey():
		fail(stack, c, abi.CodeTooLarge, "key "+quote(k)+" is longer than "+strconv.Itoa(b.env.maxKey())+" bytes")
		return "", false
	}
	return string(k), true
}

func (b *binding) kvGet(ctx context.Context, m api.Module, stack []uint64) {
	c := runtime.CallFrom(ctx)
	k, ok := view(m, stack, c, u32(stack[0]), u32(stack[1]), "key")
	if !ok || !buffer(m, stack, c, u32(stack[2]), u32(stack[3])) {
		return
	}
	key, ok := b.key(stack, c, k)
	if !ok {
		return
	}
	inv := effects(stack, c, "kv_get")
	if inv == nil {
		return
	}
	if v, deleted, found := inv.pending(key); found {
		if deleted {
			fail(stack, c, abi.CodeNotFound, "key "+quote(key)+" not found")
			return
		}
		fill(m, stack, u32(stack[2]), u32(stack[3]), v)
		return
	}
	v, err := b.env.KV.Get(ctx, key)
	b.env.observe("get", err)
	switch {
	case errors.Is(err, ErrNotFound):
		fail(stack, c, abi.CodeNotFound, "key "+quote(key)+" not found")
	case errors.Is(err, context.DeadlineExceeded):
		fail(stack, c, abi.CodeTimeout, "kv get "+quote(key)+": "+clip(err.Error(), 256))
	case err != nil:
		fail(stack, c, abi.CodeUnavailable, "kv get "+quote(key)+": "+clip(err.Error(), 256))
	default:
		fill(m, stack, u32(stack[2]), u32(stack[3]), v)
	}
}

func (b *binding) kvSet(ctx context.Context, m api.Module, stack []uint64) {
	c := runtime.CallFrom(ctx)
	k, ok := view(m, stack, c, u32(stack[0]), u32(stack[1]), "key")
	if !ok {
		return
	}
	v, ok := view(m, stack, c, u32(stack[2]), u32(stack[3]), "value")
	if !ok {
		return
	}
	key, ok := b.key(stack, c, k)
	if !ok {
		return
	}
	inv := effects(stack, c, "kv_set")
	if inv == nil {
		return
	}
	if len(v) > b.env.maxValue() {
		fail(stack, c, abi.CodeTooLarge, "value of "+strconv.Itoa(len(v))+" bytes for key "+quote(key)+" passes the cap of "+strconv.Itoa(b.env.maxValue()))
		return
	}
	// A key-value write is one NATS message of the value (the key is its
	// subject), with batch headers when the invocation writes several keys;
	// the store refuses a larger one when it is applied.
	if mp := b.env.maxPayload() - kvBatchHeadroom; mp > 0 && int64(len(v)) > mp {
		fail(stack, c, abi.CodeTooLarge, "value of "+strconv.Itoa(len(v))+" bytes for key "+quote(key)+" does not fit the store's message size ("+strconv.FormatInt(mp, 10)+" bytes)")
		return
	}
	if msg := inv.checkWrite(key, len(v), b.env.maxWrites(), b.env.maxWriteBytes()); msg != "" {
		fail(stack, c, abi.CodeTooLarge, msg)
		return
	}
	inv.bufferWrite(KVOp{Key: key, Value: append([]byte(nil), v...)})
	ret(stack, 0)
}

func (b *binding) kvDelete(ctx context.Context, m api.Module, stack []uint64) {
	c := runtime.CallFrom(ctx)
	k, ok := view(m, stack, c, u32(stack[0]), u32(stack[1]), "key")
	if !ok {
		return
	}
	key, ok := b.key(stack, c, k)
	if !ok {
		return
	}
	inv := effects(stack, c, "kv_delete")
	if inv == nil {
		return
	}
	if msg := inv.checkWrite(key, 0, b.env.maxWrites(), b.env.maxWriteBytes()); msg != "" {
		fail(stack, c, abi.CodeTooLarge, msg)
		return
	}
	inv.bufferWrite(KVOp{Key: key, Delete: true})
	ret(stack, 0)
}

// maxServiceName is the longest service name (abi.ServiceNamePattern).
const maxServiceName = 63

func (b *binding) discover(ctx context.Context, m api.Module, stack []uint64) {
	c := runtime.CallFrom(ctx)
	np, ok := view(m, stack, c, u32(stack[0]), u32(stack[1]), "service name")
	if !ok || !buffer(m, stack, c, u32(stack[2]), u32(stack[3])) {
		return
	}
	if len(np) > maxServiceName {
		fail(stack, c, abi.CodeTooLarge, "service name "+quote(np)+" is longer than "+strconv.Itoa(maxServiceName)+" bytes")
		return
	}
	name := string(np)
	if !b.env.Grants.MayDiscover(name) {
		fail(stack, c, abi.CodeDenied, "service "+b.env.Service+" is not granted discovering "+quote(name))
		return
	}
	var info abi.ServiceInfo
	if b.env.Discover != nil {
		info, ok = b.env.Discover(name)
	} else {
		ok = false
	}
	if !ok {
		fail(stack, c, abi.CodeNotFound, "no service named "+quote(name))
		return
	}
	out, err := json.Marshal(info)
	if err != nil {
		fail(stack, c, abi.CodeInternal, clip(err.Error(), 256))
		return
	}
	fill(m, stack, u32(stack[2]), u32(stack[3]), out)
}
