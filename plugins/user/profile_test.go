package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/guest"
	"github.com/meshd/meshd/plugins/internal/svcenv/svcenvtest"
)

// profile is a profile as answered.
type profile struct {
	servedUser
	Orders      *[]json.RawMessage `json:"orders"`
	OrdersError *string            `json:"orders_error"`
	Next        *string            `json:"orders_next_cursor"`
}

func getP(t *testing.T, e *fake, id string) (svcenvtest.Recorder, profile) {
	t.Helper()
	var w svcenvtest.Recorder
	if err := getProfile(e, &w, id); err != nil {
		t.Fatalf("GET %q: %v", id, err)
	}
	var p profile
	if w.Status == 200 {
		if err := json.Unmarshal(w.Body, &p); err != nil {
			t.Fatalf("GET %q: %v: %s", id, err, w.Body)
		}
	}
	return w, p
}

func TestProfileWithOrders(t *testing.T) {
	e := newFake()
	put(t, e, `{"id":"kim","name":"Kim"}`)
	e.body = `{"orders":[{"id":"o2","user_id":"kim","status":"PAID"},{"id":"o1","user_id":"kim","status":"CANCELLED"}],"next_cursor":"abc"}`
	w, p := getP(t, e, "kim")
	if w.Status != 200 || p.ID != "kim" || p.Name != "Kim" || p.CreatedAt == "" {
		t.Fatalf("status %d profile %s", w.Status, w.Body)
	}
	if p.Orders == nil || len(*p.Orders) != 2 || p.OrdersError != nil || p.Next == nil || *p.Next != "abc" {
		t.Fatalf("orders in %s", w.Body)
	}
	var o struct{ ID, Status string }
	if err := json.Unmarshal((*p.Orders)[0], &o); err != nil || o.ID != "o2" || o.Status != "PAID" {
		t.Fatalf("first order %s: %v", (*p.Orders)[0], err)
	}
	if len(e.calls) != 1 || e.calls[0] != "order /users/kim/orders limit=10" {
		t.Fatalf("calls %q", e.calls)
	}

	// No orders: an empty list, not null, and no cursor.
	e.body = `{"orders":[]}`
	_, p = getP(t, e, "kim")
	if p.Orders == nil || len(*p.Orders) != 0 || p.OrdersError != nil || p.Next != nil {
		t.Fatalf("no orders: %+v", p)
	}
}

// TestProfileDegrades: whatever goes wrong with the call, the profile is
// 200 with the user, "orders": null and a short reason.
func TestProfileDegrades(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		err    error
		reason string
	}{
		{"denied", 0, "", &guest.Error{Code: abi.CodeDenied, Msg: `service user is not granted calling "order" (grants.calls)`}, "call to the order service not granted"},
		{"unavailable", 0, "", &guest.Error{Code: abi.CodeUnavailable, Msg: "circuit user→order open"}, "order service unavailable"},
		{"timeout", 0, "", &guest.Error{Code: abi.CodeTimeout, Msg: "deadline"}, "order service timed out"},
		{"not found", 0, "", &guest.Error{Code: abi.CodeNotFound, Msg: "no service order"}, "order service not found"},
		{"too large", 0, "", &guest.Error{Code: abi.CodeTooLarge, Msg: "response over the cap"}, "order service answer too large"},
		{"internal", 0, "", &guest.Error{Code: abi.CodeInternal, Msg: "bug"}, "call to the order service failed"},
		{"other error", 0, "", errors.New("no instance"), "call to the order service failed"},
		{"503", 503, `{"title":"busy"}`, nil, "order service answered 503"},
		{"404", 404, `{"title":"not found"}`, nil, "order service answered 404"},
		{"not JSON", 200, `<html>`, nil, "order service answered an unexpected body"},
		{"orders not an array", 200, `{"orders":{}}`, nil, "order service answered an unexpected body"},
		{"no orders field", 200, `{}`, nil, "order service answered an unexpected body"},
		{"orders invalid", 200, `{"orders":[{]}`, nil, "order service answered an unexpected body"},
		{"trailing bytes", 200, `{"orders":[]} x`, nil, "order service answered an unexpected body"},
		{"cursor not a string", 200, `{"orders":[],"next_cursor":1}`, nil, "order service answered an unexpected body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFake()
			put(t, e, `{"id":"kim","name":"Kim"}`)
			e.status, e.body, e.err = tc.status, tc.body, tc.err
			w, p := getP(t, e, "kim")
			if w.Status != 200 || p.ID != "kim" || p.Name != "Kim" {
				t.Fatalf("status %d body %s", w.Status, w.Body)
			}
			if !strings.Contains(string(w.Body), `"orders":null`) || p.OrdersError == nil || *p.OrdersError != tc.reason || p.Next != nil {
				t.Fatalf("body %s, want reason %q", w.Body, tc.reason)
			}
			if len(e.Logs) != 1 || !strings.HasPrefix(e.Logs[0], "WARN profile without orders: "+tc.reason) {
				t.Fatalf("logs %q", e.Logs)
			}
		})
	}
}

// TestProfileLogBounded: a call error's message reaches the log quoted and
// cut, whatever it holds.
func TestProfileLogBounded(t *testing.T) {
	e := newFake()
	put(t, e, `{"id":"kim","name":"Kim"}`)
	e.err = errors.New("line\nbreak \xff" + strings.Repeat("é", 1000))
	getP(t, e, "kim")
	if len(e.Logs) != 1 || strings.Contains(e.Logs[0], "\n") || !utf8.ValidString(e.Logs[0]) || len(e.Logs[0]) > 300 || !strings.HasSuffix(e.Logs[0], `"...`) {
		t.Fatalf("log %q", e.Logs)
	}
}

func TestProfileNotFound(t *testing.T) {
	e := newFake()
	long := strings.Repeat("é", 1000)
	for _, id := range []string{"nope", "", long} {
		w, _ := getP(t, e, id)
		if w.Status != 404 || w.Title != "user not found" || len(w.Detail) > 200 || !strings.HasPrefix(w.Detail, "no user with id \"") {
			t.Fatalf("%.20q: status %d title %q detail %q", id, w.Status, w.Title, w.Detail)
		}
	}
	if len(e.calls) != 0 {
		t.Fatalf("the order service was called for unknown users: %q", e.calls)
	}
	w, _ := getP(t, e, "v\xff")
	if w.Status != 400 || !strings.Contains(w.Detail, "UTF-8") {
		t.Fatalf("invalid UTF-8: status %d detail %q", w.Status, w.Detail)
	}
}

func TestProfileStoreFails(t *testing.T) {
	e := newFake()
	e.KV["user:kim"] = []byte(`{"id":"kim","name":`)
	var w svcenvtest.Recorder
	if err := getProfile(e, &w, "kim"); err == nil || w.Status != 0 {
		t.Fatalf("corrupt record: err %v status %d", err, w.Status)
	}
}

// TestProfileCallPathEscaped: the user id is one escaped segment of the
// call's path, so an id cannot reach another route or add a query.
func TestProfileCallPathEscaped(t *testing.T) {
	e := newFake()
	put(t, e, `{"id":"a/b?limit=1000&x=%","name":"X"}`)
	getP(t, e, "a/b?limit=1000&x=%")
	if len(e.calls) != 1 || e.calls[0] != "order /users/a%2Fb%3Flimit%3D1000%26x%3D%25/orders limit=10" {
		t.Fatalf("calls %q", e.calls)
	}
}

// TestHostEnvGetCalls: the service's host makes its call with guest.Call;
// outside wasm the SDK's stub answers it unavailable, which the profile
// gives as its reason.
func TestHostEnvGetCalls(t *testing.T) {
	_, _, err := hostEnv{}.Get(orderService, "/users/kim/orders", "limit=10")
	if !errors.Is(err, guest.ErrUnavailable) {
		t.Fatalf("err %v", err)
	}
	if r := callFailure(err); r != "order service unavailable" {
		t.Fatalf("reason %q", r)
	}
}
