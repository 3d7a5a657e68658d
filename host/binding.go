package host

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
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
		b := &binding{env: env}
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
		}
		mb := r.NewHostModuleBuilder(abi.ModuleName)
		for _, f := range fns {
			params := make([]api.ValueType, f.params)
			for i := range params {
				params[i] = i32
			}
			mb.NewFunctionBuilder().WithGoModuleFunction(f.fn, params, []api.ValueType{i32}).Export(f.name)
		}
		_, err := mb.Instantiate(ctx)
		return err
	}
}

type binding struct {
	env *Env
}

// ret stores an i32 result.
func ret(stack []uint64, v int32) { stack[0] = api.EncodeI32(v) }

// fail records msg as the call's last error and returns -code.
func fail(stack []uint64, c *runtime.Call, code abi.Code, msg string) {
	if c == nil {
		ret(stack, -int32(code))
		return
	}
	ret(stack, c.SetError(code, msg))
}

// fill answers a grow-and-retry function: it copies v into the guest buffer
// when it fits and returns len(v) either way.
func fill(m api.Module, stack []uint64, c *runtime.Call, buf, capacity uint32, v []byte) {
	if _, ok := m.Memory().Read(buf, capacity); !ok {
		fail(stack, c, abi.CodeBadPointer, "buffer outside guest memory")
		return
	}
	if uint64(len(v)) <= uint64(capacity) {
		m.Memory().Write(buf, v)
	}
	ret(stack, int32(len(v)))
}

// view returns guest memory [ptr, ptr+n) or reports a bad pointer.
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
	if c == nil {
		fail(stack, nil, abi.CodeNotFound, "")
		return
	}
	fill(m, stack, c, u32(stack[0]), u32(stack[1]), c.Input)
}

func (b *binding) outputWrite(ctx context.Context, m api.Module, stack []uint64) {
	c := runtime.CallFrom(ctx)
	if c == nil {
		fail(stack, nil, abi.CodeUnavailable, "")
		return
	}
	p, ok := view(m, stack, c, u32(stack[0]), u32(stack[1]), "output")
	if !ok {
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
	var msg string
	if c != nil {
		msg = c.LastError()
	}
	if c == nil || msg == "" {
		if _, ok := m.Memory().Read(u32(stack[0]), u32(stack[1])); !ok {
			fail(stack, c, abi.CodeBadPointer, "buffer outside guest memory")
			return
		}
		ret(stack, 0)
		return
	}
	// Copy first: fill may fail and overwrite the message.
	fill(m, stack, c, u32(stack[0]), u32(stack[1]), []byte(msg))
}

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
		if l.Enabled(ctx, lvl) {
			l.LogAttrs(ctx, lvl, string(p), slog.String("source", "guest"))
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
		fail(stack, runtime.CallFrom(ctx), abi.CodeInvalid, "delay_ms must be between 0 and 30 days")
		return
	}
	b.publishAfter(ctx, m, stack, time.Duration(ms)*time.Millisecond)
}

// configGet answers config_get (ABI v1.1).
func (b *binding) configGet(ctx context.Context, m api.Module, stack []uint64) {
	c := runtime.CallFrom(ctx)
	k, ok := view(m, stack, c, u32(stack[0]), u32(stack[1]), "config key")
	if !ok {
		return
	}
	v, found := b.env.Config[string(k)]
	if !found {
		fail(stack, c, abi.CodeNotFound, "no config key "+string(k))
		return
	}
	fill(m, stack, c, u32(stack[2]), u32(stack[3]), []byte(v))
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
	typ := string(tp)
	if err := abi.ValidEventType(typ); err != nil {
		fail(stack, c, abi.CodeInvalid, err.Error())
		return
	}
	if !b.env.Grants.MayPublish(typ) {
		fail(stack, c, abi.CodeDenied, "service "+b.env.Service+" is not granted publishing "+typ)
		return
	}
	if len(data) > b.env.maxValue() {
		fail(stack, c, abi.CodeTooLarge, "event data passes the size cap")
		return
	}
	if len(inv.Events) >= b.env.maxEvents() {
		fail(stack, c, abi.CodeTooLarge, "too many events in one invocation")
		return
	}
	if !json.Valid(data) {
		fail(stack, c, abi.CodeInvalid, "event data is not valid JSON")
		return
	}
	inv.Events = append(inv.Events, Event{Type: typ, Data: append([]byte(nil), data...), Delay: delay})
	ret(stack, 0)
}

// key reads and checks a key argument.
func (b *binding) key(m api.Module, stack []uint64, c *runtime.Call, ptr, n uint32) (string, bool) {
	if b.env.KV == nil {
		fail(stack, c, abi.CodeDenied, "service "+b.env.Service+" is not granted a key-value store (grants.kv)")
		return "", false
	}
	k, ok := view(m, stack, c, ptr, n, "key")
	if !ok {
		return "", false
	}
	switch {
	case len(k) == 0:
		fail(stack, c, abi.CodeInvalid, "key is empty")
		return "", false
	case len(k) > b.env.maxKey():
		fail(stack, c, abi.CodeTooLarge, "key passes the size cap")
		return "", false
	}
	return string(k), true
}

func (b *binding) kvGet(ctx context.Context, m api.Module, stack []uint64) {
	c := runtime.CallFrom(ctx)
	key, ok := b.key(m, stack, c, u32(stack[0]), u32(stack[1]))
	if !ok {
		return
	}
	inv := effects(stack, c, "kv_get")
	if inv == nil {
		return
	}
	if v, deleted, found := inv.pending(key); found {
		if deleted {
			fail(stack, c, abi.CodeNotFound, "key not found")
			return
		}
		fill(m, stack, c, u32(stack[2]), u32(stack[3]), v)
		return
	}
	v, err := b.env.KV.Get(ctx, key)
	b.env.observe("get", err)
	switch {
	case errors.Is(err, ErrNotFound):
		fail(stack, c, abi.CodeNotFound, "key not found")
	case errors.Is(err, context.DeadlineExceeded):
		fail(stack, c, abi.CodeTimeout, "kv get: "+err.Error())
	case err != nil:
		fail(stack, c, abi.CodeUnavailable, "kv get: "+err.Error())
	default:
		fill(m, stack, c, u32(stack[2]), u32(stack[3]), v)
	}
}

func (b *binding) kvSet(ctx context.Context, m api.Module, stack []uint64) {
	c := runtime.CallFrom(ctx)
	key, ok := b.key(m, stack, c, u32(stack[0]), u32(stack[1]))
	if !ok {
		return
	}
	v, ok := view(m, stack, c, u32(stack[2]), u32(stack[3]), "value")
	if !ok {
		return
	}
	inv := effects(stack, c, "kv_set")
	if inv == nil {
		return
	}
	if len(v) > b.env.maxValue() {
		fail(stack, c, abi.CodeTooLarge, "value passes the size cap")
		return
	}
	inv.Writes = append(inv.Writes, KVOp{Key: key, Value: append([]byte(nil), v...)})
	ret(stack, 0)
}

func (b *binding) kvDelete(ctx context.Context, m api.Module, stack []uint64) {
	c := runtime.CallFrom(ctx)
	key, ok := b.key(m, stack, c, u32(stack[0]), u32(stack[1]))
	if !ok {
		return
	}
	inv := effects(stack, c, "kv_delete")
	if inv == nil {
		return
	}
	inv.Writes = append(inv.Writes, KVOp{Key: key, Delete: true})
	ret(stack, 0)
}

func (b *binding) discover(ctx context.Context, m api.Module, stack []uint64) {
	c := runtime.CallFrom(ctx)
	np, ok := view(m, stack, c, u32(stack[0]), u32(stack[1]), "service name")
	if !ok {
		return
	}
	name := string(np)
	if !b.env.Grants.MayDiscover(name) {
		fail(stack, c, abi.CodeDenied, "service "+b.env.Service+" is not granted discovering "+name)
		return
	}
	var info abi.ServiceInfo
	if b.env.Discover != nil {
		info, ok = b.env.Discover(name)
	} else {
		ok = false
	}
	if !ok {
		fail(stack, c, abi.CodeNotFound, "no service named "+name)
		return
	}
	out, err := json.Marshal(info)
	if err != nil {
		fail(stack, c, abi.CodeInternal, err.Error())
		return
	}
	fill(m, stack, c, u32(stack[2]), u32(stack[3]), out)
}
