package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/meshd/meshd/abi"
)

// echo is what the fake invoker answers: the request as the service would
// see it after decoding the ABI encoding.
type echo struct {
	Service     string              `json:"service"`
	Method      string              `json:"method"`
	Path        string              `json:"path"`
	Query       string              `json:"query"`
	Route       string              `json:"route"`
	Params      map[string]string   `json:"params"`
	Headers     map[string][]string `json:"headers"`
	Consumer    string              `json:"consumer"`
	RequestID   string              `json:"request_id"`
	TraceParent string              `json:"traceparent"`
	Body        string              `json:"body"`
}

// fakeInvoker encodes the request it gets with the ABI codec, decodes it
// again, and answers the decoded fields as JSON, so tests exercise the
// encoding the real runtime uses. respond, when set, replaces the answer.
type fakeInvoker struct {
	mu      sync.Mutex
	respond func(ctx context.Context, service string, req *abi.Request, resp *abi.Response) error
}

func (f *fakeInvoker) set(fn func(ctx context.Context, service string, req *abi.Request, resp *abi.Response) error) {
	f.mu.Lock()
	f.respond = fn
	f.mu.Unlock()
}

func (f *fakeInvoker) InvokeHTTP(ctx context.Context, service string, req *abi.Request, resp *abi.Response) error {
	f.mu.Lock()
	fn := f.respond
	f.mu.Unlock()
	if fn != nil {
		return fn(ctx, service, req, resp)
	}
	var dec abi.Request
	if err := dec.Decode(req.Append(nil)); err != nil {
		return err
	}
	e := echo{
		Service: service, Method: string(dec.Method), Path: string(dec.Path),
		Query: string(dec.Query), Route: string(dec.Route),
		Params: map[string]string{}, Headers: map[string][]string{},
		Consumer: string(dec.Consumer), RequestID: string(dec.RequestID),
		TraceParent: string(dec.TraceParent), Body: string(dec.Body),
	}
	for _, p := range dec.Params {
		e.Params[string(p.Key)] = string(p.Value)
	}
	for _, p := range dec.Headers {
		e.Headers[string(p.Key)] = append(e.Headers[string(p.Key)], string(p.Value))
	}
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	resp.Status = 200
	resp.Headers = append(resp.Headers, abi.Pair{Key: []byte("x-service"), Value: []byte(service)})
	resp.Body = body
	return nil
}

var testRoutes = []Route{
	{Service: "orders", Method: "GET", Path: "/orders/{id}"},
	{Service: "orders", Method: "POST", Path: "/orders"},
	{Service: "orders", Method: "DELETE", Path: "/orders/{id}"},
	{Service: "files", Method: "GET", Path: "/files/{rest...}"},
	{Service: "files", Method: "PUT", Path: "/files/{bucket}/{name}"},
	{Service: "home", Method: "GET", Path: "/{$}"},
}

func newTestGateway(t testing.TB, cfg Config, routes []Route) (*Gateway, *fakeInvoker) {
	t.Helper()
	inv := &fakeInvoker{}
	g := New(cfg, inv, nil)
	if err := g.SetRoutes(routes); err != nil {
		t.Fatalf("SetRoutes: %v", err)
	}
	return g, inv
}

// do serves one request through h and returns the recorder.
func do(h http.Handler, method, target, body string, header map[string]string) *httptest.ResponseRecorder {
	var r *http.Request
	if body == "" {
		r = httptest.NewRequest(method, target, nil)
	} else {
		r = httptest.NewRequest(method, target, strings.NewReader(body))
	}
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func decodeEcho(t *testing.T, w *httptest.ResponseRecorder) echo {
	t.Helper()
	if w.Code != 200 {
		t.Fatalf("status %d, want 200; body %s", w.Code, w.Body)
	}
	var e echo
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("decode echo: %v; body %s", err, w.Body)
	}
	return e
}

// problemDoc checks w holds a problem document with the given status and
// returns it.
func problemDoc(t *testing.T, w *httptest.ResponseRecorder, status int) map[string]any {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body %s", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != ProblemContentType {
		t.Fatalf("Content-Type %q, want %q", ct, ProblemContentType)
	}
	var doc map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatalf("problem body is not JSON: %v; %s", err, w.Body)
	}
	if doc["type"] != "about:blank" || doc["status"] != float64(status) || doc["title"] == "" {
		t.Fatalf("problem %v: want type about:blank, status %d, a title", doc, status)
	}
	id := w.Header().Get("X-Request-Id")
	if id == "" || doc["request_id"] != id {
		t.Fatalf("problem request_id %v, header X-Request-Id %q: want equal and set", doc["request_id"], id)
	}
	return doc
}
