package abi

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Bounds on a declaration (the output of ExportDescribe). A module that
// declares more is refused at load: the host builds a router, a registry
// entry and a durable consumer from what it declares, so what it declares
// must be small.
const (
	MaxDeclarationBytes = 256 << 10 // the JSON as a whole
	MaxRoutes           = 256
	MaxSubscriptions    = 256
	MaxPublishes        = 256
	MaxRoutePathBytes   = 1024
	MaxVersionBytes     = 64
)

// maxProblems is how many problems ParseDeclaration names before it says
// how many more there are.
const maxProblems = 8

// ParseDeclaration decodes and checks what a module's ExportDescribe wrote:
// JSON within the bounds above, valid UTF-8, a valid service name if one
// is given, a version of letters, digits and ".+-_", routes with a method
// and a path that starts with "/" and has no white space or control
// characters, valid event types. Fields it does not know are ignored (later
// ABI versions add fields). Every guest byte an error repeats is bounded
// and quoted (Excerpt).
func ParseDeclaration(b []byte) (Declaration, error) {
	var d Declaration
	if len(b) > MaxDeclarationBytes {
		return d, fmt.Errorf("declaration of %d bytes passes the cap of %d", len(b), MaxDeclarationBytes)
	}
	if !utf8.Valid(b) {
		return d, errors.New("declaration is not valid UTF-8")
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return Declaration{}, fmt.Errorf("declaration is not a JSON object of the ABI's form: %s", Excerpt(err.Error()))
	}
	var problems []string
	bad := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	if d.Name != "" && !ValidServiceName(d.Name) {
		bad("name %s is not a service name (a-z, 0-9, '-' and '_', at most 63 bytes)", Excerpt(d.Name))
	}
	if !validVersion(d.Version) {
		bad("version %s: at most %d letters, digits and '.', '+', '-', '_'", Excerpt(d.Version), MaxVersionBytes)
	}
	if len(d.Routes) > MaxRoutes {
		bad("%d routes, at most %d", len(d.Routes), MaxRoutes)
	} else {
		for _, r := range d.Routes {
			if p := routeProblem(r); p != "" {
				bad("route %s %s: %s", Excerpt(r.Method), Excerpt(r.Path), p)
			}
		}
	}
	if len(d.Subscriptions) > MaxSubscriptions {
		bad("%d subscriptions, at most %d", len(d.Subscriptions), MaxSubscriptions)
	} else {
		for _, s := range d.Subscriptions {
			if err := ValidEventType(s.Type); err != nil {
				bad("subscription %s: %v", Excerpt(s.Type), err)
			}
		}
	}
	if len(d.Publishes) > MaxPublishes {
		bad("%d published types, at most %d", len(d.Publishes), MaxPublishes)
	} else {
		for _, typ := range d.Publishes {
			if err := ValidEventType(typ); err != nil {
				bad("published type %s: %v", Excerpt(typ), err)
			}
		}
	}
	if len(problems) == 0 {
		return d, nil
	}
	if n := len(problems); n > maxProblems {
		problems = append(problems[:maxProblems], fmt.Sprintf("and %d more problems", n-maxProblems))
	}
	return Declaration{}, errors.New("declaration: " + strings.Join(problems, "; "))
}

// routeProblem says what is wrong with a declared route's form, or "".
// Which methods and patterns the gateway accepts it decides itself.
func routeProblem(r Route) string {
	switch {
	case r.Method == "" || len(r.Method) > 16:
		return "need a method of 1 to 16 bytes"
	case !strings.HasPrefix(r.Path, "/"):
		return "the path must start with \"/\""
	case len(r.Path) > MaxRoutePathBytes:
		return fmt.Sprintf("the path passes %d bytes", MaxRoutePathBytes)
	}
	for _, c := range r.Method + r.Path {
		if c <= ' ' || c == 0x7f {
			return "white space or a control character"
		}
	}
	return ""
}

func validVersion(v string) bool {
	if len(v) > MaxVersionBytes {
		return false
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.' || c == '+' || c == '-' || c == '_':
		default:
			return false
		}
	}
	return true
}

// maxExcerpt is how many bytes of a guest-supplied string Excerpt keeps.
const maxExcerpt = 64

// Excerpt quotes s for an error message or a log line: Go-quoted, so
// control characters and invalid UTF-8 are escaped, and cut to its first
// 64 bytes with the full length said after it. Every guest-supplied
// string the host repeats goes through it.
func Excerpt(s string) string {
	if len(s) <= maxExcerpt {
		return fmt.Sprintf("%q", s)
	}
	cut := maxExcerpt
	for cut > maxExcerpt-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q…(%d bytes)", s[:cut], len(s))
}
