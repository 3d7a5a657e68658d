package main

import (
	"errors"
	"net/url"
	"strconv"

	"github.com/meshd/meshd/guest"
	"github.com/meshd/meshd/plugins/internal/svcenv"
)

// payments is how the order service learns the payment service's result
// for an order before that result's event (PAYMENT_COMPLETED or
// PAYMENT_FAILED) reaches it: the payment timeout asks before cancelling.
type payments interface {
	// PaymentOf returns the payment of order id; found is false when the
	// payment service has none (it has not handled the order yet).
	PaymentOf(orderID string) (p payment, found bool, err error)
}

// payment is what the order service reads of a payment.
type payment struct{ ID, Status, Reason string }

// paymentService is payments on the payment service's GET /payments/{id}
// (guest.Call, ABI v1.2; order.toml grants calls to it). The id of an
// order's payment is derived from the order's: "pay-" + the order's id.
type paymentService struct{}

var pays payments = paymentService{}

func (paymentService) PaymentOf(orderID string) (payment, bool, error) {
	resp, err := guest.Call("payment", &guest.CallRequest{Method: "GET", Path: "/payments/" + url.PathEscape("pay-"+orderID)})
	if err != nil {
		return payment{}, false, err
	}
	switch resp.Status {
	case 200:
	case 404:
		return payment{}, false, nil
	default:
		return payment{}, false, errors.New("payment service answered " + strconv.Itoa(resp.Status))
	}
	f, err := svcenv.Fields(resp.Body, "id", "status", "reason")
	if err != nil {
		return payment{}, false, errors.New("payment service's answer: " + err.Error())
	}
	return payment{ID: f[0], Status: f[1], Reason: f[2]}, true, nil
}
