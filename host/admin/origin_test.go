package admin

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// send sends method path to the server at addr with the given Host and
// extra headers, and returns the status and body.
func send(t *testing.T, addr, method, path, host string, header map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// startGuarded starts a listener without a token (the loopback default)
// with a destructive POST /v1/replay that counts its calls.
func startGuarded(t *testing.T, cfg Config) (addr, port string, replays *atomic.Int64) {
	t.Helper()
	replays = new(atomic.Int64)
	s, err := New(cfg, Source{Registry: prometheus.NewRegistry()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Handle("POST /v1/replay", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		replays.Add(1)
		w.WriteHeader(http.StatusAccepted)
	}))
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(t.Context()) })
	_, port, _ = net.SplitHostPort(s.Addr())
	return s.Addr(), port, replays
}

// A web page cannot drive the admin listener through the operator's
// browser: not by DNS rebinding (the browser sends the attacker's name as
// Host), not by a cross-site form POST or fetch (Origin, Sec-Fetch-Site).
// Health probes, IP literals, localhost and same-origin requests pass.
func TestAdminHostAndOrigin(t *testing.T) {
	addr, port, replays := startGuarded(t, Config{Addr: "127.0.0.1:0"})
	own := "http://127.0.0.1:" + port
	for _, c := range []struct {
		name, method, path, host string
		header                   map[string]string
		want                     int
	}{
		{"own address", "GET", "/metrics", "127.0.0.1:" + port, nil, 200},
		{"localhost", "GET", "/metrics", "localhost:" + port, nil, 200},
		{"localhost without port", "GET", "/v1/services", "localhost", nil, 200},
		{"IPv6 loopback", "GET", "/metrics", "[::1]:" + port, nil, 200},
		{"probe by pod IP", "GET", "/metrics", "10.1.2.3:" + port, nil, 200},
		{"rebinding: metrics", "GET", "/metrics", "evil.example:" + port, nil, 403},
		{"rebinding: pprof", "GET", "/debug/pprof/", "evil.example", nil, 403},
		{"rebinding: services", "GET", "/v1/services", "EVIL.example:" + port, nil, 403},
		{"rebinding: replay", "POST", "/v1/replay", "evil.example", map[string]string{"Origin": "http://evil.example"}, 403},
		{"cross-site POST", "POST", "/v1/replay", "127.0.0.1:" + port, map[string]string{"Origin": "http://evil.example"}, 403},
		{"another local origin", "POST", "/v1/replay", "127.0.0.1:" + port, map[string]string{"Origin": "http://127.0.0.1:3000"}, 403},
		{"https origin", "POST", "/v1/replay", "127.0.0.1:" + port, map[string]string{"Origin": "https://127.0.0.1:" + port}, 403},
		{"null origin", "POST", "/v1/replay", "127.0.0.1:" + port, map[string]string{"Origin": "null"}, 403},
		{"no-cors fetch", "POST", "/v1/replay", "127.0.0.1:" + port, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"same-site fetch", "GET", "/metrics", "localhost:" + port, map[string]string{"Sec-Fetch-Site": "same-site"}, 403},
		{"same origin", "POST", "/v1/replay", "127.0.0.1:" + port, map[string]string{"Origin": own, "Sec-Fetch-Site": "same-origin"}, 202},
		{"curl", "POST", "/v1/replay", "127.0.0.1:" + port, nil, 202},
		{"typed in the address bar", "GET", "/v1/services", "localhost:" + port, map[string]string{"Sec-Fetch-Site": "none"}, 200},
		{"healthz by any name", "GET", "/healthz", "evil.example", nil, 200},
		{"readyz by any name", "GET", "/readyz", "evil.example", map[string]string{"Origin": "http://evil.example"}, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := replays.Load()
			code, h, body := send(t, addr, c.method, c.path, c.host, c.header)
			if code != c.want {
				t.Fatalf("%s %s Host %q %v: %d %q, want %d", c.method, c.path, c.host, c.header, code, body, c.want)
			}
			if code != 403 {
				return
			}
			if replays.Load() != before {
				t.Fatal("the refused replay ran")
			}
			var doc map[string]any
			if ct := h.Get("Content-Type"); ct != "application/problem+json" || json.Unmarshal([]byte(body), &doc) != nil || doc["status"] != float64(403) {
				t.Fatalf("403 answer %q %q is not a problem document", ct, body)
			}
		})
	}
}

// Operator-listed names pass: a bare name on any port, a name and port on
// that port only; "*" lets every Host through (Origin is still checked).
func TestAdminAllowedHosts(t *testing.T) {
	addr, port, _ := startGuarded(t, Config{Addr: "127.0.0.1:0", AllowedHosts: []string{"meshd.internal", "scrape.example:9100"}})
	for _, c := range []struct {
		host string
		want int
	}{
		{"meshd.internal:" + port, 200},
		{"MESHD.internal", 200},
		{"scrape.example:9100", 200},
		{"scrape.example:" + port, 403},
		{"other.internal:" + port, 403},
	} {
		if code, _, body := send(t, addr, "GET", "/metrics", c.host, nil); code != c.want {
			t.Errorf("Host %q: %d %q, want %d", c.host, code, body, c.want)
		}
	}

	addr, port, replays := startGuarded(t, Config{Addr: "127.0.0.1:0", AllowedHosts: []string{"*"}})
	if code, _, body := send(t, addr, "GET", "/metrics", "anything.example:"+port, nil); code != 200 {
		t.Errorf("Host anything with *: %d %q", code, body)
	}
	if code, _, _ := send(t, addr, "POST", "/v1/replay", "anything.example", map[string]string{"Origin": "http://evil.example"}); code != 403 || replays.Load() != 0 {
		t.Errorf("cross-origin POST with *: %d, %d replays", code, replays.Load())
	}
}

// A token does not lift the Host check: a listener on a network address
// with a token still refuses a foreign Host, even with the right token.
func TestAdminHostCheckedWithToken(t *testing.T) {
	addr, port, _ := startGuarded(t, Config{Addr: "127.0.0.1:0", Token: "s3cret"})
	auth := map[string]string{"Authorization": "Bearer s3cret"}
	if code, _, _ := send(t, addr, "GET", "/metrics", "evil.example:"+port, auth); code != 403 {
		t.Errorf("foreign Host with the token: %d, want 403", code)
	}
	if code, _, _ := send(t, addr, "GET", "/metrics", "127.0.0.1:"+port, auth); code != 200 {
		t.Errorf("own Host with the token: %d, want 200", code)
	}
}

func TestAdminValidateAllowedHosts(t *testing.T) {
	for _, c := range []struct {
		host string
		ok   bool
	}{
		{"meshd.internal", true}, {"meshd.internal:8081", true}, {"[fd00::1]:8081", true}, {"*", true},
		{"", false}, {"http://meshd.internal", false}, {"meshd.internal/x", false}, {"meshd.internal:http", false},
		{"meshd.internal:0", false}, {"a b", false},
	} {
		err := (&Config{Addr: "127.0.0.1:8081", AllowedHosts: []string{c.host}}).Validate()
		if (err == nil) != c.ok {
			t.Errorf("%q: Validate() = %v, want ok=%v", c.host, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "allowed host") {
			t.Errorf("%q: error %v does not name the field", c.host, err)
		}
	}
}
