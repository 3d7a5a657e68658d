package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestEventsCommandUsesAdminAPI(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery+" "+r.Header.Get("Authorization"))
		if r.URL.Query().Get("service") == "missing" {
			w.WriteHeader(400)
			_, _ = w.Write([]byte(`{"error":"service missing is not loaded"}`))
			return
		}
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	t.Setenv("MESHD_ADMIN_TOKEN", "tok")
	for _, tc := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"dlq", "list", "--service", "payment"}, "GET /v1/events/dlq?service=payment Bearer tok", 0},
		{[]string{"dlq", "redrive", "--service", "payment", "--id", "a", "--id", "b"}, "POST /v1/events/dlq/redrive?id=a&id=b&service=payment Bearer tok", 0},
		{[]string{"replay", "--service", "order"}, "POST /v1/events/replay?service=order Bearer tok", 0},
		{[]string{"consumers"}, "GET /v1/events/consumers? Bearer tok", 0},
		{[]string{"replay", "--service", "missing"}, "POST /v1/events/replay?service=missing Bearer tok", 1},
	} {
		got = nil
		var out, errb bytes.Buffer
		code := run(append(append([]string{"events"}, tc.args...), "--admin", srv.URL), &out, &errb)
		if code != tc.code || len(got) != 1 || got[0] != tc.want {
			t.Fatalf("%v: code %d, requests %q, stderr %s", tc.args, code, got, errb.String())
		}
		if code == 0 && !strings.Contains(out.String(), `"ok": true`) {
			t.Fatalf("%v: output %q", tc.args, out.String())
		}
		if code != 0 && !strings.Contains(errb.String(), "not loaded") {
			t.Fatalf("%v: stderr %q", tc.args, errb.String())
		}
	}
	var errb bytes.Buffer
	if code := run([]string{"events", "replay"}, &bytes.Buffer{}, &errb); code != 2 || !strings.Contains(errb.String(), "--service") {
		t.Fatalf("missing --service: %d %s", code, errb.String())
	}
}
