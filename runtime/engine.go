package runtime

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
)

// EngineConfig configures an Engine.
type EngineConfig struct {
	// CacheDir holds compiled code across restarts; empty keeps it in memory.
	CacheDir string
	// DebugInfo keeps the modules' DWARF line tables, so a trap's stack
	// trace names source files and lines. Decoding them costs about 30 ms
	// per load of a Go-built module, so the daemon leaves it off unless asked.
	DebugInfo bool
}

// Engine compiles and loads modules. It is safe for concurrent use.
type Engine struct {
	cache     wazero.CompilationCache
	debugInfo bool
	// snaps keeps the modules' snapshots beside the compiled code (nil
	// without a cache directory).
	snaps *snapshotStore
}

// NewEngine returns an Engine with its compilation cache.
func NewEngine(cfg EngineConfig) (*Engine, error) {
	if cfg.CacheDir == "" {
		return &Engine{cache: wazero.NewCompilationCache(), debugInfo: cfg.DebugInfo}, nil
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("runtime: compilation cache: %w", err)
	}
	c, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("runtime: compilation cache: %w", err)
	}
	return &Engine{cache: c, debugInfo: cfg.DebugInfo, snaps: newSnapshotStore(cfg.CacheDir)}, nil
}

// Close releases the compilation cache. Close every Module first.
func (e *Engine) Close(ctx context.Context) error { return e.cache.Close(ctx) }

// compileContext returns the context for wazero's CompileModule of the
// module cfg names, sum the digest of its code (codeKey). wazero takes it
// rather than hashing the bytes again (our fork, MESHD-PATCH.md), and
// reports to cfg.Logger, once per compilation, any failure of the
// compilation cache it worked around: a damaged entry (truncated,
// overwritten, unreadable) is a miss, deleted, the module compiled from its
// bytes and written back; a failed write costs a compilation next time.
// Neither fails the module.
func (e *Engine) compileContext(ctx context.Context, cfg ModuleConfig, sum [32]byte) context.Context {
	ctx = experimental.WithModuleDigest(ctx, sum)
	return experimental.WithCompilationCacheErrorHandler(ctx, func(err error) {
		cfg.Logger.Warn("compilation cache failed; the module was compiled from its bytes",
			slog.String("module", cfg.Name), slog.Any("error", err))
	})
}

// HostModule instantiates the host functions a module imports into r. It is
// called once, by Start, after the module is compiled.
type HostModule func(ctx context.Context, r wazero.Runtime) error

// ModuleConfig holds one module's name and limits. Zero values take the
// defaults in parentheses.
type ModuleConfig struct {
	// Name names the module in errors and logs.
	Name string
	// SHA256 is the sha256 of the module's bytes when the caller already
	// has it (the daemon hashes every file it reads); zero: Compile hashes
	// them. Hash is its first 6 bytes: the module's version. It must be the
	// sha256 of exactly the bytes compiled: the compilation cache's key,
	// the code's digest (codekey.go), is taken from it.
	SHA256 [32]byte
	// MemoryLimitPages caps each instance's memory in 64 KiB pages (1024;
	// at most MaxMemoryLimitPages, the 4 GiB of a 32-bit memory).
	MemoryLimitPages uint32
	// MaxTableEntries caps the entries the module's tables may hold, summed
	// over its tables (DefaultMaxTableEntries). An entry costs 8 bytes of Go
	// heap per instance. A table without a declared maximum cannot grow past
	// its initial size; see tables.go.
	MaxTableEntries uint32
	// MaxStackBytes caps the native call stack of each call into an
	// instance (DefaultMaxStackBytes; MinMaxStackBytes to MaxMaxStackBytes).
	// wazero keeps it in the Go heap, grown by doubling up to the cap; a
	// call that needs more traps with a stack overflow (ErrTrap). A
	// Go-built guest keeps its goroutine stacks in linear memory and needs
	// little of it; see DefaultMaxStackBytes.
	MaxStackBytes int
	// CallTimeout is each call's deadline (5s).
	CallTimeout time.Duration
	// MaxInputBytes and MaxOutputBytes cap a call's input and output (1 MiB).
	MaxInputBytes  int
	MaxOutputBytes int
	// PoolMin instances are kept warm (1); PoolMax run at most at once (4).
	PoolMin, PoolMax int
	// AcquireTimeout is how long a call waits for an instance (1s).
	AcquireTimeout time.Duration
	// MaxCallsPerInstance recycles an instance after that many calls (10000).
	MaxCallsPerInstance int
	// IdleRelease: after that long without a call, the module's idle
	// instances are closed, PoolMin notwithstanding, and its machine code,
	// when it runs from the compilation cache's file, leaves the process's
	// resident memory (it stays in the system's page cache). The next call
	// maps the code back and restores an instance from the snapshot, then
	// the pool warms PoolMin again. 0: never.
	IdleRelease time.Duration
	// DisableSnapshot starts every instance the ordinary way (instantiate,
	// run the initialiser) instead of from a snapshot of the first one
	// taken after its initialiser ran (snapshot.go). For a guest whose
	// initialiser keeps state that must differ per instance (a secret
	// drawn from random bytes, a start time) that meshd cannot detect.
	DisableSnapshot bool
	// Stdout and Stderr receive the guest's WASI output (discarded if nil).
	Stdout, Stderr io.Writer
	// Logger receives the pool's own messages.
	Logger *slog.Logger
}

// Bounds of ModuleConfig.
const (
	// MaxMemoryLimitPages is the largest MemoryLimitPages: 65536 pages of
	// 64 KiB, the 4 GiB a 32-bit memory can address.
	MaxMemoryLimitPages = 65536
	// DefaultMaxTableEntries is MaxTableEntries' default: 262144 entries,
	// 2 MiB of references per instance; a Go-built guest of 3 MB declares
	// about 6000.
	DefaultMaxTableEntries = 1 << 18
	// DefaultMaxStackBytes is MaxStackBytes' default: 1 MiB. meshd's
	// Go-built services use at most 18 KiB of it (the daemon's tests);
	// a Go function's frame takes about 40 bytes, so Go code may recurse
	// about 25,000 calls deep; a small Wasm function's, 16 bytes. A call
	// allocates at most 1 MiB of stack, less than 3 MiB over its growth
	// (under 2 MiB of it live at once), instead of the 84 MB (170 MB
	// allocated) wazero allows on its own.
	DefaultMaxStackBytes = 1 << 20
	// MinMaxStackBytes and MaxMaxStackBytes bound MaxStackBytes: 64 KiB,
	// a few times what a Go-built guest needs to start, and 64 MiB.
	MinMaxStackBytes = 64 << 10
	MaxMaxStackBytes = 64 << 20
)

// validate reports a limit out of its range.
func (c ModuleConfig) validate() error {
	if c.MemoryLimitPages > MaxMemoryLimitPages {
		return fmt.Errorf("runtime: %s: memory limit of %d pages is above the %d pages (4 GiB) a 32-bit memory can address: %w",
			c.Name, c.MemoryLimitPages, MaxMemoryLimitPages, ErrInvalidConfig)
	}
	if c.MaxStackBytes < MinMaxStackBytes || c.MaxStackBytes > MaxMaxStackBytes {
		return fmt.Errorf("runtime: %s: stack limit of %d bytes is outside %d to %d: %w",
			c.Name, c.MaxStackBytes, MinMaxStackBytes, MaxMaxStackBytes, ErrInvalidConfig)
	}
	return nil
}

// instanceContext returns the context for wazero's InstantiateModule of
// one of the module's instances: every call into the instance, its
// initialiser included, grows its native stack to cfg.MaxStackBytes at
// most (our fork's experimental.WithCallStackLimit, MESHD-PATCH.md).
func (c ModuleConfig) instanceContext(ctx context.Context) context.Context {
	return experimental.WithCallStackLimit(ctx, c.MaxStackBytes)
}

func (c ModuleConfig) withDefaults() ModuleConfig {
	if c.Name == "" {
		c.Name = "module"
	}
	if c.MemoryLimitPages == 0 {
		c.MemoryLimitPages = 1024
	}
	if c.MaxTableEntries == 0 {
		c.MaxTableEntries = DefaultMaxTableEntries
	}
	if c.MaxStackBytes == 0 {
		c.MaxStackBytes = DefaultMaxStackBytes
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 5 * time.Second
	}
	if c.MaxInputBytes <= 0 {
		c.MaxInputBytes = 1 << 20
	}
	if c.MaxOutputBytes <= 0 {
		c.MaxOutputBytes = 1 << 20
	}
	if c.PoolMax <= 0 {
		c.PoolMax = 4
	}
	if c.PoolMin <= 0 {
		c.PoolMin = 1
	}
	c.PoolMin = min(c.PoolMin, c.PoolMax)
	if c.AcquireTimeout <= 0 {
		c.AcquireTimeout = time.Second
	}
	if c.MaxCallsPerInstance <= 0 {
		c.MaxCallsPerInstance = 10000
	}
	if c.Stdout == nil {
		c.Stdout = io.Discard
	}
	if c.Stderr == nil {
		c.Stderr = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
