package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/meshd/meshd/abi"
)

// Invoke runs entry on a pooled instance with c.Input as input. On success
// c.Code is the code the export returned and c.Output what it wrote. An
// error means the call did not complete: ErrBusy, ErrClosed, ErrTimeout,
// ErrTrap, ErrTooLarge, ErrNoEntry or the caller's context error; the
// instance that ran it, if any, has been thrown away.
func (m *Module) Invoke(ctx context.Context, e Entry, c *Call) error {
	if !m.Has(e) {
		return fmt.Errorf("%s: %s: %w", m.cfg.Name, e, ErrNoEntry)
	}
	if len(c.Input) > m.cfg.MaxInputBytes {
		return fmt.Errorf("%s: input of %d bytes passes the cap of %d: %w", m.cfg.Name, len(c.Input), m.cfg.MaxInputBytes, ErrTooLarge)
	}
	m.mu.RLock()
	if m.closed {
		m.mu.RUnlock()
		return fmt.Errorf("%s: %w", m.cfg.Name, ErrClosed)
	}
	m.inflight.Add(1)
	m.mu.RUnlock()
	defer m.inflight.Done()
	if m.asleep.Load() {
		m.wake()
	}

	inst, err := m.acquire(ctx)
	if err != nil {
		return err
	}
	m.calls.Add(1)
	c.Output = c.Output[:0]
	c.Code = abi.CodeOK
	c.lastErr = ""
	c.overflow = false
	c.maxOutput = m.cfg.MaxOutputBytes

	// The instance's reused call context (callctx.go): its deadline timer
	// armed for this call, the caller's cancellation watched when it can
	// come. An instance either of them stopped is never reused, even when
	// its call ended first.
	if err := ctx.Err(); err != nil {
		m.release(inst, false)
		return fmt.Errorf("%s: %s: stopped: %w", m.cfg.Name, e, err)
	}
	cc := inst.cc
	cc.parent, cc.call = ctx, c
	timeout, watch := m.cfg.CallTimeout, ctx
	if dc, ok := ctx.(deadlineContext); ok {
		// The deadline is the instance timer's when it comes first; the
		// context its parent's end would end is watched instead of it.
		if d, ok := ctx.Deadline(); ok {
			timeout = min(timeout, time.Until(d))
		}
		watch = dc.DeadlineParent()
	}
	cc.deadline = time.Now().Add(timeout)
	inst.timer.Reset(timeout)
	var unwatch func() bool
	caller, _ := watch.(*callCtx) // a guest calling this one through its host function
	if caller != nil && !caller.adopt(cc) {
		caller = nil
	}
	if caller == nil && watch.Done() != nil {
		unwatch = context.AfterFunc(watch, func() { cc.halt(ctx.Err()) })
	}
	inst.stack[0] = 0
	if e.takesInput() {
		inst.stack[0] = uint64(len(c.Input))
	}
	inst.ctx = cc // for inst.sleep
	err = inst.fn(e).CallWithStack(cc, inst.stack)
	inst.ctx = nil
	stopped := !inst.timer.Stop()
	if unwatch != nil && !unwatch() {
		stopped = true
	}
	if caller != nil {
		caller.disown() // stopped by it meanwhile: cc.Err() says so below
	}
	cc.parent, cc.call = context.Background(), nil
	inst.calls++
	switch {
	case err != nil:
		m.failures.Add(1)
		m.release(inst, true)
		return m.callError(ctx, e, err)
	case c.overflow:
		m.failures.Add(1)
		m.release(inst, true)
		return fmt.Errorf("%s: %s: output passes the cap of %d bytes: %w", m.cfg.Name, e, m.cfg.MaxOutputBytes, ErrOutputTooLarge)
	}
	c.Code = abi.Code(uint32(inst.stack[0]))
	m.release(inst, stopped || cc.Err() != nil) // stopped as it returned: done, but closed
	return nil
}

// deadlineContext is a context whose Done closes at its deadline or when
// DeadlineParent's does, for no other reason, and whose Err says which
// without Done having been asked for (host/mesh's call context). Invoke
// arms the instance's timer at that deadline and watches DeadlineParent,
// so that the context never has to make a timer of its own.
type deadlineContext interface {
	context.Context
	DeadlineParent() context.Context
}

// callError classifies a failed call.
func (m *Module) callError(ctx context.Context, e Entry, err error) error {
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded, sys.ExitCodeContextCanceled:
			if cerr := ctx.Err(); cerr != nil {
				return fmt.Errorf("%s: %s: stopped: %w", m.cfg.Name, e, cerr)
			}
			return &TimeoutError{Module: m.cfg.Name, Entry: e, After: m.cfg.CallTimeout}
		}
		return fmt.Errorf("%s: %s: guest exited with code %d: %w", m.cfg.Name, e, exit.ExitCode(), ErrTrap)
	}
	return fmt.Errorf("%s: %s: %w: %v", m.cfg.Name, e, ErrTrap, err)
}

// acquire takes an idle instance or, with a free slot, creates one,
// waiting at most AcquireTimeout for either. A slot is one of the PoolMax
// instances that may be alive (idle, busy or being made, closing ones
// apart): an idle instance holds its slot, a free one is a token.
func (m *Module) acquire(ctx context.Context) (*instance, error) {
	select {
	case inst := <-m.idle:
		return inst, nil
	default:
	}
	select {
	case <-m.tokens:
		return m.create()
	default:
	}
	m.waits.Add(1)
	t := time.NewTimer(m.cfg.AcquireTimeout)
	defer t.Stop()
	select {
	case inst := <-m.idle:
		return inst, nil
	case <-m.tokens:
	case <-t.C:
		m.busy.Add(1)
		return nil, fmt.Errorf("%s: %d instances busy for %s: %w", m.cfg.Name, m.cfg.PoolMax, m.cfg.AcquireTimeout, ErrBusy)
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: waiting for an instance: %w", m.cfg.Name, ctx.Err())
	case <-m.done:
		return nil, fmt.Errorf("%s: %w", m.cfg.Name, ErrClosed)
	}
	select { // a slot came; an instance that came as well is cheaper
	case inst := <-m.idle:
		m.tokens <- struct{}{}
		return inst, nil
	default:
	}
	return m.create()
}

// create makes an instance in a slot the caller holds, freeing the slot
// when it fails. The instance is made under a context of its own, not the
// caller's: a caller that is itself a guest's call carries its instance's
// call context, whose values would make the new instance's initialiser
// see the caller's call (its host functions would act on it) and make
// wazero watch the initialiser's context for the new instance's life
// (closing it when that context ends, right after the initialiser ran).
func (m *Module) create() (*instance, error) {
	inst, err := m.newInstance(context.Background())
	if err != nil {
		m.tokens <- struct{}{}
		m.failures.Add(1)
		return nil, fmt.Errorf("%s: %w: %w", m.cfg.Name, ErrTrap, err)
	}
	return inst, nil
}

// release returns inst to the pool with its slot or, when it failed or has
// served its share of calls, retires it.
func (m *Module) release(inst *instance, failed bool) {
	if !failed {
		m.trackMemory(inst)
	}
	switch {
	case failed:
		m.discarded.Add(1)
		m.retire(inst)
	case inst.calls >= m.cfg.MaxCallsPerInstance:
		m.recycled.Add(1)
		if inst.lm != nil && m.renewLater(inst) {
			return
		}
		m.retire(inst)
	default:
		m.toIdle(inst)
	}
}

// retire takes inst out of the pool off the caller's path: the closer
// closes it (unmapping its memory, closing its wazero module), and its
// slot goes to a replacement made in the background, so that the next
// call finds an instance ready rather than make it. A retired instance
// never serves again. At most maxClosing wait to be closed (their memory
// is still mapped): past that, the caller closes inst itself, which slows
// the calls that retire faster than the closer keeps up rather than let
// memory pile up.
func (m *Module) retire(inst *instance) {
	m.live.Add(-1)
	m.closing.Add(1)
	select {
	case m.retired <- inst:
	default:
		m.free(inst)
		m.closing.Add(-1)
	}
	m.mu.RLock()                    // Close waits for m.bg after setting closed
	if m.closed || m.bgCtx == nil { // closing, or still starting
		m.mu.RUnlock()
		m.tokens <- struct{}{}
		return
	}
	m.bg.Add(1)
	m.mu.RUnlock()
	go m.replacement()
}

// renewLater makes inst, which has served its share of calls, a fresh
// instance again off the caller's path (renew), in its slot; if that
// cannot be done, it is closed and a new one made in its place. False,
// doing nothing, while the module closes or starts.
func (m *Module) renewLater(inst *instance) bool {
	m.mu.RLock()
	if m.closed || m.bgCtx == nil {
		m.mu.RUnlock()
		return false
	}
	m.bg.Add(1)
	m.mu.RUnlock()
	go func() {
		defer m.bg.Done()
		if !m.renew(inst) {
			m.retire(inst)
			return
		}
		m.created.Add(1)
		m.restored.Add(1)
		m.renewed.Add(1)
		m.trackMemory(inst)
		m.toIdle(inst)
	}()
	return true
}

// closer closes retired instances until Close closes m.retired.
func (m *Module) closer() {
	defer close(m.closerDone)
	for inst := range m.retired {
		m.free(inst)
		m.closing.Add(-1)
	}
}

// replacement makes an instance in the slot of a retired one. One runs
// per retired instance, each in its slot: as many at once as calls would
// have made on their own, at most PoolMax.
func (m *Module) replacement() {
	defer m.bg.Done()
	inst, err := m.newInstance(m.bgCtx)
	if err != nil {
		m.tokens <- struct{}{}
		if m.bgCtx.Err() == nil {
			m.log.Warn("making an instance in place of a retired one failed", slog.String("module", m.cfg.Name), slog.Any("error", err))
		}
		return
	}
	m.toIdle(inst)
}

// toIdle puts inst, which holds a slot, among the idle instances.
func (m *Module) toIdle(inst *instance) {
	select {
	case m.idle <- inst:
	default: // cannot happen: the idle channel has a place per slot
		m.closeInstance(inst)
		m.tokens <- struct{}{}
	}
}

// wantRefill asks the refiller to bring the idle instances back up to
// PoolMin; it never blocks (one request pending is enough).
func (m *Module) wantRefill() {
	select {
	case m.refill <- struct{}{}:
	default:
	}
}

// refiller keeps PoolMin instances warm off the request path, when asked
// (wantRefill, after Start; a retired instance gets its own replacement),
// and puts the module to sleep once it has had no call for IdleRelease.
func (m *Module) refiller() {
	defer m.bg.Done()
	var tick <-chan time.Time
	if m.cfg.IdleRelease > 0 {
		// Checked twice per IdleRelease: a module sleeps between one and
		// one and a half IdleRelease after its last call began.
		t := time.NewTicker(m.cfg.IdleRelease / 2)
		defer t.Stop()
		tick = t.C
	}
	calls, quietSince := m.calls.Load(), time.Now()
	for {
		select {
		case <-m.done:
			return
		case now := <-tick:
			if c := m.calls.Load(); c != calls {
				calls, quietSince = c, now
			} else if !m.asleep.Load() && now.Sub(quietSince) >= m.cfg.IdleRelease {
				m.sleep()
			}
			continue
		case <-m.refill:
		}
		for len(m.idle) < m.cfg.PoolMin && !m.asleep.Load() {
			select {
			case <-m.done:
				return
			case <-m.tokens:
			default:
				goto next // every slot taken: calls create what they need
			}
			inst, err := m.newInstance(m.bgCtx)
			if err != nil {
				m.tokens <- struct{}{}
				m.log.Warn("warming an instance failed", slog.String("module", m.cfg.Name), slog.Any("error", err))
				break
			}
			m.toIdle(inst)
		}
	next:
	}
}

// sleep closes the module's idle instances and releases its machine code
// (when it is mapped from the cache file) and its snapshot's image from
// meshd's resident memory: an idle service costs its structures in the Go
// heap, and its image's pages in the page cache (reclaimable when the
// image is an unnamed file) or in shared memory (a memfd). Calls may run
// meanwhile: one that took an instance keeps it, and code they touch is
// faulted back. The next call wakes the module.
func (m *Module) sleep() {
	m.asleep.Store(true)
	closed := 0
	for len(m.idle) > 0 {
		select {
		case inst := <-m.idle:
			m.closeInstance(inst)
			m.tokens <- struct{}{}
			closed++
		default: // a call took it meanwhile
		}
	}
	if s := m.snap; s != nil {
		s.image.releasePages()
	}
	codeReleased, err := experimental.ReleaseCodePages(m.compiled)
	if err != nil {
		m.log.Warn("releasing an idle module's code failed", slog.String("module", m.cfg.Name), slog.Any("error", err))
	}
	m.released.Add(1)
	m.log.Debug("idle: instances closed, code released", slog.String("module", m.cfg.Name),
		slog.Int("instances", closed), slog.Bool("code", codeReleased && err == nil))
}

// wake brings a sleeping module back, on the first call after its sleep:
// its code mapped in at once (one system call, not a page fault per page
// the call touches) and PoolMin instances warmed again.
func (m *Module) wake() {
	if !m.asleep.CompareAndSwap(true, false) {
		return
	}
	if err := experimental.PopulateCodePages(m.compiled); err != nil {
		m.log.Debug("mapping a woken module's code in failed", slog.String("module", m.cfg.Name), slog.Any("error", err))
	}
	m.wantRefill()
}

// Close stops new calls, waits for in-flight calls until ctx is done (and,
// past that, up to CallTimeout more, since every call ends by its deadline;
// calls still running then leave the runtime open rather than have their
// memory unmapped), then closes every instance and the module's runtime.
// Close is idempotent.
func (m *Module) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.done)
	if m.bgStop != nil {
		m.bgStop() // an instance the refiller is warming stops now
	}
	m.mu.Unlock()

	drained := make(chan struct{})
	go func() { m.inflight.Wait(); close(drained) }()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = fmt.Errorf("%s: in-flight calls still running at close: %w", m.cfg.Name, ctx.Err())
		// Every call ends by its own deadline (CallTimeout). Wait for that:
		// closing the runtime frees the memory of running instances, which
		// the mmap allocator unmaps.
		select {
		case <-drained:
		case <-time.After(m.cfg.CallTimeout + time.Second):
			m.log.Error("calls still running past their deadline at close; the module's runtime is left open",
				slog.String("module", m.cfg.Name))
			return err
		}
	}
	m.bg.Wait()
	m.closeInstances(ctx)
	close(m.retired) // every call, the refiller and the replacer are done
	<-m.closerDone
	if cerr := m.rt.Close(context.WithoutCancel(ctx)); cerr != nil && err == nil {
		err = cerr
	}
	m.snap.close() // no instance is being made: every call and the refiller are done
	return err
}

func (m *Module) closeInstances(context.Context) {
	for {
		select {
		case inst := <-m.idle:
			m.closeInstance(inst)
		default:
			return
		}
	}
}
