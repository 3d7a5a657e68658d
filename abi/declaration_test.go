package abi

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseDeclaration(t *testing.T) {
	many := func(n int, item string) string {
		return "[" + strings.TrimSuffix(strings.Repeat(item+",", n), ",") + "]"
	}
	for _, tc := range []struct {
		name, in string
		want     string // part of the error; "" means it parses
	}{
		{"demo", `{"name":"order","version":"1.2.0","routes":[{"method":"GET","path":"/orders/{id}"}],"subscriptions":[{"type":"PAYMENT_COMPLETED"}],"publishes":["ORDER_CREATED"]}`, ""},
		{"empty object", `{}`, ""},
		{"unknown fields are ignored", `{"routes":[],"later":{"x":1}}`, ""},
		{"not json", `{routes: nope`, "not a JSON object"},
		{"an array", `[1,2]`, "not a JSON object"},
		{"invalid utf-8", "{\"name\":\"a\xff\"}", "UTF-8"},
		{"too large", `{"version":"` + strings.Repeat("a", MaxDeclarationBytes) + `"}`, "passes the cap"},
		{"bad name", `{"name":"Order Service"}`, "not a service name"},
		{"bad version", `{"version":"1.0 beta"}`, "version"},
		{"long version", `{"version":"` + strings.Repeat("1", MaxVersionBytes+1) + `"}`, "version"},
		{"route without method", `{"routes":[{"path":"/a"}]}`, "need a method"},
		{"route path", `{"routes":[{"method":"GET","path":"a"}]}`, "must start with"},
		{"route with a newline", `{"routes":[{"method":"GET","path":"/a\nb"}]}`, "control character"},
		{"route path too long", `{"routes":[{"method":"GET","path":"/` + strings.Repeat("a", MaxRoutePathBytes) + `"}]}`, "passes"},
		{"too many routes", `{"routes":` + many(MaxRoutes+1, `{"method":"GET","path":"/a"}`) + `}`, "routes, at most"},
		{"bad subscription", `{"subscriptions":[{"type":"a..b"}]}`, "subscription"},
		{"too many subscriptions", `{"subscriptions":` + many(MaxSubscriptions+1, `{"type":"A"}`) + `}`, "subscriptions, at most"},
		{"bad published type", `{"publishes":["a b"]}`, "published type"},
		{"too many publishes", `{"publishes":` + many(MaxPublishes+1, `"A"`) + `}`, "published types, at most"},
		{"problems are counted, not all listed", `{"routes":` + many(20, `{"method":"","path":"/x"}`) + `}`, "and 12 more problems"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ParseDeclaration([]byte(tc.in))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v (declaration %+v), want an error containing %q", err, d, tc.want)
			}
			if len(err.Error()) > 2048 {
				t.Fatalf("error of %d bytes repeats guest bytes without bound", len(err.Error()))
			}
		})
	}
}

func TestExcerpt(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"ORDER_CREATED", `"ORDER_CREATED"`},
		{"a\nb\x00", `"a\nb\x00"`},
		{strings.Repeat("x", 100), `"` + strings.Repeat("x", 64) + `"…(100 bytes)`},
		// A cut inside a rune backs up to the rune's start.
		{strings.Repeat("x", 63) + "é" + strings.Repeat("y", 10), `"` + strings.Repeat("x", 63) + `"…(75 bytes)`},
	} {
		if got := Excerpt(tc.in); got != tc.want {
			t.Errorf("Excerpt(%.20q…) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// FuzzParseDeclaration: any bytes a module's describe can write are parsed
// without a panic, an error repeats a bounded excerpt of them, and what
// parses survives a round trip.
func FuzzParseDeclaration(f *testing.F) {
	for _, s := range []string{
		`{"routes":[{"method":"GET","path":"/orders/{id}"}],"subscriptions":[{"type":"A"}]}`,
		`{"name":"x","version":"1","publishes":["B.C"]}`,
		`{"routes":[{"method":"GET","path":"/a\u0000"}]}`,
		`{"routes":[{"method":"GET","path":"/users/{id}","internal":true}]}`,
		`[]`, `null`, `{"routes":null}`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDeclaration(b)
		if err != nil {
			if len(err.Error()) > 4096 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			if !utf8.ValidString(err.Error()) {
				t.Fatalf("error is not valid UTF-8: %q", err.Error())
			}
			return
		}
		again, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		d2, err := ParseDeclaration(again)
		if err != nil {
			t.Fatalf("re-encoded declaration refused: %v", err)
		}
		if !reflect.DeepEqual(normal(d), normal(d2)) {
			t.Fatalf("round trip changed the declaration: %+v → %+v", d, d2)
		}
	})
}

// normal maps empty lists to nil, as omitempty encodes them.
func normal(d Declaration) Declaration {
	if len(d.Routes) == 0 {
		d.Routes = nil
	}
	if len(d.Subscriptions) == 0 {
		d.Subscriptions = nil
	}
	if len(d.Publishes) == 0 {
		d.Publishes = nil
	}
	return d
}
