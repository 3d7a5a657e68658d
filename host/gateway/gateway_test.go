package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/host/fault"
	"github.com/meshd/meshd/host/kv"
	"github.com/meshd/meshd/runtime"
)

func TestRouting(t *testing.T) {
	g, _ := newTestGateway(t, Config{}, testRoutes)
	tests := []struct {
		method, target string
		service, route string
		params         map[string]string
		query          string
	}{
		{"GET", "/orders/42", "orders", "GET /orders/{id}", map[string]string{"id": "42"}, ""},
		{"GET", "/orders/42?expand=items&x=1", "orders", "GET /orders/{id}", map[string]string{"id": "42"}, "expand=items&x=1"},
		{"DELETE", "/orders/7", "orders", "DELETE /orders/{id}", map[string]string{"id": "7"}, ""},
		{"POST", "/orders", "orders", "POST /orders", map[string]string{}, ""},
		{"GET", "/files/a/b/c.txt", "files", "GET /files/{rest...}", map[string]string{"rest": "a/b/c.txt"}, ""},
		{"GET", "/files/", "files", "GET /files/{rest...}", map[string]string{"rest": ""}, ""},
		{"PUT", "/files/b1/n1", "files", "PUT /files/{bucket}/{name}", map[string]string{"bucket": "b1", "name": "n1"}, ""},
		{"GET", "/", "home", "GET /{$}", map[string]string{}, ""},
		{"HEAD", "/orders/1", "orders", "GET /orders/{id}", map[string]string{"id": "1"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			w := do(g, tt.method, tt.target, "", nil)
			if tt.method == "HEAD" {
				if w.Code != 200 || w.Body.Len() != 0 {
					t.Fatalf("HEAD: status %d, body %q; want 200 and no body", w.Code, w.Body)
				}
				return
			}
			e := decodeEcho(t, w)
			if e.Service != tt.service || e.Route != tt.route || e.Method != tt.method || e.Query != tt.query {
				t.Fatalf("got service %q route %q method %q query %q", e.Service, e.Route, e.Method, e.Query)
			}
			if e.Path != strings.SplitN(tt.target, "?", 2)[0] {
				t.Fatalf("path %q", e.Path)
			}
			if fmt.Sprint(e.Params) != fmt.Sprint(tt.params) {
				t.Fatalf("params %v, want %v", e.Params, tt.params)
			}
			if w.Header().Get("X-Service") != tt.service {
				t.Fatalf("response header X-Service %q", w.Header().Get("X-Service"))
			}
		})
	}
}

func TestNotFound(t *testing.T) {
	g, _ := newTestGateway(t, Config{}, testRoutes)
	w := do(g, "GET", "/nope/x", "", nil)
	doc := problemDoc(t, w, 404)
	if doc["title"] != "no route" || !strings.Contains(doc["detail"].(string), "GET /nope/x") || doc["instance"] != "/nope/x" {
		t.Fatalf("problem %v", doc)
	}
}

func TestEmptyTableServes404(t *testing.T) {
	g := New(Config{}, &fakeInvoker{}, nil)
	for _, target := range []string{"/", "/a", "/a/b?c=d"} {
		problemDoc(t, do(g, "POST", target, "", nil), 404)
	}
	if len(g.Routes()) != 0 {
		t.Fatalf("Routes() = %v, want empty", g.Routes())
	}
}

func TestMethodNotAllowed(t *testing.T) {
	g, _ := newTestGateway(t, Config{}, testRoutes)
	tests := []struct{ method, target, allow string }{
		{"POST", "/orders/1", "GET, HEAD, DELETE"},
		{"GET", "/orders", "POST"},
		{"DELETE", "/files/x/y", "GET, HEAD, PUT"},
		{"PATCH", "/files/x", "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			w := do(g, tt.method, tt.target, "", nil)
			doc := problemDoc(t, w, 405)
			if got := w.Header().Get("Allow"); got != tt.allow {
				t.Fatalf("Allow %q, want %q", got, tt.allow)
			}
			if !strings.Contains(doc["detail"].(string), tt.method) {
				t.Fatalf("detail %q does not name the method", doc["detail"])
			}
		})
	}
}

func TestSetRoutesErrors(t *testing.T) {
	tests := []struct {
		name   string
		routes []Route
		want   []string
	}{
		{"same route two services", []Route{
			{Service: "a", Method: "GET", Path: "/x/{id}"},
			{Service: "b", Method: "GET", Path: "/x/{id}"},
		}, []string{`"a"`, `"b"`, "GET /x/{id}"}},
		{"same route other wildcard name", []Route{
			{Service: "a", Method: "GET", Path: "/x/{id}"},
			{Service: "b", Method: "GET", Path: "/x/{key}"},
		}, []string{`"a"`, `"b"`, "GET /x/{"}},
		{"overlapping patterns", []Route{
			{Service: "a", Method: "GET", Path: "/x/{id}"},
			{Service: "b", Method: "GET", Path: "/{kind}/y"},
		}, []string{`"a"`, `"b"`, "GET /x/{id}", "GET /{kind}/y", "conflicts"}},
		{"same route twice in one service", []Route{
			{Service: "a", Method: "GET", Path: "/x"},
			{Service: "a", Method: "GET", Path: "/x"},
		}, []string{`"a"`, "twice"}},
		{"invalid pattern", []Route{{Service: "a", Method: "GET", Path: "/x/{id"}}, []string{`"a"`, "/x/{id", "invalid pattern"}},
		{"invalid wildcard", []Route{{Service: "a", Method: "GET", Path: "/x/{a...}/y"}}, []string{`"a"`, "invalid pattern"}},
		{"bad method", []Route{{Service: "a", Method: "FETCH", Path: "/x"}}, []string{`"a"`, "FETCH"}},
		{"lower-case method", []Route{{Service: "a", Method: "get", Path: "/x"}}, []string{"get"}},
		{"host in path", []Route{{Service: "a", Method: "GET", Path: "example.com/x"}}, []string{"must start"}},
		{"empty service", []Route{{Method: "GET", Path: "/x"}}, []string{"empty service"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, _ := newTestGateway(t, Config{}, testRoutes)
			before := g.Routes()
			err := g.SetRoutes(tt.routes)
			if err == nil {
				t.Fatal("SetRoutes succeeded, want an error")
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if strings.Contains(err.Error(), ".go:") {
				t.Errorf("error %q leaks a source location", err)
			}
			// The old table keeps serving.
			if !slices.Equal(g.Routes(), before) {
				t.Fatalf("Routes changed after a failed SetRoutes")
			}
			if e := decodeEcho(t, do(g, "GET", "/orders/1", "", nil)); e.Service != "orders" {
				t.Fatalf("old route not serving: %+v", e)
			}
		})
	}
}

func TestSetRoutesReportsEveryProblem(t *testing.T) {
	g := New(Config{}, &fakeInvoker{}, nil)
	err := g.SetRoutes([]Route{
		{Service: "a", Method: "FETCH", Path: "/x"},
		{Service: "b", Method: "GET", Path: "/y/{"},
	})
	if err == nil || !strings.Contains(err.Error(), "FETCH") || !strings.Contains(err.Error(), "/y/{") {
		t.Fatalf("error %v, want both problems", err)
	}
}

func TestRoutesSorted(t *testing.T) {
	g, _ := newTestGateway(t, Config{}, testRoutes)
	got := g.Routes()
	if len(got) != len(testRoutes) || !slices.IsSortedFunc(got, compareRoutes) {
		t.Fatalf("Routes() = %v", got)
	}
	got[0].Service = "mutated"
	if g.Routes()[0].Service == "mutated" {
		t.Fatal("Routes() returned the gateway's own slice")
	}
}

func TestSwapUnderLoad(t *testing.T) {
	g, _ := newTestGateway(t, Config{}, testRoutes)
	v1 := slices.Clone(testRoutes)
	v2 := slices.Clone(testRoutes)
	for i := range v2 {
		if v2[i].Service == "orders" {
			v2[i].Service = "orders-v2"
		}
	}
	v2 = append(v2, Route{Service: "extra", Method: "GET", Path: "/extra"})

	const workers, requests, swaps = 4, 200, 100
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range requests {
				w := do(g, "GET", fmt.Sprintf("/orders/%d-%d", i, j), "", nil)
				svc := w.Header().Get("X-Service")
				if w.Code != 200 || (svc != "orders" && svc != "orders-v2") {
					errs <- fmt.Errorf("request %d/%d: status %d service %q body %s", i, j, w.Code, svc, w.Body)
					return
				}
			}
		}()
	}
	for i := range swaps {
		routes := v1
		if i%2 == 0 {
			routes = v2
		}
		if err := g.SetRoutes(routes); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestRequestID(t *testing.T) {
	g, _ := newTestGateway(t, Config{}, testRoutes)
	uuidRE := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	tests := []struct {
		name, in string
		keep     bool
	}{
		{"client id", "abc-123", true},
		{"128 chars", strings.Repeat("x", 128), true},
		{"printable punctuation", "id:{1}/2 ~", true},
		{"missing", "", false},
		{"129 chars", strings.Repeat("x", 129), false},
		{"non-ASCII", "idé", false},
		{"control", "a\x01b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tt.in != "" {
				hdr["X-Request-Id"] = tt.in
			}
			for _, target := range []string{"/orders/1", "/missing"} {
				w := do(g, "GET", target, "", hdr)
				got := w.Header().Get("X-Request-Id")
				if tt.keep && got != tt.in {
					t.Fatalf("%s: X-Request-Id %q, want the client's %q", target, got, tt.in)
				}
				if !tt.keep && !uuidRE.MatchString(got) {
					t.Fatalf("%s: X-Request-Id %q, want a new UUID", target, got)
				}
				if target == "/orders/1" {
					if e := decodeEcho(t, w); e.RequestID != got {
						t.Fatalf("service saw request id %q, response says %q", e.RequestID, got)
					}
				} else {
					problemDoc(t, w, 404)
				}
			}
		})
	}
	a := do(g, "GET", "/orders/1", "", nil).Header().Get("X-Request-Id")
	b := do(g, "GET", "/orders/1", "", nil).Header().Get("X-Request-Id")
	if a == b {
		t.Fatal("two generated request ids are equal")
	}
}

func TestTraceParent(t *testing.T) {
	g, _ := newTestGateway(t, Config{}, testRoutes)
	const valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tpRE := regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-01$`)
	tests := []struct {
		name, in string
		keep     bool
	}{
		{"valid", valid, true},
		{"valid unsampled", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true},
		{"missing", "", false},
		{"zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
		{"zero parent id", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},
		{"upper case", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", false},
		{"other version", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"short", "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", false},
		{"junk", "hello", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tt.in != "" {
				hdr["Traceparent"] = tt.in
			}
			e := decodeEcho(t, do(g, "GET", "/orders/1", "", hdr))
			if tt.keep && e.TraceParent != tt.in {
				t.Fatalf("traceparent %q, want %q", e.TraceParent, tt.in)
			}
			if !tt.keep && (!tpRE.MatchString(e.TraceParent) || e.TraceParent[3:35] == tt.in[min(3, len(tt.in)):min(35, len(tt.in))]) {
				t.Fatalf("traceparent %q, want a new trace", e.TraceParent)
			}
			if _, ok := e.Headers["traceparent"]; ok {
				t.Fatal("traceparent also forwarded as a header")
			}
		})
	}
}

func TestContentTypes(t *testing.T) {
	g, _ := newTestGateway(t, Config{MaxBodyBytes: 64}, testRoutes)
	tests := []struct {
		name, ct, body string
		status         int
		detail         string // for problems: a substring of detail
		forwardedCT    string // for 200s: the content type the service sees
	}{
		{"json", "application/json", `{"a":1}`, 200, "", "application/json"},
		{"json with charset", "application/json; charset=utf-8", `{"a":1}`, 200, "", "application/json; charset=utf-8"},
		{"problem json", "application/merge-patch+json", `{"a":1}`, 200, "", "application/merge-patch+json"},
		{"upper-case type", "Application/JSON", `[1]`, 200, "", "Application/JSON"},
		{"form-encoded JSON", "application/x-www-form-urlencoded", `{"a":1}`, 200, "", "application/json"},
		{"missing type JSON", "", `{"a":1}`, 200, "", "application/json"},
		{"empty body any type", "text/plain", "", 200, "", "text/plain"},
		{"invalid JSON declared", "application/json", `{not json`, 400, "JSON", ""},
		{"form-encoded non-JSON", "application/x-www-form-urlencoded", `a=1&b=2`, 400, "JSON", ""},
		{"missing type non-JSON", "", `hello`, 400, "JSON", ""},
		{"text/plain", "text/plain", `{"a":1}`, 415, "content type text/plain is not supported", ""},
		{"xml", "application/xml; charset=utf-8", `<a/>`, 415, "application/xml", ""},
		{"oversize", "application/json", `{"a":"` + strings.Repeat("x", 64) + `"}`, 413, "64", ""},
		{"limit exactly", "application/json", `"` + strings.Repeat("x", 62) + `"`, 200, "", "application/json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tt.ct != "" {
				hdr["Content-Type"] = tt.ct
			}
			w := do(g, "POST", "/orders", tt.body, hdr)
			if tt.status != 200 {
				doc := problemDoc(t, w, tt.status)
				if d, _ := doc["detail"].(string); !strings.Contains(d, tt.detail) {
					t.Fatalf("detail %q does not contain %q", d, tt.detail)
				}
				return
			}
			e := decodeEcho(t, w)
			if e.Body != tt.body {
				t.Fatalf("body %q, want %q", e.Body, tt.body)
			}
			if got := strings.Join(e.Headers["content-type"], ","); got != tt.forwardedCT {
				t.Fatalf("service saw content-type %q, want %q", got, tt.forwardedCT)
			}
		})
	}
}

func TestOversizeWithoutContentLength(t *testing.T) {
	g, _ := newTestGateway(t, Config{MaxBodyBytes: 16}, testRoutes)
	r := httptest.NewRequest("POST", "/orders", strings.NewReader(strings.Repeat("1", 100)))
	r.ContentLength = -1 // chunked: the cap must hold while reading
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	problemDoc(t, w, 413)
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		status     uint32 // service status when err is nil
		want       int
		retryAfter string
	}{
		{"timeout", fault.New("orders", fault.Timeout, errors.New("stopped")), 0, 504, ""},
		{"deadline", fmt.Errorf("wrapped: %w", context.DeadlineExceeded), 0, 504, ""},
		{"busy", fmt.Errorf("pool: %w", fault.New("orders", fault.Busy, nil)), 0, 503, "1"},
		{"unavailable", fault.New("orders", fault.Unavailable, errors.New("not loaded")), 0, 503, "1"},
		{"too large", fault.New("orders", fault.TooLarge, errors.New("input of 9 bytes")), 0, 413, ""},
		{"store refuses writes", fault.New("orders", fault.StoreRefused, errors.New("disk full")), 0, 503, "5"},
		{"circuit open", &fault.Error{Service: "payment", Kind: fault.CircuitOpen, RetryAfter: 2500 * time.Millisecond}, 0, 503, "3"},
		{"denied", fault.New("orders", fault.Denied, nil), 0, 403, ""},
		{"not found", fault.New("orders", fault.NotFound, nil), 0, 404, ""},
		{"invalid", fault.New("orders", fault.Invalid, nil), 0, 400, ""},
		{"failed", fault.New("orders", fault.Failed, errors.New("secret internal detail")), 0, 500, ""},
		{"runtime busy", fmt.Errorf("orders: 4 instances busy: %w", runtime.ErrBusy), 0, 503, "1"},
		{"runtime output too large", fmt.Errorf("orders: %w", runtime.ErrOutputTooLarge), 0, 500, ""},
		{"runtime input too large", fmt.Errorf("orders: %w", runtime.ErrTooLarge), 0, 413, ""},
		{"runtime closed", fmt.Errorf("orders: %w", runtime.ErrClosed), 0, 503, "1"},
		{"kv refuses writes", fmt.Errorf("applying 1 kv writes: %w", kv.ErrWritesRefused), 0, 503, "5"},
		{"other", errors.New("wasm trap: secret internal detail"), 0, 500, ""},
		{"status zero", nil, 0, 502, ""},
		{"status 99", nil, 99, 502, ""},
		{"status 1xx", nil, 100, 502, ""},
		{"status 600", nil, 600, 502, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			inv := &fakeInvoker{}
			g := New(Config{}, inv, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
			if err := g.SetRoutes(testRoutes); err != nil {
				t.Fatal(err)
			}
			inv.set(func(ctx context.Context, service string, req *abi.Request, resp *abi.Response) error {
				resp.Status = tt.status
				resp.Body = []byte("{}")
				return tt.err
			})
			w := do(g, "GET", "/orders/1", "", map[string]string{"X-Request-Id": "rid-1",
				"Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
			doc := problemDoc(t, w, tt.want)
			if got := w.Header().Get("Retry-After"); got != tt.retryAfter {
				t.Fatalf("Retry-After %q, want %q", got, tt.retryAfter)
			}
			if strings.Contains(w.Body.String(), "secret") {
				t.Fatalf("problem leaks the internal error: %s", w.Body)
			}
			if d, _ := doc["detail"].(string); !strings.Contains(d, "orders") {
				t.Fatalf("detail %q does not name the service", d)
			}
			for _, s := range []string{`"service":"orders"`, `"route":"GET /orders/{id}"`, `"request_id":"rid-1"`, `"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"`, fmt.Sprintf(`"status":%d`, tt.want)} {
				if !strings.Contains(logs.String(), s) {
					t.Fatalf("log %q lacks %s", logs.String(), s)
				}
			}
			if tt.err != nil && !strings.Contains(logs.String(), tt.err.Error()) {
				t.Fatalf("log %q lacks the error", logs.String())
			}
			// A service's failure is an error; a store refusing writes is
			// at debug (the store logs the episode); the rest warnings.
			level := "WARN"
			switch {
			case tt.want >= 500 && tt.want != 503 && tt.want != 504:
				level = "ERROR"
			case tt.retryAfter == "5":
				level = "DEBUG"
			}
			if !strings.Contains(logs.String(), `"level":"`+level+`"`) {
				t.Fatalf("log %q is not at %s", logs.String(), level)
			}
		})
	}
}

func TestRequestTimeout(t *testing.T) {
	g, inv := newTestGateway(t, Config{RequestTimeout: 20 * time.Millisecond}, testRoutes)
	inv.set(func(ctx context.Context, service string, req *abi.Request, resp *abi.Response) error {
		<-ctx.Done()
		return ctx.Err()
	})
	problemDoc(t, do(g, "GET", "/orders/1", "", nil), 504)
}

func TestClientGone(t *testing.T) {
	g, inv := newTestGateway(t, Config{}, testRoutes)
	ctx, cancel := context.WithCancel(context.Background())
	inv.set(func(ictx context.Context, service string, req *abi.Request, resp *abi.Response) error {
		cancel()
		<-ictx.Done()
		return ictx.Err()
	})
	r := httptest.NewRequest("GET", "/orders/1", nil).WithContext(ctx)
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	if w.Body.Len() != 0 || w.Header().Get("Content-Type") != "" {
		t.Fatalf("wrote %d %q to a client that went away", w.Code, w.Body)
	}
}

func TestPanicRecovered(t *testing.T) {
	g, inv := newTestGateway(t, Config{}, testRoutes)
	inv.set(func(context.Context, string, *abi.Request, *abi.Response) error { panic("boom") })
	doc := problemDoc(t, do(g, "GET", "/orders/1", "", nil), 500)
	if strings.Contains(fmt.Sprint(doc), "boom") {
		t.Fatalf("problem leaks the panic: %v", doc)
	}
}

func TestResponse(t *testing.T) {
	g, inv := newTestGateway(t, Config{}, testRoutes)
	pair := func(k, v string) abi.Pair { return abi.Pair{Key: []byte(k), Value: []byte(v)} }
	tests := []struct {
		name     string
		resp     abi.Response
		method   string
		check    func(t *testing.T, w *httptest.ResponseRecorder)
		wantBody string
	}{
		{"default content type", abi.Response{Status: 201, Body: []byte(`{"id":1}`)}, "GET",
			func(t *testing.T, w *httptest.ResponseRecorder) {
				if w.Code != 201 || w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Content-Length") != "8" {
					t.Fatalf("status %d headers %v", w.Code, w.Header())
				}
			}, `{"id":1}`},
		{"service headers", abi.Response{Status: 200, Headers: []abi.Pair{
			pair("content-type", "text/plain"), pair("x-a", "1"), pair("x-a", "2"),
			pair("connection", "close"), pair("transfer-encoding", "chunked"), pair("content-length", "999"),
			pair("x-request-id", "forged"), pair("bad name", "v"), pair("x-inject", "a\r\nSet-Cookie: x"),
		}, Body: []byte("hi")}, "GET",
			func(t *testing.T, w *httptest.ResponseRecorder) {
				h := w.Header()
				if h.Get("Content-Type") != "text/plain" || strings.Join(h["X-A"], ",") != "1,2" {
					t.Fatalf("headers %v", h)
				}
				for _, k := range []string{"Connection", "Transfer-Encoding", "Bad name", "X-Inject"} {
					if _, ok := h[k]; ok {
						t.Fatalf("header %s passed: %v", k, h)
					}
				}
				if h.Get("Content-Length") != "2" || h.Get("X-Request-Id") == "forged" {
					t.Fatalf("headers %v", h)
				}
			}, "hi"},
		{"no content", abi.Response{Status: 204, Body: []byte("ignored")}, "GET",
			func(t *testing.T, w *httptest.ResponseRecorder) {
				if w.Code != 204 || w.Header().Get("Content-Type") != "" {
					t.Fatalf("status %d headers %v", w.Code, w.Header())
				}
			}, ""},
		{"HEAD", abi.Response{Status: 200, Body: []byte(`{"a":1}`)}, "HEAD",
			func(t *testing.T, w *httptest.ResponseRecorder) {
				if w.Code != 200 || w.Header().Get("Content-Length") != "7" {
					t.Fatalf("status %d headers %v", w.Code, w.Header())
				}
			}, ""},
		{"service error status", abi.Response{Status: 422, Body: []byte(`{"e":1}`)}, "GET",
			func(t *testing.T, w *httptest.ResponseRecorder) {
				if w.Code != 422 {
					t.Fatalf("status %d", w.Code)
				}
			}, `{"e":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv.set(func(ctx context.Context, service string, req *abi.Request, resp *abi.Response) error {
				*resp = tt.resp
				return nil
			})
			w := do(g, tt.method, "/orders/1", "", nil)
			tt.check(t, w)
			if w.Body.String() != tt.wantBody {
				t.Fatalf("body %q, want %q", w.Body, tt.wantBody)
			}
		})
	}
}

func TestRequestHeaders(t *testing.T) {
	g, _ := newTestGateway(t, Config{}, testRoutes)
	r := httptest.NewRequest("GET", "http://shop.example/orders/1", nil)
	r.Header.Add("X-Multi", "a")
	r.Header.Add("X-Multi", "b")
	r.Header.Set("Accept", "application/json")
	r.Header.Set("Connection", "keep-alive, X-Secret-Hop")
	r.Header.Set("X-Secret-Hop", "1")
	r.Header.Set("Keep-Alive", "timeout=5")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Proxy-Authorization", "Basic x")
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	e := decodeEcho(t, w)
	if strings.Join(e.Headers["x-multi"], ",") != "a,b" || e.Headers["accept"][0] != "application/json" || e.Headers["host"][0] != "shop.example" {
		t.Fatalf("headers %v", e.Headers)
	}
	for _, k := range []string{"connection", "x-secret-hop", "keep-alive", "upgrade", "proxy-authorization", "x-request-id"} {
		if _, ok := e.Headers[k]; ok {
			t.Fatalf("hop-by-hop header %s forwarded: %v", k, e.Headers)
		}
	}
	for k := range e.Headers {
		if k != strings.ToLower(k) {
			t.Fatalf("header name %q is not lower case", k)
		}
	}
	if e.Consumer != "" {
		t.Fatalf("consumer %q, want empty", e.Consumer)
	}
}

func TestWriteProblem(t *testing.T) {
	w := httptest.NewRecorder()
	w.Header().Set("X-Request-Id", "r1")
	w.Header().Set("Content-Length", "5")
	WriteProblem(w, 429, "too many requests", "slow down", map[string]any{"retry_in": 3, "title": "ignored"})
	doc := problemDoc(t, w, 429)
	if doc["title"] != "too many requests" || doc["detail"] != "slow down" || doc["retry_in"] != float64(3) {
		t.Fatalf("problem %v", doc)
	}
	if _, ok := doc["instance"]; ok {
		t.Fatalf("instance set without a request: %v", doc)
	}
	// An extra member JSON cannot encode is dropped, not a broken body.
	w = httptest.NewRecorder()
	WriteProblem(w, 500, "t", "d", map[string]any{"bad": func() {}})
	if !strings.Contains(w.Body.String(), `"title":"t"`) {
		t.Fatalf("body %q", w.Body)
	}
}

func TestNewServer(t *testing.T) {
	h := http.NotFoundHandler()
	s := NewServer(":0", h, ServerConfig{})
	if s.Addr != ":0" || s.ReadHeaderTimeout != 5*time.Second || s.ReadTimeout != 30*time.Second ||
		s.WriteTimeout != 60*time.Second || s.IdleTimeout != 120*time.Second || s.MaxHeaderBytes != 1<<20 || s.ErrorLog == nil {
		t.Fatalf("server %+v", s)
	}
}

// TestOverHTTP runs the gateway behind a real server, where HEAD and
// MaxBytesReader behave as in production.
func TestOverHTTP(t *testing.T) {
	g, _ := newTestGateway(t, Config{MaxBodyBytes: 32}, testRoutes)
	srv := httptest.NewServer(g)
	defer srv.Close()

	resp, err := http.Head(srv.URL + "/orders/9")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("HEAD: %d %v", resp.StatusCode, resp.Header)
	}

	resp, err = http.Post(srv.URL+"/orders", "", strings.NewReader(strings.Repeat("1", 100)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 || resp.Header.Get("Content-Type") != ProblemContentType {
		t.Fatalf("oversize POST: %d %v", resp.StatusCode, resp.Header)
	}

	resp, err = http.Get(srv.URL + "/orders/1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
}

// callTimeout is an invocation error that knows its deadline, as
// runtime.TimeoutError does.
type callTimeout time.Duration

func (c callTimeout) Error() string        { return "stopped after " + time.Duration(c).String() }
func (c callTimeout) Limit() time.Duration { return time.Duration(c) }

// TestTimeoutNamesTheDeadlineHit: a call stopped at its own 5 s deadline
// says 5 s, not the route's 10 s request timeout.
func TestTimeoutNamesTheDeadlineHit(t *testing.T) {
	g, inv := newTestGateway(t, Config{RequestTimeout: 10 * time.Second}, testRoutes)
	inv.set(func(ctx context.Context, service string, req *abi.Request, resp *abi.Response) error {
		return fault.New("orders", fault.Timeout, callTimeout(5*time.Second))
	})
	doc := problemDoc(t, do(g, "GET", "/orders/1", "", nil), 504)
	if d, _ := doc["detail"].(string); !strings.Contains(d, "within 5s") {
		t.Fatalf("detail %q, want the call's 5s", d)
	}
	// As the runtime reports it, classified by the gateway.
	inv.set(func(ctx context.Context, service string, req *abi.Request, resp *abi.Response) error {
		return fmt.Errorf("orders: %w", &runtime.TimeoutError{Module: "orders", Entry: runtime.EntryHTTP, After: 5 * time.Second})
	})
	doc = problemDoc(t, do(g, "GET", "/orders/1", "", nil), 504)
	if d, _ := doc["detail"].(string); !strings.Contains(d, "within 5s") {
		t.Fatalf("detail %q, want the call's 5s", d)
	}
	inv.set(func(ctx context.Context, service string, req *abi.Request, resp *abi.Response) error {
		return fmt.Errorf("wrapped: %w", context.DeadlineExceeded)
	})
	doc = problemDoc(t, do(g, "GET", "/orders/1", "", nil), 504)
	if d, _ := doc["detail"].(string); !strings.Contains(d, "within 10s") {
		t.Fatalf("detail %q, want the request's 10s", d)
	}
}
