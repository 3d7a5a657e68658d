package gateway

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/internal/traceparent"
)

// FuzzRequestEncoding builds abi.Requests from random methods, paths,
// headers, parameters and bodies with the gateway's request building, and
// checks that abi.Request.Decode gives every field back.
func FuzzRequestEncoding(f *testing.F) {
	f.Add("GET", "/orders/42", "a=1", "X-Thing", "v", "42", []byte(`{"a":1}`), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "rid")
	f.Add("POST", "/", "", "Content-Type", "application/json", "", []byte{}, "", "")
	f.Add("DELETE", "/é/\x00", "q=\xff", "", "\r\n", "a/b/c", []byte{0, 1, 2}, "garbage", strings.Repeat("x", 200))
	f.Fuzz(func(t *testing.T, method, path, query, hkey, hval, param string, body []byte, tp, rid string) {
		h := &routeHandler{
			service:   "svc",
			pattern:   "GET /x/{id}/{rest...}",
			route:     []byte("GET /x/{id}/{rest...}"),
			params:    []string{"id", "rest"},
			paramKeys: [][]byte{[]byte("id"), []byte("rest")},
		}
		r := &http.Request{
			Method: method,
			URL:    &url.URL{Path: path, RawQuery: query},
			Host:   "h.example",
			Header: http.Header{},
		}
		if hkey != "" {
			r.Header[hkey] = []string{hval, hval + "2"}
		}
		r.Header["Traceparent"] = []string{tp}
		r.SetPathValue("id", param)
		r.SetPathValue("rest", param+"/tail")

		x := getExchange()
		defer putExchange(x)
		x.body = append(x.body[:0], body...)
		reqID := rid
		if !validRequestID(reqID) {
			reqID = "generated"
		}
		ensureTraceParent(r)
		h.buildRequest(x, r, reqID, "")

		enc := x.req.Append(nil)
		var got abi.Request
		if err := got.Decode(enc); err != nil {
			t.Fatalf("Decode: %v", err)
		}
		eq := func(field string, a []byte, b string) {
			if string(a) != b {
				t.Fatalf("%s: decoded %q, want %q", field, a, b)
			}
		}
		eq("method", got.Method, method)
		eq("path", got.Path, path)
		eq("query", got.Query, query)
		eq("route", got.Route, "GET /x/{id}/{rest...}")
		eq("request id", got.RequestID, reqID)
		eq("consumer", got.Consumer, "")
		if !bytes.Equal(got.Body, body) {
			t.Fatalf("body: decoded %q, want %q", got.Body, body)
		}
		if traceparent.Valid(tp) {
			eq("traceparent", got.TraceParent, tp)
		} else if !traceparent.Valid(string(got.TraceParent)) {
			t.Fatalf("generated traceparent %q is not valid", got.TraceParent)
		}
		if len(got.Params) != 2 {
			t.Fatalf("params %q", got.Params)
		}
		eq("param id", got.Params[0].Value, param)
		eq("param rest", got.Params[1].Value, param+"/tail")

		// Headers: host, then every forwarded value, lower-cased.
		want := map[string][]string{"host": {"h.example"}}
		if hkey != "" && !skipRequestHeader(hkey, r) {
			k := asciiLower(hkey)
			want[k] = append(want[k], hval, hval+"2")
		}
		gotH := map[string][]string{}
		for _, p := range got.Headers {
			gotH[string(p.Key)] = append(gotH[string(p.Key)], string(p.Value))
		}
		if len(gotH) != len(want) {
			t.Fatalf("headers %q, want %q", gotH, want)
		}
		for k, vs := range want {
			if strings.Join(gotH[k], "\x00") != strings.Join(vs, "\x00") {
				t.Fatalf("header %q: %q, want %q", k, gotH[k], vs)
			}
		}
		// The encoding re-encodes to the same bytes.
		if !bytes.Equal(got.Append(nil), enc) {
			t.Fatal("re-encoding differs")
		}
	})
}

// asciiLower lower-cases ASCII letters only, as header names are ASCII
// tokens and other bytes pass unchanged.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
