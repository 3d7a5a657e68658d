package gateway

import (
	"encoding/json"
	"net/http"
	"strconv"
)

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
