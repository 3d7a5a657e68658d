package kv

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// TestOutboxRecords: records go in the batch with the writes, are listed
// by OutboxRecords, never by Keys (nor are leases), and DeleteOutbox
// removes them.
func TestOutboxRecords(t *testing.T) {
	s := newJS(t)
	st := openStore(t, s.JetStream(), "shop", nil)
	ctx := ctxT(t)
	recs := []OutboxRecord{{ID: "ev-1", Value: []byte(`{"events":[]}`)}, {ID: "ev-2", Value: []byte(`x`)}}
	if err := st.ApplyWithOutbox(ctx, []Op{{Key: "order/1", Value: []byte("v")}}, recs); err != nil {
		t.Fatalf("ApplyWithOutbox: %v", err)
	}
	if _, err := st.TakeLease(ctx, "s", "k", time.Minute); err != nil {
		t.Fatalf("TakeLease: %v", err)
	}
	// A guest key that looks like a record's is escaped, not one.
	if err := st.Put(ctx, "_meshd.outbox.ev-3", []byte("guest")); err != nil {
		t.Fatal(err)
	}
	keys, err := st.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"_meshd.outbox.ev-3", "order/1"}; !slices.Equal(keys, want) {
		t.Fatalf("Keys = %q, want %q (no outbox record, no lease)", keys, want)
	}
	got, more, err := st.OutboxRecords(ctx, 10)
	if err != nil || more || len(got) != 2 || got[0].ID != "ev-1" || string(got[1].Value) != "x" {
		t.Fatalf("OutboxRecords = %+v, %v, %v", got, more, err)
	}
	if got, more, err := st.OutboxRecords(ctx, 1); err != nil || !more || len(got) != 1 {
		t.Fatalf("OutboxRecords limited to 1 = %+v, %v, %v", got, more, err)
	}
	if err := st.DeleteOutbox(ctx, "ev-1", "ev-2", "absent"); err != nil {
		t.Fatalf("DeleteOutbox: %v", err)
	}
	if got, _, err := st.OutboxRecords(ctx, 10); err != nil || len(got) != 0 {
		t.Fatalf("after DeleteOutbox: %+v, %v", got, err)
	}
	for _, id := range []string{"", "a.b", "a/b", "a b"} {
		if err := st.DeleteOutbox(ctx, id); !errors.Is(err, ErrBadOutboxID) {
			t.Errorf("DeleteOutbox(%q) = %v, want ErrBadOutboxID", id, err)
		}
	}
	if v, err := st.Get(ctx, "order/1"); err != nil || string(v) != "v" {
		t.Fatalf("write of the batch: %q %v", v, err)
	}
}
