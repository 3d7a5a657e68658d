package guest

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/abi"
)

// fakeHost is an in-memory host for tests.
type fakeHost struct {
	input     []byte
	output    []byte
	lastErr   string
	kv        map[string][]byte
	published []string
	logs      []string
	services  map[string]string // name -> discover JSON
	inputCaps []int             // the buffer capacities input_read saw
}

func newFakeHost(t *testing.T) *fakeHost {
	f := &fakeHost{kv: map[string][]byte{}, services: map[string]string{}}
	old := host
	host = f
	t.Cleanup(func() { host = old })
	return f
}

func (f *fakeHost) fail(code abi.Code, msg string) int32 {
	f.lastErr = msg
	return -int32(code)
}

func (f *fakeHost) copyOut(v, buf []byte) int32 {
	if len(v) <= len(buf) {
		copy(buf, v)
	}
	return int32(len(v))
}

func (f *fakeHost) inputRead(buf []byte) int32 {
	f.inputCaps = append(f.inputCaps, len(buf))
	return f.copyOut(f.input, buf)
}
func (f *fakeHost) outputWrite(b []byte) int32 { f.output = append(f.output, b...); return 0 }
func (f *fakeHost) lastError(buf []byte) int32 { return f.copyOut([]byte(f.lastErr), buf) }
func (f *fakeHost) log(level int32, msg string) int32 {
	f.logs = append(f.logs, Level(level).String()+" "+msg)
	return 0
}
func (f *fakeHost) publish(typ string, data []byte) int32 {
	if typ == "DENIED" {
		return f.fail(abi.CodeDenied, "publish DENIED not granted")
	}
	f.published = append(f.published, typ+" "+string(data))
	return 0
}
func (f *fakeHost) kvGet(key string, buf []byte) int32 {
	v, ok := f.kv[key]
	if !ok {
		return f.fail(abi.CodeNotFound, "no key "+key)
	}
	return f.copyOut(v, buf)
}
func (f *fakeHost) kvSet(key string, val []byte) int32 {
	if key == "" {
		return f.fail(abi.CodeInvalid, "empty key")
	}
	f.kv[key] = append([]byte(nil), val...)
	return 0
}
func (f *fakeHost) kvDelete(key string) int32 { delete(f.kv, key); return 0 }
func (f *fakeHost) discover(name string, buf []byte) int32 {
	v, ok := f.services[name]
	if !ok {
		return f.fail(abi.CodeNotFound, "no service "+name)
	}
	return f.copyOut([]byte(v), buf)
}

// resetRegistry clears what init-time registration declared.
func resetRegistry(t *testing.T) {
	t.Cleanup(func() {
		declName, declVersion = "", ""
		routes, subscriptions, publishes = nil, nil, nil
		handlers = map[string]HandlerFunc{}
		subscribers = map[string]EventFunc{}
	})
}

func call(t *testing.T, f *fakeHost, req abi.Request) (abi.Code, abi.Response) {
	t.Helper()
	f.input = req.Append(nil)
	f.output = nil
	code := serveHTTP(int32(len(f.input)))
	var resp abi.Response
	if code == abi.CodeOK {
		if err := resp.Decode(f.output); err != nil {
			t.Fatalf("decoding response: %v", err)
		}
	}
	return code, resp
}

func header(resp abi.Response, name string) string {
	for _, h := range resp.Headers {
		if string(h.Key) == name {
			return string(h.Value)
		}
	}
	return ""
}

func TestDescribe(t *testing.T) {
	resetRegistry(t)
	f := newFakeHost(t)
	Declare("order", "1.0.0")
	Handle("POST /orders", func(*ResponseWriter, *Request) {})
	Handle("GET  /orders/{id}", func(*ResponseWriter, *Request) {})
	Subscribe("PAYMENT_COMPLETED", func(*Event) error { return nil })
	Publishes("ORDER_CREATED", "ORDER_CREATED")
	if code := describe(); code != abi.CodeOK {
		t.Fatalf("code %v: %s", code, f.output)
	}
	var got abi.Declaration
	if err := json.Unmarshal(f.output, &got); err != nil {
		t.Fatal(err)
	}
	want := abi.Declaration{
		Name: "order", Version: "1.0.0",
		Routes:        []abi.Route{{Method: "POST", Path: "/orders"}, {Method: "GET", Path: "/orders/{id}"}},
		Subscriptions: []abi.Subscription{{Type: "PAYMENT_COMPLETED"}},
		Publishes:     []string{"ORDER_CREATED"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestDescribeEmpty(t *testing.T) {
	resetRegistry(t)
	f := newFakeHost(t)
	if code := describe(); code != abi.CodeOK || string(f.output) != "{}" {
		t.Fatalf("code %v output %s", code, f.output)
	}
}

func TestHandleBadPatterns(t *testing.T) {
	resetRegistry(t)
	for _, p := range []string{"", "/orders", "get /x", "GET orders", "GET /a/{id", "GET /a/x{id}", "GET /{a...}/b", "GET /{1x}", "GET /a b"} {
		t.Run(p, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatalf("Handle(%q) did not panic", p)
				}
			}()
			Handle(p, func(*ResponseWriter, *Request) {})
		})
	}
	for _, p := range []string{"GET /", "GET /files/{path...}", "DELETE /a/{id}/b/{$}", "GET /a/{x}/{y}"} {
		Handle(p, func(*ResponseWriter, *Request) {})
	}
	defer func() {
		if recover() == nil {
			t.Fatal("duplicate route did not panic")
		}
	}()
	Handle("GET /", func(*ResponseWriter, *Request) {})
}

func TestServeHTTP(t *testing.T) {
	resetRegistry(t)
	f := newFakeHost(t)
	var seen Request
	Handle("GET /orders/{id}", func(w *ResponseWriter, r *Request) {
		seen = *r
		seen.Body = append([]byte(nil), r.Body...)
		if r.PathValue("id") != "42" || r.PathValue("nope") != "" {
			t.Errorf("PathValue %q", r.PathValue("id"))
		}
		if r.Header("X-Custom") != "a" || r.Header("missing") != "" {
			t.Errorf("Header %q", r.Header("X-Custom"))
		}
		var all []string
		r.HeaderValues("x-custom", func(v string) { all = append(all, v) })
		if strings.Join(all, ",") != "a,b" {
			t.Errorf("HeaderValues %v", all)
		}
		if r.QueryValue("limit") != "10" || r.QueryValue("q") != "a b/c" || r.QueryValue("none") != "" {
			t.Errorf("QueryValue %q %q", r.QueryValue("limit"), r.QueryValue("q"))
		}
		w.SetHeader("X-Out", "1")
		w.SetHeader("x-out", "2")
		w.JSON(200, []byte(`{"id":"42"}`))
		w.WriteHeader(500) // ignored: the status is already written
	})
	req := abi.Request{
		Method: []byte("GET"), Path: []byte("/orders/42"), Query: []byte("limit=10&q=a+b%2Fc"),
		Route:    []byte("GET /orders/{id}"),
		Params:   []abi.Pair{{Key: []byte("id"), Value: []byte("42")}},
		Headers:  []abi.Pair{{Key: []byte("x-custom"), Value: []byte("a")}, {Key: []byte("x-custom"), Value: []byte("b")}},
		Consumer: []byte("demo"), RequestID: []byte("rid-1"), TraceParent: []byte("00-t-s-01"),
		Body: []byte(`{"x":1}`),
	}
	code, resp := call(t, f, req)
	if code != abi.CodeOK || resp.Status != 200 || string(resp.Body) != `{"id":"42"}` {
		t.Fatalf("code %v resp %d %s", code, resp.Status, resp.Body)
	}
	if header(resp, "content-type") != "application/json" || header(resp, "X-Out") != "2" || len(resp.Headers) != 2 {
		t.Fatalf("headers %v", resp.Headers)
	}
	if seen.Method != "GET" || seen.Path != "/orders/42" || seen.Route != "GET /orders/{id}" || seen.Consumer != "demo" ||
		seen.RequestID != "rid-1" || seen.TraceParent != "00-t-s-01" || string(seen.Body) != `{"x":1}` {
		t.Fatalf("request %+v", seen)
	}
	// The input buffer is kept: a second call of the same size reads at once.
	f.inputCaps = nil
	call(t, f, req)
	if len(f.inputCaps) != 1 {
		t.Fatalf("input_read called %d times", len(f.inputCaps))
	}
}

func TestServeHTTPDefaultsAndErrors(t *testing.T) {
	resetRegistry(t)
	f := newFakeHost(t)
	Handle("POST /empty", func(w *ResponseWriter, r *Request) {})
	Handle("POST /panic", func(w *ResponseWriter, r *Request) { panic("boom") })
	Handle("POST /nilmap", func(w *ResponseWriter, r *Request) {
		var m map[string]int
		//lint:ignore SA5000 the handler panics on purpose: a runtime error is recovered like any panic
		m["x"] = 1
	})
	Handle("POST /fail", func(w *ResponseWriter, r *Request) {
		w.JSON(201, []byte("{}"))
		w.Fail(errors.New("kv down"))
	})
	Handle("POST /problem", func(w *ResponseWriter, r *Request) {
		w.Problem(400, "invalid order", "2 problems", "user_id is required", "items[0].name is required")
	})

	code, resp := call(t, f, abi.Request{Method: []byte("POST"), Route: []byte("POST /empty")})
	if code != abi.CodeOK || resp.Status != 200 || len(resp.Body) != 0 {
		t.Fatalf("empty: %v %d %s", code, resp.Status, resp.Body)
	}

	code, resp = call(t, f, abi.Request{Method: []byte("GET"), Route: []byte("GET /nope")})
	if code != abi.CodeOK || resp.Status != 404 || header(resp, "content-type") != "application/problem+json" {
		t.Fatalf("unknown route: %v %d", code, resp.Status)
	}

	code, _ = call(t, f, abi.Request{Route: []byte("POST /panic")})
	if code == abi.CodeOK || string(f.output) != "http handler panicked: boom" {
		t.Fatalf("panic: %v %q", code, f.output)
	}
	code, _ = call(t, f, abi.Request{Route: []byte("POST /nilmap")})
	if code == abi.CodeOK || !strings.Contains(string(f.output), "nil map") {
		t.Fatalf("runtime panic: %v %q", code, f.output)
	}

	code, _ = call(t, f, abi.Request{Route: []byte("POST /fail")})
	if code == abi.CodeOK || string(f.output) != "kv down" {
		t.Fatalf("fail: %v %q", code, f.output)
	}

	code, resp = call(t, f, abi.Request{Route: []byte("POST /problem")})
	if code != abi.CodeOK || resp.Status != 400 {
		t.Fatalf("problem: %v %d", code, resp.Status)
	}
	var p struct {
		Type, Title, Detail string
		Status              int
		Errors              []string
	}
	if err := json.Unmarshal(resp.Body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Type != "about:blank" || p.Title != "invalid order" || p.Status != 400 || p.Detail != "2 problems" || len(p.Errors) != 2 {
		t.Fatalf("problem %+v", p)
	}

	// A truncated request is refused without running a handler.
	f.input = []byte{1, 0}
	f.output = nil
	if code := serveHTTP(2); code == abi.CodeOK {
		t.Fatal("truncated request accepted")
	}
}

func TestServeHTTPGrowsInput(t *testing.T) {
	resetRegistry(t)
	f := newFakeHost(t)
	var got int
	Handle("POST /big", func(w *ResponseWriter, r *Request) { got = len(r.Body) })
	big := make([]byte, 100000)
	req := abi.Request{Route: []byte("POST /big"), Body: big}
	f.input = req.Append(nil)
	// Announce less than the real input: the SDK must grow and retry.
	if code := serveHTTP(10); code != abi.CodeOK || got != len(big) {
		t.Fatalf("code %v body %d", code, got)
	}
}

func TestServeEvent(t *testing.T) {
	resetRegistry(t)
	f := newFakeHost(t)
	var seen Event
	Subscribe("PAYMENT_COMPLETED", func(e *Event) error {
		seen = *e
		seen.Data = append([]byte(nil), e.Data...)
		if string(e.Data) == "fail" {
			return errors.New("cannot handle")
		}
		if string(e.Data) == "panic" {
			panic(errors.New("kaboom"))
		}
		return nil
	})
	ev := abi.Event{ID: []byte("ev1"), Source: []byte("payment"), Type: []byte("PAYMENT_COMPLETED"), Time: []byte("2026-01-01T00:00:00Z"),
		DataContentType: []byte("application/json"), TraceParent: []byte("tp"), Attempt: 2, Data: []byte(`{"a":1}`)}
	run := func(data string) abi.Code {
		ev.Data = []byte(data)
		f.input = ev.Append(nil)
		f.output = nil
		return serveEvent(int32(len(f.input)))
	}
	if code := run(`{"a":1}`); code != abi.CodeOK || len(f.output) != 0 {
		t.Fatalf("code %v output %q", code, f.output)
	}
	if seen.ID != "ev1" || seen.Source != "payment" || seen.Type != "PAYMENT_COMPLETED" || seen.Time != "2026-01-01T00:00:00Z" ||
		seen.DataContentType != "application/json" || seen.TraceParent != "tp" || seen.Attempt != 2 || string(seen.Data) != `{"a":1}` {
		t.Fatalf("event %+v", seen)
	}
	if code := run("fail"); code == abi.CodeOK || string(f.output) != "cannot handle" {
		t.Fatalf("error: %v %q", code, f.output)
	}
	if code := run("panic"); code == abi.CodeOK || string(f.output) != "event handler panicked: kaboom" {
		t.Fatalf("panic: %v %q", code, f.output)
	}
	ev.Type = []byte("OTHER")
	if code := run("x"); code == abi.CodeOK {
		t.Fatal("unknown type acknowledged")
	}
}

func TestKVAndPublish(t *testing.T) {
	f := newFakeHost(t)
	if _, err := KVGet("k"); err != ErrNotFound {
		t.Fatalf("KVGet missing: %v", err)
	}
	big := strings.Repeat("v", 5000) // larger than the first buffer
	if err := KVSet("k", []byte(big)); err != nil {
		t.Fatal(err)
	}
	v, err := KVGet("k")
	if err != nil || string(v) != big {
		t.Fatalf("KVGet: %v %d", err, len(v))
	}
	if err := KVSet("k2", []byte("small")); err != nil {
		t.Fatal(err)
	}
	w, _ := KVGet("k2")
	if string(v) != big || string(w) != "small" {
		t.Fatal("KVGet result aliases the shared buffer")
	}
	if err := KVDelete("k"); err != nil {
		t.Fatal(err)
	}
	if _, err := KVGet("k"); err != ErrNotFound {
		t.Fatalf("after delete: %v", err)
	}
	err = KVSet("", nil)
	var e *Error
	if !errors.As(err, &e) || e.Code != abi.CodeInvalid || e.Msg != "empty key" || err.Error() != "guest: invalid argument: empty key" {
		t.Fatalf("KVSet empty key: %v", err)
	}
	if err := Publish("ORDER_CREATED", []byte(`{}`)); err != nil || f.published[0] != "ORDER_CREATED {}" {
		t.Fatalf("publish: %v %v", err, f.published)
	}
	err = Publish("DENIED", nil)
	if !errors.As(err, &e) || e.Code != abi.CodeDenied || !strings.Contains(e.Msg, "not granted") {
		t.Fatalf("publish denied: %v", err)
	}
}

func TestLastErrorGrows(t *testing.T) {
	f := newFakeHost(t)
	f.lastErr = strings.Repeat("x", 1000)
	err := callErr(-int32(abi.CodeInternal))
	if e := (*Error)(nil); !errors.As(err, &e) || e.Msg != f.lastErr {
		t.Fatalf("err %v", err)
	}
}

func TestDiscoverAndLog(t *testing.T) {
	f := newFakeHost(t)
	f.services["payment"] = `{"name":"payment","status":"ready","version":"1.0.0","instances":2,"extra":[1]}`
	info, err := Discover("payment")
	if err != nil || info != (abi.ServiceInfo{Name: "payment", Status: "ready", Version: "1.0.0", Instances: 2}) {
		t.Fatalf("Discover: %+v %v", info, err)
	}
	if _, err := Discover("nope"); err != ErrNotFound {
		t.Fatalf("Discover unknown: %v", err)
	}
	f.services["bad"] = `{"name":`
	if _, err := Discover("bad"); err == nil {
		t.Fatal("bad JSON accepted")
	}
	Log(LevelInfo, "hello")
	Warnf("n=%d", 3)
	if strings.Join(f.logs, "|") != "INFO hello|WARN n=3" {
		t.Fatalf("logs %v", f.logs)
	}
}

func TestStubHost(t *testing.T) {
	_, err := KVGet("k")
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(e.Msg, "only available in wasm") {
		t.Fatalf("stub: %v", err)
	}
}

func BenchmarkServeHTTP(b *testing.B) {
	f := &fakeHost{}
	old := host
	host = f
	defer func() { host = old }()
	handlers["GET /orders/{id}"] = func(w *ResponseWriter, r *Request) {
		jw := w.JSONWriter()
		jw.ObjectStart()
		jw.StringField("id", r.PathValue("id"))
		jw.ObjectEnd()
		w.JSON(200, jw.Bytes())
	}
	defer delete(handlers, "GET /orders/{id}")
	req := abi.Request{Method: []byte("GET"), Path: []byte("/orders/42"), Route: []byte("GET /orders/{id}"),
		Params:  []abi.Pair{{Key: []byte("id"), Value: []byte("42")}},
		Headers: []abi.Pair{{Key: []byte("accept"), Value: []byte("application/json")}}}
	f.input = req.Append(nil)
	b.ReportAllocs()
	for b.Loop() {
		f.output = f.output[:0]
		if serveHTTP(int32(len(f.input))) != abi.CodeOK {
			b.Fatal(string(f.output))
		}
	}
}

// TestPublishDelayedRange: a delay the ABI's i32 of milliseconds cannot
// carry is refused in the SDK, never wrapped into another delay.
func TestPublishDelayedRange(t *testing.T) {
	f := newFakeV11Host(t)
	for _, tc := range []struct {
		delay time.Duration
		ok    bool
	}{
		{0, true}, {time.Hour, true}, {abi.MaxDelay, true},
		{abi.MaxDelay + time.Millisecond, false}, {25 * 24 * time.Hour, false}, {30 * 24 * time.Hour, false}, {-time.Millisecond, false},
	} {
		f.delays = nil
		err := PublishDelayed("T", []byte(`{}`), tc.delay)
		if (err == nil) != tc.ok {
			t.Errorf("delay %s: %v, want accepted %v", tc.delay, err, tc.ok)
		}
		if tc.ok && (len(f.delays) != 1 || int64(f.delays[0]) != tc.delay.Milliseconds()) {
			t.Errorf("delay %s reached the host as %v ms", tc.delay, f.delays)
		}
		if !tc.ok && len(f.delays) != 0 {
			t.Errorf("delay %s refused but reached the host as %v ms", tc.delay, f.delays)
		}
	}
}

type fakeV11Host struct {
	*fakeHost
	delays []int32
}

func (f *fakeV11Host) publishDelayed(typ string, data []byte, ms int32) int32 {
	f.delays = append(f.delays, ms)
	return 0
}

func (f *fakeV11Host) configGet(key string, buf []byte) int32 {
	return f.fail(abi.CodeNotFound, "no config key")
}

func newFakeV11Host(t *testing.T) *fakeV11Host {
	f := &fakeV11Host{fakeHost: &fakeHost{kv: map[string][]byte{}, services: map[string]string{}}}
	old := host
	host = f
	t.Cleanup(func() { host = old })
	return f
}
