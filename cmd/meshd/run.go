package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshd/meshd/daemon"
)

func init() {
	commands["run"] = command{usage: "run [flags]", summary: "serve the modules of a plugin directory", run: runDaemon}
}

func runDaemon(args []string, _, stderr io.Writer) int {
	cfg := daemon.Default()
	fs := flag.NewFlagSet("meshd run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.PluginDir, "plugins", cfg.PluginDir, "directory of service modules (<name>.wasm) and their grants (<name>.toml)")
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory: compilation cache and the JetStream store")
	fs.StringVar(&cfg.HTTPAddr, "http", cfg.HTTPAddr, "gateway listen address")
	fs.StringVar(&cfg.Node, "node", cfg.Node, "this node's name in the registry")
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "use an external NATS server at this URL instead of the embedded one")
	fs.StringVar(&cfg.NATSListen, "nats-listen", "", "let the embedded NATS server accept clients on this address (default: in-process only)")
	fs.StringVar(&cfg.Sync, "sync", "", `JetStream fsync policy: "" (lazy, the default) or "always"`)
	fs.DurationVar(&cfg.Module.CallTimeout, "call-timeout", cfg.Module.CallTimeout, "deadline of one module invocation")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout", cfg.RequestTimeout, "deadline of one HTTP request")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", cfg.DrainTimeout, "how long shutdown waits for in-flight work")
	fs.Int64Var(&cfg.MaxBodyBytes, "max-body", cfg.MaxBodyBytes, "largest request body in bytes (413 past it)")
	memPages := fs.Uint("memory-pages", uint(cfg.Module.MemoryLimitPages), "memory cap per instance in 64 KiB pages")
	fs.IntVar(&cfg.Module.PoolMin, "pool-min", cfg.Module.PoolMin, "warm instances per service")
	fs.IntVar(&cfg.Module.PoolMax, "pool-max", cfg.Module.PoolMax, "instances per service at most")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "meshd run: unexpected arguments %q\n", fs.Args())
		return 2
	}
	cfg.Module.MemoryLimitPages = uint32(*memPages)

	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "meshd run:", err)
		return 2
	}
	d, err := daemon.New(cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "meshd run: bad configuration:\n%v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := d.Start(ctx); err != nil {
		log.Error("start failed", slog.Any("error", err))
		return 1
	}
	<-ctx.Done()
	stop() // a second signal kills the process at once
	log.Info("shutting down: draining in-flight work", slog.Duration("timeout", cfg.DrainTimeout))
	if err := d.Shutdown(context.Background()); err != nil {
		log.Error("shutdown", slog.Any("error", err))
		return 1
	}
	log.Info("stopped")
	return 0
}
