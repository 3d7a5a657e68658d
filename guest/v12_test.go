package guest

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/meshd/meshd/abi"
)

// fakeV12Host answers call with a canned response, held for call_result
// as the real host holds it.
type fakeV12Host struct {
	*fakeHost
	calls      []string          // "service method path?query flags"
	reqs       []abi.CallRequest // decoded, as the host saw them
	resp       abi.Response
	code       abi.Code // when not OK, call fails with it
	result     []byte
	resultCaps []int
	retryAfter int64 // call_retry_after's answer after a failed call
}

func newFakeV12Host(t *testing.T) *fakeV12Host {
	f := &fakeV12Host{fakeHost: &fakeHost{kv: map[string][]byte{}, services: map[string]string{}}}
	old := host
	host = f
	t.Cleanup(func() { host = old })
	return f
}

func (f *fakeV12Host) publishDelayed(string, []byte, int32) int32 { return 0 }
func (f *fakeV12Host) configGet(string, []byte) int32             { return f.fail(abi.CodeNotFound, "") }

func (f *fakeV12Host) call(service string, req []byte, flags int32) int32 {
	var r abi.CallRequest
	if err := r.Decode(append([]byte(nil), req...)); err != nil {
		return f.fail(abi.CodeInvalid, "call request does not decode")
	}
	f.reqs = append(f.reqs, r)
	f.calls = append(f.calls, service+" "+string(r.Method)+" "+string(r.Path)+"?"+string(r.Query)+" "+string(rune('0'+flags)))
	f.result = nil
	if f.code != abi.CodeOK {
		return f.fail(f.code, "call to "+service+" failed")
	}
	f.result = f.resp.Append(nil)
	return int32(len(f.result))
}

func (f *fakeV12Host) callRetryAfter() int64 {
	if f.code != abi.CodeUnavailable {
		return 0
	}
	return f.retryAfter
}

func (f *fakeV12Host) callResult(buf []byte) int32 {
	f.resultCaps = append(f.resultCaps, len(buf))
	if f.result == nil {
		return f.fail(abi.CodeNotFound, "no call result")
	}
	return f.copyOut(f.result, buf)
}

func TestCall(t *testing.T) {
	f := newFakeV12Host(t)
	f.resp = abi.Response{Status: 201, Headers: []abi.Pair{{Key: []byte("content-type"), Value: []byte("application/json")},
		{Key: []byte("x-a"), Value: []byte("1")}, {Key: []byte("x-a"), Value: []byte("2")}}, Body: []byte(`{"id":"7"}`)}
	req := &CallRequest{Method: "POST", Path: "/users?dry=1", Body: []byte(`{"name":"ann"}`), Retryable: true}
	req.SetHeader("Accept", "text/plain")
	req.SetHeader("accept", "application/json")
	req.AddHeader("X-Tag", "a")
	resp, err := Call("user", req)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 1 || f.calls[0] != "user POST /users?dry=1 1" {
		t.Fatalf("calls %q: want the path's query moved to the query field and the retryable flag", f.calls)
	}
	got := f.reqs[0]
	if string(got.Body) != `{"name":"ann"}` || len(got.Headers) != 2 ||
		string(got.Headers[0].Key) != "accept" || string(got.Headers[0].Value) != "application/json" || string(got.Headers[1].Key) != "x-tag" {
		t.Fatalf("request %+v: want lower-case header names, SetHeader replacing", got)
	}
	if resp.Status != 201 || string(resp.Body) != `{"id":"7"}` || resp.Header("Content-Type") != "application/json" {
		t.Fatalf("response %+v", resp)
	}
	var vals []string
	resp.HeaderValues("x-a", func(v string) { vals = append(vals, v) })
	if !reflect.DeepEqual(vals, []string{"1", "2"}) {
		t.Fatalf("x-a values %q", vals)
	}
	// The response is the caller's: a later call does not change it.
	f.resp = abi.Response{Status: 200, Body: []byte(`{"id":"8"}`)}
	if _, err := Call("user", &CallRequest{Path: "/users/8"}); err != nil {
		t.Fatal(err)
	}
	if string(resp.Body) != `{"id":"7"}` || resp.Header("content-type") != "application/json" {
		t.Fatalf("an earlier response changed: %s", resp.Body)
	}
	if f.calls[1] != "user GET /users/8? 0" {
		t.Fatalf("an empty method is GET, not retryable by flag: %q", f.calls[1])
	}
	// call_result was read once per call, into a buffer of the result's size.
	if len(f.resultCaps) != 2 {
		t.Fatalf("call_result read %d times for 2 calls", len(f.resultCaps))
	}
}

func TestCallErrorsCarryTheCode(t *testing.T) {
	f := newFakeV12Host(t)
	for _, tc := range []struct {
		code abi.Code
		is   error
	}{
		{abi.CodeDenied, ErrDenied},
		{abi.CodeNotFound, ErrNotFound},
		{abi.CodeUnavailable, ErrUnavailable},
		{abi.CodeTimeout, ErrTimeout},
		{abi.CodeInvalid, ErrInvalid},
		{abi.CodeTooLarge, ErrTooLarge},
	} {
		f.code = tc.code
		_, err := Call("user", &CallRequest{Path: "/users/1"})
		if !errors.Is(err, tc.is) {
			t.Errorf("code %v: %v is not %v", tc.code, err, tc.is)
		}
		var e *Error
		if !errors.As(err, &e) || e.Code != tc.code || !strings.Contains(e.Msg, "call to user failed") {
			t.Errorf("code %v: %#v, want an *Error with the code and the host's message", tc.code, err)
		}
		if tc.code != abi.CodeDenied && errors.Is(err, ErrDenied) {
			t.Errorf("code %v matches ErrDenied", tc.code)
		}
	}
}

func TestGet(t *testing.T) {
	f := newFakeV12Host(t)
	f.resp = abi.Response{Status: 200, Body: []byte(`{"id":"42"}`)}
	body, err := Get("user", "/users/42")
	if err != nil || string(body) != `{"id":"42"}` || !strings.HasPrefix(f.calls[0], "user GET /users/42") {
		t.Fatalf("%q %v %q", body, err, f.calls)
	}
	f.resp = abi.Response{Status: 404, Body: []byte(`{"title":"Not Found"}`)}
	_, err = Get("user", "/users/43")
	var se *StatusError
	if !errors.As(err, &se) || se.Response.Status != 404 || se.Service != "user" || err.Error() != `guest: "user" answered 404` {
		t.Fatalf("%v, want a *StatusError of 404", err)
	}
}

func TestCallNeedsV12(t *testing.T) {
	newFakeHost(t) // a v1 host: no call import
	if _, err := Call("user", &CallRequest{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("%v, want ErrUnavailable", err)
	}
}

func TestCallingService(t *testing.T) {
	for consumer, want := range map[string]string{"service:order": "order", "demo": "", "": ""} {
		if got := (&Request{Consumer: consumer}).CallingService(); got != want {
			t.Errorf("consumer %q: %q, want %q", consumer, got, want)
		}
	}
}

func TestInternalRouteIsDeclared(t *testing.T) {
	resetRegistry(t)
	f := newFakeHost(t)
	Handle("GET /users/{id}", func(*ResponseWriter, *Request) {}, Internal())
	Handle("POST /users", func(*ResponseWriter, *Request) {})
	if code := describe(); code != abi.CodeOK {
		t.Fatalf("code %v: %s", code, f.output)
	}
	if !strings.Contains(string(f.output), `{"method":"POST","path":"/users"}`) {
		t.Fatalf("a public route must encode as in v1: %s", f.output)
	}
	d, err := abi.ParseDeclaration(f.output)
	if err != nil {
		t.Fatal(err)
	}
	want := []abi.Route{{Method: "GET", Path: "/users/{id}", Internal: true}, {Method: "POST", Path: "/users"}}
	if !reflect.DeepEqual(d.Routes, want) {
		b, _ := json.Marshal(d.Routes)
		t.Fatalf("routes %s", b)
	}
}
