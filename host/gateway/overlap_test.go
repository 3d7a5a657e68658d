package gateway

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// muxMatches reports whether a ServeMux holding only pattern serves the
// request "METHOD [HOST]/path" with it (not a redirect, 404 or 405).
func muxMatches(t testing.TB, pattern, request string) bool {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc(pattern, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Matched", "yes")
	})
	method, target, _ := strings.Cut(request, " ")
	host, path := "any.example", target
	if i := strings.IndexByte(target, '/'); i > 0 {
		host, path = target[:i], target[i:]
	}
	req := httptest.NewRequest(method, "http://"+host+path, nil)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	return rec.Code == http.StatusOK && rec.Header().Get("X-Matched") == "yes"
}

// validForMux reports whether ServeMux accepts pattern.
func validForMux(pattern string) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	http.NewServeMux().HandleFunc(pattern, func(http.ResponseWriter, *http.Request) {})
	return true
}

func TestOverlap(t *testing.T) {
	cases := []struct {
		a, b string
		want bool
	}{
		// The attacks: a literal under another service's wildcard; HEAD
		// under GET; the same route.
		{"GET /orders/hostile-shadow", "GET /orders/{id}", true},
		{"HEAD /orders/{id}", "GET /orders/{id}", true},
		{"POST /orders", "POST /orders", true},
		// Methods.
		{"GET /a", "POST /a", false},
		{"HEAD /a", "POST /a", false},
		{"PUT /a", "DELETE /a", false},
		{"/a", "DELETE /a", true},
		{"/a", "/a", true},
		{"HEAD /a", "HEAD /a", true},
		{"GET /a/{x}", "HEAD /a/b", true},
		{"POST /a/{x}", "HEAD /a/b", false},
		// Hosts.
		{"a.example/x", "b.example/x", false},
		{"a.example/x", "/x", true},
		{"a.example/x", "a.example/{y}", true},
		{"GET a.example/", "GET /x", true},
		{"GET a.example/", "POST /x", false},
		// Literals and single wildcards.
		{"/a/b", "/a/c", false},
		{"/a/b", "/a/b/c", false},
		{"/a/{x}", "/a/{y}", true},
		{"/a/{x}", "/{y}/b", true},
		{"/a/{x}/c", "/{y}/b/d", false},
		{"/a/{x}", "/a/b/c", false},
		{"/{x}", "/", true},
		{"/{x}", "/{$}", false},
		{"/a/{x}", "/a/{$}", false},
		{"/a/{x}", "/a/", true},
		{"/a/%62", "/a/b", true},       // literals compare unescaped
		{"/a/%2F", "/a/{$}", true},     // as in net/http: an escaped slash is the trailing-slash literal
		{"/a%zz", "/a%zz", true},       // not a valid escaping: kept as it is
		{"/caf%C3%A9", "/café", true},  // UTF-8
		{"/orders", "/orders/", false}, // "/orders" is no prefix; the redirect is not a match
		// Multi wildcards and trailing slashes.
		{"/", "/anything/at/all", true},
		{"/", "/{$}", true},
		{"/{rest...}", "/a/b/{c}", true},
		{"/a/{rest...}", "/a", false},
		{"/a/{rest...}", "/a/", true},
		{"/a/{rest...}", "/a/{$}", true},
		{"/a/", "/a/{rest...}", true},
		{"/a/", "/b/", false},
		{"/a/", "/{x}/b", true},
		{"/a/b/", "/a/{x}", false},
		{"/a/b/", "/{x}/{y}/{z}", true},
		{"/a/b/{$}", "/a/b/c", false},
		{"/a/b/{$}", "/a/{x}/", true},
		{"/{$}", "/a", false},
		{"/{$}", "/", true},
		{"/{$}", "/{$}", true},
		{"GET /{$}", "HEAD /", true},
		{"/x/{a}/{b...}", "/{c}/y/{d}", true},
		{"/x/{a}/{b...}", "/{c}/y", false},
	}
	for _, c := range cases {
		for _, pair := range [][2]string{{c.a, c.b}, {c.b, c.a}} {
			t.Run(pair[0]+" | "+pair[1], func(t *testing.T) {
				got, err := Overlap(pair[0], pair[1])
				if err != nil {
					t.Fatal(err)
				}
				if got != c.want {
					t.Fatalf("Overlap = %v, want %v", got, c.want)
				}
				if !got {
					return
				}
				pa, _ := parsePattern(pair[0])
				pb, _ := parsePattern(pair[1])
				w := pa.witness(pb)
				if !muxMatches(t, pair[0], w) || !muxMatches(t, pair[1], w) {
					t.Fatalf("example %q is not matched by both patterns in a ServeMux", w)
				}
			})
		}
	}
}

// TestOverlapRefusesWhatServeMuxRefuses: invalid patterns are errors, as
// ServeMux refuses them; valid ones are not.
func TestOverlapRefusesWhatServeMuxRefuses(t *testing.T) {
	for _, p := range []string{
		"", "GET", "GET a", "/a/{", "/a/x{y}", "/a/{x}y", "/{$}/a", "/{r...}/a", "/{}",
		"/{...}", "/{1x}", "/{x}/{x}", "h{x}/a", "GET /a/../b", "GET /a//b", "G(T /a",
		"/", "GET /", "/a/{$}", "/a/{b...}", "CONNECT /a/../b", "/a/../b", "h.example/", "GET\t/a",
		"GET  /a", "/{ü}", "/{x_1}",
	} {
		_, err := Overlap(p, "/")
		if want := validForMux(p); (err == nil) != want {
			t.Errorf("%q: Overlap error %v, but ServeMux accepts it: %v", p, err, want)
		}
	}
}

// TestConflicts: overlaps between services are reported with an example
// request; a service's own overlaps are not; a catch-all yields to strictly
// more specific routes of other services and to nothing else.
func TestConflicts(t *testing.T) {
	order := func(m, p string) Route { return Route{Service: "order", Method: m, Path: p} }
	other := func(m, p string) Route { return Route{Service: "other", Method: m, Path: p} }
	cases := []struct {
		name    string
		routes  []Route
		example string // "" for no conflict
	}{
		{"literal under wildcard", []Route{order("GET", "/orders/{id}"), other("GET", "/orders/hostile-shadow")}, "GET /orders/hostile-shadow"},
		{"HEAD under GET", []Route{order("GET", "/orders/{id}"), other("HEAD", "/orders/{id}")}, "HEAD /orders/x"},
		{"prefix over a route", []Route{order("GET", "/orders/{id}"), other("GET", "/orders/")}, "GET /orders/x"},
		{"same service may overlap", []Route{order("GET", "/orders/{id}"), order("GET", "/orders/stats"), order("HEAD", "/orders/{id}")}, ""},
		{"disjoint", []Route{order("GET", "/orders/{id}"), other("GET", "/payments/{id}"), other("POST", "/orders/{id}")}, ""},
		{"catch-all yields to a more specific route", []Route{order("GET", "/orders/{id}"), other("GET", "/{rest...}")}, ""},
		{"GET catch-all yields to HEAD route", []Route{order("HEAD", "/orders/{id}"), other("GET", "/")}, ""},
		{"HEAD catch-all under a GET route", []Route{order("GET", "/orders/{id}"), other("HEAD", "/")}, "HEAD /orders/x"},
		{"two catch-alls", []Route{order("GET", "/"), other("HEAD", "/{rest...}")}, "HEAD /x"},
		{"catch-alls of two methods", []Route{order("GET", "/"), other("POST", "/{rest...}")}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Conflicts(c.routes)
			if c.example == "" {
				if len(got) != 0 {
					t.Fatalf("conflicts %v, want none", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("conflicts %v, want one", got)
			}
			if got[0].Example != c.example {
				t.Fatalf("example %q, want %q", got[0].Example, c.example)
			}
			msg := got[0].Error()
			for _, want := range []string{`"order"`, `"other"`, got[0].Route.Pattern(), got[0].Other.Pattern()} {
				if !strings.Contains(msg, want) {
					t.Fatalf("%q does not name %s", msg, want)
				}
			}
		})
	}
}

func TestCatchAll(t *testing.T) {
	for path, want := range map[string]bool{
		"/": true, "/{rest...}": true, "/{$}": false, "/a/": false, "/{x}": false, "/a": false,
	} {
		if got := (Route{Service: "s", Method: "GET", Path: path}).CatchAll(); got != want {
			t.Errorf("%s: CatchAll %v, want %v", path, got, want)
		}
	}
}

// TestSetRoutesRefusesOverlapsBetweenServices: the gateway refuses a table
// in which a service takes requests another's route matches, naming both
// routes and services, and keeps serving the old table.
func TestSetRoutesRefusesOverlapsBetweenServices(t *testing.T) {
	g := New(Config{}, nil, nil)
	base := []Route{
		{Service: "order", Method: "GET", Path: "/orders/{id}"},
		{Service: "order", Method: "HEAD", Path: "/orders/{id}"}, // its own business
		{Service: "order", Method: "POST", Path: "/orders"},
	}
	if err := g.SetRoutes(base); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Route{
		{Service: "shadow", Method: "GET", Path: "/orders/hostile-shadow"},
		{Service: "shadow", Method: "HEAD", Path: "/orders/{id}"},
		{Service: "shadow", Method: "POST", Path: "/orders"},
		{Service: "shadow", Method: "GET", Path: "/orders/"},
	} {
		err := g.SetRoutes(append(base[:len(base):len(base)], bad))
		if err == nil {
			t.Fatalf("%s of shadow accepted", bad.Pattern())
		}
		for _, want := range []string{`"shadow"`, `"order"`, bad.Pattern()} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not name %s", bad.Pattern(), err, want)
			}
		}
		// Each pair once: not again as ServeMux's conflict.
		if strings.Contains(err.Error(), "neither is more specific") {
			t.Errorf("%s: a conflict reported twice: %v", bad.Pattern(), err)
		}
	}
	if got := len(g.Routes()); got != len(base) {
		t.Fatalf("%d routes after refusals, want %d", got, len(base))
	}
	// A catch-all of another service serves what no route of order matches.
	if err := g.SetRoutes(append(base[:len(base):len(base)], Route{Service: "site", Method: "GET", Path: "/{rest...}"})); err != nil {
		t.Fatalf("catch-all beside order: %v", err)
	}
}

// FuzzOverlap builds two patterns from the fuzzer's bytes and compares
// Overlap with ServeMux: when Overlap says yes, its example request is
// served by each pattern's mux; every request made from either pattern
// that both muxes serve is an overlap.
func FuzzOverlap(f *testing.F) {
	f.Add([]byte{1, 0, 0, 2}, []byte{1, 0, 0, 0})
	f.Add([]byte{2, 0, 2}, []byte{1, 0, 2})
	f.Add([]byte{0, 1, 0, 6}, []byte{0, 0, 4})
	f.Add([]byte{0, 0, 7}, []byte{0, 0, 0, 5})
	f.Add([]byte{3, 2, 8, 3}, []byte{0, 1, 1, 4})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		pa, reqsA := genPattern(a)
		pb, reqsB := genPattern(b)
		if !validForMux(pa) || !validForMux(pb) {
			return
		}
		got, err := Overlap(pa, pb)
		if err != nil {
			t.Fatalf("%q %q: %v", pa, pb, err)
		}
		if back, _ := Overlap(pb, pa); back != got {
			t.Fatalf("%q %q: not symmetric", pa, pb)
		}
		if got {
			p, _ := parsePattern(pa)
			q, _ := parsePattern(pb)
			w := p.witness(q)
			if !muxMatches(t, pa, w) || !muxMatches(t, pb, w) {
				t.Fatalf("%q %q: example %q is not served by both", pa, pb, w)
			}
			return
		}
		for _, r := range append(reqsA, reqsB...) {
			if muxMatches(t, pa, r) && muxMatches(t, pb, r) {
				t.Fatalf("%q %q: both serve %q, but Overlap says no", pa, pb, r)
			}
		}
	})
}

// genPattern makes a ServeMux pattern from b, and requests that it is
// likely to match: b[0] picks the method, b[1] the host, each further byte
// a path segment.
func genPattern(b []byte) (string, []string) {
	pick := func(i int, opts []string) string {
		if i >= len(b) {
			return opts[0]
		}
		return opts[int(b[i])%len(opts)]
	}
	method := pick(0, []string{"", "GET", "HEAD", "POST"})
	host := pick(1, []string{"", "a.example", "b.example"})
	segs := []string{"a", "b", "{x}", "{y}", "{rest...}", "{$}", "", "%61", "zz"}
	var path strings.Builder
	var reqPaths []string // paths a request may take, built along
	reqPaths = append(reqPaths, "")
	ended := false
	n := 0
	for i := 2; i < len(b) && i < 8 && !ended; i++ {
		s := segs[int(b[i])%len(segs)]
		n++
		if s == "{x}" || s == "{y}" {
			s = fmt.Sprintf("{%s%d}", s[1:2], n)
		}
		if s == "{rest...}" {
			s = fmt.Sprintf("{rest%d...}", n)
		}
		path.WriteString("/" + s)
		var next []string
		for _, p := range reqPaths {
			switch {
			case strings.HasSuffix(s, "...}") || s == "":
				ended = true
				next = append(next, p+"/", p+"/a", p+"/a/b", p+"/zz/")
			case s == "{$}":
				ended = true
				next = append(next, p+"/")
			case strings.HasPrefix(s, "{"):
				next = append(next, p+"/a", p+"/b", p+"/q")
			default:
				next = append(next, p+"/"+s)
			}
		}
		reqPaths = next
	}
	if path.Len() == 0 {
		path.WriteString("/")
		reqPaths = []string{"/", "/a", "/a/b"}
	}
	pattern := host + path.String()
	if method != "" {
		pattern = method + " " + pattern
	}
	var reqs []string
	for _, m := range []string{"GET", "HEAD", "POST"} {
		for _, h := range []string{"a.example", "c.example"} {
			for _, p := range reqPaths {
				reqs = append(reqs, m+" "+h+p)
			}
		}
	}
	return pattern, reqs
}

// BenchmarkConflicts: the overlap check SetRoutes runs over the whole
// table, 100 services of 10 routes each (every pair is compared).
func BenchmarkConflicts(b *testing.B) {
	var routes []Route
	for s := range 100 {
		svc := fmt.Sprintf("svc%d", s)
		for _, p := range []string{"/%s", "/%s/{id}", "/%s/{id}/items", "/%s/{id}/items/{item}", "/%s/search/{q...}"} {
			for _, m := range []string{"GET", "POST"} {
				routes = append(routes, Route{Service: svc, Method: m, Path: fmt.Sprintf(p, svc)})
			}
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if c := Conflicts(routes); len(c) != 0 {
			b.Fatal(c)
		}
	}
}

// TestConflictsComparesEveryPair: Conflicts (which compares only routes
// whose first segments may overlap) finds what comparing every pair finds,
// in the same order.
func TestConflictsComparesEveryPair(t *testing.T) {
	paths := []string{"/", "/{x}", "/{r...}", "/{$}", "/a", "/a/", "/a/{x}", "/b/{x}", "/{x}/a", "/b", "/a/{$}", "/%61/b"}
	methods := []string{"GET", "HEAD", "POST"}
	var routes []Route
	for i, p := range paths {
		for j, m := range methods {
			routes = append(routes, Route{Service: fmt.Sprintf("s%d", (i*len(methods)+j)%5), Method: m, Path: p})
		}
	}
	var want []Conflict
	for i := range routes {
		for j := i + 1; j < len(routes); j++ {
			if routes[i].Service == routes[j].Service {
				continue
			}
			p, _ := parsePattern(routes[i].Pattern())
			q, _ := parsePattern(routes[j].Pattern())
			if ex, bad := conflicting(p, q); bad {
				want = append(want, Conflict{Route: routes[i], Other: routes[j], Example: ex})
			}
		}
	}
	got := Conflicts(routes)
	if len(want) == 0 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Conflicts found %d:\n%v\nevery pair %d:\n%v", len(got), got, len(want), want)
	}
}
