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
	"time"

	"github.com/meshd/meshd/guest"
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

// env is what the service needs from the host; tests substitute a fake.
type env interface {
	KVGet(key string) ([]byte, error) // guest.ErrNotFound when absent
	KVSet(key string, value []byte) error
	Publish(eventType string, data []byte) error
	Config(key string) (string, error) // guest.ErrNotFound when absent
	Log(level guest.Level, msg string)
	Now() time.Time
	NewID() string
}

var svc env = guestEnv{}

// guestEnv is env on the real host functions.
type guestEnv struct{}

func (guestEnv) KVGet(key string) ([]byte, error)      { return guest.KVGet(key) }
func (guestEnv) KVSet(key string, value []byte) error  { return guest.KVSet(key, value) }
func (guestEnv) Publish(typ string, data []byte) error { return guest.Publish(typ, data) }
func (guestEnv) Config(key string) (string, error)     { return guest.Config(key) }
func (guestEnv) Log(level guest.Level, msg string)     { guest.Log(level, msg) }
func (guestEnv) Now() time.Time                        { return time.Now() }
func (guestEnv) NewID() string                         { return guest.NewUUID() }
