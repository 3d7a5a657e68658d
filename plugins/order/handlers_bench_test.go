package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/meshd/meshd/plugins/internal/svcenv/svcenvtest"
)

// BenchmarkSagaHandlers runs the order service's part of one paid order,
// handler by handler, as the saga benchmark drives them: 100 users, each
// order its user's newest, the store an in-memory fake. Natively with
// `go test`, and as a guest with
//
//	GOOS=wasip1 GOARCH=wasm go test -c -o /tmp/order.wasm ./plugins/order
//	go run ./bench/guestrun /tmp/order.wasm -test.run '^$' -test.bench SagaHandlers
func BenchmarkSagaHandlers(b *testing.B) {
	body := []byte(`{"user_id":"bench7","items":[{"name":"x","price":100}]}`)
	// setup creates and projects n orders, returning the fake and the last
	// order: its ORDER_CREATED and as parsed.
	setup := func(b *testing.B, n int) (*svcenvtest.Fake, []byte, order) {
		e := svcenvtest.New("order-")
		var created []byte
		for i := range n {
			req := []byte(strings.Replace(string(body), "bench7", "bench"+strconv.Itoa(i%100), 1))
			var w svcenvtest.Recorder
			if err := createOrder(e, &w, req); err != nil {
				b.Fatal(err)
			}
			created = w.Body
			if err := projectCreated(e, created); err != nil {
				b.Fatal(err)
			}
		}
		o, err := parseOrder(created)
		if n > 0 && err != nil {
			b.Fatal(err)
		}
		return e, created, o
	}
	b.Run("create", func(b *testing.B) {
		e, _, _ := setup(b, 0)
		var w svcenvtest.Recorder
		for b.Loop() {
			e.Published = e.Published[:0]
			if err := createOrder(e, &w, body); err != nil || w.Status != 201 {
				b.Fatal(err, w.Errs)
			}
		}
	})
	b.Run("project-created", func(b *testing.B) {
		// A user with 40 orders: 4,000 orders over 100 users.
		e, created, _ := setup(b, 4000)
		for b.Loop() {
			if err := projectCreated(e, created); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("payment-completed", func(b *testing.B) {
		e, _, o := setup(b, 1)
		ev := []byte(`{"order_id":"` + o.ID + `","payment_id":"pay-` + o.ID + `","amount":100}`)
		stored := e.KV[orderKey(o.ID)]
		for b.Loop() {
			e.KV[orderKey(o.ID)] = stored // CREATED again
			e.Published = e.Published[:0]
			if err := paymentCompleted(e, ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("project-paid", func(b *testing.B) {
		e, _, o := setup(b, 1)
		o.Status, o.PaymentID, o.PaidAt = statusPaid, "pay-"+o.ID, "2026-01-02T03:04:05Z"
		ev := paidEvent(&o)
		view := e.KV[viewKey(o.ID)]
		for b.Loop() {
			e.KV[viewKey(o.ID)] = view // not yet paid
			if err := projectPaid(e, ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}
