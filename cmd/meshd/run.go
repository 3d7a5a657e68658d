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
	// The collector is held off for the start (holdGC), so hugeStartHeap's
	// allocation starts no cycle and its one forced collection is the only
	// one until the daemon serves.
	restoreGC := holdGC()
	defer restoreGC()
	hugeStartHeap()
	cfg := daemon.Default()
	fs := flag.NewFlagSet("meshd run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.PluginDir, "plugins", cfg.PluginDir, "directory of service modules (<name>.wasm) and their grants (<name>.toml)")
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory: compilation cache and the JetStream store")
	fs.StringVar(&cfg.HTTPAddr, "http", cfg.HTTPAddr, "gateway listen address")
	fs.StringVar(&cfg.Node, "node", cfg.Node, "this node's name in the registry and the mesh: unique among the nodes and stable across restarts (letters, digits, '.', '_', '-'); a start under the name of a live node is refused")
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "use an external NATS server or cluster at this URL (comma-separated for several) instead of the embedded one; the node joins the mesh of every meshd on it")
	fs.StringVar(&cfg.NATSListen, "nats-listen", "", "let the embedded NATS server accept clients on this address (default: in-process only); needs --nats-user and --nats-password-file or --nats-nkey-file, and beyond loopback --nats-tls-cert/--nats-tls-key or --nats-plaintext")
	var natsFiles natsFlags
	defineNATSFlags(fs, &cfg, &natsFiles)
	var clusterSettings clusterFlags
	defineClusterFlags(fs, &cfg, &clusterSettings)
	fs.StringVar(&cfg.Sync, "sync", "", `JetStream fsync policy: "lazy" (the default: the OS flushes) or "always" (fsync every write)`)
	fs.DurationVar(&cfg.Events.MaxAge, "events-max-age", 0, "keep events at most this long (0: no age limit); replay rebuilds only from what is kept")
	fs.Int64Var(&cfg.Events.MaxBytes, "events-max-bytes", 0, "keep at most this many bytes of events, dropping the oldest (0: no size limit)")
	fs.IntVar(&cfg.Events.MaxDeliver, "events-max-attempts", 0, "deliveries of an event before it is dead-lettered (0: 5); a service's [events] max_attempts overrides it")
	fs.DurationVar(&cfg.Module.CallTimeout, "call-timeout", cfg.Module.CallTimeout, "deadline of one module invocation")
	fs.DurationVar(&cfg.Module.IdleRelease, "idle-release", cfg.Module.IdleRelease, "close a service's instances and release its code from memory after this long without a call (0: never)")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout", cfg.RequestTimeout, "deadline of one HTTP request")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", cfg.DrainTimeout, "how long shutdown waits for in-flight work")
	fs.Int64Var(&cfg.MaxBodyBytes, "max-body", cfg.MaxBodyBytes, "largest request body in bytes (413 past it)")
	memPages := fs.Uint("memory-pages", uint(cfg.Module.MemoryLimitPages), "memory cap per instance in 64 KiB pages")
	fs.IntVar(&cfg.Module.PoolMin, "pool-min", cfg.Module.PoolMin, "warm instances per service")
	fs.IntVar(&cfg.Module.PoolMax, "pool-max", cfg.Module.PoolMax, "instances per service at most")
	fs.Int64Var(&cfg.KVCacheBytes, "kv-cache", cfg.KVCacheBytes, "bytes of each service's key-value store kept in memory for reads (0: none); only with the embedded NATS server and no --nats-listen")
	fs.StringVar(&cfg.AdminAddr, "admin", cfg.AdminAddr, `admin listener (metrics, health, services); "" or "off" disables it`)
	fs.StringVar(&cfg.AdminToken, "admin-token", "", "bearer token the admin listener requires; the process list shows it: prefer $"+adminTokenEnv+" or --admin-token-file")
	tokenFile := fs.String("admin-token-file", "", "file holding the bearer token the admin listener requires (one line)")
	allowedHosts := fs.String("admin-allowed-hosts", "", "comma-separated Host names the admin listener answers besides localhost, IP addresses and its own address: name (any port) or name:port; * for any")
	fs.BoolVar(&cfg.AdminPublic, "admin-public", false, "allow a non-loopback --admin address without a token")
	fs.BoolVar(&cfg.WasmDebugInfo, "wasm-debug-info", false, "keep the modules' DWARF line tables so trap stack traces name source lines (about 30 ms more per module load)")
	fs.BoolVar(&cfg.NoWatch, "no-watch", false, "do not reload modules dropped into the plugin directory (SIGHUP still reloads)")
	fs.DurationVar(&cfg.WatchQuiet, "watch-quiet", 0, "how long a dropped file must stay unchanged before it is loaded (default 250ms)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	configFile := fs.String("config", "", "TOML configuration file (see examples/gateway.toml); flags given override it")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "meshd run: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *configFile != "" {
		if err := loadConfigFile(*configFile, fs, args, &cfg, memPages, logFormat, logLevel); err != nil {
			fmt.Fprintf(stderr, "meshd run: bad configuration file:\n%v\n", err)
			return 2
		}
	}
	cfg.Module.MemoryLimitPages = uint32(*memPages)
	cfg.ConfigFile = *configFile
	cfg.AdminAllowedHosts = splitHosts(*allowedHosts)
	token, _, warnings, err := resolveAdminToken(fs, cfg.AdminToken, *tokenFile, os.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, "meshd run:", err)
		return 2
	}
	cfg.AdminToken = token
	natsWarnings, err := resolveNATSSecrets(&cfg, natsFiles, os.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, "meshd run:", err)
		return 2
	}
	warnings = append(warnings, natsWarnings...)
	clusterWarnings, err := resolveCluster(&cfg, clusterSettings, os.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, "meshd run:", err)
		return 2
	}
	warnings = append(warnings, clusterWarnings...)

	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "meshd run:", err)
		return 2
	}
	for _, w := range warnings {
		log.Warn(w)
	}
	d, err := daemon.New(cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "meshd run: bad configuration:\n%v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = d.Start(ctx)
	restoreGC()
	if err != nil {
		log.Error("start failed", slog.Any("error", err))
		return 1
	}
	hup := make(chan os.Signal, 1) // SIGHUP: rescan the plugin directory (hot reload)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for waiting := true; waiting; {
		select {
		case <-ctx.Done():
			waiting = false
		case <-hup:
			log.Info("SIGHUP: reloading the configuration file and the plugin directory")
			if err := d.Reload(ctx); err != nil {
				log.Error("reload: some of it was refused; what was serving keeps serving", slog.Any("error", err))
			}
		}
	}
	stop() // a second signal kills the process at once
	log.Info("shutting down: draining in-flight work", slog.Duration("timeout", cfg.DrainTimeout))
	if err := d.Shutdown(context.Background()); err != nil {
		log.Error("shutdown", slog.Any("error", err))
		return 1
	}
	log.Info("stopped")
	return 0
}
