package main

import (
	"errors"
	"strconv"
	"time"

	"github.com/meshd/meshd/guest"
	"github.com/meshd/meshd/guest/jsonx"
)

const (
	eventOrderCreated     = "ORDER_CREATED"
	eventPaymentCompleted = "PAYMENT_COMPLETED"

	statusCompleted = "COMPLETED"

	maxIDLen = 128 // longer ids cannot be ours
)

// payment is a payment as stored and served.
type payment struct {
	ID        string
	OrderID   string
	UserID    string
	Amount    int64
	Status    string
	CreatedAt string
}

// responder is the part of *guest.ResponseWriter the handlers use.
type responder interface {
	JSON(status int, body []byte)
	Problem(status int, title, detail string, errs ...string)
}

var _ responder = (*guest.ResponseWriter)(nil)

func paymentKey(id string) string      { return "payment:" + id }
func byOrderKey(orderID string) string { return "payment-by-order:" + orderID }

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
	seenTotal := false
	for key, ok := r.ObjectNext(); ok; key, ok = r.ObjectNext() {
		switch string(key) {
		case "id":
			orderID = r.String()
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
	switch {
	case orderID == "" || len(orderID) > maxIDLen:
		return "", "", 0, errors.New("id is missing or too long")
	case !seenTotal || total <= 0:
		return "", "", 0, errors.New("total must be a positive integer")
	}
	return orderID, userID, total, nil
}

// orderCreated pays an order. It is idempotent: for an order already paid
// it publishes the same PAYMENT_COMPLETED again, which the order service
// ignores when it has seen it; nothing is stored twice.
func orderCreated(e env, data []byte) error {
	orderID, userID, total, err := parseOrderCreated(data)
	if err != nil {
		return errors.New(eventOrderCreated + ": invalid data: " + err.Error())
	}
	if id, err := e.KVGet(byOrderKey(orderID)); err == nil {
		stored, err := e.KVGet(paymentKey(string(id)))
		if err != nil {
			return errors.New("reading payment " + string(id) + " of order " + orderID + ": " + err.Error())
		}
		p, err := parsePayment(stored)
		if err != nil {
			return errors.New("stored payment " + string(id) + " is corrupt: " + err.Error())
		}
		e.Log(guest.LevelDebug, "order "+orderID+" already paid by "+p.ID+"; publishing again")
		return publish(e, &p)
	} else if !errors.Is(err, guest.ErrNotFound) {
		return errors.New("reading payment of order " + orderID + ": " + err.Error())
	}
	p := payment{
		ID:        e.NewID(),
		OrderID:   orderID,
		UserID:    userID,
		Amount:    total,
		Status:    statusCompleted,
		CreatedAt: e.Now().UTC().Format(time.RFC3339),
	}
	var w jsonx.Writer
	appendPayment(&w, &p)
	if err := e.KVSet(paymentKey(p.ID), w.Bytes()); err != nil {
		return errors.New("storing payment: " + err.Error())
	}
	if err := e.KVSet(byOrderKey(orderID), []byte(p.ID)); err != nil {
		return errors.New("storing payment: " + err.Error())
	}
	return publish(e, &p)
}

func publish(e env, p *payment) error {
	if err := e.Publish(eventPaymentCompleted, completedEvent(p)); err != nil {
		return errors.New("publishing " + eventPaymentCompleted + ": " + err.Error())
	}
	return nil
}

// getPayment serves GET /payments/{id}.
func getPayment(e env, w responder, id string) error {
	if id == "" || len(id) > maxIDLen {
		w.Problem(404, "payment not found", "no payment with id "+strconv.Quote(id))
		return nil
	}
	data, err := e.KVGet(paymentKey(id))
	if errors.Is(err, guest.ErrNotFound) {
		w.Problem(404, "payment not found", "no payment with id "+strconv.Quote(id))
		return nil
	}
	if err != nil {
		return errors.New("reading payment: " + err.Error())
	}
	w.JSON(200, data)
	return nil
}
