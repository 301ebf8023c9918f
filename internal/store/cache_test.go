package store

import "testing"

// A read that raced with a write must not bring back an old version, even
// after the written version was evicted.
func TestCacheReadRacingWrite(t *testing.T) {
	c := newCache(32 * 1024) // 1 KiB per shard: easy eviction
	since := c.begin()       // reader starts, reads v1 from the database...
	v2 := &Resource{Type: "Patient", ID: "a", Version: 2, Data: make([]byte, 10)}
	c.putWrite(v2)       // ...a writer commits v2...
	for i := range 200 { // ...v2 is evicted by other writes to its shard...
		c.putWrite(&Resource{Type: "Patient", ID: "a" + string(rune('A'+i%26)) + string(rune('a'+i/26)), Version: 1, Data: make([]byte, 512)})
	}
	c.putRead(&Resource{Type: "Patient", ID: "a", Version: 1}, since) // ...then the reader caches v1
	if r := c.get("Patient", "a"); r != nil && r.Version < 2 {
		t.Fatalf("cache serves version %d after version 2 was committed", r.Version)
	}
	// A read that did not race is cached.
	since = c.begin()
	c.putRead(&Resource{Type: "Patient", ID: "b", Version: 3}, since)
	if r := c.get("Patient", "b"); r == nil || r.Version != 3 {
		t.Fatalf("uncontended read not cached: %+v", r)
	}
	// Versions never go backwards through writes either.
	c.putWrite(&Resource{Type: "Patient", ID: "b", Version: 2})
	if r := c.get("Patient", "b"); r.Version != 3 {
		t.Fatalf("version went backwards to %d", r.Version)
	}
}
