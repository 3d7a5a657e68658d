package main

import (
	"strconv"

	"github.com/meshd/meshd/guest"
	"github.com/meshd/meshd/guest/jsonx"
)

const (
	orderService = "order"
	// recentOrders is how many of the user's orders a profile holds, the
	// newest first; "orders_next_cursor" pages on at the order service
	// (GET /users/{id}/orders?cursor=).
	recentOrders = 10
	// maxLogDetail bounds the part of a host's error message that reaches
	// a log line.
	maxLogDetail = 200
)

// getProfile serves GET /users/{id}: the user and their recent orders from
// the order service. When the order service gives no usable answer the
// profile degrades (see the package comment): "orders" is null and
// "orders_error" says why.
func getProfile(e env, w responder, id string) error {
	if !checkPathID(w, id) {
		return nil
	}
	u, found, err := loadUser(e, id)
	if err != nil {
		return err
	}
	if !found {
		notFound(w, id)
		return nil
	}
	orders, next, reason := fetchOrders(e, id)
	jw := jsonx.NewWriter(make([]byte, 0, 256+len(orders)))
	jw.ObjectStart()
	appendUser(jw, &u)
	if reason != "" {
		jw.Key("orders")
		jw.Null()
		jw.StringField("orders_error", reason)
	} else {
		jw.RawField("orders", orders)
		if next != "" {
			jw.StringField("orders_next_cursor", next)
		}
	}
	jw.ObjectEnd()
	w.JSON(200, jw.Bytes())
	return nil
}

// fetchOrders asks the order service for the user's recent orders. It
// returns the orders (a JSON array, as the order service wrote it) and the
// cursor of the next page, or a short reason why there are none to show.
func fetchOrders(e env, id string) (orders []byte, next, reason string) {
	status, body, err := e.Get(orderService, "/users/"+pathEscape(id)+"/orders", "limit="+strconv.Itoa(recentOrders))
	if err != nil {
		reason = callFailure(err)
		e.Log(guest.LevelWarn, "profile without orders: "+reason+": "+excerpt(err.Error(), maxLogDetail))
		return nil, "", reason
	}
	if status != 200 {
		reason = "order service answered " + strconv.Itoa(status)
		e.Log(guest.LevelWarn, "profile without orders: "+reason)
		return nil, "", reason
	}
	orders, next, ok := parseOrderList(body)
	if !ok {
		reason = "order service answered an unexpected body"
		e.Log(guest.LevelWarn, "profile without orders: "+reason)
		return nil, "", reason
	}
	return orders, next, ""
}

// parseOrderList reads the order service's answer to
// GET /users/{user_id}/orders: {"orders": [...], "next_cursor": "..."}.
// It returns the orders array as it stands (checked to be valid JSON) and
// the cursor, or ok false when the body is not of that shape.
func parseOrderList(body []byte) (orders []byte, next string, ok bool) {
	var r jsonx.Reader
	r.Reset(body)
	if r.Kind() != jsonx.Object {
		return nil, "", false
	}
	for key, more := r.ObjectNext(); more; key, more = r.ObjectNext() {
		switch string(key) {
		case "orders":
			if r.Kind() != jsonx.Array {
				return nil, "", false
			}
			orders = r.Raw()
		case "next_cursor":
			if r.Kind() != jsonx.String {
				return nil, "", false
			}
			next = r.String()
		default:
			r.Skip()
		}
	}
	if r.Finish() != nil || orders == nil {
		return nil, "", false
	}
	return orders, next, true
}
