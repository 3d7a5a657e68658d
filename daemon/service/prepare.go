package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshd/meshd/abi"
	"github.com/meshd/meshd/config"
	"github.com/meshd/meshd/host"
	"github.com/meshd/meshd/host/kv"
	"github.com/meshd/meshd/host/metrics"
	"github.com/meshd/meshd/runtime"
	"github.com/nats-io/nats.go/jetstream"
)

// Builder prepares services: what every service of a daemon is built
// with.
type Builder struct {
	engine     *runtime.Engine
	defaults   runtime.ModuleConfig
	log        *slog.Logger
	metrics    *metrics.Metrics
	discover   func(name string) (abi.ServiceInfo, bool)
	jetStream  func() jetstream.JetStream
	maxPayload func() int64
	kvCache    func(service string) *kv.Cache
	replicas   func() int
	settle     func(ctx context.Context, what string, f func(context.Context) error) error
	call       host.Caller
}

// Option configures a Builder.
type Option func(*Builder)

// WithModuleDefaults sets the limits a service file's [limits] override.
func WithModuleDefaults(mc runtime.ModuleConfig) Option {
	return func(b *Builder) { b.defaults = mc }
}

// WithLogger sets the logger each service's logger derives from.
func WithLogger(l *slog.Logger) Option { return func(b *Builder) { b.log = l } }

// WithMetrics counts the services' key-value operations and dropped guest
// log lines in m (nil: metrics off).
func WithMetrics(m *metrics.Metrics) Option { return func(b *Builder) { b.metrics = m } }

// WithDiscover answers the discover host function.
func WithDiscover(fn func(name string) (abi.ServiceInfo, bool)) Option {
	return func(b *Builder) { b.discover = fn }
}

// WithNATS gives the services NATS: js opens their key-value buckets,
// maxPayload bounds what they publish. Both are called only once a
// service links or opens its store, so they may be set before NATS runs.
func WithNATS(js func() jetstream.JetStream, maxPayload func() int64) Option {
	return func(b *Builder) { b.jetStream, b.maxPayload = js, maxPayload }
}

// WithReplicas sets the copies a service's key-value bucket is opened
// with (kv.Options.Replicas); called when the store is opened.
func WithReplicas(fn func() int) Option { return func(b *Builder) { b.replicas = fn } }

// WithSettle retries the opening of a service's key-value bucket, and
// the making of each of its durable consumers, with settle (a cluster
// still forming, or a node rejoining one: cluster.Settle).
func WithSettle(fn func(ctx context.Context, what string, f func(context.Context) error) error) Option {
	return func(b *Builder) { b.settle = fn }
}

// WithKVCache sets the read cache a service's store uses (nil: none).
func WithKVCache(fn func(service string) *kv.Cache) Option {
	return func(b *Builder) { b.kvCache = fn }
}

// WithCaller makes the services' calls to other services (host.Env.Call;
// without it a call answers unavailable).
func WithCaller(fn host.Caller) Option { return func(b *Builder) { b.call = fn } }

// NewBuilder returns a builder compiling with engine.
func NewBuilder(engine *runtime.Engine, opts ...Option) *Builder {
	b := &Builder{engine: engine, log: slog.Default(),
		discover: func(string) (abi.ServiceInfo, bool) { return abi.ServiceInfo{}, false }}
	for _, o := range opts {
		o(b)
	}
	return b
}

// Prepared is a service built from a module file and its service file but
// not yet checked against the others or serving: the part of a load that
// takes time (compiling or reading the compiled module from the cache,
// opening the KV bucket, warming an instance) and touches nothing shared.
// It is built in steps: Compile and Link, which need neither NATS nor the
// bus, and OpenKV, which needs NATS.
type Prepared struct {
	Wasm    []byte
	Hash    [sha256.Size]byte
	Service *Service // nil when Err is set
	Err     error
	Began   time.Time
	TKV     time.Duration // opening the store took
	TModule time.Duration // compiling, linking and warming took
	Stat    os.FileInfo   // CompileFile's: the file as it was before it was read
}

// Prepare builds path's service from wasm, whose sha256 is hash. On
// failure nothing of it is left open.
func (b *Builder) Prepare(ctx context.Context, path string, wasm []byte, hash [sha256.Size]byte) *Prepared {
	p := b.Compile(ctx, path, wasm, hash)
	b.Link(ctx, p)
	b.OpenKV(ctx, p)
	return p
}

// Compile is the first step of Prepare: the service file is read and the
// module compiled and checked against the ABI, nothing linked or run.
func (b *Builder) Compile(ctx context.Context, path string, wasm []byte, hash [sha256.Size]byte) *Prepared {
	p := &Prepared{Wasm: wasm, Hash: hash, Began: time.Now()}
	base := filepath.Base(path)
	name := strings.TrimSuffix(base, ".wasm")
	sf, hasFile, err := ReadServiceFile(filepath.Join(filepath.Dir(path), name+".toml"))
	if err != nil {
		p.Err = err
		return p
	}
	log := b.log.With(slog.String("service", name))
	if !hasFile {
		log.Warn("no grants file; the service may serve routes but not publish, subscribe, keep state or discover",
			slog.String("expected", name+".toml"))
	}
	s := &Service{name: name, file: base, version: p.Version(), log: log, sf: sf, settle: b.settle}
	mc := sf.ModuleConfig(b.defaults)
	mc.Name = name
	mc.SHA256 = p.Hash
	mc.Logger = log
	mc.Stderr = NewLogWriter(log, b.guestLogDropped(name))
	mc.Stdout = mc.Stderr
	if s.mod, err = b.engine.Compile(ctx, wasm, mc); err != nil {
		p.Err = fmt.Errorf("%s: %w", base, err)
		return p
	}
	p.Service = s
	p.TModule = time.Since(p.Began)
	return p
}

// CompileFile reads path and compiles it (Compile), noting the file as it
// was before it was read; nil when it cannot be read.
func (b *Builder) CompileFile(ctx context.Context, path string) *Prepared {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	p := b.Compile(ctx, path, wasm, sha256.Sum256(wasm))
	p.Stat = fi
	return p
}

// Link links the host functions, warms an instance and describes the
// module: everything after compiling that needs no NATS, so the daemon
// does it while NATS starts. The instance's Env gets its KV store from
// OpenKV, before anything can invoke it (the initialiser and describe do
// not reach the store).
func (b *Builder) Link(ctx context.Context, p *Prepared) {
	if p.Err != nil {
		return
	}
	s := p.Service
	began := time.Now()
	s.env = &host.Env{Service: s.name, Grants: s.sf.HostGrants(), Log: s.log, Discover: b.discover,
		Config: s.sf.Config, Observe: b.observeKV(s.name), LogDropped: b.guestLogDropped(s.name),
		MaxPayload: b.maxPayload, Call: b.call}
	if err := s.mod.Start(ctx, host.Module(s.env)); err != nil { // closes the module
		p.Service, p.Err = nil, fmt.Errorf("%s: %w", s.file, err)
		return
	}
	p.TModule += time.Since(began)
}

// OpenKV opens the service's KV bucket, when it is granted one.
func (b *Builder) OpenKV(ctx context.Context, p *Prepared) {
	if p.Err != nil || !p.Service.env.Grants.KV {
		return
	}
	s := p.Service
	began := time.Now()
	var cache *kv.Cache
	if b.kvCache != nil {
		cache = b.kvCache(s.name)
	}
	opts := kv.Options{Cache: cache}
	if b.replicas != nil {
		opts.Replicas = b.replicas()
	}
	var store *kv.Store
	open := func(ctx context.Context) (err error) {
		store, err = kv.Open(ctx, b.jetStream(), s.name, opts)
		return err
	}
	if err := settleOr(ctx, b.settle, "key-value store of "+s.name, open); err != nil {
		_ = s.mod.Close(ctx)
		p.Service, p.Err = nil, fmt.Errorf("%s: key-value store: %w", s.file, err)
		return
	}
	s.store = store
	s.env.KV = kvAdapter{store}
	p.TKV = time.Since(began)
}

// Version is the version of what was prepared, before its declaration is
// read: the module hash.
func (p *Prepared) Version() string { return hex.EncodeToString(p.Hash[:6]) }

// Discard closes what was prepared.
func (p *Prepared) Discard() {
	if p.Service != nil {
		_ = p.Service.Close(context.Background())
	}
}

// observeKV is a service Env's KV hook: reads by the binding, writes when
// dispatch applies them. A missing key is not an error.
func (b *Builder) observeKV(service string) func(op string, err error) {
	m := b.metrics
	if m == nil {
		return nil
	}
	return func(op string, err error) { m.KV(service, op, err) }
}

// guestLogDropped is the metric hook of service's guest log limits, nil
// when metrics are off.
func (b *Builder) guestLogDropped(service string) func(n int) {
	m := b.metrics
	if m == nil {
		return nil
	}
	return func(n int) { m.GuestLogDropped(service, n) }
}

// ReadServiceFile reads the service file at path: a missing one is the
// zero file, with ok false.
func ReadServiceFile(path string) (sf config.Service, ok bool, err error) {
	f, err := config.LoadService(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return sf, false, nil
	case err != nil:
		return sf, false, err
	}
	return *f, true, nil
}

// kvAdapter maps the kv package's not-found error onto the binding's.
type kvAdapter struct{ s *kv.Store }

func (a kvAdapter) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := a.s.Get(ctx, key)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, host.ErrNotFound
	}
	return v, err
}

// Check builds path's service from wasm and the service file sf as Prepare
// does, for meshd check: with the builder's module defaults, one warm
// instance, no key-value store and a discover that finds nothing. The
// caller describes it (Describe) and closes it.
func (b *Builder) Check(ctx context.Context, path string, wasm []byte, sf config.Service) (*Service, error) {
	base := filepath.Base(path)
	name := strings.TrimSuffix(base, ".wasm")
	s := &Service{name: name, file: base, log: b.log, sf: sf}
	s.env = &host.Env{Service: name, Grants: sf.HostGrants(), Log: b.log, Discover: b.discover}
	mc := sf.ModuleConfig(b.defaults)
	mc.Name = name
	mc.Logger = b.log
	mc.PoolMin = 1
	var err error
	if s.mod, err = b.engine.Load(ctx, wasm, host.Module(s.env), mc); err != nil {
		return nil, fmt.Errorf("%s: %w", base, err)
	}
	s.version = s.mod.Hash()
	return s, nil
}
