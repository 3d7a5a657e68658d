package gateway

import (
	"net/http"
	"net/url"

	"github.com/meshd/meshd/abi"
)

// Match finds the route of service that a call from another service
// reaches: method and path (a request path as on the request line, with
// percent-escapes, without a query) are matched against every route the
// service declares, internal ones included, by net/http's rules, as the
// gateway matches a request (the most specific pattern wins; HEAD matches
// GET routes). It returns the route ("GET /orders/{id}") and the path
// parameters in pattern order, unescaped, exactly as the gateway fills
// abi.Request.Route and Params; ok is false when no route of the service
// matches (another method's route included), and for a path net/http
// would answer with a redirect (not clean, or a subtree's path without its
// trailing slash). Mounts and policies play no part. The parameter keys are
// shared: do not modify them. Match is safe for concurrent use with
// SetRoutes.
func (g *Gateway) Match(service, method, path string) (route string, params []abi.Pair, ok bool) {
	mux := g.router.Load().calls[service]
	if mux == nil || len(path) == 0 || path[0] != '/' {
		return "", nil, false
	}
	u, err := url.ParseRequestURI(path)
	if err != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", nil, false
	}
	var m matchWriter
	mux.ServeHTTP(&m, &http.Request{Method: method, URL: u, RequestURI: path, Header: http.Header{}})
	if !m.ok {
		return "", nil, false
	}
	return m.route, m.params, true
}

// callRoute is a route in a service's call mux: served by Match, it
// records the match on the matchWriter.
type callRoute struct {
	pattern string
	params  []string // wildcard names, in order
	keys    [][]byte // params as bytes, shared read-only
}

func newCallRoute(r Route) *callRoute {
	c := &callRoute{pattern: r.Pattern(), params: paramNames(r.Path)}
	for _, p := range c.params {
		c.keys = append(c.keys, []byte(p))
	}
	return c
}

func (c *callRoute) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m, ok := w.(*matchWriter)
	if !ok {
		return
	}
	m.route, m.ok = c.pattern, true
	if len(c.params) > 0 {
		m.params = make([]abi.Pair, len(c.params))
		for i, name := range c.params {
			m.params[i] = abi.Pair{Key: c.keys[i], Value: []byte(r.PathValue(name))}
		}
	}
}

// matchWriter is the ResponseWriter Match serves its probe with; what the
// mux's own 404, 405 and redirect handlers write is dropped.
type matchWriter struct {
	header http.Header
	route  string
	params []abi.Pair
	ok     bool
}

func (m *matchWriter) Header() http.Header {
	if m.header == nil {
		m.header = make(http.Header)
	}
	return m.header
}

func (m *matchWriter) Write(b []byte) (int, error) { return len(b), nil }
func (m *matchWriter) WriteHeader(int)             {}

// Interface guards.
var (
	_ http.Handler        = (*callRoute)(nil)
	_ http.ResponseWriter = (*matchWriter)(nil)
)
