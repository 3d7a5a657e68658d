package main

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/meshd/meshd/plugins/internal/svcenv/svcenvtest"
)

// randomUser returns a user id of separators, escapes, wildcards, spaces
// and Unicode, or one of the ids that collided when keys were joined raw.
func randomUser(r *rand.Rand) string {
	if r.IntN(3) == 0 {
		crafted := []string{"alice", "alice:0", "alice:1", "alice:0:0", "alice%3A0", "rm:user:alice", ":", "%", "a b", "a.b", "*", ">"}
		return crafted[r.IntN(len(crafted))]
	}
	pieces := []string{":", "/", ".", "%", "%3A", "*", ">", " ", "é", "日本", "\u2028", "a", "b", "0", "1", "-", "_"}
	var b strings.Builder
	for range 1 + r.IntN(5) {
		b.WriteString(pieces[r.IntN(len(pieces))])
	}
	return b.String()
}

// listAll follows a user's list to its end and returns the order ids.
func listAll(t *testing.T, e *svcenvtest.Fake, user string) []string {
	t.Helper()
	var ids []string
	cursor := ""
	for range 1000 {
		var w svcenvtest.Recorder
		if err := listUserOrders(e, &w, user, "3", cursor); err != nil || w.Status != 200 {
			t.Fatalf("list of %q: %v, status %d %q", user, err, w.Status, w.Detail)
		}
		var page struct {
			Orders []struct {
				ID     string `json:"id"`
				UserID string `json:"user_id"`
			}
			Next string `json:"next_cursor"`
		}
		if err := json.Unmarshal(w.Body, &page); err != nil {
			t.Fatalf("list of %q: %v: %s", user, err, w.Body)
		}
		for _, o := range page.Orders {
			if o.UserID != user {
				t.Fatalf("list of %q holds order %s of %q", user, o.ID, o.UserID)
			}
			ids = append(ids, o.ID)
		}
		if cursor = page.Next; cursor == "" {
			return ids
		}
	}
	t.Fatalf("list of %q does not end", user)
	return nil
}

// TestUserListsProperty: users whose ids hold key separators, escapes,
// wildcards, spaces and Unicode each see exactly their own orders, through
// paged indexes, whatever the other users are called.
func TestUserListsProperty(t *testing.T) {
	defer func(n int) { indexPageBytes = n }(indexPageBytes)
	indexPageBytes = 2 * 40 // a few orders a page
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 99))
		e := svcenvtest.New("id-")
		want := map[string][]string{}
		for range 60 {
			user := randomUser(r)
			body, _ := json.Marshal(map[string]any{"user_id": user, "items": []map[string]any{{"name": "x", "price": 1}}})
			if strings.TrimSpace(user) == "" {
				continue
			}
			id := create(t, e, string(body))
			created := e.Published[len(e.Published)-2]
			data, ok := strings.CutPrefix(created, eventOrderCreated+" ")
			if !ok {
				t.Fatalf("not ORDER_CREATED: %s", created)
			}
			if err := projectCreated(e, []byte(data)); err != nil {
				t.Fatalf("seed %d: projecting an order of %q: %v", seed, user, err)
			}
			want[user] = append(want[user], id)
		}
		for user, ids := range want {
			got := listAll(t, e, user)
			slices.Sort(got)
			slices.Sort(ids)
			if !slices.Equal(got, ids) {
				t.Fatalf("seed %d: %q lists %v, want %v", seed, user, got, ids)
			}
		}
		// Users without orders, named like pages of users with some.
		for user := range want {
			for _, other := range []string{user + ":0", user + ":1", user + "%3A0"} {
				if _, ok := want[other]; !ok {
					if got := listAll(t, e, other); len(got) != 0 {
						t.Fatalf("seed %d: %q, who has no orders, lists %v", seed, other, got)
					}
				}
			}
		}
	}
}

// TestInvalidUTF8IDs: ids that are not valid UTF-8 are refused with 400
// and a message saying so, at every entry that takes one, so "v\xff" and
// "v\xfe" (both U+FFFD once read as JSON) can never share a list.
func TestInvalidUTF8IDs(t *testing.T) {
	e := svcenvtest.New("id-")
	for _, body := range []string{
		"{\"user_id\":\"v\xff\",\"items\":[{\"name\":\"x\",\"price\":1}]}",
		"{\"user_id\":\"v\xfe\",\"items\":[{\"name\":\"x\",\"price\":1}]}",
		`{"user_id":"v\ud800","items":[{"name":"x","price":1}]}`,
	} {
		var w svcenvtest.Recorder
		if err := createOrder(e, &w, []byte(body)); err != nil || w.Status != 400 || !strings.Contains(w.Detail, "user_id must be valid UTF-8") {
			t.Errorf("POST %q: %v %d %q", body, err, w.Status, w.Detail)
		}
	}
	if len(e.KV) != 0 || len(e.Published) != 0 {
		t.Fatalf("an order of an invalid user was taken: %v", e.Published)
	}
	// Valid ids that merely look like the repaired ones are fine and distinct.
	create(t, e, `{"user_id":"v\ufffd","items":[{"name":"x","price":1}]}`)
	var w svcenvtest.Recorder
	if err := listUserOrders(e, &w, "v\xff", "", ""); err != nil || w.Status != 400 || !strings.Contains(w.Detail, "UTF-8") {
		t.Errorf("GET list: %v %d %q", err, w.Status, w.Detail)
	}
	w = svcenvtest.Recorder{}
	if err := getOrder(e, &w, "id-\xff"); err != nil || w.Status != 400 || !strings.Contains(w.Detail, "UTF-8") {
		t.Errorf("GET order: %v %d %q", err, w.Status, w.Detail)
	}
	if !utf8.ValidString(w.Detail) {
		t.Errorf("detail is not valid UTF-8: %q", w.Detail)
	}
}
