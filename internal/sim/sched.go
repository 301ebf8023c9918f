package sim

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// Sched runs actors — goroutines that act, then sleep in simulated time —
// over a Clock. The clock stands still while any actor is awake; when all
// sleep it jumps to the earliest wake-up, and every actor due within one
// slot of it wakes (they then act concurrently, at that time). Actors thus
// read as straight-line scripts ("read the chart, wait 5 minutes, ...")
// and as many of them as are due at once hit the server together.
type Sched struct {
	clock *Clock
	slot  time.Duration
	until time.Time

	mu      sync.Mutex
	running int
	q       sleepHeap
	seq     uint64
	wg      sync.WaitGroup
}

type sleeper struct {
	at  time.Time
	seq uint64
	ch  chan struct{}
}

// NewSched returns a scheduler over clock; no actor sleeps past until.
func NewSched(clock *Clock, slot time.Duration, until time.Time) *Sched {
	return &Sched{clock: clock, slot: max(slot, time.Millisecond), until: until}
}

// Clock returns the scheduler's clock.
func (s *Sched) Clock() *Clock { return s.clock }

// Until returns the end of simulated time.
func (s *Sched) Until() time.Time { return s.until }

// Go starts an actor. It may be called from another actor.
func (s *Sched) Go(fn func()) {
	s.mu.Lock()
	s.running++
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			s.running--
			s.advance()
			s.mu.Unlock()
		}()
		fn()
	}()
}

// Wait waits for every actor to end.
func (s *Sched) Wait() { s.wg.Wait() }

// Now is the simulated time.
func (s *Sched) Now() time.Time { return s.clock.Now() }

// Sleep waits d of simulated time. It returns false (at once) if that
// would go past the end of the simulation or ctx is done: the actor should
// end.
func (s *Sched) Sleep(ctx context.Context, d time.Duration) bool {
	return s.SleepUntil(ctx, s.clock.Now().Add(max(d, 0)))
}

// SleepUntil waits until t of simulated time (see Sleep).
func (s *Sched) SleepUntil(ctx context.Context, t time.Time) bool {
	if ctx.Err() != nil || !t.Before(s.until) {
		return false
	}
	ch := make(chan struct{})
	s.mu.Lock()
	s.seq++
	heap.Push(&s.q, sleeper{at: t, seq: s.seq, ch: ch})
	s.running--
	s.advance()
	s.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
		s.wakeAll() // the simulation is cancelled: everyone ends
		<-ch
	}
	return ctx.Err() == nil
}

// wakeAll wakes every sleeper.
func (s *Sched) wakeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.q) > 0 {
		sl := heap.Pop(&s.q).(sleeper)
		s.running++
		close(sl.ch)
	}
}

// advance wakes the next slot's sleepers when nobody is awake (s.mu held).
func (s *Sched) advance() {
	if s.running > 0 || len(s.q) == 0 {
		return
	}
	if t := s.q[0].at; t.After(s.clock.Now()) {
		s.clock.Set(t)
	}
	end := s.clock.Now().Add(s.slot)
	for len(s.q) > 0 && s.q[0].at.Before(end) {
		sl := heap.Pop(&s.q).(sleeper)
		s.running++
		close(sl.ch)
	}
}

type sleepHeap []sleeper

func (h sleepHeap) Len() int { return len(h) }
func (h sleepHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h sleepHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *sleepHeap) Push(x any)   { *h = append(*h, x.(sleeper)) }
func (h *sleepHeap) Pop() any {
	old := *h
	n := len(old)
	x := old[n-1]
	*h = old[:n-1]
	return x
}
