package runtime

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/meshd/meshd/abi"
)

// Entry is an export a module can be invoked at.
type Entry int

// The entry points of ABI v1.
const (
	EntryDescribe Entry = iota // meshd_describe() -> code
	EntryHTTP                  // meshd_http(input_len) -> code
	EntryEvent                 // meshd_event(input_len) -> code
	numEntries
)

var entryExports = [numEntries]string{abi.ExportDescribe, abi.ExportHTTP, abi.ExportEvent}

func (e Entry) String() string {
	if e >= 0 && e < numEntries {
		return entryExports[e]
	}
	return fmt.Sprintf("Entry(%d)", int(e))
}

// takesInput reports whether the entry's single parameter is the input length.
func (e Entry) takesInput() bool { return e != EntryDescribe }

// Stats is a snapshot of a module's pool.
type Stats struct {
	Live int // instances alive (idle + busy), closing ones apart
	// Closing counts the retired instances the closer has yet to close:
	// their memory is still mapped (and in MemoryBytes).
	Closing   int
	Idle      int    // instances waiting for a call
	Calls     uint64 // calls started
	Failures  uint64 // calls that trapped, timed out or broke the ABI
	Busy      uint64 // calls refused because every instance stayed busy
	Created   uint64 // instances created
	Discarded uint64 // instances thrown away after a failure
	Recycled  uint64 // instances retired after MaxCallsPerInstance calls
	// Waits counts calls that found every instance busy and waited for one.
	Waits uint64
	// Restored counts the instances started from the module's snapshot
	// (included in Created).
	Restored uint64
	// Renewed counts the retired instances reset to the snapshot in place
	// and kept as fresh ones (included in Recycled, Created and Restored).
	Renewed uint64
	// Released counts the times the module, idle for IdleRelease, had its
	// instances closed and its code released; Asleep: it has not been
	// called since the last time.
	Released uint64
	Asleep   bool
	// SourceReleased: the module's function bodies and data segments were
	// dropped from memory once its snapshot was taken (every instance is
	// restored from it).
	SourceReleased bool
	// MemoryBytes is the linear memory of the live and closing instances,
	// as last seen when each was created or returned to the pool.
	MemoryBytes uint64
}

// Module is a loaded service module with its instance pool. Invoke is safe
// for concurrent use; each instance runs one call at a time.
type Module struct {
	cfg      ModuleConfig
	hash     string
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	modCfg   wazero.ModuleConfig
	// restoreCfg is modCfg without start functions: a restored instance's
	// initialiser has run (snapshot.go).
	restoreCfg wazero.ModuleConfig
	// snap is the snapshot instances after the first start from (nil:
	// none; snapInfo says why). Both are set by Start before any other
	// instance is made, and only read afterwards.
	snap     *snapshot
	snapInfo SnapshotInfo
	// snaps keeps snapshots across restarts under snapKey
	// (snapshot_cache.go); nil without a cache directory.
	snaps   *snapshotStore
	snapKey [32]byte
	// sourceReleased: the module's binary was let go of (Start); an
	// instance can only be restored from snap.
	sourceReleased bool
	has            [numEntries]bool
	hasInit        bool
	// importsWASI: the module imports from wasi_snapshot_preview1, which
	// Start links only then.
	importsWASI bool
	decl        []byte
	log         *slog.Logger

	// The pool's PoolMax slots (pool.go): each is a free token, an idle
	// instance, a busy one, or one being made in its place when one retires.
	tokens chan struct{}  // free slots
	idle   chan *instance // warm instances, each in its slot
	live   atomic.Int64
	refill chan struct{}
	// retired are the instances waiting for the closer (at most
	// maxClosing), closing counts them and the one it is closing.
	retired    chan *instance
	closing    atomic.Int64
	closerDone chan struct{}

	mu       sync.RWMutex
	closed   bool
	inflight sync.WaitGroup
	done     chan struct{}
	bg       sync.WaitGroup
	bgCtx    context.Context    // the refiller's: cancelled by Close, which stops an initialiser it runs
	bgStop   context.CancelFunc // nil until Start

	// asleep: idle for IdleRelease, its instances closed and its code
	// released (pool.go, sleep); the next call wakes it.
	asleep atomic.Bool
	// restoreFailed: an instance could not be restored and was initialised
	// instead (newInstance); the module then keeps its binary.
	restoreFailed atomic.Bool

	calls, failures, busy, created, discarded, recycled, waits, restored, renewed, released atomic.Uint64
	memBytes                                                                                atomic.Int64 // sum of instance.mem
}

type instance struct {
	mod api.Module
	// fns are the entries' function handles, each looked up at its first
	// call (fn): a handle costs wazero a call stack, and most instances
	// only ever run meshd_http.
	fns   [numEntries]api.Function
	stack []uint64
	calls int
	mem   uint64 // linear memory size last seen, counted in Module.memBytes
	// ctx is the context of the code running on the instance: the call's
	// (Invoke sets it before and clears it after each call) or, while it is
	// instantiated, newInstance's, under which its initialiser runs. Only
	// the goroutine running the instance touches it: sleep runs inside its
	// call (wazero calls host functions on the caller's goroutine), and the
	// instance passes between goroutines through the pool's channels.
	ctx context.Context
	// cc is the context of every call into the instance, and timer its
	// deadline, armed for each call (callctx.go).
	cc    *callCtx
	timer *time.Timer
	// lm is the linear memory a restored instance was given (nil: not
	// restored): renew resets it.
	lm experimental.LinearMemory
}

// sleep is the instance's WASI nanosleep, which wazero's poll_oneoff calls
// for a clock subscription (a guest's sleep, or a Go guest's idle
// scheduler). It waits ns nanoseconds, or until the context of the running
// call is done: then it stops the guest at once, with the exit code
// wazero's own termination check gives (deadline exceeded or cancelled),
// rather than let a guest sleep past its deadline while it holds its
// instance, a load or a shutdown.
func (inst *instance) sleep(ns int64) {
	ctx := inst.ctx
	if ctx == nil { // not running: cannot happen; never block
		return
	}
	if ctx.Err() == nil {
		if ns <= 0 {
			return
		}
		t := time.NewTimer(time.Duration(ns))
		select {
		case <-t.C:
			return
		case <-ctx.Done():
			t.Stop()
		}
	}
	code := sys.ExitCodeDeadlineExceeded
	if errors.Is(ctx.Err(), context.Canceled) {
		code = sys.ExitCodeContextCanceled
	}
	panic(sys.NewExitError(code)) // as proc_exit does: wazero returns it from the call
}

// Load compiles wasm into a new runtime, links host into it, checks the ABI,
// warms cfg.PoolMin instances and calls meshd_describe: Compile, then
// Start. Any failure returns an error wrapping ErrInvalidModule and
// releases everything.
func (e *Engine) Load(ctx context.Context, wasm []byte, host HostModule, cfg ModuleConfig) (*Module, error) {
	m, err := e.Compile(ctx, wasm, cfg)
	if err != nil {
		return nil, err
	}
	if err := m.Start(ctx, host); err != nil {
		return nil, err
	}
	return m, nil
}

// Compile compiles wasm into a new runtime (from the compilation cache when
// it holds the code) and checks its exports and imports against the ABI,
// without linking or running anything: it needs nothing from the host, so
// a daemon can compile while the rest of it starts. Start makes the Module
// usable; Close releases one that is not started. A failure returns an
// error wrapping ErrInvalidModule, or ErrInvalidConfig for a limit of cfg
// out of its range. The Module keeps slices of wasm (its function bodies
// and data), or of a copy with its tables bounded: do not modify wasm
// while it lives.
func (e *Engine) Compile(ctx context.Context, wasm []byte, cfg ModuleConfig) (_ *Module, err error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	sum := cfg.SHA256
	if sum == [sha256.Size]byte{} {
		sum = sha256.Sum256(wasm)
	}
	m := &Module{
		cfg:        cfg,
		hash:       hex.EncodeToString(sum[:6]),
		log:        cfg.Logger,
		tokens:     make(chan struct{}, cfg.PoolMax),
		idle:       make(chan *instance, cfg.PoolMax),
		refill:     make(chan struct{}, 1),
		retired:    make(chan *instance, maxClosing(cfg.PoolMax)),
		closerDone: make(chan struct{}),
		done:       make(chan struct{}),
	}
	key := codeKey(wasm, sum, e.debugInfo) // codekey.go
	if e.snaps != nil && !cfg.DisableSnapshot {
		m.snaps, m.snapKey = e.snaps, e.snaps.key(key, cfg)
	}
	go m.closer() // Close stops it
	for range cfg.PoolMax {
		m.tokens <- struct{}{}
	}
	m.rt = wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().
		WithCompilationCache(e.cache).
		WithCloseOnContextDone(true).
		WithDebugInfoEnabled(e.debugInfo).
		WithMemoryLimitPages(cfg.MemoryLimitPages))
	defer func() {
		if err != nil {
			close(m.retired) // no instance was made: the closer stops
			_ = m.rt.Close(ctx)
			err = fmt.Errorf("%s: %w: %w", cfg.Name, ErrInvalidModule, err)
		}
	}()
	// wazero keys its compilation cache by a digest it takes from us rather
	// than hashing megabytes again (our fork, MESHD-PATCH.md): the code's
	// (codeKey), the file's sha256 when nothing is left out of it.
	// Tables get bounded first (tables.go): the bytes compiled may be a
	// copy of wasm with a maximum given to an unbounded table. They are a
	// function of wasm alone, so they share wasm's digest.
	// Data segments close together are merged in the same copy
	// (datasegs.go): the same memory, far fewer segments.
	tables, terr := tableEdit(wasm, cfg.MaxTableEntries)
	if terr != nil && !errors.Is(terr, errMalformed) {
		return nil, terr
	}
	if terr == nil {
		wasm = applyEdits(wasm, tables, dataEdit(wasm))
	}
	if m.compiled, err = m.rt.CompileModule(e.compileContext(ctx, cfg, key), wasm); err != nil {
		return nil, fmt.Errorf("not a valid WebAssembly module: %w", err)
	}
	if terr != nil { // wazero read what tableEdit could not: refuse what is not checked
		return nil, fmt.Errorf("tables: %w", terr)
	}
	if err = m.validate(); err != nil {
		return nil, err
	}
	m.modCfg = wazero.NewModuleConfig().
		WithName("").
		WithStdout(cfg.Stdout).WithStderr(cfg.Stderr).
		WithSysWalltime().WithSysNanotime().
		// nanosleep: each instance's own (instance.sleep), set by newInstance
		WithRandSource(rand.Reader)
	m.restoreCfg = m.modCfg.WithStartFunctions()
	if m.hasInit {
		m.modCfg = m.modCfg.WithStartFunctions(abi.ExportInitialize)
	} else {
		m.modCfg = m.modCfg.WithStartFunctions()
	}
	return m, nil
}

// HostModuleConfig is the configuration to instantiate a host module
// with. A host module's own system context never reads randomness, but
// wazero gives one made with a default configuration a deterministic
// math/rand source of its own (5 KiB); naming a source avoids it.
func HostModuleConfig() wazero.ModuleConfig {
	return wazero.NewModuleConfig().WithRandSource(rand.Reader)
}

// Start links WASI (when the module imports any of it) and host into a
// compiled module's runtime, warms cfg.PoolMin instances (their
// initialiser runs) and calls meshd_describe.
// Call it once, after Compile. On failure the Module is closed and the
// error wraps ErrInvalidModule.
func (m *Module) Start(ctx context.Context, host HostModule) (err error) {
	defer func() {
		if err != nil {
			_ = m.Close(ctx)
			err = fmt.Errorf("%s: %w: %w", m.cfg.Name, ErrInvalidModule, err)
		}
	}()
	if m.importsWASI {
		wasi, werr := wasi_snapshot_preview1.NewBuilder(m.rt).Compile(ctx)
		if werr == nil {
			_, werr = m.rt.InstantiateModule(ctx, wasi, HostModuleConfig())
		}
		if werr != nil {
			return fmt.Errorf("linking WASI: %w", werr)
		}
	}
	if host != nil {
		if err = host(ctx, m.rt); err != nil {
			return fmt.Errorf("linking host functions: %w", err)
		}
	}
	first, err := m.firstInstance(ctx)
	if err != nil {
		return err
	}
	<-m.tokens // a slot for each instance made here (PoolMin <= PoolMax)
	m.idle <- first
	for range m.cfg.PoolMin - 1 {
		<-m.tokens
		inst, ierr := m.newInstance(ctx)
		if ierr != nil {
			m.tokens <- struct{}{}
			return ierr
		}
		m.idle <- inst
	}
	var c Call
	if err = m.Invoke(ctx, EntryDescribe, &c); err != nil {
		return fmt.Errorf("%s: %w", abi.ExportDescribe, err)
	}
	if c.Code != abi.CodeOK {
		return fmt.Errorf("%s returned %s: %s", abi.ExportDescribe, c.Code, c.Output)
	}
	m.decl = slices.Clone(c.Output)
	// Every later instance is restored from the snapshot: the function
	// bodies and data segments the module keeps (about 3 MB for a
	// Go-built one) are needed no more. Not without a snapshot, or with
	// one that failed to restore at least once (newInstance fell back to
	// initialising).
	if m.snap != nil && !m.restoreFailed.Load() {
		m.sourceReleased = experimental.ReleaseSource(m.compiled)
	}
	m.mu.Lock()
	m.bgCtx, m.bgStop = context.WithCancel(context.Background())
	m.mu.Unlock()
	m.bg.Add(1)
	go m.refiller()
	// An instance retired while Start ran (its describe call was its last)
	// only gave its slot back: the refiller makes it again now.
	m.wantRefill()
	return nil
}

// validate checks exports and imports against ABI v1.
func (m *Module) validate() error {
	var problems []string
	fns := m.compiled.ExportedFunctions()
	sig := func(name string, params, results []api.ValueType, required bool) bool {
		f, ok := fns[name]
		if !ok {
			if required {
				problems = append(problems, "missing export "+name)
			}
			return false
		}
		if !slices.Equal(f.ParamTypes(), params) || !slices.Equal(f.ResultTypes(), results) {
			problems = append(problems, fmt.Sprintf("export %s has signature %s, want %s",
				name, signature(f.ParamTypes(), f.ResultTypes()), signature(params, results)))
			return false
		}
		return true
	}
	i32 := []api.ValueType{api.ValueTypeI32}
	if _, ok := fns[abi.ExportMarker]; !ok {
		return fmt.Errorf("missing export %s: not a meshd ABI v1 module", abi.ExportMarker)
	}
	sig(abi.ExportMarker, nil, nil, true)
	m.has[EntryDescribe] = sig(abi.ExportDescribe, nil, i32, true)
	m.has[EntryHTTP] = sig(abi.ExportHTTP, i32, i32, false)
	m.has[EntryEvent] = sig(abi.ExportEvent, i32, i32, false)
	m.hasInit = sig(abi.ExportInitialize, nil, nil, false)
	if _, ok := m.compiled.ExportedMemories()[abi.ExportMemory]; !ok {
		problems = append(problems, "missing export "+abi.ExportMemory)
	}
	for _, f := range m.compiled.ImportedFunctions() {
		mod, name, _ := f.Import()
		m.importsWASI = m.importsWASI || mod == wasi_snapshot_preview1.ModuleName
		if mod != abi.ModuleName && mod != wasi_snapshot_preview1.ModuleName {
			problems = append(problems, fmt.Sprintf("imports %s.%s: only %q and %q are provided",
				mod, name, abi.ModuleName, wasi_snapshot_preview1.ModuleName))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func signature(params, results []api.ValueType) string {
	names := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return "(" + strings.Join(s, ", ") + ")"
	}
	return names(params) + " -> " + names(results)
}

// newInstance makes an instance ready to serve: restored from the
// module's snapshot, or, without one (or if restoring fails), instantiated
// with its initialiser run under the call timeout.
func (m *Module) newInstance(parent context.Context) (*instance, error) {
	if s := m.snap; s != nil {
		ctx, cancel := context.WithTimeout(m.cfg.instanceContext(parent), m.cfg.CallTimeout)
		inst := &instance{stack: make([]uint64, 1), ctx: ctx}
		mod, err := m.restore(ctx, s, inst)
		cancel()
		inst.ctx = nil
		if err == nil {
			m.restored.Add(1)
			return m.ready(inst, mod), nil
		}
		if parent.Err() != nil || m.sourceReleased {
			return nil, fmt.Errorf("restoring from the snapshot: %w", err)
		}
		m.restoreFailed.Store(true)
		m.log.Warn("restoring an instance from the snapshot failed; initialising it instead",
			slog.String("module", m.cfg.Name), slog.Any("error", err))
	}
	return m.instantiate(parent, nil)
}

// instantiate instantiates the module and runs its initialiser under the
// call timeout; with rc, the instance reads its random bytes through it.
func (m *Module) instantiate(parent context.Context, rc *randCounter) (*instance, error) {
	ctx, cancel := context.WithTimeout(m.cfg.instanceContext(parent), m.cfg.CallTimeout)
	defer cancel()
	if memoryAllocator != nil {
		ctx = experimental.WithMemoryAllocator(ctx, memoryAllocator)
	}
	inst := &instance{stack: make([]uint64, 1), ctx: ctx}
	cfg := m.modCfg.WithNanosleep(inst.sleep)
	if rc != nil {
		cfg = cfg.WithRandSource(rc)
	}
	mod, err := m.rt.InstantiateModule(ctx, m.compiled, cfg)
	inst.ctx = nil
	if err != nil {
		var exit *sys.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == sys.ExitCodeDeadlineExceeded && m.hasInit && parent.Err() == nil {
			return nil, fmt.Errorf("instantiating: %s stopped after %s: %w", abi.ExportInitialize, m.cfg.CallTimeout, ErrTimeout)
		}
		return nil, fmt.Errorf("instantiating: %w", err)
	}
	return m.ready(inst, mod), nil
}

// ready finishes inst around its module instance: export handles, call
// context, counts.
func (m *Module) ready(inst *instance, mod api.Module) *instance {
	inst.mod = mod
	cc := newCallCtx()
	inst.cc = cc
	inst.timer = time.AfterFunc(time.Hour, func() { cc.halt(context.DeadlineExceeded) })
	inst.timer.Stop()
	m.live.Add(1)
	m.created.Add(1)
	m.trackMemory(inst)
	return inst
}

// fn is the handle of entry e, which the module exports.
func (inst *instance) fn(e Entry) api.Function {
	f := inst.fns[e]
	if f == nil {
		f = inst.mod.ExportedFunction(entryExports[e])
		inst.fns[e] = f
	}
	return f
}

// closeInstance closes a live instance now.
func (m *Module) closeInstance(inst *instance) {
	m.live.Add(-1)
	m.free(inst)
}

// free closes inst, no longer counted live: its wazero module and its
// memory.
func (m *Module) free(inst *instance) {
	inst.timer.Stop()
	_ = inst.mod.Close(context.Background())
	m.memBytes.Add(-int64(inst.mem))
}

// maxClosing is how many retired instances of a pool of poolMax may wait
// for the closer: as many as the pool holds, so that at most twice its
// instances (and one the closer is closing) have their memory mapped.
func maxClosing(poolMax int) int { return poolMax }

// trackMemory records inst's current linear memory size in memBytes.
func (m *Module) trackMemory(inst *instance) {
	mem := inst.mod.Memory()
	if mem == nil {
		return
	}
	size := uint64(mem.Size())
	m.memBytes.Add(int64(size) - int64(inst.mem))
	inst.mem = size
}

// Name is the module's configured name.
func (m *Module) Name() string { return m.cfg.Name }

// Hash is a short content hash of the module's bytes (12 hex digits).
func (m *Module) Hash() string { return m.hash }

// Config is the module's effective configuration (defaults applied).
func (m *Module) Config() ModuleConfig { return m.cfg }

// Declaration is what meshd_describe wrote at load.
func (m *Module) Declaration() []byte { return m.decl }

// Has reports whether the module exports entry.
func (m *Module) Has(e Entry) bool { return e >= 0 && e < numEntries && m.has[e] }

// Stats returns a snapshot of the pool.
func (m *Module) Stats() Stats {
	return Stats{
		Live: int(m.live.Load()), Idle: len(m.idle), Closing: int(max(m.closing.Load(), 0)),
		Calls: m.calls.Load(), Failures: m.failures.Load(), Busy: m.busy.Load(),
		Created: m.created.Load(), Discarded: m.discarded.Load(), Recycled: m.recycled.Load(),
		Waits: m.waits.Load(), MemoryBytes: uint64(max(m.memBytes.Load(), 0)),
		Restored: m.restored.Load(), Renewed: m.renewed.Load(),
		Released: m.released.Load(), Asleep: m.asleep.Load(), SourceReleased: m.sourceReleased,
	}
}

// Snapshot says whether the module's instances start from a snapshot
// (set by Start).
func (m *Module) Snapshot() SnapshotInfo { return m.snapInfo }
