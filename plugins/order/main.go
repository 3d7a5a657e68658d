// Command order is the order service, a meshd plugin. Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o order.wasm ./plugins/order
//
// It takes orders (POST /orders) and runs the order side of the checkout
// saga: PAYMENT_COMPLETED pays an order, PAYMENT_FAILED or its own delayed
// ORDER_PAYMENT_TIMEOUT cancels it, and a payment that arrives for a
// cancelled order is sent back (REFUND_REQUESTED). Queries (GET
// /orders/{id}, GET /users/{user_id}/orders) are served from a read model
// projected from its events.
package main

import (
	"github.com/meshd/meshd/guest"
	"github.com/meshd/meshd/plugins/internal/svcenv"
)

func init() {
	guest.Declare("order", "1.1.0")
	guest.Publishes(eventOrderCreated, eventPaymentTimeout, eventOrderPaid, eventOrderCancelled, eventRefundRequested)
	guest.Handle("POST /orders", func(w *guest.ResponseWriter, r *guest.Request) {
		if err := createOrder(svc, w, r.Body); err != nil {
			w.Fail(err)
		}
	})
	guest.Handle("GET /orders/{id}", func(w *guest.ResponseWriter, r *guest.Request) {
		if err := getOrder(svc, w, r.PathValue("id")); err != nil {
			w.Fail(err)
		}
	})
	guest.Handle("GET /users/{user_id}/orders", func(w *guest.ResponseWriter, r *guest.Request) {
		if err := listUserOrders(svc, w, r.PathValue("user_id"), r.QueryValue("limit"), r.QueryValue("cursor")); err != nil {
			w.Fail(err)
		}
	})
	// Command side.
	guest.Subscribe(eventPaymentCompleted, func(e *guest.Event) error { return paymentCompleted(svc, e.Data) })
	guest.Subscribe(eventPaymentFailed, func(e *guest.Event) error { return paymentFailed(svc, e.Data) })
	guest.Subscribe(eventPaymentTimeout, func(e *guest.Event) error { return paymentTimedOut(svc, pays, e.Data) })
	// Read model.
	guest.Subscribe(eventOrderCreated, func(e *guest.Event) error { return projectCreated(svc, e.Data) })
	guest.Subscribe(eventOrderPaid, func(e *guest.Event) error { return projectPaid(svc, e.Data) })
	guest.Subscribe(eventOrderCancelled, func(e *guest.Event) error { return projectCancelled(svc, e.Data) })
}

// main is not called for a reactor module's calls; registration is in init.
func main() {}

// env is what the service needs from the host; tests substitute a fake
// (svcenvtest).
type env = svcenv.Env

var svc env = svcenv.Host{}
