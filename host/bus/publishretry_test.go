package bus

import (
	"testing"
	"time"
)

// TestPublishAllWaitsForALeader: an event whose stream does not answer
// (no leader yet, here no stream) is sent again until the stream is back,
// so the batch is stored whole instead of failing halfway; its id keeps
// the resend from storing it twice.
func TestPublishAllWaitsForALeader(t *testing.T) {
	_, b := setup(t, testConfig)
	ctx := testCtx(t)
	st, err := b.js.Stream(ctx, b.cfg.Stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if err := b.js.DeleteStream(ctx, b.cfg.Stream); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- b.PublishAll(ctx, []Pending{{Event: NewEvent("src", "all", []byte("1"))}, {Event: NewEvent("src", "all", []byte("2"))}})
	}()
	select {
	case err := <-done:
		t.Fatalf("PublishAll returned %v while its stream was missing", err)
	case <-time.After(600 * time.Millisecond): // two resends at least
	}
	if _, err := b.js.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("PublishAll after its stream came back: %v", err)
		}
	case <-time.After(publishRetryFor + 5*time.Second):
		t.Fatal("PublishAll did not return")
	}
	if n := streamMsgs(t, ctx, b, b.cfg.Stream); n != 2 {
		t.Fatalf("the stream holds %d events, want the batch's 2", n)
	}
}
