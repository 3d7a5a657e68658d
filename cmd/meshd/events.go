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
	"strings"
	"time"
)

// meshd events talks to a running daemon through its admin listener
// (/v1/events/..., mounted by daemon.EventsHandler): the daemon owns the
// bus, the services and their stores, so replay runs the real handlers and
// redrive goes through the same bus that delivers.

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
  meshd events replay --service NAME [--admin ADDR]
  meshd events consumers [--admin ADDR]
The daemon's admin listener is used (--admin, default 127.0.0.1:8081; token from $MESHD_ADMIN_TOKEN).`)
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
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the daemon")
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
	base := *admin
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	q := url.Values{}
	if *service != "" {
		q.Set("service", *service)
	}
	for _, id := range ids {
		q.Add("id", id)
	}
	req, err := http.NewRequest(method, strings.TrimSuffix(base, "/")+path+"?"+q.Encode(), nil)
	if err != nil {
		fmt.Fprintln(stderr, "meshd events:", err)
		return 1
	}
	if tok := os.Getenv("MESHD_ADMIN_TOKEN"); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := (&http.Client{Timeout: *timeout}).Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "meshd events:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var pretty bytes.Buffer
	if json.Indent(&pretty, body, "", "  ") == nil {
		body = append(pretty.Bytes(), '\n')
	}
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "meshd events: %s: %s", resp.Status, body)
		return 1
	}
	_, _ = stdout.Write(body)
	return 0
}
