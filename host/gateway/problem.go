package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/meshd/meshd/host/fault"
)

// faultProblem is the title and detail of the problem answering fe, a
// failure of service's route with the route's timeout: what a client may
// read, never fe's cause. err is the invoker's error (for the deadline it
// ran into).
func faultProblem(fe *fault.Error, service string, timeout time.Duration, err error) (title, detail string) {
	switch fe.Kind {
	case fault.Timeout:
		return "service timed out", fmt.Sprintf("service %s did not answer within %s", service, timeoutOf(err, timeout))
	case fault.Busy:
		return "service busy", fmt.Sprintf("service %s is at capacity; retry later", service)
	case fault.StoreRefused:
		return "storage unavailable", fmt.Sprintf("service %s could not store the request's effects: the store refuses writes (disk full or failing); retry later", service)
	case fault.Unavailable:
		return "service unavailable", fmt.Sprintf("service %s is not available; retry later", service)
	case fault.CircuitOpen:
		return "service unavailable", fmt.Sprintf("service %s depends on a service that keeps failing; retry later", service)
	case fault.TooLarge:
		return "payload too large", fmt.Sprintf("the request passed a size limit of service %s", service)
	case fault.Denied:
		return "forbidden", fmt.Sprintf("service %s refused the request: not granted", service)
	case fault.NotFound:
		return "not found", fmt.Sprintf("service %s found nothing to answer the request with", service)
	case fault.Invalid:
		return "bad request", fmt.Sprintf("service %s refused the request as invalid", service)
	case fault.Conflict:
		return "conflict", fmt.Sprintf("the request conflicts with work in progress in service %s; retry later", service)
	case fault.Overloaded:
		return "overloaded", ShedDetail
	case fault.Partial:
		return "partly applied", fmt.Sprintf("service %s stored the request's changes but could not publish its events; do not retry: read the result first", service)
	default:
		return "service failed", fmt.Sprintf("service %s failed to handle the request", service)
	}
}

// retryAfter sets Retry-After on w, in whole seconds rounded up, when d is
// positive.
func retryAfter(w http.ResponseWriter, d time.Duration) {
	if d <= 0 {
		return
	}
	w.Header().Set("Retry-After", strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10))
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
