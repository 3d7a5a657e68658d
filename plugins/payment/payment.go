package main

import (
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/meshd/meshd/guest"
	"github.com/meshd/meshd/guest/jsonx"
	"github.com/meshd/meshd/plugins/internal/svcenv"
)

const (
	eventOrderCreated     = "ORDER_CREATED"
	eventPaymentCompleted = "PAYMENT_COMPLETED"

	statusCompleted = "COMPLETED"
	statusDeclined  = "DECLINED"
	statusRefunded  = "REFUNDED"

	eventPaymentFailed   = "PAYMENT_FAILED"
	eventPaymentRefunded = "PAYMENT_REFUNDED"
	eventRefundRequested = "REFUND_REQUESTED"

	defaultLimit = 5000000

	maxIDLen = 128 // longer order ids cannot be ours

	// paymentIDPrefix makes an order's payment id: the payment of order o
	// is "pay-" + o, so an order has one payment at most, by construction.
	paymentIDPrefix = "pay-"
	// maxPaymentIDLen: longer payment ids cannot be ours.
	maxPaymentIDLen = len(paymentIDPrefix) + maxIDLen
)

// payment is a payment as stored and served.
type payment struct {
	ID         string
	OrderID    string
	UserID     string
	Amount     int64
	Status     string
	CreatedAt  string
	Reason     string // why it was declined or refunded
	RefundedAt string
}

// responder is the part of *guest.ResponseWriter the handlers use.
type responder interface {
	JSON(status int, body []byte)
	Problem(status int, title, detail string, errs ...string)
}

var _ responder = (*guest.ResponseWriter)(nil)

// The service's keys (guest.Key escapes the ids in them):
//
//	payment:<id>                 a payment, as served by GET /payments/{id}
//	payment-by-order:<order id>  the id of the order's payment, for payments
//	                             made before their ids were derived from
//	                             their orders' (read, no longer written)
func paymentKey(id string) string      { return guest.Key("payment", id) }
func byOrderKey(orderID string) string { return guest.Key("payment-by-order", orderID) }

// paymentIDFor is the id of the payment of an order.
func paymentIDFor(orderID string) string { return paymentIDPrefix + orderID }

// checkID refuses an id that cannot be one of ours: empty, longer than
// max, or not valid UTF-8 (ids are compared and stored as bytes, but JSON
// carries them as Unicode: two invalid ids could read as one).
func checkID(name, id string, max int) error {
	switch {
	case id == "":
		return errors.New(name + " is missing")
	case len(id) > max:
		return errors.New(name + " is longer than " + strconv.Itoa(max) + " bytes")
	case !utf8.ValidString(id):
		return errors.New(name + " is not valid UTF-8")
	}
	return nil
}

func appendPayment(w *jsonx.Writer, p *payment) {
	w.ObjectStart()
	w.StringField("id", p.ID)
	w.StringField("order_id", p.OrderID)
	if p.UserID != "" {
		w.StringField("user_id", p.UserID)
	}
	w.IntField("amount", p.Amount)
	w.StringField("status", p.Status)
	w.StringField("created_at", p.CreatedAt)
	if p.Reason != "" {
		w.StringField("reason", p.Reason)
	}
	if p.RefundedAt != "" {
		w.StringField("refunded_at", p.RefundedAt)
	}
	w.ObjectEnd()
}

func parsePayment(b []byte) (payment, error) {
	var p payment
	var r jsonx.Reader
	r.Reset(b)
	for key, ok := r.ObjectNext(); ok; key, ok = r.ObjectNext() {
		switch string(key) {
		case "id":
			p.ID = r.String()
		case "order_id":
			p.OrderID = r.String()
		case "user_id":
			p.UserID = r.String()
		case "amount":
			p.Amount = r.Int()
		case "status":
			p.Status = r.String()
		case "created_at":
			p.CreatedAt = r.String()
		case "reason":
			p.Reason = r.String()
		case "refunded_at":
			p.RefundedAt = r.String()
		default:
			r.Skip()
		}
	}
	if err := r.Finish(); err != nil {
		return payment{}, err
	}
	return p, nil
}

// completedEvent is the data of PAYMENT_COMPLETED.
func completedEvent(p *payment) []byte {
	var w jsonx.Writer
	w.ObjectStart()
	w.StringField("order_id", p.OrderID)
	w.StringField("payment_id", p.ID)
	w.IntField("amount", p.Amount)
	w.ObjectEnd()
	return w.Bytes()
}

// parseOrderCreated reads the fields of ORDER_CREATED data it needs.
func parseOrderCreated(data []byte) (orderID, userID string, total int64, err error) {
	var r jsonx.Reader
	r.Reset(data)
	seenTotal, idValid := false, false
	for key, ok := r.ObjectNext(); ok; key, ok = r.ObjectNext() {
		switch string(key) {
		case "id":
			orderID, idValid = r.StringUTF8()
		case "user_id":
			if r.Kind() == jsonx.String {
				userID = r.String()
			} else {
				r.Skip()
			}
		case "total":
			total, seenTotal = r.Int(), true
		default:
			r.Skip()
		}
	}
	if err := r.Finish(); err != nil {
		return "", "", 0, err
	}
	if err := checkID("id", orderID, maxIDLen); err != nil {
		return "", "", 0, err
	}
	switch {
	case !idValid:
		return "", "", 0, errors.New("id is not valid UTF-8")
	case !seenTotal || total <= 0:
		return "", "", 0, errors.New("total must be a positive integer")
	}
	return orderID, userID, total, nil
}

// limit is the [config] limit of the service, or the default.
func limit(e env) int64 {
	v, err := e.Config("limit")
	if err != nil {
		return defaultLimit
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		e.Log(guest.LevelWarn, "config limit "+strconv.Quote(v)+" is not a non-negative integer; using 5000000")
		return defaultLimit
	}
	return n
}

// orderCreated pays an order, or declines it when its total is over the
// limit. It is idempotent by construction: the order's payment has an id
// derived from the order's (paymentIDFor) and is one write, so a
// redelivered ORDER_CREATED finds the payment made before and publishes
// its outcome again (a redelivery after a crash between store and
// publish); it can never make a second one. A payment made before ids were
// derived is found through its payment-by-order key; one that key names
// but that was never stored (the two writes were separate then) is made
// now, under that id.
func orderCreated(e env, data []byte) error {
	orderID, userID, total, err := parseOrderCreated(data)
	if err != nil {
		return errors.New(eventOrderCreated + ": invalid data: " + err.Error())
	}
	id := paymentIDFor(orderID)
	if old, err := e.KVGet(byOrderKey(orderID)); err == nil && checkID("payment id", string(old), maxPaymentIDLen) == nil {
		id = string(old)
	} else if err != nil && !errors.Is(err, guest.ErrNotFound) {
		return errors.New("reading payment of order " + orderID + ": " + err.Error())
	}
	p, err := load(e, id)
	if err == nil {
		e.Log(guest.LevelDebug, "order "+orderID+" already handled by payment "+p.ID+"; publishing again")
		return publishOutcome(e, &p)
	}
	if !errors.Is(err, guest.ErrNotFound) {
		return err
	}
	p = payment{
		ID:        id,
		OrderID:   orderID,
		UserID:    userID,
		Amount:    total,
		Status:    statusCompleted,
		CreatedAt: e.Now().UTC().Format(time.RFC3339Nano),
	}
	if l := limit(e); total > l {
		p.Status = statusDeclined
		p.Reason = "amount " + strconv.FormatInt(total, 10) + " is over the limit of " + strconv.FormatInt(l, 10)
	}
	if err := store(e, &p); err != nil {
		return err
	}
	return publishOutcome(e, &p)
}

// load reads a payment; the error of an absent one wraps guest.ErrNotFound.
func load(e env, id string) (payment, error) {
	stored, err := e.KVGet(paymentKey(id))
	if errors.Is(err, guest.ErrNotFound) {
		// The common case (each new order's payment): no message to
		// format, which a Go guest pays for.
		return payment{}, err
	}
	if err != nil {
		return payment{}, fmt.Errorf("reading payment %s: %w", id, err)
	}
	p, err := parsePayment(stored)
	if err != nil {
		return payment{}, errors.New("stored payment " + id + " is corrupt: " + err.Error())
	}
	return p, nil
}

func store(e env, p *payment) error {
	var w jsonx.Writer // its first write allocates room for the record
	appendPayment(&w, p)
	if err := e.KVSet(paymentKey(p.ID), w.Bytes()); err != nil {
		return errors.New("storing payment: " + err.Error())
	}
	return nil
}

// publishOutcome publishes what was decided for p's order. A refunded
// payment publishes PAYMENT_REFUNDED again, not PAYMENT_COMPLETED.
func publishOutcome(e env, p *payment) error {
	switch p.Status {
	case statusDeclined:
		var w jsonx.Writer
		w.ObjectStart()
		w.StringField("order_id", p.OrderID)
		w.StringField("payment_id", p.ID)
		w.StringField("reason", p.Reason)
		w.ObjectEnd()
		return publish(e, eventPaymentFailed, w.Bytes())
	case statusRefunded:
		return publish(e, eventPaymentRefunded, refundedEvent(p))
	}
	return publish(e, eventPaymentCompleted, completedEvent(p))
}

func refundedEvent(p *payment) []byte {
	var w jsonx.Writer
	w.ObjectStart()
	w.StringField("order_id", p.OrderID)
	w.StringField("payment_id", p.ID)
	w.IntField("amount", p.Amount)
	w.StringField("reason", p.Reason)
	w.ObjectEnd()
	return w.Bytes()
}

// refundRequested refunds a completed payment (the compensation for a
// payment that arrived after its order was cancelled): it records the
// payment REFUNDED and publishes PAYMENT_REFUNDED. A refunded payment
// publishes it again; any other is left alone.
func refundRequested(e env, data []byte) error {
	f, err := svcenv.Fields(data, "payment_id", "reason")
	paymentID, reason := f[0], f[1]
	if err != nil {
		return errors.New(eventRefundRequested + ": invalid data: " + err.Error())
	}
	if err := checkID("payment_id", paymentID, maxPaymentIDLen); err != nil {
		return errors.New(eventRefundRequested + ": invalid data: " + err.Error())
	}
	p, err := load(e, paymentID)
	if errors.Is(err, guest.ErrNotFound) {
		e.Log(guest.LevelWarn, eventRefundRequested+" for unknown payment "+paymentID+"; ignored")
		return nil
	}
	if err != nil {
		return err
	}
	switch p.Status {
	case statusRefunded:
		return publish(e, eventPaymentRefunded, refundedEvent(&p))
	case statusCompleted:
		p.Status = statusRefunded
		p.Reason = "refund: " + reason
		p.RefundedAt = e.Now().UTC().Format(time.RFC3339Nano)
		if err := store(e, &p); err != nil {
			return err
		}
		return publish(e, eventPaymentRefunded, refundedEvent(&p))
	}
	return nil
}

func publish(e env, typ string, data []byte) error { return svcenv.Publish(e, typ, data) }

// getPayment serves GET /payments/{id}.
func getPayment(e env, w responder, id string) error {
	if !utf8.ValidString(id) {
		w.Problem(400, "invalid payment id", "the payment id is not valid UTF-8")
		return nil
	}
	if id == "" || len(id) > maxPaymentIDLen {
		w.Problem(404, "payment not found", "no payment with id "+quote(id))
		return nil
	}
	data, err := e.KVGet(paymentKey(id))
	if errors.Is(err, guest.ErrNotFound) {
		w.Problem(404, "payment not found", "no payment with id "+quote(id))
		return nil
	}
	if err != nil {
		return errors.New("reading payment: " + err.Error())
	}
	w.JSON(200, data)
	return nil
}

// quote quotes an id for a message, cut to maxPaymentIDLen bytes.
func quote(id string) string {
	if len(id) > maxPaymentIDLen {
		return strconv.Quote(id[:maxPaymentIDLen]) + "..."
	}
	return strconv.Quote(id)
}
