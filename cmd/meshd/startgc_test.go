package main

import (
	"runtime/debug"
	"testing"
)

// holdGC turns the collector off under a memory limit no higher than the
// one it found, and its restore puts back what it found, once.
func TestHoldGCRestoresWhatItFound(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(150))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(1 << 30))
	readPercent := func() int { p := debug.SetGCPercent(0); debug.SetGCPercent(p); return p }

	restore := holdGC()
	if p, l := readPercent(), debug.SetMemoryLimit(-1); p != -1 || l != startMemoryLimit {
		t.Fatalf("held: GOGC %d, limit %d; want off under %d", p, l, startMemoryLimit)
	}
	restore()
	if p, l := readPercent(), debug.SetMemoryLimit(-1); p != 150 || l != 1<<30 {
		t.Fatalf("restored: GOGC %d, limit %d; want 150 and %d", p, l, 1<<30)
	}
	debug.SetGCPercent(90)
	restore() // a second call changes nothing
	if p := readPercent(); p != 90 {
		t.Fatalf("second restore set GOGC to %d", p)
	}

	debug.SetMemoryLimit(100 << 20) // a lower GOMEMLIMIT is kept
	restore = holdGC()
	defer restore()
	if l := debug.SetMemoryLimit(-1); l != 100<<20 {
		t.Fatalf("held under a lower limit: %d, want %d", l, 100<<20)
	}
}
