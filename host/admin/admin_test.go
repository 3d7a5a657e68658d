package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var client = &http.Client{Timeout: 10 * time.Second}

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
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
	return resp.StatusCode, string(b)
}

func start(t *testing.T, cfg Config, src Source) *Server {
	t.Helper()
	s, err := New(cfg, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func TestValidateRefusesNetworkWithoutToken(t *testing.T) {
	for _, c := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{Addr: "127.0.0.1:8081"}, true},
		{Config{Addr: "[::1]:8081"}, true},
		{Config{Addr: "localhost:8081"}, true},
		{Config{Addr: ":8081"}, false}, // every interface
		{Config{Addr: "0.0.0.0:8081"}, false},
		{Config{Addr: "192.0.2.10:8081"}, false},
		{Config{Addr: "0.0.0.0:8081", Token: "s3cret"}, true},
		{Config{Addr: "0.0.0.0:8081", Public: true}, true},
		{Config{Addr: "no-port"}, false},
	} {
		err := c.cfg.Validate()
		if (err == nil) != c.ok {
			t.Errorf("%+v: Validate() = %v, want ok=%v", c.cfg, err, c.ok)
		}
		if !c.ok && c.cfg.Addr != "no-port" && !errors.Is(err, ErrNotLoopback) {
			t.Errorf("%+v: error %v does not wrap ErrNotLoopback", c.cfg, err)
		}
	}
	if _, err := New(Config{Addr: "0.0.0.0:0"}, Source{}, nil); !errors.Is(err, ErrNotLoopback) {
		t.Fatalf("New on 0.0.0.0 without token: %v", err)
	}
}

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "meshd_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	var ready atomic.Bool
	s := start(t, Config{Addr: "127.0.0.1:0"}, Source{
		Registry: reg,
		Ready: func(context.Context) error {
			if !ready.Load() {
				return errors.New("plugins not loaded yet")
			}
			return nil
		},
		Services: func() []Service {
			return []Service{{Name: "order", Version: "abc", Status: "UP", Instances: Instances{Idle: 1}, Routes: []string{"POST /orders"}}}
		},
	})
	base := "http://" + s.Addr()
	if code, body := get(t, base+"/metrics", ""); code != 200 || !strings.Contains(body, "meshd_test_total 3") {
		t.Fatalf("/metrics: %d %q", code, body)
	}
	if code, _ := get(t, base+"/healthz", ""); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	if code, body := get(t, base+"/readyz", ""); code != 503 || !strings.Contains(body, "plugins not loaded yet") {
		t.Fatalf("/readyz before ready: %d %q", code, body)
	}
	ready.Store(true)
	if code, _ := get(t, base+"/readyz", ""); code != 200 {
		t.Fatalf("/readyz when ready: %d", code)
	}
	code, body := get(t, base+"/v1/services", "")
	var v struct{ Services []Service }
	if err := json.Unmarshal([]byte(body), &v); code != 200 || err != nil {
		t.Fatalf("/v1/services: %d %q %v", code, body, err)
	}
	if len(v.Services) != 1 || v.Services[0].Name != "order" || v.Services[0].Routes[0] != "POST /orders" {
		t.Fatalf("/v1/services: %+v", v.Services)
	}
	if code, _ := get(t, base+"/nope", ""); code != 404 {
		t.Fatalf("/nope: %d", code)
	}
}

func TestTokenIsRequiredWhenSet(t *testing.T) {
	s := start(t, Config{Addr: "127.0.0.1:0", Token: "s3cret"}, Source{Registry: prometheus.NewRegistry()})
	base := "http://" + s.Addr()
	for _, c := range []struct {
		path, token string
		want        int
	}{
		{"/metrics", "", 401},
		{"/metrics", "wrong", 401},
		{"/metrics", "s3cret", 200},
		{"/v1/services", "", 401},
		{"/v1/services", "s3cret", 200},
		{"/healthz", "", 200}, // probes stay open
		{"/readyz", "", 200},
	} {
		if code, body := get(t, base+c.path, c.token); code != c.want {
			t.Errorf("%s with token %q: %d %q, want %d", c.path, c.token, code, body, c.want)
		}
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	s, err := New(Config{Addr: "127.0.0.1:0"}, Source{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // never started, closed twice
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	s2 := start(t, Config{Addr: "127.0.0.1:0"}, Source{})
	addr := s2.Addr()
	for range 2 {
		if err := s2.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.Get("http://" + addr + "/healthz"); err == nil {
		t.Fatal("still serving after Close")
	}
}
