package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// meshd events talks to a running daemon through its admin listener
// (/v1/events/..., mounted by daemon.EventsHandler): the daemon owns the
// bus, the services and their stores, so replay runs the real handlers and
// redrive goes through the same bus that delivers. A replay is a job of the
// daemon's (GET /v1/jobs/{id}): the command follows it, and the replay
// goes on when the command is interrupted.

func init() {
	commands["events"] = command{
		usage:   "events dlq list|redrive | replay | consumers",
		summary: "dead letters, redrive, read-model replay (via a running daemon's admin API)",
		run:     runEvents,
	}
}

func eventsUsage(w io.Writer) {
	fmt.Fprintln(w, `usage:
  meshd events dlq list --service NAME [--admin ADDR]
  meshd events dlq redrive --service NAME [--id EVENT_ID]... [--admin ADDR]
  meshd events replay --service NAME [--admin ADDR] [--timeout D]
  meshd events consumers [--admin ADDR]
The daemon's admin listener is used (--admin, default 127.0.0.1:8081; token from $MESHD_ADMIN_TOKEN).
replay starts a job in the daemon (or follows the one already running for
the service) and waits for it, at most --timeout (default 5m): it prints the
job and exits 1 if the job failed or is still running then (it goes on).`)
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func runEvents(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		eventsUsage(stderr)
		return 2
	}
	var method, path string
	sub := args[0]
	args = args[1:]
	switch sub {
	case "dlq":
		if len(args) == 0 {
			eventsUsage(stderr)
			return 2
		}
		switch args[0] {
		case "list":
			method, path = http.MethodGet, "/v1/events/dlq"
		case "redrive":
			method, path = http.MethodPost, "/v1/events/dlq/redrive"
		default:
			eventsUsage(stderr)
			return 2
		}
		sub += " " + args[0]
		args = args[1:]
	case "replay":
		method, path = http.MethodPost, "/v1/events/replay"
	case "consumers":
		method, path = http.MethodGet, "/v1/events/consumers"
	case "-h", "--help", "help":
		eventsUsage(stdout)
		return 0
	default:
		eventsUsage(stderr)
		return 2
	}
	fs := flag.NewFlagSet("meshd events "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", "127.0.0.1:8081", "the daemon's admin listener (host:port or URL)")
	service := fs.String("service", "", "service name")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the daemon (replay: for its job to finish)")
	var ids multi
	if sub == "dlq redrive" {
		fs.Var(&ids, "id", "event id to redrive (repeatable; default all)")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if sub != "consumers" && *service == "" {
		fmt.Fprintln(stderr, "meshd events: --service is required")
		return 2
	}
	ac := newAdminClient(*admin, *timeout)
	q := url.Values{}
	if *service != "" {
		q.Set("service", *service)
	}
	for _, id := range ids {
		q.Add("id", id)
	}
	status, h, body, err := ac.do(method, path+"?"+q.Encode())
	if err != nil {
		fmt.Fprintf(stderr, "meshd events %s: %v\n", sub, err)
		return 1
	}
	if sub == "replay" {
		return followReplay(ac, status, h, body, *timeout, stdout, stderr)
	}
	if status != http.StatusOK {
		fmt.Fprintf(stderr, "meshd events %s: %s\n", sub, problemText(status, body))
		return 1
	}
	_, _ = stdout.Write(indent(body))
	return 0
}

// jobPollInterval is how often meshd events replay looks at its job.
var jobPollInterval = 250 * time.Millisecond

// followReplay follows the job a POST /v1/events/replay answered with
// (202, or 409 naming the replay already running for the service) until
// it is no longer running or wait passes, and prints it: 0 when it
// succeeded, 1 when it failed, is still running at the end of wait, or was
// never started.
func followReplay(ac *adminClient, status int, h http.Header, body []byte, wait time.Duration, stdout, stderr io.Writer) int {
	var job struct {
		ID    string `json:"id"`
		Job   string `json:"job"` // a 409 problem's running job
		State string `json:"state"`
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &job)
	switch {
	case status == http.StatusAccepted && job.ID != "":
	case status == http.StatusConflict && job.Job != "":
		job.ID = job.Job
		fmt.Fprintf(stderr, "meshd events replay: a replay of the service is already running (job %s); following it\n", clean(job.ID, 64))
	default:
		fmt.Fprintf(stderr, "meshd events replay: %s\n", problemText(status, body))
		return 1
	}
	path := "/v1/jobs/" + url.PathEscape(job.ID)
	deadline := time.Now().Add(wait)
	for {
		status, _, body, err := ac.do(http.MethodGet, path)
		switch {
		case err != nil:
			fmt.Fprintf(stderr, "meshd events replay: following job %s: %v\n", clean(job.ID, 64), err)
			return 1
		case status != http.StatusOK:
			fmt.Fprintf(stderr, "meshd events replay: following job %s: %s\n", clean(job.ID, 64), problemText(status, body))
			return 1
		}
		job.State, job.Error = "", ""
		if err := json.Unmarshal(body, &job); err != nil {
			fmt.Fprintf(stderr, "meshd events replay: job %s: %v\n", clean(job.ID, 64), err)
			return 1
		}
		if job.State != "running" {
			_, _ = stdout.Write(indent(body))
			if job.State != "succeeded" {
				fmt.Fprintf(stderr, "meshd events replay: job %s %s: %s\n", clean(job.ID, 64), clean(job.State, 32), clean(job.Error, 4096))
				return 1
			}
			return 0
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(stderr, "meshd events replay: job %s still running after %s; it goes on in the daemon (GET %s)\n", clean(job.ID, 64), wait, path)
			return 1
		}
		time.Sleep(jobPollInterval)
	}
}

// adminClient sends requests to a daemon's admin listener.
type adminClient struct {
	base  string
	token string
	http  *http.Client
}

// newAdminClient returns a client of the admin listener at addr (host:port
// or URL), with the token of $MESHD_ADMIN_TOKEN; each request is bounded by
// timeout.
func newAdminClient(addr string, timeout time.Duration) *adminClient {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &adminClient{base: strings.TrimSuffix(addr, "/"), token: os.Getenv("MESHD_ADMIN_TOKEN"), http: &http.Client{Timeout: timeout}}
}

// maxAdminBody bounds what is read of an admin answer.
const maxAdminBody = 64 << 20

// do sends a request without a body to path (with its query) and returns
// the answer.
func (ac *adminClient) do(method, path string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(method, ac.base+path, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	if ac.token != "" {
		req.Header.Set("Authorization", "Bearer "+ac.token)
	}
	resp, err := ac.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminBody))
	return resp.StatusCode, resp.Header, body, err
}

// indent is body indented when it is JSON, with a final newline.
func indent(body []byte) []byte {
	var pretty bytes.Buffer
	if json.Indent(&pretty, body, "", "  ") == nil {
		return append(pretty.Bytes(), '\n')
	}
	return body
}

// problemText is an error answer as one line: the status, and the title
// and detail of a problem document (or the start of any other body),
// bounded and with control characters escaped.
func problemText(status int, body []byte) string {
	var p struct{ Title, Detail string }
	if json.Unmarshal(body, &p) == nil && (p.Title != "" || p.Detail != "") {
		return fmt.Sprintf("%d %s: %s", status, clean(p.Title, 200), clean(p.Detail, 1024))
	}
	return fmt.Sprintf("%d %s: %s", status, http.StatusText(status), clean(string(body), 1024))
}

// clean bounds s to n bytes and escapes what a terminal would interpret
// (control characters, invalid UTF-8) Go-style.
func clean(s string, n int) string {
	cut := len(s) > n
	if cut {
		s = s[:n]
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case unicode.IsControl(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	if cut {
		b.WriteString("...")
	}
	return b.String()
}
