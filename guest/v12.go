package guest

import (
	"strconv"
	"strings"

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
	if p, q, ok := strings.Cut(path, "?"); ok && query == "" {
		path, query = p, q
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

	headers []field
}

// Header returns the first value of the named response header, or "".
// Names are matched without regard to case.
func (r *CallResponse) Header(name string) string {
	for _, h := range r.headers {
		if equalFold(h.name, name) {
			return h.value
		}
	}
	return ""
}

// HeaderValues calls f for every value of the named response header, in
// order.
func (r *CallResponse) HeaderValues(name string, f func(value string)) {
	for _, h := range r.headers {
		if equalFold(h.name, name) {
			f(h.value)
		}
	}
}

// callReqBuf holds the encoded request of the current Call.
var callReqBuf []byte

// Call calls a route of service (the callee's name, as its file is named)
// and returns its response, whatever its status: a 404 or a 500 of the
// callee is a response, not an error. The callee runs its ordinary HTTP
// handler for the route that matches req's method and path (internal
// routes included) and its effects are its own: applied when its handler
// succeeds, even if the current call later fails.
//
// Errors carry the ABI code (*Error; test with errors.Is): ErrDenied when
// the operator did not grant calling service (calls in its <name>.toml),
// ErrNotFound when there is no such service or no route of it matches,
// ErrInvalid for a malformed request or past abi.MaxCallDepth nested calls,
// ErrTooLarge past a size cap, ErrUnavailable when the callee is down,
// busy or its breaker open, ErrTimeout when the current deadline ran out.
// Needs a host with ABI v1.2.
func Call(service string, req *CallRequest) (*CallResponse, error) {
	h, ok := host.(hostV12)
	if !ok {
		return nil, &Error{Code: abi.CodeUnavailable, Msg: "call needs ABI v1.2"}
	}
	var flags int32
	if req.Retryable {
		flags |= abi.CallRetryable
	}
	callReqBuf = req.appendTo(callReqBuf[:0])
	n := h.call(service, callReqBuf, flags)
	if n < 0 {
		return nil, codeErr(n)
	}
	// The response is held by the host: read it into a buffer of its
	// size, which the CallResponse then owns.
	buf, l, err := fill(nil, int(n), h.callResult)
	if err != nil {
		return nil, err
	}
	var dec abi.Response
	if err := dec.Decode(buf[:l]); err != nil {
		return nil, &Error{Code: abi.CodeInternal, Msg: "call: decoding the response: " + err.Error()}
	}
	resp := &CallResponse{Status: int(dec.Status), Body: dec.Body}
	if len(dec.Headers) > 0 {
		str := cutStrings(buf[:l], dec.Body)
		resp.headers = make([]field, 0, len(dec.Headers))
		for _, p := range dec.Headers {
			resp.headers = append(resp.headers, field{str(p.Key), str(p.Value)})
		}
	}
	return resp, nil
}

// Get calls GET path on service and returns the body of a 2xx response; any
// other status is a *StatusError holding the response. It is Call for the
// common read: the body is usually JSON to read with jsonx.Reader.
func Get(service, path string) ([]byte, error) {
	resp, err := Call(service, &CallRequest{Method: "GET", Path: path})
	if err != nil {
		return nil, err
	}
	if resp.Status < 200 || resp.Status > 299 {
		return nil, &StatusError{Service: service, Response: resp}
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
