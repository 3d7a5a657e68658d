package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/guest"
	"github.com/meshd/meshd/plugins/internal/svcenv/svcenvtest"
)

// fake is the in-memory host with a scripted order service.
type fake struct {
	*svcenvtest.Fake
	now time.Time

	// What Get answers, and the calls it was asked for ("service path query").
	status  int
	body    string
	err     error
	calls   []string
	refused []string // the messages of calls abi.CallRequest.Check refuses
}

func newFake() *fake {
	return &fake{Fake: svcenvtest.New("id-"), now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		status: 200, body: `{"orders":[]}`}
}

func (f *fake) Now() time.Time { return f.now }

func (f *fake) Get(service, path, query string) (int, []byte, error) {
	f.calls = append(f.calls, service+" "+path+" "+query)
	// What the host would refuse as a malformed call.
	req := abi.CallRequest{Method: []byte("GET"), Path: []byte(path), Query: []byte(query)}
	if code, msg := req.Check(); code != abi.CodeOK {
		f.refused = append(f.refused, msg)
		return 0, nil, errors.New(msg)
	}
	if f.err != nil {
		return 0, nil, f.err
	}
	return f.status, []byte(f.body), nil
}

var _ env = (*fake)(nil)

// servedUser is a user as answered.
type servedUser struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
}

func put(t *testing.T, e *fake, body string) (svcenvtest.Recorder, servedUser) {
	t.Helper()
	var w svcenvtest.Recorder
	if err := putUser(e, &w, []byte(body)); err != nil {
		t.Fatalf("POST %s: %v", body, err)
	}
	var u servedUser
	if w.Status < 300 {
		if err := json.Unmarshal(w.Body, &u); err != nil {
			t.Fatalf("POST %s: %v: %s", body, err, w.Body)
		}
	}
	return w, u
}

func TestPutUser(t *testing.T) {
	e := newFake()
	w, u := put(t, e, `{"id":"kim","name":"Kim"}`)
	if w.Status != 201 || w.Headers["location"] != "/users/kim" {
		t.Fatalf("create: status %d headers %v problem %q", w.Status, w.Headers, w.Detail)
	}
	created := "2026-01-02T03:04:05.000000000Z"
	if u != (servedUser{"kim", "Kim", created, created}) {
		t.Fatalf("created %+v", u)
	}
	if string(e.KV["user:kim"]) != string(w.Body) {
		t.Fatalf("stored %s, answered %s", e.KV["user:kim"], w.Body)
	}

	e.now = e.now.Add(time.Hour)
	w, u = put(t, e, `{"name":"Kim Lee","id":"kim","extra":[1,{"x":null}]}`)
	if w.Status != 200 || w.Headers["location"] != "" {
		t.Fatalf("update: status %d headers %v problem %q", w.Status, w.Headers, w.Detail)
	}
	if u != (servedUser{"kim", "Kim Lee", created, "2026-01-02T04:04:05.000000000Z"}) {
		t.Fatalf("updated %+v", u)
	}
	if len(e.KV) != 1 {
		t.Fatalf("keys %v", e.KV)
	}
}

func TestPutUserStoreFails(t *testing.T) {
	e := newFake()
	e.FailSet = errors.New("kv down")
	var w svcenvtest.Recorder
	if err := putUser(e, &w, []byte(`{"id":"kim","name":"Kim"}`)); err == nil || w.Status != 0 {
		t.Fatalf("err %v status %d", err, w.Status)
	}
	e.FailSet = nil
	e.KV["user:kim"] = []byte(`{"id":`)
	if err := putUser(e, &w, []byte(`{"id":"kim","name":"Kim"}`)); err == nil || !strings.Contains(err.Error(), "corrupt") || w.Status != 0 {
		t.Fatalf("corrupt record: err %v status %d", err, w.Status)
	}
}

func TestPutUserValidation(t *testing.T) {
	long := strings.Repeat("x", maxIDLen+1)
	tests := []struct {
		name, body string
		errs       []string
	}{
		{"empty object", `{}`, []string{"id is required", "name is required"}},
		{"null fields", `{"id":null,"name":null}`, []string{"id is required", "name is required"}},
		{"not strings", `{"id":7,"name":["Kim"]}`, []string{"id must be a string", "name must be a string"}},
		{"blank", `{"id":" \t","name":"  "}`, []string{"id must not be blank", "name must not be blank"}},
		{"long id", `{"id":"` + long + `","name":"Kim"}`, []string{"id is longer than 128 bytes"}},
		{"long name", `{"id":"kim","name":"` + strings.Repeat("é", maxNameLen/2+1) + `"}`, []string{"name is longer than 256 bytes"}},
		{"invalid UTF-8", "{\"id\":\"v\xff\",\"name\":\"K\\ud800\"}", []string{
			"id must be valid UTF-8 (no invalid bytes, no unpaired surrogate escapes)",
			"name must be valid UTF-8 (no invalid bytes, no unpaired surrogate escapes)"}},
		{"dot", `{"id":".","name":"Kim"}`, []string{`id must not be "." or ".."`}},
		{"dot dot", `{"id":"..","name":"Kim"}`, []string{`id must not be "." or ".."`}},
		{"not an object", `["kim"]`, []string{"body must be a JSON object"}},
		{"longest id and name", `{"id":"` + long[1:] + `","name":"` + strings.Repeat("é", maxNameLen/2) + `"}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newFake()
			w, _ := put(t, e, tt.body)
			if tt.errs == nil {
				if w.Status != 201 {
					t.Fatalf("status %d: %v", w.Status, w.Errs)
				}
				return
			}
			if w.Status != 400 || w.Title != "invalid user" || strings.Join(w.Errs, "|") != strings.Join(tt.errs, "|") {
				t.Fatalf("status %d title %q errs\n%q\nwant\n%q", w.Status, w.Title, w.Errs, tt.errs)
			}
			if w.Detail != strings.Join(tt.errs, "; ") || len(e.KV) != 0 {
				t.Fatalf("detail %q, stored %v", w.Detail, e.KV)
			}
		})
	}
}

func TestPutUserMalformed(t *testing.T) {
	for _, body := range []string{``, `{`, `{"id":"kim",}`, `{"id":"kim","name":"Kim"} x`, `nul`, `{"id":"kim","name":"Kim"`} {
		e := newFake()
		w, _ := put(t, e, body)
		if w.Status != 400 || !strings.Contains(w.Detail, "not valid JSON") || len(e.KV) != 0 {
			t.Fatalf("%q: status %d detail %q", body, w.Status, w.Detail)
		}
	}
}

func TestPutUserTooLarge(t *testing.T) {
	e := newFake()
	pad := strings.Repeat(" ", maxBodyBytes)
	w, _ := put(t, e, `{"id":"kim","name":"Kim"}`+pad)
	if w.Status != 413 || w.Title != "payload too large" || len(e.KV) != 0 {
		t.Fatalf("status %d title %q", w.Status, w.Title)
	}
	// At the bound it is taken.
	body := `{"id":"kim","name":"Kim"}`
	if w, _ := put(t, e, body+pad[len(body):]); w.Status != 201 {
		t.Fatalf("at the bound: status %d %q", w.Status, w.Detail)
	}
}

// TestUserIDsAreEscaped: ids holding key separators, escapes and path
// bytes are distinct users with keys of their own, and the Location of
// each is one escaped path segment.
func TestUserIDsAreEscaped(t *testing.T) {
	e := newFake()
	ids := []string{"kim", "...", ".a", "kim:0", "kim%3A0", "user:kim", "a/b", "a b", "é", "x?y#z", "a\r\nSet-Cookie: x", "*", ">"}
	for i, id := range ids {
		body, _ := json.Marshal(map[string]string{"id": id, "name": "n" + id})
		w, u := put(t, e, string(body))
		if w.Status != 201 || u.ID != id {
			t.Fatalf("%q: status %d user %+v", id, w.Status, u)
		}
		loc := w.Headers["location"]
		seg, ok := strings.CutPrefix(loc, "/users/")
		if !ok || seg == "" {
			t.Fatalf("%q: location %q", id, loc)
		}
		for _, c := range seg {
			if !(c == '%' || c == '-' || c == '.' || c == '_' || c == '~' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
				t.Fatalf("%q: location %q holds %q", id, loc, c)
			}
		}
		if len(e.KV) != i+1 {
			t.Fatalf("%q shares a key: %d keys after %d users", id, len(e.KV), i+1)
		}
		// Its key is the escaped one, which names it alone: a later key
		// "user:<id>:<more>" cannot be another user's record.
		key := guest.Key("user", id)
		if parts, err := guest.ParseKey(key); string(e.KV[key]) != string(w.Body) || err != nil || len(parts) != 2 || parts[1] != id {
			t.Fatalf("%q: not stored under %q (%q, %v)", id, key, parts, err)
		}
	}
	for _, id := range ids {
		var w svcenvtest.Recorder
		if err := getProfile(e, &w, id); err != nil || w.Status != 200 {
			t.Fatalf("GET %q: %v %d %q", id, err, w.Status, w.Detail)
		}
		var u servedUser
		if err := json.Unmarshal(w.Body, &u); err != nil || u.ID != id || u.Name != "n"+id {
			t.Fatalf("GET %q: %v %+v", id, err, u)
		}
	}
	if len(e.calls) != len(ids) || len(e.refused) != 0 {
		t.Fatalf("%d calls for %d profiles; refused: %q", len(e.calls), len(ids), e.refused)
	}
}

func TestPathEscape(t *testing.T) {
	for in, want := range map[string]string{
		"kim": "kim", "": "", "a/b": "a%2Fb", "a b": "a%20b", "%": "%25", "é": "%C3%A9", "x?y#z": "x%3Fy%23z",
		"a\r\n": "a%0D%0A", "~a-b_c.d": "~a-b_c.d",
	} {
		if got := pathEscape(in); got != want {
			t.Errorf("pathEscape(%q) = %q, want %q", in, got, want)
		}
	}
}
