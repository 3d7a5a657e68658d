package abi

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func sampleRequest() Request {
	return Request{
		Method: []byte("POST"), Path: []byte("/orders/42"), Query: []byte("a=1"),
		Route:    []byte("POST /orders/{id}"),
		Params:   []Pair{{Key: []byte("id"), Value: []byte("42")}},
		Headers:  []Pair{{Key: []byte("content-type"), Value: []byte("application/json")}, {Key: []byte("x-a"), Value: nil}},
		Consumer: []byte("demo"), RequestID: []byte("rid"), TraceParent: []byte("00-abc-def-01"),
		Body: []byte(`{"a":1}`),
	}
}

func TestRequestRoundTrip(t *testing.T) {
	in := sampleRequest()
	enc := in.Append(nil)
	var out Request
	if err := out.Decode(enc); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Append(nil), enc) {
		t.Fatalf("re-encoding differs")
	}
	if string(out.Params[0].Value) != "42" || string(out.Body) != `{"a":1}` || string(out.Consumer) != "demo" {
		t.Fatalf("decoded %+v", out)
	}
	// Trailing bytes (fields of a later version) are ignored.
	if err := out.Decode(append(enc, 1, 2, 3)); err != nil {
		t.Fatalf("trailing bytes: %v", err)
	}
}

func TestResponseAndEventRoundTrip(t *testing.T) {
	r := Response{Status: 201, Headers: []Pair{{Key: []byte("content-type"), Value: []byte("application/json")}}, Body: []byte("{}")}
	var r2 Response
	if err := r2.Decode(r.Append(nil)); err != nil || r2.Status != 201 || string(r2.Body) != "{}" || len(r2.Headers) != 1 {
		t.Fatalf("response: %v %+v", err, r2)
	}
	e := Event{ID: []byte("id"), Source: []byte("order"), Type: []byte("ORDER_CREATED"), Time: []byte("2026-01-01T00:00:00Z"),
		DataContentType: []byte("application/json"), Attempt: 3, Data: []byte(`{"x":1}`)}
	var e2 Event
	if err := e2.Decode(e.Append(nil)); err != nil {
		t.Fatal(err)
	}
	e2.TraceParent = nil // decoded as an empty, non-nil slice
	if !reflect.DeepEqual(e2.Attempt, uint32(3)) || string(e2.Data) != `{"x":1}` || string(e2.Type) != "ORDER_CREATED" {
		t.Fatalf("event %+v", e2)
	}
}

func TestDecodeTruncated(t *testing.T) {
	in := sampleRequest()
	enc := in.Append(nil)
	for n := 0; n < len(enc); n++ {
		var out Request
		if err := out.Decode(enc[:n]); !errors.Is(err, ErrShort) {
			t.Fatalf("prefix %d: err %v, want ErrShort", n, err)
		}
	}
}

func TestDecodeHugeCount(t *testing.T) {
	// A pairs count far beyond the input must fail without allocating for it.
	b := AppendString(nil, "GET")
	b = AppendString(b, "/")
	b = AppendString(b, "")
	b = AppendString(b, "")
	b = AppendU32(b, 0xFFFFFFFF)
	var r Request
	if err := r.Decode(b); !errors.Is(err, ErrShort) {
		t.Fatalf("err %v", err)
	}
}

func TestCodeString(t *testing.T) {
	if CodeDenied.String() != "denied" || Code(99).String() != "code 99" || Code(-3).String() != "code -3" {
		t.Fatal(CodeDenied.String(), Code(99).String())
	}
}

// FuzzDecode feeds arbitrary bytes to every decoder: none may panic, and
// whatever decodes must re-encode to a prefix of the input.
func FuzzDecode(f *testing.F) {
	r := sampleRequest()
	f.Add(r.Append(nil))
	f.Add((&Response{Status: 200, Body: []byte("x")}).Append(nil))
	f.Add((&Event{ID: []byte("i"), Data: []byte("d")}).Append(nil))
	f.Add([]byte{})
	cr := sampleCallRequest()
	f.Add(cr.Append(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var rq Request
		if rq.Decode(b) == nil && !bytes.HasPrefix(b, rq.Append(nil)) {
			t.Fatal("request re-encoding is not a prefix of the input")
		}
		var rs Response
		if rs.Decode(b) == nil && !bytes.HasPrefix(b, rs.Append(nil)) {
			t.Fatal("response re-encoding is not a prefix of the input")
		}
		var ev Event
		if ev.Decode(b) == nil && !bytes.HasPrefix(b, ev.Append(nil)) {
			t.Fatal("event re-encoding is not a prefix of the input")
		}
		var call CallRequest
		if call.Decode(b) == nil {
			if !bytes.HasPrefix(b, call.Append(nil)) {
				t.Fatal("call request re-encoding is not a prefix of the input")
			}
			// Whatever a guest hands FnCall, the check answers a code
			// and a bounded message without panicking.
			if code, msg := call.Check(); (code == CodeOK) != (msg == "") || len(msg) > 512 {
				t.Fatalf("Check = %v, %q", code, msg)
			}
		}
	})
}
