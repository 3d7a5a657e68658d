package main

import (
	"runtime/debug"
	"sync"
)

// startMemoryLimit bounds the heap while holdGC holds the collector off.
const startMemoryLimit = 256 << 20

// holdGC turns the garbage collector off until the returned function is
// called, except past startMemoryLimit (or GOMEMLIMIT, if lower); the
// function restores the settings it found (GOGC included), and calls after
// the first do nothing. `meshd run` holds it for its start: the heap grows
// from nothing to a few tens of megabytes (decoded modules, compiled-code
// metadata, JetStream's recovery), and with the default GOGC the collector
// ran at every doubling, marking a heap that was nearly all live; a warm
// start spent about a fifth of its time there (docs/RATIONALE.md).
func holdGC() (restore func()) {
	limit := debug.SetMemoryLimit(-1) // -1 reads it
	percent := debug.SetGCPercent(-1)
	debug.SetMemoryLimit(min(limit, startMemoryLimit))
	return sync.OnceFunc(func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	})
}
