package main

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/meshd/meshd/guest"
	"github.com/meshd/meshd/guest/jsonx"
	"github.com/meshd/meshd/plugins/internal/svcenv"
)

const (
	eventOrderCreated     = "ORDER_CREATED"
	eventPaymentCompleted = "PAYMENT_COMPLETED"

	statusCreated   = "CREATED"
	statusPaid      = "PAID"
	statusCancelled = "CANCELLED"

	maxItems = 1000 // items per order
	maxIDLen = 128  // longer ids cannot be ours
)

// item is one line of an order.
type item struct {
	Name  string
	Price int64
}

// order is an order as stored and served.
type order struct {
	ID          string
	UserID      string
	Items       []item
	Total       int64
	Status      string
	CreatedAt   string
	PaymentID   string // set when PAID
	PaidAt      string // set when PAID
	Reason      string // set when CANCELLED
	CancelledAt string // set when CANCELLED
}

// responder is the part of *guest.ResponseWriter the handlers use.
type responder interface {
	SetHeader(name, value string)
	JSON(status int, body []byte)
	Problem(status int, title, detail string, errs ...string)
}

var _ responder = (*guest.ResponseWriter)(nil)

func orderKey(id string) string { return guest.Key("order", id) }

// parseCreate reads a POST /orders body. A non-nil error means the body is
// not valid JSON; otherwise problems lists every validation failure, each
// naming its field.
func parseCreate(body []byte) (userID string, items []item, problems []string, err error) {
	var r jsonx.Reader
	r.Reset(body)
	if k := r.Kind(); k != jsonx.Object {
		if k == jsonx.Invalid {
			return "", nil, nil, r.Err()
		}
		r.Skip()
		if err := r.Finish(); err != nil {
			return "", nil, nil, err
		}
		return "", nil, []string{"body must be a JSON object"}, nil
	}
	seenItems, userBad, userValid := false, false, true
	for key, ok := r.ObjectNext(); ok; key, ok = r.ObjectNext() {
		switch string(key) {
		case "user_id":
			userID, userValid, userBad = svcenv.StringField(&r)
		case "items":
			seenItems = true
			if r.Kind() != jsonx.Array {
				r.Skip()
				problems = append(problems, "items must be an array")
				continue
			}
			items = items[:0]
			for i := 0; r.ArrayNext(); i++ {
				if i == maxItems {
					problems = append(problems, "items: at most "+strconv.Itoa(maxItems)+" items are allowed")
				}
				it, p := parseItem(&r, i)
				problems = append(problems, p...)
				if i < maxItems {
					items = append(items, it)
				}
			}
			if r.Err() == nil && len(items) == 0 {
				problems = append(problems, "items: at least one item is required")
			}
		default:
			r.Skip()
		}
	}
	if err := r.Finish(); err != nil {
		return "", nil, nil, err
	}
	if p := svcenv.CheckText("user_id", userID, userBad, userValid, maxIDLen); p != "" {
		problems = append([]string{p}, problems...)
	}
	if !seenItems {
		problems = append(problems, "items: at least one item is required")
	}
	return userID, items, problems, nil
}

func parseItem(r *jsonx.Reader, i int) (it item, problems []string) {
	field := func(name string) string { return "items[" + strconv.Itoa(i) + "]." + name }
	if r.Kind() != jsonx.Object {
		r.Skip()
		return it, []string{"items[" + strconv.Itoa(i) + "] must be an object"}
	}
	nameBad, priceSeen, priceBad := false, false, false
	for key, ok := r.ObjectNext(); ok; key, ok = r.ObjectNext() {
		switch string(key) {
		case "name":
			if r.Kind() == jsonx.String {
				it.Name = r.String()
				nameBad = false
			} else {
				r.Skip()
				nameBad = true
			}
		case "price":
			priceSeen = true
			priceBad = true
			if r.Kind() == jsonx.Number {
				if v, err := jsonx.ParseInt(r.Number()); err == nil && v > 0 {
					it.Price, priceBad = v, false
				}
			} else {
				r.Skip()
			}
		default:
			r.Skip()
		}
	}
	switch {
	case nameBad:
		problems = append(problems, field("name")+" must be a string")
	case strings.TrimSpace(it.Name) == "":
		problems = append(problems, field("name")+" is required")
	}
	switch {
	case !priceSeen:
		problems = append(problems, field("price")+" is required")
	case priceBad:
		problems = append(problems, field("price")+" must be a positive integer")
	}
	return it, problems
}

// sum adds the prices, reporting overflow.
func sum(items []item) (int64, bool) {
	var total int64
	for _, it := range items {
		if it.Price > math.MaxInt64-total {
			return 0, false
		}
		total += it.Price
	}
	return total, true
}

// orderJSON is o as JSON, in a buffer allocated once.
func orderJSON(o *order) []byte {
	jw := jsonx.NewWriter(make([]byte, 0, 256+64*len(o.Items)))
	appendOrder(jw, o)
	return jw.Bytes()
}

// appendOrder writes o as JSON.
func appendOrder(w *jsonx.Writer, o *order) {
	w.ObjectStart()
	w.StringField("id", o.ID)
	w.StringField("user_id", o.UserID)
	w.Key("items")
	w.ArrayStart()
	for _, it := range o.Items {
		w.ObjectStart()
		w.StringField("name", it.Name)
		w.IntField("price", it.Price)
		w.ObjectEnd()
	}
	w.ArrayEnd()
	w.IntField("total", o.Total)
	w.StringField("status", o.Status)
	w.StringField("created_at", o.CreatedAt)
	if o.PaymentID != "" {
		w.StringField("payment_id", o.PaymentID)
	}
	if o.PaidAt != "" {
		w.StringField("paid_at", o.PaidAt)
	}
	if o.Reason != "" {
		w.StringField("reason", o.Reason)
	}
	if o.CancelledAt != "" {
		w.StringField("cancelled_at", o.CancelledAt)
	}
	w.ObjectEnd()
}

// knownStatus is s as a string: one of the constants, without an
// allocation, when it is one.
func knownStatus(s []byte) string {
	switch string(s) {
	case statusCreated:
		return statusCreated
	case statusPaid:
		return statusPaid
	case statusCancelled:
		return statusCancelled
	}
	return string(s)
}

// parseOrder reads a stored order.
func parseOrder(b []byte) (order, error) {
	var o order
	var r jsonx.Reader
	r.Reset(b)
	for key, ok := r.ObjectNext(); ok; key, ok = r.ObjectNext() {
		switch string(key) {
		case "id":
			o.ID = r.String()
		case "user_id":
			o.UserID = r.String()
		case "items":
			for r.ArrayNext() {
				var it item
				for k, ok := r.ObjectNext(); ok; k, ok = r.ObjectNext() {
					switch string(k) {
					case "name":
						it.Name = r.String()
					case "price":
						it.Price = r.Int()
					default:
						r.Skip()
					}
				}
				o.Items = append(o.Items, it)
			}
		case "total":
			o.Total = r.Int()
		case "status":
			o.Status = knownStatus(r.StringBytes())
		case "created_at":
			o.CreatedAt = r.String()
		case "payment_id":
			o.PaymentID = r.String()
		case "paid_at":
			o.PaidAt = r.String()
		case "reason":
			o.Reason = r.String()
		case "cancelled_at":
			o.CancelledAt = r.String()
		default:
			r.Skip()
		}
	}
	if err := r.Finish(); err != nil {
		return order{}, err
	}
	return o, nil
}

// createOrder serves POST /orders. A returned error fails the call, so
// nothing it wrote is kept.
func createOrder(e env, w responder, body []byte) error {
	userID, items, problems, err := parseCreate(body)
	if err != nil {
		w.Problem(400, "invalid order", "body is not valid JSON: "+err.Error())
		return nil
	}
	total, ok := sum(items)
	if !ok {
		problems = append(problems, "items: the total price is too large")
	}
	if len(problems) > 0 {
		w.Problem(400, "invalid order", strings.Join(problems, "; "), problems...)
		return nil
	}
	o := order{
		ID:        e.NewID(),
		UserID:    userID,
		Items:     items,
		Total:     total,
		Status:    statusCreated,
		CreatedAt: svcenv.Timestamp(e.Now()), // fixed width: the per-user index sorts on it
	}
	data := orderJSON(&o)
	if err := e.KVSet(orderKey(o.ID), data); err != nil {
		return errors.New("storing order: " + err.Error())
	}
	if err := publish(e, eventOrderCreated, data); err != nil {
		return err
	}
	if err := e.PublishDelayed(eventPaymentTimeout, orderIDEvent(o.ID), paymentTimeout(e)); err != nil {
		return errors.New("scheduling " + eventPaymentTimeout + ": " + err.Error())
	}
	w.SetHeader("location", "/orders/"+o.ID)
	w.JSON(201, data)
	return nil
}

// getOrder serves GET /orders/{id}.
func getOrder(e env, w responder, id string) error {
	if !utf8.ValidString(id) {
		w.Problem(400, "invalid order id", "the order id is not valid UTF-8")
		return nil
	}
	if id == "" || len(id) > maxIDLen {
		w.Problem(404, "order not found", "no order with id "+strconv.Quote(id))
		return nil
	}
	data, err := e.KVGet(viewKey(id))
	if errors.Is(err, guest.ErrNotFound) || (err == nil && !isComplete(data)) {
		// The projection has not caught up with the command yet: answer
		// from the command side so a client reads its own write.
		data, err = e.KVGet(orderKey(id))
	}
	if errors.Is(err, guest.ErrNotFound) {
		w.Problem(404, "order not found", "no order with id "+strconv.Quote(id))
		return nil
	}
	if err != nil {
		return errors.New("reading order: " + err.Error())
	}
	w.JSON(200, data)
	return nil
}
