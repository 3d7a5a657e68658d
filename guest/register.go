package guest

import (
	"strings"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/guest/jsonx"
)

// HandlerFunc serves one HTTP request.
type HandlerFunc func(w *ResponseWriter, r *Request)

// EventFunc handles one event. A non-nil error has the event redelivered.
type EventFunc func(e *Event) error

// What the module declares, filled by Declare, Handle, Subscribe and
// Publishes from init.
var (
	declName, declVersion string
	routes                []abi.Route
	handlers              = map[string]HandlerFunc{} // by "METHOD /path"
	subscriptions         []string
	subscribers           = map[string]EventFunc{} // by event type
	publishes             []string
)

// Declare sets the service's name and version. The name is optional; when
// set it must equal the module's file name without ".wasm".
func Declare(name, version string) {
	declName, declVersion = name, version
}

// Handle registers h for a route: a method, one space and a Go 1.22
// net/http path pattern, e.g. "GET /orders/{id}". The gateway matches the
// route and hands the request to h with the wildcards in Request.PathValue.
// Other services reach every route with Call; Internal makes a route
// reachable only that way:
//
//	guest.Handle("GET /users/{id}", getUser, guest.Internal())
//
// Handle panics on a malformed pattern or a route registered twice.
func Handle(pattern string, h HandlerFunc, opts ...RouteOption) {
	method, path, err := parsePattern(pattern)
	if err != "" {
		panic("guest: Handle(" + quote(pattern) + "): " + err)
	}
	if h == nil {
		panic("guest: Handle(" + quote(pattern) + "): nil handler")
	}
	key := method + " " + path
	if _, dup := handlers[key]; dup {
		panic("guest: Handle(" + quote(pattern) + "): route registered twice")
	}
	handlers[key] = h
	r := abi.Route{Method: method, Path: path}
	for _, o := range opts {
		o.apply(&r)
	}
	routes = append(routes, r)
}

// RouteOption changes how Handle declares a route.
type RouteOption interface{ apply(*abi.Route) }

type internalRoute struct{}

func (internalRoute) apply(r *abi.Route) { r.Internal = true }

// Internal declares a route that other services may call (Call) and the
// gateway does not serve (ABI v1.2; a host before v1.2 ignores the mark
// and serves the route like any other).
func Internal() RouteOption { return internalRoute{} }

// Subscribe registers h for events of one type. It panics on an invalid type
// or a type subscribed twice.
func Subscribe(eventType string, h EventFunc) {
	if err := checkEventType(eventType); err != "" {
		panic("guest: Subscribe(" + quote(eventType) + "): " + err)
	}
	if h == nil {
		panic("guest: Subscribe(" + quote(eventType) + "): nil handler")
	}
	if _, dup := subscribers[eventType]; dup {
		panic("guest: Subscribe(" + quote(eventType) + "): subscribed twice")
	}
	subscribers[eventType] = h
	subscriptions = append(subscriptions, eventType)
}

// Publishes declares the event types the service publishes. The operator
// must grant them for the module to load. It panics on an invalid type.
func Publishes(types ...string) {
	for _, t := range types {
		if err := checkEventType(t); err != "" {
			panic("guest: Publishes(" + quote(t) + "): " + err)
		}
		dup := false
		for _, p := range publishes {
			dup = dup || p == t
		}
		if !dup {
			publishes = append(publishes, t)
		}
	}
}

func quote(s string) string { return string(jsonx.AppendString(nil, s)) }

// parsePattern splits "METHOD /path" and checks both halves. It returns a
// reason when the pattern is malformed.
func parsePattern(p string) (method, path, err string) {
	i := strings.IndexAny(p, " \t")
	if i <= 0 {
		return "", "", "want \"METHOD /path\""
	}
	method, path = p[:i], strings.TrimLeft(p[i:], " \t")
	for j := 0; j < len(method); j++ {
		if c := method[j]; c < 'A' || c > 'Z' {
			return "", "", "method must be upper-case letters"
		}
	}
	if path == "" || path[0] != '/' {
		return "", "", "path must start with '/'"
	}
	if strings.ContainsAny(path, " \t") {
		return "", "", "path must not contain spaces"
	}
	segs := strings.Split(path[1:], "/")
	for k, seg := range segs {
		if !strings.ContainsAny(seg, "{}") {
			continue
		}
		if seg[0] != '{' || seg[len(seg)-1] != '}' || strings.Count(seg, "{") != 1 || strings.Count(seg, "}") != 1 {
			return "", "", "a wildcard must be a whole segment: {name}"
		}
		name := seg[1 : len(seg)-1]
		if rest, ok := strings.CutSuffix(name, "..."); ok {
			if k != len(segs)-1 {
				return "", "", "{name...} must be the last segment"
			}
			name = rest
		}
		if name == "$" && k == len(segs)-1 {
			continue
		}
		if !isIdent(name) {
			return "", "", "wildcard name must be a Go identifier"
		}
	}
	return method, path, ""
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		if c >= 0x80 {
			continue
		}
		return false
	}
	return true
}

// checkEventType applies the ABI's rule (abi.ValidEventType).
func checkEventType(t string) string {
	if err := abi.ValidEventType(t); err != nil {
		return err.Error()
	}
	return ""
}

// appendDeclaration appends the module's declaration JSON
// (abi.Declaration) to dst.
func appendDeclaration(dst []byte) []byte {
	w := jsonx.NewWriter(dst)
	w.ObjectStart()
	if declName != "" {
		w.StringField("name", declName)
	}
	if declVersion != "" {
		w.StringField("version", declVersion)
	}
	if len(routes) > 0 {
		w.Key("routes")
		w.ArrayStart()
		for _, r := range routes {
			w.ObjectStart()
			w.StringField("method", r.Method)
			w.StringField("path", r.Path)
			if r.Internal {
				w.BoolField("internal", true)
			}
			w.ObjectEnd()
		}
		w.ArrayEnd()
	}
	if len(subscriptions) > 0 {
		w.Key("subscriptions")
		w.ArrayStart()
		for _, t := range subscriptions {
			w.ObjectStart()
			w.StringField("type", t)
			w.ObjectEnd()
		}
		w.ArrayEnd()
	}
	if len(publishes) > 0 {
		w.Key("publishes")
		w.ArrayStart()
		for _, t := range publishes {
			w.String(t)
		}
		w.ArrayEnd()
	}
	w.ObjectEnd()
	return w.Bytes()
}
