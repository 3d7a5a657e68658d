package main

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"

	"github.com/meshd/meshd/guest"
	"github.com/meshd/meshd/guest/jsonx"
)

// The read model (CQRS query side), projected only from the order
// service's own events, under the key prefix "rm:" (order.toml [events]
// read_model_prefix), so `meshd events replay --service order` can drop and
// rebuild it:
//
//	rm:order:<id>   the order as served by GET /orders/{id}
//	rm:user:<uid>   the user's orders, one "<created_at>\t<id>" line each,
//	                sorted ascending (created_at is fixed-width RFC 3339)
//
// Every projection is an idempotent merge that does not depend on arrival
// order (ORDER_PAID may be projected before ORDER_CREATED: they are
// different consumers), so a replay ends with identical documents.

const (
	defaultLimit = 20
	maxLimit     = 1000
)

func viewKey(id string) string     { return "rm:order:" + id }
func userKey(userID string) string { return "rm:user:" + userID }

// isComplete reports whether a read-model document has the order's
// creation data (it may hold only a status when ORDER_PAID or
// ORDER_CANCELLED was projected first).
func isComplete(doc []byte) bool {
	o, err := parseOrder(doc)
	return err == nil && o.UserID != ""
}

func loadView(e env, id string) (order, error) {
	stored, err := e.KVGet(viewKey(id))
	if errors.Is(err, guest.ErrNotFound) {
		return order{ID: id}, nil
	}
	if err != nil {
		return order{}, errors.New("reading view of " + id + ": " + err.Error())
	}
	o, err := parseOrder(stored)
	if err != nil {
		return order{}, errors.New("view of " + id + " is corrupt: " + err.Error())
	}
	return o, nil
}

func storeView(e env, o *order) error {
	if o.Status == "" {
		o.Status = statusCreated
	}
	var jw jsonx.Writer
	appendOrder(&jw, o)
	if err := e.KVSet(viewKey(o.ID), jw.Bytes()); err != nil {
		return errors.New("storing view of " + o.ID + ": " + err.Error())
	}
	return nil
}

// projectCreated merges ORDER_CREATED into the view and the user's index.
func projectCreated(e env, data []byte) error {
	c, err := parseOrder(data)
	if err != nil || c.ID == "" || len(c.ID) > maxIDLen || c.UserID == "" {
		return errors.New(eventOrderCreated + ": invalid data")
	}
	v, err := loadView(e, c.ID)
	if err != nil {
		return err
	}
	// Creation fields come from the event; status fields stay as projected.
	v.UserID, v.Items, v.Total, v.CreatedAt = c.UserID, c.Items, c.Total, c.CreatedAt
	if err := storeView(e, &v); err != nil {
		return err
	}
	return indexAdd(e, c.UserID, c.CreatedAt+"\t"+c.ID)
}

// rank orders statuses so a merge keeps the final one.
func rank(s string) int {
	switch s {
	case statusPaid, statusCancelled:
		return 2
	case statusCreated:
		return 1
	}
	return 0
}

func projectPaid(e env, data []byte) error {
	f, err := fields(data, "order_id", "payment_id", "paid_at")
	if err != nil || f["order_id"] == "" || len(f["order_id"]) > maxIDLen {
		return errors.New(eventOrderPaid + ": invalid data")
	}
	v, err := loadView(e, f["order_id"])
	if err != nil {
		return err
	}
	if rank(v.Status) < 2 {
		v.Status, v.PaymentID, v.PaidAt = statusPaid, f["payment_id"], f["paid_at"]
	}
	return storeView(e, &v)
}

func projectCancelled(e env, data []byte) error {
	f, err := fields(data, "order_id", "reason", "cancelled_at")
	if err != nil || f["order_id"] == "" || len(f["order_id"]) > maxIDLen {
		return errors.New(eventOrderCancelled + ": invalid data")
	}
	v, err := loadView(e, f["order_id"])
	if err != nil {
		return err
	}
	if rank(v.Status) < 2 {
		v.Status, v.Reason, v.CancelledAt = statusCancelled, f["reason"], f["cancelled_at"]
	}
	return storeView(e, &v)
}

// indexAdd inserts entry into the user's sorted index (once).
func indexAdd(e env, userID, entry string) error {
	stored, err := e.KVGet(userKey(userID))
	if err != nil && !errors.Is(err, guest.ErrNotFound) {
		return errors.New("reading index of user: " + err.Error())
	}
	lines := splitLines(string(stored))
	i, found := search(lines, entry)
	if found {
		return nil
	}
	lines = append(lines, "")
	copy(lines[i+1:], lines[i:])
	lines[i] = entry
	if err := e.KVSet(userKey(userID), []byte(strings.Join(lines, "\n"))); err != nil {
		return errors.New("storing index of user: " + err.Error())
	}
	return nil
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// search finds entry in the sorted lines.
func search(lines []string, entry string) (int, bool) {
	lo, hi := 0, len(lines)
	for lo < hi {
		m := (lo + hi) / 2
		if lines[m] < entry {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(lines) && lines[lo] == entry
}

// listUserOrders serves GET /users/{user_id}/orders?limit=&cursor=: the
// user's orders newest first. The cursor is opaque to clients: the
// base64url of the last index entry returned.
func listUserOrders(e env, w responder, userID, limitQ, cursorQ string) error {
	limit := defaultLimit
	if limitQ != "" {
		n, err := strconv.Atoi(limitQ)
		if err != nil || n < 1 || n > maxLimit {
			w.Problem(400, "invalid query", "limit must be an integer from 1 to "+strconv.Itoa(maxLimit))
			return nil
		}
		limit = n
	}
	var after string
	if cursorQ != "" {
		b, err := base64.RawURLEncoding.DecodeString(cursorQ)
		if err != nil || !strings.Contains(string(b), "\t") {
			w.Problem(400, "invalid query", "cursor is not one this service returned")
			return nil
		}
		after = string(b)
	}
	var lines []string
	if userID != "" && len(userID) <= maxIDLen {
		stored, err := e.KVGet(userKey(userID))
		if err != nil && !errors.Is(err, guest.ErrNotFound) {
			return errors.New("reading index of user: " + err.Error())
		}
		lines = splitLines(string(stored))
	}
	end := len(lines) // exclusive; newest is last
	if after != "" {
		end, _ = search(lines, after)
	}
	var jw jsonx.Writer
	jw.ObjectStart()
	jw.Key("orders")
	jw.ArrayStart()
	n := 0
	last := ""
	for i := end - 1; i >= 0 && n < limit; i-- {
		_, id, _ := strings.Cut(lines[i], "\t")
		doc, err := e.KVGet(viewKey(id))
		if err != nil {
			return errors.New("reading view of " + id + ": " + err.Error())
		}
		jw.Raw(doc)
		n++
		last = lines[i]
		if i == 0 {
			last = ""
		}
	}
	jw.ArrayEnd()
	if last != "" {
		jw.StringField("next_cursor", base64.RawURLEncoding.EncodeToString([]byte(last)))
	}
	jw.ObjectEnd()
	w.JSON(200, jw.Bytes())
	return nil
}
