package guard_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"carnet/internal/guard"
	"carnet/internal/store"
	"carnet/internal/store/storetest"
)

// touchCounter counts the guard's database round trips for new patients.
type touchCounter struct {
	*store.SQL
	touches atomic.Int64
}

func (c *touchCounter) GuardTouch(ctx context.Context, account string, patients []string, now, fresh time.Time, since []time.Time) ([]int, int, error) {
	c.touches.Add(1)
	return c.SQL.GuardTouch(ctx, account, patients, now, fresh, since)
}

// TestSteppedUpSessionFastPath: a session that stepped up past a soft limit
// re-reads its patients from the in-memory fast path, not with a database
// write per request (the benchmark's guarded read ran at a third of the
// unguarded one before).
func TestSteppedUpSessionFastPath(t *testing.T) {
	st := storetest.Backends(t)["sqlite"](t).(*store.SQL)
	cnt := &touchCounter{SQL: st}
	clk := &clock{t: time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)}
	w := &world{st: st, clk: clk, g: guard.New(cnt, guard.Options{Now: clk.Now})}
	in := w.account(t, "doc", "physician")
	// 30 patients in a few minutes: over the 10-minute soft limit (20).
	stepped := false
	for i := range 30 {
		d := w.check(t, in, pid(i))
		if d.Verdict == guard.StepUp {
			if _, err := w.g.RecordStepUp(context.Background(), in.Session, in.Account); err != nil {
				t.Fatal(err)
			}
			stepped = true
			d = w.check(t, in, pid(i))
		}
		if d.Refused() {
			t.Fatalf("patient %d after the step-up: %v", i, d.Verdict)
		}
		clk.Add(5 * time.Second)
	}
	if !stepped {
		t.Fatal("no step-up asked: the test proves nothing")
	}
	before := cnt.touches.Load()
	for range 5 {
		for i := range 30 {
			if d := w.check(t, in, pid(i)); d.Refused() {
				t.Fatalf("re-reading patient %d: %v", i, d.Verdict)
			}
		}
	}
	if n := cnt.touches.Load() - before; n != 0 {
		t.Fatalf("re-reading 30 known patients 5 times cost %d database touches, want 0", n)
	}
}
