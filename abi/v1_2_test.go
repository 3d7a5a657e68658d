package abi

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func sampleCallRequest() CallRequest {
	return CallRequest{
		Method: []byte("GET"), Path: []byte("/users/42"), Query: []byte("full=1"),
		Headers: []Pair{{Key: []byte("accept"), Value: []byte("application/json")}},
		Body:    nil,
	}
}

func TestCallRequestRoundTrip(t *testing.T) {
	in := sampleCallRequest()
	in.Body = []byte(`{"a":1}`)
	enc := in.Append(nil)
	var out CallRequest
	if err := out.Decode(enc); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Append(nil), enc) {
		t.Fatal("re-encoding differs")
	}
	if string(out.Method) != "GET" || string(out.Path) != "/users/42" || string(out.Query) != "full=1" ||
		len(out.Headers) != 1 || string(out.Headers[0].Value) != "application/json" || string(out.Body) != `{"a":1}` {
		t.Fatalf("decoded %+v", out)
	}
	if err := out.Decode(append(enc, 9, 9)); err != nil {
		t.Fatalf("trailing bytes (a later version's fields): %v", err)
	}
	for n := 0; n < len(enc); n++ {
		if err := out.Decode(enc[:n]); !errors.Is(err, ErrShort) {
			t.Fatalf("prefix %d: err %v, want ErrShort", n, err)
		}
	}
}

func TestCallRequestCheck(t *testing.T) {
	hdr := func(k, v string) []Pair { return []Pair{{Key: []byte(k), Value: []byte(v)}} }
	many := make([]Pair, MaxCallHeaders+1)
	for i := range many {
		many[i] = Pair{Key: []byte("x-a"), Value: []byte("1")}
	}
	big := []Pair{{Key: []byte("x-a"), Value: bytes.Repeat([]byte("v"), MaxCallHeaderBytes)}}
	for _, tc := range []struct {
		name string
		edit func(r *CallRequest)
		code Code
		want string
	}{
		{"fine", func(*CallRequest) {}, CodeOK, ""},
		{"empty method", func(r *CallRequest) { r.Method = nil }, CodeInvalid, "method"},
		{"lower-case method", func(r *CallRequest) { r.Method = []byte("get") }, CodeInvalid, `"get"`},
		{"long method", func(r *CallRequest) { r.Method = bytes.Repeat([]byte("A"), 17) }, CodeInvalid, "method"},
		{"relative path", func(r *CallRequest) { r.Path = []byte("users") }, CodeInvalid, "must start with"},
		{"path with a query", func(r *CallRequest) { r.Path = []byte("/users?id=1") }, CodeInvalid, "'?'"},
		{"path with a newline", func(r *CallRequest) { r.Path = []byte("/a\nb") }, CodeInvalid, `"/a\nb"`},
		{"long path", func(r *CallRequest) { r.Path = append([]byte("/"), bytes.Repeat([]byte("a"), MaxCallPathBytes)...) }, CodeTooLarge, "pass"},
		{"query with a space", func(r *CallRequest) { r.Query = []byte("a=b c") }, CodeInvalid, "query"},
		{"too many headers", func(r *CallRequest) { r.Headers = many }, CodeTooLarge, "headers, at most"},
		{"header bytes", func(r *CallRequest) { r.Headers = big }, CodeTooLarge, "headers pass"},
		{"upper-case header", func(r *CallRequest) { r.Headers = hdr("Accept", "x") }, CodeInvalid, "lower-case token"},
		{"header value with CR", func(r *CallRequest) { r.Headers = hdr("x-a", "a\r\nb") }, CodeInvalid, "control character"},
		{"request id is the host's", func(r *CallRequest) { r.Headers = hdr("x-request-id", "forged") }, CodeInvalid, "set by the host"},
		{"traceparent is the host's", func(r *CallRequest) { r.Headers = hdr("traceparent", "00-x") }, CodeInvalid, "set by the host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := sampleCallRequest()
			tc.edit(&r)
			code, msg := r.Check()
			if code != tc.code || !strings.Contains(msg, tc.want) {
				t.Fatalf("Check = %v %q, want %v with %q", code, msg, tc.code, tc.want)
			}
			if len(msg) > 256 {
				t.Fatalf("message of %d bytes repeats guest bytes without bound", len(msg))
			}
		})
	}
}

func TestCallFlagsAndMethods(t *testing.T) {
	if !ValidCallFlags(0) || !ValidCallFlags(CallRetryable) || ValidCallFlags(2) || ValidCallFlags(-1) {
		t.Fatal("ValidCallFlags accepts an undefined bit or refuses a defined one")
	}
	for m, want := range map[string]bool{"GET": true, "HEAD": true, "PUT": true, "DELETE": true, "POST": false, "PATCH": false, "get": false} {
		if IdempotentMethod([]byte(m)) != want {
			t.Errorf("IdempotentMethod(%s) = %v", m, !want)
		}
	}
}

func TestInternalRouteIsBackwardCompatible(t *testing.T) {
	// A v1 declaration has no "internal": its routes are public.
	d, err := ParseDeclaration([]byte(`{"routes":[{"method":"GET","path":"/a"},{"method":"GET","path":"/b","internal":true}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if d.Routes[0].Internal || !d.Routes[1].Internal {
		t.Fatalf("routes %+v", d.Routes)
	}
	// A public route encodes exactly as in v1.
	b, _ := json.Marshal(Route{Method: "GET", Path: "/a"})
	if string(b) != `{"method":"GET","path":"/a"}` {
		t.Fatalf("public route encodes as %s", b)
	}
}
