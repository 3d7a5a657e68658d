package main

import (
	"strings"
	"testing"

	"github.com/meshd/meshd/plugins/internal/svcenv/svcenvtest"
)

func TestDeclineOverLimitAndRefund(t *testing.T) {
	e := svcenvtest.New("pay-")
	e.Settings = map[string]string{"limit": "1000"}
	if err := orderCreated(e, []byte(`{"id":"o1","user_id":"u","total":1001}`)); err != nil {
		t.Fatal(err)
	}
	if len(e.Published) != 1 || !strings.HasPrefix(e.Published[0], "PAYMENT_FAILED ") || !strings.Contains(e.Published[0], `"reason":"amount 1001 is over the limit of 1000"`) {
		t.Fatalf("published %v", e.Published)
	}
	// Redelivery publishes the same outcome and stores nothing new.
	keys := len(e.KV)
	if err := orderCreated(e, []byte(`{"id":"o1","user_id":"u","total":1001}`)); err != nil || len(e.KV) != keys || e.Published[1] != e.Published[0] {
		t.Fatalf("redelivery: %v %d %v", err, len(e.KV), e.Published)
	}
	// At the limit: paid; then refunded once on REFUND_REQUESTED.
	e.Published = nil
	if err := orderCreated(e, []byte(`{"id":"o2","user_id":"u","total":1000}`)); err != nil || len(e.Published) != 1 || !strings.HasPrefix(e.Published[0], "PAYMENT_COMPLETED ") {
		t.Fatalf("pay: %v %v", err, e.Published)
	}
	pid := paymentIDFor("o2")
	for range 2 {
		if err := refundRequested(e, []byte(`{"order_id":"o2","payment_id":"`+pid+`","reason":"cancelled"}`)); err != nil {
			t.Fatal(err)
		}
	}
	p, err := parsePayment(e.KV[paymentKey(pid)])
	if err != nil || p.Status != "REFUNDED" || p.RefundedAt == "" {
		t.Fatalf("payment %+v %v", p, err)
	}
	if len(e.Published) != 3 || !strings.HasPrefix(e.Published[1], "PAYMENT_REFUNDED ") || e.Published[2] != e.Published[1] {
		t.Fatalf("published %v", e.Published)
	}
	// The default limit is 5,000,000.
	e.Settings = nil
	e.Published = nil
	if err := orderCreated(e, []byte(`{"id":"o3","user_id":"u","total":5000001}`)); err != nil || !strings.HasPrefix(e.Published[0], "PAYMENT_FAILED ") {
		t.Fatalf("default limit: %v %v", err, e.Published)
	}
}
