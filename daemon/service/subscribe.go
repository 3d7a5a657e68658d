package service

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/meshd/meshd/host/bus"
)

// Handover is what Subscribe did: the subscriptions it started and those
// of the serving version that the new one does not take over.
type Handover struct {
	fresh []*bus.Subscription // started for the new version
	drop  []*bus.Subscription // the serving version's, for types the new one drops
}

// Subscribe gives s its subscriptions, deferred (bus.Deferred: they
// deliver once StartSubscriptions runs after the swap). The serving
// version cur's carry on for the types s declares too (their handler
// looks the service up at delivery); types only s declares are subscribed
// now on b, with handler; types it drops are stopped by Activated, their
// durable consumers kept so events wait for a future version. On error
// the subscriptions started here are stopped.
func (s *Service) Subscribe(ctx context.Context, b *bus.Bus, cur *Service, handler bus.Handler) (*Handover, error) {
	kept := make(map[string]*bus.Subscription)
	if cur != nil { // cur.subs[i] delivers cur.decl.Subscriptions[i]
		for i, sub := range cur.subs {
			kept[cur.decl.Subscriptions[i].Type] = sub
		}
	}
	s.subs = make([]*bus.Subscription, len(s.decl.Subscriptions))
	var fresh []int // indexes of the types to subscribe now
	for i, sub := range s.decl.Subscriptions {
		if bs, ok := kept[sub.Type]; ok {
			s.subs[i] = bs
			delete(kept, sub.Type)
			continue
		}
		fresh = append(fresh, i)
	}
	// At once: each is a JetStream request or two (the durable consumer).
	// On a cluster they are retried (settle): a node that rejoins after a
	// crash may find a consumer's replica group without a leader for a
	// while, its request unanswered; refused, the module would stay down
	// on this node.
	serrs := make([]error, len(s.decl.Subscriptions))
	var wg sync.WaitGroup
	for _, i := range fresh {
		typ := s.decl.Subscriptions[i].Type
		subscribe := func(ctx context.Context) (err error) {
			s.subs[i], err = b.Subscribe(ctx, s.name, typ, handler,
				bus.WithMaxDeliver(s.sf.Events.MaxAttempts), bus.Deferred()) // started after the swap
			return err
		}
		wg.Go(func() { serrs[i] = settleOr(ctx, s.settle, "subscription of "+s.name+" to "+typ, subscribe) })
	}
	wg.Wait()
	h := &Handover{}
	for _, i := range fresh {
		if s.subs[i] != nil {
			h.fresh = append(h.fresh, s.subs[i])
		}
	}
	for _, sub := range kept {
		h.drop = append(h.drop, sub)
	}
	for _, i := range fresh {
		if serrs[i] != nil {
			s.Abandon(h)
			return nil, fmt.Errorf("%s: subscribe %s: %w", s.file, s.decl.Subscriptions[i].Type, serrs[i])
		}
	}
	return h, nil
}

// Abandon undoes Subscribe on a version that is not swapped in: the
// subscriptions it started stop, those of the serving version stay its.
func (s *Service) Abandon(h *Handover) {
	if h != nil {
		for _, sub := range h.fresh {
			sub.Stop()
		}
	}
	s.subs = nil
}

// Activated completes a handover once s serves in place of old: old's
// subscriptions for the types s dropped stop, the others are s's now.
func (s *Service) Activated(old *Service, h *Handover) {
	if old != nil {
		old.subs = nil
	}
	for _, sub := range h.drop {
		sub.Stop()
	}
}

// StartSubscriptions starts delivery on s's subscriptions once s serves.
// They were made deferred before the swap, so that a failure to open a
// durable consumer refuses the load while the previous version serves;
// delivery waits for the swap, so no event is handed to a service that is
// not serving yet, which would cost it a delivery attempt. Those handed
// over by the previous version are running already (Start does nothing to
// them).
func (s *Service) StartSubscriptions() error {
	var errs []error
	for i, sub := range s.subs {
		if err := sub.Start(); err != nil {
			errs = append(errs, fmt.Errorf("subscribe %s: %w", s.decl.Subscriptions[i].Type, err))
		}
	}
	return errors.Join(errs...)
}

// StopSubscriptions stops s's subscriptions (events wait in the stream for
// a future version).
func (s *Service) StopSubscriptions() {
	for _, sub := range s.subs {
		sub.Stop()
	}
	s.subs = nil
}

// StopAll stops the subscriptions of svcs at once and waits for them
// until ctx ends; bus.Close then cancels the handlers still running.
func StopAll(ctx context.Context, svcs []*Service) {
	var wg sync.WaitGroup
	for _, s := range svcs {
		for _, sub := range s.subs {
			wg.Go(sub.Stop)
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
