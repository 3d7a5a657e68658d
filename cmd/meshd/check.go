package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/meshd/meshd/daemon"
)

func init() {
	commands["check"] = command{usage: "check FILE.wasm... [--config FILE.toml]",
		summary: "validate modules as the daemon would and print what they declare", run: runCheck}
}

// runCheck is `meshd check`: exit 0 when the modules would be served, 1 when
// one would be refused, 2 on bad usage. Several modules are also checked
// together, as the daemon does at start: a route of one service that
// overlaps a route of another refuses both.
func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("meshd check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "", "grants file (default: <name>.toml beside the module, if any)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: meshd check FILE.wasm... [--config FILE.toml]")
		fs.PrintDefaults()
	}
	// Accept the flag before or after the file.
	var files []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(files) == 0 || (len(files) > 1 && *config != "") {
		fs.Usage()
		return 2
	}
	code := 0
	var accepted []*daemon.CheckReport
	for i, file := range files {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		rep, err := daemon.Check(context.Background(), file, *config, nil)
		printReport(stdout, rep)
		if err != nil {
			fmt.Fprintf(stdout, "REFUSED: %v\n", err)
			code = 1
			continue
		}
		accepted = append(accepted, rep)
	}
	if err := daemon.CheckConflicts(accepted); err != nil {
		fmt.Fprintf(stdout, "\nREFUSED together (route conflicts):\n%v\n", err)
		return 1
	}
	switch {
	case code != 0:
	case len(files) == 1:
		fmt.Fprintln(stdout, "OK: meshd would serve this module")
	default:
		fmt.Fprintln(stdout, "\nOK: meshd would serve these modules together")
	}
	return code
}

func printReport(w io.Writer, rep *daemon.CheckReport) {
	if rep == nil {
		return
	}
	fmt.Fprintf(w, "service:  %s\n", rep.Service)
	fmt.Fprintf(w, "file:     %s\n", rep.File)
	grants := rep.GrantsFile
	if grants == "" {
		grants = "(none: no grants)"
	}
	fmt.Fprintf(w, "grants:   %s\n", grants)
	if rep.Version == "" {
		return
	}
	fmt.Fprintf(w, "version:  %s\n", rep.Version)
	fmt.Fprintf(w, "exports:  %s\n", strings.Join(rep.Exports, ", "))
	d := rep.Declaration
	fmt.Fprintf(w, "routes:   %d\n", len(d.Routes))
	for _, r := range d.Routes {
		fmt.Fprintf(w, "  %s %s\n", r.Method, r.Path)
	}
	fmt.Fprintf(w, "subscriptions: %d\n", len(d.Subscriptions))
	for _, s := range d.Subscriptions {
		fmt.Fprintf(w, "  %s\n", s.Type)
	}
	fmt.Fprintf(w, "publishes: %d\n", len(d.Publishes))
	for _, p := range d.Publishes {
		fmt.Fprintf(w, "  %s\n", p)
	}
	if len(rep.Needs) > 0 {
		fmt.Fprintln(w, "needs in [grants]:")
		for _, n := range rep.Needs {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
}
