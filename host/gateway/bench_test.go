package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/meshd/meshd/abi"
)

// echoInvoker encodes the request as the runtime would (into a reused
// buffer) and answers its body.
type echoInvoker struct{ buf []byte }

func (e *echoInvoker) InvokeHTTP(ctx context.Context, service string, req *abi.Request, resp *abi.Response) error {
	e.buf = req.Append(e.buf[:0])
	resp.Status = 200
	resp.Body = req.Body
	return nil
}

const benchBody = `{"customer":"c-1","items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}]}`

func benchRequest() *http.Request {
	r := httptest.NewRequest("POST", "/orders/42/items", strings.NewReader(benchBody))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json")
	r.Header.Set("User-Agent", "bench/1.0")
	r.Header.Set("X-Request-Id", "bench-request")
	return r
}

// discardWriter is a minimal ResponseWriter, so the benchmarks measure the
// handlers rather than httptest.ResponseRecorder.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

func runBench(b *testing.B, h http.Handler) {
	body := strings.NewReader(benchBody)
	r := benchRequest()
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		body.Reset(benchBody)
		r.Body = io.NopCloser(body)
		clear(w.h)
		h.ServeHTTP(w, r)
	}
}

// BenchmarkGatewayOverhead serves a POST with a JSON body through the
// gateway to an invoker that encodes the ABI request and echoes the body.
func BenchmarkGatewayOverhead(b *testing.B) {
	g := New(Config{}, &echoInvoker{}, nil)
	if err := g.SetRoutes([]Route{
		{Service: "orders", Method: "GET", Path: "/orders/{id}"},
		{Service: "orders", Method: "POST", Path: "/orders/{id}/items"},
	}); err != nil {
		b.Fatal(err)
	}
	runBench(b, g)
}

// BenchmarkNativeMux is the baseline: a plain ServeMux handler that reads
// the body and echoes it.
func BenchmarkNativeMux(b *testing.B) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /orders/{id}/items", func(w http.ResponseWriter, r *http.Request) {
		_ = r.PathValue("id")
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(200)
		w.Write(body)
	})
	runBench(b, mux)
}

func benchPolicyGateway(b *testing.B, p Policies) *Gateway {
	g := New(Config{}, &echoInvoker{}, nil)
	if err := g.SetRoutes([]Route{
		{Service: "orders", Method: "GET", Path: "/orders/{id}"},
		{Service: "orders", Method: "POST", Path: "/orders/{id}/items"},
	}); err != nil {
		b.Fatal(err)
	}
	if err := g.SetPolicies(p); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Close() })
	return g
}

// runBenchHeader is runBench with one more request header.
func runBenchHeader(b *testing.B, h http.Handler, key, value string) {
	body := strings.NewReader(benchBody)
	r := benchRequest()
	r.Header.Set(key, value)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		body.Reset(benchBody)
		r.Body = io.NopCloser(body)
		clear(w.h)
		h.ServeHTTP(w, r)
	}
}

// BenchmarkGatewayAPIKey is BenchmarkGatewayOverhead with API-key auth and
// a consumer allow-list on the route: the difference is their cost.
func BenchmarkGatewayAPIKey(b *testing.B) {
	g := benchPolicyGateway(b, Policies{
		Auth:   map[string]AuthConfig{"keys": {Type: AuthAPIKey, Keys: map[string]string{"demo-key": "demo"}}},
		Policy: []Policy{{Service: "orders", Auth: "keys", Consumers: []string{"demo"}}},
	})
	runBenchHeader(b, g, "Authorization", "Bearer demo-key")
}

// BenchmarkGatewayJWT: HS256 JWT auth (signature, exp, iss, aud checked).
func BenchmarkGatewayJWT(b *testing.B) {
	g := benchPolicyGateway(b, Policies{
		Auth:   map[string]AuthConfig{"jwt": {Type: AuthJWT, Secret: "s3cret", Issuer: "iss", Audience: "aud"}},
		Policy: []Policy{{Service: "orders", Auth: "jwt"}},
	})
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "demo", "iss": "iss", "aud": "aud", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte("s3cret"))
	if err != nil {
		b.Fatal(err)
	}
	runBenchHeader(b, g, "Authorization", "Bearer "+tok)
}

// BenchmarkGatewayRateLimit: a per-client token bucket that always admits,
// with the RateLimit headers written.
func BenchmarkGatewayRateLimit(b *testing.B) {
	g := benchPolicyGateway(b, Policies{Policy: []Policy{{Service: "orders", Rate: 1e9, Burst: 1 << 30}}})
	runBench(b, g)
}

// BenchmarkGatewayAPIKeyRateLimit: API key and a per-consumer bucket, as
// examples/gateway.toml sets up.
func BenchmarkGatewayAPIKeyRateLimit(b *testing.B) {
	g := benchPolicyGateway(b, Policies{
		Auth:   map[string]AuthConfig{"keys": {Type: AuthAPIKey, Keys: map[string]string{"demo-key": "demo"}}},
		Policy: []Policy{{Service: "orders", Auth: "keys", Consumers: []string{"demo"}, Rate: 1e9, Burst: 1 << 30}},
	})
	runBenchHeader(b, g, "X-API-Key", "demo-key")
}
