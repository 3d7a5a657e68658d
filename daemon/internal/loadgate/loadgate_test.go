package loadgate

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestCloseCancelsAndWaits(t *testing.T) {
	g := New(func() bool { return false })
	if !g.Begin() {
		t.Fatal("an open gate refused a load")
	}
	ctx, stop := g.Context(context.Background())
	defer stop()
	var finished atomic.Bool
	go func() {
		<-ctx.Done() // the load runs until the gate cancels it
		time.Sleep(10 * time.Millisecond)
		finished.Store(true)
		g.Done()
	}()
	closed := make(chan struct{})
	go func() {
		g.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not cancel the load")
	}
	if !finished.Load() {
		t.Fatal("Close returned before the load was done")
	}
	if g.Begin() || g.Go(func() { t.Error("ran after Close") }) {
		t.Fatal("a closed gate admitted a load")
	}
	late, stop := g.Context(context.Background())
	defer stop()
	select {
	case <-late.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("a load context made after Close is not cancelled")
	}
	g.Close() // again: no-op
}

func TestOwnerShutdownRefuses(t *testing.T) {
	var shutting atomic.Bool
	g := New(shutting.Load)
	ran := make(chan struct{})
	if !g.Go(func() { close(ran) }) {
		t.Fatal("refused before shutdown")
	}
	<-ran
	shutting.Store(true)
	if g.Begin() {
		t.Fatal("admitted a load once the owner shuts down")
	}
	g.Close()
}

func TestStopDetachesFromTheGate(t *testing.T) {
	g := New(func() bool { return false })
	parent, cancel := context.WithCancel(context.Background())
	ctx, stop := g.Context(parent)
	cancel()
	if ctx.Err() == nil {
		t.Fatal("the parent's cancellation does not reach the load context")
	}
	stop()
	g.Close()
}
