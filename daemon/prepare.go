package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/daemon/cluster"
	"github.com/meshd/meshd/daemon/service"
	"github.com/meshd/meshd/host/kv"
	"github.com/nats-io/nats.go/jetstream"
)

// newBuilder makes the builder of the daemon's services and the stage of
// those prepared ahead (service.Builder, service.Stage), once the engine
// runs; NATS is reached only when a service links or opens its store.
func (d *Daemon) newBuilder() {
	d.builder = service.NewBuilder(d.engine,
		service.WithModuleDefaults(d.cfg.Module),
		service.WithLogger(d.log),
		service.WithMetrics(d.obs.metrics),
		service.WithDiscover(d.discover),
		service.WithNATS(func() jetstream.JetStream { return d.nats.JetStream() },
			func() int64 { return d.nats.Conn().MaxPayload() }),
		service.WithKVCache(d.kvCache),
		service.WithReplicas(func() int { return d.nats.Replicas(d.cfg.Replicas) }),
		service.WithSettle(func(ctx context.Context, what string, f func(context.Context) error) error {
			return cluster.Settle(ctx, d.settle(), d.log, what, f)
		}),
		service.WithCaller(d.calls.Call))
	d.stage = service.NewStage(d.builder, d.loadContext)
}

// compileDir starts compiling and linking every module of the plugin
// directory (service.Stage.CompileAll).
func (d *Daemon) compileDir(ctx context.Context) { d.stage.CompileAll(ctx, d.pluginPaths()) }

// prepareAhead prepares path's module from wasm (service.Stage.PrepareAhead):
// the slow part of a load, done before the load takes reload.mu, so that
// other services load meanwhile. The caller holds the service's lock.
func (d *Daemon) prepareAhead(ctx context.Context, path string, wasm []byte) {
	if !abi.ValidServiceName(serviceOf(path)) {
		return // loadModule refuses it, and says why
	}
	d.stage.PrepareAhead(ctx, path, wasm)
}

// dropPrepared closes whatever was compiled or prepared and not taken.
func (d *Daemon) dropPrepared() {
	if d.stage != nil {
		d.stage.Drop()
	}
}

// kvCache returns the cache the stores of service share across its
// versions (a store is opened per load, and an old version may still write
// while a new one serves), or nil when there is none: when it is turned
// off, or when NATS is reachable by others (an external server, the
// embedded one with a client port, or a cluster node), who could write the
// store behind it.
func (d *Daemon) kvCache(service string) *kv.Cache {
	if d.cfg.KVCacheBytes <= 0 || d.cfg.NATSURL != "" || d.cfg.NATSListen != "" || d.cfg.Cluster != nil {
		return nil
	}
	return loadOrNew(&d.kvCaches, service, func() *kv.Cache { return kv.NewCache(int(d.cfg.KVCacheBytes)) })
}

// pluginPaths lists the module files of the plugin directory (nil when it
// cannot be read; loadDir says why).
func (d *Daemon) pluginPaths() []string {
	entries, err := os.ReadDir(d.cfg.PluginDir)
	if err != nil {
		return nil
	}
	var paths []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".wasm") && abi.ValidServiceName(strings.TrimSuffix(e.Name(), ".wasm")) {
			paths = append(paths, filepath.Join(d.cfg.PluginDir, e.Name()))
		}
	}
	return paths
}
