package kv

import (
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Cache keeps the latest value of a bucket's recently used keys in memory,
// so that a Get of a key this process wrote or read before needs no round
// trip to the server. It is correct only while every write to the bucket
// goes through Stores of this process sharing the Cache: meshd uses one per
// service when it runs its own NATS server with no client port (see
// docs/RATIONALE.md, "The key-value cache").
//
// Every entry carries the bucket revision (the stream sequence) of the
// value it holds, and an entry is only ever replaced by a newer revision,
// so writes and reads that finish in any order leave the newest value. A
// key that is not cached may be filled only at or above the highest
// revision evicted so far (the floor): a read that started before a newer
// write of its key, whose entry was then evicted, cannot put its older
// value back. A key whose write failed (the server may or may not store
// it, later) is never cached again.
type Cache struct {
	mu      sync.Mutex
	lru     *simplelru.LRU[string, cached]
	size    int // bytes held, by entrySize
	max     int
	floor   uint64
	unknown map[string]struct{} // keys whose stored state is unknown
	hits    uint64
	lookups uint64
}

type cached struct {
	value   []byte
	rev     uint64
	deleted bool // the key was deleted at rev
}

// entryOverhead approximates what an entry costs beyond its key and value.
const entryOverhead = 96

func entrySize(key string, e cached) int { return len(key) + len(e.value) + entryOverhead }

// NewCache returns a cache holding at most maxBytes of keys and values
// (approximately: each entry counts its key, its value and a fixed
// overhead). maxBytes <= 0 gives a cache that holds nothing.
func NewCache(maxBytes int) *Cache {
	c := &Cache{max: maxBytes, unknown: map[string]struct{}{}}
	c.lru, _ = simplelru.NewLRU[string, cached](1<<30, c.evicted) // bounded by bytes, not count
	return c
}

// evicted runs under c.mu for every entry leaving the LRU.
func (c *Cache) evicted(key string, e cached) {
	c.size -= entrySize(key, e)
	c.floor = max(c.floor, e.rev)
}

// get returns the cached state of key: found is false when it is not
// cached; otherwise deleted tells a known-absent key from a value.
func (c *Cache) get(key string) (value []byte, deleted, found bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lookups++
	e, ok := c.lru.Get(key)
	if !ok {
		return nil, false, false
	}
	c.hits++
	return e.value, e.deleted, true
}

// fill records a value read from the server at revision rev.
func (c *Cache) fill(key string, value []byte, rev uint64) { c.put(key, cached{value, rev, false}) }

// wrote records a write the server acknowledged at revision rev.
func (c *Cache) wrote(key string, value []byte, deleted bool, rev uint64) {
	c.put(key, cached{value, rev, deleted})
}

func (c *Cache) put(key string, e cached) {
	size := entrySize(key, e)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.unknown[key]; ok {
		return
	}
	old, ok := c.lru.Peek(key)
	switch {
	case ok && old.rev >= e.rev:
		return // as new or newer already
	case !ok && e.rev < c.floor:
		return // a newer write may have been evicted
	case size > c.max:
		if ok {
			c.lru.Remove(key)
		}
		return
	}
	if ok {
		c.size -= entrySize(key, old)
	}
	c.size += size
	c.lru.Add(key, e)
	for c.size > c.max {
		c.lru.RemoveOldest()
	}
}

// forget drops key for good: a write of it failed, so what the server
// holds (or will hold) is unknown.
func (c *Cache) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unknown[key] = struct{}{}
	c.lru.Remove(key)
}

// CacheStats are a cache's counters.
type CacheStats struct {
	Lookups, Hits uint64
	Keys, Bytes   int
}

// Stats returns the cache's counters so far.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CacheStats{Lookups: c.lookups, Hits: c.hits, Keys: c.lru.Len(), Bytes: c.size}
}
