package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/kv"
)

// The outbox: an invocation whose writes go as one atomic batch stores,
// in that batch, outbox records (kv.ApplyWithOutbox) holding its events
// exactly as they are then published (ids, times, trace context, and the
// time a delayed one is due). Once they are published the records are
// deleted, by the service's relay, not on the request's path. When
// publishing fails after the writes were stored, the effects are durable
// all the same: the invocation succeeds, and the relay publishes the
// records' events until that works. At a service's start the relay scans
// its bucket for records left behind (a crash between the batch and the
// publish, a delete that failed) and publishes them. A record published
// twice (by two nodes of a mesh, or a relay and the request) carries the
// same event ids: within the streams' duplicate window the second copy is
// dropped; past it, subscribers see the event again (at least once).

// outboxEvent is one event of an outbox record.
type outboxEvent struct {
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype,omitempty"`
	TraceParent     string    `json:"traceparent,omitempty"`
	Data            []byte    `json:"data"`
	// DeliverAt, for a delayed event, is when it is due (Unix ns).
	DeliverAt int64 `json:"deliver_at,omitempty"`
}

// outboxRecord is what an outbox record holds.
type outboxRecord struct {
	Events []outboxEvent `json:"events"`
}

// recordOverhead bounds the JSON of a record around its events' data
// (base64: 4 bytes per 3), per event.
const recordOverhead = 1024

// outboxRecords packs evs (with the times delayed ones are due, from their
// events' times) into as few records as hold them within limit bytes each:
// usually one. A record's id is the id of its first event. It returns
// the records as stored and, for a hand-off to the relay, as held.
func outboxRecords(evs []bus.Pending, limit int64) ([]kv.OutboxRecord, []*outboxRecord, error) {
	var out []kv.OutboxRecord
	var held []*outboxRecord
	var cur outboxRecord
	var size int64
	flush := func() error {
		if len(cur.Events) == 0 {
			return nil
		}
		v, err := json.Marshal(&cur)
		if err != nil {
			return err
		}
		out = append(out, kv.OutboxRecord{ID: cur.Events[0].ID, Value: v})
		held = append(held, &outboxRecord{Events: cur.Events})
		cur, size = outboxRecord{}, 0
		return nil
	}
	for _, p := range evs {
		e := p.Event
		oe := outboxEvent{ID: e.ID, Source: e.Source, Type: e.Type, Time: e.Time,
			DataContentType: e.DataContentType, TraceParent: e.TraceParent, Data: e.Data}
		if p.Delay > 0 {
			oe.DeliverAt = e.Time.Add(p.Delay).UnixNano()
		}
		n := int64(len(e.Data)+2)/3*4 + int64(len(e.Type)+len(e.Source)+len(e.TraceParent)+len(e.DataContentType)+len(e.ID)) + recordOverhead
		if size > 0 && size+n > limit {
			if err := flush(); err != nil {
				return nil, nil, err
			}
		}
		cur.Events = append(cur.Events, oe)
		size += n
	}
	if err := flush(); err != nil {
		return nil, nil, err
	}
	return out, held, nil
}

// pending returns the events of record r to publish now: a delayed one
// keeps the time it is due (at least a nanosecond from now, so it still
// goes through the schedule).
func (r *outboxRecord) pending(now time.Time) []bus.Pending {
	out := make([]bus.Pending, len(r.Events))
	for i, e := range r.Events {
		out[i].Event = bus.Event{ID: e.ID, Source: e.Source, Type: e.Type, Time: e.Time,
			DataContentType: e.DataContentType, TraceParent: e.TraceParent, Data: e.Data}
		if e.DeliverAt != 0 {
			out[i].Delay = max(time.Unix(0, e.DeliverAt).Sub(now), time.Nanosecond)
		}
	}
	return out
}

// Bounds of a service's relay.
const (
	// maxRelayPending is the most records a relay holds in memory to
	// publish; past it, it leaves the others in the bucket and scans it
	// again once it has published those it holds.
	maxRelayPending = 4096
	// maxRelayDeletes is the most deletes of published records a relay
	// holds; past it, a request deletes its records itself.
	maxRelayDeletes = 16384
	relayMinBackoff = 250 * time.Millisecond
	relayMaxBackoff = 30 * time.Second
	// relayLogEvery is how often at most a relay logs a failure.
	relayLogEvery = 10 * time.Second
	relayTimeout  = 10 * time.Second
)

// outbox holds the relays of the dispatcher's services.
type outbox struct {
	mu     sync.Mutex
	relays map[string]*relay // by service name
	quit   chan struct{}
	closed bool
	wg     sync.WaitGroup
}

// relay publishes the outbox records of one service and deletes them.
type relay struct {
	service string
	store   *kv.Store
	log     *slog.Logger
	pending map[string]*outboxRecord // by record id
	deletes []string                 // records published, to delete
	scan    bool                     // the bucket is to be scanned
	running bool
	lastLog time.Time
	dropped int // failures not logged since lastLog
}

func (d *Dispatcher) outboxState() *outbox {
	d.obOnce.Do(func() { d.ob = &outbox{relays: map[string]*relay{}, quit: make(chan struct{})} })
	return d.ob
}

// relayOf returns the relay of s, made on first use; its store is s's.
// The caller holds o.mu.
func (o *outbox) relayOf(s Service, store *kv.Store) *relay {
	r := o.relays[s.Name()]
	if r == nil {
		r = &relay{service: s.Name(), pending: map[string]*outboxRecord{}}
		o.relays[s.Name()] = r
	}
	r.store, r.log = store, s.Logger()
	return r
}

// start runs r's loop unless it runs. The caller holds o.mu.
func (o *outbox) start(d *Dispatcher, r *relay) {
	if r.running || o.closed {
		return
	}
	r.running = true
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		o.run(d, r)
	}()
}

// StartOutbox has s's relay scan s's bucket for outbox records and
// publish their events: for a service that starts (records a crash left
// behind). A service without a key-value store has none.
func (d *Dispatcher) StartOutbox(s Service) {
	store := s.Store()
	if store == nil {
		return
	}
	o := d.outboxState()
	o.mu.Lock()
	defer o.mu.Unlock()
	r := o.relayOf(s, store)
	r.scan = true
	o.start(d, r)
}

// handOff gives records (held: as outboxRecords returned them), whose
// events were not published, to s's relay, and returns it.
func (d *Dispatcher) handOff(s Service, store *kv.Store, records []kv.OutboxRecord, held []*outboxRecord) *relay {
	o := d.outboxState()
	o.mu.Lock()
	defer o.mu.Unlock()
	r := o.relayOf(s, store)
	for i, rec := range records {
		if len(r.pending) >= maxRelayPending {
			r.scan = true // it is in the bucket
			break
		}
		r.pending[rec.ID] = held[i]
	}
	d.metrics.OutboxPending(r.service, len(r.pending))
	o.start(d, r)
	return r
}

// published deletes records, whose events were published: by s's relay,
// or here when the relay holds too many deletes already.
func (d *Dispatcher) published(ctx context.Context, s Service, store *kv.Store, records []kv.OutboxRecord) {
	o := d.outboxState()
	o.mu.Lock()
	r := o.relayOf(s, store)
	if len(r.deletes)+len(records) <= maxRelayDeletes && !o.closed {
		for _, rec := range records {
			r.deletes = append(r.deletes, rec.ID)
		}
		o.start(d, r)
		o.mu.Unlock()
		return
	}
	o.mu.Unlock()
	ids := make([]string, len(records))
	for i, rec := range records {
		ids[i] = rec.ID
	}
	if err := store.DeleteOutbox(ctx, ids...); err != nil {
		// Left in the bucket: the next scan publishes it again.
		d.relayFailed(r, "deleting published outbox records", err)
	}
}

// relayFailed logs err, at most once per relayLogEvery per relay.
func (d *Dispatcher) relayFailed(r *relay, msg string, err error) {
	o := d.outboxState()
	o.mu.Lock()
	now := time.Now()
	if now.Sub(r.lastLog) < relayLogEvery {
		r.dropped++
		o.mu.Unlock()
		return
	}
	dropped := r.dropped
	r.lastLog, r.dropped = now, 0
	log := r.log
	o.mu.Unlock()
	log.Warn("outbox: "+msg, slog.Any("error", err), slog.Int("failures_not_logged", dropped))
}

// run is r's loop: it deletes published records, scans the bucket when
// asked, and publishes pending records, with backoff after a failure,
// until it has nothing left to do or the outbox closes.
func (o *outbox) run(d *Dispatcher, r *relay) {
	backoff := relayMinBackoff
	for {
		o.mu.Lock()
		deletes := r.deletes
		r.deletes = nil
		scan := r.scan && len(r.pending) == 0
		if scan {
			r.scan = false
		}
		pend := make(map[string]*outboxRecord, len(r.pending))
		for id, rec := range r.pending {
			pend[id] = rec
		}
		store := r.store
		if len(deletes) == 0 && !scan && len(pend) == 0 {
			r.running = false
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()

		failed := false
		ctx, cancel := context.WithTimeout(context.Background(), relayTimeout)
		if len(deletes) > 0 {
			if err := store.DeleteOutbox(ctx, deletes...); err != nil {
				// Left in the bucket: the next scan publishes them again,
				// which the duplicate window drops.
				d.relayFailed(r, "deleting published outbox records", err)
			}
		}
		if scan {
			recs, more, err := store.OutboxRecords(ctx, maxRelayPending)
			if err != nil {
				failed = true
				d.relayFailed(r, "scanning for outbox records", err)
				o.mu.Lock()
				r.scan = true
				o.mu.Unlock()
			} else {
				o.mu.Lock()
				for _, rec := range recs {
					var or outboxRecord
					if err := json.Unmarshal(rec.Value, &or); err != nil {
						o.mu.Unlock()
						d.relayFailed(r, fmt.Sprintf("outbox record %.64q is not valid", rec.ID), err)
						o.mu.Lock()
						continue
					}
					r.pending[rec.ID] = &or
					pend[rec.ID] = &or
				}
				r.scan = r.scan || more
				d.metrics.OutboxPending(r.service, len(r.pending))
				o.mu.Unlock()
			}
		}
		var done []string
		for id, rec := range pend {
			b := d.bus.Load()
			if b == nil {
				failed = true
				break
			}
			if err := b.PublishAll(ctx, rec.pending(time.Now())); err != nil {
				failed = true
				d.relayFailed(r, "publishing the events of outbox records", err)
				break
			}
			done = append(done, id)
		}
		if len(done) > 0 {
			if err := store.DeleteOutbox(ctx, done...); err != nil {
				d.relayFailed(r, "deleting published outbox records", err)
			}
			o.mu.Lock()
			for _, id := range done {
				delete(r.pending, id)
			}
			d.metrics.OutboxPending(r.service, len(r.pending))
			o.mu.Unlock()
			d.metrics.OutboxRelayed(r.service, len(done))
			r.log.Info("outbox: published the events of records", slog.Int("records", len(done)))
		}
		cancel()
		if !failed {
			backoff = relayMinBackoff
			continue
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, relayMaxBackoff)
		select {
		case <-o.quit:
			o.mu.Lock()
			r.running = false
			o.mu.Unlock()
			return
		case <-time.After(wait):
		}
	}
}

// CloseOutbox stops the relays and waits for them. Records they did not
// publish stay in their buckets, for the next start's scan.
func (d *Dispatcher) CloseOutbox() {
	o := d.outboxState()
	o.mu.Lock()
	if !o.closed {
		o.closed = true
		close(o.quit)
	}
	o.mu.Unlock()
	o.wg.Wait()
}
