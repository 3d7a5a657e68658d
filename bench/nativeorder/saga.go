package nativeorder

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/kv"
)

// Saga is the rest of the checkout saga the demo plugins run, done
// natively on meshd's bus and KV: the payment service's ORDER_CREATED
// handler (pay, or decline over Limit), the order service's
// PAYMENT_COMPLETED, PAYMENT_FAILED and ORDER_PAYMENT_TIMEOUT handlers,
// and its projections of ORDER_CREATED, ORDER_PAID and ORDER_CANCELLED
// into the read model. The handlers run one at a time per key under the
// locks the plugins' [events] settings give them: payment's per order, the
// order service's command side per order, its projections per user. With the POST
// of Handler (whose Effects publish ORDER_CREATED) it is the whole saga
// a meshd order takes, written as an ordinary Go service would write it
// (encoding/json, one acknowledged KV operation after another), as the
// baseline of the daemon's saga benchmarks. Refunds are not part of it:
// the benchmarks' orders are all paid.
type Saga struct {
	Orders   *kv.Store // the order service's store (where Effects writes)
	Payments *kv.Store // the payment service's store
	Bus      *bus.Bus
	Limit    int64 // orders with a total over it are declined
	// Projected, when set, is called after each projection that succeeded
	// with the event's type.
	Projected func(typ string)

	payment, command, readModel stripes
}

// stripes lock per key, as meshd's serial_keys do (keys hashing to one
// stripe wait for each other).
type stripes [64]sync.Mutex

var stripeSeed = maphash.MakeSeed()

func (l *stripes) lock(key string) (unlock func()) {
	m := &l[maphash.String(stripeSeed, key)%uint64(len(l))]
	m.Lock()
	return m.Unlock
}

// OpenSaga opens, on js, the stores of the order and payment services
// ("order", "payment") and an event bus, for a Saga declining totals over
// limit. The caller closes the bus (Saga.Bus) when done.
func OpenSaga(ctx context.Context, js jetstream.JetStream, limit int64) (*Saga, error) {
	orders, err := kv.Open(ctx, js, "order", kv.Options{})
	if err != nil {
		return nil, err
	}
	payments, err := kv.Open(ctx, js, "payment", kv.Options{})
	if err != nil {
		return nil, err
	}
	b, err := bus.New(ctx, js, bus.Config{}, nil)
	if err != nil {
		return nil, err
	}
	return &Saga{Orders: orders, Payments: payments, Bus: b, Limit: limit}, nil
}

// Start subscribes the saga's handlers; stop ends the subscriptions.
func (s *Saga) Start(ctx context.Context) (stop func(), err error) {
	var subs []*bus.Subscription
	stop = func() {
		for _, sub := range subs {
			sub.Stop()
		}
	}
	for _, h := range []struct {
		service, typ string
		projection   bool
		fn           func(context.Context, []byte) error
	}{
		{"payment", "ORDER_CREATED", false, s.pay},
		{"order", "PAYMENT_COMPLETED", false, s.paymentCompleted},
		{"order", "PAYMENT_FAILED", false, s.paymentFailed},
		{"order", "ORDER_PAYMENT_TIMEOUT", false, s.paymentTimedOut},
		{"order", "ORDER_CREATED", true, s.projectCreated},
		{"order", "ORDER_PAID", true, s.projectFinal},
		{"order", "ORDER_CANCELLED", true, s.projectFinal},
	} {
		typ := h.typ
		sub, err := s.Bus.Subscribe(ctx, h.service, typ, func(ctx context.Context, ev bus.Event) error {
			err := h.fn(ctx, ev.Data)
			if err == nil && h.projection && s.Projected != nil {
				s.Projected(typ)
			}
			return err
		})
		if err != nil {
			stop()
			return nil, err
		}
		subs = append(subs, sub)
	}
	return stop, nil
}

// payment is what the payment plugin stores per payment.
type payment struct {
	ID        string `json:"id"`
	OrderID   string `json:"order_id"`
	UserID    string `json:"user_id"`
	Amount    int64  `json:"amount"`
	Status    string `json:"status"`
	Reason    string `json:"reason,omitempty"`
	CreatedAt string `json:"created_at"`
}

// outcome is the data of PAYMENT_COMPLETED and PAYMENT_FAILED.
type outcome struct {
	OrderID   string `json:"order_id"`
	PaymentID string `json:"payment_id"`
	Amount    int64  `json:"amount,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// pay is the payment service's ORDER_CREATED handler: idempotent by order
// (a redelivered order publishes the decision already taken).
func (s *Saga) pay(ctx context.Context, data []byte) error {
	var o order
	if err := json.Unmarshal(data, &o); err != nil || o.ID == "" || o.Total <= 0 {
		return errors.New("ORDER_CREATED: invalid data")
	}
	defer s.payment.lock(o.ID)()
	var p payment
	if id, err := s.Payments.Get(ctx, "payment-by-order:"+o.ID); err == nil {
		stored, err := s.Payments.Get(ctx, "payment:"+string(id))
		if err != nil {
			return err
		}
		if err := json.Unmarshal(stored, &p); err != nil {
			return err
		}
	} else if !errors.Is(err, kv.ErrNotFound) {
		return err
	} else {
		p = payment{ID: uuid.NewString(), OrderID: o.ID, UserID: o.UserID, Amount: o.Total,
			Status: "COMPLETED", CreatedAt: time.Now().UTC().Format(time.RFC3339Nano)}
		if o.Total > s.Limit {
			p.Status, p.Reason = "DECLINED", fmt.Sprintf("amount %d is over the limit of %d", o.Total, s.Limit)
		}
		stored, _ := json.Marshal(&p)
		if err := s.Payments.Put(ctx, "payment:"+p.ID, stored); err != nil {
			return err
		}
		if err := s.Payments.Put(ctx, "payment-by-order:"+o.ID, []byte(p.ID)); err != nil {
			return err
		}
	}
	typ, out := "PAYMENT_COMPLETED", outcome{OrderID: p.OrderID, PaymentID: p.ID, Amount: p.Amount}
	if p.Status == "DECLINED" {
		typ, out = "PAYMENT_FAILED", outcome{OrderID: p.OrderID, PaymentID: p.ID, Reason: p.Reason}
	}
	ev, _ := json.Marshal(&out)
	return s.Bus.Publish(ctx, bus.NewEvent("payment", typ, ev))
}

// loadOrder reads the order an event names, holding the command side's
// lock for it until the caller calls unlock.
func (s *Saga) loadOrder(ctx context.Context, data []byte) (o order, in outcome, ok bool, unlock func(), err error) {
	unlock = func() {}
	if err := json.Unmarshal(data, &in); err != nil || in.OrderID == "" {
		return o, in, false, unlock, errors.New("invalid data: order_id is required")
	}
	unlock = s.command.lock(in.OrderID)
	stored, err := s.Orders.Get(ctx, "order:"+in.OrderID)
	if errors.Is(err, kv.ErrNotFound) {
		return o, in, false, unlock, nil // unknown order: acknowledged, as the plugin does
	}
	if err != nil {
		return o, in, false, unlock, err
	}
	return o, in, true, unlock, json.Unmarshal(stored, &o)
}

// decide stores o and publishes the event that ends it.
func (s *Saga) decide(ctx context.Context, o *order, typ string) error {
	stored, _ := json.Marshal(o)
	if err := s.Orders.Put(ctx, "order:"+o.ID, stored); err != nil {
		return err
	}
	return s.republish(ctx, o, typ)
}

func (s *Saga) republish(ctx context.Context, o *order, typ string) error {
	ev, _ := json.Marshal(&final{OrderID: o.ID, UserID: o.UserID, PaymentID: o.PaymentID, PaidAt: o.PaidAt, Reason: o.Reason, CancelledAt: o.CancelledAt})
	return s.Bus.Publish(ctx, bus.NewEvent("order", typ, ev))
}

// final is the data of ORDER_PAID and ORDER_CANCELLED.
type final struct {
	OrderID     string `json:"order_id"`
	UserID      string `json:"user_id"`
	PaymentID   string `json:"payment_id,omitempty"`
	PaidAt      string `json:"paid_at,omitempty"`
	Reason      string `json:"reason,omitempty"`
	CancelledAt string `json:"cancelled_at,omitempty"`
}

func (s *Saga) paymentCompleted(ctx context.Context, data []byte) error {
	o, in, ok, unlock, err := s.loadOrder(ctx, data)
	defer unlock()
	if !ok || err != nil {
		return err
	}
	switch {
	case o.Status == "CREATED":
		o.Status, o.PaymentID, o.PaidAt = "PAID", in.PaymentID, time.Now().UTC().Format(time.RFC3339Nano)
		return s.decide(ctx, &o, "ORDER_PAID")
	case o.Status == "PAID" && o.PaymentID == in.PaymentID:
		return s.republish(ctx, &o, "ORDER_PAID")
	}
	return fmt.Errorf("payment %s for order %s, which is %s: refunds are not part of the native saga", in.PaymentID, o.ID, o.Status)
}

func (s *Saga) paymentFailed(ctx context.Context, data []byte) error {
	o, in, ok, unlock, err := s.loadOrder(ctx, data)
	defer unlock()
	if !ok || err != nil {
		return err
	}
	return s.cancel(ctx, &o, cmp.Or(in.Reason, "payment failed"))
}

func (s *Saga) paymentTimedOut(ctx context.Context, data []byte) error {
	o, _, ok, unlock, err := s.loadOrder(ctx, data)
	defer unlock()
	if !ok || err != nil {
		return err
	}
	return s.cancel(ctx, &o, "payment timeout")
}

func (s *Saga) cancel(ctx context.Context, o *order, reason string) error {
	switch o.Status {
	case "CREATED":
		o.Status, o.Reason, o.CancelledAt = "CANCELLED", reason, time.Now().UTC().Format(time.RFC3339Nano)
		return s.decide(ctx, o, "ORDER_CANCELLED")
	case "CANCELLED":
		return s.republish(ctx, o, "ORDER_CANCELLED")
	}
	return nil
}

// projectCreated is Projector.Handle: the view and the user's index.
func (s *Saga) projectCreated(ctx context.Context, data []byte) error {
	return Projector{Store: s.Orders, Lock: s.readModel.lock}.Handle(ctx, bus.Event{Data: data})
}

// projectFinal merges ORDER_PAID or ORDER_CANCELLED into the order's view
// unless it already has a final status.
func (s *Saga) projectFinal(ctx context.Context, data []byte) error {
	var f final
	if err := json.Unmarshal(data, &f); err != nil || f.OrderID == "" {
		return errors.New("invalid data: order_id is required")
	}
	defer s.readModel.lock(f.UserID)()
	key := "rm:order:" + f.OrderID
	v := order{ID: f.OrderID}
	if stored, err := s.Orders.Get(ctx, key); err == nil {
		if err := json.Unmarshal(stored, &v); err != nil {
			return err
		}
	} else if !errors.Is(err, kv.ErrNotFound) {
		return err
	}
	if v.Status != "PAID" && v.Status != "CANCELLED" {
		if f.PaidAt != "" {
			v.Status, v.PaymentID, v.PaidAt = "PAID", f.PaymentID, f.PaidAt
		} else {
			v.Status, v.Reason, v.CancelledAt = "CANCELLED", f.Reason, f.CancelledAt
		}
	}
	view, _ := json.Marshal(&v)
	return s.Orders.Put(ctx, key, view)
}

// View returns the read model's view of an order.
func (s *Saga) View(ctx context.Context, id string) ([]byte, error) {
	return s.Orders.Get(ctx, "rm:order:"+id)
}
