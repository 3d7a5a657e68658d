package host_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"testing"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/runtime"
)

// Pointer arguments of each host function of hostile-ops.wat, as indexes
// of (a, b, c, d, e): pairs of pointer and length.
var fuzzRanges = [...][][2]int{
	fnInputRead:      {{0, 1}},
	fnOutputWrite:    {{0, 1}},
	fnLastError:      {{0, 1}},
	fnLog:            {{1, 2}},
	fnPublish:        {{0, 1}, {2, 3}},
	fnKVGet:          {{0, 1}, {2, 3}},
	fnKVSet:          {{0, 1}, {2, 3}},
	fnKVDelete:       {{0, 1}},
	fnDiscover:       {{0, 1}, {2, 3}},
	fnPublishDelayed: {{0, 1}, {2, 3}},
	fnConfigGet:      {{0, 1}, {2, 3}},
	fnCall:           {{0, 1}, {2, 3}},
	fnCallResult:     {{0, 1}},
}

// fuzzBuffers is the output buffer (pointer, capacity) of each
// grow-and-retry function: the only memory a host function may write.
var fuzzBuffers = map[uint32][2]int{
	fnInputRead:  {0, 1},
	fnLastError:  {0, 1},
	fnKVGet:      {2, 3},
	fnDiscover:   {2, 3},
	fnConfigGet:  {2, 3},
	fnCallResult: {0, 1},
}

// FuzzHostFunctions calls one host function of a real instance with
// arbitrary arguments and memory contents. No call may panic (a host panic
// fails the invocation), every result is a length or a code of the ABI, a
// range outside memory is always a bad pointer, and nothing is written to
// guest memory but a grow-and-retry function's buffer, and only when the
// value fits.
//
//	go test -run '^$' -fuzz FuzzHostFunctions -fuzztime 5s ./host/
func FuzzHostFunctions(f *testing.F) {
	kv := &memKV{m: map[string][]byte{"k": []byte(`"stored"`)}}
	env := &host.Env{
		Service: "hostile",
		Grants:  host.Grants{Publish: []string{"*"}, KV: true, Discover: []string{"order"}, Calls: []string{"order"}},
		KV:      kv,
		Config:  map[string]string{"limit": "5"},
		Discover: func(name string) (abi.ServiceInfo, bool) {
			return abi.ServiceInfo{Name: name, Status: "UP", Version: "1", Instances: 1}, name == "order"
		},
		MaxPayload: func() int64 { return 1 << 20 },
		Log:        slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MaxWrites:  4, MaxWriteBytes: 4096, MaxEvents: 4, MaxEventBytes: 4096,
		Call: func(_ context.Context, call *host.ServiceCall, resp *abi.Response) error {
			*resp = abi.Response{Status: 200, Body: call.Request.Body}
			return nil
		},
	}
	m := hostile(f, env)

	const data = guestIN + 28 // where mem lands in guest memory
	f.Add(uint8(fnKVGet), uint32(data), uint32(1), uint32(data+8), uint32(16), uint32(0), []byte("k"))
	f.Add(uint8(fnKVSet), uint32(data), uint32(1), uint32(data+1), uint32(2), uint32(0), []byte("k{}"))
	f.Add(uint8(fnPublish), uint32(data), uint32(1), uint32(data+1), uint32(2), uint32(0), []byte("T{}"))
	f.Add(uint8(fnDiscover), uint32(data), uint32(5), uint32(0), uint32(4), uint32(0), []byte("order"))
	f.Add(uint8(fnConfigGet), uint32(data), uint32(5), uint32(65535), uint32(2), uint32(0), []byte("limit"))
	f.Add(uint8(fnInputRead), uint32(131000), uint32(1000), uint32(0), uint32(0), uint32(0), []byte{})
	f.Add(uint8(fnLog), uint32(2), uint32(data), uint32(0xFFFFFFFF), uint32(0), uint32(0), []byte("x"))
	f.Add(uint8(fnPublishDelayed), uint32(data), uint32(1), uint32(data+1), uint32(2), uint32(0x7FFFFFFF), []byte("T{}"))
	callReq := (&abi.CallRequest{Method: []byte("GET"), Path: []byte("/orders/1")}).Append(nil)
	f.Add(uint8(fnCall), uint32(data), uint32(5), uint32(data+5), uint32(len(callReq)), uint32(0), append([]byte("order"), callReq...))
	f.Add(uint8(fnCallResult), uint32(data), uint32(64), uint32(0), uint32(0), uint32(0), []byte{})

	f.Fuzz(func(t *testing.T, fn uint8, a, b, c, d, e uint32, mem []byte) {
		if len(mem) > 64<<10 {
			mem = mem[:64<<10]
		}
		f := uint32(fn) % uint32(len(fuzzRanges))
		args := [5]uint32{a, b, c, d, e}
		in := binary.LittleEndian.AppendUint32(nil, 0xFFFFFFFF)
		in = binary.LittleEndian.AppendUint32(in, f)
		for _, v := range args {
			in = binary.LittleEndian.AppendUint32(in, v)
		}
		in = append(in, mem...)

		inv := &host.Invocation{}
		call := &runtime.Call{Input: in, Data: inv}
		if err := m.Invoke(context.Background(), runtime.EntryHTTP, call); err != nil {
			t.Fatalf("fn %d %v: invocation failed (a host panic?): %v", f, args, err)
		}
		out := call.Output
		res := int32(binary.LittleEndian.Uint32(out[len(out)-4:]))
		extra := 0 // what the fuzzed output_write appended
		if f == fnOutputWrite && res == 0 {
			extra = int(b)
		}
		size := (len(out) - 4 - extra) / 2
		if size <= 0 || 2*size+extra+4 != len(out) || size%65536 != 0 {
			t.Fatalf("fn %d %v: output of %d bytes does not parse (result %d)", f, args, len(out), res)
		}
		before, after := out[:size], out[size+extra:2*size+extra]

		if res < 0 && (res < -int32(abi.CodeInternal)) {
			t.Fatalf("fn %d %v: result %d is no code of the ABI", f, args, res)
		}
		outside := false
		for _, r := range fuzzRanges[f] {
			if uint64(args[r[0]])+uint64(args[r[1]]) > uint64(size) {
				outside = true
			}
		}
		delayInvalid := f == fnPublishDelayed && (int32(e) < 0 || int64(int32(e)) > int64(abi.MaxDelay.Milliseconds()))
		switch {
		case outside && !delayInvalid && res != -int32(abi.CodeBadPointer):
			t.Fatalf("fn %d %v: a range outside %d bytes of memory answered %d, want bad pointer", f, args, size, res)
		case !outside && res == -int32(abi.CodeBadPointer):
			t.Fatalf("fn %d %v: ranges inside %d bytes of memory answered bad pointer", f, args, size)
		}

		lo, hi := 0, 0 // the range the call may have written
		if buf, ok := fuzzBuffers[f]; ok && res >= 0 && uint32(res) <= args[buf[1]] {
			lo, hi = int(args[buf[0]]), int(args[buf[0]])+int(res)
		}
		if !bytes.Equal(before[:lo], after[:lo]) || !bytes.Equal(before[hi:], after[hi:]) {
			i := 0
			for i < size && (before[i] == after[i] || (i >= lo && i < hi)) {
				i++
			}
			t.Fatalf("fn %d %v: result %d, wrote memory at %d outside [%d, %d)", f, args, res, i, lo, hi)
		}
	})
}
