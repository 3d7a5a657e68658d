package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/config"
	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/kv"
	"github.com/meshd/meshd/host/metrics"
	"github.com/meshd/meshd/host/natsd/natsdtest"
	"github.com/meshd/meshd/host/registry"
)

// outboxFixture is a dispatcher serving one service with a store, on an
// embedded NATS server.
type outboxFixture struct {
	js    jetstream.JetStream
	store *kv.Store
	svc   *counterService
	d     *Dispatcher
	m     *metrics.Metrics
}

func newOutboxFixture(t *testing.T) *outboxFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js := natsdtest.Server(t).JetStream()
	store, err := kv.Open(ctx, js, "shop", kv.Options{})
	if err != nil {
		t.Fatalf("kv.Open: %v", err)
	}
	b, err := bus.New(ctx, js, bus.Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("bus.New: %v", err)
	}
	svc := &counterService{name: "shop", store: store, cfg: &config.Events{Outbox: true}}
	reg := registry.New()
	reg.Serve(registry.Instance{Service: "shop", Version: "v1", Node: "n", Status: registry.Up, Local: svc})
	m := metrics.New(metrics.BuildInfo{}, metrics.Sources{})
	d := New(reg, WithBus(b), WithMetrics(m))
	t.Cleanup(func() {
		d.CloseOutbox()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = b.Close(ctx)
	})
	return &outboxFixture{js: js, store: store, svc: svc, d: d, m: m}
}

// metric returns the value of the outbox metric name for the service.
func (f *outboxFixture) metric(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := f.m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mm := range mf.GetMetric() {
			if mm.GetLabel()[0].GetValue() == "shop" {
				if g := mm.GetGauge(); g != nil {
					return g.GetValue()
				}
				return mm.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// records returns the outbox records of the service's bucket, decoded.
func (f *outboxFixture) records(t *testing.T) []outboxRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	recs, _, err := f.store.OutboxRecords(ctx, 100)
	if err != nil {
		t.Fatalf("OutboxRecords: %v", err)
	}
	out := make([]outboxRecord, len(recs))
	for i, r := range recs {
		if err := json.Unmarshal(r.Value, &out[i]); err != nil {
			t.Fatalf("record %s: %v", r.ID, err)
		}
	}
	return out
}

// storedID returns the id of the last event stored on subject in stream,
// "" when there is none.
func (f *outboxFixture) storedID(t *testing.T, stream, subject string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := f.js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	m, err := st.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		return ""
	}
	return m.Header.Get("ce-id")
}

// setMaxMsgs limits the events stream to n messages, refusing new ones
// past it (-1: no limit).
func (f *outboxFixture) setMaxMsgs(t *testing.T, n int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := f.js.Stream(ctx, bus.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	c := st.CachedInfo().Config
	c.MaxMsgs, c.Discard = n, jetstream.DiscardNew
	if _, err := f.js.UpdateStream(ctx, c); err != nil {
		t.Fatalf("UpdateStream: %v", err)
	}
}

// waitFor polls cond every 50 ms until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOutboxRelaysWhenPublishFails: the events stream refuses events after
// the writes of a request are stored. The request succeeds, the outbox
// record holds its events, and once the stream takes events again the
// relay publishes them with the recorded ids and deletes the record.
func TestOutboxRelaysWhenPublishFails(t *testing.T) {
	f := newOutboxFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The stream holds one event and refuses any other (DiscardNew), at once.
	f.setMaxMsgs(t, 1)
	if _, err := f.js.Publish(ctx, bus.DefaultSubjects+".FILLER", nil); err != nil {
		t.Fatalf("filler: %v", err)
	}

	inv := &host.Invocation{TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
	inv.Writes = []host.KVOp{{Key: "order/1", Value: []byte(`{"status":"CREATED"}`)}}
	inv.Events = []host.Event{
		{Type: "ORDER_CREATED", Data: []byte(`{"id":"1"}`)},
		{Type: "ORDER_PAYMENT_TIMEOUT", Data: []byte(`{"id":"1"}`), Delay: time.Hour},
	}
	if err := f.d.Apply(ctx, f.svc, inv, true); err != nil {
		t.Fatalf("Apply failed after the writes were stored (a client told to retry a stored order): %v", err)
	}
	if v, err := f.store.Get(ctx, "order/1"); err != nil || string(v) != `{"status":"CREATED"}` {
		t.Fatalf("order not stored: %q %v", v, err)
	}
	recs := f.records(t)
	if len(recs) != 1 || len(recs[0].Events) != 2 {
		t.Fatalf("outbox records %+v, want one of two events", recs)
	}
	created, timeout := recs[0].Events[0], recs[0].Events[1]
	if created.Type != "ORDER_CREATED" || created.Source != "shop" || string(created.Data) != `{"id":"1"}` ||
		created.TraceParent != inv.TraceParent || created.DeliverAt != 0 {
		t.Fatalf("recorded event %+v", created)
	}
	if timeout.Type != "ORDER_PAYMENT_TIMEOUT" || time.Until(time.Unix(0, timeout.DeliverAt)) < 50*time.Minute {
		t.Fatalf("recorded delayed event %+v, want due in about an hour", timeout)
	}
	subject := bus.DefaultSubjects + ".ORDER_CREATED"
	if id := f.storedID(t, bus.DefaultStream, subject); id != "" {
		t.Fatalf("event %s stored while the stream refused events", id)
	}
	if n := f.metric(t, "meshd_outbox_pending_records"); n != 1 {
		t.Errorf("meshd_outbox_pending_records = %v while the stream refuses events, want 1", n)
	}

	f.setMaxMsgs(t, -1)
	waitFor(t, 30*time.Second, "ORDER_CREATED published by the relay", func() bool {
		return f.storedID(t, bus.DefaultStream, subject) == created.ID
	})
	waitFor(t, 30*time.Second, "the delayed event scheduled by the relay", func() bool {
		return f.storedID(t, bus.DefaultScheduleStream, bus.DefaultScheduleSubject+".ORDER_PAYMENT_TIMEOUT") == timeout.ID
	})
	waitFor(t, 30*time.Second, "the outbox record deleted", func() bool { return len(f.records(t)) == 0 })
	if p, r := f.metric(t, "meshd_outbox_pending_records"), f.metric(t, "meshd_outbox_relayed_records_total"); p != 0 || r != 1 {
		t.Errorf("outbox metrics pending %v, relayed %v; want 0 and 1", p, r)
	}
	keys, err := f.store.Keys(ctx)
	if err != nil || len(keys) != 1 || keys[0] != "order/1" {
		t.Fatalf("Keys = %q, %v; want only order/1", keys, err)
	}
}

// TestOutboxPublishedAndDeleted: when publishing works, the events carry
// the ids the record held and the record is deleted.
func TestOutboxPublishedAndDeleted(t *testing.T) {
	f := newOutboxFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	inv := &host.Invocation{}
	inv.Writes = []host.KVOp{{Key: "order/2", Value: []byte(`{}`)}}
	inv.Events = []host.Event{{Type: "ORDER_CREATED", Data: []byte(`{"id":"2"}`)}}
	if err := f.d.Apply(ctx, f.svc, inv, true); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if f.storedID(t, bus.DefaultStream, bus.DefaultSubjects+".ORDER_CREATED") == "" {
		t.Fatal("event not published")
	}
	waitFor(t, 30*time.Second, "the outbox record deleted", func() bool { return len(f.records(t)) == 0 })
}

// TestOutboxScannedAtStart: a record left in the bucket, as a crash
// between the batch and the publish leaves it, is published when the
// service starts (StartOutbox), and deleted.
func TestOutboxScannedAtStart(t *testing.T) {
	f := newOutboxFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ev := bus.NewEvent("shop", "ORDER_CREATED", []byte(`{"id":"3"}`))
	recs, _, err := outboxRecords([]bus.Pending{{Event: ev}}, f.store.MaxOutboxValue())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.ApplyWithOutbox(ctx, []kv.Op{{Key: "order/3", Value: []byte(`{}`)}}, recs); err != nil {
		t.Fatalf("ApplyWithOutbox: %v", err)
	}
	subject := bus.DefaultSubjects + ".ORDER_CREATED"
	if id := f.storedID(t, bus.DefaultStream, subject); id != "" {
		t.Fatalf("event %s stored before the start", id)
	}
	f.d.StartOutbox(f.svc)
	waitFor(t, 30*time.Second, "the left record's event published", func() bool {
		return f.storedID(t, bus.DefaultStream, subject) == ev.ID
	})
	waitFor(t, 30*time.Second, "the outbox record deleted", func() bool { return len(f.records(t)) == 0 })
}

// TestOutboxRecordsSplit: events that do not fit one record go in several.
func TestOutboxRecordsSplit(t *testing.T) {
	var evs []bus.Pending
	for range 5 {
		evs = append(evs, bus.Pending{Event: bus.NewEvent("shop", "T", make([]byte, 3000))})
	}
	recs, held, err := outboxRecords(evs, 9000)
	if err != nil {
		t.Fatal(err)
	}
	if len(held) != len(recs) {
		t.Fatalf("%d records held, %d stored", len(held), len(recs))
	}
	n := 0
	for i, r := range recs {
		if len(r.Value) > 9000 {
			t.Errorf("record %s of %d bytes, over the limit", r.ID, len(r.Value))
		}
		var or outboxRecord
		if err := json.Unmarshal(r.Value, &or); err != nil {
			t.Fatal(err)
		}
		if r.ID != or.Events[0].ID {
			t.Errorf("record id %s, first event %s", r.ID, or.Events[0].ID)
		}
		if h, _ := json.Marshal(held[i]); string(h) != string(r.Value) {
			t.Errorf("record %s held as %s, stored as %s", r.ID, h, r.Value)
		}
		n += len(or.Events)
	}
	if len(recs) < 2 || n != 5 {
		t.Fatalf("%d records holding %d events; want several holding 5", len(recs), n)
	}
}

// TestNoOutboxUnlessSet: without events.outbox a request's effects store
// no record, and a publish that fails after the writes are stored answers
// partly applied; an event handler's effects (apply without outbox) never
// store one, even for a service with the setting.
func TestNoOutboxUnlessSet(t *testing.T) {
	f := newOutboxFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	inv := func(id string) *host.Invocation {
		inv := &host.Invocation{}
		inv.Writes = []host.KVOp{{Key: "order/" + id, Value: []byte(`{}`)}}
		inv.Events = []host.Event{{Type: "ORDER_CREATED", Data: []byte(`{"id":"` + id + `"}`)}}
		return inv
	}
	if err := f.d.apply(ctx, f.svc, inv("h"), true, nil, false); err != nil {
		t.Fatalf("handler's apply: %v", err)
	}
	if recs := f.records(t); len(recs) != 0 {
		t.Fatalf("an event handler's effects stored outbox records %+v", recs)
	}
	f.svc.cfg = &config.Events{}
	f.setMaxMsgs(t, 1) // the handler's event fills it
	pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
	defer pcancel()
	err := f.d.Apply(pctx, f.svc, inv("r"), true)
	if !errors.Is(err, ErrEventsNotPublished) {
		t.Fatalf("Apply without the outbox, events refused = %v, want ErrEventsNotPublished", err)
	}
	if recs := f.records(t); len(recs) != 0 {
		t.Fatalf("a request without events.outbox stored outbox records %+v", recs)
	}
}
