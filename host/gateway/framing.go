package gateway

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"sync/atomic"
)

// A framingTracker follows the HTTP/1 framing of the bytes a server
// connection reads, as net/http frames them, to tell the gateway what
// net/http does not: whether a request's header block carried both
// Content-Length and Transfer-Encoding (net/http drops the first without a
// trace), or Transfer-Encoding on HTTP/1.0 (net/http ignores it). Both make
// the framing ambiguous (RFC 9112 sections 6.1 and 6.3): the request is
// refused with 400 and the connection closed.
//
// It reads a header block up to its blank line, noting the request line's
// version and the Content-Length and Transfer-Encoding fields (names in any
// case, values continued by obs-fold, repeated fields), skips a
// Content-Length body and goes on with the next request. It stops at the
// first header block with a Transfer-Encoding (the connection is closed
// after that request), at input it cannot follow (net/http refuses such a
// request and closes too), and at a header block longer than net/http's read
// limit. It keeps no copy of the input: a few fixed-size fields, whatever
// the input and however it is split.
//
// Feed is called by one goroutine at a time (the connection's reader);
// the verdict it publishes in rec is read by the handler.
type framingTracker struct {
	rec   *connFraming
	limit int64 // header block cap: net/http's read limit

	state  trackState
	n      int64  // bytes of the current header block
	body   int64  // body bytes still to skip
	skip   int    // leading CR or LF still skipped before a request line
	blocks uint64 // counted header blocks (requests handed to the handler)

	// request line
	spaces    int
	head      [10]byte // its first bytes: "OPTIONS * ", "POST "
	headN     int
	proto     [10]byte // the bytes after its second space
	protoN    int
	protoLong bool
	http10    bool
	options   bool // OPTIONS *: answered by net/http, not by the handler
	post      bool

	// header fields
	field   fieldKind // the field being read, for obs-fold
	name    [len("transfer-encoding")]byte
	nameN   int
	te      bool  // a Transfer-Encoding field
	clSeen  bool  // a Content-Length field
	clBad   bool  // an invalid or conflicting Content-Length
	cl      int64 // its value, -1 before the first
	clState valueState
	clValue uint64
}

type trackState uint8

const (
	tsStart       trackState = iota // before a request line: after a POST, skip up to 4 CR or LF
	tsRequestLine                   // in the request line
	tsLineStart                     // at the start of a header line
	tsLineStartCR                   // after a CR at the start of a header line
	tsName                          // in a field name
	tsValue                         // in a Content-Length value
	tsSkipLine                      // in the rest of a line of no interest
	tsBody                          // in a Content-Length body
	tsStopped                       // not tracking any more
)

type fieldKind uint8

const (
	fieldNone fieldKind = iota
	fieldOther
	fieldContentLength
	fieldTransferEncoding
)

// valueState parses a Content-Length value as net/http does: optional
// white space, decimal digits (at most 2^63-1), optional white space.
type valueState uint8

const (
	vsLeading valueState = iota
	vsDigits
	vsTrailing
	vsBad
)

// Verdicts on a request, published in connFraming.verdict with the index
// of the request they are about.
type framingVerdict uint8

const (
	// verdictKnown: framed by Content-Length (or without a body).
	verdictKnown framingVerdict = iota
	// verdictChunked: Transfer-Encoding: chunked, without Content-Length;
	// the tracker stopped there.
	verdictChunked
	// verdictBoth: Content-Length and Transfer-Encoding.
	verdictBoth
	// verdictTE10: Transfer-Encoding on HTTP/1.0.
	verdictTE10
	// verdictLost: the tracker could not follow the input (or it stopped
	// before this request): the framing of the request is not known.
	verdictLost
	// verdictUntracked: the connection is not tracked.
	verdictUntracked
)

const verdictBits = 3

// connFraming is a connection's framing record, shared by its tracker and
// the handler (through the request context).
type connFraming struct {
	// verdict is 0 while every header block so far was framed by
	// Content-Length; else the index of the request it is about
	// (counting from 1) << verdictBits | a framingVerdict. Set once.
	verdict atomic.Uint64
	// served counts the requests the handler saw on the connection.
	served atomic.Uint64
}

// next returns the verdict on the handler's next request.
func (f *connFraming) next() framingVerdict {
	n := f.served.Add(1)
	v := f.verdict.Load()
	if v == 0 {
		return verdictKnown
	}
	switch at := v >> verdictBits; {
	case n < at:
		return verdictKnown
	case n == at:
		return framingVerdict(v & (1<<verdictBits - 1))
	default:
		// Past the request the tracker stopped at: the connection should
		// have been closed after that one.
		return verdictLost
	}
}

type connFramingKey struct{}

// framingConnContext is the http.Server's ConnContext: it gives requests on
// a tracked connection its record.
func framingConnContext(ctx context.Context, c net.Conn) context.Context {
	if fc, ok := c.(interface{ framing() *connFraming }); ok {
		return context.WithValue(ctx, connFramingKey{}, fc.framing())
	}
	return ctx
}

// framingOf returns the verdict on r, a request on an HTTP/1 connection.
// It must be called once per request.
func framingOf(r *http.Request) framingVerdict {
	f, _ := r.Context().Value(connFramingKey{}).(*connFraming)
	if f == nil {
		return verdictUntracked
	}
	return f.next()
}

func newFramingTracker(rec *connFraming, limit int64) *framingTracker {
	t := &framingTracker{rec: rec, limit: limit}
	t.nextRequest()
	return t
}

// stopped reports whether t stopped tracking.
func (t *framingTracker) stopped() bool { return t.state == tsStopped }

// Feed follows p, the next bytes read from the connection.
func (t *framingTracker) Feed(p []byte) {
	for len(p) > 0 {
		switch t.state {
		case tsStopped:
			return
		case tsBody:
			if int64(len(p)) < t.body {
				t.body -= int64(len(p))
				return
			}
			p = p[t.body:]
			t.body = 0
			t.nextRequest()
		case tsStart:
			for t.skip > 0 && len(p) > 0 && (p[0] == '\r' || p[0] == '\n') {
				if !t.count(1) {
					return
				}
				t.skip--
				p = p[1:]
			}
			if len(p) > 0 {
				t.skip = 0
				t.state = tsRequestLine
			}
		case tsRequestLine:
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				if t.count(len(p)) {
					t.requestLine(p)
				}
				return
			}
			if !t.count(i + 1) {
				return
			}
			t.requestLine(p[:i])
			t.endRequestLine()
			p = p[i+1:]
		case tsSkipLine:
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				t.count(len(p))
				return
			}
			if !t.count(i + 1) {
				return
			}
			p = p[i+1:]
			t.state = tsLineStart
		default:
			b := p[0]
			p = p[1:]
			if !t.count(1) {
				return
			}
			t.step(b)
		}
	}
}

// count adds k bytes to the header block; past the limit net/http answers
// 431 and closes, and t stops.
func (t *framingTracker) count(k int) bool {
	t.n += int64(k)
	if t.n > t.limit {
		t.stop(verdictLost)
		return false
	}
	return true
}

func (t *framingTracker) step(b byte) {
	switch t.state {
	case tsLineStart:
		switch b {
		case ' ', '\t':
			// obs-fold: the previous field goes on, joined by a space.
			switch t.field {
			case fieldNone:
				t.stop(verdictLost) // net/http: malformed initial line
			case fieldContentLength:
				t.state = tsValue
				t.valueByte(' ')
			default:
				t.state = tsSkipLine
			}
		case '\n':
			t.endBlock()
		case '\r':
			t.endField()
			t.state = tsLineStartCR
		default:
			t.endField()
			if c := b | 0x20; c != 'c' && c != 't' {
				// Not Content-Length nor Transfer-Encoding. (Were the line
				// without a colon, net/http would refuse the request and
				// close the connection: the tracker need not notice.)
				t.field = fieldOther
				t.state = tsSkipLine
				return
			}
			t.nameN = 0
			t.state = tsName
			t.nameByte(b)
		}
	case tsLineStartCR:
		if b != '\n' {
			t.stop(verdictLost) // a field name starting with CR
			return
		}
		t.endBlock()
	case tsName:
		t.nameByte(b)
	case tsValue:
		if b == '\n' {
			t.state = tsLineStart
			return
		}
		t.valueByte(b)
	}
}

// requestLine follows seg, a piece of the request line without its LF.
func (t *framingTracker) requestLine(seg []byte) {
	if t.headN < len(t.head) {
		t.headN += copy(t.head[t.headN:], seg)
	}
	for t.spaces < 2 {
		i := bytes.IndexByte(seg, ' ')
		if i < 0 {
			return
		}
		t.spaces++
		seg = seg[i+1:]
	}
	n := copy(t.proto[t.protoN:], seg)
	t.protoN += n
	if n < len(seg) {
		t.protoLong = true
	}
}

func (t *framingTracker) endRequestLine() {
	proto := t.proto[:t.protoN]
	if n := len(proto); !t.protoLong && n > 0 && proto[n-1] == '\r' {
		proto = proto[:n-1]
	}
	// net/http takes "HTTP/1.0" as 1.0 and "HTTP/1.1" to "HTTP/1.9" as at
	// least 1.1; it refuses anything else (or, for the HTTP/2 preface,
	// closes after it).
	if t.spaces < 2 || t.protoLong || len(proto) != len("HTTP/1.x") || !bytes.HasPrefix(proto, []byte("HTTP/1.")) ||
		proto[7] < '0' || proto[7] > '9' {
		t.stop(verdictLost)
		return
	}
	head := t.head[:t.headN]
	t.http10 = proto[7] == '0'
	t.options = bytes.HasPrefix(head, []byte("OPTIONS * "))
	t.post = bytes.HasPrefix(head, []byte("POST "))
	t.field = fieldNone
	t.state = tsLineStart
}

func (t *framingTracker) nameByte(b byte) {
	switch b {
	case ':':
		t.field = fieldOther
		t.state = tsSkipLine
		name := t.name[:t.nameN]
		switch {
		case asciiEqualFold(name, "content-length"):
			t.field = fieldContentLength
			t.clSeen = true
			t.clState, t.clValue = vsLeading, 0
			t.state = tsValue
		case asciiEqualFold(name, "transfer-encoding"):
			t.field = fieldTransferEncoding
			t.te = true
		}
	case '\n':
		t.stop(verdictLost) // net/http: a header line without a colon
	default:
		if t.nameN == len(t.name) {
			// Longer than any name of interest.
			t.field = fieldOther
			t.state = tsSkipLine
			return
		}
		t.name[t.nameN] = b
		t.nameN++
	}
}

// valueByte parses one byte of a Content-Length value (the CR before the
// LF included: net/http trims it with the white space).
func (t *framingTracker) valueByte(b byte) {
	switch {
	case b == ' ' || b == '\t' || b == '\r':
		if t.clState == vsDigits {
			t.clState = vsTrailing
		}
	case '0' <= b && b <= '9':
		switch t.clState {
		case vsLeading:
			t.clState = vsDigits
			t.clValue = uint64(b - '0')
		case vsDigits:
			d := uint64(b - '0')
			if t.clValue > (1<<63-1-d)/10 {
				t.clState = vsBad // past 2^63-1: net/http answers 400
				return
			}
			t.clValue = t.clValue*10 + d
		case vsTrailing:
			t.clState = vsBad
		}
	default:
		t.clState = vsBad
	}
}

// endField ends the field being read (which no obs-fold continues).
func (t *framingTracker) endField() {
	if t.field == fieldContentLength {
		switch {
		case t.clState != vsDigits && t.clState != vsTrailing:
			t.clBad = true // empty or not a number: net/http answers 400
		case t.cl >= 0 && uint64(t.cl) != t.clValue:
			t.clBad = true // conflicting values: net/http answers 400
		default:
			t.cl = int64(t.clValue)
		}
	}
	t.field = fieldNone
}

// endBlock ends a header block at its blank line.
func (t *framingTracker) endBlock() {
	t.endField()
	switch {
	case t.te && t.options:
		// net/http answers OPTIONS * itself, reads the chunked body and
		// keeps the connection: what follows is not tracked.
		t.stop(verdictLost)
		return
	case t.te && t.clSeen:
		t.stop(verdictBoth)
		return
	case t.te && t.http10:
		t.stop(verdictTE10)
		return
	case t.te:
		t.stop(verdictChunked)
		return
	case t.clBad:
		t.stop(verdictLost)
		return
	}
	if !t.options {
		t.blocks++
	}
	if t.cl > 0 {
		t.body = t.cl
		t.state = tsBody
		return
	}
	t.nextRequest()
}

// nextRequest starts the next request. After a POST net/http drops up to 4
// CR or LF before the request line, as RFC 9112 section 2.2 lets a server
// do for clients that send one after the body.
func (t *framingTracker) nextRequest() {
	post := t.post
	*t = framingTracker{rec: t.rec, limit: t.limit, blocks: t.blocks, cl: -1}
	if post {
		t.skip = 4
	}
}

// stop stops tracking with verdict v on the request being read.
func (t *framingTracker) stop(v framingVerdict) {
	t.rec.verdict.Store((t.blocks+1)<<verdictBits | uint64(v))
	t.state = tsStopped
}

// asciiEqualFold reports whether b is s in any ASCII case; s is lower case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
