package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/kv"
)

// effectsTimeout bounds the application of one invocation's effects.
const effectsTimeout = 10 * time.Second

// Apply applies an invocation's buffered effects: key writes in order, then
// events. It is called only after the invocation succeeded. Writes are sent
// as one atomic batch (kv.Store.Apply; with atomic false, for a read
// model's projections, one by one: kv.Store.ApplyEach), then events
// together (bus.PublishAll): no event is sent before every write is stored.
//
// Once the guest has returned, its effects are applied to the end on a
// context of their own (bounded by effectsTimeout), whatever happens to
// ctx: a client that disconnects must not cut a request's effects in half.
//
// For a service with events.outbox, a request's (or a call's) writes sent
// as one atomic batch carry its events with them, as outbox records
// (outbox.go).
func (d *Dispatcher) Apply(ctx context.Context, s Service, inv *host.Invocation, atomic bool) error {
	return d.apply(ctx, s, inv, atomic, nil, s.Events().Outbox)
}

// apply is Apply, under lease when it is not nil: the writes are stored
// only while lease is held (kv.Store.ApplyUnder), and, when there are
// none, the events are published only after a check that it still is
// (kv.Lease.Check). Either failing for the lease returns an error
// wrapping kv.ErrLeaseLost, and nothing was applied.
//
// With outbox, writes sent as one atomic batch carry the invocation's
// events with them, as outbox records (outbox.go): once the batch is
// stored, the effects are durable, and a failure to publish the events
// hands the records to the service's relay, which publishes them later,
// instead of failing the invocation (whose retry would make its writes
// again). An event handler's effects need none: its event, acknowledged
// only once they are applied, comes back after a failure or a crash, and
// the handler, run again, publishes its events again (a handler must do
// so: docs/ABI.md).
func (d *Dispatcher) apply(ctx context.Context, s Service, inv *host.Invocation, atomic bool, lease *kv.Lease, outbox bool) error {
	if len(inv.Writes) == 0 && len(inv.Events) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), effectsTimeout)
	defer cancel()
	evs := make([]bus.Pending, len(inv.Events))
	for i, e := range inv.Events {
		ev := bus.NewEvent(s.Name(), e.Type, e.Data)
		ev.TraceParent = inv.TraceParent
		evs[i] = bus.Pending{Event: ev, Delay: e.Delay}
	}
	store := s.Store()
	if outbox && atomic && lease == nil && len(inv.Writes) > 0 && len(evs) > 0 && store != nil {
		return d.applyOutbox(ctx, s, store, inv, evs)
	}
	if err := applyWrites(ctx, s, inv.Writes, atomic, lease, nil); err != nil {
		return err
	}
	if len(inv.Events) == 0 {
		return nil
	}
	if lease != nil && len(inv.Writes) == 0 {
		if err := lease.Check(ctx); err != nil {
			return fmt.Errorf("publishing events: %w", err)
		}
	}
	b := d.bus.Load()
	if b == nil {
		return fmt.Errorf("publishing events: %w", bus.ErrClosed)
	}
	if err := b.PublishAll(ctx, evs); err != nil {
		if len(inv.Writes) > 0 {
			return fmt.Errorf("%w: %w", ErrEventsNotPublished, err)
		}
		return fmt.Errorf("publishing events: %w", err)
	}
	return nil
}

// ErrEventsNotPublished is the error of effects whose key writes were
// stored but whose events could not be published (bus.PublishAll already
// resends through a stream's leader election): the outcome is partly
// applied. A request answers it as fault.Partial, not retry-later, since
// a retry would make its writes again; an event handler's event is
// redelivered and the handler runs again, publishing them then.
var ErrEventsNotPublished = errors.New("key writes stored, events not published")

// applyOutbox applies inv's writes with its events evs as outbox records
// in one atomic batch, then publishes evs. Once the batch is stored it
// returns nil: the records of events not published go to s's relay.
func (d *Dispatcher) applyOutbox(ctx context.Context, s Service, store *kv.Store, inv *host.Invocation, evs []bus.Pending) error {
	records, held, err := outboxRecords(evs, store.MaxOutboxValue())
	if err != nil {
		return fmt.Errorf("outbox record: %w", err)
	}
	if err := applyWrites(ctx, s, inv.Writes, true, nil, records); err != nil {
		return err
	}
	b := d.bus.Load()
	if b == nil {
		err = bus.ErrClosed
	} else {
		err = b.PublishAll(ctx, evs)
	}
	if err != nil {
		r := d.handOff(s, store, records, held)
		d.relayFailed(r, "events of a request not published; the relay publishes them", err)
		return nil
	}
	d.published(ctx, s, store, records)
	return nil
}

// applyWrites applies key writes in order to s's store: as one atomic
// batch, or one by one when atomic is false; under lease when it is not
// nil. With records (atomic and without a lease: a request's), they go in
// the same batch.
func applyWrites(ctx context.Context, s Service, writes []host.KVOp, atomic bool, lease *kv.Lease, records []kv.OutboxRecord) error {
	if len(writes) == 0 {
		return nil
	}
	store := s.Store()
	if store == nil { // the binding buffers no write without a kv grant
		return fmt.Errorf("applying %d kv writes: service %s has no key-value store", len(writes), s.Name())
	}
	ops := make([]kv.Op, len(writes))
	for i, w := range writes {
		ops[i] = kv.Op(w)
	}
	var err error
	switch {
	case len(records) > 0:
		err = store.ApplyWithOutbox(ctx, ops, records)
	case lease != nil && atomic:
		err = store.ApplyUnder(ctx, lease, ops)
	case lease != nil:
		err = store.ApplyEachUnder(ctx, lease, ops)
	case atomic:
		err = store.Apply(ctx, ops)
	default:
		err = store.ApplyEach(ctx, ops)
	}
	// A write of a batch that failed is counted as failed: it was not
	// confirmed, even where the server stored it.
	for _, w := range writes {
		if w.Delete {
			s.ObserveKV("delete", err)
		} else {
			s.ObserveKV("put", err)
		}
	}
	if err != nil {
		return fmt.Errorf("applying %d kv writes: %w", len(writes), err)
	}
	return nil
}
