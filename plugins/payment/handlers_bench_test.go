package main

import (
	"strconv"
	"testing"

	"github.com/meshd/meshd/plugins/internal/svcenv/svcenvtest"
)

// BenchmarkOrderCreated is the payment service's part of one paid order:
// ORDER_CREATED for an order it has not seen, paid. Natively with `go
// test`, and as a guest with
//
//	GOOS=wasip1 GOARCH=wasm go test -c -o /tmp/payment.wasm ./plugins/payment
//	go run ./bench/guestrun /tmp/payment.wasm -test.run '^$' -test.bench OrderCreated
func BenchmarkOrderCreated(b *testing.B) {
	e := svcenvtest.New("random-")
	data := []byte(`{"id":"0b5e8d1c-6a47-4f0e-9d1a-2f3c4b5a6d7e","user_id":"bench7","items":[{"name":"x","price":100}],"total":100,"status":"CREATED","created_at":"2026-01-02T03:04:05.000000000Z"}`)
	for i := 0; b.Loop(); i++ {
		if i%1000 == 0 {
			clear(e.KV) // a bounded store; each order unseen
		}
		e.Published = e.Published[:0]
		d := append([]byte(nil), data...)
		copy(d[7:], strconv.Itoa(100000+i%900000)) // a new order id
		if err := orderCreated(e, d); err != nil || len(e.Published) != 1 {
			b.Fatal(err, e.Published)
		}
	}
}
