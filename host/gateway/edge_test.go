package gateway

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
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
// NewServerWith(c) on a loopback port and returns its address.
func serveEdge(t *testing.T, c ServerConfig, obs *observations) string {
	t.Helper()
	g, _ := newTestGateway(t, Config{Observe: obs.add}, testRoutes)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServerWith(ln.Addr().String(), g, c)
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
		t.Fatalf("got %d %q %q, want %d problem+json", resp.StatusCode, resp.Header.Get("Content-Type"), body, status)
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

var _ = strings.Repeat
