package gateway

import (
	"net/http"
	"net/url"
	"strings"
	"sync"

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
// trailing slash). Mounts and policies play no part. The parameters (keys
// and values) are shared with other calls of Match: do not modify them.
// Match keeps no reference to method or path (its cache keeps copies).
// Match is safe for concurrent use with SetRoutes.
//
// Answers are cached per route set, by service, method and path (at most
// maxMatchCache of them, paths up to maxCachedPath bytes; the cache is
// emptied when full), so a call that repeats a path skips net/http's
// matching.
func (g *Gateway) Match(service, method, path string) (route string, params []abi.Pair, ok bool) {
	rt := g.router.Load()
	mux := rt.calls[service]
	if mux == nil || len(path) == 0 || path[0] != '/' {
		return "", nil, false
	}
	key := matchKey{service: service, method: method, path: path}
	if m, hit := rt.match.get(key); hit {
		return m.route, m.params, m.ok
	}
	m := matchMux(mux, method, path)
	if len(path) <= maxCachedPath && len(method) <= maxCachedMethod {
		rt.match.put(key, m)
	}
	return m.route, m.params, m.ok
}

// matchMux is Match's answer from service's call mux.
func matchMux(mux *http.ServeMux, method, path string) matchResult {
	u, err := url.ParseRequestURI(path)
	if err != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return matchResult{}
	}
	var m matchWriter
	mux.ServeHTTP(&m, &http.Request{Method: method, URL: u, RequestURI: path, Header: http.Header{}})
	if !m.ok {
		return matchResult{}
	}
	return matchResult{route: m.route, params: m.params, ok: true}
}

// Bounds of Match's cache, per route set: entries, and the longest path
// and method cached (longer ones are matched every time).
const (
	maxMatchCache   = 1024
	maxCachedPath   = 256
	maxCachedMethod = 16
)

type matchKey struct{ service, method, path string }

type matchResult struct {
	route  string
	params []abi.Pair
	ok     bool
}

// matchCache holds Match's answers for one route set; the zero value is
// empty and ready.
type matchCache struct {
	mu sync.RWMutex
	m  map[matchKey]matchResult
}

func (c *matchCache) get(k matchKey) (matchResult, bool) {
	c.mu.RLock()
	m, ok := c.m[k]
	c.mu.RUnlock()
	return m, ok
}

// put stores m at k, emptying the cache first when it is full.
func (c *matchCache) put(k matchKey, m matchResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxMatchCache {
		c.m = make(map[matchKey]matchResult)
	}
	// The key's strings may alias the caller's buffers: keep copies.
	k = matchKey{service: strings.Clone(k.service), method: strings.Clone(k.method), path: strings.Clone(k.path)}
	c.m[k] = m
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
