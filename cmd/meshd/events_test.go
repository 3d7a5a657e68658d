package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAdmin is an admin listener with the events API and a few jobs: j-ok
// succeeds after two polls, j-busy (the replay already running for
// service busy) fails, j-slow never ends.
func fakeAdmin(t *testing.T) (*httptest.Server, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var got []string
	polls := map[string]int{}
	problem := func(w http.ResponseWriter, status int, job, detail string) {
		doc := map[string]any{"type": "about:blank", "title": strings.ToLower(http.StatusText(status)), "status": status, "detail": detail}
		if job != "" {
			doc["job"] = job
		}
		body, _ := json.Marshal(doc)
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery+" "+r.Header.Get("Authorization"))
		svc := r.URL.Query().Get("service")
		switch {
		case r.URL.Path == "/v1/events/replay" && svc == "order":
			w.Header().Set("Location", "/v1/jobs/j-ok")
			w.WriteHeader(202)
			_, _ = w.Write([]byte(`{"id":"j-ok","kind":"replay","service":"order","state":"running"}`))
		case r.URL.Path == "/v1/events/replay" && svc == "slow":
			w.WriteHeader(202)
			_, _ = w.Write([]byte(`{"id":"j-slow","kind":"replay","service":"slow","state":"running"}`))
		case r.URL.Path == "/v1/events/replay" && svc == "busy":
			problem(w, 409, "j-busy", "service busy: conflict: a job of this kind is already running")
		case svc == "missing":
			problem(w, 404, "", "service missing: not found: not loaded\x1b[31m")
		case r.URL.Path == "/v1/jobs/j-ok":
			polls["j-ok"]++
			if polls["j-ok"] < 3 {
				_, _ = w.Write([]byte(`{"id":"j-ok","state":"running"}`))
				return
			}
			_, _ = w.Write([]byte(`{"id":"j-ok","state":"succeeded","result":{"service":"order","dropped":7,"events":12,"writes":9}}`))
		case r.URL.Path == "/v1/jobs/j-busy":
			_, _ = w.Write([]byte(`{"id":"j-busy","state":"failed","error":"service busy: handler failed (internal error)"}`))
		case r.URL.Path == "/v1/jobs/j-slow":
			_, _ = w.Write([]byte(`{"id":"j-slow","state":"running"}`))
		case strings.HasPrefix(r.URL.Path, "/v1/events/"):
			_, _ = w.Write([]byte(`{"ok":true}`))
		default:
			problem(w, 404, "", "no such thing")
		}
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := got
		got = nil
		return out
	}
}

func TestEventsCommandUsesAdminAPI(t *testing.T) {
	srv, requests := fakeAdmin(t)
	t.Setenv("MESHD_ADMIN_TOKEN", "tok")
	for _, tc := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"dlq", "list", "--service", "payment"}, "GET /v1/events/dlq?service=payment Bearer tok", 0},
		{[]string{"dlq", "redrive", "--service", "payment", "--id", "a", "--id", "b"}, "POST /v1/events/dlq/redrive?id=a&id=b&service=payment Bearer tok", 0},
		{[]string{"consumers"}, "GET /v1/events/consumers? Bearer tok", 0},
		{[]string{"dlq", "list", "--service", "missing"}, "GET /v1/events/dlq?service=missing Bearer tok", 1},
	} {
		var out, errb bytes.Buffer
		code := run(append(append([]string{"events"}, tc.args...), "--admin", srv.URL), &out, &errb)
		got := requests()
		if code != tc.code || len(got) != 1 || got[0] != tc.want {
			t.Fatalf("%v: code %d, requests %q, stderr %s", tc.args, code, got, errb.String())
		}
		if code == 0 && !strings.Contains(out.String(), `"ok": true`) {
			t.Fatalf("%v: output %q", tc.args, out.String())
		}
		// A problem is printed as its status, title and detail, escaped.
		if code != 0 && !strings.Contains(errb.String(), `404 not found: service missing: not found: not loaded\x1b[31m`) {
			t.Fatalf("%v: stderr %q", tc.args, errb.String())
		}
	}
	var errb bytes.Buffer
	if code := run([]string{"events", "replay"}, &bytes.Buffer{}, &errb); code != 2 || !strings.Contains(errb.String(), "--service") {
		t.Fatalf("missing --service: %d %s", code, errb.String())
	}
}

// meshd events replay follows its job to the end and prints it; on 409 it
// follows the running job; a failed job, a job still running at --timeout
// and a refused start exit 1.
func TestEventsReplayFollowsTheJob(t *testing.T) {
	jobPollInterval = time.Millisecond
	t.Cleanup(func() { jobPollInterval = 250 * time.Millisecond })
	srv, requests := fakeAdmin(t)
	for _, tc := range []struct {
		service  string
		timeout  string
		code     int
		requests []string
		stdout   string // in stdout
		stderr   string // in stderr
	}{
		{"order", "10s", 0, []string{"POST /v1/events/replay?service=order", "GET /v1/jobs/j-ok?", "GET /v1/jobs/j-ok?", "GET /v1/jobs/j-ok?"},
			`"events": 12`, ""},
		{"busy", "10s", 1, []string{"POST /v1/events/replay?service=busy", "GET /v1/jobs/j-busy?"},
			`"state": "failed"`, "already running (job j-busy); following it"},
		{"missing", "10s", 1, []string{"POST /v1/events/replay?service=missing"},
			"", `404 not found: service missing: not found: not loaded\x1b[31m`},
		{"slow", "200ms", 1, nil, "", "job j-slow still running after 200ms"},
	} {
		var out, errb bytes.Buffer
		code := run([]string{"events", "replay", "--service", tc.service, "--admin", srv.URL, "--timeout", tc.timeout}, &out, &errb)
		got := requests()
		for i := range got {
			got[i] = strings.TrimSuffix(got[i], " ")
		}
		if code != tc.code || (tc.requests != nil && strings.Join(got, "|") != strings.Join(tc.requests, "|")) {
			t.Fatalf("%s: code %d (want %d), requests %q, stderr %s", tc.service, code, tc.code, got, errb.String())
		}
		if !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderr) {
			t.Fatalf("%s: stdout %q (want %q), stderr %q (want %q)", tc.service, out.String(), tc.stdout, errb.String(), tc.stderr)
		}
		if tc.service == "busy" && !strings.Contains(errb.String(), "job j-busy failed: service busy: handler failed") {
			t.Fatalf("failed job's error not printed: %q", errb.String())
		}
	}
}
