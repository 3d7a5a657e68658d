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
	commands["check"] = command{usage: "check FILE.wasm [--config FILE.toml]",
		summary: "validate a module as the daemon would and print what it declares", run: runCheck}
}

// runCheck is `meshd check`: exit 0 when the module would be served, 1 when
// it would be refused, 2 on bad usage.
func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("meshd check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "", "grants file (default: <name>.toml beside the module, if any)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: meshd check FILE.wasm [--config FILE.toml]")
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
	if len(files) != 1 {
		fs.Usage()
		return 2
	}
	rep, err := daemon.Check(context.Background(), files[0], *config, nil)
	printReport(stdout, rep)
	if err != nil {
		fmt.Fprintf(stdout, "REFUSED: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, "OK: meshd would serve this module")
	return 0
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
