package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/internal/syncbuf"
	"github.com/meshd/meshd/runtime"
)

// Guest is one guest module under test.
type Guest struct {
	// Language names the guest in test names ("rust").
	Language string
	// Service is the guest's service name; its call routes call it.
	Service string
	// Wasm is the module.
	Wasm []byte
	// Prefix starts every route path ("/rust").
	Prefix string
	// EventType is the type it subscribes to and publishes ("RUST_EVENT").
	EventType string
}

// Outcome is what one case observed, normalised: the guest's prefix is
// written {p}, its event type {E} and its service name {S}.
type Outcome struct {
	Case   string
	Result string
}

// store is a map standing in for the service's store.
type store struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *store) Get(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	if !ok {
		return nil, host.ErrNotFound
	}
	return v, nil
}

func (s *store) set(key string, v []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v == nil {
		delete(s.m, key)
	} else {
		s.m[key] = v
	}
}

// harness is a guest loaded twice (caller and callee) with its store,
// its log and the calls it made.
type harness struct {
	g      Guest
	m      *runtime.Module // granted publish, subscribe, kv and calls to itself
	noKV   *runtime.Module // granted nothing
	kv     *store
	logs   *syncbuf.Buffer
	mu     sync.Mutex
	called []host.ServiceCall
}

func load(t *testing.T, e *runtime.Engine, g Guest, env *host.Env) *runtime.Module {
	t.Helper()
	m, err := e.Load(context.Background(), g.Wasm, host.Module(env), runtime.ModuleConfig{Name: g.Service})
	if err != nil {
		t.Fatalf("%s guest: %v", g.Language, err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

func newHarness(t *testing.T, g Guest) *harness {
	t.Helper()
	e, err := runtime.NewEngine(runtime.EngineConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	h := &harness{g: g, kv: &store{m: map[string][]byte{}}, logs: &syncbuf.Buffer{}}
	log := slog.New(slog.NewTextHandler(h.logs, nil))
	callee := load(t, e, g, &host.Env{Service: g.Service, Log: log})
	env := &host.Env{
		Service: g.Service,
		Log:     log,
		Grants:  host.Grants{Publish: []string{g.EventType}, Subscribe: []string{g.EventType}, KV: true, Calls: []string{g.Service}},
		KV:      h.kv,
		Call:    h.invokeCallee(callee),
	}
	h.m = load(t, e, g, env)
	h.noKV = load(t, e, g, &host.Env{Service: g.Service, Log: log})
	return h
}

// invokeCallee runs a call on callee as the mesh client would: the route
// is the method and path (the guests' routes have no wildcards).
func (h *harness) invokeCallee(callee *runtime.Module) host.Caller {
	return func(ctx context.Context, call *host.ServiceCall, resp *abi.Response) error {
		h.mu.Lock()
		h.called = append(h.called, *call)
		h.mu.Unlock()
		req := *call.Request
		req.Route = append(append(append([]byte(nil), req.Method...), ' '), req.Path...)
		c := &runtime.Call{Input: req.Append(nil), Data: &host.Invocation{
			RequestID: string(req.RequestID), TraceParent: string(req.TraceParent), Depth: call.Depth}}
		if err := callee.Invoke(ctx, runtime.EntryHTTP, c); err != nil {
			return err
		}
		if c.Code != abi.CodeOK {
			return fmt.Errorf("callee failed (%s)", c.Code)
		}
		return resp.Decode(c.Output)
	}
}

// answer is one request's result.
type answer struct {
	err    error
	code   abi.Code
	status uint32
	ctype  string
	body   string
	inv    *host.Invocation
}

// request runs "METHOD {p}/path" on m.
func (h *harness) request(m *runtime.Module, route, body string) answer {
	method, path, _ := strings.Cut(route, " ")
	path = h.g.Prefix + path
	route = method + " " + path
	req := abi.Request{Method: []byte(method), Path: []byte(path), Route: []byte(route), Body: []byte(body), RequestID: []byte("req-1")}
	inv := &host.Invocation{RequestID: "req-1"}
	c := &runtime.Call{Input: req.Append(nil), Data: inv}
	a := answer{inv: inv}
	if a.err = m.Invoke(context.Background(), runtime.EntryHTTP, c); a.err != nil {
		return a
	}
	if a.code = c.Code; a.code != abi.CodeOK {
		a.body = string(c.Output)
		return a
	}
	var resp abi.Response
	if err := resp.Decode(c.Output); err != nil {
		a.err = fmt.Errorf("the response does not decode: %w", err)
		return a
	}
	a.status, a.body = resp.Status, string(resp.Body)
	for _, p := range resp.Headers {
		if strings.EqualFold(string(p.Key), "content-type") {
			a.ctype = string(p.Value)
		}
	}
	return a
}

// String is the answer and its effects, in one line.
func (a answer) String() string {
	var b strings.Builder
	switch {
	case errors.Is(a.err, runtime.ErrTrap):
		b.WriteString("trap")
	case a.err != nil:
		fmt.Fprintf(&b, "error %v", a.err)
	case a.code != abi.CodeOK:
		fmt.Fprintf(&b, "code %d %q", a.code, a.body)
	default:
		fmt.Fprintf(&b, "%d %s %q", a.status, a.ctype, a.body)
	}
	b.WriteString(effects(a.inv))
	return b.String()
}

// effects lists an invocation's buffered writes and events.
func effects(inv *host.Invocation) string {
	var b strings.Builder
	for _, w := range inv.Writes {
		fmt.Fprintf(&b, " write %s=%q", w.Key, w.Value)
	}
	for _, e := range inv.Events {
		fmt.Fprintf(&b, " event %s %q", e.Type, e.Data)
	}
	return b.String()
}

// normalise writes the guest's own names as placeholders.
func (h *harness) normalise(s string) string {
	return strings.NewReplacer(h.g.Prefix+"/", "{p}/", h.g.EventType, "{E}", h.g.Service, "{S}").Replace(s)
}

// big is a JSON string larger than every SDK's first buffer (and within
// the WAT guest's 32 KiB): reading it back takes a grow and retry.
var big = `"` + strings.Repeat("grow-and-retry ", 1300) + `"`

// A case runs on a harness and returns its normalised result.
type testCase struct {
	name string
	want string
	run  func(t *testing.T, h *harness) string
}

var cases = []testCase{
	{"declaration", `routes GET {p}/badptr, GET {p}/call-badptr, GET {p}/call-denied, GET {p}/call-whoami, GET {p}/denied, GET {p}/event, GET {p}/kv, GET {p}/trap, GET {p}/whoami internal, POST {p}/call, POST {p}/echo, POST {p}/kv, POST {p}/publish; subscriptions [{E}]; publishes [{E}]`,
		func(t *testing.T, h *harness) string {
			var d abi.Declaration
			if err := json.Unmarshal(h.m.Declaration(), &d); err != nil {
				t.Fatalf("declaration %s: %v", h.m.Declaration(), err)
			}
			var routes []string
			for _, r := range d.Routes {
				if r.Path == h.g.Prefix+"/work" {
					continue // the benchmark's route, not in every guest
				}
				s := r.Method + " " + r.Path
				if r.Internal {
					s += " internal"
				}
				routes = append(routes, s)
			}
			slices.Sort(routes)
			var subs []string
			for _, s := range d.Subscriptions {
				subs = append(subs, s.Type)
			}
			return fmt.Sprintf("routes %s; subscriptions %v; publishes %v", strings.Join(routes, ", "), subs, d.Publishes)
		}},
	{"echo: input and output", `200 application/json "{\"hello\":\"guest\"}"`,
		func(t *testing.T, h *harness) string {
			return h.request(h.m, "POST /echo", `{"hello":"guest"}`).String()
		}},
	{"kv: absent key", `404 application/json "{}"`,
		func(t *testing.T, h *harness) string { return h.request(h.m, "GET /kv", "").String() }},
	{"kv: read your write, buffered", `200 application/json "{\"n\":1}" write value="{\"n\":1}"`,
		func(t *testing.T, h *harness) string {
			a := h.request(h.m, "POST /kv", `{"n":1}`)
			if _, err := h.kv.Get(context.Background(), "value"); err == nil {
				t.Fatal("the write reached the store before the call succeeded")
			}
			return a.String()
		}},
	{"kv: read from the store", `200 application/json "\"stored\""`,
		func(t *testing.T, h *harness) string {
			h.kv.set("value", []byte(`"stored"`))
			defer h.kv.set("value", nil)
			return h.request(h.m, "GET /kv", "").String()
		}},
	{"kv: grow and retry", "200 application/json big write value=big",
		func(t *testing.T, h *harness) string {
			return strings.ReplaceAll(h.request(h.m, "POST /kv", big).String(), fmt.Sprintf("%q", big), "big")
		}},
	{"publish: buffered", `202 application/json "{}" event {E} "{\"x\":1}"`,
		func(t *testing.T, h *harness) string { return h.request(h.m, "POST /publish", `{"x":1}`).String() }},
	{"publish: data that is not JSON is refused", `500 application/json "event data is not valid JSON"`,
		func(t *testing.T, h *harness) string { return h.request(h.m, "POST /publish", `not json`).String() }},
	{"bad pointer: an error code, not a crash", `200 application/json "buffer outside guest memory"`,
		func(t *testing.T, h *harness) string { return h.request(h.m, "GET /badptr", "").String() }},
	{"denied: an ungranted topic", `403 application/json "service {S} is not granted publishing \"NOT_GRANTED\""`,
		func(t *testing.T, h *harness) string { return h.request(h.m, "GET /denied", "").String() }},
	{"denied: no kv grant", `500 application/json "service {S} is not granted a key-value store (grants.kv)"`,
		func(t *testing.T, h *harness) string { return h.request(h.noKV, "POST /kv", `1`).String() }},
	{"trap: fails one call, the next is served", `trap; then 200 application/json "{}"`,
		func(t *testing.T, h *harness) string {
			a := h.request(h.m, "GET /trap", "")
			return a.String() + "; then " + h.request(h.m, "POST /echo", `{}`).String()
		}},
	{"event: delivered, stored, logged", `ok; write last-event="{\"seen\":true}"; logged`,
		func(t *testing.T, h *harness) string {
			ev := abi.Event{ID: []byte("e1"), Source: []byte(h.g.Service), Type: []byte(h.g.EventType), Attempt: 1, Data: []byte(`{"seen":true}`)}
			inv := &host.Invocation{}
			c := &runtime.Call{Input: ev.Append(nil), Data: inv}
			if err := h.m.Invoke(context.Background(), runtime.EntryEvent, c); err != nil || c.Code != abi.CodeOK {
				return fmt.Sprintf("err=%v code=%v %q", err, c.Code, c.Output)
			}
			s := "ok;" + effects(inv)
			if strings.Contains(h.logs.String(), "conformance guest handled an event") {
				s += "; logged"
			}
			return s
		}},
	{"call: the callee's answer, called once", `200 application/json "{\"hello\":\"callee\"}"; 1 call {S}->{S} depth 1 retryable=false`,
		func(t *testing.T, h *harness) string {
			before := h.calls()
			a := h.request(h.m, "POST /call", `{"hello":"callee"}`)
			calls := h.calls()[len(before):]
			s := a.String() + fmt.Sprintf("; %d call", len(calls))
			for _, c := range calls {
				s += fmt.Sprintf(" %s->%s depth %d retryable=%v", c.Caller, c.Callee, c.Depth, c.Retryable)
			}
			return s
		}},
	{"call: the callee sees the caller as consumer", `200 application/json "service:{S}"`,
		func(t *testing.T, h *harness) string { return h.request(h.m, "GET /call-whoami", "").String() }},
	{"call: an ungranted callee is denied", `403 application/json "service {S} is not granted calling \"not-granted\" (grants.calls)"`,
		func(t *testing.T, h *harness) string { return h.request(h.m, "GET /call-denied", "").String() }},
	{"call: a bad request pointer is an error code", `200 application/json "call request outside guest memory"`,
		func(t *testing.T, h *harness) string { return h.request(h.m, "GET /call-badptr", "").String() }},
}

func (h *harness) calls() []host.ServiceCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.called)
}

// Run runs every case on g, checks each against the expected result and
// returns what it observed.
func Run(t *testing.T, g Guest) []Outcome {
	t.Helper()
	h := newHarness(t, g)
	var out []Outcome
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := h.normalise(c.run(t, h))
			if got != c.want {
				t.Errorf("%s guest:\n got %s\nwant %s", g.Language, got, c.want)
			}
			out = append(out, Outcome{c.name, got})
		})
	}
	return out
}
