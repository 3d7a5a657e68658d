package host_test

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/kv"
	"github.com/meshd/meshd/host/natsd"
	"github.com/meshd/meshd/runtime"
)

// The largest event publish accepts, with the longest type and source and a
// traceparent, is stored by the event bus, delayed or not: the binding's
// estimate of an event's headers (eventOverhead) is not short of what the
// bus and JetStream send.
func TestLargestAcceptedEventFitsTheBus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := natsd.Start(ctx, natsd.Config{DataDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	b, err := bus.New(ctx, ns.JetStream(), bus.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })

	env := hostileEnv()
	env.Service = strings.Repeat("s", 63)
	env.MaxPayload = ns.Conn().MaxPayload
	m := hostile(t, env)
	typ := strings.Repeat("T", abi.MaxEventTypeLen)
	const traceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

	// Find the largest data publish accepts (it answers too large past it).
	lo, hi := 2, int(ns.Conn().MaxPayload())
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if res, _ := publishOnce(t, m, typ, mid, traceParent); res == 0 {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	if lo < int(ns.Conn().MaxPayload())-2048 {
		t.Fatalf("publish accepts only %d bytes of data of %d", lo, ns.Conn().MaxPayload())
	}
	res, inv := publishOnce(t, m, typ, lo, traceParent)
	if res != 0 || len(inv.Events) != 2 {
		t.Fatalf("result %d, %d events", res, len(inv.Events))
	}
	var evs []bus.Pending
	for _, e := range inv.Events {
		ev := bus.NewEvent(env.Service, e.Type, e.Data)
		ev.TraceParent = inv.TraceParent
		evs = append(evs, bus.Pending{Event: ev, Delay: e.Delay})
	}
	if err := b.PublishAll(ctx, evs); err != nil {
		t.Fatalf("the bus refused what publish accepted (%d bytes of data): %v", lo, err)
	}
}

// publishOnce publishes, in one invocation, an event of type typ with n
// bytes of JSON data and the same delayed by an hour, and returns the
// second call's result.
func publishOnce(t *testing.T, m *runtime.Module, typ string, n int, traceParent string) (int32, *host.Invocation) {
	t.Helper()
	var s script
	tp := s.put([]byte(typ))
	data := s.put([]byte(`"` + strings.Repeat("x", n-2) + `"`))
	s.call(fnPublish, 1, tp, uint32(len(typ)), data, uint32(n))
	s.call(fnPublishDelayed, 1, tp, uint32(len(typ)), data, uint32(n), uint32(time.Hour.Milliseconds()))
	inv := &host.Invocation{TraceParent: traceParent}
	c := &runtime.Call{Input: s.input(), Data: inv}
	if err := m.Invoke(context.Background(), runtime.EntryHTTP, c); err != nil {
		t.Fatal(err)
	}
	return int32(binary.LittleEndian.Uint32(c.Output[4:])), inv
}

// The largest value kv_set accepts is stored by the real store, in an
// atomic batch with another write of the same size.
func TestLargestAcceptedValueFitsTheStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := natsd.Start(ctx, natsd.Config{DataDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	store, err := kv.Open(ctx, ns.JetStream(), "hostile", kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	env := hostileEnv()
	env.MaxPayload = ns.Conn().MaxPayload
	m := hostile(t, env)

	mp := int(ns.Conn().MaxPayload())
	var s script
	k1, k2 := s.put([]byte("k1")), s.put([]byte("k2"))
	v := s.put(make([]byte, mp))
	s.call(fnKVSet, 1, k1, 2, v, uint32(mp))      // refused: no room for batch headers
	s.call(fnKVSet, 1, k1, 2, v, uint32(mp-2048)) // accepted, whatever the headroom
	res, _ := run(t, m, &s)
	if res[0] != -int32(abi.CodeTooLarge) || res[1] != 0 {
		t.Fatalf("results %v", res)
	}
	// The largest accepted value.
	lo, hi := mp-2048, mp-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		s.ops = nil
		s.call(fnKVSet, 1, k1, 2, v, uint32(mid))
		if res, _ := run(t, m, &s); res[0] == 0 {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	n := lo
	s.ops = nil
	s.call(fnKVSet, 1, k1, 2, v, uint32(n))
	s.call(fnKVSet, 1, k2, 2, v, uint32(n))
	res, inv := run(t, m, &s)
	if res[0] != 0 || res[1] != 0 || len(inv.Writes) != 2 {
		t.Fatalf("results %v, %d writes", res, len(inv.Writes))
	}
	ops := []kv.Op{kv.Op(inv.Writes[0]), kv.Op(inv.Writes[1])}
	if err := store.Apply(ctx, ops); err != nil {
		t.Fatalf("the store refused two values of %d bytes that kv_set accepted: %v", n, err)
	}
}
