package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// ErrStoreRefused is wrapped by an Invoker's error when the service's
// effects could not be stored because the store refuses writes (its disk
// is full or failing). Answered 503 with Retry-After: StoreRetryAfter
// seconds.
var ErrStoreRefused = errors.New("gateway: store refuses writes")

// StoreRetryAfter is the Retry-After, in seconds, of a request refused
// because the store refuses writes: longer than a busy service's, since a
// full disk waits for someone to free space; short enough that clients see
// the recovery soon after (the store is probed at most once a second).
const StoreRetryAfter = 5

// storeRefused sets the Retry-After of ErrStoreRefused on w and returns
// the problem's status, title and detail.
func storeRefused(w http.ResponseWriter, service string) (status int, title, detail string) {
	w.Header().Set("Retry-After", strconv.Itoa(StoreRetryAfter))
	return http.StatusServiceUnavailable, "storage unavailable",
		fmt.Sprintf("service %s could not store the request's effects: the store refuses writes (disk full or failing); retry later", service)
}

// ProblemContentType is the media type of every error the gateway writes.
const ProblemContentType = "application/problem+json"

// WriteProblem writes an RFC 9457 problem document: "type" (about:blank),
// "title", "status", "detail", "request_id" (from the response's
// X-Request-Id header, when set), then the members of extra. extra cannot
// replace the standard members. It is the one place the gateway writes
// errors; the daemon's other HTTP errors should use it too.
func WriteProblem(w http.ResponseWriter, status int, title, detail string, extra map[string]any) {
	doc := make(map[string]any, 5+len(extra))
	for k, v := range extra {
		doc[k] = v
	}
	doc["type"] = "about:blank"
	doc["title"] = title
	doc["status"] = status
	if detail != "" {
		doc["detail"] = detail
	}
	if id := w.Header().Get(headerRequestID); id != "" {
		doc["request_id"] = id
	}
	body, err := json.Marshal(doc)
	if err != nil {
		// An extra member json cannot encode: drop the extras.
		delete(doc, "instance")
		for k := range extra {
			delete(doc, k)
		}
		body, _ = json.Marshal(doc)
	}
	body = append(body, '\n')
	h := w.Header()
	h.Del("Content-Length")
	h.Del("Content-Encoding")
	h["Content-Type"] = []string{ProblemContentType}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	h["Cache-Control"] = []string{"no-store"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	w.Write(body)
}

// problem is WriteProblem with "instance" set to the request path.
func problem(w http.ResponseWriter, r *http.Request, status int, title, detail string, extra map[string]any) {
	if extra == nil {
		extra = make(map[string]any, 1)
	}
	extra["instance"] = r.URL.Path
	WriteProblem(w, status, title, detail, extra)
}
