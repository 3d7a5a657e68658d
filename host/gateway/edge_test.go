package gateway

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
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
// NewServer with c on a loopback port and returns its address.
func serveEdge(t *testing.T, c ServerConfig, obs *observations) string {
	t.Helper()
	g, _ := newTestGateway(t, Config{Observe: obs.add}, testRoutes)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ln.Addr().String(), g, c)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
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

// net/http serves a request carrying both Content-Length and
// Transfer-Encoding by the chunked framing, drops Content-Length (so the
// handler cannot tell) and keeps the connection, so the bytes a
// Content-Length-framing proxy took for the body are parsed as a second
// request (smuggling). RFC 9112 section 6.3 requires closing the connection
// after such a request: the smuggled GET is never answered.
func TestGatewayContentLengthAndTransferEncoding(t *testing.T) {
	var obs observations
	addr := serveEdge(t, ServerConfig{}, &obs)
	smuggled := "GET /orders/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	chunked := "2\r\n{}\r\n0\r\n\r\n"
	_, br := rawConn(t, addr, "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Content-Length: "+strconv.Itoa(len(chunked)+len(smuggled))+"\r\nTransfer-Encoding: chunked\r\n\r\n"+chunked+smuggled)
	resp, err := http.ReadResponse(br, &http.Request{Method: "POST"})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if !resp.Close {
		t.Errorf("response %d keeps the connection open: %v", resp.StatusCode, resp.Header)
	}
	if resp.StatusCode != 200 {
		t.Errorf("status %d, want 200 (served by the chunked framing)", resp.StatusCode)
	}
	assertClosed(t, br)
	if got := obs.wait(t, 1); len(got) != 1 {
		t.Fatalf("observed %+v: the smuggled request was served", got)
	}
}

// A chunked request without Content-Length is served, and its connection
// closed afterwards too (net/http does not say whether Content-Length came
// with it).
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
