package admin

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/meshd/meshd/host/fault"
)

// ProblemContentType is the media type of every error the admin API
// answers.
const ProblemContentType = "application/problem+json"

// maxDetailBytes bounds the detail of a problem: an error's message can
// carry what a client sent (a service name, an id).
const maxDetailBytes = 1024

// Problem writes an RFC 9457 problem document ("type" about:blank,
// "title", "status", "detail"): the one way the admin API, and the
// handlers mounted on it, answer an error. Use 4xx for the operator's
// mistakes (400 a bad request, 404 an unknown service or job, 405 a wrong
// method, 409 a conflict with work in progress) and 5xx for faults (500,
// 503 while something it needs is unavailable). detail is cut to 1 KiB.
func Problem(w http.ResponseWriter, status int, title, detail string) {
	writeProblem(w, status, title, detail, nil)
}

// WriteError answers err as a problem: the status is StatusOf(err), the
// title the status's text, the detail err's message (cut to 1 KiB). Wrap
// an error the operator caused in a *fault.Error of its kind
// (fault.NotFound, fault.Invalid, fault.Conflict, ...); any other error is
// a fault (500).
func WriteError(w http.ResponseWriter, err error) {
	fe := fault.Classify("", err)
	if d := fe.Retry(); d > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10))
	}
	status := fe.Status()
	writeProblem(w, status, Title(status), err.Error(), nil)
}

// StatusOf is the HTTP status an admin answer to err carries: its
// fault.Kind's (fault.Classify), so 404 for fault.NotFound, 400 for
// fault.Invalid, 409 for fault.Conflict, 503 for fault.Unavailable, 504
// for a deadline, and 500 for an error of no kind; 200 for nil.
func StatusOf(err error) int {
	if err == nil {
		return http.StatusOK
	}
	return fault.Classify("", err).Status()
}

// Title is the problem title of a status: its text in lower case ("not
// found").
func Title(status int) string {
	if t := http.StatusText(status); t != "" {
		return strings.ToLower(t)
	}
	return "error"
}

// writeProblem writes a problem document with the members of extra, which
// cannot replace the standard ones.
func writeProblem(w http.ResponseWriter, status int, title, detail string, extra map[string]any) {
	doc := make(map[string]any, 4+len(extra))
	for k, v := range extra {
		doc[k] = v
	}
	doc["type"] = "about:blank"
	doc["title"] = title
	doc["status"] = status
	if detail != "" {
		doc["detail"] = cut(detail, maxDetailBytes)
	}
	body, err := json.Marshal(doc)
	if err != nil { // an extra member json cannot encode
		body, _ = json.Marshal(map[string]any{"type": "about:blank", "title": title, "status": status, "detail": doc["detail"]})
	}
	body = append(body, '\n')
	h := w.Header()
	h.Del("Content-Encoding")
	h.Set("Content-Type", ProblemContentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// cut bounds s to n bytes, at a rune boundary, marking the cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && s[i]&0xC0 == 0x80 {
		i--
	}
	return s[:i] + "..."
}
