package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/meshd/meshd/host/fault"
)

// TestAdminErrorsAreProblems: every error path of the listener answers
// problem+json with the status that says whose mistake it was.
func TestAdminErrorsAreProblems(t *testing.T) {
	s := start(t, Config{Addr: "127.0.0.1:0", Token: "s3cret"}, Source{})
	s.Handle("POST /v1/replay", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	addr := s.Addr()
	auth := map[string]string{"Authorization": "Bearer s3cret"}
	tests := []struct {
		name, method, path string
		header             map[string]string
		status             int
		allow              string
	}{
		{"no token", "GET", "/v1/services", nil, http.StatusUnauthorized, ""},
		{"wrong token", "GET", "/v1/services", map[string]string{"Authorization": "Bearer nope"}, http.StatusUnauthorized, ""},
		{"unknown path", "GET", "/v1/nope", auth, http.StatusNotFound, ""},
		{"wrong method", "DELETE", "/v1/services", auth, http.StatusMethodNotAllowed, "GET, HEAD"},
		{"wrong method on a mounted handler", "GET", "/v1/replay", auth, http.StatusMethodNotAllowed, "POST"},
		{"unknown job", "GET", "/v1/jobs/0123456789abcdef", auth, http.StatusNotFound, ""},
		{"job list with a wrong method", "POST", "/v1/jobs", auth, http.StatusMethodNotAllowed, "GET, HEAD"},
		{"foreign origin", "GET", "/v1/services", map[string]string{"Authorization": "Bearer s3cret", "Origin": "http://evil.example"}, http.StatusForbidden, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, body := send(t, addr, tt.method, tt.path, "", tt.header)
			doc := checkProblem(t, code, h, body, tt.status)
			if d, _ := doc["detail"].(string); d == "" {
				t.Fatalf("problem %v has no detail", doc)
			}
			if h.Get("Allow") != tt.allow {
				t.Fatalf("Allow %q, want %q", h.Get("Allow"), tt.allow)
			}
			if tt.status == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
	// What works still works.
	if code, _, body := send(t, addr, "GET", "/v1/jobs", "", auth); code != 200 || !strings.Contains(body, `"jobs"`) {
		t.Fatalf("GET /v1/jobs: %d %s", code, body)
	}
}

// TestWriteError: an error's fault.Kind chooses the status; an error of no
// kind is a fault (500); the detail is the message, bounded.
func TestWriteError(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		status     int
		retryAfter string
	}{
		{"unknown service", fault.New("nope", fault.NotFound, errors.New("not loaded")), 404, ""},
		{"bad body", fmt.Errorf("decoding: %w", fault.New("", fault.Invalid, errors.New("unexpected EOF"))), 400, ""},
		{"conflict", fault.New("order", fault.Conflict, ErrJobRunning), 409, ""},
		{"unavailable", fault.New("", fault.Unavailable, errors.New("NATS not connected")), 503, "1"},
		{"store refuses writes", fault.New("order", fault.StoreRefused, nil), 503, "5"},
		{"deadline", fmt.Errorf("listing consumers: %w", context.DeadlineExceeded), 504, ""},
		{"a fault", errors.New("reading the stream: broken pipe"), 500, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			WriteError(w, tt.err)
			doc := checkProblem(t, w.Code, w.Header(), w.Body.String(), tt.status)
			if doc["detail"] != tt.err.Error() || doc["title"] != Title(tt.status) {
				t.Fatalf("problem %v for %v", doc, tt.err)
			}
			if got := w.Header().Get("Retry-After"); got != tt.retryAfter {
				t.Fatalf("Retry-After %q, want %q", got, tt.retryAfter)
			}
			if StatusOf(tt.err) != tt.status {
				t.Fatalf("StatusOf = %d, want %d", StatusOf(tt.err), tt.status)
			}
		})
	}
	if StatusOf(nil) != 200 {
		t.Fatal("StatusOf(nil) is not 200")
	}

	w := httptest.NewRecorder()
	Problem(w, 400, "bad request", strings.Repeat("é", 2000))
	var doc map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if d := doc["detail"].(string); len(d) > maxDetailBytes+3 || !strings.HasSuffix(d, "...") || strings.ContainsRune(d, '\uFFFD') {
		t.Fatalf("detail of %d bytes not cut at a rune: %q", len(d), d[len(d)-10:])
	}
}
