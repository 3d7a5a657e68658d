package gateway

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// internalRoutes are testRoutes with internal routes of orders, one on a
// path with a public route, one on a path of its own, and one of payment
// on a path of the same shape as a public route of orders.
var internalRoutes = append(append([]Route{}, testRoutes...),
	Route{Service: "orders", Method: "POST", Path: "/orders/{id}/reserve", Internal: true},
	Route{Service: "orders", Method: "PATCH", Path: "/orders/{id}", Internal: true},
	Route{Service: "orders", Method: "GET", Path: "/orders/{id}/audit/{rest...}", Internal: true},
	Route{Service: "payment", Method: "POST", Path: "/orders", Internal: true},
)

// TestInternalRouteIsNotServed: an HTTP client gets for an internal route
// what it gets for a path no route matches, and no Allow header names it.
func TestInternalRouteIsNotServed(t *testing.T) {
	g, _ := newTestGateway(t, Config{}, internalRoutes)
	doc := problemDoc(t, do(g, "POST", "/orders/1/reserve", "", nil), http.StatusNotFound)
	if doc["title"] != "no route" {
		t.Fatalf("problem %v, want the no-route answer", doc)
	}
	problemDoc(t, do(g, "GET", "/orders/1/audit/x", "", nil), http.StatusNotFound)
	// PATCH /orders/{id} is internal: another method's public route gives
	// 405, whose Allow lists the public methods only.
	w := do(g, "PATCH", "/orders/1", "", nil)
	problemDoc(t, w, http.StatusMethodNotAllowed)
	if allow := w.Header().Get("Allow"); strings.Contains(allow, "PATCH") || !strings.Contains(allow, "GET") {
		t.Fatalf("Allow %q names an internal route or lacks GET", allow)
	}
	// payment's internal POST /orders does not take orders' public one.
	if e := decodeEcho(t, do(g, "POST", "/orders", "{}", nil)); e.Service != "orders" {
		t.Fatalf("POST /orders reached %s", e.Service)
	}
}

func TestInternalRouteIsNotMounted(t *testing.T) {
	g, _ := newTestGateway(t, Config{}, internalRoutes)
	if err := g.SetPolicies(Policies{Mounts: []Mount{{Prefix: "/api/orders", Service: "orders", StripPrefix: true}}}); err != nil {
		t.Fatal(err)
	}
	problemDoc(t, do(g, "POST", "/api/orders/orders/1/reserve", "", nil), http.StatusNotFound)
	decodeEcho(t, do(g, "GET", "/api/orders/orders/1", "", nil))
}

func TestMatch(t *testing.T) {
	g, _ := newTestGateway(t, Config{}, internalRoutes)
	tests := []struct {
		name                  string
		service, method, path string
		route                 string // "" when no match
		params                map[string]string
	}{
		{"internal", "orders", "POST", "/orders/42/reserve", "POST /orders/{id}/reserve", map[string]string{"id": "42"}},
		{"internal on a public path", "orders", "PATCH", "/orders/42", "PATCH /orders/{id}", map[string]string{"id": "42"}},
		{"public", "orders", "GET", "/orders/42", "GET /orders/{id}", map[string]string{"id": "42"}},
		{"head matches get", "orders", "HEAD", "/orders/42", "GET /orders/{id}", map[string]string{"id": "42"}},
		{"no params", "orders", "POST", "/orders", "POST /orders", nil},
		{"rest", "orders", "GET", "/orders/7/audit/a/b", "GET /orders/{id}/audit/{rest...}", map[string]string{"id": "7", "rest": "a/b"}},
		{"escaped", "files", "PUT", "/files/b/a%20c", "PUT /files/{bucket}/{name}", map[string]string{"bucket": "b", "name": "a c"}},
		{"most specific", "home", "GET", "/", "GET /{$}", nil},
		{"other service's route", "payment", "POST", "/orders", "POST /orders", nil},
		{"method mismatch", "orders", "PUT", "/orders/42/reserve", "", nil},
		{"method mismatch on a public route", "orders", "DELETE", "/orders", "", nil},
		{"another service's route", "payment", "GET", "/orders/42", "", nil},
		{"unknown service", "nobody", "GET", "/orders/42", "", nil},
		{"no route", "orders", "GET", "/nope", "", nil},
		{"with a query", "orders", "GET", "/orders/42?x=1", "", nil},
		{"not clean", "orders", "GET", "/orders/../orders/42", "", nil},
		{"relative", "orders", "GET", "orders/42", "", nil},
		{"empty", "orders", "GET", "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			route, params, ok := g.Match(tt.service, tt.method, tt.path)
			if ok != (tt.route != "") || route != tt.route {
				t.Fatalf("Match(%s, %s, %s) = %q, %v; want %q", tt.service, tt.method, tt.path, route, ok, tt.route)
			}
			got := map[string]string{}
			for _, p := range params {
				got[string(p.Key)] = string(p.Value)
			}
			if len(got) != len(tt.params) {
				t.Fatalf("params %v, want %v", got, tt.params)
			}
			for k, v := range tt.params {
				if got[k] != v {
					t.Fatalf("params %v, want %v", got, tt.params)
				}
			}
		})
	}
}

// TestMatchAgreesWithHTTP: for a public route, Match gives the route and
// params the gateway hands the service over HTTP, in the same order.
func TestMatchAgreesWithHTTP(t *testing.T) {
	g, _ := newTestGateway(t, Config{}, internalRoutes)
	for _, c := range []struct{ service, method, path string }{
		{"orders", "GET", "/orders/x%2Fy"},
		{"files", "PUT", "/files/b%20b/n"},
		{"files", "GET", "/files/a/b/c"},
	} {
		e := decodeEcho(t, do(g, c.method, c.path, "", nil))
		route, params, ok := g.Match(c.service, c.method, c.path)
		if !ok || route != e.Route || len(params) != len(e.Params) {
			t.Fatalf("%s %s: Match %q %v %v, HTTP %q %v", c.method, c.path, route, params, ok, e.Route, e.Params)
		}
		for _, p := range params {
			if e.Params[string(p.Key)] != string(p.Value) {
				t.Fatalf("%s %s: param %s = %q by Match, %q over HTTP", c.method, c.path, p.Key, p.Value, e.Params[string(p.Key)])
			}
		}
	}
}

// TestMatchFollowsSetRoutes: Match sees the table SetRoutes swapped in.
func TestMatchFollowsSetRoutes(t *testing.T) {
	g, _ := newTestGateway(t, Config{}, testRoutes)
	if _, _, ok := g.Match("orders", "POST", "/orders/1/reserve"); ok {
		t.Fatal("matched a route not yet declared")
	}
	if err := g.SetRoutes(internalRoutes); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := g.Match("orders", "POST", "/orders/1/reserve"); !ok {
		t.Fatal("no match after SetRoutes")
	}
}

func TestInternalRouteConflicts(t *testing.T) {
	tests := []struct {
		name   string
		routes []Route
		want   string // "" when accepted
	}{
		{"internal beside another service's public route", []Route{
			{Service: "a", Method: "GET", Path: "/x/{id}"},
			{Service: "b", Method: "GET", Path: "/x/{id}", Internal: true},
		}, ""},
		{"two services' internal routes", []Route{
			{Service: "a", Method: "GET", Path: "/x/{id}", Internal: true},
			{Service: "b", Method: "GET", Path: "/x/{name}", Internal: true},
		}, ""},
		{"once internal, once public", []Route{
			{Service: "a", Method: "GET", Path: "/x/{id}"},
			{Service: "a", Method: "GET", Path: "/x/{name}", Internal: true},
		}, "twice (once internal, once public)"},
		{"internal routes of a service in conflict", []Route{
			{Service: "a", Method: "GET", Path: "/x/{id}/y", Internal: true},
			{Service: "a", Method: "GET", Path: "/x/z/{name}", Internal: true},
		}, "neither is more specific"},
		{"invalid internal route", []Route{
			{Service: "a", Method: "FETCH", Path: "/x", Internal: true},
		}, "is not one of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New(Config{}, &fakeInvoker{}, nil)
			err := g.SetRoutes(tt.routes)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("SetRoutes: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("SetRoutes: %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func BenchmarkMatch(b *testing.B) {
	g, _ := newTestGateway(b, Config{}, internalRoutes)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := g.Match("orders", "POST", "/orders/42/reserve"); !ok {
			b.Fatal("no match")
		}
	}
}

// TestMatchCache: Match answers a repeated path from its cache without
// allocating, the same as the first time; a full cache is emptied and
// answers stay right; a path too long to cache is matched every time; a
// SetRoutes drops the cached answers of the old route set.
func TestMatchCache(t *testing.T) {
	g, _ := newTestGateway(t, Config{}, internalRoutes)
	check := func(path, wantID string) {
		t.Helper()
		route, params, ok := g.Match("orders", "POST", path)
		if !ok || route != "POST /orders/{id}/reserve" || len(params) != 1 || string(params[0].Value) != wantID {
			t.Fatalf("Match(orders, POST, %s) = %q %v %v, want id %s", path, route, params, ok, wantID)
		}
	}
	check("/orders/42/reserve", "42")
	check("/orders/42/reserve", "42")
	if !raceEnabled {
		if n := testing.AllocsPerRun(100, func() { g.Match("orders", "POST", "/orders/42/reserve") }); n != 0 {
			t.Fatalf("a cached Match allocates %v times", n)
		}
	}
	for i := range maxMatchCache + 10 {
		check("/orders/"+strconv.Itoa(i)+"/reserve", strconv.Itoa(i))
	}
	check("/orders/42/reserve", "42")
	if n := len(g.router.Load().match.m); n > maxMatchCache {
		t.Fatalf("%d cached answers, above the bound of %d", n, maxMatchCache)
	}
	long := strings.Repeat("x", maxCachedPath)
	check("/orders/"+long+"/reserve", long)
	check("/orders/"+long+"/reserve", long)
	if _, ok := g.router.Load().match.m[matchKey{"orders", "POST", "/orders/" + long + "/reserve"}]; ok {
		t.Fatal("a path longer than maxCachedPath was cached")
	}
	if err := g.SetRoutes(testRoutes); err != nil {
		t.Fatal(err)
	}
	if route, _, ok := g.Match("orders", "POST", "/orders/42/reserve"); ok {
		t.Fatalf("after SetRoutes without the route: matched %q from the old route set", route)
	}
}
