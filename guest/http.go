package guest

import (
	"errors"
	"strconv"
	"strings"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/guest/jsonx"
)

// Request is an HTTP request the gateway routed to the service.
//
// The SDK reuses the Request and its Body for the next call: both are valid
// only until the handler returns. The strings may be kept.
type Request struct {
	Method      string // "POST"
	Path        string // "/orders/42"
	Query       string // raw query without '?': "limit=10"
	Route       string // the matched pattern as declared: "GET /orders/{id}"
	Consumer    string // the authenticated caller, empty when anonymous
	RequestID   string // the request's X-Request-Id
	TraceParent string // W3C trace context
	Body        []byte // the body; JSON or empty

	params  []field
	headers []field
	dec     abi.Request
}

var errFailed = errors.New("guest: handler failed")

type field struct{ name, value string }

// PathValue returns the value of the route wildcard name ("id" in
// "GET /orders/{id}"), or "".
func (r *Request) PathValue(name string) string {
	for _, p := range r.params {
		if p.name == name {
			return p.value
		}
	}
	return ""
}

// Header returns the first value of the named header, or "". Names are
// matched without regard to case.
func (r *Request) Header(name string) string {
	for _, h := range r.headers {
		if equalFold(h.name, name) {
			return h.value
		}
	}
	return ""
}

// HeaderValues calls f for every value of the named header, in order.
func (r *Request) HeaderValues(name string, f func(value string)) {
	for _, h := range r.headers {
		if equalFold(h.name, name) {
			f(h.value)
		}
	}
}

// QueryValue returns the first value of the query parameter name, unescaped,
// or "".
func (r *Request) QueryValue(name string) string {
	q := r.Query
	for q != "" {
		var part string
		part, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(part, "=")
		if k == name || (strings.ContainsAny(k, "%+") && unescape(k) == name) {
			if strings.ContainsAny(v, "%+") {
				return unescape(v)
			}
			return v
		}
	}
	return ""
}

// unescape decodes a query component: '+' is a space, %XX a byte. A bad
// escape is kept as is.
func unescape(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b = append(b, ' ')
		case c == '%' && i+2 < len(s) && unhex(s[i+1]) >= 0 && unhex(s[i+2]) >= 0:
			b = append(b, byte(unhex(s[i+1])<<4|unhex(s[i+2])))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if ca >= 'A' && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if cb >= 'A' && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}

// decode fills r from an encoded abi.Request held in in. All strings are
// cut from one copy of the bytes before the body; Body aliases in.
func (r *Request) decode(in []byte) error {
	d := &r.dec
	if err := d.Decode(in); err != nil {
		return err
	}
	str := cutStrings(in, d.Body)
	r.Method = str(d.Method)
	r.Path = str(d.Path)
	r.Query = str(d.Query)
	r.Route = str(d.Route)
	r.Consumer = str(d.Consumer)
	r.RequestID = str(d.RequestID)
	r.TraceParent = str(d.TraceParent)
	r.Body = d.Body
	r.params = r.params[:0]
	for _, p := range d.Params {
		r.params = append(r.params, field{str(p.Key), str(p.Value)})
	}
	r.headers = r.headers[:0]
	for _, h := range d.Headers {
		r.headers = append(r.headers, field{str(h.Key), str(h.Value)})
	}
	return nil
}

// ResponseWriter builds the response to a request. A handler that writes no
// status answers 200.
//
// The SDK reuses the ResponseWriter for the next call; do not keep it.
type ResponseWriter struct {
	status  int
	headers []field
	body    []byte
	json    jsonx.Writer
	failed  error
}

func (w *ResponseWriter) reset() {
	w.status = 0
	w.headers = w.headers[:0]
	w.body = w.body[:0]
	w.failed = nil
}

// Fail makes the call fail with err instead of answering: the host
// discards the call's effects (events published, keys written) and the
// client gets a 500 problem. Use it when a host call fails halfway through
// a change, so no partial change is applied. What was written is dropped.
func (w *ResponseWriter) Fail(err error) {
	if w.failed == nil {
		if err == nil {
			err = errFailed
		}
		w.failed = err
	}
}

// SetHeader sets a response header, replacing any value it had.
func (w *ResponseWriter) SetHeader(name, value string) {
	for i := range w.headers {
		if equalFold(w.headers[i].name, name) {
			w.headers[i].value = value
			return
		}
	}
	w.AddHeader(name, value)
}

// AddHeader adds a value to a response header.
func (w *ResponseWriter) AddHeader(name, value string) {
	w.headers = append(w.headers, field{name, value})
}

// WriteHeader sets the status code (100–599). Only the first call counts.
func (w *ResponseWriter) WriteHeader(status int) {
	if w.status == 0 {
		if status < 100 || status > 599 {
			panic("guest: WriteHeader: invalid status " + strconv.Itoa(status))
		}
		w.status = status
	}
}

// Status returns the status written so far, or 0.
func (w *ResponseWriter) Status() int { return w.status }

// Write appends b to the body.
func (w *ResponseWriter) Write(b []byte) (int, error) {
	w.body = append(w.body, b...)
	return len(b), nil
}

// WriteString appends s to the body.
func (w *ResponseWriter) WriteString(s string) (int, error) {
	w.body = append(w.body, s...)
	return len(s), nil
}

// JSON answers status with body as application/json.
func (w *ResponseWriter) JSON(status int, body []byte) {
	w.SetHeader("content-type", "application/json")
	w.WriteHeader(status)
	w.body = append(w.body, body...)
}

// JSONWriter returns a jsonx.Writer, emptied, for building a body without
// allocating; pass its Bytes to JSON. It is reused between calls.
func (w *ResponseWriter) JSONWriter() *jsonx.Writer {
	w.json.Reset()
	return &w.json
}

// Problem answers status with an RFC 9457 application/problem+json body:
// {"type":"about:blank","title":...,"status":...,"detail":...}. Each
// string in errs is listed in an "errors" array (validation details). An
// empty detail is left out.
func (w *ResponseWriter) Problem(status int, title, detail string, errs ...string) {
	w.SetHeader("content-type", "application/problem+json")
	w.WriteHeader(status)
	w.body = AppendProblem(w.body, status, title, detail, errs...)
}

// AppendProblem appends an RFC 9457 problem object to dst, as Problem
// writes it.
func AppendProblem(dst []byte, status int, title, detail string, errs ...string) []byte {
	pw := jsonx.NewWriter(dst)
	pw.ObjectStart()
	pw.StringField("type", "about:blank")
	pw.StringField("title", title)
	pw.IntField("status", int64(status))
	if detail != "" {
		pw.StringField("detail", detail)
	}
	if len(errs) > 0 {
		pw.Key("errors")
		pw.ArrayStart()
		for _, e := range errs {
			pw.String(e)
		}
		pw.ArrayEnd()
	}
	pw.ObjectEnd()
	return pw.Bytes()
}

// appendResponse encodes the response (abi.Response) onto dst.
func (w *ResponseWriter) appendResponse(dst []byte) []byte {
	status := w.status
	if status == 0 {
		status = 200
	}
	dst = abi.AppendU32(dst, uint32(status))
	dst = abi.AppendU32(dst, uint32(len(w.headers)))
	for _, h := range w.headers {
		dst = abi.AppendString(dst, h.name)
		dst = abi.AppendString(dst, h.value)
	}
	return abi.AppendBytes(dst, w.body)
}
