package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"testing"
)

// trackRun is what a tracker made of a stream.
type trackRun struct {
	ends    []int  // offsets just past each counted header block
	verdict uint64 // connFraming.verdict at the end
}

// track feeds stream to a new tracker in pieces of at most chunk bytes
// (the offsets of header block ends are exact only for chunk 1).
func track(stream []byte, limit int64, chunk int) trackRun {
	var rec connFraming
	t := newFramingTracker(&rec, limit)
	var run trackRun
	for off := 0; off < len(stream); {
		n := min(chunk, len(stream)-off)
		before := t.blocks
		t.Feed(stream[off : off+n])
		off += n
		if t.blocks != before {
			run.ends = append(run.ends, off)
		}
	}
	run.verdict = rec.verdict.Load()
	return run
}

func verdictAt(at uint64, v framingVerdict) uint64 { return at<<verdictBits | uint64(v) }

func TestFramingTracker(t *testing.T) {
	const (
		get   = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
		post5 = "POST /o HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
	)
	for _, tt := range []struct {
		name    string
		stream  string
		blocks  int
		verdict uint64
	}{
		{"keep-alive GETs", get + get + get, 3, 0},
		{"Content-Length bodies skipped", post5 + post5 + get, 3, 0},
		{"a body that looks like headers", "POST / HTTP/1.1\r\nContent-Length: 39\r\n\r\nX: y\r\nTransfer-Encoding: chunked\r\n\r\n" + get, 2, 0},
		{"chunked", get + "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + get, 1, verdictAt(2, verdictChunked)},
		{"both", "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 0, verdictAt(1, verdictBoth)},
		{"both, any case, TE first", "POST / HTTP/1.1\r\ntRANSFER-eNCODING: chunked\r\ncontent-LENGTH: 3\r\n\r\n", 0, verdictAt(1, verdictBoth)},
		{"both, invalid Content-Length", "POST / HTTP/1.1\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n", 0, verdictAt(1, verdictBoth)},
		{"both, bare LF", "POST / HTTP/1.1\nContent-Length: 3\nTransfer-Encoding: chunked\n\n", 0, verdictAt(1, verdictBoth)},
		{"both after obs-fold", "POST / HTTP/1.1\r\nX: a\r\n b\r\nContent-Length: 3\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", 0, verdictAt(1, verdictBoth)},
		{"Transfer-Encoding on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 0, verdictAt(1, verdictTE10)},
		{"obs-fold Content-Length", "POST / HTTP/1.1\r\nContent-Length:\r\n\t 2 \r\n\r\nhi" + get, 2, 0},
		{"repeated equal Content-Length", "POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi" + get, 2, 0},
		{"conflicting Content-Length", "POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi" + get, 0, verdictAt(1, verdictLost)},
		{"Content-Length 1 0", "POST / HTTP/1.1\r\nContent-Length: 1\r\n 0\r\n\r\nhi" + get, 0, verdictAt(1, verdictLost)},
		{"Content-Length past 2^63-1", "POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n", 0, verdictAt(1, verdictLost)},
		{"Content-Length 2^63-1", "POST / HTTP/1.1\r\nContent-Length: 9223372036854775807\r\n\r\n", 1, 0},
		{"CR LF after a POST body", "POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi\r\n\r\n" + get, 2, 0},
		{"CR LF after a GET", get + "\r\n" + get, 1, verdictAt(2, verdictLost)},
		{"OPTIONS * is not counted", "OPTIONS * HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx" + get, 1, 0},
		{"OPTIONS * chunked", "OPTIONS * HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 0, verdictAt(1, verdictLost)},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0, verdictAt(1, verdictLost)},
		{"no version", "GET /\r\n\r\n", 0, verdictAt(1, verdictLost)},
		{"Content-Length line without colon", "GET / HTTP/1.1\r\nContent-Length\r\n\r\n", 0, verdictAt(1, verdictLost)},
		{"leading space", "GET / HTTP/1.1\r\n X: y\r\n\r\n", 0, verdictAt(1, verdictLost)},
		{"long names", "GET / HTTP/1.1\r\nTransfer-Encoding-X: chunked\r\nXContent-Length: 1\r\n\r\n" + get, 2, 0},
		{"header block past the limit", "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 300) + "\r\n\r\n", 0, verdictAt(1, verdictLost)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for chunk := 1; chunk <= len(tt.stream); chunk++ {
				run := track([]byte(tt.stream), 256, chunk)
				if chunk == 1 && len(run.ends) != tt.blocks || run.verdict != tt.verdict {
					t.Fatalf("pieces of %d: %d blocks, verdict %d<<%d|%d; want %d, %d<<%d|%d", chunk,
						len(run.ends), run.verdict>>verdictBits, verdictBits, run.verdict&7,
						tt.blocks, tt.verdict>>verdictBits, verdictBits, tt.verdict&7)
				}
			}
		})
	}
}

// The verdict a handler gets for each request on a connection.
func TestConnFramingNext(t *testing.T) {
	var f connFraming
	f.verdict.Store(verdictAt(2, verdictBoth))
	got := []framingVerdict{f.next(), f.next(), f.next()}
	if want := []framingVerdict{verdictKnown, verdictBoth, verdictLost}; !slices.Equal(got, want) {
		t.Fatalf("verdicts %v, want %v", got, want)
	}
}

// httpFraming is how a net/http server frames stream: the offsets just
// past each header block of a request its handler gets (before the first
// request it cannot frame by Content-Length), and, when it stopped at a
// request with a Transfer-Encoding that it reads, the verdict the tracker
// must give that request.
func httpFraming(stream []byte) (ends []int, want uint64) {
	rd := bytes.NewReader(stream)
	br := bufio.NewReader(rd)
	offset := func() int { return len(stream) - rd.Len() - br.Buffered() }
	lastMethod := ""
	for {
		if lastMethod == "POST" {
			peek, _ := br.Peek(4)
			n := 0
			for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
				n++
			}
			br.Discard(n)
		}
		start := offset()
		if start == len(stream) {
			return ends, 0
		}
		// The header block as net/http reads it, Content-Length and
		// Transfer-Encoding included.
		tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(stream[start:])))
		_, lineErr := tp.ReadLine()
		hdr, hdrErr := tp.ReadMIMEHeader()
		req, err := http.ReadRequest(br)
		if err != nil || req.ProtoMajor != 1 || lineErr != nil || hdrErr != nil {
			return ends, 0
		}
		lastMethod = req.Method
		options := req.Method == "OPTIONS" && req.RequestURI == "*"
		if _, te := hdr["Transfer-Encoding"]; te {
			at := uint64(len(ends) + 1)
			_, cl := hdr["Content-Length"]
			switch {
			case options:
				return ends, verdictAt(at, verdictLost)
			case cl:
				return ends, verdictAt(at, verdictBoth)
			case !req.ProtoAtLeast(1, 1):
				return ends, verdictAt(at, verdictTE10)
			default:
				return ends, verdictAt(at, verdictChunked)
			}
		}
		if !options {
			// The end of the header block: where the body starts.
			ends = append(ends, offset())
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return ends, 0
		}
	}
}

// FuzzFramingTracker feeds random streams to the tracker: it never panics,
// gives the same verdict however the stream is split, and agrees with
// net/http on where each request's header block ends and on the verdict of
// the first request with a Transfer-Encoding, for as long as net/http
// frames the stream by Content-Length.
func FuzzFramingTracker(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /o HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\r\nGET / HTTP/1.0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nhi",
		"POST / HTTP/1.1\nHost: x\ncontent-length:\n  4\n\nbodyGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nxGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi",
		"GET / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
	} {
		f.Add([]byte(s), uint8(7))
	}
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		const limit = 1 << 20
		one := track(stream, limit, 1)
		if pieces := track(stream, limit, int(chunk)+1); pieces.verdict != one.verdict {
			t.Fatalf("verdict %#x in pieces of %d, %#x byte by byte", pieces.verdict, int(chunk)+1, one.verdict)
		}
		ends, want := httpFraming(stream)
		if len(one.ends) < len(ends) || !slices.Equal(one.ends[:len(ends)], ends) {
			t.Fatalf("header blocks end at %v, net/http's at %v", one.ends, ends)
		}
		switch at := one.verdict >> verdictBits; {
		case want != 0 && one.verdict != want:
			t.Fatalf("verdict %d<<%d|%d, want %d<<%d|%d", at, verdictBits, one.verdict&7, want>>verdictBits, verdictBits, want&7)
		case one.verdict != 0 && at <= uint64(len(ends)):
			t.Fatalf("verdict %d on request %d, which net/http frames by its Content-Length", one.verdict&7, at)
		}
	})
}

// BenchmarkServerKeepAliveGET serves keep-alive GETs through NewServer and
// the test gateway over loopback, with Serve (the framing tracker) and
// with http.Server.Serve (without it).
func BenchmarkServerKeepAliveGET(b *testing.B) {
	const req = "GET /orders/42 HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: bench/1.0\r\nAccept: application/json\r\n\r\n"
	for _, tracked := range []bool{true, false} {
		b.Run(fmt.Sprintf("tracked=%v", tracked), func(b *testing.B) {
			g, _ := newTestGateway(b, Config{}, testRoutes)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := NewServer(ln.Addr().String(), g, ServerConfig{})
			done := make(chan error, 1)
			go func() {
				if tracked {
					done <- Serve(srv, ln, ServerConfig{})
				} else {
					done <- srv.Serve(ln)
				}
			}()
			defer func() {
				srv.Close()
				if err := <-done; !errors.Is(err, http.ErrServerClosed) {
					b.Errorf("Serve: %v", err)
				}
			}()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := io.WriteString(c, req); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}

// BenchmarkFramingTrackerFeed is the tracker's own cost for a typical
// request header block.
func BenchmarkFramingTrackerFeed(b *testing.B) {
	block := []byte("GET /orders/42 HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) bench/1.0\r\n" +
		"Accept: application/json\r\nAccept-Encoding: gzip, deflate\r\nAuthorization: Bearer abcdefghijklmnopqrstuvwxyz0123456789\r\n" +
		"Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n")
	var rec connFraming
	t := newFramingTracker(&rec, 1<<20)
	b.SetBytes(int64(len(block)))
	b.ReportAllocs()
	for b.Loop() {
		t.Feed(block)
	}
	if t.stopped() {
		b.Fatal("tracker stopped")
	}
}
