package main

import (
	"strings"
	"testing"
)

func TestDeclineOverLimitAndRefund(t *testing.T) {
	e := newFakeEnv()
	e.config = map[string]string{"limit": "1000"}
	if err := orderCreated(e, []byte(`{"id":"o1","user_id":"u","total":1001}`)); err != nil {
		t.Fatal(err)
	}
	if len(e.published) != 1 || !strings.HasPrefix(e.published[0], "PAYMENT_FAILED ") || !strings.Contains(e.published[0], `"reason":"amount 1001 is over the limit of 1000"`) {
		t.Fatalf("published %v", e.published)
	}
	// Redelivery publishes the same outcome and stores nothing new.
	keys := len(e.kv)
	if err := orderCreated(e, []byte(`{"id":"o1","user_id":"u","total":1001}`)); err != nil || len(e.kv) != keys || e.published[1] != e.published[0] {
		t.Fatalf("redelivery: %v %d %v", err, len(e.kv), e.published)
	}
	// At the limit: paid; then refunded once on REFUND_REQUESTED.
	e.published = nil
	if err := orderCreated(e, []byte(`{"id":"o2","user_id":"u","total":1000}`)); err != nil || len(e.published) != 1 || !strings.HasPrefix(e.published[0], "PAYMENT_COMPLETED ") {
		t.Fatalf("pay: %v %v", err, e.published)
	}
	pid := string(e.kv[byOrderKey("o2")])
	for range 2 {
		if err := refundRequested(e, []byte(`{"order_id":"o2","payment_id":"`+pid+`","reason":"cancelled"}`)); err != nil {
			t.Fatal(err)
		}
	}
	p, err := parsePayment(e.kv[paymentKey(pid)])
	if err != nil || p.Status != "REFUNDED" || p.RefundedAt == "" {
		t.Fatalf("payment %+v %v", p, err)
	}
	if len(e.published) != 3 || !strings.HasPrefix(e.published[1], "PAYMENT_REFUNDED ") || e.published[2] != e.published[1] {
		t.Fatalf("published %v", e.published)
	}
	// The default limit is 5,000,000.
	e.config = nil
	e.published = nil
	if err := orderCreated(e, []byte(`{"id":"o3","user_id":"u","total":5000001}`)); err != nil || !strings.HasPrefix(e.published[0], "PAYMENT_FAILED ") {
		t.Fatalf("default limit: %v %v", err, e.published)
	}
}
