package bus

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Lag is how far a service's subscriptions are behind, summed over its
// event types.
type Lag struct {
	// Pending is the number of stored events not yet delivered.
	Pending uint64
	// AckPending is the number delivered and not yet acknowledged.
	AckPending uint64
	// Oldest is the age of the oldest unhandled event (zero when there is
	// none): read at At, plus the time since.
	Oldest time.Duration
	// At is when it was read; zero when it never was.
	At time.Time
}

// Events is the number of events not yet handled: Pending + AckPending.
func (l Lag) Events() uint64 { return l.Pending + l.AckPending }

// LagInterval is how often the lag of every subscription is read in the
// background (a variable for tests).
var LagInterval = 250 * time.Millisecond

// lagStale is the age past which a lag read is not trusted (the reads
// failing): LagOf then reports none.
const lagStale = 5 * time.Second

// lagMonitor reads every subscription's consumer lag in the background and
// keeps the last read per service, for LagOf to return without a round
// trip.
type lagMonitor struct {
	last atomic.Pointer[map[string]Lag]
	stop chan struct{}
	done sync.WaitGroup
}

// LagOf returns the last lag read of service's subscriptions (of the
// subscriptions of this Bus, in this process): no NATS round trip, a map
// read. It is refreshed every LagInterval; a service without
// subscriptions, or whose reads failed for 5 s, has a zero Lag.
func (b *Bus) LagOf(service string) Lag {
	m := b.lag.last.Load()
	if m == nil {
		return Lag{}
	}
	l, ok := (*m)[service]
	if !ok {
		return Lag{}
	}
	since := time.Since(l.At)
	if since > lagStale {
		return Lag{}
	}
	if l.Pending > 0 {
		l.Oldest += since // the oldest undelivered event has aged since the read
	}
	return l
}

func (b *Bus) startLagMonitor() {
	b.lag.stop = make(chan struct{})
	b.lag.done.Go(func() {
		t := time.NewTicker(LagInterval)
		defer t.Stop()
		for {
			select {
			case <-b.lag.stop:
				return
			case <-t.C:
			}
			b.readLag()
		}
	})
}

func (b *Bus) stopLagMonitor() {
	if b.lag.stop != nil {
		close(b.lag.stop)
		b.lag.done.Wait()
	}
}

// readLag reads the lag of every subscription: its consumer's pending
// counts and, when events wait to be delivered, the time of the first
// event past its delivered floor on its type's subject (the oldest one no
// handler has taken yet).
func (b *Bus) readLag() {
	b.mu.Lock()
	subs := make([]*Subscription, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var stream jetstream.Stream
	now := time.Now()
	m := make(map[string]Lag, len(subs))
	for _, s := range subs {
		info, err := s.cons.Info(ctx)
		if err != nil {
			continue // this service's last read ages out
		}
		l := m[s.service]
		l.At = now
		l.Pending += info.NumPending
		l.AckPending += uint64(max(0, info.NumAckPending))
		// The age is that of the oldest event not yet delivered: how long
		// events wait for a free handler. Events delivered and not yet
		// acknowledged are being handled, or wait for a redelivery after
		// their handler failed: a failing handler is not a pipeline that
		// falls behind, and one poison event must not shed every request
		// that feeds its service. They count in Pending+AckPending.
		if info.NumPending > 0 {
			if stream == nil {
				if stream, err = b.js.Stream(ctx, b.cfg.Stream); err != nil {
					stream = nil
				}
			}
			if stream != nil {
				msg, err := stream.GetMsg(ctx, info.Delivered.Stream+1, jetstream.WithGetMsgSubject(b.cfg.Subjects+"."+s.typ))
				if err == nil {
					l.Oldest = max(l.Oldest, now.Sub(msg.Time))
				}
			}
		}
		m[s.service] = l
	}
	b.lag.last.Store(&m)
}

// LagBound is the lag past which a service is behind and the gateway
// sheds the requests that feed it. A zero field is not checked.
type LagBound struct {
	// MaxEvents bounds the events not yet handled (pending plus
	// ack-pending, over the service's event types).
	MaxEvents uint64
	// MaxAge bounds the age of the oldest unhandled event.
	MaxAge time.Duration
}

// DefaultLagBound is the bound of a service without one of its own: an
// oldest unhandled event 2 s old (a fifteenth of the demo's 30 s payment
// timeout, and far above the milliseconds a keeping-up pipeline shows), or
// 10,000 unhandled events (a backlog that 2 s cannot clear at the rates
// measured here, so the age would soon pass its bound too).
var DefaultLagBound = LagBound{MaxEvents: 10_000, MaxAge: 2 * time.Second}

// Behind says whether any of services is past its bound (bound(service),
// or DefaultLagBound when bound is nil), from the cached reads of LagOf,
// and the Retry-After to give a request it sheds: how far the oldest
// event is past its bound, from 1 s to 30 s. It does no I/O.
func (b *Bus) Behind(services []string, bound func(service string) LagBound) (behind bool, retryAfter time.Duration) {
	for _, svc := range services {
		lb := DefaultLagBound
		if bound != nil {
			lb = bound(svc)
		}
		l := b.LagOf(svc)
		switch {
		case lb.MaxAge > 0 && l.Oldest > lb.MaxAge:
			behind, retryAfter = true, max(retryAfter, l.Oldest-lb.MaxAge)
		case lb.MaxEvents > 0 && l.Events() > lb.MaxEvents:
			behind, retryAfter = true, max(retryAfter, time.Second)
		}
	}
	if behind {
		retryAfter = min(max(retryAfter.Round(time.Second), time.Second), 30*time.Second)
	}
	return behind, retryAfter
}
