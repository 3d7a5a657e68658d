package host_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/internal/wattest"
	"github.com/meshd/meshd/runtime"
)

// memKV is a map standing in for the service's store. The NATS-backed store
// is exercised end to end by the daemon's tests; here the subject is the
// binding's pointer checks, grants and buffering.
type memKV struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (k *memKV) Get(_ context.Context, key string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[key]
	if !ok {
		return nil, host.ErrNotFound
	}
	return v, nil
}

// conformance loads the hand-written WAT guest with env.
func conformance(t *testing.T, env *host.Env) *runtime.Module {
	t.Helper()
	return loadWAT(t, "testdata/conformance.wat", "conformance", env)
}

// loadWAT loads the WAT guest at path as service name, linked with env.
func loadWAT(t *testing.T, path, name string, env *host.Env) *runtime.Module {
	t.Helper()
	e, err := runtime.NewEngine(runtime.EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	m, err := e.Load(context.Background(), wattest.Build(t, path), host.Module(env), runtime.ModuleConfig{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

func granted(kv host.KV) *host.Env {
	return &host.Env{
		Service: "conformance",
		Grants:  host.Grants{Publish: []string{"WAT_EVENT"}, Subscribe: []string{"WAT_EVENT"}, KV: true},
		KV:      kv,
	}
}

// request runs route on m and returns the decoded response and the
// invocation's buffered effects.
func request(t *testing.T, m *runtime.Module, route, body string) (abi.Response, *host.Invocation, error) {
	t.Helper()
	method, path, _ := strings.Cut(route, " ")
	req := abi.Request{Method: []byte(method), Path: []byte(path), Route: []byte(route), Body: []byte(body)}
	inv := &host.Invocation{}
	c := &runtime.Call{Input: req.Append(nil), Data: inv}
	var resp abi.Response
	if err := m.Invoke(context.Background(), runtime.EntryHTTP, c); err != nil {
		return resp, inv, err
	}
	if c.Code != abi.CodeOK {
		t.Fatalf("%s: code %v: %s", route, c.Code, c.Output)
	}
	if err := resp.Decode(c.Output); err != nil {
		t.Fatalf("%s: response does not decode: %v", route, err)
	}
	return resp, inv, nil
}

func TestConformanceGuestSpeaksABIv1(t *testing.T) {
	kv := &memKV{m: map[string][]byte{}}
	m := conformance(t, granted(kv))
	if !strings.Contains(string(m.Declaration()), `"subscriptions":[{"type":"WAT_EVENT"}]`) {
		t.Fatalf("declaration = %s", m.Declaration())
	}

	t.Run("echo", func(t *testing.T) {
		resp, _, err := request(t, m, "POST /wat/echo", `{"hello":"wat"}`)
		if err != nil || resp.Status != 200 || string(resp.Body) != `{"hello":"wat"}` {
			t.Fatalf("err=%v status=%d body=%q", err, resp.Status, resp.Body)
		}
	})
	t.Run("kv writes are buffered and read back in the same call", func(t *testing.T) {
		resp, inv, err := request(t, m, "POST /wat/kv", `{"n":1}`)
		if err != nil || resp.Status != 200 || string(resp.Body) != `{"n":1}` {
			t.Fatalf("err=%v status=%d body=%q", err, resp.Status, resp.Body)
		}
		if len(inv.Writes) != 1 || inv.Writes[0].Key != "value" || string(inv.Writes[0].Value) != `{"n":1}` {
			t.Fatalf("writes = %+v", inv.Writes)
		}
		if _, ok := kv.m["value"]; ok {
			t.Fatal("the binding wrote to the store itself; writes must wait for the call to succeed")
		}
	})
	t.Run("kv get reaches the store", func(t *testing.T) {
		if resp, _, _ := request(t, m, "GET /wat/kv", ""); resp.Status != 404 {
			t.Fatalf("missing key: status %d, want 404", resp.Status)
		}
		kv.m["value"] = []byte(`"stored"`)
		if resp, _, _ := request(t, m, "GET /wat/kv", ""); resp.Status != 200 || string(resp.Body) != `"stored"` {
			t.Fatalf("status %d body %q", resp.Status, resp.Body)
		}
	})
	t.Run("publish is buffered", func(t *testing.T) {
		resp, inv, err := request(t, m, "POST /wat/publish", `{"x":1}`)
		if err != nil || resp.Status != 202 {
			t.Fatalf("err=%v status=%d", err, resp.Status)
		}
		if len(inv.Events) != 1 || inv.Events[0].Type != "WAT_EVENT" || string(inv.Events[0].Data) != `{"x":1}` {
			t.Fatalf("events = %+v", inv.Events)
		}
	})
	t.Run("publishing invalid JSON is refused", func(t *testing.T) {
		resp, inv, _ := request(t, m, "POST /wat/publish", `not json`)
		if resp.Status != 500 || len(inv.Events) != 0 {
			t.Fatalf("status %d events %+v, want 500 and none", resp.Status, inv.Events)
		}
	})
	t.Run("a bad pointer is an error code, not a crash", func(t *testing.T) {
		resp, _, err := request(t, m, "GET /wat/badptr", "")
		if err != nil || resp.Status != 200 || !strings.Contains(string(resp.Body), "outside guest memory") {
			t.Fatalf("err=%v status=%d body=%q", err, resp.Status, resp.Body)
		}
	})
	t.Run("an ungranted topic is denied", func(t *testing.T) {
		resp, inv, err := request(t, m, "GET /wat/denied", "")
		if err != nil || resp.Status != 403 || !strings.Contains(string(resp.Body), `not granted publishing "NOT_GRANTED"`) {
			t.Fatalf("err=%v status=%d body=%q", err, resp.Status, resp.Body)
		}
		if len(inv.Events) != 0 {
			t.Fatalf("denied publish was buffered: %+v", inv.Events)
		}
	})
	t.Run("a trap fails the call", func(t *testing.T) {
		if _, _, err := request(t, m, "GET /wat/trap", ""); !errors.Is(err, runtime.ErrTrap) {
			t.Fatalf("err = %v, want ErrTrap", err)
		}
	})
	t.Run("events reach meshd_event", func(t *testing.T) {
		ev := abi.Event{ID: []byte("e1"), Source: []byte("conformance"), Type: []byte("WAT_EVENT"), Attempt: 1, Data: []byte(`{"seen":true}`)}
		inv := &host.Invocation{}
		c := &runtime.Call{Input: ev.Append(nil), Data: inv}
		if err := m.Invoke(context.Background(), runtime.EntryEvent, c); err != nil || c.Code != abi.CodeOK {
			t.Fatalf("err=%v code=%v", err, c.Code)
		}
		if len(inv.Writes) != 1 || inv.Writes[0].Key != "last-event" || string(inv.Writes[0].Value) != `{"seen":true}` {
			t.Fatalf("writes = %+v", inv.Writes)
		}
	})
}

func TestNoKVGrantMeansDenied(t *testing.T) {
	m := conformance(t, &host.Env{Service: "conformance"})
	req := abi.Request{Method: []byte("POST"), Path: []byte("/wat/kv"), Route: []byte("POST /wat/kv"), Body: []byte(`1`)}
	inv := &host.Invocation{}
	c := &runtime.Call{Input: req.Append(nil), Data: inv}
	if err := m.Invoke(context.Background(), runtime.EntryHTTP, c); err != nil {
		t.Fatal(err)
	}
	// The guest answers 500 when kv_set fails; nothing may be buffered.
	var resp abi.Response
	if c.Code == abi.CodeOK {
		if err := resp.Decode(c.Output); err != nil || resp.Status != 500 {
			t.Fatalf("status %d (%v) without a kv grant, want 500", resp.Status, err)
		}
	}
	if len(inv.Writes) != 0 {
		t.Fatalf("writes buffered without a kv grant: %+v", inv.Writes)
	}
}
