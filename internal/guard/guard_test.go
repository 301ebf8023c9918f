package guard_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"carnet/internal/guard"
	"carnet/internal/store"
	"carnet/internal/store/postgres"
	"carnet/internal/store/storetest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type world struct {
	st  *store.SQL
	clk *clock
	g   *guard.Guard
}

func newWorld(t *testing.T, open func(*testing.T) store.Store, opt guard.Options) *world {
	t.Helper()
	st := open(t).(*store.SQL)
	clk := &clock{t: time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)}
	opt.Now = clk.Now
	w := &world{st: st, clk: clk, g: guard.New(st, opt)}
	return w
}

func (w *world) account(t *testing.T, id string, roles ...string) guard.Input {
	t.Helper()
	now := time.Now().UTC()
	if err := w.st.CreateAccount(context.Background(), &store.Account{ID: id, Username: id, Roles: roles,
		Facilities: []string{"F1"}, Status: store.StatusActive, Created: now, Updated: now}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.st.InsertTokens(context.Background(), &store.Token{Hash: "tok-" + id, Kind: "access", Account: id,
		Session: "sess-" + id, Created: now, Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	return guard.Input{Account: id, Username: id, Session: "sess-" + id, Client: "192.0.2.7", Roles: roles, Action: "read"}
}

func (w *world) status(t *testing.T, id string) string {
	t.Helper()
	a, err := w.st.AccountByID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a.Status
}

func (w *world) check(t *testing.T, in guard.Input, patients ...string) guard.Decision {
	t.Helper()
	in.Patients = patients
	d, err := w.g.Check(context.Background(), in)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return d
}

func pid(i int) string { return fmt.Sprintf("p%06d", i) }

// walk reads patients from one at a time, every gap, until the guard
// refuses; it returns how many were allowed and the refusal.
func (w *world) walk(t *testing.T, in guard.Input, from, max int, gap time.Duration) (int, guard.Decision) {
	t.Helper()
	for i := range max {
		d := w.check(t, in, pid(from+i))
		if d.Refused() {
			return i, d
		}
		w.clk.Add(gap)
	}
	return max, guard.Decision{}
}

func forBackends(t *testing.T, fn func(t *testing.T, open func(*testing.T) store.Store)) {
	for name, open := range storetest.Backends(t) {
		t.Run(name, func(t *testing.T) { fn(t, open) })
	}
}

// A stolen clerk session walking patients one by one is stopped at the
// ten-minute soft limit; it cannot answer the step-up, and its retries
// suspend the account: tokens revoked, alert raised.
func TestWalkStoppedThenSuspended(t *testing.T) {
	forBackends(t, func(t *testing.T, open func(*testing.T) store.Store) {
		w := newWorld(t, open, guard.Options{})
		in := w.account(t, "clerk", "admission-clerk")
		soft := guard.DefaultLimits["admission-clerk"].Soft[guard.TenMinutes]
		n, d := w.walk(t, in, 0, 1000, 5*time.Second)
		if n != soft || d.Verdict != guard.StepUp {
			t.Fatalf("walk allowed %d patients then %v (%s); want exactly %d then step-up", n, d.Verdict, d.Reason, soft)
		}
		// Patients already given stay readable (no new disclosure).
		if d := w.check(t, in, pid(0), pid(5)); d.Verdict != guard.Allow {
			t.Fatalf("re-reading given patients: %v", d.Verdict)
		}
		// Every further new patient is refused; the retries suspend.
		var last guard.Decision
		for i := range 30 {
			last = w.check(t, in, pid(5000+i))
			w.clk.Add(10 * time.Second)
			if last.Verdict == guard.Suspend {
				break
			}
			if last.Verdict != guard.StepUp {
				t.Fatalf("retry %d: %v, want step-up", i, last.Verdict)
			}
		}
		if last.Verdict != guard.Suspend || !strings.Contains(last.Reason, "step-up") {
			t.Fatalf("retries ended with %v (%s), want a suspension", last.Verdict, last.Reason)
		}
		if st := w.status(t, "clerk"); st != store.StatusSuspended {
			t.Fatalf("account status %q, want suspended", st)
		}
		if tok, _, err := w.st.LookupToken(context.Background(), "tok-clerk"); err == nil && !tok.Revoked {
			t.Fatal("the suspended account's token is still valid")
		}
		alerts, err := w.st.Alerts(context.Background(), "open", "clerk", 0)
		if err != nil {
			t.Fatal(err)
		}
		var crit int
		for _, a := range alerts {
			if a.Severity == "critical" && a.Action == "suspend" {
				crit++
			}
		}
		if crit != 1 {
			t.Fatalf("%d critical suspension alerts, want 1: %+v", crit, alerts)
		}
	})
}

// A step-up lifts the soft limits of its session, never the hard ones.
func TestStepUpLiftsSoftNotHard(t *testing.T) {
	forBackends(t, func(t *testing.T, open func(*testing.T) store.Store) {
		w := newWorld(t, open, guard.Options{})
		in := w.account(t, "doc", "physician")
		lim := guard.DefaultLimits["physician"]
		n, d := w.walk(t, in, 0, 1000, 10*time.Second)
		if n != lim.Soft[guard.TenMinutes] || d.Verdict != guard.StepUp {
			t.Fatalf("allowed %d then %v, want %d then step-up", n, d.Verdict, lim.Soft[guard.TenMinutes])
		}
		until, err := w.g.RecordStepUp(context.Background(), in.Session, in.Account)
		if err != nil || !until.After(w.clk.Now()) {
			t.Fatalf("RecordStepUp: %v %v", until, err)
		}
		// Another session of the same account is not stepped up.
		other := in
		other.Session = "another"
		if d := w.check(t, other, pid(9000)); d.Verdict != guard.StepUp {
			t.Fatalf("other session: %v, want step-up", d.Verdict)
		}
		// The stepped-up session goes on, slowly enough not to be
		// throttled, up to the ten-minute hard limit.
		total := n + 1 // pid(9000) was counted
		for i := 0; ; i++ {
			d := w.check(t, in, pid(n+i))
			if d.Verdict == guard.Suspend {
				break
			}
			if d.Refused() {
				t.Fatalf("stepped-up session refused at %d: %v %s", total, d.Verdict, d.Reason)
			}
			total++
			w.clk.Add(2500 * time.Millisecond)
			if i > 1000 {
				t.Fatal("never suspended")
			}
		}
		if total != lim.Hard[guard.TenMinutes] {
			t.Fatalf("suspended after %d patients, want the hard limit %d", total, lim.Hard[guard.TenMinutes])
		}
	})
}

// One response over the hard limit suspends at once, and a burst within a
// minute is throttled, not suspended.
func TestBurstAndHardLimitInOneResponse(t *testing.T) {
	forBackends(t, func(t *testing.T, open func(*testing.T) store.Store) {
		w := newWorld(t, open, guard.Options{})
		clerk := w.account(t, "clerk", "billing-clerk")
		lim := guard.DefaultLimits["billing-clerk"]
		page := make([]string, lim.Soft[guard.Minute]+5)
		for i := range page {
			page[i] = pid(i)
		}
		if d := w.check(t, clerk, page...); d.Verdict != guard.Throttle || d.RetryAfter <= 0 {
			t.Fatalf("a page of %d new patients: %v, want throttle", len(page), d.Verdict)
		}
		big := w.account(t, "clerk2", "billing-clerk")
		page = make([]string, lim.Hard[guard.TenMinutes]+1)
		for i := range page {
			page[i] = pid(10000 + i)
		}
		if d := w.check(t, big, page...); d.Verdict != guard.Suspend {
			t.Fatalf("a page of %d new patients: %v, want suspend", len(page), d.Verdict)
		}
		if w.status(t, "clerk2") != store.StatusSuspended {
			t.Fatal("not suspended")
		}
	})
}

// Canary patients: opening one suspends; one in a small search result is
// flagged; one in an approved export is flagged (it traces the export).
func TestCanaries(t *testing.T) {
	forBackends(t, func(t *testing.T, open func(*testing.T) store.Store) {
		w := newWorld(t, open, guard.Options{})
		if err := w.st.AddCanaries(context.Background(), map[string]string{"canary-1": "F1"}); err != nil {
			t.Fatal(err)
		}
		a := w.account(t, "a", "admission-clerk")
		a.Action = "search"
		if d := w.check(t, a, pid(1), "canary-1", pid(2)); d.Verdict != guard.Flag {
			t.Fatalf("small search with a canary: %v", d.Verdict)
		}
		b := w.account(t, "b", "admission-clerk")
		b.Action = "search"
		ps := []string{"canary-1"}
		for i := range 12 {
			ps = append(ps, pid(100+i))
		}
		if d := w.check(t, b, ps...); d.Verdict != guard.Suspend || !strings.Contains(d.Reason, "canary") {
			t.Fatalf("listing with a canary: %v %s", d.Verdict, d.Reason)
		}
		c := w.account(t, "c", "physician")
		if d := w.check(t, c, "canary-1"); d.Verdict != guard.Suspend {
			t.Fatalf("opening a canary: %v", d.Verdict)
		}
		e := w.account(t, "e", "billing-clerk")
		e.Action = "export"
		if d := w.check(t, e, append(ps, pid(7))...); d.Verdict != guard.Flag {
			t.Fatalf("approved export with a canary: %v", d.Verdict)
		}
		for id, want := range map[string]string{"a": store.StatusActive, "b": store.StatusSuspended, "c": store.StatusSuspended, "e": store.StatusActive} {
			if got := w.status(t, id); got != want {
				t.Errorf("account %s: %s, want %s", id, got, want)
			}
		}
	})
}

// Break-the-glass: every grant flagged; past the soft count a step-up;
// past the hard count a suspension, even stepped up.
func TestBreakGlassCounts(t *testing.T) {
	forBackends(t, func(t *testing.T, open func(*testing.T) store.Store) {
		w := newWorld(t, open, guard.Options{})
		in := w.account(t, "nurse", "nurse")
		in.Action = "break-the-glass"
		bg := func(i int) guard.Decision {
			in.Patients = []string{pid(i)}
			d, err := w.g.BreakGlass(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			w.clk.Add(time.Minute)
			return d
		}
		for i := 1; i <= 3; i++ {
			if d := bg(i); d.Verdict != guard.Flag {
				t.Fatalf("grant %d: %v, want flag", i, d.Verdict)
			}
		}
		if d := bg(4); d.Verdict != guard.StepUp {
			t.Fatalf("grant 4: %v, want step-up", d.Verdict)
		}
		if _, err := w.g.RecordStepUp(context.Background(), in.Session, in.Account); err != nil {
			t.Fatal(err)
		}
		for i := 5; i <= 12; i++ {
			if d := bg(i); d.Verdict != guard.Flag {
				t.Fatalf("grant %d after step-up: %v, want flag", i, d.Verdict)
			}
		}
		if d := bg(13); d.Verdict != guard.Suspend {
			t.Fatalf("grant 13: %v, want suspend", d.Verdict)
		}
		alerts, _ := w.st.Alerts(context.Background(), "", "nurse", 0)
		flags := 0
		for _, a := range alerts {
			if strings.HasPrefix(a.Reason, "break-the-glass on patient") {
				flags++
			}
		}
		if flags < 11 {
			t.Fatalf("%d break-the-glass alerts, want every allowed grant flagged (11)", flags)
		}
	})
}

// Probing for patients one may not read suspends after DeniedHard refusals
// in an hour; spread over hours, it does not.
func TestDeniedProbing(t *testing.T) {
	forBackends(t, func(t *testing.T, open func(*testing.T) store.Store) {
		w := newWorld(t, open, guard.Options{})
		in := w.account(t, "doc", "physician")
		for i := 1; i <= 20; i++ {
			d, err := w.g.Denied(context.Background(), in)
			if err != nil || d.Verdict != guard.Allow {
				t.Fatalf("denial %d: %v %v", i, d.Verdict, err)
			}
			w.clk.Add(time.Minute)
		}
		d, _ := w.g.Denied(context.Background(), in)
		if d.Verdict != guard.Suspend {
			t.Fatalf("denial 21 in an hour: %v, want suspend", d.Verdict)
		}
		slow := w.account(t, "slow", "physician")
		for i := range 60 {
			d, err := w.g.Denied(context.Background(), slow)
			if err != nil || d.Verdict != guard.Allow {
				t.Fatalf("slow denial %d: %v %v", i, d.Verdict, err)
			}
			w.clk.Add(10 * time.Minute)
		}
	})
}

// Slow and low: an account that stays under the hour's limits but crosses
// the day's is asked for a step-up; asked again on a later day without
// ever answering, it is suspended.
func TestSlowAndLowSecondDay(t *testing.T) {
	forBackends(t, func(t *testing.T, open func(*testing.T) store.Store) {
		w := newWorld(t, open, guard.Options{})
		in := w.account(t, "bill", "billing-clerk")
		lim := guard.DefaultLimits["billing-clerk"]
		perHour := lim.Soft[guard.Hour] - 5
		gap := time.Hour / time.Duration(perHour)
		disclosed, asked := 0, 0
		for day := 0; day < 30; day++ {
			for i := 0; i < 10*perHour; i++ { // a 10-hour day
				d := w.check(t, in, pid(day*10000+i))
				w.clk.Add(gap)
				if d.Verdict == guard.Allow {
					disclosed++
					continue
				}
				if d.Verdict == guard.StepUp {
					asked++
					break // the attacker stops for the day
				}
				if d.Verdict == guard.Suspend {
					if disclosed > 200 || asked != 1 {
						t.Fatalf("suspended after %d patients and %d step-ups", disclosed, asked)
					}
					return
				}
				t.Fatalf("day %d: %v %s", day, d.Verdict, d.Reason)
			}
			w.clk.Add(24*time.Hour - 10*time.Hour)
		}
		t.Fatalf("never suspended: %d patients disclosed in 30 days", disclosed)
	})
}

// The account's own baseline lifts the day's soft limit, never above hard.
func TestBaselineLiftsDaySoftLimit(t *testing.T) {
	forBackends(t, func(t *testing.T, open func(*testing.T) store.Store) {
		lim := guard.Limits{
			Soft: [guard.NumWindows]int{1000, 1000, 1000, 50, 5000, 50000},
			Hard: [guard.NumWindows]int{0, 0, 0, 300, 0, 0},
		}
		w := newWorld(t, open, guard.Options{Limits: map[string]guard.Limits{"pharmacist": lim}})
		busy := w.account(t, "busy", "pharmacist")
		fresh := w.account(t, "new", "pharmacist")
		// Ten days of 100 patients a day for "busy" (stepped-up days).
		if _, err := w.g.RecordStepUp(context.Background(), busy.Session, busy.Account); err != nil {
			t.Fatal(err)
		}
		p := 0
		for day := 0; day < 10; day++ {
			for range 100 {
				if d := w.check(t, busy, pid(p)); d.Refused() {
					t.Fatalf("history day %d: %v", day, d.Verdict)
				}
				p++
			}
			w.clk.Add(24 * time.Hour)
			if _, err := w.g.RecordStepUp(context.Background(), busy.Session, busy.Account); err != nil {
				t.Fatal(err)
			}
		}
		busy.Session = "a-new-session" // not stepped up
		n, d := w.walk(t, busy, 100000, 1000, time.Second)
		if n != 200 || d.Verdict != guard.StepUp {
			t.Fatalf("baseline 100/day: %d allowed then %v, want 200 (twice the baseline) then step-up", n, d.Verdict)
		}
		n, d = w.walk(t, fresh, 200000, 1000, time.Second)
		if n != 50 || d.Verdict != guard.StepUp {
			t.Fatalf("no baseline: %d allowed then %v, want the role's 50", n, d.Verdict)
		}
	})
}

// Two instances on one PostgreSQL database count together: a walk split
// across both, even concurrently, is stopped at the same total as on one.
func TestTwoInstancesShareCounts(t *testing.T) {
	u := storetest.PostgresURL(t)
	ctx := context.Background()
	open := func() *store.SQL {
		st, err := postgres.Open(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	st1, st2 := open(), open()
	clk := &clock{t: time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)}
	g1, g2 := guard.New(st1, guard.Options{Now: clk.Now}), guard.New(st2, guard.Options{Now: clk.Now})
	now := time.Now()
	for _, id := range []string{"seq", "conc"} {
		if err := st1.CreateAccount(ctx, &store.Account{ID: id, Username: id, Roles: []string{"admission-clerk"},
			Status: store.StatusActive, Created: now, Updated: now}, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	soft := guard.DefaultLimits["admission-clerk"].Soft[guard.TenMinutes]
	in := guard.Input{Account: "seq", Session: "s", Roles: []string{"admission-clerk"}, Action: "read"}
	allowed := 0
	for i := range 100 {
		g := g1
		if i%2 == 1 {
			g = g2
		}
		in.Patients = []string{pid(i)}
		d, err := g.Check(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if d.Refused() {
			break
		}
		allowed++
		clk.Add(5 * time.Second)
	}
	if allowed != soft {
		t.Fatalf("alternating instances allowed %d patients, one instance allows %d", allowed, soft)
	}
	// Concurrently: 8 goroutines per instance, 1 new patient per request,
	// all within a minute's burst limit... spread the clock so only the
	// ten-minute limit applies.
	in.Account = "conc"
	var ok atomic.Int64
	var wg sync.WaitGroup
	var next atomic.Int64
	for k := range 16 {
		g := g1
		if k%2 == 1 {
			g = g2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > 60 {
					return
				}
				c := in
				c.Patients = []string{pid(int(100000 + i))}
				d, err := g.Check(ctx, c)
				if err != nil {
					t.Error(err)
					return
				}
				if !d.Refused() {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	lim := guard.DefaultLimits["admission-clerk"]
	if got := int(ok.Load()); got != min(lim.Soft[guard.Minute], soft) {
		t.Fatalf("16 concurrent readers on two instances were given %d patients, want exactly %d", got, min(lim.Soft[guard.Minute], soft))
	}
}

// An account with a history, at an hour and from an address it never used,
// gets half the soft limits; the same account at its usual hour and
// address gets them whole.
func TestUnusualContextHalvesSoftLimits(t *testing.T) {
	forBackends(t, func(t *testing.T, open func(*testing.T) store.Store) {
		w := newWorld(t, open, guard.Options{})
		doc := w.account(t, "doc", "physician")
		twin := w.account(t, "twin", "physician")
		// Six working days at 08:00 from the usual address, 15 new
		// patients a day, for both.
		p := 0
		for range 6 {
			for range 15 {
				for _, in := range []guard.Input{doc, twin} {
					if d := w.check(t, in, pid(p)); d.Refused() {
						t.Fatalf("history: %v", d.Verdict)
					}
					p++
				}
				w.clk.Add(20 * time.Second)
			}
			w.clk.Add(24*time.Hour - 15*20*time.Second)
		}
		soft := guard.DefaultLimits["physician"].Soft[guard.TenMinutes]
		// Day seven at 08:00, usual address: the whole limit.
		n, d := w.walk(t, twin, 200000, 100, 20*time.Second)
		if n != soft || d.Verdict != guard.StepUp || strings.Contains(d.Reason, "halved") {
			t.Fatalf("usual context: %d allowed then %v (%s), want %d", n, d.Verdict, d.Reason, soft)
		}
		// 03:00 the next night, from an address never seen: half.
		w.clk.Add(19 * time.Hour)
		night := doc
		night.Client = "203.0.113.66"
		n, d = w.walk(t, night, 100000, 100, 20*time.Second)
		if n != soft/2 || d.Verdict != guard.StepUp || !strings.Contains(d.Reason, "halved") ||
			!strings.Contains(d.Reason, "new client address 203.0.113.66") || !strings.Contains(d.Reason, "unusual hour 03:00") {
			t.Fatalf("unusual context: %d allowed then %v (%s), want %d then a step-up naming both", n, d.Verdict, d.Reason, soft/2)
		}
	})
}

// Three accounts suspended within an hour raise one group alert.
func TestGroupAlarm(t *testing.T) {
	forBackends(t, func(t *testing.T, open func(*testing.T) store.Store) {
		w := newWorld(t, open, guard.Options{})
		if err := w.st.AddCanaries(context.Background(), map[string]string{"canary-1": "F1"}); err != nil {
			t.Fatal(err)
		}
		group := func() int {
			as, err := w.st.Alerts(context.Background(), "", "", 0)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, a := range as {
				if a.Username == "(group)" {
					n++
				}
			}
			return n
		}
		for i := range 5 {
			in := w.account(t, fmt.Sprintf("acct%d", i), "physician")
			if d := w.check(t, in, "canary-1"); d.Verdict != guard.Suspend {
				t.Fatalf("canary: %v", d.Verdict)
			}
			want := 0
			if i >= 2 {
				want = 1
			}
			if got := group(); got != want {
				t.Fatalf("after %d suspensions: %d group alerts, want %d", i+1, got, want)
			}
			w.clk.Add(5 * time.Minute)
		}
	})
}

// Waiting does not lift an unanswered step-up: half an hour later the
// windows are empty but the next new patient is still refused; an hour
// later the ask is repeated after an unanswered one, which suspends.
func TestUnansweredStepUpHolds(t *testing.T) {
	forBackends(t, func(t *testing.T, open func(*testing.T) store.Store) {
		w := newWorld(t, open, guard.Options{})
		in := w.account(t, "clerk", "admission-clerk")
		page := func(from int) guard.Decision {
			ps := make([]string, 20)
			for i := range ps {
				ps[i] = pid(from + i)
			}
			return w.check(t, in, ps...)
		}
		if d := page(0); d.Refused() {
			t.Fatalf("first page: %v", d.Verdict)
		}
		w.clk.Add(2 * time.Minute)
		if d := page(100); d.Verdict != guard.StepUp {
			t.Fatalf("second page: %v, want step-up", d.Verdict)
		}
		w.clk.Add(30 * time.Minute)
		if d := page(100); d.Verdict != guard.StepUp || !strings.Contains(d.Reason, "still unanswered") {
			t.Fatalf("half an hour later: %v (%s), want step-up still unanswered", d.Verdict, d.Reason)
		}
		w.clk.Add(time.Hour)
		if d := page(200); d.Verdict != guard.Suspend {
			t.Fatalf("an hour and a half later: %v (%s), want suspend", d.Verdict, d.Reason)
		}
	})
}
