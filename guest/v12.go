package guest

import (
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"unsafe"

	"github.com/meshd/meshd/abi"
)

// hostV12 is the host functions added in ABI v1.2. They are imported only
// by guests that call Call or Get; a host before v1.2 links neither.
type hostV12 interface {
	call(service string, req []byte, flags int32) int32
	callResult(buf []byte) int32
}

// CallRequest is a request to a route of another service (Call).
//
// The host adds what the callee must be able to trust: the consumer
// ("service:" and the calling service's name), the request id of the
// current request and a child span of its trace context. Headers
// x-request-id, traceparent and tracestate are therefore refused.
type CallRequest struct {
	Method string // "GET", "POST", ...; empty means GET
	Path   string // "/users/42"; a "?query" on it moves to Query
	Query  string // raw query without '?': "full=1"
	Body   []byte // JSON or empty
	// Retryable lets the host retry the call (on a timeout or an
	// unavailable callee, within the current deadline) although its method
	// is not idempotent. Set it when the callee's route is safe to run
	// twice, for example because it dedupes on the request id. GET, HEAD,
	// PUT and DELETE are retryable without it.
	Retryable bool

	headers []field
}

// SetHeader sets a request header, replacing any value it had. Names are
// sent in lower case.
func (r *CallRequest) SetHeader(name, value string) {
	name = strings.ToLower(name)
	for i := range r.headers {
		if r.headers[i].name == name {
			r.headers[i].value = value
			return
		}
	}
	r.headers = append(r.headers, field{name, value})
}

// AddHeader adds a value to a request header. Names are sent in lower case.
func (r *CallRequest) AddHeader(name, value string) {
	r.headers = append(r.headers, field{strings.ToLower(name), value})
}

// appendTo encodes r (abi.CallRequest) onto dst.
func (r *CallRequest) appendTo(dst []byte) []byte {
	method, path, query := r.Method, r.Path, r.Query
	if method == "" {
		method = "GET"
	}
	if query == "" {
		// A loop, not strings.Cut: in a Go guest Cut's calls cost 90 ns,
		// a tenth of a call's own work.
		for i := 0; i < len(path); i++ {
			if path[i] == '?' {
				path, query = path[:i], path[i+1:]
				break
			}
		}
	}
	dst = abi.AppendString(dst, method)
	dst = abi.AppendString(dst, path)
	dst = abi.AppendString(dst, query)
	dst = abi.AppendU32(dst, uint32(len(r.headers)))
	for _, h := range r.headers {
		dst = abi.AppendString(dst, h.name)
		dst = abi.AppendString(dst, h.value)
	}
	return abi.AppendBytes(dst, r.Body)
}

// CallResponse is another service's answer to a Call. It is the caller's
// to keep.
type CallResponse struct {
	Status int    // 100–599
	Body   []byte // the callee's body

	// hdr is the encoded headers (abi.Response's pairs: a u32 count, then
	// the names and values), read by Header and HeaderValues when asked:
	// a response whose headers nobody reads costs no decoding. It and Body
	// share one buffer, which nothing writes after Call returned (Body's
	// capacity ends where Body does).
	hdr []byte
	// own is the allocation r is part of when Release may reuse it.
	own *smallResponse
}

// Release gives r back to the SDK, which reuses it for a later Call's
// response: neither r nor its Body or header values may be used after it.
// It is optional (a response not released is collected as any value) and
// saves the guest an allocation per Call in a loop of calls, about 1 µs
// in a Go guest, a fifth of a call's cost. Releasing r twice does nothing.
func (r *CallResponse) Release() {
	k := r.own
	*r = CallResponse{} // a use after Release sees an empty response
	if k != nil && len(freeResponses) < maxFreeResponses {
		freeResponses = append(freeResponses, k)
	}
}

// freeResponses holds released small responses for keep to reuse.
var freeResponses []*smallResponse

// maxFreeResponses bounds freeResponses: a guest holds few at once.
const maxFreeResponses = 8

// Header returns the first value of the named response header, or "".
// Names are matched without regard to case.
func (r *CallResponse) Header(name string) string {
	v, _ := r.nextHeader(name, 0)
	return v
}

// HeaderValues calls f for every value of the named response header, in
// order.
func (r *CallResponse) HeaderValues(name string, f func(value string)) {
	for v, next := r.nextHeader(name, 0); next > 0; v, next = r.nextHeader(name, next) {
		f(v)
	}
}

// nextHeader returns the value of the first header named name at or after
// offset from in r.hdr (0: the first), and the offset after it; next is 0
// when there is none. The value is a string over r's buffer: no copy.
func (r *CallResponse) nextHeader(name string, from int) (value string, next int) {
	b := r.hdr
	if from == 0 {
		from = 4 // the count; Call checked the pairs are whole
	}
	for from < len(b) {
		k, after := pairField(b, from)
		v, end := pairField(b, after)
		from = end
		if equalFold(k, name) {
			return v, end
		}
	}
	return "", 0
}

// pairField reads a str of an encoding Call checked (a u32 length and the
// bytes) at off, as a string over b, and the offset after it.
func pairField(b []byte, off int) (string, int) {
	n := int(binary.LittleEndian.Uint32(b[off:]))
	off += 4
	if n == 0 {
		return "", off
	}
	return unsafe.String(&b[off], n), off + n
}

// callReqBuf holds the encoded request of the current Call; smallBuf a
// response of at most its size, until it is copied out.
var (
	callReqBuf []byte
	smallBuf   [smallResponseBytes]byte
)

// smallResponseBytes is the largest encoded response kept in the same
// allocation as its CallResponse (smallResponse): room for a status, a
// content type and a small JSON body. With it a smallResponse is 160
// bytes, a size class of Go's allocator.
const smallResponseBytes = 96

// smallResponse is a CallResponse allocated with its bytes, so that a
// small response costs the guest one allocation instead of two.
type smallResponse struct {
	CallResponse
	inline [smallResponseBytes]byte
}

// Call calls a route of service (the callee's name, as its file is named)
// and returns its response, whatever its status: a 404 or a 500 of the
// callee is a response, not an error. The callee runs its ordinary HTTP
// handler for the route that matches req's method and path (internal
// routes included) and its effects are its own: applied when its handler
// succeeds, even if the current call later fails.
//
// Errors carry the ABI code (*Error; read it with CodeOf, or test with
// errors.Is): ErrDenied when the operator did not grant calling service
// (calls in its <name>.toml), ErrNotFound when there is no such service or
// no route of it matches, ErrInvalid for a malformed request or past
// abi.MaxCallDepth nested calls, ErrTooLarge past a size cap,
// ErrUnavailable when the callee is down, busy or its breaker open,
// ErrTimeout when the current deadline ran out. Needs a host with ABI v1.3.
//
// After a call refused because the callee's circuit breaker is open, Call
// refuses calls to that callee itself, with the same error and without
// asking the host, for as long as the host says the breaker stays open
// but at most a second (v13.go): a refusal then costs a fraction of a
// microsecond.
//
// A call allocates once when its encoded response is at most 96 bytes (a
// status, a content type and a small JSON body): the CallResponse with the
// bytes its Body and headers are read from; twice when larger; not at all
// when a response of an earlier call was released (Release). A failed
// call allocates its *Error, unless it failed exactly as the last failed
// call did: that error is then returned again, so do not modify it.
func Call(service string, req *CallRequest) (*CallResponse, error) {
	raw, err := callRaw(service, req)
	if err != nil {
		return nil, err
	}
	return keep(raw)
}

// keep decodes raw, a response from callRaw, into a CallResponse that
// owns its bytes: a smallResponse holding a copy of raw when raw is
// smallBuf, else one over raw.
func keep(raw []byte) (*CallResponse, error) {
	var r *CallResponse
	var k *smallResponse
	if inSmallBuf(raw) {
		if n := len(freeResponses); n > 0 {
			k, freeResponses[n-1], freeResponses = freeResponses[n-1], nil, freeResponses[:n-1]
		} else {
			k = new(smallResponse)
		}
		raw = k.inline[:copy(k.inline[:], raw)]
		r = &k.CallResponse
	} else {
		r = new(CallResponse)
	}
	if err := decodeCallResponse(raw, r); err != nil {
		return nil, err
	}
	r.own = k
	return r, nil
}

// inSmallBuf reports whether b is held by smallBuf.
func inSmallBuf(b []byte) bool {
	return len(b) > 0 && &b[0] == &smallBuf[0]
}

// callRaw makes the call and returns the encoded response (abi.Response):
// in smallBuf when it fits (valid until the next call), else in a buffer
// of its own.
func callRaw(service string, req *CallRequest) ([]byte, error) {
	h, ok := hostCalls()
	if !ok {
		return nil, &Error{Code: abi.CodeUnavailable, Msg: "call needs ABI v1.2"}
	}
	if len(refusals) > 0 { // v13.go
		if e := refusedLocally(service); e != nil {
			return nil, e
		}
	}
	var flags int32
	if req.Retryable {
		flags |= abi.CallRetryable
	}
	callReqBuf = req.appendTo(callReqBuf[:0])
	n := h.call(service, callReqBuf, flags)
	if n < 0 {
		err := callFailed(n)
		if abi.Code(-n) == abi.CodeUnavailable {
			noteRefusal(service, err)
		}
		return nil, err
	}
	if len(refusals) > 0 {
		forgetRefusal(service)
	}
	// The response is held by the host: read it into a buffer of its
	// size. It fits, so one read does; the loop only follows the
	// grow-and-retry rule to the letter.
	var buf []byte
	if int(n) <= len(smallBuf) {
		buf = smallBuf[:n]
	} else {
		buf = make([]byte, n)
	}
	for {
		l := h.callResult(buf)
		if l < 0 {
			return nil, callFailed(l)
		}
		if int(l) <= len(buf) {
			return buf[:l], nil
		}
		buf = make([]byte, l)
	}
}

// calls caches host.(hostV12), which costs a Go guest about 100 ns, a
// tenth of a call's own work; of is the host it was asked of.
var calls struct {
	of hostAPI
	h  hostV12
	ok bool
}

// hostCalls returns the host's ABI v1.2 functions, and whether it has them.
func hostCalls() (hostV12, bool) {
	if calls.of != host {
		calls.h, calls.ok = host.(hostV12)
		calls.of = host
	}
	return calls.h, calls.ok
}

// lastCallErr is the error of the last failed call, returned again while
// calls fail with the same code and message (a loop of calls to a callee
// whose breaker is open, or that the operator did not grant): a failing
// call then allocates nothing.
var lastCallErr *Error

// callFailed is codeErr for a failed call or call_result: an *Error with
// the code and the host's message (lastCallErr when it is the same).
func callFailed(ret int32) error {
	code := abi.Code(-ret)
	msg := lastErrorBytes()
	if e := lastCallErr; e != nil && e.Code == code && e.Msg == string(msg) {
		return e
	}
	lastCallErr = &Error{Code: code, Msg: string(msg)}
	return lastCallErr
}

// CodeOf returns the ABI code an error of this package carries: abi.CodeOK
// for nil, an *Error's Code (wrapped or not), abi.CodeNotFound for
// ErrNotFound, and abi.CodeInternal for any other error. It is the cheap
// way to branch on a failed Call: errors.As walks reflection, which costs
// a guest about 2 µs where this costs tens of nanoseconds for an
// unwrapped *Error.
func CodeOf(err error) abi.Code {
	switch e := err.(type) {
	case nil:
		return abi.CodeOK
	case *Error:
		return e.Code
	}
	if err == ErrNotFound {
		return abi.CodeNotFound
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if errors.Is(err, ErrNotFound) {
		return abi.CodeNotFound
	}
	return abi.CodeInternal
}

// decodeCallResponse fills resp from buf, an abi.Response encoding,
// without copying: Body and the headers stay in buf. Bytes after the body
// are ignored, as the ABI asks.
func decodeCallResponse(buf []byte, resp *CallResponse) error {
	bad := func(what string) error {
		return &Error{Code: abi.CodeInternal, Msg: "call: decoding the response: " + what}
	}
	if len(buf) < 8 {
		return bad("short status or headers")
	}
	status := binary.LittleEndian.Uint32(buf)
	off := 8
	for range binary.LittleEndian.Uint32(buf[4:]) {
		for range 2 {
			if len(buf)-off < 4 {
				return bad("short header")
			}
			n := uint64(binary.LittleEndian.Uint32(buf[off:]))
			if n > uint64(len(buf)-off-4) {
				return bad("short header")
			}
			off += 4 + int(n)
		}
	}
	if len(buf)-off < 4 {
		return bad("short body")
	}
	n := uint64(binary.LittleEndian.Uint32(buf[off:]))
	if n > uint64(len(buf)-off-4) {
		return bad("short body")
	}
	end := off + 4 + int(n)
	*resp = CallResponse{Status: int(status), Body: buf[off+4 : end : end], hdr: buf[4:off:off]}
	if n == 0 {
		resp.Body = nil
	}
	return nil
}

// Get calls GET path on service and returns the body of a 2xx response; any
// other status is a *StatusError holding the response. It is Call for the
// common read: the body is usually JSON to read with jsonx.Reader.
func Get(service, path string) ([]byte, error) {
	raw, err := callRaw(service, &CallRequest{Method: "GET", Path: path})
	if err != nil {
		return nil, err
	}
	var resp CallResponse
	if err := decodeCallResponse(raw, &resp); err != nil {
		return nil, err
	}
	if resp.Status < 200 || resp.Status > 299 {
		r, err := keep(raw)
		if err != nil {
			return nil, err
		}
		return nil, &StatusError{Service: service, Response: r}
	}
	if inSmallBuf(raw) && resp.Body != nil {
		return append([]byte(nil), resp.Body...), nil
	}
	return resp.Body, nil
}

// StatusError is a call answered with a status Get does not take for
// success.
type StatusError struct {
	Service  string
	Response *CallResponse
}

func (e *StatusError) Error() string {
	return "guest: " + quote(e.Service) + " answered " + strconv.Itoa(e.Response.Status)
}

// CallingService returns the name of the service that called this route
// with Call, or "" when the request came through the gateway.
func (r *Request) CallingService() string {
	if s, ok := strings.CutPrefix(r.Consumer, abi.ConsumerPrefix); ok {
		return s
	}
	return ""
}
