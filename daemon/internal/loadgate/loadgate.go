// Package loadgate counts the loads in progress (module loads, file-change
// workers) so that shutdown can cancel them and wait for them, and refuses
// new ones once shutdown has begun.
package loadgate

import (
	"context"
	"sync"
)

// Gate admits loads until it is closed. The zero Gate is not usable: make
// one with New.
type Gate struct {
	closed func() bool // true once shutdown began: Begin refuses

	mu      sync.Mutex     // orders loading.Add after closed against Close's Wait
	loading sync.WaitGroup // loads in progress
	ctx     context.Context
	cancel  context.CancelFunc
}

// New returns an open gate; it refuses loads once closed reports true (the
// owner's shutdown flag) or Close was called.
func New(closed func() bool) *Gate {
	ctx, cancel := context.WithCancel(context.Background())
	return &Gate{closed: closed, ctx: ctx, cancel: cancel}
}

// Begin counts a load in progress, to be ended with Done; false (and
// nothing counted) once closed.
func (g *Gate) Begin() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ctx.Err() != nil || g.closed() {
		return false
	}
	g.loading.Add(1)
	return true
}

// Done ends a load Begin counted.
func (g *Gate) Done() { g.loading.Done() }

// Go runs fn in a goroutine counted as a load; false (fn not run) once
// closed.
func (g *Gate) Go(fn func()) bool {
	if !g.Begin() {
		return false
	}
	go func() {
		defer g.Done()
		fn()
	}()
	return true
}

// Context is ctx, also cancelled when the gate closes: loads run under it,
// so that an initialiser that sleeps or loops does not hold shutdown up to
// its timeout. Call stop when the load is done.
func (g *Gate) Context(ctx context.Context) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	unhook := context.AfterFunc(g.ctx, cancel)
	return ctx, func() { unhook(); cancel() }
}

// Cancel cancels the context of every load in progress and of every later
// one, and refuses new loads.
func (g *Gate) Cancel() { g.cancel() }

// Close cancels the loads (Cancel) and waits for every load counted to be
// done: a cancelled load ends soon (an initialiser stops at once), but
// compiling cannot be cancelled and is waited for. It may be called more
// than once.
func (g *Gate) Close() {
	g.cancel()
	// Every Begin either finished its Add before this point or sees the
	// gate closed: the empty critical section is the barrier.
	g.mu.Lock()
	//lint:ignore SA2001 an empty critical section is the barrier: loading.Add is done under mu
	g.mu.Unlock()
	g.loading.Wait()
}
