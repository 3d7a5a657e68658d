package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/meshd/meshd/abi"
)

var keyPolicies = Policies{
	Auth: map[string]AuthConfig{
		"keys": {Type: AuthAPIKey, Keys: map[string]string{"demo-key": "demo", "other-key": "other"}},
	},
	Policy: []Policy{{Route: "POST /orders", Auth: "keys", Consumers: []string{"demo"}}},
}

func newPolicyGateway(t *testing.T, p Policies) (*Gateway, *fakeInvoker) {
	t.Helper()
	g, inv := newTestGateway(t, Config{}, testRoutes)
	if err := g.SetPolicies(p); err != nil {
		t.Fatalf("SetPolicies: %v", err)
	}
	t.Cleanup(func() { g.Close() })
	return g, inv
}

func TestAPIKeyAuth(t *testing.T) {
	g, _ := newPolicyGateway(t, keyPolicies)

	w := do(g, "POST", "/orders", "", nil)
	doc := problemDoc(t, w, 401)
	if got := w.Header().Get("WWW-Authenticate"); got != `Bearer realm="meshd"` {
		t.Fatalf("WWW-Authenticate %q", got)
	}
	if !strings.Contains(doc["detail"].(string), "missing") {
		t.Fatalf("detail %v", doc["detail"])
	}

	w = do(g, "POST", "/orders", "", map[string]string{"Authorization": "Bearer wrong"})
	problemDoc(t, w, 401)
	if got := w.Header().Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) {
		t.Fatalf("WWW-Authenticate %q", got)
	}

	for _, h := range []map[string]string{
		{"Authorization": "Bearer demo-key"},
		{"Authorization": "bearer demo-key"},
		{"X-API-Key": "demo-key"},
	} {
		e := decodeEcho(t, do(g, "POST", "/orders", "", h))
		if e.Consumer != "demo" {
			t.Fatalf("%v: consumer %q, want demo", h, e.Consumer)
		}
	}

	// A valid key of a consumer the route does not allow.
	doc = problemDoc(t, do(g, "POST", "/orders", "", map[string]string{"X-API-Key": "other-key"}), 403)
	if !strings.Contains(doc["detail"].(string), `"other"`) {
		t.Fatalf("403 detail %v", doc["detail"])
	}

	// Routes without a policy stay open and anonymous.
	if e := decodeEcho(t, do(g, "GET", "/orders/1", "", nil)); e.Consumer != "" {
		t.Fatalf("open route: consumer %q", e.Consumer)
	}
}

func TestConsumersWithoutAuthForbidden(t *testing.T) {
	g, _ := newPolicyGateway(t, Policies{Policy: []Policy{{Service: "files", Consumers: []string{"x"}}}})
	problemDoc(t, do(g, "GET", "/files/a", "", nil), 403)
}

func TestPolicyPrecedence(t *testing.T) {
	p := Policies{
		Auth: map[string]AuthConfig{"keys": {Type: AuthAPIKey, Keys: map[string]string{"k": "c"}}},
		Policy: []Policy{
			{Service: "orders", Auth: "keys"},
			{Route: "GET /orders/{id}", Auth: AuthNone},
			{Prefix: "/files/", Auth: "keys"},
			{Prefix: "/files/public/", Auth: AuthNone},
		},
	}
	g, _ := newPolicyGateway(t, p)
	cases := []struct {
		method, target string
		status         int
	}{
		{"POST", "/orders", 401},           // service policy
		{"DELETE", "/orders/1", 401},       // service policy
		{"GET", "/orders/1", 200},          // route policy beats the service's
		{"GET", "/files/a/b", 401},         // prefix
		{"PUT", "/files/public/x", 401},    // the route pattern "/files/{bucket}/{name}" is not under /files/public/
		{"GET", "/", 200},                  // no policy
		{"GET", "/files/public/x", 401},    // prefix policies match the route pattern, not each request path
		{"HEAD", "/files/public/x", 401},   // same
		{"GET", "/orders/1?x=1", 200},      // query does not matter
		{"DELETE", "/orders/77", 401},      // service policy again
		{"POST", "/orders?k=1", 401},       // same
		{"GET", "/files/x?y", 401},         // prefix
		{"PUT", "/files/bucket/name", 401}, // prefix /files/
	}
	for _, c := range cases {
		w := do(g, c.method, c.target, "", nil)
		if w.Code != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.target, w.Code, c.status)
		}
	}
}

// TestRateLimitConcurrent: with a rate too small to refill during the test
// and a burst of N, concurrent clients of one consumer get exactly N
// requests through.
func TestRateLimitConcurrent(t *testing.T) {
	const burst = 7
	p := Policies{
		Auth:   map[string]AuthConfig{"keys": {Type: AuthAPIKey, Keys: map[string]string{"k": "c"}}},
		Policy: []Policy{{Service: "orders", Auth: "keys", Rate: 0.0001, Burst: burst}},
	}
	g, _ := newPolicyGateway(t, p)
	var admitted, limited atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan string, 200)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 5; j++ {
				w := do(g, "GET", "/orders/1", "", map[string]string{"X-API-Key": "k"})
				switch w.Code {
				case 200:
					admitted.Add(1)
				case 429:
					limited.Add(1)
					if w.Header().Get("Retry-After") == "" || w.Header().Get("Content-Type") != ProblemContentType {
						errs <- "429 without Retry-After or problem+json"
					}
				default:
					errs <- "unexpected status " + w.Result().Status
				}
				if w.Header().Get("RateLimit-Policy") != `"service orders";q=7;w=70000` || !strings.HasPrefix(w.Header().Get("RateLimit"), `"service orders";r=`) {
					errs <- "RateLimit headers: " + w.Header().Get("RateLimit-Policy") + " / " + w.Header().Get("RateLimit")
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	if admitted.Load() != burst || limited.Load() != 100-burst {
		t.Fatalf("admitted %d, limited %d; want %d and %d", admitted.Load(), limited.Load(), burst, 100-burst)
	}
}

// TestRateLimitPerClientAddress: anonymous clients get a bucket per
// address; a consumer's bucket is its own.
func TestRateLimitPerClientAddress(t *testing.T) {
	g, _ := newPolicyGateway(t, Policies{Policy: []Policy{{Route: "GET /orders/{id}", Rate: 0.0001, Burst: 1}}})
	from := func(addr string) int {
		r := httptest.NewRequest("GET", "/orders/1", nil)
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		return w.Code
	}
	if c := from("10.0.0.1:1000"); c != 200 {
		t.Fatalf("first from 10.0.0.1: %d", c)
	}
	if c := from("10.0.0.1:2000"); c != 429 {
		t.Fatalf("second from 10.0.0.1 (other port): %d, want 429", c)
	}
	if c := from("[::1]:1000"); c != 200 {
		t.Fatalf("first from ::1: %d", c)
	}
	// Other routes are not limited.
	if c := do(g, "POST", "/orders", "", nil).Code; c != 200 {
		t.Fatalf("POST /orders: %d", c)
	}
}

// TestRateLimitSurvivesSwaps: buckets carry over route and policy swaps
// that keep the limit.
func TestRateLimitSurvivesSwaps(t *testing.T) {
	p := Policies{Policy: []Policy{{Service: "orders", Rate: 0.0001, Burst: 1}}}
	g, _ := newPolicyGateway(t, p)
	if c := do(g, "GET", "/orders/1", "", nil).Code; c != 200 {
		t.Fatalf("first: %d", c)
	}
	if err := g.SetRoutes(testRoutes[:3]); err != nil {
		t.Fatal(err)
	}
	if err := g.SetPolicies(p); err != nil {
		t.Fatal(err)
	}
	if c := do(g, "GET", "/orders/1", "", nil).Code; c != 429 {
		t.Fatalf("after swaps: %d, want 429", c)
	}
	// A changed limit starts afresh.
	p.Policy[0].Burst = 2
	if err := g.SetPolicies(p); err != nil {
		t.Fatal(err)
	}
	if c := do(g, "GET", "/orders/1", "", nil).Code; c != 200 {
		t.Fatalf("after a new limit: %d, want 200", c)
	}
}

func TestLimiterEviction(t *testing.T) {
	s := newLimiterStore("x", 10, 2)
	now := time.Unix(1000, 0)
	s.now = func() time.Time { return now }
	w := httptest.NewRecorder()
	for i := 0; i < 100; i++ {
		s.allow(w, bucketKey{id: "k" + strconv.Itoa(i)})
	}
	if s.size() != 100 {
		t.Fatalf("size %d, want 100", s.size())
	}
	now = now.Add(2 * limiterSweepEvery) // every bucket is full again
	s.allow(w, bucketKey{anonymous: true, id: "new"})
	if s.size() != 1 {
		t.Fatalf("after the sweep: %d buckets, want 1", s.size())
	}
}

func TestPolicyLimits(t *testing.T) {
	p := Policies{Policy: []Policy{{Route: "POST /orders", RequestTimeout: 20 * time.Millisecond, MaxBodyBytes: 8}}}
	g, inv := newPolicyGateway(t, p)
	problemDoc(t, do(g, "POST", "/orders", `{"a":"0123456789"}`, map[string]string{"Content-Type": "application/json"}), 413)
	inv.set(func(ctx context.Context, service string, req *abi.Request, resp *abi.Response) error {
		<-ctx.Done()
		return ctx.Err()
	})
	doc := problemDoc(t, do(g, "POST", "/orders", "", nil), 504)
	if !strings.Contains(doc["detail"].(string), "20ms") {
		t.Fatalf("504 detail %v", doc["detail"])
	}
}

func TestMount(t *testing.T) {
	g, _ := newPolicyGateway(t, Policies{Mounts: []Mount{
		{Prefix: "/api/orders", Service: "orders", StripPrefix: true},
		{Prefix: "/legacy/", Service: "files"},
	}})
	e := decodeEcho(t, do(g, "GET", "/api/orders/orders/42", "", nil))
	if e.Service != "orders" || e.Route != "GET /orders/{id}" || e.Path != "/orders/42" || e.Params["id"] != "42" {
		t.Fatalf("stripped mount: %+v", e)
	}
	problemDoc(t, do(g, "GET", "/api/orders/nope", "", nil), 404)
	w := do(g, "PATCH", "/api/orders/orders/1", "", nil)
	problemDoc(t, w, 405)
	// Without stripping, the service's routes see the whole path: none
	// of files' routes matches /legacy/..., so 404.
	problemDoc(t, do(g, "GET", "/legacy/x", "", nil), 404)
	// The plain routes still serve.
	decodeEcho(t, do(g, "GET", "/orders/1", "", nil))
}

func TestSetPoliciesAllOrNothing(t *testing.T) {
	g, _ := newPolicyGateway(t, keyPolicies)
	bad := Policies{
		Auth: map[string]AuthConfig{
			"j":    {Type: AuthJWT},
			"k":    {Type: "ldap"},
			"none": {Type: AuthAPIKey, Keys: map[string]string{"a": "b"}},
			"svc":  {Type: AuthAPIKey, Keys: map[string]string{"k": "service:order"}},
		},
		Mounts: []Mount{{Prefix: "api", Service: ""}},
		Policy: []Policy{
			{Route: "FETCH /x", Auth: "missing", Rate: 1},
			{Service: "a", Prefix: "/b"},
			{Service: "s", Rate: -1, Burst: 3},
			{Service: "t", Auth: "svc", Consumers: []string{"service:user"}},
		},
	}
	err := g.SetPolicies(bad)
	if err == nil {
		t.Fatal("SetPolicies accepted bad policies")
	}
	for _, want := range []string{
		"auth.j: a jwt authenticator needs exactly one of",
		`auth.k.type: "ldap"`,
		`auth.none: "none" is reserved`,
		"mount[0].prefix",
		"mount[0].service: must be set",
		`policy[0].route: "FETCH /x"`,
		`policy[0].auth: no authenticator "missing"`,
		"policy[0].burst: must be at least 1",
		"policy[1]: needs exactly one of service, route or prefix",
		"policy[2].rate: must not be negative",
		`auth.svc.keys: consumer "service:order": names starting with "service:" are reserved for services`,
		`policy[3].consumers: consumer "service:user": names starting with "service:" are reserved for services`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("no *FieldError in %v", err)
	}
	// The old policies still serve.
	problemDoc(t, do(g, "POST", "/orders", "", nil), 401)
}

func TestObserveConsumer(t *testing.T) {
	var got atomic.Value
	g, _ := newTestGateway(t, Config{Observe: func(o Observation) { got.Store(o) }}, testRoutes)
	if err := g.SetPolicies(keyPolicies); err != nil {
		t.Fatal(err)
	}
	do(g, "POST", "/orders", "", map[string]string{"X-API-Key": "demo-key"})
	if o := got.Load().(Observation); o.Consumer != "demo" || o.Status != 200 || o.Route != "POST /orders" {
		t.Fatalf("observation %+v", o)
	}
	do(g, "POST", "/orders", "", nil)
	if o := got.Load().(Observation); o.Consumer != "" || o.Status != 401 {
		t.Fatalf("observation %+v", o)
	}
}

// --- JWT ---

func hsToken(t *testing.T, secret string, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

func TestJWTHS256(t *testing.T) {
	p := Policies{
		Auth:   map[string]AuthConfig{"jwt": {Type: AuthJWT, Secret: "s3cret", Issuer: "https://issuer.test", Audience: "meshd"}},
		Policy: []Policy{{Service: "orders", Auth: "jwt"}},
	}
	g, _ := newPolicyGateway(t, p)
	now := time.Now()
	good := jwt.MapClaims{"sub": "alice", "iss": "https://issuer.test", "aud": "meshd", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
	if e := decodeEcho(t, do(g, "GET", "/orders/1", "", bearer(hsToken(t, "s3cret", good)))); e.Consumer != "alice" {
		t.Fatalf("consumer %q", e.Consumer)
	}
	with := func(k string, v any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for k, v := range good {
			c[k] = v
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	cases := []struct {
		name, tok, detail string
	}{
		{"expired", hsToken(t, "s3cret", with("exp", now.Add(-time.Minute).Unix())), "expired"},
		{"wrong secret", hsToken(t, "other", good), "signature"},
		{"wrong issuer", hsToken(t, "s3cret", with("iss", "https://evil.test")), "issuer"},
		{"wrong audience", hsToken(t, "s3cret", with("aud", "other")), "audience"},
		{"no exp", hsToken(t, "s3cret", with("exp", nil)), "exp"},
		{"no sub", hsToken(t, "s3cret", with("sub", nil)), "sub"},
		{"a service's consumer", hsToken(t, "s3cret", with("sub", "service:payment")), "reserved for services"},
		{"not yet valid", hsToken(t, "s3cret", with("nbf", now.Add(time.Hour).Unix())), "not valid yet"},
		{"garbage", "not.a.jwt", "not valid"},
		{"alg none", noneToken(t, good), "not valid"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := do(g, "GET", "/orders/1", "", bearer(c.tok))
			doc := problemDoc(t, w, 401)
			if !strings.Contains(doc["detail"].(string), c.detail) {
				t.Fatalf("detail %q lacks %q", doc["detail"], c.detail)
			}
			if !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Fatalf("WWW-Authenticate %q", w.Header().Get("WWW-Authenticate"))
			}
		})
	}
}

func noneToken(t *testing.T, claims jwt.MapClaims) string {
	s, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(kid string, k *rsa.PrivateKey) map[string]string {
	return map[string]string{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
		"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWK(t *testing.T, kid string, k *ecdsa.PrivateKey) map[string]string {
	raw, err := k.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"kty": "EC", "kid": kid, "alg": "ES256", "use": "sig", "crv": "P-256",
		"x": b64(raw[1:33]), "y": b64(raw[33:])}
}

func jwks(t *testing.T, keys ...map[string]string) []byte {
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func signed(t *testing.T, m jwt.SigningMethod, kid string, key any, sub string) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJWTJWKSFileES256(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, jwks(t, ecJWK(t, "e1", k)), 0o600); err != nil {
		t.Fatal(err)
	}
	g, _ := newPolicyGateway(t, Policies{
		Auth:   map[string]AuthConfig{"jwt": {Type: AuthJWT, JWKSFile: file}},
		Policy: []Policy{{Service: "orders", Auth: "jwt"}},
	})
	if e := decodeEcho(t, do(g, "GET", "/orders/1", "", bearer(signed(t, jwt.SigningMethodES256, "e1", k, "bob")))); e.Consumer != "bob" {
		t.Fatalf("consumer %q", e.Consumer)
	}
	problemDoc(t, do(g, "GET", "/orders/1", "", bearer(signed(t, jwt.SigningMethodES256, "e1", other, "bob"))), 401)
	// An HS256 token is refused whatever its key: the algorithm is not allowed.
	problemDoc(t, do(g, "GET", "/orders/1", "", bearer(hsToken(t, "x", jwt.MapClaims{"sub": "m", "exp": time.Now().Add(time.Hour).Unix()}))), 401)
}

// TestJWKSRotation serves a JWKS over HTTP, rotates its key, and checks
// that a token signed with the new key is accepted (keyfunc refetches
// the set on an unknown kid) and one signed with the retired key is not.
func TestJWKSRotation(t *testing.T) {
	k1, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	set := jwks(t, rsaJWK("k1", k1))
	var fetches atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(set)
	}))
	defer srv.Close()

	g, _ := newPolicyGateway(t, Policies{
		Auth:   map[string]AuthConfig{"jwt": {Type: AuthJWT, JWKSURL: srv.URL, JWKSMinRefresh: time.Millisecond}},
		Policy: []Policy{{Service: "orders", Auth: "jwt"}},
	})
	if e := decodeEcho(t, do(g, "GET", "/orders/1", "", bearer(signed(t, jwt.SigningMethodRS256, "k1", k1, "carol")))); e.Consumer != "carol" {
		t.Fatalf("consumer %q", e.Consumer)
	}
	before := fetches.Load()

	mu.Lock()
	set = jwks(t, rsaJWK("k2", k2))
	mu.Unlock()
	if e := decodeEcho(t, do(g, "GET", "/orders/1", "", bearer(signed(t, jwt.SigningMethodRS256, "k2", k2, "dave")))); e.Consumer != "dave" {
		t.Fatalf("consumer %q", e.Consumer)
	}
	if fetches.Load() <= before {
		t.Fatalf("the set was not fetched again (%d fetches)", fetches.Load())
	}
	// Give the refresh limiter room, then the retired key must fail.
	time.Sleep(5 * time.Millisecond)
	problemDoc(t, do(g, "GET", "/orders/1", "", bearer(signed(t, jwt.SigningMethodRS256, "k1", k1, "carol"))), 401)
	// A wrongly signed token with the current kid fails too.
	problemDoc(t, do(g, "GET", "/orders/1", "", bearer(signed(t, jwt.SigningMethodRS256, "k2", k1, "eve"))), 401)
}

// TestShutdownFinishesInFlight: http.Server.Shutdown (what the daemon
// calls on SIGTERM) lets a slow request in flight complete.
func TestShutdownFinishesInFlight(t *testing.T) {
	g, inv := newTestGateway(t, Config{}, testRoutes)
	started := make(chan struct{})
	release := make(chan struct{})
	inv.set(func(ctx context.Context, service string, req *abi.Request, resp *abi.Response) error {
		close(started)
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		resp.Status = 201
		resp.Body = []byte(`{"ok":true}`)
		return nil
	})
	srv := httptest.NewUnstartedServer(g)
	srv.Config = NewServer("", g, ServerConfig{})
	srv.Start()
	defer srv.Close()

	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Post(srv.URL+"/orders", "application/json", strings.NewReader(`{}`))
		if err != nil {
			done <- result{err: err}
			return
		}
		resp.Body.Close()
		done <- result{code: resp.StatusCode}
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the service")
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- srv.Config.Shutdown(ctx)
	}()
	// Shutdown must wait for the request: it cannot return before release.
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	r := <-done
	if r.err != nil || r.code != 201 {
		t.Fatalf("in-flight request: %d %v, want 201", r.code, r.err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// New connections are refused.
	if _, err := http.Get(srv.URL + "/orders/1"); err == nil {
		t.Fatal("a request after Shutdown was served")
	}
}
