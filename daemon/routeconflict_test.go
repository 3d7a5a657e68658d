package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/internal/testkit"
	"github.com/meshd/meshd/internal/wattest"
)

// routeGuest builds testdata/route-guest.wat declaring routes ("METHOD
// /path") and answering every request 200 with X-Service: name.
func routeGuest(t testing.TB, name string, routes ...string) []byte {
	t.Helper()
	dj, err := json.Marshal(abi.Declaration{Routes: declaredRoutes(routes...)})
	if err != nil {
		t.Fatal(err)
	}
	resp := (&abi.Response{Status: 200, Headers: []abi.Pair{{Key: []byte("x-service"), Value: []byte(name)}}, Body: []byte(name)}).Append(nil)
	src, err := os.ReadFile("testdata/route-guest.wat")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.NewReplacer(
		"DECLARATION_LEN", strconv.Itoa(len(dj)),
		"RESPONSE_LEN", strconv.Itoa(len(resp)),
		`"DECLARATION"`, watString(dj),
		`"RESPONSE"`, watString(resp),
	).Replace(string(src))
	return wattest.Compile(t, name+".wat", s)
}

// declaredRoutes turns "METHOD /path" strings into declared routes.
func declaredRoutes(routes ...string) []abi.Route {
	out := make([]abi.Route, 0, len(routes))
	for _, r := range routes {
		m, p, _ := strings.Cut(r, " ")
		out = append(out, abi.Route{Method: m, Path: p})
	}
	return out
}

// watString is b as a WAT string literal, every byte escaped.
func watString(b []byte) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, c := range b {
		fmt.Fprintf(&sb, "\\%02x", c)
	}
	sb.WriteByte('"')
	return sb.String()
}

// orderRoutes are the routes of the order-like service the attacks aim at.
var orderRoutes = []string{"POST /orders", "GET /orders/{id}"}

// routeAttacks are modules that would take requests order's routes match:
// a literal under its wildcard (ServeMux prefers it: no conflict for
// net/http), HEAD under its GET, and its very route.
var routeAttacks = []struct {
	name, route string
	// probe is a request the attack would take from order.
	method, path string
}{
	{"shadow", "GET /orders/hostile-shadow", "GET", "/orders/hostile-shadow"},
	{"headgrab", "HEAD /orders/{id}", "HEAD", "/orders/42"},
	{"evil", "POST /orders", "POST", "/orders"},
}

// servedBy asks the daemon and returns the X-Service of the answer, or
// the status when no service answered.
func servedBy(t testing.TB, td *testDaemon, method, path string) string {
	t.Helper()
	r := td.do(t, method, path, "", "")
	if s := r.header.Get("X-Service"); s != "" {
		return s
	}
	return strconv.Itoa(r.status)
}

// TestRouteAttackOnReloadIsRefused: order serves; a module dropped beside it
// that would take requests order's routes match is refused with a reason
// naming both routes and services, and order keeps answering them.
func TestRouteAttackOnReloadIsRefused(t *testing.T) {
	for _, a := range routeAttacks {
		t.Run(a.name, func(t *testing.T) {
			td := startDaemonWith(t, nil, map[string][]byte{
				"order.wasm": routeGuest(t, "order", orderRoutes...),
			}, func(c *Config) { c.WatchQuiet = 50 * time.Millisecond })
			if got := servedBy(t, td, a.method, a.path); got != "order" {
				t.Fatalf("%s %s before the attack: served by %s, want order", a.method, a.path, got)
			}
			path := filepath.Join(td.dir, a.name+".wasm")
			if err := os.WriteFile(path, routeGuest(t, a.name, a.route), 0o644); err != nil {
				t.Fatal(err)
			}
			// The watcher loads it (a hot reload).
			var why string
			testkit.Eventually(t, 20*time.Second, func() string {
				why = td.LoadErrors()[a.name]
				if why == "" {
					return a.name + " not refused yet; serving " + strings.Join(td.Services(), ",")
				}
				return ""
			})
			for _, want := range []string{`"` + a.name + `"`, `"order"`, a.route} {
				if !strings.Contains(why, want) {
					t.Errorf("refusal %q does not name %s", why, want)
				}
			}
			if got := strings.Join(td.Services(), ","); got != "order" {
				t.Fatalf("serving %s, want order alone", got)
			}
			if got := servedBy(t, td, a.method, a.path); got != "order" {
				t.Fatalf("%s %s after the attack: served by %s, want order", a.method, a.path, got)
			}
			if !strings.Contains(td.logs.String(), "module refused") {
				t.Fatal("no 'module refused' log line")
			}
		})
	}
}

// TestRouteAttackAtStartRefusesBoth: when the attacker and order are both in
// the plugin directory at start, neither gets the contested routes (file
// name order does not decide): both are refused, each naming the other, in
// LoadErrors and the admin view; a service beside them loads.
func TestRouteAttackAtStartRefusesBoth(t *testing.T) {
	for _, a := range routeAttacks {
		t.Run(a.name, func(t *testing.T) {
			td := startDaemonWith(t, nil, map[string][]byte{
				"order.wasm":     routeGuest(t, "order", orderRoutes...),
				a.name + ".wasm": routeGuest(t, a.name, a.route),
				"pay.wasm":       routeGuest(t, "pay", "GET /payments/{id}"),
			}, nil)
			if got := strings.Join(td.Services(), ","); got != "pay" {
				t.Fatalf("serving %s, want pay alone", got)
			}
			errs := td.LoadErrors()
			for self, other := range map[string]string{"order": a.name, a.name: "order"} {
				why := errs[self]
				for _, want := range []string{`"` + other + `"`, `"` + self + `"`, a.route, "refused too"} {
					if !strings.Contains(why, want) {
						t.Errorf("refusal of %s %q does not say %s", self, why, want)
					}
				}
			}
			failed := 0
			for _, s := range td.servicesView() {
				if s.Status == "FAILED" && (s.Name == "order" || s.Name == a.name) && s.LastError != "" {
					failed++
				}
			}
			if failed != 2 {
				t.Fatalf("admin view shows %d of order and %s as failed, want 2: %+v", failed, a.name, td.servicesView())
			}
			if got := servedBy(t, td, a.method, a.path); got != "404" && got != "405" {
				t.Fatalf("%s %s: served by %s, want no service", a.method, a.path, got)
			}
			if got := servedBy(t, td, "GET", "/payments/7"); got != "pay" {
				t.Fatalf("GET /payments/7: served by %s, want pay", got)
			}
			// A reload of the whole directory (SIGHUP) decides the two the
			// same way: file name order does not hand the route to either.
			if err := td.Reload(context.Background()); err == nil {
				t.Fatal("Reload with both parties present reported no refusal")
			}
			if got := strings.Join(td.Services(), ","); got != "pay" {
				t.Fatalf("after Reload: serving %s, want pay alone", got)
			}
			// Once the attacker is gone, a reload of order serves it.
			if err := os.Remove(filepath.Join(td.dir, a.name+".wasm")); err != nil {
				t.Fatal(err)
			}
			if err := td.LoadFile(context.Background(), filepath.Join(td.dir, "order.wasm")); err != nil {
				t.Fatalf("order alone: %v", err)
			}
			if got := servedBy(t, td, a.method, a.path); got != "order" {
				t.Fatalf("%s %s after the attacker left: served by %s, want order", a.method, a.path, got)
			}
		})
	}
}

// TestCatchAllNeedsGrant: a catch-all route is refused without catch_all =
// true in the service file, and with it serves what no other route takes,
// while order keeps its routes (GET and the HEAD it implies).
func TestCatchAllNeedsGrant(t *testing.T) {
	for _, path := range []string{"/{rest...}", "/"} {
		t.Run("without grant "+path, func(t *testing.T) {
			td := startDaemonWith(t, nil, map[string][]byte{
				"order.wasm": routeGuest(t, "order", orderRoutes...),
				"site.wasm":  routeGuest(t, "site", "GET "+path),
				"site.toml":  []byte("[grants]\nkv = false\n"),
			}, nil)
			if got := strings.Join(td.Services(), ","); got != "order" {
				t.Fatalf("serving %s, want order alone", got)
			}
			why := td.LoadErrors()["site"]
			if !strings.Contains(why, "catch_all = true") || !strings.Contains(why, path) {
				t.Fatalf("refusal %q does not name the route and the grant", why)
			}
			if strings.Contains(td.LoadErrors()["order"], "site") {
				t.Fatalf("order refused because of site's refused catch-all: %s", td.LoadErrors()["order"])
			}
			if got := servedBy(t, td, "GET", "/elsewhere"); got != "404" {
				t.Fatalf("GET /elsewhere: served by %s, want 404", got)
			}
		})
	}
	t.Run("with grant", func(t *testing.T) {
		td := startDaemonWith(t, nil, map[string][]byte{
			"order.wasm": routeGuest(t, "order", orderRoutes...),
			"site.wasm":  routeGuest(t, "site", "GET /{rest...}"),
			"site.toml":  []byte("[grants]\ncatch_all = true\n"),
		}, nil)
		if got := strings.Join(td.Services(), ","); got != "order,site" {
			t.Fatalf("serving %s, want order,site; load errors %v", got, td.LoadErrors())
		}
		for _, c := range []struct{ method, path, want string }{
			{"GET", "/elsewhere/deep", "site"},
			{"GET", "/", "site"},
			{"HEAD", "/elsewhere", "site"},
			{"GET", "/orders/42", "order"},
			{"HEAD", "/orders/42", "order"},
			{"POST", "/orders", "order"},
		} {
			if got := servedBy(t, td, c.method, c.path); got != c.want {
				t.Errorf("%s %s: served by %s, want %s", c.method, c.path, got, c.want)
			}
		}
		// A catch-all does not shield a HEAD route of its own from the
		// overlap rule: HEAD / of another service would take order's HEAD.
		path := filepath.Join(td.dir, "headall.wasm")
		if err := os.WriteFile(path, routeGuest(t, "headall", "HEAD /"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(td.dir, "headall.toml"), []byte("[grants]\ncatch_all = true\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := td.LoadFile(context.Background(), path); err == nil || !strings.Contains(err.Error(), "order") {
			t.Fatalf("HEAD / beside order's GET /orders/{id} and site's GET /{rest...}: %v", err)
		}
	})
}

// TestCheckReportsRouteConflicts: meshd check refuses a catch-all without
// its grant (and says which grant it needs), and, given several modules,
// refuses both parties of each route conflict and no one else.
func TestCheckReportsRouteConflicts(t *testing.T) {
	dir := t.TempDir()
	files := map[string][]byte{
		"order.wasm":  routeGuest(t, "order", orderRoutes...),
		"shadow.wasm": routeGuest(t, "shadow", "GET /orders/hostile-shadow"),
		"pay.wasm":    routeGuest(t, "pay", "GET /payments/{id}"),
		"site.wasm":   routeGuest(t, "site", "GET /{rest...}"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	rep, err := Check(ctx, filepath.Join(dir, "site.wasm"), "", nil)
	if err == nil || !strings.Contains(err.Error(), "catch_all = true") {
		t.Fatalf("catch-all without grant: %v", err)
	}
	if !slices.Contains(rep.Needs, "catch_all = true") {
		t.Fatalf("needs %v, want catch_all = true", rep.Needs)
	}
	if err := os.WriteFile(filepath.Join(dir, "site.toml"), []byte("[grants]\ncatch_all = true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var reps []*CheckReport
	for _, name := range []string{"order", "shadow", "pay", "site"} {
		rep, err := Check(ctx, filepath.Join(dir, name+".wasm"), "", nil)
		if err != nil {
			t.Fatalf("%s alone: %v", name, err)
		}
		reps = append(reps, rep)
	}
	err = CheckConflicts(reps)
	if err == nil {
		t.Fatal("order and shadow checked together: no conflict")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "order.wasm: ") || !strings.HasPrefix(lines[1], "shadow.wasm: ") {
		t.Fatalf("refusals %q, want order.wasm's and shadow.wasm's", lines)
	}
	for _, l := range lines {
		if !strings.Contains(l, `"GET /orders/hostile-shadow"`) || !strings.Contains(l, `"GET /orders/{id}"`) {
			t.Errorf("refusal %q does not name both routes", l)
		}
	}
	if err := CheckConflicts([]*CheckReport{reps[0], reps[2], reps[3]}); err != nil {
		t.Fatalf("order, pay and a granted catch-all together: %v", err)
	}
}
