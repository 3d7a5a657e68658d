package daemon

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawExchange writes raw to addr and reads one response (bounded by 20 s).
func rawExchange(t *testing.T, addr, method, raw string) (int, http.Header) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// A stalled body (408) and an over-long target (414) through the daemon:
// both answered with problem+json and counted under their code in
// meshd_gateway_requests_total.
func TestGatewayEdgesCounted(t *testing.T) {
	td := startDaemonWith(t, []string{"order"}, nil, func(c *Config) { c.Server.ReadTimeout = 500 * time.Millisecond })
	code, h := rawExchange(t, td.Addr(), "POST", "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user_id\":")
	if code != 408 || h.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("stalled body: %d %v, want 408 problem+json", code, h)
	}
	code, h = rawExchange(t, td.Addr(), "GET", "GET /orders/"+strings.Repeat("a", 900<<10)+" HTTP/1.1\r\nHost: x\r\n\r\n")
	if code != 414 || h.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("900 KB path: %d %v, want 414 problem+json", code, h)
	}
	_, text := adminGet(t, td, "/metrics", "")
	m := samples(t, text)
	for _, key := range []string{
		`meshd_gateway_requests_total{code="408",method="POST",route="POST /orders",service="order"}`,
		`meshd_gateway_requests_total{code="414",method="GET",route="",service=""}`,
	} {
		if m[key] != 1 {
			t.Errorf("%s = %v, want 1", key, m[key])
		}
	}
}

// The daemon's admin listener refuses a foreign Host (DNS rebinding) and a
// cross-site Origin on the event endpoints and pprof, and answers a name
// the operator listed.
func TestAdminRefusesOtherOrigins(t *testing.T) {
	td := startDaemonWith(t, []string{"order"}, nil, func(c *Config) { c.AdminAllowedHosts = []string{"meshd.internal"} })
	_, port, _ := net.SplitHostPort(td.AdminAddr())
	for _, c := range []struct {
		method, path, host, origin string
		want                       int
	}{
		{"POST", "/v1/events/replay", "evil.example:" + port, "http://evil.example:" + port, 403},
		{"POST", "/v1/events/replay", "127.0.0.1:" + port, "http://evil.example", 403},
		{"GET", "/v1/events/dlq", "evil.example:" + port, "", 403},
		{"GET", "/debug/pprof/", "evil.example:" + port, "", 403},
		{"GET", "/v1/config", "evil.example:" + port, "", 403},
		{"GET", "/v1/services", "meshd.internal:" + port, "", 200},
		{"GET", "/v1/events/dlq?service=order", "127.0.0.1:" + port, "", 200},
		{"GET", "/readyz", "evil.example", "", 200},
	} {
		req, err := http.NewRequest(c.method, "http://"+td.AdminAddr()+c.path, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = c.host
		if c.origin != "" {
			req.Header.Set("Origin", c.origin)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s Host %q Origin %q: %d %q, want %d", c.method, c.path, c.host, c.origin, resp.StatusCode, body, c.want)
		}
		if c.want == 403 && resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s: 403 as %q, want problem+json", c.method, c.path, resp.Header.Get("Content-Type"))
		}
	}
}
