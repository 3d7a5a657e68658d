package config

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/meshd/meshd/host/bus"
	"github.com/meshd/meshd/host/gateway"
	"github.com/meshd/meshd/host/natsd"
	"github.com/meshd/meshd/host/remote"
	"github.com/meshd/meshd/runtime"
)

// Daemon is the configuration of a meshd daemon (daemon.Config embeds it,
// adding the admin listener's checks). DefaultDaemon fills it; Validate
// reports every problem at once, each naming its field by its flag.
type Daemon struct {
	PluginDir string // directory of <service>.wasm and <service>.toml files
	DataDir   string // compilation cache, JetStream store
	// CacheDir holds compiled modules; empty means DataDir/cache.
	CacheDir string
	// Events configures the event bus (zero fields take bus defaults).
	Events   bus.Config
	HTTPAddr string // gateway listener
	// Node is this node's name in the registry and, on a NATS others
	// share (NATSURL, Cluster), in the mesh: 1 to 128 letters, digits,
	// '.', '_' and '-', unique among the nodes (a start under the name of
	// a live node is refused) and stable across restarts. The host name
	// by default.
	Node string

	NATSURL    string // external NATS; empty = embedded server
	NATSListen string // embedded server's client listener; empty = in-process only
	Sync       string // JetStream fsync: "lazy" (or "", the default) or "always"
	// NATSAuth holds the credentials, grants and TLS clients of NATSListen
	// need and get, or what meshd presents to NATSURL (natsd.Auth). A
	// listener without credentials is refused.
	NATSAuth natsd.Auth
	// Cluster, when set, makes the embedded NATS server a node of a NATS
	// cluster (natsd.Cluster; its Node is Node). Other nodes then share the
	// streams and buckets, and serve and call services over it.
	Cluster *natsd.Cluster
	// Replicas is the copies of the event streams and key-value buckets
	// (natsd.Server.Replicas). 0 is automatic: with Cluster 3, at most
	// the nodes up at the start; with NATSURL the most, up to 3, that the
	// server's JetStream places at the start (1 for a standalone server);
	// 1 alone.
	Replicas int
	// KVCacheBytes is how much of each service's key-value store is kept
	// in memory for reads (kv.Cache); 0 turns it off. It is used only with
	// the embedded server and no client listener, where meshd is the
	// stores' only writer.
	KVCacheBytes int64

	// Module holds the default limits for every service; a service's
	// <name>.toml may override them.
	Module runtime.ModuleConfig

	RequestTimeout time.Duration // gateway deadline per request (504)
	MaxBodyBytes   int64         // gateway body cap (413)
	DrainTimeout   time.Duration // how long Shutdown waits for in-flight work

	// Gateway holds the gateway's policies: mounts, auth, rate limits.
	Gateway gateway.Policies
	// Server holds the HTTP server's timeouts and TLS.
	Server gateway.ServerConfig

	// AdminAddr is the admin listener (metrics, health, services view);
	// "" or "off" disables it. Loopback only unless AdminToken or
	// AdminPublic (see daemon/admin.go).
	AdminAddr   string
	AdminToken  string // bearer token the admin listener requires; empty = none
	AdminPublic bool   // allow a non-loopback AdminAddr without a token
	// AdminAllowedHosts are Host names the admin listener answers besides
	// its own (admin.Config.AllowedHosts).
	AdminAllowedHosts []string
	// NoMetrics turns metrics off (for measuring their cost).
	NoMetrics bool

	// NoWatch turns off hot reload by file drop (SIGHUP/Reload still work).
	NoWatch bool
	// ConfigFile is the TOML file the configuration came from (meshd run
	// --config), if any. Its gateway policies are applied again, all or
	// nothing, on Reload (SIGHUP) and when the file changes (unless
	// NoWatch); see ReloadConfig.
	ConfigFile string
	// WasmDebugInfo keeps DWARF line tables so trap stack traces name
	// source lines (slower loads; see runtime.EngineConfig.DebugInfo).
	WasmDebugInfo bool
	// WatchQuiet is how long a dropped file must stay unchanged before it
	// is loaded; zero means runtime.DefaultWatchQuiet.
	WatchQuiet time.Duration
}

// DefaultKVCacheBytes is the default Daemon.KVCacheBytes: 16 MiB per
// service.
const DefaultKVCacheBytes = 16 << 20

// DefaultAdminAddr is the default Daemon.AdminAddr.
const DefaultAdminAddr = "127.0.0.1:8081"

// DefaultDaemon returns the documented defaults.
func DefaultDaemon() Daemon {
	host, _ := os.Hostname()
	if host == "" {
		host = "meshd"
	}
	return Daemon{
		PluginDir:      "plugins",
		DataDir:        "data",
		HTTPAddr:       ":8080",
		Node:           host,
		RequestTimeout: 10 * time.Second,
		MaxBodyBytes:   1 << 20,
		DrainTimeout:   15 * time.Second,
		AdminAddr:      DefaultAdminAddr,
		KVCacheBytes:   DefaultKVCacheBytes,
		Module: runtime.ModuleConfig{
			MemoryLimitPages:    1024,
			CallTimeout:         5 * time.Second,
			MaxInputBytes:       1 << 20,
			MaxOutputBytes:      1 << 20,
			PoolMin:             1,
			PoolMax:             4,
			AcquireTimeout:      time.Second,
			MaxCallsPerInstance: 10000,
			IdleRelease:         DefaultIdleRelease,
		},
	}
}

// DefaultIdleRelease is how long a service goes without a call before its
// instances are closed and its code leaves resident memory.
const DefaultIdleRelease = 5 * time.Minute

// Validate reports every problem in c, each naming its field; the admin
// listener's fields are the daemon's to check (admin.Config.Validate).
// InMesh reports whether the node joins a mesh of meshd nodes under its
// name: a node of an embedded NATS cluster, or one on an operator's NATS
// (--nats-url). A node alone on its embedded server does not.
func (c *Daemon) InMesh() bool { return c.Cluster != nil || c.NATSURL != "" }

func (c *Daemon) Validate() error {
	var errs []error
	bad := func(field, why string) { errs = append(errs, fmt.Errorf("%s: %s", field, why)) }
	if c.PluginDir == "" {
		bad("plugins", "must be set")
	} else if fi, err := os.Stat(c.PluginDir); err != nil {
		bad("plugins", err.Error())
	} else if !fi.IsDir() {
		bad("plugins", c.PluginDir+" is not a directory")
	}
	if c.DataDir == "" {
		bad("data", "must be set")
	}
	if c.HTTPAddr == "" {
		bad("http", "must be set")
	}
	switch c.Sync {
	case "", "lazy", "always":
	default:
		bad("sync", fmt.Sprintf("%q is not \"lazy\" (the default) or \"always\"", c.Sync))
	}
	if c.Module.MemoryLimitPages == 0 || c.Module.MemoryLimitPages > 65536 {
		bad("memory-pages", "must be between 1 and 65536")
	}
	if c.Module.CallTimeout <= 0 {
		bad("call-timeout", "must be positive")
	}
	if !ValidIdleRelease(c.Module.IdleRelease) {
		bad("idle-release", fmt.Sprintf("must be 0 (never) or at least %v", MinIdleRelease))
	}
	if c.Module.PoolMax <= 0 || c.Module.PoolMin < 1 || c.Module.PoolMin > c.Module.PoolMax {
		bad("pool", "need 1 <= pool-min <= pool-max")
	}
	if c.RequestTimeout <= 0 {
		bad("request-timeout", "must be positive")
	}
	if c.MaxBodyBytes <= 0 {
		bad("max-body", "must be positive")
	}
	if c.KVCacheBytes < 0 {
		bad("kv-cache", "must not be negative")
	}
	if c.Replicas < 0 || c.Replicas > natsd.MaxReplicas {
		bad("replicas", fmt.Sprintf("%d: want 0 (automatic) to %d", c.Replicas, natsd.MaxReplicas))
	}
	if c.InMesh() {
		if err := (remote.DirectoryConfig{Node: c.Node}).Validate(); err != nil {
			shown := c.Node
			if len(shown) > 64 {
				shown = shown[:64] // strconv.Quote escapes a rune cut in two
			}
			bad("node", fmt.Sprintf("%s: a node of a mesh needs 1 to %d letters, digits, '.', '_' or '-' (the host name by default)", strconv.Quote(shown), remote.MaxNodeBytes))
		}
	}
	nc := natsd.Config{URL: c.NATSURL, Listen: c.NATSListen, Auth: c.NATSAuth, Cluster: c.Cluster, Name: c.Node}
	if err := nc.Validate(); err != nil {
		errs = append(errs, unjoin(err)...)
	}
	return errors.Join(errs...)
}
