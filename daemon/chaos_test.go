package daemon

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/internal/testkit"
)

// chaosGrants lets the chaos guest publish and subscribe what it uses, with
// a short deadline and a 10 MiB memory cap so its failures come quickly.
const chaosGrants = `
[grants]
publish = ["CHAOS_EVENT", "CHAOS_FAIL"]
subscribe = ["CHAOS_EVENT", "CHAOS_FAIL"]
kv = true

[limits]
memory_pages = 160
call_timeout = "2s"
`

// startChaos runs a daemon with the misbehaving Go guest beside the demo
// plugins. Failed events are retried quickly, three times.
func startChaos(t *testing.T) *testDaemon {
	t.Helper()
	return startDaemon(t, map[string][]byte{
		"chaos.wasm": readFile(t, fixture(t, "testdata/guest-chaos.wasm")),
		"chaos.toml": []byte(chaosGrants),
	}, func(c *Config) {
		c.Events = bus.Config{MaxDeliver: 3, Backoff: []time.Duration{10 * time.Millisecond}}
	})
}

// eventsStored counts the events of typ in the event stream.
func (td *testDaemon) eventsStored(t *testing.T, typ string) uint64 {
	t.Helper()
	ctx := context.Background()
	st, err := td.nats.JetStream().Stream(ctx, bus.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	subject := bus.DefaultSubjects + "." + typ
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subject]
}

// TestMisbehavingGuestCostsOneRequest is DESIGN.md's promise: a guest that
// panics, loops or exhausts its memory costs one failed request; the service
// and every other service keep serving, and nothing the failed call did is
// applied.
func TestMisbehavingGuestCostsOneRequest(t *testing.T) {
	td := startChaos(t)
	order := `{"user_id":"u1","items":[{"name":"pen","price":100}]}`
	for _, tc := range []struct {
		path   string
		status int
		title  string
	}{
		{"/chaos/panic", 500, "service failed"},
		{"/chaos/loop", 504, ""},
		{"/chaos/oom", 500, "service failed"},
	} {
		t.Run(strings.TrimPrefix(tc.path, "/chaos/"), func(t *testing.T) {
			r := td.do(t, "GET", tc.path, "", "")
			if r.status != tc.status || !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
				t.Fatalf("status %d (%s), want %d problem+json; body %s", r.status, r.header.Get("Content-Type"), tc.status, r.body)
			}
			if r := td.do(t, "GET", "/chaos/ok", "", ""); r.status != 200 {
				t.Fatalf("the service stopped serving after %s: %d %s", tc.path, r.status, r.body)
			}
			if r := td.do(t, "POST", "/orders", "application/json", order); r.status != 201 {
				t.Fatalf("another service stopped serving after %s: %d %s", tc.path, r.status, r.body)
			}
		})
	}
	if st := td.lookup("chaos").Module().Stats(); st.Discarded < 2 {
		t.Fatalf("failed instances were not discarded: %+v", st)
	}
	if logs := td.logs.String(); !strings.Contains(logs, "deliberate panic") {
		t.Fatal("the guest's panic message is not in the logs")
	}
}

func TestFailedCallEffectsAreDiscarded(t *testing.T) {
	td := startChaos(t)
	r := td.do(t, "POST", "/chaos/write-then-panic", "application/json", `{"n":1}`)
	if r.status != 500 {
		t.Fatalf("write-then-panic: %d %s", r.status, r.body)
	}
	if r := td.do(t, "GET", "/chaos/k", "", ""); r.status != 404 {
		t.Fatalf("the key written by a failed call was applied: %d %s", r.status, r.body)
	}
	if n := td.eventsStored(t, "CHAOS_EVENT"); n != 0 {
		t.Fatalf("the event published by a failed call was sent (%d in the stream)", n)
	}
	// The same effects from a call that succeeds are applied.
	if r := td.do(t, "POST", "/chaos/write", "application/json", `{"n":2}`); r.status != 201 {
		t.Fatalf("write: %d %s", r.status, r.body)
	}
	if r := td.do(t, "GET", "/chaos/k", "", ""); r.status != 200 || string(r.body) != `{"n":2}` {
		t.Fatalf("key after a successful call: %d %s", r.status, r.body)
	}
	if n := td.eventsStored(t, "CHAOS_EVENT"); n != 1 {
		t.Fatalf("%d CHAOS_EVENT in the stream, want 1", n)
	}
	testkit.Eventually(t, 10*time.Second, func() string {
		if r := td.do(t, "GET", "/chaos/seen", "", ""); r.status != 200 || string(r.body) != `{"n":2}` {
			return "event not handled: " + string(r.body)
		}
		return ""
	})
}

func TestFailingHandlerIsDeadLettered(t *testing.T) {
	td := startChaos(t)
	if r := td.do(t, "POST", "/chaos/fail-event", "application/json", `{"doomed":true}`); r.status != 202 {
		t.Fatalf("fail-event: %d %s", r.status, r.body)
	}
	var dl []bus.DeadLetter
	testkit.Eventually(t, 20*time.Second, func() string {
		var err error
		dl, err = td.Bus().DeadLetters(context.Background(), "chaos")
		if err != nil {
			return err.Error()
		}
		if len(dl) == 0 {
			return "no dead letter yet"
		}
		return ""
	})
	d := dl[0]
	if len(dl) != 1 || d.Attempts != 3 || d.Event.Type != "CHAOS_FAIL" || string(d.Event.Data) != `{"doomed":true}` ||
		!strings.Contains(d.Reason, "this handler always fails") {
		t.Fatalf("dead letters = %+v; want one CHAOS_FAIL after 3 attempts naming the handler's error", dl)
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
