package daemon

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/config"
	"github.com/meshd/meshd/host/gateway"
	"github.com/meshd/meshd/internal/testkit"
)

const policyOrderBody = `{"user_id":"user123","items":[{"name":"laptop","price":1500000}]}`

func (td *testDaemon) post(t *testing.T, path string, header map[string]string) reply {
	t.Helper()
	req, err := http.NewRequest("POST", td.base+path, strings.NewReader(policyOrderBody))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return reply{status: resp.StatusCode, header: resp.Header}
}

// TestExampleGatewayConfig runs the real order plugin behind the policies
// of examples/gateway.toml (with the rate slowed so that no token refills
// during the test): 401 without a key, 201 with it until the burst is
// spent, then 429.
func TestExampleGatewayConfig(t *testing.T) {
	f, err := config.Load("../examples/gateway.toml")
	if err != nil {
		t.Fatal(err)
	}
	p := f.Policies()
	p.Policy[0].Rate = 0.001
	p.Mounts = []gateway.Mount{{Prefix: "/api/v1", Service: "order", StripPrefix: true}}
	td := startDaemonWith(t, []string{"order"}, nil, func(c *Config) { c.Gateway = p })

	r := td.post(t, "/orders", nil)
	if r.status != 401 || r.header.Get("WWW-Authenticate") == "" || r.header.Get("Content-Type") != gateway.ProblemContentType {
		t.Fatalf("without a key: %d %v", r.status, r.header)
	}
	if r := td.post(t, "/orders", map[string]string{"X-API-Key": "wrong"}); r.status != 401 {
		t.Fatalf("wrong key: %d", r.status)
	}
	key := map[string]string{"Authorization": "Bearer demo-key"}
	for i := 0; i < 4; i++ {
		if r := td.post(t, "/orders", key); r.status != 201 {
			t.Fatalf("request %d with the key: %d", i+1, r.status)
		}
	}
	// The mount reaches the same route, policy and bucket.
	if r := td.post(t, "/api/v1/orders", key); r.status != 201 {
		t.Fatalf("through the mount: %d", r.status)
	}
	r = td.post(t, "/orders", key)
	if r.status != 429 || r.header.Get("Retry-After") == "" || r.header.Get("RateLimit-Policy") == "" {
		t.Fatalf("sixth request: %d %v", r.status, r.header)
	}
	// Other routes stay open.
	if r := td.do(t, "GET", "/orders/nope", "", ""); r.status != 404 {
		t.Fatalf("GET /orders/nope: %d", r.status)
	}
}

func TestBadPoliciesRefuseToStart(t *testing.T) {
	cfg := Default()
	cfg.PluginDir = t.TempDir()
	cfg.DataDir = t.TempDir()
	cfg.Gateway = gateway.Policies{Policy: []gateway.Policy{{Service: "order", Auth: "missing"}}}
	if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), `policy[0].auth`) {
		t.Fatalf("New: %v", err)
	}
}

// TestTLS serves the gateway over HTTPS with a self-signed certificate.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := testkit.SelfSigned(t, dir)
	td := startDaemonWith(t, []string{"order"}, nil, func(c *Config) {
		c.Server = gateway.ServerConfig{CertFile: certFile, KeyFile: keyFile}
	})
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Post("https://"+td.Addr()+"/orders", "application/json", strings.NewReader(policyOrderBody))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 || resp.TLS == nil {
		t.Fatalf("HTTPS POST /orders: %d, TLS %v", resp.StatusCode, resp.TLS != nil)
	}
	// Plain HTTP on the TLS port is refused.
	if resp, err := client.Get("http://" + td.Addr() + "/orders/x"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain HTTP on the TLS port: %d", resp.StatusCode)
		}
	}
}
