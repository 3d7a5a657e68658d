// Package coalesce hands changes to one worker per key: a key's changes
// are handled one at a time, in order, and a change that arrives while
// another of the same key waits replaces it, since only the latest state
// matters (a plugin file changed twice before its service reloaded loads
// once, with what the file holds now).
package coalesce

import "sync"

// Coalescer runs handle for the changes put to it, one worker goroutine
// per key with changes waiting. Make one with New.
type Coalescer[T any] struct {
	spawn  func(func()) bool
	handle func(key string, v T)

	mu      sync.Mutex
	pending map[string]*T // key → its latest change not handled yet; nil while its worker handles the last one
}

// New returns a coalescer whose workers are started with spawn (which runs
// its function in a goroutine its owner waits for, or returns false to
// refuse: shutdown began) and handle each change with handle.
func New[T any](spawn func(func()) bool, handle func(key string, v T)) *Coalescer[T] {
	return &Coalescer[T]{spawn: spawn, handle: handle, pending: make(map[string]*T)}
}

// Put hands v to key's worker, starting one if none runs, and returns at
// once; v replaces a change of key that waits. It returns false when no
// worker ran and spawn refused to start one (v is dropped).
func (c *Coalescer[T]) Put(key string, v T) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, working := c.pending[key]
	c.pending[key] = &v
	if working {
		return true
	}
	if !c.spawn(func() { c.work(key) }) {
		delete(c.pending, key)
		return false
	}
	return true
}

// work handles the changes of key until none is left. The key's entry is
// present while a worker runs, nil when it has taken the latest change.
func (c *Coalescer[T]) work(key string) {
	for {
		c.mu.Lock()
		v := c.pending[key]
		if v == nil {
			delete(c.pending, key)
			c.mu.Unlock()
			return
		}
		c.pending[key] = nil
		c.mu.Unlock()
		c.handle(key, *v)
	}
}
