package testkit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// A shed request (503 with Retry-After) is sent again until answered
// otherwise; a 503 without Retry-After is an answer like any other.
func TestPostJSONRetriesShedRequests(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Content-Type") != "application/json":
			w.WriteHeader(415)
		case r.URL.Path == "/plain503":
			w.WriteHeader(503)
		case n.Add(1) <= 3:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(503)
		default:
			w.WriteHeader(201)
			w.Write([]byte(`{"id":"1"}`))
		}
	}))
	defer srv.Close()
	status, body, err := PostJSON(context.Background(), srv.Client(), srv.URL+"/orders", `{}`)
	if err != nil || status != 201 || string(body) != `{"id":"1"}` || n.Load() != 4 {
		t.Fatalf("%d %q %v after %d tries; want 201 on the 4th", status, body, err, n.Load())
	}
	if status, _, err := PostJSON(context.Background(), srv.Client(), srv.URL+"/plain503", `{}`); err != nil || status != 503 {
		t.Fatalf("a 503 without Retry-After: %d %v", status, err)
	}
}
