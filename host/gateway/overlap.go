package gateway

import (
	"cmp"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"
	"unicode"

	"github.com/meshd/meshd/abi"
)

// Overlap reports whether some request matches both ServeMux patterns a and
// b ("[METHOD ][HOST]/[PATH]", Go 1.22 syntax), whichever of the two
// net/http would then prefer. The rules are net/http's:
//
//   - Methods: an empty method matches every method; GET also matches HEAD;
//     any other method matches only itself.
//   - Hosts: a pattern without a host matches every host; two different
//     hosts never match the same request.
//   - Paths are compared segment by segment on the cleaned request path: a
//     literal matches itself (compared unescaped), "{name}" matches one
//     segment but not a trailing slash, "{name...}" and a trailing "/" match
//     the rest of the path (at least a trailing slash), "{$}" matches only the
//     trailing slash.
//
// It is symmetric. An error says why a pattern is invalid, as net/http would
// refuse it.
func Overlap(a, b string) (bool, error) {
	pa, err := parsePattern(a)
	if err != nil {
		return false, err
	}
	pb, err := parsePattern(b)
	if err != nil {
		return false, err
	}
	return pa.overlaps(pb), nil
}

// CatchAll reports whether the route's path matches every path ("/",
// "/{rest...}"): a route that would answer every request of its method that
// no more specific route takes. Such a route needs the operator's grant.
func (r Route) CatchAll() bool {
	p, err := parsePattern(r.Pattern())
	return err == nil && p.catchAll()
}

// Conflict is a route of one service that overlaps a route of another: some
// request matches both (see [Overlap]), so one service could answer requests
// meant for the other.
type Conflict struct {
	Route, Other Route
	// Example is a request both routes match, "METHOD /path".
	Example string
}

func (c Conflict) Error() string {
	return fmt.Sprintf("gateway: route %s of service %s conflicts with route %s of service %s: both match %s, and one service may not take requests a route of another matches",
		abi.Excerpt(c.Route.Pattern()), abi.Excerpt(c.Route.Service),
		abi.Excerpt(c.Other.Pattern()), abi.Excerpt(c.Other.Service), abi.Excerpt(c.Example))
}

// Conflicts returns every pair of routes of different services that the
// gateway refuses to serve together, each once, in the order of routes:
// routes that overlap (see [Overlap]), except a catch-all (see
// [Route.CatchAll]) beside a route of another service that is strictly more
// specific than it, which net/http always prefers, so that the catch-all
// only gets what no other service routes. Routes of one service may overlap
// each other (ServeMux's own conflicts aside). Routes whose pattern is
// invalid are skipped.
func Conflicts(routes []Route) []Conflict {
	ps := make([]*pattern, len(routes))
	for i, r := range routes {
		if p, err := parsePattern(r.Pattern()); err == nil {
			ps[i] = p
		}
	}
	// Two paths overlap only where their first segments do: compare routes
	// with the same first literal, and routes with a wildcard first with
	// every other.
	byFirst := make(map[string][]int)
	var wild []int
	for i, p := range ps {
		switch {
		case p == nil:
		case p.segs[0].wild:
			wild = append(wild, i)
		default:
			byFirst[p.segs[0].lit] = append(byFirst[p.segs[0].lit], i)
		}
	}
	type found struct {
		i, j int // i < j
		c    Conflict
	}
	var fs []found
	check := func(i, j int) {
		if routes[i].Service == routes[j].Service {
			return
		}
		i, j = min(i, j), max(i, j)
		if ex, bad := conflicting(ps[i], ps[j]); bad {
			fs = append(fs, found{i, j, Conflict{Route: routes[i], Other: routes[j], Example: ex}})
		}
	}
	for _, idx := range byFirst {
		for a, i := range idx {
			for _, j := range idx[a+1:] {
				check(i, j)
			}
		}
	}
	for a, w := range wild {
		for _, j := range wild[a+1:] {
			check(w, j)
		}
		for _, idx := range byFirst {
			for _, j := range idx {
				check(w, j)
			}
		}
	}
	slices.SortFunc(fs, func(a, b found) int { return cmp.Or(cmp.Compare(a.i, b.i), cmp.Compare(a.j, b.j)) })
	out := make([]Conflict, len(fs))
	for k, f := range fs {
		out[k] = f.c
	}
	return out
}

// conflicting reports whether routes p and q of two services may not be
// served together, and a request both match.
func conflicting(p, q *pattern) (example string, bad bool) {
	if !p.overlaps(q) {
		return "", false
	}
	if (p.catchAll() && !q.catchAll() && q.methodsWithin(p) && q.hostWithin(p)) ||
		(q.catchAll() && !p.catchAll() && p.methodsWithin(q) && p.hostWithin(q)) {
		return "", false // the catch-all yields to the more specific route
	}
	return p.witness(q), true
}

// pattern is a ServeMux pattern as net/http represents it.
type pattern struct {
	method string // "" for every method
	host   string // "" for every host
	segs   []segment
}

// segment is one piece of a path pattern: a literal (unescaped; "/" is the
// trailing slash of "{$}"), a single wildcard, or a multi wildcard (also the
// anonymous one a trailing "/" stands for), always last.
type segment struct {
	lit   string
	wild  bool
	multi bool
}

// parsePattern parses s as net/http does and refuses what it refuses.
func parsePattern(s string) (*pattern, error) {
	fail := func(why string) (*pattern, error) {
		return nil, fmt.Errorf("gateway: pattern %s: %s", abi.Excerpt(s), why)
	}
	if s == "" {
		return fail("empty pattern")
	}
	method, rest, found := s, "", false
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		method, rest, found = s[:i], strings.TrimLeft(s[i+1:], " \t"), true
	}
	if !found {
		method, rest = "", s
	}
	if method != "" && !validToken(method) {
		return fail("invalid method")
	}
	i := strings.IndexByte(rest, '/')
	if i < 0 {
		return fail("host/path missing /")
	}
	p := &pattern{method: method, host: rest[:i]}
	rest = rest[i:]
	if strings.IndexByte(p.host, '{') >= 0 {
		return fail("host contains '{' (missing initial '/'?)")
	}
	if method != "" && method != "CONNECT" && rest != cleanPath(rest) {
		return fail("non-CONNECT pattern with unclean path can never match")
	}
	seen := make(map[string]bool)
	for len(rest) > 0 {
		rest = rest[1:] // drop the '/'
		if rest == "" {
			p.segs = append(p.segs, segment{wild: true, multi: true})
			break
		}
		j := strings.IndexByte(rest, '/')
		if j < 0 {
			j = len(rest)
		}
		var seg string
		seg, rest = rest[:j], rest[j:]
		k := strings.IndexByte(seg, '{')
		if k < 0 {
			p.segs = append(p.segs, segment{lit: pathUnescape(seg)})
			continue
		}
		if k != 0 {
			return fail("bad wildcard segment (must start with '{')")
		}
		if seg[len(seg)-1] != '}' {
			return fail("bad wildcard segment (must end with '}')")
		}
		name := seg[1 : len(seg)-1]
		if name == "$" {
			if rest != "" {
				return fail("{$} not at end")
			}
			p.segs = append(p.segs, segment{lit: "/"})
			break
		}
		name, multi := strings.CutSuffix(name, "...")
		if multi && rest != "" {
			return fail("{...} wildcard not at end")
		}
		if name == "" {
			return fail("empty wildcard")
		}
		if !validWildcardName(name) {
			return fail("bad wildcard name")
		}
		if seen[name] {
			return fail("duplicate wildcard name")
		}
		seen[name] = true
		p.segs = append(p.segs, segment{wild: true, multi: multi})
	}
	return p, nil
}

// overlaps reports whether some request matches both p and q.
func (p *pattern) overlaps(q *pattern) bool {
	if p.host != "" && q.host != "" && p.host != q.host {
		return false
	}
	if !methodsOverlap(p.method, q.method) {
		return false
	}
	a, b := p.segs, q.segs
	for ; len(a) > 0 && len(b) > 0; a, b = a[1:], b[1:] {
		if a[0].multi || b[0].multi {
			// It takes the rest of the path, which the other's remaining
			// segments (at least one) can always make.
			return true
		}
		if !segmentsOverlap(a[0], b[0]) {
			return false
		}
	}
	// One ran out: the path ends there, and the other needs more of it.
	return len(a) == 0 && len(b) == 0
}

func methodsOverlap(a, b string) bool {
	return a == "" || b == "" || a == b ||
		(a == "GET" && b == "HEAD") || (a == "HEAD" && b == "GET")
}

// segmentsOverlap compares two segments neither of which is multi.
func segmentsOverlap(a, b segment) bool {
	switch {
	case a.wild && b.wild:
		return true
	case a.wild:
		return b.lit != "/" // a single wildcard does not match a trailing slash
	case b.wild:
		return a.lit != "/"
	}
	return a.lit == b.lit
}

// catchAll reports whether the path matches every path.
func (p *pattern) catchAll() bool {
	return len(p.segs) == 1 && p.segs[0].multi
}

// methodsWithin reports whether every method p matches, q matches too.
func (p *pattern) methodsWithin(q *pattern) bool {
	return q.method == "" || p.method == q.method || (q.method == "GET" && p.method == "HEAD")
}

// hostWithin reports whether every host p matches, q matches too.
func (p *pattern) hostWithin(q *pattern) bool {
	return q.host == "" || p.host == q.host
}

// witness returns a request that p and q both match, "METHOD [HOST]/path",
// the path escaped; p and q must overlap.
func (p *pattern) witness(q *pattern) string {
	method := p.method
	switch {
	case method == "":
		method = q.method
	case q.method == "":
	case method != q.method: // GET and HEAD
		method = "HEAD"
	}
	if method == "" {
		method = "GET"
	}
	host := p.host
	if host == "" {
		host = q.host
	}
	return method + " " + host + witnessPath(p.segs, q.segs)
}

// witnessPath returns a path both a and b match; they must overlap.
func witnessPath(a, b []segment) string {
	var sb strings.Builder
	for ; len(a) > 0 && len(b) > 0; a, b = a[1:], b[1:] {
		switch {
		case a[0].multi && b[0].multi:
			sb.WriteString("/x")
			return sb.String()
		case a[0].multi:
			writeExample(&sb, b)
			return sb.String()
		case b[0].multi:
			writeExample(&sb, a)
			return sb.String()
		case a[0].wild:
			writeExample(&sb, b[:1])
		default:
			writeExample(&sb, a[:1])
		}
	}
	if sb.Len() == 0 {
		return "/"
	}
	return sb.String()
}

// writeExample writes a path the segments match.
func writeExample(sb *strings.Builder, segs []segment) {
	for _, s := range segs {
		switch {
		case s.multi:
			sb.WriteString("/x")
		case s.wild:
			sb.WriteString("/x")
		case s.lit == "/":
			sb.WriteByte('/')
		default:
			sb.WriteByte('/')
			sb.WriteString(escapeSegment(s.lit))
		}
	}
}

// escapeSegment escapes a literal for a request path: every byte but
// letters, digits, '-', '_' and '~' (so "." and ".." stay segments).
func escapeSegment(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// validToken reports whether s is an HTTP token (RFC 9110), as net/http
// requires of a method.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x7f || c <= ' ' || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// validWildcardName reports whether s is a Go identifier.
func validWildcardName(s string) bool {
	for i, c := range s {
		if !unicode.IsLetter(c) && c != '_' && (i == 0 || !unicode.IsDigit(c)) {
			return false
		}
	}
	return s != ""
}

// pathUnescape unescapes a literal, keeping it as it is when it is not a
// valid escaping (as net/http does).
func pathUnescape(s string) string {
	u, err := url.PathUnescape(s)
	if err != nil {
		return s
	}
	return u
}

// cleanPath is net/http's: the canonical path, keeping a trailing slash.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		if len(p) == len(np)+1 && strings.HasPrefix(p, np) {
			return p
		}
		np += "/"
	}
	return np
}

var _ error = Conflict{}
