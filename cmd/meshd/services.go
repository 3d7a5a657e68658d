package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

// meshd services talks to a running daemon through its admin listener:
// GET /v1/services, POST /v1/services/{name}/drain and /undrain.

func init() {
	commands["services"] = command{
		usage:   "services list | drain NAME | undrain NAME",
		summary: "list services with their status and breakers; take one out of service or back (via a running daemon's admin API)",
		run:     runServices,
	}
}

func servicesUsage(w io.Writer) {
	fmt.Fprintln(w, `usage:
  meshd services list [--admin ADDR] [--json]
  meshd services drain NAME [--admin ADDR]
  meshd services undrain NAME [--admin ADDR]
drain: the service's routes answer 503 with Retry-After and calls to it fail fast (status OUT_OF_SERVICE); its events are still handled. undrain puts it back.
The daemon's admin listener is used (--admin, default 127.0.0.1:8081; token from $MESHD_ADMIN_TOKEN).`)
}

// serviceRow is what list reads of /v1/services.
type serviceRow struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	Status    string `json:"status"`
	LastError string `json:"last_error"`
	Breakers  []struct {
		Callee string `json:"callee"`
		State  string `json:"state"`
	} `json:"breakers"`
}

func runServices(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		servicesUsage(stderr)
		return 2
	}
	sub := args[0]
	args = args[1:]
	var name string
	switch sub {
	case "list":
	case "drain", "undrain":
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			fmt.Fprintf(stderr, "meshd services %s: a service NAME is required\n", sub)
			return 2
		}
		name, args = args[0], args[1:]
	case "-h", "--help", "help":
		servicesUsage(stdout)
		return 0
	default:
		servicesUsage(stderr)
		return 2
	}
	fs := flag.NewFlagSet("meshd services "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", "127.0.0.1:8081", "the daemon's admin listener (host:port or URL)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the daemon")
	asJSON := fs.Bool("json", false, "list: print /v1/services as the daemon answers it")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "meshd services %s: unexpected %q\n", sub, fs.Arg(0))
		return 2
	}
	method, path := http.MethodGet, "/v1/services"
	if name != "" {
		method, path = http.MethodPost, "/v1/services/"+url.PathEscape(name)+"/"+sub
	}
	status, _, body, err := newAdminClient(*admin, *timeout).do(method, path)
	if err != nil {
		fmt.Fprintln(stderr, "meshd services:", err)
		return 1
	}
	if status != http.StatusOK {
		fmt.Fprintf(stderr, "meshd services %s: %s\n", sub, problemText(status, body))
		return 1
	}
	if name != "" {
		var r struct {
			Service string `json:"service"`
			Status  string `json:"status"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			fmt.Fprintln(stderr, "meshd services: malformed answer:", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s %s: %s\n", r.Service, sub+"ed", r.Status)
		return 0
	}
	if *asJSON {
		_, _ = stdout.Write(body)
		return 0
	}
	var list struct {
		Services []serviceRow `json:"services"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		fmt.Fprintln(stderr, "meshd services: malformed answer:", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tSTATUS\tVERSION\tBREAKERS\tLAST ERROR")
	for _, s := range list.Services {
		var bs []string
		for _, b := range s.Breakers {
			bs = append(bs, b.Callee+":"+b.State)
		}
		breakers := strings.Join(bs, ",")
		if breakers == "" {
			breakers = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.Status, orDash(s.Version), breakers, orDash(oneLine(s.LastError, 80)))
	}
	_ = tw.Flush()
	return 0
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine is s on one line, cut to n bytes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
