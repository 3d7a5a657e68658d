package admin

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The console is mounted at / behind the admin API's own checks: the
// token (as a Bearer token, or as a browser's Basic password), the Host
// and the Origin; its data comes from the listener's registry, sampled
// while the listener runs (Close stops the sampler: TestMain checks).
func TestConsoleMounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshd_gateway_requests_total"},
		[]string{"service", "route", "method", "code"})
	reg.MustRegister(requests)
	s := start(t, Config{Addr: "127.0.0.1:0", Token: "s3cret"}, Source{Registry: reg})
	addr := s.Addr()
	bearer := map[string]string{"Authorization": "Bearer s3cret"}
	basic := func(user, password string) map[string]string {
		req, _ := http.NewRequest("GET", "/", nil)
		req.SetBasicAuth(user, password)
		return map[string]string{"Authorization": req.Header.Get("Authorization")}
	}

	code, h, _ := send(t, addr, "GET", "/", addr, nil)
	if code != 401 || !strings.Contains(strings.Join(h.Values("WWW-Authenticate"), "\n"), "Basic realm=") {
		t.Fatalf("GET / without the token: %d, WWW-Authenticate %q; want 401 offering Basic", code, h.Values("WWW-Authenticate"))
	}
	for name, hdr := range map[string]map[string]string{
		"bearer":             bearer,
		"basic, any user":    basic("operator", "s3cret"),
		"basic, no user":     basic("", "s3cret"),
		"wrong basic":        basic("s3cret", "wrong"),
		"bearer as password": basic("admin", "Bearer s3cret"),
	} {
		want := 200
		if strings.HasPrefix(name, "wrong") || name == "bearer as password" {
			want = 401
		}
		code, h, body := send(t, addr, "GET", "/", addr, hdr)
		if code != want {
			t.Errorf("%s: GET / %d, want %d", name, code, want)
			continue
		}
		if want == 200 && (h.Get("Content-Type") != "text/html; charset=utf-8" || !strings.Contains(body, "meshd console") ||
			!strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'")) {
			t.Errorf("%s: GET / answered %s with CSP %q", name, h.Get("Content-Type"), h.Get("Content-Security-Policy"))
		}
	}
	if code, _, _ := send(t, addr, "GET", "/", "evil.example:80", bearer); code != 403 {
		t.Errorf("GET / for another Host: %d, want 403", code)
	}
	withOrigin := map[string]string{"Authorization": "Bearer s3cret", "Origin": "http://evil.example"}
	if code, _, _ := send(t, addr, "GET", "/v1/console", addr, withOrigin); code != 403 {
		t.Errorf("GET /v1/console from another origin: %d, want 403", code)
	}
	if code, h, _ := send(t, addr, "POST", "/", addr, bearer); code != 405 || h.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %d, Allow %q; want 405 with GET, HEAD", code, h.Get("Allow"))
	}
	if code, _, _ := send(t, addr, "GET", "/console/console.js", addr, basic("", "s3cret")); code != 200 {
		t.Errorf("GET /console/console.js: %d", code)
	}

	// The sampler reads the listener's registry.
	requests.WithLabelValues("order", "POST /orders", "POST", "201").Add(3)
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _, body := send(t, addr, "GET", "/v1/console", addr, bearer)
		var d struct {
			Routes []struct {
				Route    string  `json:"route"`
				Requests float64 `json:"requests"`
			} `json:"routes"`
		}
		if code == 200 && json.Unmarshal([]byte(body), &d) == nil && len(d.Routes) == 1 &&
			d.Routes[0].Route == "POST /orders" && d.Routes[0].Requests == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /v1/console never showed the 3 requests: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
