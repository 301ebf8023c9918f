package sim

import (
	"sync/atomic"
	"time"
)

// Clock is the simulated time. The guard, the auth service (token lifetimes,
// TOTP codes, login back-off) and the policy (care window) all read it, so
// that 30 days of work run in minutes and a suspension can be timed in
// simulated hours.
type Clock struct{ ns atomic.Int64 }

// NewClock returns a clock showing t.
func NewClock(t time.Time) *Clock {
	c := &Clock{}
	c.Set(t)
	return c
}

// Now returns the simulated time (UTC).
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// Advance moves the clock forward by d and returns the new time.
func (c *Clock) Advance(d time.Duration) time.Time {
	return time.Unix(0, c.ns.Add(int64(d))).UTC()
}
