package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/fault"
	"github.com/meshd/meshd/internal/traceparent"
)

const (
	headerRequestID   = "X-Request-Id"
	headerTraceParent = "Traceparent"
	maxRequestIDLen   = 128
	// maxPooledBytes bounds the buffers an exchange keeps for reuse, so one
	// large request does not pin its memory in the pool.
	maxPooledBytes = 256 << 10
)

// exchange holds the per-request buffers, reused through a sync.Pool.
type exchange struct {
	arena    []byte // method, path, query, params, headers, ids
	body     []byte
	consumer []byte
	params   []abi.Pair
	headers  []abi.Pair
	req      abi.Request
	resp     abi.Response
}

var exchanges = sync.Pool{New: func() any { return new(exchange) }}

func getExchange() *exchange { return exchanges.Get().(*exchange) }

func putExchange(x *exchange) {
	if cap(x.arena) > maxPooledBytes {
		x.arena = nil
	}
	if cap(x.body) > maxPooledBytes {
		x.body = nil
	}
	clear(x.params[:cap(x.params)])
	clear(x.headers[:cap(x.headers)])
	x.params, x.headers = x.params[:0], x.headers[:0]
	clear(x.resp.Headers[:cap(x.resp.Headers)])
	x.req = abi.Request{}
	x.resp = abi.Response{Headers: x.resp.Headers[:0]}
	exchanges.Put(x)
}

// add copies s into the arena and returns the copy. The arena must have
// room (see reserve), so earlier copies are never moved.
func (x *exchange) add(s string) []byte {
	start := len(x.arena)
	x.arena = append(x.arena, s...)
	return x.arena[start:len(x.arena):len(x.arena)]
}

// addLower is add with ASCII letters lower-cased.
func (x *exchange) addLower(s string) []byte {
	start := len(x.arena)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		x.arena = append(x.arena, c)
	}
	return x.arena[start:len(x.arena):len(x.arena)]
}

func (x *exchange) reserve(n int) {
	if cap(x.arena) < n {
		x.arena = make([]byte, 0, n)
	}
	x.arena = x.arena[:0]
}

// ServeHTTP handles a request matched to h's route.
func (h *routeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g := h.g
	noteRoute(w, h.service, h.pattern)
	var consumer string
	if h.policy != nil {
		var ok bool
		if consumer, ok = h.policy.admit(w, r, h); !ok {
			return
		}
	}
	if h.shed(w, r) {
		return
	}
	x := getExchange()
	defer putExchange(x)

	status, title, detail, ct, err := g.readBody(x, w, r, h.maxBody)
	if err != nil {
		// A read past the server's read timeout cancels the request's
		// context too, but the client is still there: tell it.
		if errors.Is(err, os.ErrDeadlineExceeded) {
			w.Header().Set("Connection", "close")
			h.refuse(w, r, http.StatusRequestTimeout, "request timeout",
				"the request body did not arrive within the server's read timeout", err)
			return
		}
		if r.Context().Err() != nil {
			h.debug(w, r, "gateway: client went away while sending the body", 0, err)
			return
		}
		h.refuse(w, r, status, title, detail, err)
		return
	}
	h.buildRequest(x, r, w.Header()[headerRequestID][0], ct)
	if consumer != "" {
		x.consumer = append(x.consumer[:0], consumer...)
		x.req.Consumer = x.consumer
	}

	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	err = g.inv.InvokeHTTP(ctx, h.service, &x.req, &x.resp)
	cancel()
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeResponse(w, r, &x.resp)
}

// refuse logs a refused request and answers it with a problem.
func (h *routeHandler) refuse(w http.ResponseWriter, r *http.Request, status int, title, detail string, err error) {
	h.debug(w, r, "gateway: request refused", status, err)
	problem(w, r, status, title, detail, nil)
}

// debug logs msg about the request at debug level; the attributes are only
// built when that level is on (refusals are common under attack or load).
func (h *routeHandler) debug(w http.ResponseWriter, r *http.Request, msg string, status int, err error) {
	if h.g.log.Enabled(r.Context(), slog.LevelDebug) {
		h.g.log.LogAttrs(r.Context(), slog.LevelDebug, msg, h.attrs(w, r, status, err)...)
	}
}

func (h *routeHandler) attrs(w http.ResponseWriter, r *http.Request, status int, err error) []slog.Attr {
	a := []slog.Attr{
		slog.String("service", h.service),
		slog.String("route", h.pattern),
		slog.String("request_id", w.Header().Get(headerRequestID)),
		slog.String("trace_id", traceIDOf(r)),
	}
	if status != 0 {
		a = append(a, slog.Int("status", status))
	}
	if err != nil {
		a = append(a, slog.String("error", err.Error()))
	}
	return a
}

// fail maps an invocation error to a problem response.
func (h *routeHandler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(r.Context().Err(), context.Canceled) {
		h.g.log.LogAttrs(r.Context(), slog.LevelDebug, "gateway: client went away", h.attrs(w, r, 0, err)...)
		return
	}
	fe := fault.Classify(h.service, err)
	status := fe.Status()
	title, detail := faultProblem(fe, h.service, h.timeout, err)
	retryAfter(w, fe.Retry())
	level := slog.LevelWarn
	switch fe.Kind {
	case fault.Failed:
		level = slog.LevelError
	case fault.StoreRefused, fault.Overloaded:
		// At debug level: the store logs the episode, with a count; a
		// request shed by the node serving the route is no failure, as
		// one shed here is not.
		level = slog.LevelDebug
	}
	h.g.log.LogAttrs(r.Context(), level, "gateway: invocation failed", h.attrs(w, r, status, err)...)
	problem(w, r, status, title, detail, map[string]any{"service": h.service})
}

// readBody reads the body into x.body and checks it against the size cap
// and the content-type rules. ct is the content type to hand to the
// service: "application/json" when the body was sniffed as JSON under a
// missing or form-encoded type, else "" (keep the client's).
func (g *Gateway) readBody(x *exchange, w http.ResponseWriter, r *http.Request, limit int64) (status int, title, detail, ct string, err error) {
	x.body = x.body[:0]
	if r.ContentLength > limit {
		return http.StatusRequestEntityTooLarge, "payload too large",
			fmt.Sprintf("the request body is %d bytes; the limit is %d", r.ContentLength, limit), "",
			fmt.Errorf("body of %d bytes passes the limit of %d", r.ContentLength, limit)
	}
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		if r.ContentLength > 0 && int64(cap(x.body)) < r.ContentLength {
			x.body = make([]byte, 0, r.ContentLength)
		}
		x.body, err = readAll(x.body, http.MaxBytesReader(w, r.Body, limit))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return http.StatusRequestEntityTooLarge, "payload too large",
					fmt.Sprintf("the request body passes the limit of %d bytes", limit), "", err
			}
			return http.StatusBadRequest, "bad request", "the request body could not be read", "", err
		}
	}
	if len(x.body) == 0 {
		return 0, "", "", "", nil
	}
	mediaType := mediaType(r.Header.Get("Content-Type"))
	switch {
	case mediaType == "" || mediaType == "application/x-www-form-urlencoded":
		// curl -d sends form-encoded; take it as JSON when it is JSON.
		if !json.Valid(x.body) {
			return http.StatusBadRequest, "bad request",
				"the request body is not valid JSON; send application/json", "", errors.New("body is not valid JSON")
		}
		return 0, "", "", "application/json", nil
	case isJSON(mediaType):
		if !json.Valid(x.body) {
			return http.StatusBadRequest, "bad request",
				"the request body is not valid JSON", "", errors.New("body is not valid JSON")
		}
		return 0, "", "", "", nil
	default:
		if len(mediaType) > 100 {
			mediaType = mediaType[:100] + "..."
		}
		return http.StatusUnsupportedMediaType, "unsupported media type",
			fmt.Sprintf("content type %s is not supported; send application/json", mediaType), "",
			fmt.Errorf("content type %q is not supported", mediaType)
	}
}

// readAll is io.ReadAll appending to dst.
func readAll(dst []byte, r io.Reader) ([]byte, error) {
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

// mediaType returns the lower-cased media type of a Content-Type value,
// without parameters.
func mediaType(v string) string {
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	v = strings.TrimSpace(v)
	for i := 0; i < len(v); i++ {
		if 'A' <= v[i] && v[i] <= 'Z' {
			return strings.ToLower(v)
		}
	}
	return v
}

// isJSON reports whether a media type is application/json or
// application/*+json.
func isJSON(mt string) bool {
	return mt == "application/json" ||
		(strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// hopByHop reports whether a canonical header name is connection-specific
// (RFC 9110 section 7.6.1) and so never forwarded.
func hopByHop(name string) bool {
	switch name {
	case "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// skipRequestHeader reports whether a client header stays out of
// abi.Request.Headers: hop-by-hop headers, those the Connection header
// names, and the request id and traceparent, which travel in their own
// fields (so the service never sees a client value the gateway replaced).
func skipRequestHeader(name string, r *http.Request) bool {
	if hopByHop(name) || name == headerRequestID || name == headerTraceParent {
		return true
	}
	for _, v := range r.Header["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), name) {
				return true
			}
		}
	}
	return false
}

// buildRequest fills x.req from r. ct, when set, replaces the client's
// content type.
func (h *routeHandler) buildRequest(x *exchange, r *http.Request, reqID, ct string) {
	// serve gave r a valid traceparent (ensureTraceParent).
	tp := r.Header.Get(headerTraceParent)

	// Size the arena so that no append moves it.
	n := len(r.Method) + len(r.URL.Path) + len(r.URL.RawQuery) + len(reqID) + len(tp) + len(r.Host) + len("host") + len(ct) + len("content-type")
	for _, name := range h.params {
		n += len(r.PathValue(name))
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v)
		}
	}
	x.reserve(n)

	x.req.Method = x.add(r.Method)
	x.req.Path = x.add(r.URL.Path)
	x.req.Query = x.add(r.URL.RawQuery)
	x.req.Route = h.route
	for i, name := range h.params {
		x.params = append(x.params, abi.Pair{Key: h.paramKeys[i], Value: x.add(r.PathValue(name))})
	}
	x.req.Params = x.params

	if r.Host != "" {
		x.headers = append(x.headers, abi.Pair{Key: x.add("host"), Value: x.add(r.Host)})
	}
	sawCT := false
	for k, vs := range r.Header {
		if skipRequestHeader(k, r) {
			continue
		}
		if k == "Content-Type" && ct != "" {
			if !sawCT {
				x.headers = append(x.headers, abi.Pair{Key: x.add("content-type"), Value: x.add(ct)})
			}
			sawCT = true
			continue
		}
		key := x.addLower(k)
		for _, v := range vs {
			x.headers = append(x.headers, abi.Pair{Key: key, Value: x.add(v)})
		}
	}
	if ct != "" && !sawCT {
		x.headers = append(x.headers, abi.Pair{Key: x.add("content-type"), Value: x.add(ct)})
	}
	x.req.Headers = x.headers
	x.req.Consumer = nil
	x.req.RequestID = x.add(reqID)
	x.req.TraceParent = x.add(tp)
	x.req.Body = x.body
}

// requestID returns the client's X-Request-Id when it is 1 to 128
// printable ASCII characters, else a new random UUID.
func requestID(r *http.Request) string {
	if vs := r.Header[headerRequestID]; len(vs) == 1 && validRequestID(vs[0]) {
		return vs[0]
	}
	return uuid.NewString()
}

func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// jsonContentType is shared by responses; its capacity of one makes any
// append copy it.
var jsonContentType = []string{"application/json"}

// writeResponse writes a service's response.
func (h *routeHandler) writeResponse(w http.ResponseWriter, r *http.Request, resp *abi.Response) {
	if resp.Status < 200 || resp.Status > 599 {
		err := fmt.Errorf("service returned status %d", resp.Status)
		h.g.log.LogAttrs(r.Context(), slog.LevelError, "gateway: invalid response", h.attrs(w, r, http.StatusBadGateway, err)...)
		problem(w, r, http.StatusBadGateway, "bad gateway",
			fmt.Sprintf("bad gateway, service %s returned invalid status %d", h.service, resp.Status),
			map[string]any{"service": h.service})
		return
	}
	status := int(resp.Status)
	hdr := w.Header()
	for _, p := range resp.Headers {
		name := string(p.Key)
		if !validHeaderName(name) || !validHeaderValue(p.Value) {
			h.g.log.LogAttrs(r.Context(), slog.LevelDebug, "gateway: dropped an invalid response header",
				append(h.attrs(w, r, 0, nil), slog.String("header", name))...)
			continue
		}
		name = http.CanonicalHeaderKey(name)
		if hopByHop(name) || name == "Content-Length" || name == headerRequestID {
			continue
		}
		hdr[name] = append(hdr[name], string(p.Value))
	}
	body := resp.Body
	if !bodyAllowed(status) {
		body = nil
		delete(hdr, "Content-Type")
	} else {
		if len(body) > 0 && len(hdr["Content-Type"]) == 0 {
			hdr["Content-Type"] = jsonContentType[:1:1]
		}
		// A HEAD answer without a body says nothing about the GET length.
		if r.Method != http.MethodHead || len(body) > 0 {
			hdr["Content-Length"] = []string{strconv.Itoa(len(body))}
		}
	}
	w.WriteHeader(status)
	if r.Method != http.MethodHead && len(body) > 0 {
		w.Write(body) // an error here means the client went away
	}
}

func bodyAllowed(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue refuses control characters other than tab (CR, LF and
// NUL would split or corrupt the response).
func validHeaderValue(v []byte) bool {
	for _, c := range v {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// ensureTraceParent gives r a valid traceparent before anything is logged
// about it: the client's when valid, else a new one. Every log line about the
// request and every event it leads to then share one trace id.
func ensureTraceParent(r *http.Request) {
	if tp := r.Header[headerTraceParent]; len(tp) == 1 && traceparent.Valid(tp[0]) {
		return
	}
	r.Header[headerTraceParent] = []string{traceparent.New()}
}

// traceIDOf is the trace id of r's traceparent ("" when it has none).
func traceIDOf(r *http.Request) string {
	return traceparent.TraceID(r.Header.Get(headerTraceParent))
}

// timeoutOf is the deadline err ran into: the invocation's own (an error
// with a Limit, such as runtime.TimeoutError) when shorter than the
// route's timeout.
func timeoutOf(err error, route time.Duration) time.Duration {
	var lim interface{ Limit() time.Duration }
	if errors.As(err, &lim) && lim.Limit() > 0 && lim.Limit() < route {
		return lim.Limit()
	}
	return route
}
