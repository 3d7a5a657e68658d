package main

import (
	"errors"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/meshd/meshd/guest"
	"github.com/meshd/meshd/guest/jsonx"
	"github.com/meshd/meshd/plugins/internal/svcenv"
)

// The order side of the checkout saga. The command side keeps "order:<id>"
// and decides; every decision is published as an event of its own
// (ORDER_PAID, ORDER_CANCELLED) from which the read model is projected (see
// readmodel.go). The service runs with [events] serial = true, so the
// read-decide-write of one handler never interleaves with another's.

const (
	eventPaymentFailed   = "PAYMENT_FAILED"
	eventPaymentTimeout  = "ORDER_PAYMENT_TIMEOUT"
	eventOrderPaid       = "ORDER_PAID"
	eventOrderCancelled  = "ORDER_CANCELLED"
	eventRefundRequested = "REFUND_REQUESTED"

	reasonTimeout = "payment timeout"

	defaultPaymentTimeout = 30 * time.Second
)

// paymentTimeout is the [config] payment_timeout of the service (a Go
// duration), or the default.
func paymentTimeout(e env) time.Duration {
	v, err := e.Config("payment_timeout")
	if err != nil {
		return defaultPaymentTimeout
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		e.Log(guest.LevelWarn, "config payment_timeout "+strconv.Quote(v)+" is not a positive duration; using 30s")
		return defaultPaymentTimeout
	}
	return d
}

func orderIDEvent(id string) []byte {
	var w jsonx.Writer
	w.ObjectStart()
	w.StringField("order_id", id)
	w.ObjectEnd()
	return w.Bytes()
}

// loadOrder reads the command-side order; ok is false (and err nil) for an
// unknown or invalid id, which handlers log and acknowledge.
func loadOrder(e env, typ, id string) (o order, ok bool, err error) {
	if id == "" || len(id) > maxIDLen {
		e.Log(guest.LevelWarn, typ+" without a valid order_id; ignored")
		return o, false, nil
	}
	stored, err := e.KVGet(orderKey(id))
	if errors.Is(err, guest.ErrNotFound) {
		e.Log(guest.LevelWarn, typ+" for unknown order "+id+"; ignored")
		return o, false, nil
	}
	if err != nil {
		return o, false, errors.New("reading order " + id + ": " + err.Error())
	}
	o, err = parseOrder(stored)
	if err != nil {
		return o, false, errors.New("stored order " + id + " is corrupt: " + err.Error())
	}
	return o, true, nil
}

func storeOrder(e env, o *order) error {
	if err := e.KVSet(orderKey(o.ID), orderJSON(o)); err != nil {
		return errors.New("storing order " + o.ID + ": " + err.Error())
	}
	return nil
}

func publish(e env, typ string, data []byte) error { return svcenv.Publish(e, typ, data) }

// paidEvent and cancelledEvent are the data of ORDER_PAID and
// ORDER_CANCELLED. They carry the user: the projections run one at a time
// per user (order.toml's serial_keys).
func paidEvent(o *order) []byte {
	var w jsonx.Writer
	w.ObjectStart()
	w.StringField("order_id", o.ID)
	w.StringField("user_id", o.UserID)
	w.StringField("payment_id", o.PaymentID)
	w.StringField("paid_at", o.PaidAt)
	w.ObjectEnd()
	return w.Bytes()
}

func cancelledEvent(o *order) []byte {
	var w jsonx.Writer
	w.ObjectStart()
	w.StringField("order_id", o.ID)
	w.StringField("user_id", o.UserID)
	w.StringField("reason", o.Reason)
	w.StringField("cancelled_at", o.CancelledAt)
	w.ObjectEnd()
	return w.Bytes()
}

// paymentCompleted marks a CREATED order PAID and publishes ORDER_PAID.
// For an order already paid by this payment it publishes ORDER_PAID again
// (a redelivery after a crash between store and publish). A payment for a
// cancelled order, or a second payment, is refunded: REFUND_REQUESTED.
func paymentCompleted(e env, data []byte) error {
	f, err := svcenv.Fields(data, "order_id", "payment_id")
	if err != nil {
		return errors.New(eventPaymentCompleted + ": invalid data: " + err.Error())
	}
	orderID, paymentID := f[0], f[1]
	if orderID == "" || paymentID == "" {
		return errors.New(eventPaymentCompleted + ": invalid data: order_id and payment_id are required")
	}
	o, ok, err := loadOrder(e, eventPaymentCompleted, orderID)
	if !ok {
		return err
	}
	switch {
	case o.Status == statusCreated:
		return payOrder(e, o, paymentID)
	case o.Status == statusPaid && o.PaymentID == paymentID:
		return publish(e, eventOrderPaid, paidEvent(&o))
	default:
		reason := "order " + o.ID + " is " + o.Status
		if o.Status == statusPaid {
			reason = "order " + o.ID + " is already paid by " + o.PaymentID
		}
		e.Log(guest.LevelInfo, "payment "+excerpt(paymentID)+" arrived for "+reason+"; requesting a refund")
		var w jsonx.Writer
		w.ObjectStart()
		w.StringField("order_id", o.ID)
		w.StringField("payment_id", paymentID)
		w.StringField("reason", reason)
		w.ObjectEnd()
		return publish(e, eventRefundRequested, w.Bytes())
	}
}

// payOrder marks a CREATED order PAID by paymentID and publishes
// ORDER_PAID.
func payOrder(e env, o order, paymentID string) error {
	o.Status = statusPaid
	o.PaymentID = paymentID
	o.PaidAt = svcenv.Timestamp(e.Now())
	if err := storeOrder(e, &o); err != nil {
		return err
	}
	return publish(e, eventOrderPaid, paidEvent(&o))
}

// cancel cancels a CREATED order with reason and publishes
// ORDER_CANCELLED; a cancelled order publishes it again; a paid order is
// left alone.
func cancel(e env, typ, id, reason string) error {
	o, ok, err := loadOrder(e, typ, id)
	if !ok {
		return err
	}
	return cancelOrder(e, o, reason)
}

// cancelOrder cancels a CREATED order and publishes ORDER_CANCELLED; a
// cancelled one publishes it again (a redelivery); a paid one is left alone.
func cancelOrder(e env, o order, reason string) error {
	switch o.Status {
	case statusCreated:
		o.Status = statusCancelled
		o.Reason = reason
		o.CancelledAt = svcenv.Timestamp(e.Now())
		if err := storeOrder(e, &o); err != nil {
			return err
		}
		return publish(e, eventOrderCancelled, cancelledEvent(&o))
	case statusCancelled:
		return publish(e, eventOrderCancelled, cancelledEvent(&o))
	}
	return nil
}

// paymentFailed is the compensating step: the order is cancelled with the
// payment's reason.
func paymentFailed(e env, data []byte) error {
	f, err := svcenv.Fields(data, "order_id", "reason")
	if err != nil {
		return errors.New(eventPaymentFailed + ": invalid data: " + err.Error())
	}
	orderID, reason := f[0], f[1]
	if reason == "" {
		reason = "payment failed"
	}
	return cancel(e, eventPaymentFailed, orderID, reason)
}

// paymentTimedOut settles an order still waiting for its payment when its
// payment timeout fires. The timeout must not cancel an order whose payment
// was made but whose PAYMENT_COMPLETED the order service has not handled
// yet (its events behind, or the payment service's): a customer charged
// and then refunded. So it asks the payment service first:
//   - the payment is COMPLETED: the order is paid now, as its
//     PAYMENT_COMPLETED would (which, when it comes, finds it paid by that
//     payment and only publishes ORDER_PAID again);
//   - the payment was declined: cancelled with its reason, as its
//     PAYMENT_FAILED would;
//   - the payment service has no payment for the order yet, or does not
//     answer: the deadline is extended by another payment timeout (the
//     event scheduled again, counting extensions), up to
//     payment_timeout_extensions times; only then is the order cancelled
//     for the timeout (a payment made after that is refunded, as before).
func paymentTimedOut(e env, p payments, data []byte) error {
	f, err := svcenv.Fields(data, "order_id", "extension")
	if err != nil {
		return errors.New(eventPaymentTimeout + ": invalid data: " + err.Error())
	}
	orderID, extension := f[0], f[1]
	o, ok, err := loadOrder(e, eventPaymentTimeout, orderID)
	if !ok || o.Status != statusCreated {
		return err
	}
	pay, found, err := p.PaymentOf(o.ID)
	switch {
	case err == nil && found && pay.Status == paymentStatusCompleted && pay.ID != "":
		e.Log(guest.LevelInfo, "payment timeout of order "+o.ID+": payment "+excerpt(pay.ID)+" completed, its event not handled yet; the order is paid")
		return payOrder(e, o, pay.ID)
	case err == nil && found && pay.Status == paymentStatusDeclined:
		reason := pay.Reason
		if reason == "" {
			reason = "payment failed"
		}
		return cancelOrder(e, o, reason)
	case err == nil && found:
		// Refunded, or a status this service does not know: not paid.
		return cancelOrder(e, o, reasonTimeout)
	}
	n, _ := strconv.Atoi(extension)
	limit := paymentTimeoutExtensions(e)
	why := "the payment service has no payment for it yet"
	if err != nil {
		why = "the payment service did not answer: " + excerpt(err.Error())
	}
	if n >= limit {
		e.Log(guest.LevelWarn, "payment timeout of order "+o.ID+": "+why+" after "+strconv.Itoa(n)+" extensions; cancelling")
		return cancelOrder(e, o, reasonTimeout)
	}
	d := paymentTimeout(e)
	e.Log(guest.LevelInfo, "payment timeout of order "+o.ID+": "+why+"; extended by "+d.String())
	if err := e.PublishDelayed(eventPaymentTimeout, timeoutEvent(o.ID, n+1), d); err != nil {
		return errors.New("scheduling " + eventPaymentTimeout + ": " + err.Error())
	}
	return nil
}

// The payment service's statuses the timeout acts on.
const (
	paymentStatusCompleted = "COMPLETED"
	paymentStatusDeclined  = "DECLINED"
)

const defaultPaymentTimeoutExtensions = 3

// paymentTimeoutExtensions is the [config] payment_timeout_extensions of
// the service (a count, 0 to 100), or the default.
func paymentTimeoutExtensions(e env) int {
	v, err := e.Config("payment_timeout_extensions")
	if err != nil {
		return defaultPaymentTimeoutExtensions
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 100 {
		e.Log(guest.LevelWarn, "config payment_timeout_extensions "+strconv.Quote(v)+" is not a count from 0 to 100; using 3")
		return defaultPaymentTimeoutExtensions
	}
	return n
}

// timeoutEvent is the data of an ORDER_PAYMENT_TIMEOUT extended n times.
func timeoutEvent(id string, n int) []byte {
	var w jsonx.Writer
	w.ObjectStart()
	w.StringField("order_id", id)
	w.StringField("extension", strconv.Itoa(n))
	w.ObjectEnd()
	return w.Bytes()
}

// maxExcerpt bounds the text another service or an event supplied that a
// log line of this service quotes.
const maxExcerpt = 64

// excerpt quotes s for a log line, cut to maxExcerpt bytes at a rune
// boundary, so a payment id or error text of any length logs bounded.
func excerpt(s string) string {
	if len(s) <= maxExcerpt {
		return strconv.Quote(s)
	}
	cut := maxExcerpt
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "…(" + strconv.Itoa(len(s)) + " bytes)"
}
