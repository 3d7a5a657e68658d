// Command payment is the payment service, a meshd plugin. Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o payment.wasm ./plugins/payment
//
// It pays every order it hears of (ORDER_CREATED) up to the [config] limit
// and publishes PAYMENT_COMPLETED, or declines it with PAYMENT_FAILED
// {order_id, reason}; it refunds a payment on REFUND_REQUESTED
// (PAYMENT_REFUNDED) and serves GET /payments/{id}.
package main

import (
	"github.com/meshd/meshd/guest"
	"github.com/meshd/meshd/plugins/internal/svcenv"
)

func init() {
	guest.Declare("payment", "1.0.0")
	guest.Publishes(eventPaymentCompleted, eventPaymentFailed, eventPaymentRefunded)
	guest.Subscribe(eventOrderCreated, func(e *guest.Event) error {
		return orderCreated(svc, e.Data)
	})
	guest.Subscribe(eventRefundRequested, func(e *guest.Event) error {
		return refundRequested(svc, e.Data)
	})
	guest.Handle("GET /payments/{id}", func(w *guest.ResponseWriter, r *guest.Request) {
		if err := getPayment(svc, w, r.PathValue("id")); err != nil {
			w.Fail(err)
		}
	})
}

// main is not called for a reactor module's calls; registration is in init.
func main() {}

// env is what the service needs from the host; tests substitute a fake
// (svcenvtest).
type env = svcenv.Env

var svc env = svcenv.Host{}
