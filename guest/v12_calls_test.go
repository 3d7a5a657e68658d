package guest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/meshd/meshd/abi"
)

func TestCallResponsesSmallAndLarge(t *testing.T) {
	f := newFakeV12Host(t)
	hdr := []abi.Pair{{Key: []byte("content-type"), Value: []byte("application/json")}}
	small := abi.Response{Status: 200, Headers: hdr, Body: []byte(`{"n":1}`)}
	large := abi.Response{Status: 200, Headers: hdr, Body: []byte(`{"s":"` + strings.Repeat("x", 300) + `"}`)}
	if n := len(small.Append(nil)); n > smallResponseBytes {
		t.Fatalf("the small response encodes to %d bytes, past %d", n, smallResponseBytes)
	}
	var got []*CallResponse
	for _, r := range []abi.Response{small, large, small, large} {
		f.resp = r
		resp, err := Call("user", &CallRequest{Path: "/"})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, resp)
	}
	// Each response is its caller's: later calls (which reuse the SDK's
	// buffers) leave it as it was.
	for i, resp := range got {
		want := []abi.Response{small, large, small, large}[i]
		if resp.Status != 200 || !bytes.Equal(resp.Body, want.Body) || resp.Header("Content-Type") != "application/json" {
			t.Errorf("response %d: %d %q %q", i, resp.Status, resp.Body, resp.Header("content-type"))
		}
	}
}

func TestGetOwnsItsBody(t *testing.T) {
	f := newFakeV12Host(t)
	f.resp = abi.Response{Status: 200, Body: []byte(`{"id":"1"}`)}
	first, err := Get("user", "/users/1")
	if err != nil {
		t.Fatal(err)
	}
	f.resp = abi.Response{Status: 200, Body: []byte(`{"id":"2"}`)}
	if _, err := Get("user", "/users/2"); err != nil {
		t.Fatal(err)
	}
	if string(first) != `{"id":"1"}` {
		t.Fatalf("the first body became %q after a second Get", first)
	}
	f.resp = abi.Response{Status: 204}
	if body, err := Get("user", "/users/3"); err != nil || body != nil {
		t.Fatalf("204: %q %v, want no body", body, err)
	}
}

// A loop of calls failing the same way returns one error; another failure
// gets its own, with its message.
func TestCallFailuresShareAnError(t *testing.T) {
	f := newFakeV12Host(t)
	f.code = abi.CodeUnavailable
	var errs []error
	for range 3 {
		_, err := Call("user", &CallRequest{Path: "/"})
		errs = append(errs, err)
	}
	if errs[0] != errs[1] || errs[1] != errs[2] {
		t.Fatalf("three same failures: %p %p %p, want one error", errs[0], errs[1], errs[2])
	}
	f.code = abi.CodeDenied
	_, err := Call("order", &CallRequest{Path: "/"})
	var e *Error
	if err == errs[0] || !errors.As(err, &e) || e.Code != abi.CodeDenied || e.Msg != "call to order failed" {
		t.Fatalf("a different failure: %#v", err)
	}
	if e0 := errs[0].(*Error); e0.Code != abi.CodeUnavailable || e0.Msg != "call to user failed" {
		t.Fatalf("the first failure changed: %#v", e0)
	}
}

func TestCodeOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want abi.Code
	}{
		{nil, abi.CodeOK},
		{&Error{Code: abi.CodeDenied, Msg: "x"}, abi.CodeDenied},
		{ErrTimeout, abi.CodeTimeout},
		{ErrNotFound, abi.CodeNotFound},
		{fmt.Errorf("wrapped: %w", &Error{Code: abi.CodeUnavailable}), abi.CodeUnavailable},
		{fmt.Errorf("wrapped: %w", ErrNotFound), abi.CodeNotFound},
		{errors.New("other"), abi.CodeInternal},
	} {
		if got := CodeOf(tc.err); got != tc.want {
			t.Errorf("CodeOf(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// decodeCallResponse agrees with abi.Response.Decode, and refuses what it
// refuses.
func TestDecodeCallResponse(t *testing.T) {
	full := (&abi.Response{Status: 201, Headers: []abi.Pair{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("b")}},
		Body: []byte(`{}`)}).Append(nil)
	for i := range len(full) {
		var r CallResponse
		if err := decodeCallResponse(full[:i], &r); CodeOf(err) != abi.CodeInternal {
			t.Errorf("cut to %d of %d bytes: %v, want an internal error", i, len(full), err)
		}
	}
	var r CallResponse
	if err := decodeCallResponse(append(full, 9, 9, 9), &r); err != nil {
		t.Fatalf("trailing bytes: %v, want them ignored", err)
	}
	var vals []string
	r.HeaderValues("b", func(v string) { vals = append(vals, v) })
	if r.Status != 201 || string(r.Body) != `{}` || r.Header("A") != "1" || len(vals) != 1 || vals[0] != "" || r.Header("c") != "" {
		t.Fatalf("%+v", r)
	}
	huge := append([]byte(nil), full[:4]...)
	huge = append(huge, 0xff, 0xff, 0xff, 0xff)
	if err := decodeCallResponse(huge, &r); CodeOf(err) != abi.CodeInternal {
		t.Fatalf("a header count past the bytes: %v", err)
	}
}

func FuzzDecodeCallResponse(f *testing.F) {
	f.Add((&abi.Response{Status: 200, Headers: []abi.Pair{{Key: []byte("k"), Value: []byte("v")}}, Body: []byte("{}")}).Append(nil))
	f.Add([]byte{})
	f.Add([]byte{200, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var want abi.Response
		wantErr := want.Decode(b)
		var got CallResponse
		err := decodeCallResponse(b, &got)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("decode %x: %v, abi: %v", b, err, wantErr)
		}
		if err != nil {
			return
		}
		if got.Status != int(want.Status) || !bytes.Equal(got.Body, want.Body) {
			t.Fatalf("decode %x: %d %q, abi: %d %q", b, got.Status, got.Body, want.Status, want.Body)
		}
		for _, h := range want.Headers {
			var wantVals, gotVals []string
			for _, o := range want.Headers {
				if equalFold(string(o.Key), string(h.Key)) {
					wantVals = append(wantVals, string(o.Value))
				}
			}
			got.HeaderValues(string(h.Key), func(v string) { gotVals = append(gotVals, v) })
			if !slices.Equal(gotVals, wantVals) {
				t.Fatalf("decode %x: header %q: %q, abi: %q", b, h.Key, gotVals, wantVals)
			}
		}
	})
}

// A released response is reused by a later Call: a loop of calls that
// releases each response allocates nothing, the reused one carries the new
// call's answer, a released one reads empty, releasing twice does nothing,
// and responses not released stay their callers'.
func TestCallResponseRelease(t *testing.T) {
	if unsafe.Sizeof(smallResponse{}) != 160 {
		t.Fatalf("smallResponse is %d bytes, want 160 (a size class of the allocator)", unsafe.Sizeof(smallResponse{}))
	}
	f := newFakeV12Host(t)
	f.resp = abi.Response{Status: 200, Body: []byte(`{"n":1}`)}
	kept, err := Call("user", &CallRequest{Path: "/"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := Call("user", &CallRequest{Path: "/"})
	if err != nil {
		t.Fatal(err)
	}
	first.Release()
	first.Release()
	if first.Status != 0 || first.Body != nil || len(freeResponses) != 1 {
		t.Fatalf("released: %d %q, %d free", first.Status, first.Body, len(freeResponses))
	}
	f.resp = abi.Response{Status: 201, Body: []byte(`{"n":2}`)}
	second, err := Call("user", &CallRequest{Path: "/"})
	if err != nil {
		t.Fatal(err)
	}
	if second != first || second.Status != 201 || string(second.Body) != `{"n":2}` {
		t.Fatalf("second call: %p %d %q, want the released %p reused", second, second.Status, second.Body, first)
	}
	if kept.Status != 200 || string(kept.Body) != `{"n":1}` {
		t.Fatalf("a response not released became %d %q", kept.Status, kept.Body)
	}
	second.Release()
	newBenchCallHost(t, abi.CodeOK) // a host that allocates nothing itself
	req := &CallRequest{Path: "/"}
	if n := testing.AllocsPerRun(100, func() {
		r, err := Call("user", req)
		if err != nil || r.Status != 200 {
			t.Fatal(r, err)
		}
		r.Release()
	}); n != 0 {
		t.Fatalf("a call whose response is released allocates %v times", n)
	}
}
