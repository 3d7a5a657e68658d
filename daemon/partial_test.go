package daemon

import (
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/kv"
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
