package gateway

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/testkit"
)

// observations collects what Config.Observe reports.
type observations struct {
	mu   sync.Mutex
	list []Observation
}

func (o *observations) add(ob Observation) {
	o.mu.Lock()
	o.list = append(o.list, ob)
	o.mu.Unlock()
}

// wait returns the observations once there are n, failing after 20 s.
func (o *observations) wait(t *testing.T, n int) []Observation {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		o.mu.Lock()
		got := append([]Observation(nil), o.list...)
		o.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d observations after 20 s, want %d: %+v", len(got), n, got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// serveEdge serves a test gateway (which observes into obs) behind
// NewServer with c on a loopback port, with Serve, and returns its address.
func serveEdge(t *testing.T, c ServerConfig, obs *observations) string {
	t.Helper()
	g, _ := newTestGateway(t, Config{Observe: obs.add}, testRoutes)
	return serveHandler(t, c, g)
}

// serveHandler serves h behind NewServer with c on a loopback port, with
// Serve, and returns its address.
func serveHandler(t *testing.T, c ServerConfig, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ln.Addr().String(), h, c)
	done := make(chan error, 1)
	go func() { done <- Serve(srv, ln, c) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// rawConn dials addr and writes raw; reads are bounded by 20 s.
func rawConn(t *testing.T, addr, raw string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

// readProblem reads one response from br and checks it is a problem
// document of the given status.
func readProblem(t *testing.T, br *bufio.Reader, method string, status int) (*http.Response, map[string]any) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	if resp.StatusCode != status || resp.Header.Get("Content-Type") != ProblemContentType {
		t.Fatalf("got %d %q %q, want %d problem+json", resp.StatusCode, resp.Header.Get("Content-Type"), bounded(string(body), 300), status)
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil || doc["status"] != float64(status) {
		t.Fatalf("problem %q: %v", body, err)
	}
	return resp, doc
}

// assertClosed checks the server closes c: the next read gets EOF (or a
// reset) before the 20 s deadline.
func assertClosed(t *testing.T, br *bufio.Reader) {
	t.Helper()
	b, err := br.ReadByte()
	if err == nil {
		rest, _ := br.Peek(br.Buffered())
		t.Fatalf("connection still open: read %q", append([]byte{b}, rest...))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after 20 s")
	}
}

// A client that sends the headers and part of the body, then stalls, gets
// 408 once the server's read timeout passes (not an empty 200), and the
// request is observed as a 408 of its route.
func TestGatewayStalledBody408(t *testing.T) {
	var obs observations
	addr := serveEdge(t, ServerConfig{ReadTimeout: 300 * time.Millisecond}, &obs)
	_, br := rawConn(t, addr, "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":")
	resp, doc := readProblem(t, br, "POST", http.StatusRequestTimeout)
	if !resp.Close {
		t.Errorf("408 keeps the connection open: %v", resp.Header)
	}
	if doc["request_id"] == nil || doc["request_id"] != resp.Header.Get("X-Request-Id") {
		t.Errorf("problem %v lacks the request id %q", doc, resp.Header.Get("X-Request-Id"))
	}
	got := obs.wait(t, 1)
	if got[0].Status != http.StatusRequestTimeout || got[0].Route != "POST /orders" || got[0].Service != "orders" {
		t.Fatalf("observed %+v, want a 408 of POST /orders", got[0])
	}
	assertClosed(t, br)
}

// An over-long request target is refused with 414 before routing (the
// route /files/{rest...} would take it), by default at 8 KiB and at the
// configured MaxURIBytes; the refusal is observed as a 414 without a route.
func TestGatewayURITooLong414(t *testing.T) {
	for _, tt := range []struct {
		name   string
		c      ServerConfig
		target string
		want   int
	}{
		{"900 KB path, default limit", ServerConfig{}, "/files/" + strings.Repeat("a", 900<<10), 414},
		{"just past the default", ServerConfig{}, "/files/" + strings.Repeat("a", ServerMaxURIBytes-len("/files/")+1), 414},
		{"at the default", ServerConfig{}, "/files/" + strings.Repeat("a", ServerMaxURIBytes-len("/files/")), 200},
		{"query counts", ServerConfig{MaxURIBytes: 64}, "/files/a?" + strings.Repeat("q", 64), 414},
		{"at a configured limit", ServerConfig{MaxURIBytes: 64}, "/files/" + strings.Repeat("a", 64-len("/files/")), 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var obs observations
			addr := serveEdge(t, tt.c, &obs)
			_, br := rawConn(t, addr, "GET "+tt.target+" HTTP/1.1\r\nHost: x\r\n\r\n")
			if tt.want != 414 {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tt.want {
					t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
				}
				return
			}
			resp, doc := readProblem(t, br, "GET", 414)
			if resp.ContentLength > 1024 {
				t.Errorf("the 414 answer is %d bytes: it echoes the target", resp.ContentLength)
			}
			if doc["request_id"] == nil || doc["request_id"] != resp.Header.Get("X-Request-Id") {
				t.Errorf("problem %v lacks the request id %q", doc, resp.Header.Get("X-Request-Id"))
			}
			got := obs.wait(t, 1)
			if got[0].Status != 414 || got[0].Route != "" || got[0].Method != "GET" {
				t.Fatalf("observed %+v, want a 414 of GET without a route", got[0])
			}
		})
	}
}

// A request line past MaxHeaderBytes never reaches the gateway: net/http
// answers 431 itself. MaxURIBytes only matters below MaxHeaderBytes.
func TestGatewayRequestLinePastHeaderCap(t *testing.T) {
	var obs observations
	addr := serveEdge(t, ServerConfig{MaxHeaderBytes: 4096, MaxURIBytes: 1 << 20}, &obs)
	_, br := rawConn(t, addr, "GET /files/"+strings.Repeat("a", 16<<10)+" HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
}

// writeSlowly writes raw to c one byte at a time when slow, else at once.
func writeSlowly(t *testing.T, c net.Conn, raw string, slow bool) {
	t.Helper()
	if !slow {
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		return
	}
	for i := range len(raw) {
		if _, err := io.WriteString(c, raw[i:i+1]); err != nil {
			t.Fatal(err)
		}
	}
}

// readStatus reads one response from br, its body included, and returns
// it.
func readStatus(t *testing.T, br *bufio.Reader, method string) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatalf("read body: %v", err)
	}
	resp.Body.Close()
	return resp
}

// A request whose framing is ambiguous (Content-Length with
// Transfer-Encoding, or Transfer-Encoding on HTTP/1.0) is refused with 400
// problem+json before routing and its connection closed (RFC 9112 section
// 6.3), however the fields are spelled and however slowly the bytes come:
// the request a Content-Length-framing proxy would have passed on as the
// body's end is never served. The refusal is observed as a 400 without a
// route. net/http alone serves the first by the chunked framing and the
// second by its Content-Length (keeping the connection), and says nothing
// to the handler.
func TestGatewayAmbiguousFraming400(t *testing.T) {
	smuggled := "GET /orders/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	chunked := "2\r\n{}\r\n0\r\n\r\n"
	cl := strconv.Itoa(len(chunked) + len(smuggled))
	const keepAlive = "GET /orders/1 HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tt := range []struct {
		name   string
		before int    // keep-alive requests before the ambiguous one
		head   string // up to the end of the ambiguous request's header block
		tail   string
	}{
		{"Content-Length then Transfer-Encoding", 0, "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
			"Content-Length: " + cl + "\r\nTransfer-Encoding: chunked\r\n\r\n", chunked + smuggled},
		{"Transfer-Encoding then Content-Length, names in lower case", 0, "POST /orders HTTP/1.1\r\nhost: x\r\n" +
			"transfer-encoding: chunked\r\ncontent-type: application/json\r\ncONTENT-lENGTH: " + cl + "\r\n\r\n", chunked + smuggled},
		{"Content-Length folded onto the next line", 0, "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
			"Content-Length:\r\n  " + cl + "\r\nTransfer-Encoding: chunked\r\n\r\n", chunked + smuggled},
		{"Content-Length repeated, lines ended by LF", 0, "POST /orders HTTP/1.1\nHost: x\nContent-Type: application/json\n" +
			"Content-Length: " + cl + "\nContent-Length: " + cl + "\nTransfer-Encoding: chunked\n\n", chunked + smuggled},
		{"after two keep-alive requests", 2, keepAlive + keepAlive + "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
			"Content-Length: " + cl + "\r\nTransfer-Encoding: chunked\r\n\r\n", chunked + smuggled},
		{"HTTP/1.0 with Transfer-Encoding", 0, "POST /orders HTTP/1.0\r\nConnection: keep-alive\r\nContent-Type: application/json\r\n" +
			"Transfer-Encoding: chunked\r\n\r\n", smuggled},
	} {
		for _, slow := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/slow=%v", tt.name, slow), func(t *testing.T) {
				var obs observations
				addr := serveEdge(t, ServerConfig{}, &obs)
				c, br := rawConn(t, addr, "")
				// Slowly, the header blocks come a byte at a time and the
				// rest not at all: the server answers without it (and
				// would reset a connection closed with bytes unread).
				if slow {
					writeSlowly(t, c, tt.head, true)
				} else {
					writeSlowly(t, c, tt.head+tt.tail, false)
				}
				for i := range tt.before {
					if resp := readStatus(t, br, "GET"); resp.StatusCode != 200 || resp.Close {
						t.Fatalf("keep-alive request %d: %d, close %v", i, resp.StatusCode, resp.Close)
					}
				}
				resp, doc := readProblem(t, br, "POST", http.StatusBadRequest)
				if !resp.Close {
					t.Errorf("400 keeps the connection open: %v", resp.Header)
				}
				if detail, _ := doc["detail"].(string); !strings.Contains(detail, "Transfer-Encoding") {
					t.Errorf("detail %q does not name the problem", detail)
				}
				if doc["request_id"] == nil || doc["request_id"] != resp.Header.Get("X-Request-Id") {
					t.Errorf("problem %v lacks the request id %q", doc, resp.Header.Get("X-Request-Id"))
				}
				assertClosed(t, br)
				got := obs.wait(t, tt.before+1)
				if len(got) != tt.before+1 {
					t.Fatalf("observed %+v: the smuggled request was served", got)
				}
				if last := got[tt.before]; last.Status != 400 || last.Route != "" || last.Method != "POST" {
					t.Fatalf("observed %+v, want a 400 of POST without a route", last)
				}
			})
		}
	}
}

// The framing tracker follows a connection's requests framed by
// Content-Length, pipelined or not: each is served on the kept connection,
// and an ambiguous request after them is still found and refused. Covered:
// a body that looks like a header block, the CR LF a client may send after
// a POST body, Expect: 100-continue, HTTP/1.0 keep-alive, and OPTIONS *
// (which net/http answers without the handler).
func TestGatewayFramingFollowsRequests(t *testing.T) {
	const ambiguous = "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
		"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	looksLikeHeaders := "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
	type step struct {
		send   string
		method string // of the responses to read
		want   []int  // their statuses
	}
	for _, tt := range []struct {
		name  string
		steps []step
	}{
		{"pipelined", []step{{
			send: "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}" +
				"GET /orders/2 HTTP/1.1\r\nHost: x\r\n\r\n" + ambiguous,
			method: "GET", want: []int{200, 200, 400},
		}}},
		{"a body that looks like a header block", []step{{
			send: "PUT /files/b/n HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
				strconv.Itoa(len(looksLikeHeaders)) + "\r\n\r\n" + looksLikeHeaders + "GET /orders/2 HTTP/1.1\r\nHost: x\r\n\r\n" + ambiguous,
			// The first 400 is the gateway's (the body is not JSON), on a
			// kept connection; a tracker that took the body for a header
			// block would refuse the GET.
			method: "GET", want: []int{400, 200, 400},
		}}},
		{"CR LF after a POST body", []step{{
			send: "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}\r\n" +
				"GET /orders/2 HTTP/1.1\r\nHost: x\r\n\r\n" + ambiguous,
			method: "GET", want: []int{200, 200, 400},
		}}},
		{"Expect: 100-continue", []step{
			{send: "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
				method: "POST", want: []int{100}},
			{send: "{}" + ambiguous, method: "POST", want: []int{200, 400}},
		}},
		{"HTTP/1.0 keep-alive", []step{{
			send:   "POST /orders HTTP/1.0\r\nConnection: keep-alive\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}" + ambiguous,
			method: "POST", want: []int{200, 400},
		}}},
		{"OPTIONS *", []step{{
			send:   "OPTIONS * HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" + ambiguous,
			method: "POST", want: []int{200, 400},
		}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var obs observations
			addr := serveEdge(t, ServerConfig{}, &obs)
			c, br := rawConn(t, addr, "")
			var last *http.Response
			for _, st := range tt.steps {
				writeSlowly(t, c, st.send, false)
				for i, want := range st.want {
					resp := readStatus(t, br, st.method)
					if resp.StatusCode != want {
						t.Fatalf("response %d: status %d, want %d", i, resp.StatusCode, want)
					}
					if want == 400 && resp.Header.Get("Content-Type") != ProblemContentType {
						t.Fatalf("response %d: 400 of type %q", i, resp.Header.Get("Content-Type"))
					}
					last = resp
				}
			}
			if !last.Close {
				t.Errorf("the last 400 keeps the connection open")
			}
			assertClosed(t, br)
		})
	}
}

// A chunked request without Content-Length is served, and its connection
// closed afterwards (the framing tracker stops there).
func TestGatewayChunkedRequestServed(t *testing.T) {
	var obs observations
	addr := serveEdge(t, ServerConfig{}, &obs)
	_, br := rawConn(t, addr, "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
	resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("status %d, close %v: want 200 and a closed connection", resp.StatusCode, resp.Close)
	}
}

// The checks before routing cost a request that passes them nothing.
func TestEdgeAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	e := newEdge(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), ServerConfig{})
	r := httptest.NewRequest("POST", "/orders/1?x=y", nil)
	w := httptest.NewRecorder()
	if n := testing.AllocsPerRun(100, func() { e.ServeHTTP(w, r) }); n != 0 {
		t.Fatalf("%v allocations per request, want 0", n)
	}
}

// Over TLS, Serve does the handshakes so the framing tracker reads the
// decrypted bytes: an ambiguous HTTP/1 request is refused with 400 and its
// connection closed, as on plain HTTP; HTTP/2 is still negotiated and
// served; Request.TLS is set on both; plain HTTP on the TLS port still gets
// net/http's plain 400.
func TestGatewayTLS(t *testing.T) {
	certFile, keyFile, pool := testkit.SelfSigned(t, t.TempDir())
	c := ServerConfig{CertFile: certFile, KeyFile: keyFile}

	t.Run("ambiguous framing", func(t *testing.T) {
		var obs observations
		addr := serveEdge(t, c, &obs)
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		smuggled := "GET /orders/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
		chunked := "2\r\n{}\r\n0\r\n\r\n"
		writeSlowly(t, conn, "GET /orders/1 HTTP/1.1\r\nHost: x\r\n\r\n"+
			"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
			"Content-Length: "+strconv.Itoa(len(chunked)+len(smuggled))+"\r\nTransfer-Encoding: chunked\r\n\r\n"+chunked+smuggled, false)
		br := bufio.NewReader(conn)
		if resp := readStatus(t, br, "GET"); resp.StatusCode != 200 || resp.Close {
			t.Fatalf("keep-alive request: %d, close %v", resp.StatusCode, resp.Close)
		}
		resp, _ := readProblem(t, br, "POST", http.StatusBadRequest)
		if !resp.Close {
			t.Errorf("400 keeps the connection open: %v", resp.Header)
		}
		assertClosed(t, br)
		if got := obs.wait(t, 2); len(got) != 2 || got[1].Status != 400 {
			t.Fatalf("observed %+v, want a 200 and a 400", got)
		}
	})

	t.Run("HTTP/2 and HTTP/1.1", func(t *testing.T) {
		addr := serveHandler(t, c, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.TLS == nil || !r.TLS.HandshakeComplete {
				http.Error(w, "no TLS state", http.StatusInternalServerError)
				return
			}
			w.Header().Set("X-Proto", r.Proto)
		}))
		for _, tt := range []struct {
			h2    bool
			proto string
		}{{true, "HTTP/2.0"}, {false, "HTTP/1.1"}} {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, ForceAttemptHTTP2: tt.h2}
			cl := &http.Client{Timeout: 20 * time.Second, Transport: tr}
			for i := range 2 { // the second on the kept connection
				resp, err := cl.Post("https://"+addr+"/", "application/json", strings.NewReader("{}"))
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.Proto != tt.proto || resp.Header.Get("X-Proto") != tt.proto || resp.TLS == nil {
					t.Fatalf("request %d: %d %s, served as %q, want 200 over %s with TLS state", i, resp.StatusCode, resp.Proto, resp.Header.Get("X-Proto"), tt.proto)
				}
			}
			tr.CloseIdleConnections()
		}
	})

	t.Run("plain HTTP on the TLS port", func(t *testing.T) {
		addr := serveHandler(t, c, http.NotFoundHandler())
		_, br := rawConn(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Fatalf("status %d, want 400", resp.StatusCode)
		}
	})

	t.Run("close during a handshake", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := NewServer(ln.Addr().String(), http.NotFoundHandler(), c)
		done := make(chan error, 1)
		go func() { done <- Serve(srv, ln, c) }()
		// A client that connects and sends nothing holds a handshake.
		_, br := rawConn(t, ln.Addr().String(), "")
		srv.Close()
		select {
		case err := <-done:
			if !errors.Is(err, http.ErrServerClosed) {
				t.Fatalf("Serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("Serve still running 20 s after Close")
		}
		assertClosed(t, br)
	})

	t.Run("missing key file", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		bad := ServerConfig{CertFile: certFile, KeyFile: certFile + ".missing"}
		if err := Serve(NewServer("", http.NotFoundHandler(), bad), ln, bad); err == nil || !strings.HasPrefix(err.Error(), "gateway: ") {
			t.Fatalf("Serve: %v", err)
		}
	})
}
