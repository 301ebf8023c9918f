package store

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// cache keeps current versions of resources in memory, bounded in bytes.
// It is only correct when this process is the only writer of the database
// (the embedded SQLite store, which holds a lock on its data directory).
// Entries only ever move forward in version, and a reader caches what it
// read from the database only if no write touched the shard since the read
// began (seq), so an old version can never come back, even after eviction.
type cache struct {
	seed   maphash.Seed
	shards [32]cacheShard
	limit  int // bytes per shard
	seq    atomic.Uint64
}

type cacheShard struct {
	mu    sync.RWMutex
	m     map[string]*Resource
	bytes int
	wseq  uint64 // seq of the last write put in this shard
}

func newCache(totalBytes int) *cache {
	c := &cache{seed: maphash.MakeSeed(), limit: totalBytes / 32}
	for i := range c.shards {
		c.shards[i].m = map[string]*Resource{}
	}
	return c
}

func cacheKey(typ, id string) string { return typ + "/" + id }

func (c *cache) shard(key string) *cacheShard {
	return &c.shards[maphash.String(c.seed, key)%uint64(len(c.shards))]
}

func (c *cache) get(typ, id string) *Resource {
	if c == nil {
		return nil
	}
	key := cacheKey(typ, id)
	sh := c.shard(key)
	sh.mu.RLock()
	r := sh.m[key]
	sh.mu.RUnlock()
	return r
}

func size(r *Resource) int { return len(r.Data) + len(r.ID) + len(r.Type) + len(r.Patient) + 96 }

// begin returns the sequence number a reader passes to putRead.
func (c *cache) begin() uint64 {
	if c == nil {
		return 0
	}
	return c.seq.Load()
}

// putRead caches r, read from the database after begin returned since,
// unless a write reached its shard in the meantime.
func (c *cache) putRead(r *Resource, since uint64) { c.put(r, since, false) }

// putWrite caches a committed version. Cached values are shared: callers
// never modify a *Resource they got from the store.
func (c *cache) putWrite(r *Resource) { c.put(r, 0, true) }

func (c *cache) put(r *Resource, since uint64, write bool) {
	if c == nil {
		return
	}
	key := cacheKey(r.Type, r.ID)
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if write {
		sh.wseq = c.seq.Add(1)
	} else if sh.wseq > since {
		return
	}
	if old, ok := sh.m[key]; ok {
		if old.Version >= r.Version {
			return
		}
		sh.bytes -= size(old)
	}
	sh.m[key] = r
	sh.bytes += size(r)
	for k, v := range sh.m { // evict arbitrary entries over the budget
		if sh.bytes <= c.limit {
			break
		}
		if k != key {
			delete(sh.m, k)
			sh.bytes -= size(v)
		}
	}
}
