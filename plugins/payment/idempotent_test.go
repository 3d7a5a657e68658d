package main

import (
	"strings"
	"testing"

	"github.com/meshd/meshd/plugins/internal/svcenv/svcenvtest"
)

// completedPayments returns the ids of the COMPLETED payments stored for
// orderID, and of those PAYMENT_COMPLETED announced for it.
func completedPayments(t *testing.T, e *svcenvtest.Fake, orderID string) (stored, announced map[string]bool) {
	t.Helper()
	stored, announced = map[string]bool{}, map[string]bool{}
	for k, v := range e.KV {
		if !strings.HasPrefix(k, "payment:") {
			continue
		}
		p, err := parsePayment(v)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if p.OrderID == orderID && p.Status == statusCompleted {
			stored[p.ID] = true
		}
	}
	for _, ev := range e.Published {
		if strings.HasPrefix(ev, eventPaymentCompleted+" ") && strings.Contains(ev, `"order_id":"`+orderID+`"`) {
			_, after, _ := strings.Cut(ev, `"payment_id":"`)
			id, _, _ := strings.Cut(after, `"`)
			announced[id] = true
		}
	}
	return stored, announced
}

// TestRedeliveryAfterPartialApply: ORDER_CREATED redelivered after a crash
// that kept only some of the first delivery's writes never pays the order
// twice, whichever write was lost, and announces one payment id only.
func TestRedeliveryAfterPartialApply(t *testing.T) {
	const data = `{"id":"o1","user_id":"u","total":700}`
	lose := func(e *svcenvtest.Fake, prefix string) {
		for k := range e.KV {
			if strings.HasPrefix(k, prefix) {
				delete(e.KV, k)
			}
		}
	}
	for _, tc := range []struct {
		name  string
		setup func(e *svcenvtest.Fake) // the state the crash left
	}{
		{"by-order key lost", func(e *svcenvtest.Fake) {
			if err := orderCreated(e, []byte(data)); err != nil {
				t.Fatal(err)
			}
			lose(e, "payment-by-order:")
		}},
		{"payment lost", func(e *svcenvtest.Fake) {
			if err := orderCreated(e, []byte(data)); err != nil {
				t.Fatal(err)
			}
			lose(e, "payment:")
		}},
		{"payment lost, by-order key of a random id kept", func(e *svcenvtest.Fake) {
			e.KV[byOrderKey("o1")] = []byte("5f0c7c9e-legacy")
		}},
		{"nothing lost, random id", func(e *svcenvtest.Fake) {
			e.KV[byOrderKey("o1")] = []byte("5f0c7c9e-legacy")
			store(e, &payment{ID: "5f0c7c9e-legacy", OrderID: "o1", Amount: 700, Status: statusCompleted})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := svcenvtest.New("random-")
			tc.setup(e)
			for range 2 {
				if err := orderCreated(e, []byte(data)); err != nil {
					t.Fatalf("redelivery: %v", err)
				}
			}
			stored, announced := completedPayments(t, e, "o1")
			if len(stored) != 1 || len(announced) != 1 {
				t.Fatalf("completed payments stored %v, announced %v; want one and the same", stored, announced)
			}
			for id := range announced {
				if !stored[id] {
					t.Fatalf("announced payment %s is not the stored one %v", id, stored)
				}
			}
		})
	}
}

// TestInvalidIDs: ids that are not valid UTF-8 are refused: an
// ORDER_CREATED whose id is (two such orders could read as one), and GET
// /payments/{id} with 400.
func TestInvalidIDs(t *testing.T) {
	e := svcenvtest.New("random-")
	for _, bad := range []string{"{\"id\":\"o\xff\",\"total\":5}", `{"id":"o\udc00","total":5}`} {
		if err := orderCreated(e, []byte(bad)); err == nil || !strings.Contains(err.Error(), "UTF-8") {
			t.Errorf("ORDER_CREATED %q: %v", bad, err)
		}
	}
	if len(e.KV) != 0 || len(e.Published) != 0 {
		t.Fatalf("an invalid order was paid: %v %v", e.KV, e.Published)
	}
	var w svcenvtest.Recorder
	if err := getPayment(e, &w, "pay-\xff"); err != nil || w.Status != 400 || !strings.Contains(w.Detail, "UTF-8") {
		t.Fatalf("GET invalid id: %v %d %q", err, w.Status, w.Detail)
	}
	// The payment of an order with the longest id is found.
	long := strings.Repeat("o", maxIDLen)
	if err := orderCreated(e, []byte(`{"id":"`+long+`","total":5}`)); err != nil {
		t.Fatal(err)
	}
	w = svcenvtest.Recorder{}
	if err := getPayment(e, &w, paymentIDFor(long)); err != nil || w.Status != 200 {
		t.Fatalf("GET longest id: %v %d", err, w.Status)
	}
}
