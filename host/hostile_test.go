package host_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/internal/wattest"
	"github.com/meshd/meshd/runtime"
)

// Host function numbers of testdata/hostile-ops.wat.
const (
	fnInputRead uint32 = iota
	fnOutputWrite
	fnLastError
	fnLog
	fnPublish
	fnKVGet
	fnKVSet
	fnKVDelete
	fnDiscover
	fnPublishDelayed
	fnConfigGet
	fnCall
	fnCallResult
	fnSnapshot
)

const (
	guestIN   = 65536 // where hostile-ops.wat reads its input
	maxOps    = 16    // op slots before the data
	guestData = guestIN + 4 + maxOps*28
	badPtr    = uint32(0xFFFFFFF0) // past the end of any memory
)

// script is the input of hostile-ops.wat: ops, and the data they point at.
type script struct {
	ops  [][7]uint32
	data []byte
}

// put adds b to the data and returns its guest address.
func (s *script) put(b []byte) uint32 {
	addr := uint32(guestData + len(s.data))
	s.data = append(s.data, b...)
	return addr
}

// call adds an op: host function fn, repeat times, with args.
func (s *script) call(fn, repeat uint32, args ...uint32) {
	var op [7]uint32
	op[0], op[1] = fn, repeat
	copy(op[2:], args)
	s.ops = append(s.ops, op)
}

func (s *script) input() []byte {
	if len(s.ops) > maxOps {
		panic("too many ops")
	}
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(s.ops)))
	for _, op := range s.ops {
		for _, v := range op {
			b = binary.LittleEndian.AppendUint32(b, v)
		}
	}
	b = append(b, make([]byte, guestData-guestIN-len(b))...)
	return append(b, s.data...)
}

// hostile loads testdata/hostile-ops.wat with env.
func hostile(tb testing.TB, env *host.Env) *runtime.Module {
	tb.Helper()
	e, err := runtime.NewEngine(runtime.EngineConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = e.Close(context.Background()) })
	m, err := e.Load(context.Background(), wattest.Build(tb, "testdata/hostile-ops.wat"), host.Module(env),
		runtime.ModuleConfig{Name: "hostile", MaxInputBytes: 8 << 20, MaxOutputBytes: 8 << 20,
			// Generous: one script copies 512 MiB, slow under -race on a
			// loaded machine; no test here is about the deadline.
			CallTimeout: time.Minute})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

// run runs s and returns each op's result and the invocation.
func run(tb testing.TB, m *runtime.Module, s *script) ([]int32, *host.Invocation) {
	tb.Helper()
	inv := &host.Invocation{}
	c := &runtime.Call{Input: s.input(), Data: inv}
	if err := m.Invoke(context.Background(), runtime.EntryHTTP, c); err != nil {
		tb.Fatalf("invoke: %v", err)
	}
	if len(c.Output) != 4*len(s.ops) {
		tb.Fatalf("output of %d bytes, want a result per op (%d)", len(c.Output), len(s.ops))
	}
	res := make([]int32, len(s.ops))
	for i := range res {
		res[i] = int32(binary.LittleEndian.Uint32(c.Output[4*i:]))
	}
	return res, inv
}

func hostileEnv() *host.Env {
	return &host.Env{
		Service: "hostile",
		Grants:  host.Grants{Publish: []string{"*"}, KV: true, Discover: []string{"*"}},
		KV:      &memKV{m: map[string][]byte{}},
		Config:  map[string]string{"limit": "5"},
	}
}

func want(t *testing.T, res []int32, want ...int32) {
	t.Helper()
	if !slicesEqual(res, want) {
		t.Fatalf("results %v, want %v", res, want)
	}
}

func slicesEqual(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A key written again and again holds one pending write: 512 writes of
// 1 MiB to one key once buffered 512 MiB.
func TestRepeatedKeyHoldsOnePendingWrite(t *testing.T) {
	m := hostile(t, hostileEnv())
	var s script
	k, other := s.put([]byte("k")), s.put([]byte("other"))
	v := s.put(bytes.Repeat([]byte("v"), 1<<20))
	s.call(fnKVSet, 512, k, 1, v, 1<<20)
	s.call(fnKVSet, 1, other, 5, v, 3)
	s.call(fnKVSet, 1, k, 1, v, 2) // moves k after other
	res, inv := run(t, m, &s)
	want(t, res, 0, 0, 0)
	if len(inv.Writes) != 2 || inv.Writes[0].Key != "other" || inv.Writes[1].Key != "k" || string(inv.Writes[1].Value) != "vv" {
		t.Fatalf("writes = %d: %+v", len(inv.Writes), summary(inv.Writes))
	}

	// A delete replaces the pending value, and reads see it.
	s = script{}
	k = s.put([]byte("k"))
	v = s.put([]byte("value"))
	s.call(fnKVSet, 1, k, 1, v, 5)
	s.call(fnKVDelete, 3, k, 1)
	s.call(fnKVGet, 1, k, 1, v, 5)
	res, inv = run(t, m, &s)
	want(t, res, 0, 0, -int32(abi.CodeNotFound))
	if len(inv.Writes) != 1 || !inv.Writes[0].Delete {
		t.Fatalf("writes = %+v", summary(inv.Writes))
	}
}

// summary lists the first writes of ws, shortly.
func summary(ws []host.KVOp) []string {
	var out []string
	for _, w := range ws[:min(len(ws), 8)] {
		out = append(out, w.Key+"="+string(w.Value[:min(len(w.Value), 8)]))
	}
	return out
}

func TestBufferedWritesAreCapped(t *testing.T) {
	tooLarge := -int32(abi.CodeTooLarge)
	t.Run("count", func(t *testing.T) {
		env := hostileEnv()
		env.MaxWrites = 2
		m := hostile(t, env)
		var s script
		a, b, c := s.put([]byte("a")), s.put([]byte("b")), s.put([]byte("c"))
		s.call(fnKVSet, 1, a, 1, a, 1)
		s.call(fnKVDelete, 1, b, 1)
		s.call(fnKVSet, 1, c, 1, c, 1) // a third key
		s.call(fnKVDelete, 1, c, 1)
		s.call(fnKVSet, 1, a, 1, b, 1) // a key already pending
		res, inv := run(t, m, &s)
		want(t, res, 0, 0, tooLarge, tooLarge, 0)
		if len(inv.Writes) != 2 {
			t.Fatalf("writes = %+v", summary(inv.Writes))
		}
	})
	t.Run("bytes, with defaults", func(t *testing.T) {
		m := hostile(t, hostileEnv())
		var s script
		k := s.put([]byte("1234"))
		v := s.put(bytes.Repeat([]byte("v"), 1<<20))
		for i := range 4 { // 3 × (1 MiB + 1) fit in 4 MiB, not 4
			s.call(fnKVSet, 1, k+uint32(i), 1, v, 1<<20)
		}
		s.call(fnKVSet, 1, k, 1, v, 10) // shrinking a pending write frees room
		s.call(fnKVSet, 1, k+3, 1, v, 1<<20)
		res, inv := run(t, m, &s)
		want(t, res, 0, 0, 0, tooLarge, 0, 0)
		if len(inv.Writes) != 4 {
			t.Fatalf("writes = %+v", summary(inv.Writes))
		}
		if got := len(inv.Writes[0].Value) + len(inv.Writes[1].Value) + len(inv.Writes[2].Value) + len(inv.Writes[3].Value); got != 3<<20+10 {
			t.Fatalf("buffered %d bytes", got)
		}
	})
	t.Run("events", func(t *testing.T) {
		env := hostileEnv()
		env.MaxEventBytes = 100
		m := hostile(t, env)
		var s script
		typ := s.put([]byte("T"))
		data := s.put([]byte(`"` + strings.Repeat("x", 60) + `"`))
		s.call(fnPublish, 1, typ, 1, data, 62)
		s.call(fnPublishDelayed, 1, typ, 1, data, 62, 10)
		s.call(fnPublish, 1, typ, 1, data, 40) // `"xxx…` is not JSON: the cap comes first
		s.call(fnPublish, 1, typ, 1, data, 2)
		res, inv := run(t, m, &s)
		want(t, res, 0, tooLarge, tooLarge, -int32(abi.CodeInvalid))
		if len(inv.Events) != 1 {
			t.Fatalf("events = %d", len(inv.Events))
		}
	})
}

// An effect the bus or store would refuse is refused by the host function,
// where the guest sees it, not when the call's effects are applied.
func TestEffectsTooLargeForNATSAreRefusedAtTheCall(t *testing.T) {
	env := hostileEnv()
	payload := int64(1 << 20)
	env.MaxPayload = func() int64 { return payload }
	m := hostile(t, env)
	tooLarge := -int32(abi.CodeTooLarge)

	var s script
	typ := s.put([]byte("ORDER_CREATED"))
	k := s.put([]byte("k"))
	big := s.put([]byte(`"` + strings.Repeat("x", 1<<20-2) + `"`)) // 1 MiB of JSON: passes the value cap
	fits := 1<<20 - 2*1024
	small := s.put([]byte(`"` + strings.Repeat("x", fits-2) + `"`))
	s.call(fnPublish, 1, typ, 13, big, 1<<20)
	s.call(fnPublishDelayed, 1, typ, 13, big, 1<<20, 5)
	s.call(fnPublish, 1, typ, 13, small, uint32(fits))
	s.call(fnKVSet, 1, k, 1, big, 1<<20-128)
	res, inv := run(t, m, &s)
	want(t, res, tooLarge, tooLarge, 0, 0)
	if len(inv.Events) != 1 || len(inv.Writes) != 1 {
		t.Fatalf("%d events, %d writes buffered", len(inv.Events), len(inv.Writes))
	}

	// A server with a smaller maximum payload than the value cap.
	payload = 512 << 10
	s.ops = nil
	s.call(fnKVSet, 1, k, 1, big, 512<<10-127)
	s.call(fnKVSet, 1, k, 1, big, 512<<10-128)
	res, inv = run(t, m, &s)
	want(t, res, tooLarge, 0)
	if len(inv.Writes) != 1 {
		t.Fatalf("%d writes buffered", len(inv.Writes))
	}
}

// lastErrorLen is an op that answers the length of the last error message.
func (s *script) lastErrorLen() { s.call(fnLastError, 1, 0, 0) }

func TestHostMessagesAreBoundedAndEscaped(t *testing.T) {
	env := hostileEnv()
	env.Grants.Publish = []string{"ONLY"}
	m := hostile(t, env)
	huge := bytes.Repeat([]byte("n"), 1<<20)
	cases := []struct {
		name string
		op   func(s *script, arg uint32, n uint32)
		arg  []byte
		code abi.Code
		in   string // the message holds this
	}{
		{"config key", func(s *script, a, n uint32) { s.call(fnConfigGet, 1, a, n, 0, 0) }, huge, abi.CodeTooLarge, `"nnnn`},
		{"config key escaped", func(s *script, a, n uint32) { s.call(fnConfigGet, 1, a, n, 0, 0) }, []byte("a\nb\x00"), abi.CodeNotFound, `"a\nb\x00"`},
		{"service name", func(s *script, a, n uint32) { s.call(fnDiscover, 1, a, n, 0, 0) }, huge, abi.CodeTooLarge, "(1048576 bytes)"},
		{"service name escaped", func(s *script, a, n uint32) { s.call(fnDiscover, 1, a, n, 0, 0) }, []byte("x\r\ny"), abi.CodeNotFound, `"x\r\ny"`},
		{"event type", func(s *script, a, n uint32) { s.call(fnPublish, 1, a, n, a, 2) }, huge, abi.CodeInvalid, "(1048576 bytes)"},
		{"event type escaped", func(s *script, a, n uint32) { s.call(fnPublish, 1, a, n, a, 2) }, []byte("a b\n"), abi.CodeInvalid, `"a b\n"`},
		{"event type denied", func(s *script, a, n uint32) { s.call(fnPublish, 1, a, n, a, 2) }, []byte("OTHER"), abi.CodeDenied, `"OTHER"`},
		{"key", func(s *script, a, n uint32) { s.call(fnKVSet, 1, a, n, a, 1) }, huge, abi.CodeTooLarge, "(1048576 bytes)"},
		{"key missing", func(s *script, a, n uint32) { s.call(fnKVGet, 1, a, n, 0, 0) }, append(bytes.Repeat([]byte("k"), 1000), '\t'), abi.CodeNotFound, "…(1001 bytes)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var s script
			arg := s.put(tc.arg)
			tc.op(&s, arg, uint32(len(tc.arg)))
			s.lastErrorLen()
			res, _ := run(t, m, &s)
			if res[0] != -int32(tc.code) {
				t.Fatalf("result %d, want %d", res[0], -int32(tc.code))
			}
			if n := res[1]; n <= 0 || n > 300 {
				t.Fatalf("message of %d bytes", n)
			}
		})
	}
	// The text itself, read back through last_error.
	for _, tc := range cases {
		t.Run(tc.name+" text", func(t *testing.T) {
			msg := lastError(t, m, func(s *script) {
				arg := s.put(tc.arg)
				tc.op(s, arg, uint32(len(tc.arg)))
			})
			if !strings.Contains(msg, tc.in) || strings.ContainsAny(msg, "\n\r\x00") {
				t.Fatalf("message %q, want it to hold %q and no raw control bytes", msg, tc.in)
			}
		})
	}
}

// lastError runs the ops build adds and returns the last error message
// they left, read with last_error into a snapshot of memory.
func lastError(t *testing.T, m *runtime.Module, build func(s *script)) string {
	t.Helper()
	var s script
	build(&s)
	buf := s.put(make([]byte, 512))
	s.call(fnLastError, 1, buf, 512)
	s.call(fnSnapshot, 1)
	inv := &host.Invocation{}
	c := &runtime.Call{Input: s.input(), Data: inv}
	if err := m.Invoke(context.Background(), runtime.EntryHTTP, c); err != nil {
		t.Fatal(err)
	}
	// Output: one result per op, the snapshot before the last result.
	n := len(s.ops)
	res := int32(binary.LittleEndian.Uint32(c.Output[4*(n-2):]))
	mem := c.Output[4*(n-1) : len(c.Output)-4]
	if res < 0 || int(res) > 512 {
		t.Fatalf("last_error answered %d", res)
	}
	return string(mem[buf : buf+uint32(res)])
}

// A grow-and-retry function checks its buffer before looking anything up:
// a buffer outside memory is a bad pointer even when there is nothing to
// copy.
func TestBadBufferIsBadPointerFirst(t *testing.T) {
	env := hostileEnv()
	env.Grants.Discover = nil
	m := hostile(t, env)
	var s script
	missing := s.put([]byte("missing"))
	s.call(fnKVGet, 1, missing, 7, badPtr, 64)
	s.call(fnConfigGet, 1, missing, 7, badPtr, 64)
	s.call(fnDiscover, 1, missing, 7, badPtr, 64) // not granted either
	s.call(fnInputRead, 1, badPtr, 64)
	s.call(fnLastError, 1, badPtr, 64)
	s.call(fnKVGet, 1, badPtr, 7, missing, 7)
	res, _ := run(t, m, &s)
	bad := -int32(abi.CodeBadPointer)
	want(t, res, bad, bad, bad, bad, bad, bad)
}

// lines is a slog handler that keeps every record's message and level.
type lines struct {
	mu   sync.Mutex
	msgs []string
	lvls []slog.Level
}

func (h *lines) Enabled(context.Context, slog.Level) bool { return true }
func (h *lines) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	h.lvls = append(h.lvls, r.Level)
	return nil
}
func (h *lines) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *lines) WithGroup(string) slog.Handler      { return h }

func TestGuestLogIsCappedAndRateLimited(t *testing.T) {
	t.Run("a line is cut at MaxLogBytes", func(t *testing.T) {
		h := &lines{}
		env := hostileEnv()
		env.Log = slog.New(h)
		m := hostile(t, env)
		var s script
		msg := s.put(bytes.Repeat([]byte("é"), 32<<10)) // 64 KiB of two-byte runes
		s.call(fnLog, 1, 0, msg, 64<<10)
		res, _ := run(t, m, &s)
		want(t, res, 0)
		if len(h.msgs) != 1 {
			t.Fatalf("%d lines", len(h.msgs))
		}
		got := h.msgs[0]
		if len(got) > host.DefaultMaxLogBytes+64 || !strings.HasSuffix(got, "…(truncated, 65536 bytes)") ||
			!strings.HasPrefix(got, strings.Repeat("é", 100)) || strings.Contains(got, "\ufffd") {
			t.Fatalf("line of %d bytes ending %q", len(got), got[max(0, len(got)-40):])
		}
	})
	t.Run("lines past the burst are dropped and counted, log answers ok", func(t *testing.T) {
		h := &lines{}
		var dropped int
		var mu sync.Mutex
		env := hostileEnv()
		env.Log = slog.New(h)
		env.LogLimits = host.LogLimits{LinesPerSecond: 1, Burst: 50}
		env.LogDropped = func(n int) { mu.Lock(); dropped += n; mu.Unlock() }
		m := hostile(t, env)
		var s script
		msg := s.put([]byte("flood"))
		s.call(fnLog, 5000, 0, msg, 5)
		res, _ := run(t, m, &s)
		want(t, res, 0)
		logged := len(h.msgs)
		// 50 of burst, plus at most one a second for the time the test ran.
		if logged < 50 || logged > 60 {
			t.Fatalf("%d lines logged of 5000", logged)
		}
		mu.Lock()
		defer mu.Unlock()
		if dropped != 5000-logged {
			t.Fatalf("%d dropped counted, want %d", dropped, 5000-logged)
		}
	})
}
