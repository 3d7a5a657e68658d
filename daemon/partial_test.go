package daemon

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/kv"
	"github.com/meshd/meshd/internal/testkit"
)

// A request whose key writes were stored but whose events the stream
// refused is answered 500 "partly applied", without Retry-After: a client
// retrying a 503 "retry later" made the order twice.
func TestRequestPartlyAppliedIsNotRetryLater(t *testing.T) {
	td := startDaemonWith(t, []string{"order", "payment"}, nil, nil)
	ctx := context.Background()
	js := td.nats.JetStream()
	orders := func() uint64 {
		st, err := js.Stream(ctx, "KV_"+kv.BucketPrefix+"order")
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	// The event stream takes nothing more: full, discarding new messages.
	restore := fillEvents(t, js)
	defer restore()
	before := orders()
	r := td.do(t, "POST", "/orders", "application/json", `{"user_id":"kim","items":[{"name":"x","price":100}]}`)
	if r.status != 500 || !strings.Contains(string(r.body), `"title":"partly applied"`) || !strings.Contains(string(r.body), "do not retry") {
		t.Fatalf("POST /orders with the event stream full: %d %s, want 500 partly applied", r.status, r.body)
	}
	if ra := r.header.Get("Retry-After"); ra != "" {
		t.Fatalf("Retry-After %q on a partly applied request", ra)
	}
	if after := orders(); after <= before {
		t.Fatalf("order store held %d messages before and %d after: the write was not stored, so this is not the case under test", before, after)
	}
}

// fillEvents makes the event stream take nothing more (full, discarding
// new messages) and returns what gives it back its limit.
func fillEvents(t *testing.T, js jetstream.JetStream) (restore func()) {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, bus.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	cfg.MaxMsgs = max(int64(info.State.Msgs), 1)
	cfg.Discard = jetstream.DiscardNew
	if info.State.Msgs == 0 {
		if _, err := js.Publish(ctx, bus.DefaultSubjects+".FILLER", nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	return func() { unlimitEvents(t, js) }
}

// unlimitEvents lifts the event stream's message limit (the bus sets
// none).
func unlimitEvents(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, bus.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.MaxMsgs = -1
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Errorf("lift the event stream's limit: %v", err)
	}
}

// With the order service's outbox on, a POST whose writes are stored while
// the event stream refuses its events succeeds (201), and once the stream
// takes events again the relay publishes them: the order is paid.
func TestRequestWithOutboxSettlesWhenTheStreamReturns(t *testing.T) {
	td := startDaemonWith(t, []string{"order", "payment"}, map[string][]byte{"order.toml": orderWithOutbox(t)}, nil)
	restore := fillEvents(t, td.nats.JetStream())
	r := td.do(t, "POST", "/orders", "application/json", `{"user_id":"kim","items":[{"name":"x","price":100}]}`)
	if r.status != 201 {
		t.Fatalf("POST /orders with the outbox on and the event stream full: %d %s, want 201", r.status, r.body)
	}
	id, _ := r.json(t)["id"].(string)
	time.Sleep(300 * time.Millisecond) // the relay's first try meets the full stream
	if m := td.do(t, "GET", "/orders/"+id, "", "").json(t); m["status"] != "CREATED" {
		t.Fatalf("order %s while its events wait: %v, want CREATED", id, m)
	}
	restore()
	testkit.Eventually(t, 60*time.Second, func() string {
		if m := td.do(t, "GET", "/orders/"+id, "", "").json(t); m["status"] != "PAID" {
			return fmt.Sprintf("order %s: %v", id, m)
		}
		return ""
	})
}

// With the order service's outbox on, the records of a request whose
// events were never published (the stream full, then the daemon stopped,
// as a crash would leave them) are published by the next daemon on the
// same data directory when it loads the service: the order is paid.
func TestOutboxRecordsPublishedAtTheNextStart(t *testing.T) {
	td := startDaemonWith(t, []string{"order", "payment"}, map[string][]byte{"order.toml": orderWithOutbox(t)}, nil)
	fillEvents(t, td.nats.JetStream()) // and left full for the next daemon
	r := td.do(t, "POST", "/orders", "application/json", `{"user_id":"kim","items":[{"name":"x","price":100}]}`)
	if r.status != 201 {
		t.Fatalf("POST /orders with the outbox on and the event stream full: %d %s, want 201", r.status, r.body)
	}
	id, _ := r.json(t)["id"].(string)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := td.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}

	next := runDaemon(t, td.cfg, td.dir)
	if m := next.do(t, "GET", "/orders/"+id, "", "").json(t); m["status"] != "CREATED" {
		t.Fatalf("order %s after the restart, its events still in the outbox: %v, want CREATED", id, m)
	}
	unlimitEvents(t, next.nats.JetStream())
	testkit.Eventually(t, 60*time.Second, func() string {
		if m := next.do(t, "GET", "/orders/"+id, "", "").json(t); m["status"] != "PAID" {
			return fmt.Sprintf("order %s: %v", id, m)
		}
		return ""
	})
}
