package guest

import (
	"errors"
	"testing"

	"github.com/meshd/meshd/abi"
)

// benchCallHost answers every call with one canned result, or fails
// every one with code: the SDK's own cost of a call, without a host.
// Built for wasip1 (GOOS=wasip1 GOARCH=wasm go test -c) and run under a
// wasm runtime, these measure the SDK as a guest runs it.
type benchCallHost struct {
	*fakeHost
	code    abi.Code
	result  []byte
	openFor int64 // call_retry_after's answer
}

func (h *benchCallHost) publishDelayed(string, []byte, int32) int32 { return 0 }
func (h *benchCallHost) configGet(string, []byte) int32             { return h.fail(abi.CodeNotFound, "") }

func (h *benchCallHost) call(string, []byte, int32) int32 {
	if h.code != abi.CodeOK {
		return -int32(h.code)
	}
	return int32(len(h.result))
}

func (h *benchCallHost) callResult(buf []byte) int32 { return h.copyOut(h.result, buf) }

// callRetryAfter answers for an open breaker, when one refuses (open).
func (h *benchCallHost) callRetryAfter() int64 { return h.openFor }

func newBenchCallHost(b testing.TB, code abi.Code) *benchCallHost {
	resp := abi.Response{Status: 200, Headers: []abi.Pair{{Key: []byte("content-type"), Value: []byte("application/json")}},
		Body: []byte(`{}`)}
	h := &benchCallHost{fakeHost: &fakeHost{lastErr: `service caller is not granted calling "ungranted" (grants.calls)`},
		code: code, result: resp.Append(nil)}
	old := host
	host = h
	b.Cleanup(func() { host = old })
	return h
}

var benchSink any

// BenchmarkCall is a Call answered 200 with a small JSON body, its
// response kept (kept) or given back (released).
func BenchmarkCall(b *testing.B) {
	for _, release := range []bool{false, true} {
		name := "kept"
		if release {
			name = "released"
		}
		b.Run(name, func(b *testing.B) {
			newBenchCallHost(b, abi.CodeOK)
			req := &CallRequest{Method: "GET", Path: "/callee/noop"}
			b.ReportAllocs()
			for b.Loop() {
				resp, err := Call("callee", req)
				if err != nil || resp.Status != 200 {
					b.Fatal(resp, err)
				}
				if release {
					resp.Release()
				} else {
					benchSink = resp
				}
			}
		})
	}
}

// BenchmarkCallDenied is a Call the host refuses, its code read with
// CodeOf (codeof) or errors.As (errors-as).
func BenchmarkCallDenied(b *testing.B) {
	newBenchCallHost(b, abi.CodeDenied)
	req := &CallRequest{Method: "GET", Path: "/ungranted/x"}
	b.Run("codeof", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, err := Call("ungranted", req)
			if CodeOf(err) != abi.CodeDenied {
				b.Fatal(err)
			}
		}
	})
	b.Run("errors-as", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, err := Call("ungranted", req)
			var e *Error
			if !errors.As(err, &e) || e.Code != abi.CodeDenied {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCallOpenBreaker is a Call to a callee whose breaker is open,
// which the SDK refuses itself after the host's first refusal said for
// how long (call_retry_after), its code read with CodeOf.
func BenchmarkCallOpenBreaker(b *testing.B) {
	h := newBenchCallHost(b, abi.CodeUnavailable)
	h.openFor = int64(10 * 60 * 1e9)
	b.Cleanup(func() { refusals = nil })
	req := &CallRequest{Method: "GET", Path: "/callee/maybe"}
	b.ReportAllocs()
	for b.Loop() {
		_, err := Call("callee", req)
		if CodeOf(err) != abi.CodeUnavailable {
			b.Fatal(err)
		}
	}
}
