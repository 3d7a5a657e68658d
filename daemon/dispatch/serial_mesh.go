package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/meshd/meshd/config"
	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/kv"
)

// Mesh-wide serial handlers (WithMeshSerial). On one node the serial locks
// of serial.go keep the handlers of one key apart; on a mesh of nodes
// sharing one NATS, each node also takes a lease on the key in the
// service's own key-value bucket (kv.Store.TakeLease) after its local
// lock (so a node asks the bucket once per key at a time), holds it while
// the handler runs and its effects are applied, and releases it after.
// The handler's key writes are fenced by the lease (kv.Store.ApplyUnder):
// the server stores them only while the lease is the one taken, so a node
// that paused past the lease's TTL, while another took the key, applies
// nothing. A handler with events and no writes checks (and renews) its
// lease before it publishes them.
//
// A node that finds the key leased by another waits for it, polling, at
// most leaseWait (and half the handler's time left); then it gives the
// event back to the bus as *bus.Busy, which redelivers it after busyDelay
// and does not count the delivery as an attempt on this node.

// Bounds of the mesh-wide lease of a serial key.
const (
	// leaseWait is the longest a handler waits for a key another node
	// holds before giving the event back.
	leaseWait = 2 * time.Second
	// leasePollMin and leasePollMax bound the pause between two tries to
	// take a held lease (doubling, with jitter).
	leasePollMin = 2 * time.Millisecond
	leasePollMax = 50 * time.Millisecond
	// busyDelay is the redelivery delay of an event given back because
	// its key stayed held (plus up to as much again of jitter).
	busyDelay = 100 * time.Millisecond
	// leaseMargin is added to the handler's time left and effectsTimeout
	// to make a lease's TTL: the lease outlives every holder that is not
	// paused or dead.
	leaseMargin = 2 * time.Second
	// releaseTimeout bounds a release (the TTL frees a lease whose
	// release failed).
	releaseTimeout = 5 * time.Second
)

// leaseTTL is the TTL of a lease taken for a handler whose context is
// ctx: its time left (bus.DefaultHandlerTimeout without a deadline), plus
// effectsTimeout, plus leaseMargin.
func leaseTTL(ctx context.Context) time.Duration {
	left := bus.DefaultHandlerTimeout
	if dl, ok := ctx.Deadline(); ok {
		left = max(time.Until(dl), 0)
	}
	return left + effectsTimeout + leaseMargin
}

// leaseName is the lease group and name of a handler of typ under c with
// key (keyed false: the type has no serial key, or the event lacks it):
// the lock groups of serial.go, one lease per key within each, and one
// for every unkeyed handler of a group.
func leaseName(c *config.Events, typ, key string, keyed bool) (group, name string) {
	group = "s"
	if c.ReadModelType(typ) {
		group = "r"
	}
	if !keyed {
		return group + "w", ""
	}
	return group, key
}

// takeLease takes the lease of a handler of typ (see leaseName) in store,
// waiting for another node's release as said above. It returns a *bus.Busy
// error when the lease stayed held.
func takeLease(ctx context.Context, store *kv.Store, c *config.Events, typ, key string, keyed bool) (*kv.Lease, error) {
	group, name := leaseName(c, typ, key, keyed)
	ttl := leaseTTL(ctx)
	wait := leaseWait
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl)/2)
	}
	give := time.Now().Add(wait)
	pause := leasePollMin
	for {
		l, err := store.TakeLease(ctx, group, name, ttl)
		if err == nil {
			return l, nil
		}
		if !errors.Is(err, kv.ErrLeaseHeld) {
			return nil, err
		}
		if time.Now().Add(pause).After(give) {
			return nil, &bus.Busy{Delay: busyDelay + rand.N(busyDelay), Err: err}
		}
		t := time.NewTimer(pause/2 + rand.N(pause))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, &bus.Busy{Delay: busyDelay + rand.N(busyDelay), Err: err}
		case <-t.C:
		}
		pause = min(2*pause, leasePollMax)
	}
}

// releaseLease releases l on a context of its own; a failure is logged
// (the lease's TTL frees it).
func releaseLease(ctx context.Context, l *kv.Lease, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := l.Release(ctx); err != nil {
		log.Warn("serial key lease not released; its TTL frees it", slog.Any("error", err))
	}
}

// leaseLost makes the error of effects refused because the lease was lost
// a *bus.Busy: the handler did not fail, it was too late, and runs again.
func leaseLost(err error) error {
	if err != nil && errors.Is(err, kv.ErrLeaseLost) {
		return &bus.Busy{Delay: busyDelay + rand.N(busyDelay), Err: fmt.Errorf("effects not applied: %w", err)}
	}
	return err
}
