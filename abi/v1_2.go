package abi

// Host functions added in ABI v1.2: service-to-service calls. They are
// optional imports: a guest that does not import them runs unchanged. See
// docs/ABI.md, "Added in v1.2".
const (
	// FnCall (callee_ptr, callee_len, req_ptr, req_len, flags i32) -> i32:
	// calls a route of service callee (a service name) with the
	// CallRequest encoded at [req_ptr, req_ptr+req_len), through the
	// callee's ordinary ExportHTTP, and waits for its answer. It returns
	// the length of the encoded Response, which the invocation holds until
	// its next FnCall: read it with FnCallResult. A response of any status
	// is a success; a negative result is the call's failure (-CodeDenied
	// when the operator did not grant calling callee, -CodeNotFound when
	// there is no such service or no route of it matches, -CodeInvalid past
	// MaxCallDepth, ...). flags is a set of Call flags (CallRetryable).
	FnCall = "call"
	// FnCallResult (buf_ptr, buf_cap i32) -> i32: copies the encoded
	// Response of the invocation's last successful FnCall into buf and
	// returns its length, with the grow-and-retry rule of FnInputRead.
	// Reading it again does not call again. -CodeNotFound when the
	// invocation has no call result (no call yet, or the last one failed).
	FnCallResult = "call_result"
)

// Flags of FnCall. Bits not defined here are refused with CodeInvalid.
const (
	// CallRetryable lets the host retry the call (on a timeout or an
	// unavailable instance, within the caller's deadline) although its
	// method is not idempotent: the caller says the callee's route is safe
	// to run twice, for example because it dedupes on the request id.
	// Calls with an idempotent method (IdempotentMethod) are retryable
	// without it.
	CallRetryable int32 = 1 << 0

	// callFlags is every defined flag.
	callFlags = CallRetryable
)

// ValidCallFlags reports whether flags holds only defined flags.
func ValidCallFlags(flags int32) bool { return flags&^callFlags == 0 }

// MaxCallDepth bounds how deep calls nest: a request from the gateway or an
// event delivery runs at depth 0, the service it calls at depth 1, and a
// service at depth MaxCallDepth cannot call further (CodeInvalid). It
// stops call cycles (a calls b calls a) from running to their deadline.
const MaxCallDepth = 8

// Bounds on a CallRequest, checked by the host (CodeTooLarge past them,
// CodeInvalid for a malformed field). The body's bound is the host's
// (1 MiB by default, the default input cap of a service).
const (
	MaxCallMethodBytes = 16      // upper-case letters
	MaxCallPathBytes   = 8 << 10 // the path and the query together
	MaxCallHeaders     = 64      // header values (pairs)
	MaxCallHeaderBytes = 16 << 10
)

// Reserved request headers: the host sets the request id and trace context
// of a call itself (Request.RequestID, Request.TraceParent), so a call
// request that names one of these headers is refused with CodeInvalid.
var reservedCallHeaders = [...]string{"x-request-id", "traceparent", "tracestate"}

// ReservedCallHeader reports whether a call request may not carry header
// name (lower case, as the encoding holds it).
func ReservedCallHeader(name []byte) bool {
	for _, r := range reservedCallHeaders {
		if string(name) == r {
			return true
		}
	}
	return false
}

// IdempotentMethod reports whether method is one the host may retry on
// its own: GET, HEAD, PUT and DELETE (RFC 9110, 9.2.2; OPTIONS and TRACE
// are not routed).
func IdempotentMethod(method []byte) bool {
	switch string(method) {
	case "GET", "HEAD", "PUT", "DELETE":
		return true
	}
	return false
}

// CallRequest is the request a guest hands FnCall.
//
//	str method, str path, str query, pairs headers, bytes body
//
// Method is upper-case ("GET"); Path starts with "/" and holds no query;
// Query is raw, without "?"; header names are lower case, one pair per
// value; Body is JSON or empty. The host builds the callee's Request from
// it: the route and params come from matching the callee's routes, and the
// consumer ("service:<caller>"), request id and trace context are the
// host's.
type CallRequest struct {
	Method, Path, Query []byte
	Headers             []Pair
	Body                []byte
}

// Append encodes r onto b.
func (r *CallRequest) Append(b []byte) []byte {
	b = AppendBytes(b, r.Method)
	b = AppendBytes(b, r.Path)
	b = AppendBytes(b, r.Query)
	b = AppendPairs(b, r.Headers)
	return AppendBytes(b, r.Body)
}

// Decode fills r from b, reusing r's header slice. The result aliases b.
func (r *CallRequest) Decode(b []byte) error {
	d := decoder{b: b}
	r.Method = d.bytes()
	r.Path = d.bytes()
	r.Query = d.bytes()
	r.Headers = d.pairs(r.Headers[:0])
	r.Body = d.bytes()
	return d.err
}

// ConsumerPrefix starts the consumer field of a request that another
// service made with FnCall: "service:order" for a call from service order.
const ConsumerPrefix = "service:"

// Check reports what is wrong with r's method, path, query and headers as
// a code (CodeInvalid or CodeTooLarge) and a message, or CodeOK. Guest
// bytes in the message are bounded and quoted (Excerpt). The body is the
// host's to check (its size cap, JSON).
func (r *CallRequest) Check() (Code, string) {
	switch {
	case len(r.Method) == 0 || len(r.Method) > MaxCallMethodBytes:
		return CodeInvalid, "method must be 1 to " + itoa(MaxCallMethodBytes) + " upper-case letters"
	case len(r.Path)+len(r.Query) > MaxCallPathBytes:
		return CodeTooLarge, "path and query of " + itoa(len(r.Path)+len(r.Query)) + " bytes pass " + itoa(MaxCallPathBytes)
	case len(r.Path) == 0 || r.Path[0] != '/':
		return CodeInvalid, "path " + Excerpt(string(r.Path)) + " must start with \"/\""
	case len(r.Headers) > MaxCallHeaders:
		return CodeTooLarge, itoa(len(r.Headers)) + " headers, at most " + itoa(MaxCallHeaders)
	}
	for _, c := range r.Method {
		if c < 'A' || c > 'Z' {
			return CodeInvalid, "method " + Excerpt(string(r.Method)) + " must be upper-case letters"
		}
	}
	for _, c := range r.Path {
		if c <= ' ' || c == 0x7f || c == '?' || c == '#' {
			return CodeInvalid, "path " + Excerpt(string(r.Path)) + " holds white space, a control character, '?' or '#'"
		}
	}
	for _, c := range r.Query {
		if c <= ' ' || c == 0x7f || c == '#' {
			return CodeInvalid, "query " + Excerpt(string(r.Query)) + " holds white space, a control character or '#'"
		}
	}
	n := 0
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
		if n > MaxCallHeaderBytes {
			return CodeTooLarge, "headers pass " + itoa(MaxCallHeaderBytes) + " bytes"
		}
		if !headerName(h.Key) {
			return CodeInvalid, "header name " + Excerpt(string(h.Key)) + " must be a lower-case token"
		}
		if ReservedCallHeader(h.Key) {
			return CodeInvalid, "header " + string(h.Key) + " is set by the host"
		}
		for _, c := range h.Value {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return CodeInvalid, "header " + string(h.Key) + " holds a control character"
			}
		}
	}
	return CodeOK, ""
}

// headerName reports whether b is a non-empty lower-case HTTP token.
func headerName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == '!' || c == '#' || c == '$' || c == '%' || c == '&' ||
			c == '\'' || c == '*' || c == '+' || c == '^' || c == '`' || c == '|' || c == '~':
		default:
			return false
		}
	}
	return true
}
