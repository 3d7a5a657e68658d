package daemon

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/testkit"
)

// TestConformanceGuest drives the hand-written WAT guest
// (host/testdata/conformance.wat) through the real gateway, bus and store:
// proof that a module in a language other than Go implements ABI v1.
func TestConformanceGuest(t *testing.T) {
	td := startDaemon(t, nil, nil)

	t.Run("echo", func(t *testing.T) {
		r := td.do(t, "POST", "/wat/echo", "application/json", `{"hello":"wat"}`)
		if r.status != 200 || string(r.body) != `{"hello":"wat"}` || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("%d %q %v", r.status, r.body, r.header)
		}
	})
	t.Run("kv read your write, then committed", func(t *testing.T) {
		if r := td.do(t, "GET", "/wat/kv", "", ""); r.status != 404 {
			t.Fatalf("before any write: %d %s", r.status, r.body)
		}
		r := td.do(t, "POST", "/wat/kv", "application/json", `{"v":1}`)
		if r.status != 200 || string(r.body) != `{"v":1}` {
			t.Fatalf("set+get in one call: %d %q", r.status, r.body)
		}
		r = td.do(t, "GET", "/wat/kv", "", "")
		if r.status != 200 || string(r.body) != `{"v":1}` {
			t.Fatalf("get in a later call: %d %q", r.status, r.body)
		}
	})
	t.Run("publish and receive its own event", func(t *testing.T) {
		if r := td.do(t, "POST", "/wat/publish", "application/json", `{"n":42}`); r.status != http.StatusAccepted {
			t.Fatalf("publish: %d %s", r.status, r.body)
		}
		testkit.Eventually(t, 10*time.Second, func() string {
			r := td.do(t, "GET", "/wat/event", "", "")
			if r.status != 200 || string(r.body) != `{"n":42}` {
				return "event not handled yet: " + string(r.body)
			}
			return ""
		})
		if !strings.Contains(td.logs.String(), "conformance guest handled an event") {
			t.Fatal("the guest's log line is missing")
		}
	})
	t.Run("bad pointer is an error code, not a crash", func(t *testing.T) {
		r := td.do(t, "GET", "/wat/badptr", "", "")
		if r.status != 200 || !strings.Contains(string(r.body), "outside guest memory") {
			t.Fatalf("%d %q", r.status, r.body)
		}
	})
	t.Run("ungranted publish is denied", func(t *testing.T) {
		r := td.do(t, "GET", "/wat/denied", "", "")
		if r.status != 403 || !strings.Contains(string(r.body), "not granted") {
			t.Fatalf("%d %q", r.status, r.body)
		}
	})
	t.Run("trap fails one request only", func(t *testing.T) {
		wantProblem(t, td.do(t, "GET", "/wat/trap", "", ""), 500, "")
		if r := td.do(t, "POST", "/wat/echo", "application/json", `{}`); r.status != 200 {
			t.Fatalf("after a trap: %d %s", r.status, r.body)
		}
		if r := td.do(t, "POST", "/orders", "application/json", orderBody); r.status != 201 {
			t.Fatalf("order service after a trap elsewhere: %d %s", r.status, r.body)
		}
	})
}
