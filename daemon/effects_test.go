package daemon

import (
	"context"
	"testing"

	"github.com/meshd/meshd/host"
)

// TestEffectsOutliveTheCaller: once a guest has returned successfully, its
// effects are applied to the end even though the caller's context is gone
// (a client that disconnected): cutting them off would leave half of them.
func TestEffectsOutliveTheCaller(t *testing.T) {
	td := startChaos(t)
	s := td.lookup("chaos")
	if s == nil {
		t.Fatal("chaos not loaded")
	}
	inv := host.Invocation{
		Writes: []host.KVOp{{Key: "k", Value: []byte(`{"n":7}`)}, {Key: "other", Value: []byte(`1`)}},
		Events: []host.Event{{Type: "CHAOS_EVENT", Data: []byte(`{"n":7}`)}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the client went away after the guest returned
	if err := td.dispatch.Apply(ctx, s, &inv, true); err != nil {
		t.Fatalf("apply on a finished request's context: %v", err)
	}
	if r := td.do(t, "GET", "/chaos/k", "", ""); r.status != 200 || string(r.body) != `{"n":7}` {
		t.Fatalf("key after apply: %d %s", r.status, r.body)
	}
	if n := td.eventsStored(t, "CHAOS_EVENT"); n != 1 {
		t.Fatalf("%d CHAOS_EVENT in the stream, want 1", n)
	}
}
