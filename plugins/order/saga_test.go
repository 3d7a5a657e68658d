package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/meshd/meshd/plugins/internal/svcenv/svcenvtest"
)

func create(t *testing.T, e *svcenvtest.Fake, body string) string {
	t.Helper()
	var w svcenvtest.Recorder
	if err := createOrder(e, &w, []byte(body)); err != nil || w.Status != 201 {
		t.Fatalf("create: %v %d %v", err, w.Status, w.Errs)
	}
	var o storedOrder
	_ = json.Unmarshal(w.Body, &o)
	return o.ID
}

func status(t *testing.T, e *svcenvtest.Fake, key string) (string, string) {
	t.Helper()
	var o struct{ Status, Reason string }
	if err := json.Unmarshal(e.KV[key], &o); err != nil {
		t.Fatalf("%s: %v %s", key, err, e.KV[key])
	}
	return o.Status, o.Reason
}

func TestSagaCommandSide(t *testing.T) {
	e := svcenvtest.New("id-")
	e.Settings = map[string]string{"payment_timeout": "2s"}
	a := create(t, e, validOrder)
	if !strings.Contains(e.Published[1], "after 2s") {
		t.Fatalf("timeout not configured: %v", e.Published)
	}
	// Declined: cancelled with the payment's reason.
	if err := paymentFailed(e, []byte(`{"order_id":"`+a+`","reason":"over limit"}`)); err != nil {
		t.Fatal(err)
	}
	if s, r := status(t, e, orderKey(a)); s != "CANCELLED" || r != "over limit" {
		t.Fatalf("after PAYMENT_FAILED: %s %q", s, r)
	}
	// The timeout then changes nothing; a late payment is refunded.
	e.Published = nil
	if err := paymentTimedOut(e, noPayments(t), []byte(`{"order_id":"`+a+`"}`)); err != nil || len(e.Published) != 0 {
		t.Fatalf("timeout on cancelled order: %v %v", err, e.Published)
	}
	if err := paymentCompleted(e, []byte(`{"order_id":"`+a+`","payment_id":"p1"}`)); err != nil {
		t.Fatal(err)
	}
	if s, _ := status(t, e, orderKey(a)); s != "CANCELLED" || len(e.Published) != 1 || !strings.HasPrefix(e.Published[0], "REFUND_REQUESTED ") || !strings.Contains(e.Published[0], `"payment_id":"p1"`) {
		t.Fatalf("late payment: %s %v", s, e.Published)
	}
	// Timeout on a waiting order whose payment never came, past its
	// extensions, cancels it.
	b := create(t, e, validOrder)
	e.Published = nil
	if err := paymentTimedOut(e, fakePayments{}, []byte(`{"order_id":"`+b+`","extension":"3"}`)); err != nil {
		t.Fatal(err)
	}
	if s, r := status(t, e, orderKey(b)); s != "CANCELLED" || r != "payment timeout" || len(e.Published) != 1 || !strings.HasPrefix(e.Published[0], "ORDER_CANCELLED ") {
		t.Fatalf("timeout: %s %q %v", s, r, e.Published)
	}
}

// noPayments fails the test if the payment service is asked.
type noPaymentsT struct{ t *testing.T }

func noPayments(t *testing.T) payments { return noPaymentsT{t} }

func (n noPaymentsT) PaymentOf(id string) (payment, bool, error) {
	n.t.Fatalf("payment service asked about %s", id)
	return payment{}, false, nil
}

// fakePayments answers with p (found when p.Status is set) or err.
type fakePayments struct {
	p   payment
	err error
}

func (f fakePayments) PaymentOf(id string) (payment, bool, error) {
	if f.err != nil {
		return payment{}, false, f.err
	}
	return f.p, f.p.Status != "", nil
}

// TestPaymentTimeoutAsksPayment: the payment timeout never cancels an
// order whose payment completed but whose PAYMENT_COMPLETED the order
// service has not handled yet; it extends the deadline while the payment
// service has no result, and cancels only past the extensions.
func TestPaymentTimeoutAsksPayment(t *testing.T) {
	for _, tc := range []struct {
		name       string
		pays       fakePayments
		data       string // after the order_id
		settings   map[string]string
		wantStatus string
		wantReason string
		wantEvent  string // prefix of the one event published
	}{
		{"completed", fakePayments{p: payment{ID: "pay-x", Status: "COMPLETED"}}, ``, nil, "PAID", "", "ORDER_PAID "},
		{"declined", fakePayments{p: payment{ID: "pay-x", Status: "DECLINED", Reason: "over limit"}}, ``, nil, "CANCELLED", "over limit", "ORDER_CANCELLED "},
		{"refunded", fakePayments{p: payment{ID: "pay-x", Status: "REFUNDED"}}, ``, nil, "CANCELLED", "payment timeout", "ORDER_CANCELLED "},
		{"not yet", fakePayments{}, ``, nil, "CREATED", "", `ORDER_PAYMENT_TIMEOUT after 2s {"order_id":"{id}","extension":"1"}`},
		{"unreachable", fakePayments{err: errors.New("unavailable")}, `,"extension":"2"`, nil, "CREATED", "", `ORDER_PAYMENT_TIMEOUT after 2s {"order_id":"{id}","extension":"3"}`},
		{"past extensions", fakePayments{}, `,"extension":"3"`, nil, "CANCELLED", "payment timeout", "ORDER_CANCELLED "},
		{"no extensions", fakePayments{}, ``, map[string]string{"payment_timeout_extensions": "0"}, "CANCELLED", "payment timeout", "ORDER_CANCELLED "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := svcenvtest.New("id-")
			e.Settings = map[string]string{"payment_timeout": "2s"}
			for k, v := range tc.settings {
				e.Settings[k] = v
			}
			id := create(t, e, validOrder)
			e.Published = nil
			if err := paymentTimedOut(e, tc.pays, []byte(`{"order_id":"`+id+`"`+tc.data+`}`)); err != nil {
				t.Fatal(err)
			}
			s, r := status(t, e, orderKey(id))
			want := strings.ReplaceAll(tc.wantEvent, "{id}", id)
			if s != tc.wantStatus || r != tc.wantReason || len(e.Published) != 1 || !strings.HasPrefix(e.Published[0], want) {
				t.Fatalf("status %s %q, published %v; want %s %q and %q", s, r, e.Published, tc.wantStatus, tc.wantReason, want)
			}
			if tc.wantStatus != "PAID" {
				return
			}
			// Its PAYMENT_COMPLETED, handled later, finds it paid by that
			// payment: ORDER_PAID again, no refund.
			e.Published = nil
			if err := paymentCompleted(e, []byte(`{"order_id":"`+id+`","payment_id":"pay-x"}`)); err != nil {
				t.Fatal(err)
			}
			if s, _ := status(t, e, orderKey(id)); s != "PAID" || len(e.Published) != 1 || !strings.HasPrefix(e.Published[0], "ORDER_PAID ") {
				t.Fatalf("PAYMENT_COMPLETED after the timeout: %s %v", s, e.Published)
			}
		})
	}
}

func TestReadModelOrderIndependent(t *testing.T) {
	src := svcenvtest.New("id-")
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, create(t, src, validOrder))
	}
	created := func(id string) []byte { return src.KV[orderKey(id)] }
	paid := []byte(`{"order_id":"` + ids[1] + `","payment_id":"p","paid_at":"t"}`)
	cancelled := []byte(`{"order_id":"` + ids[2] + `","reason":"r","cancelled_at":"t"}`)
	steps := []func(e env) error{
		func(e env) error { return projectCreated(e, created(ids[0])) },
		func(e env) error { return projectCreated(e, created(ids[1])) },
		func(e env) error { return projectCreated(e, created(ids[2])) },
		func(e env) error { return projectPaid(e, paid) },
		func(e env) error { return projectCancelled(e, cancelled) },
	}
	run := func(order []int) *svcenvtest.Fake {
		e := svcenvtest.New("id-")
		for _, i := range order {
			if err := steps[i](e); err != nil {
				t.Fatal(err)
			}
		}
		return e
	}
	a, b := run([]int{0, 1, 2, 3, 4}), run([]int{4, 3, 2, 1, 0, 3, 1})
	if len(a.KV) != 5 || len(a.KV) != len(b.KV) { // 3 views, index head, one index page
		t.Fatalf("keys %d vs %d", len(a.KV), len(b.KV))
	}
	for k, v := range a.KV {
		if string(b.KV[k]) != string(v) {
			t.Fatalf("%s differs:\n%s\n%s", k, v, b.KV[k])
		}
	}
	if s, _ := status(t, a, viewKey(ids[1])); s != "PAID" {
		t.Fatalf("view status %s", s)
	}
	// Pagination: newest first, two pages.
	var w svcenvtest.Recorder
	if err := listUserOrders(a, &w, "user123", "2", ""); err != nil || w.Status != 200 {
		t.Fatal(err, w.Status, w.Detail)
	}
	var page struct {
		Orders []struct{ ID string }
		Next   string `json:"next_cursor"`
	}
	_ = json.Unmarshal(w.Body, &page)
	if len(page.Orders) != 2 || page.Orders[0].ID != ids[2] || page.Orders[1].ID != ids[1] || page.Next == "" {
		t.Fatalf("page 1: %s", w.Body)
	}
	w = svcenvtest.Recorder{}
	if err := listUserOrders(a, &w, "user123", "2", page.Next); err != nil {
		t.Fatal(err)
	}
	page.Orders, page.Next = nil, ""
	_ = json.Unmarshal(w.Body, &page)
	if len(page.Orders) != 1 || page.Orders[0].ID != ids[0] || page.Next != "" {
		t.Fatalf("page 2: %s", w.Body)
	}
	for _, q := range [][2]string{{"0", ""}, {"1001", ""}, {"x", ""}, {"", "!!"}} {
		w = svcenvtest.Recorder{}
		if err := listUserOrders(a, &w, "user123", q[0], q[1]); err != nil || w.Status != 400 {
			t.Fatalf("%v: %d", q, w.Status)
		}
	}
}

// TestUserIndexPages adds entries out of order to an index with tiny pages
// and checks that every entry is kept once, pages stay sorted ranges, the
// appended case touches one page, and paging with the cursor serves every
// order newest first exactly once.
func TestUserIndexPages(t *testing.T) {
	defer func(n int) { indexPageBytes = n }(indexPageBytes)
	indexPageBytes = 3*24 + 2 // three entries of 24 bytes
	e := svcenvtest.New("id-")
	const user = "u1"
	var want []string // entries, ascending
	// Mostly ascending (as orders arrive), some late (8 into a full last
	// page, 0 into the first) and some repeated.
	for _, i := range []int{1, 2, 3, 4, 5, 6, 7, 9, 10, 8, 0, 11, 5, 12, 13, 2, 14} {
		id := fmt.Sprintf("o%02d", i)
		entry := fmt.Sprintf("2026-01-02T03:04:%02dZ\t%s", i, id)
		e.KV[viewKey(id)] = []byte(`{"id":"` + id + `"}`)
		if err := indexAdd(e, user, entry); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(want, entry) {
			want = append(want, entry)
		}
	}
	slices.Sort(want)
	x, err := openIndex(e, user)
	if err != nil || x.n < 4 {
		t.Fatalf("pages %v %v", x, err)
	}
	var all []string
	for k := 0; k < x.n; k++ {
		lines, _ := x.page(k)
		if !slices.IsSorted(lines) || len(lines) == 0 {
			t.Fatalf("page %d: %q", k, lines)
		}
		all = append(all, lines...)
	}
	if !slices.Equal(all, want) {
		t.Fatalf("index\n%q\nwant\n%q", all, want)
	}
	// Newest first, four at a time.
	var got []string
	cursor := ""
	for range 10 {
		var w svcenvtest.Recorder
		if err := listUserOrders(e, &w, user, "4", cursor); err != nil || w.Status != 200 {
			t.Fatal(err, w.Status, w.Detail)
		}
		var page struct {
			Orders []struct{ ID string }
			Next   string `json:"next_cursor"`
		}
		if err := json.Unmarshal(w.Body, &page); err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Orders {
			got = append(got, o.ID)
		}
		if cursor = page.Next; cursor == "" {
			break
		}
	}
	var wantIDs []string
	for i := len(want) - 1; i >= 0; i-- {
		_, id, _ := strings.Cut(want[i], "\t")
		wantIDs = append(wantIDs, id)
	}
	if !slices.Equal(got, wantIDs) {
		t.Fatalf("listed %v, want %v", got, wantIDs)
	}
	// A user without orders: an empty list, no cursor.
	var w svcenvtest.Recorder
	if err := listUserOrders(e, &w, "nobody", "", ""); err != nil || string(w.Body) != `{"orders":[]}` {
		t.Fatalf("empty: %v %s", err, w.Body)
	}
}

// TestUserIndexLegacy reads and extends an index written as one document
// (before pages): it lists as before, and the first new order moves it to
// page 0.
func TestUserIndexLegacy(t *testing.T) {
	defer func(n int) { indexPageBytes = n }(indexPageBytes)
	indexPageBytes = 2*22 + 1 // two entries of 22 bytes
	e := svcenvtest.New("id-")
	for _, id := range []string{"a", "b", "c"} {
		e.KV[viewKey(id)] = []byte(`{"id":"` + id + `"}`)
	}
	e.KV[userKey("u")] = []byte("2026-01-01T00:00:01Z\ta\n2026-01-01T00:00:02Z\tb")
	list := func() string {
		var w svcenvtest.Recorder
		if err := listUserOrders(e, &w, "u", "", ""); err != nil || w.Status != 200 {
			t.Fatal(err, w.Status)
		}
		return string(w.Body)
	}
	if got := list(); got != `{"orders":[{"id":"b"},{"id":"a"}]}` {
		t.Fatalf("legacy list: %s", got)
	}
	if err := indexAdd(e, "u", "2026-01-01T00:00:03Z\tc"); err != nil {
		t.Fatal(err)
	}
	if string(e.KV[userKey("u")]) != "2" || !strings.HasSuffix(string(e.KV[pageKey("u", 0)]), "\tb") || string(e.KV[pageKey("u", 1)]) != "2026-01-01T00:00:03Z\tc" {
		t.Fatalf("after the first add: head %q, page 0 %q, page 1 %q", e.KV[userKey("u")], e.KV[pageKey("u", 0)], e.KV[pageKey("u", 1)])
	}
	if got := list(); got != `{"orders":[{"id":"c"},{"id":"b"},{"id":"a"}]}` {
		t.Fatalf("migrated list: %s", got)
	}
}

func TestInsertLine(t *testing.T) {
	for _, c := range []struct {
		page, entry, want string
		found             bool
	}{
		{"", "b", "b", false},
		{"b", "a", "a\nb", false},
		{"b", "c", "b\nc", false},
		{"b", "b", "b", true},
		{"a\nc\ne", "d", "a\nc\nd\ne", false},
		{"a\nc\ne", "b", "a\nb\nc\ne", false},
		{"a\nc\ne", "0", "0\na\nc\ne", false},
		{"a\nc\ne", "f", "a\nc\ne\nf", false},
		{"a\nc\ne", "a", "a\nc\ne", true},
		{"a\nc\ne", "c", "a\nc\ne", true},
		{"a\nc\ne", "e", "a\nc\ne", true},
		{"ab\nabc", "abb", "ab\nabb\nabc", false}, // a prefix sorts first
	} {
		page := []byte(c.page)
		got, found := insertLine(page, c.entry)
		if string(got) != c.want || found != c.found {
			t.Errorf("insertLine(%q, %q) = %q, %v; want %q, %v", c.page, c.entry, got, found, c.want, c.found)
		}
		if string(page) != c.page {
			t.Errorf("insertLine(%q, %q) changed its input to %q", c.page, c.entry, page)
		}
	}
}

// TestUserIndexAnyOrder adds entries in a random order, with repeats, to
// small pages: the pages hold every entry once, sorted, whatever the order.
func TestUserIndexAnyOrder(t *testing.T) {
	defer func(n int) { indexPageBytes = n }(indexPageBytes)
	indexPageBytes = 5*24 + 4 // five entries of 24 bytes
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		e := svcenvtest.New("id-")
		var want []string
		var adds []string
		for i := range 60 {
			entry := fmt.Sprintf("2026-01-02T03:%02d:%02dZ\to%02d", i/60, i%60, i%100)
			want = append(want, entry)
			adds = append(adds, entry)
			if rng.IntN(4) == 0 {
				adds = append(adds, entry) // a redelivery
			}
		}
		// Mostly ascending with local disorder, as concurrent creations
		// reach the stream; every few rounds fully shuffled.
		if round%4 == 3 {
			rng.Shuffle(len(adds), func(i, j int) { adds[i], adds[j] = adds[j], adds[i] })
		} else {
			for i := range adds {
				if j := i + rng.IntN(4); j < len(adds) {
					adds[i], adds[j] = adds[j], adds[i]
				}
			}
		}
		for _, entry := range adds {
			if err := indexAdd(e, "u", entry); err != nil {
				t.Fatal(err)
			}
		}
		x, err := openIndex(e, "u")
		if err != nil {
			t.Fatal(err)
		}
		var all []string
		for k := 0; k < x.n; k++ {
			lines, _ := x.page(k)
			if len(lines) == 0 {
				t.Fatalf("round %d: page %d of %d is empty", round, k, x.n)
			}
			all = append(all, lines...)
		}
		if !slices.Equal(all, want) {
			t.Fatalf("round %d: index\n%q\nwant\n%q", round, all, want)
		}
	}
}

func TestExcerptBoundsLoggedText(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes, two per rune
	got := excerpt(long)
	if len(got) > maxExcerpt+32 || !strings.Contains(got, "(200 bytes)") {
		t.Fatalf("excerpt of 200 bytes: %q", got)
	}
	if !utf8.ValidString(got) {
		t.Fatalf("excerpt cut a rune: %q", got)
	}
	if got := excerpt("p\n1"); got != `"p\n1"` {
		t.Fatalf("short text: %q, want it quoted whole", got)
	}
}
