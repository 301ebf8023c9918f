package sim

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"carnet/internal/synth"
)

// WorkOptions shape the simulated normal work.
type WorkOptions struct {
	Days, Warmup int // measured days, and unmeasured days before them
	// Arrivals per working admission clerk and day (weekdays; half on
	// weekends).
	Arrivals float64
	// OnCallCalls: mean calls per on-call night (Poisson) about inpatients
	// who are not the on-call physician's own: each is a break-the-glass
	// (reason on-call). 0: 3; negative: no on-call nights.
	OnCallCalls float64
	// MassCasualties arriving at the biggest clinic's emergency department
	// in 3 hours on one measured day (0: 80; negative: none).
	MassCasualties int
	// Concurrency bounds the requests in flight (default 16).
	Concurrency int
}

func (o *WorkOptions) defaults() {
	if o.Days <= 0 {
		o.Days = 30
	}
	if o.Warmup < 0 {
		o.Warmup = 0
	}
	if o.Arrivals <= 0 {
		o.Arrivals = 10
	}
	if o.OnCallCalls == 0 {
		o.OnCallCalls = 3
	}
	if o.MassCasualties == 0 {
		o.MassCasualties = 80
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
}

// WorkResult is what normal work measured (over the measured days).
type WorkResult struct {
	Days, Warmup     int
	Staff            int // staff members working in the simulation
	UserDays         int // (member, day) with at least one request, measured days
	Requests         int // measured days
	AllRequests      int // warm-up included
	Errors           int // 5xx and transport errors (all days)
	Denied           int // 403 answers other than suspensions (all days)
	StepUps          int // step-ups asked (measured)
	Answered         int
	Throttled        int
	Suspensions      int            // accounts suspended by the guard (measured days)
	SuspensionsByWhy map[string]int // reason (shortened) -> count
	SuspensionsAll   int            // warm-up included
	StepUpsByRole    map[string]int
	UserDaysByRole   map[string]int
	BreakGlass       int // grants made (measured)
	OnCallNights     int
	Arrivals         int // admissions (measured)
	MassCasualty     string
	LostTasks        int // tasks not done because the account was suspended
	Real             time.Duration
	ReqPerSec        float64
	// Per role: patients counted by the guard per account and day
	// (measured days, days the account worked): quantiles and maxima.
	PerRole []RoleLoad
	// Kinds of request that took the most wall time (all days), with
	// their count and mean latency under the simulated load.
	Slowest []KindTime
}

// KindTime is the wall time one kind of request took.
type KindTime struct {
	Kind  string
	N     int
	Mean  time.Duration
	Share float64 // of all requests' time
}

// RoleLoad is the guard's count of new patients per account for one role.
type RoleLoad struct {
	Role                string
	Accounts            int
	DayP50, DayP99, Max int
	WeekMax, MonthMax   int
}

// PerTenThousand is false suspensions per 10,000 user-days.
func (r *WorkResult) PerTenThousand() float64 {
	if r.UserDays == 0 {
		return 0
	}
	return float64(r.Suspensions) * 10000 / float64(r.UserDays)
}

// StepUpsPerUserDay is step-ups asked per user-day.
func (r *WorkResult) StepUpsPerUserDay() float64 {
	if r.UserDays == 0 {
		return 0
	}
	return float64(r.StepUps) / float64(r.UserDays)
}

type user struct {
	m   *Member
	c   *Client
	fac *facState
	ip  string
	mu  sync.Mutex
	// session
	until time.Time
	// user-days
	lastDay int
}

type newPatient struct{ id, family, birth string }

type stay struct {
	enc, patient, class string
	body                map[string]any // as created (nil: a stay of the loaded group, read before changing it)
	ver                 int
	phys                *user
	nurses              []*user
	discharge           time.Time
}

type facState struct {
	i               int
	id, kind, name  string
	mu              sync.Mutex
	pool            []int // the world's patients of the facility
	extra           []newPatient
	busy            map[string]bool // patients in a stay
	stays           []*stay
	bill            []string // patients of discharged stays, to bill
	phys, nurses    []*user
	clerks, billers []*user
	pharma, admins  []*user
	teamOf          map[*user][]int
	nextMC          int
}

// debugSlow prints the kinds of request that take the most time.
const debugSlow = false

// work is one run of normal work.
type work struct {
	e         *Env
	w         *World
	opt       WorkOptions
	rng       *rand.Rand
	rngMu     sync.Mutex
	start     time.Time // day 0, 00:00
	measure   time.Time // first measured day
	end       time.Time
	facs      []*facState
	users     map[int]*user
	officer   *user
	sem       chan struct{}
	mcDay     int
	mcFac     *facState
	measured  atomic.Int64
	allReq    atomic.Int64
	errors    atomic.Int64
	denied    atomic.Int64
	stepUps   atomic.Int64
	answered  atomic.Int64
	throttled atomic.Int64
	bg        atomic.Int64
	arrivals  atomic.Int64
	lost      atomic.Int64
	oncall    atomic.Int64
	mu        sync.Mutex
	userDays  map[string]int
	suByRole  map[string]int
	lat       map[string]*latency // by kind of request
	report    func()              // prints a progress line
}

// latency sums the wall time of one kind of request.
type latency struct {
	n     int
	total time.Duration
}

// kindOf names a request by its method, resource type and parameters.
func kindOf(method, path string) string {
	p, q, _ := strings.Cut(path, "?")
	segs := strings.Split(strings.Trim(p, "/"), "/")
	if len(segs) > 2 && segs[0] == "fhir" {
		segs[2] = "{id}"
	}
	var names []string
	for _, kv := range strings.Split(q, "&") {
		if k, _, _ := strings.Cut(kv, "="); k != "" {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	k := method + " /" + strings.Join(segs, "/")
	if len(names) > 0 {
		k += "?" + strings.Join(names, "&")
	}
	return k
}

// kinds returns the k kinds of request that took the most wall time.
func (n *work) kinds(k int) []KindTime {
	n.mu.Lock()
	defer n.mu.Unlock()
	var all []KindTime
	var total time.Duration
	for name, l := range n.lat {
		all = append(all, KindTime{Kind: name, N: l.n, Mean: l.total / time.Duration(max(1, l.n)), Share: float64(l.total)})
		total += l.total
	}
	slices.SortFunc(all, func(a, b KindTime) int { return int(b.Share - a.Share) })
	all = all[:min(k, len(all))]
	for i := range all {
		all[i].Share /= float64(max(total, 1))
	}
	return all
}

// slowest returns the kinds of request that took the most wall time.
func (n *work) slowest(k int) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	type kv struct {
		k string
		l latency
	}
	var all []kv
	for name, l := range n.lat {
		all = append(all, kv{name, *l})
	}
	slices.SortFunc(all, func(a, b kv) int { return int(b.l.total - a.l.total) })
	var parts []string
	for _, x := range all[:min(k, len(all))] {
		parts = append(parts, fmt.Sprintf("%s %d× %.1f ms", x.k, x.l.n, float64(x.l.total.Microseconds())/1000/float64(max(1, x.l.n))))
	}
	return strings.Join(parts, "; ")
}

func (n *work) intn(k int) int {
	n.rngMu.Lock()
	defer n.rngMu.Unlock()
	if k <= 0 {
		return 0
	}
	return n.rng.IntN(k)
}

func (n *work) float() float64 {
	n.rngMu.Lock()
	defer n.rngMu.Unlock()
	return n.rng.Float64()
}

func (n *work) poisson(mean float64) int {
	l, k, p := math.Exp(-mean), 0, 1.0
	for {
		p *= n.float()
		if p <= l {
			return k
		}
		k++
	}
}

// between returns a random time in [day+a, day+b).
func (n *work) between(day time.Time, a, b time.Duration) time.Time {
	return day.Add(a + time.Duration(n.float()*float64(b-a)))
}

// runWork simulates the staff's normal work.
func runWork(ctx context.Context, e *Env, opt WorkOptions, progress func(string)) (*WorkResult, error) {
	opt.defaults()
	w := e.World
	n := &work{e: e, w: w, opt: opt, rng: rand.New(rand.NewPCG(uint64(w.Config.Seed), 0x5EED)),
		users: map[int]*user{}, sem: make(chan struct{}, opt.Concurrency), userDays: map[string]int{}, suByRole: map[string]int{}, lat: map[string]*latency{}}
	n.start = w.Epoch
	n.measure = n.start.Add(time.Duration(opt.Warmup) * 24 * time.Hour)
	n.end = n.measure.Add(time.Duration(opt.Days) * 24 * time.Hour)
	for i, f := range w.Group.Facilities {
		fs := &facState{i: i, id: f.ID, kind: f.Kind, name: f.Name, pool: w.ByFacility[i], busy: map[string]bool{}, teamOf: map[*user][]int{}}
		n.facs = append(n.facs, fs)
	}
	for _, m := range w.Staff {
		if !m.Works || e.r.isUsed(m.Index) {
			continue
		}
		u := &user{m: m, lastDay: -1}
		if len(m.Fac) > 0 {
			u.fac = n.facs[m.Fac[0]]
			u.ip = ipFor(10, m.Fac[0])
		} else {
			u.ip = ipFor(10, 200)
		}
		u.c = e.Stack.NewClient(m.Username, e.transport(u.ip))
		u.c.TOTP = m.TOTP
		n.users[m.Index] = u
		for _, fi := range m.Fac {
			f := n.facs[fi]
			switch m.Role() {
			case synth.RolePhysician:
				f.phys = append(f.phys, u)
			case synth.RoleNurse:
				f.nurses = append(f.nurses, u)
				if f.kind == "retirement-home" {
					f.teamOf[u] = w.TeamOf[m.Index]
				}
			case synth.RoleAdmissionClerk:
				f.clerks = append(f.clerks, u)
			case synth.RoleBillingClerk:
				f.billers = append(f.billers, u)
			case synth.RolePharmacist:
				f.pharma = append(f.pharma, u)
			case synth.RoleFacilityAdmin:
				f.admins = append(f.admins, u)
			}
		}
		if m.Role() == synth.RoleSecurityOfficer && n.officer == nil {
			n.officer = u
		}
	}
	// The stays in progress in the loaded group go on.
	for _, o := range w.Open {
		f := n.facs[o.Fac]
		pu, ok := n.users[o.Phys]
		if !ok || o.Class != "IMP" {
			continue
		}
		st := &stay{enc: o.ID, patient: w.Patients[o.Patient].ID, class: o.Class, phys: pu,
			discharge: n.between(n.start.Add(time.Duration(n.intn(6))*24*time.Hour), 10*time.Hour, 14*time.Hour)}
		if nu, ok := n.users[o.Nurse]; ok {
			st.nurses = append(st.nurses, nu)
		}
		f.stays = append(f.stays, st)
		f.busy[st.patient] = true
	}
	// The mass-casualty day: a weekday in the middle of the measured days,
	// at the clinic with the most patients.
	n.mcDay = opt.Warmup + opt.Days/2
	for (n.mcDay % 7) >= 5 {
		n.mcDay++
	}
	for _, f := range n.facs {
		if f.kind == "clinic" && (n.mcFac == nil || len(f.pool) > len(n.mcFac.pool)) {
			n.mcFac = f
		}
	}
	realStart := time.Now()
	var lastReq atomic.Int64
	var lastAt atomic.Int64
	lastAt.Store(time.Now().UnixNano())
	n.report = func() {
		now := e.Stack.Clock.Now()
		day := int(now.Sub(n.start) / (24 * time.Hour))
		req := n.allReq.Load()
		prev, at := lastReq.Swap(req), time.Unix(0, lastAt.Swap(time.Now().UnixNano()))
		rate := float64(req-prev) / max(time.Since(at).Seconds(), 0.001)
		progress(fmt.Sprintf("normal work: day %d/%d (%s), %d requests, %.0f req/s, %d step-ups, %d suspensions",
			min(day+1, opt.Warmup+opt.Days), opt.Warmup+opt.Days, now.Format("Mon 02 Jan 15:04"), req, rate, n.stepUps.Load(), n.suspensions(ctx, time.Time{})))
		if debugSlow {
			progress("  slowest: " + n.slowest(6))
		}
	}
	stopProgress := make(chan struct{})
	var pwg sync.WaitGroup
	pwg.Add(1)
	go func() {
		defer pwg.Done()
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				n.report()
			}
		}
	}()
	s := e.Sched
	s.Go(func() { n.plan(ctx) })
	if n.officer != nil {
		s.Go(func() { n.officerLoop(ctx) })
	}
	s.Wait()
	close(stopProgress)
	pwg.Wait()
	return n.result(ctx, time.Since(realStart))
}

// plan schedules each day's work at midnight.
func (n *work) plan(ctx context.Context) {
	s := n.e.Sched
	for d := 0; d < n.opt.Warmup+n.opt.Days; d++ {
		day := n.start.Add(time.Duration(d) * 24 * time.Hour)
		if !s.SleepUntil(ctx, day) && d > 0 {
			return
		}
		if d > 0 {
			n.report() // the day before is done
		}
		for _, f := range n.facs {
			n.planFacility(ctx, f, d, day)
		}
		for _, u := range n.users {
			if (u.m.Role() == synth.RoleFacilityAdmin || u.m.Role() == synth.RoleGroupAdmin) && d%7 < 5 {
				n.task(ctx, u, n.between(day, 9*time.Hour, 17*time.Hour), func(ctx context.Context) {
					n.req(ctx, u, "GET", "/admin/accounts", nil)
					n.req(ctx, u, "GET", "/admin/role-requests", nil)
				})
			}
		}
	}
}

// task runs fn as u at t (in its own actor; one task of a user at a time).
func (n *work) task(ctx context.Context, u *user, t time.Time, fn func(ctx context.Context)) {
	if u == nil || !t.Before(n.end) {
		return
	}
	s := n.e.Sched
	s.Go(func() {
		if !s.SleepUntil(ctx, t) {
			return
		}
		u.mu.Lock()
		defer u.mu.Unlock()
		fn(ctx)
	})
}

// works reports whether u works on day d, and the shift.
func (n *work) works(u *user, d int) (from, to time.Duration, ok bool) {
	wd := d % 7 // 0 is Monday
	i := u.m.Index
	weekend := wd >= 5
	switch u.m.Role() {
	case synth.RolePhysician:
		if !weekend {
			return 8 * time.Hour, 18 * time.Hour, true
		}
		return 9 * time.Hour, 13 * time.Hour, (i+d/7)%5 == 0
	case synth.RoleNurse:
		if (d+i)%2 != 0 {
			return 0, 0, false
		}
		if i%4 == 0 {
			return 19 * time.Hour, 31 * time.Hour, true
		}
		return 7 * time.Hour, 19 * time.Hour, true
	case synth.RoleAdmissionClerk:
		if !weekend {
			return 8 * time.Hour, 17 * time.Hour, true
		}
		return 9 * time.Hour, 17 * time.Hour, i%4 == 0 && u.fac != nil && u.fac.kind == "clinic"
	case synth.RoleBillingClerk, synth.RolePharmacist:
		return 9 * time.Hour, 17 * time.Hour, !weekend
	}
	return 0, 0, false
}

func (n *work) working(us []*user, d int) []*user {
	var out []*user
	for _, u := range us {
		if from, _, ok := n.works(u, d); ok && from < 19*time.Hour {
			out = append(out, u)
		}
	}
	return out
}

func (n *work) pick(us []*user) *user {
	if len(us) == 0 {
		return nil
	}
	return us[n.intn(len(us))]
}

func (n *work) planFacility(ctx context.Context, f *facState, d int, day time.Time) {
	weekend := d%7 >= 5
	clerks := n.working(f.clerks, d)
	if f.kind != "retirement-home" {
		for _, c := range clerks {
			from, to, _ := n.works(c, d)
			k := n.opt.Arrivals
			if weekend {
				k /= 2
			}
			for range n.poisson(k) {
				c := c
				n.task(ctx, c, n.between(day, from, to), func(ctx context.Context) { n.arrival(ctx, f, c, d, "") })
			}
		}
	}
	if n.opt.MassCasualties > 0 && f == n.mcFac && d == n.mcDay && len(clerks) > 0 {
		for k := range n.opt.MassCasualties {
			c := clerks[k%len(clerks)]
			n.task(ctx, c, n.between(day, 14*time.Hour, 17*time.Hour), func(ctx context.Context) { n.arrival(ctx, f, c, d, "EMER-MC") })
		}
	}
	// Inpatients: rounds, nurses, discharges.
	f.mu.Lock()
	stays := slices.Clone(f.stays)
	f.mu.Unlock()
	for _, st := range stays {
		st := st
		if st.discharge.Before(day.Add(24 * time.Hour)) {
			n.task(ctx, st.phys, st.discharge, func(ctx context.Context) { n.discharge(ctx, f, st) })
			continue
		}
		if _, _, ok := n.works(st.phys, d); ok {
			n.task(ctx, st.phys, n.between(day, 8*time.Hour+30*time.Minute, 12*time.Hour), func(ctx context.Context) {
				n.chart(ctx, st.phys, st.patient, 4)
				if n.float() < 0.25 {
					n.prescribe(ctx, st.phys, st)
				}
			})
		}
		for _, nu := range st.nurses {
			if from, to, ok := n.works(nu, d); ok {
				nu := nu
				n.task(ctx, nu, n.between(day, from+time.Hour, to-2*time.Hour), func(ctx context.Context) {
					n.chart(ctx, nu, st.patient, 2)
					n.vitals(ctx, nu, st)
				})
			}
		}
	}
	// Retirement homes: nurses see the residents of their care teams, the
	// physicians the residents they are the attending physician of.
	if f.kind == "retirement-home" {
		for _, nu := range f.nurses {
			from, to, ok := n.works(nu, d)
			team := f.teamOf[nu]
			if !ok || len(team) == 0 {
				continue
			}
			floor := team[:min(len(team), 25)] // her floor
			for k := range min(12, len(floor)) {
				p := n.w.Patients[floor[(d*12+k)%len(floor)]].ID
				nu := nu
				n.task(ctx, nu, n.between(day, from+30*time.Minute, to-time.Hour), func(ctx context.Context) {
					n.chart(ctx, nu, p, 2)
					if n.float() < 0.5 {
						n.vitals(ctx, nu, &stay{patient: p})
					}
				})
			}
		}
		for _, ph := range n.working(f.phys, d) {
			own := n.w.GPOf[ph.m.Index]
			for k := range min(8, len(own)) {
				p := n.w.Patients[own[(d*8+k)%len(own)]].ID
				ph := ph
				n.task(ctx, ph, n.between(day, 9*time.Hour, 17*time.Hour), func(ctx context.Context) {
					n.chart(ctx, ph, p, 4)
					if n.float() < 0.2 {
						n.prescribe(ctx, ph, &stay{patient: p})
					}
				})
			}
		}
	}
	// Billing: each working billing clerk takes discharged stays from the
	// queue through the day.
	for _, b := range n.working(f.billers, d) {
		b := b
		for range 25 {
			n.task(ctx, b, n.between(day, 9*time.Hour+30*time.Minute, 16*time.Hour+30*time.Minute), func(ctx context.Context) { n.billing(ctx, f, b) })
		}
	}
	// Pharmacists validate the day's prescriptions three times a day.
	for _, ph := range n.working(f.pharma, d) {
		ph := ph
		for _, h := range []time.Duration{10 * time.Hour, 14 * time.Hour, 16*time.Hour + 30*time.Minute} {
			n.task(ctx, ph, n.between(day, h, h+20*time.Minute), func(ctx context.Context) {
				q := "/fhir/MedicationRequest?" + url.Values{"authoredon": {"ge" + day.Format("2006-01-02")}, "status": {"active"}, "_count": {"100"}}.Encode()
				for p := 0; q != "" && p < 10; p++ {
					r := n.req(ctx, ph, "GET", q, nil)
					if r == nil || !r.OK() {
						return
					}
					q = NextLink(r.Body)
				}
			})
		}
	}
	// The on-call night (clinics): called about inpatients who are not the
	// on-call physician's own.
	if f.kind == "clinic" && len(f.phys) > 0 && n.opt.OnCallCalls > 0 {
		oc := f.phys[d%len(f.phys)]
		if d >= n.opt.Warmup {
			n.oncall.Add(1)
		}
		for range n.poisson(n.opt.OnCallCalls) {
			n.task(ctx, oc, n.between(day, 19*time.Hour, 31*time.Hour), func(ctx context.Context) { n.onCall(ctx, f, oc) })
		}
	}
}

// ---- tasks ------------------------------------------------------------------

func (n *work) session(ctx context.Context, u *user) bool {
	now := n.e.Stack.Clock.Now()
	if u.c.Access != "" && now.Before(u.until.Add(-time.Minute)) {
		return true
	}
	until := now.Add(13 * time.Hour)
	tok, _, err := n.e.Stack.Session(ctx, u.m, u.ip, until)
	if err != nil {
		return false
	}
	u.c.Access, u.until = tok, until
	return true
}

// req sends one request as u, answering step-ups, waiting out throttles,
// and opening a new session when the old one ended.
func (n *work) req(ctx context.Context, u *user, method, path string, body any) *Resp {
	if !n.session(ctx, u) {
		return nil
	}
	var b []byte
	ctype := ""
	if body != nil {
		b, ctype = jsonBody(path, body)
	}
	n.sem <- struct{}{}
	r := n.send(ctx, u, method, path, b, ctype)
	<-n.sem
	if r.Status == 401 && !r.StepUp {
		// The session ended (expired, or the account was suspended and
		// then re-enabled): a new login.
		u.c.Access = ""
		if a, err := n.w.Store.AccountByID(ctx, u.m.Account); err != nil || a.Status != "active" {
			n.lost.Add(1)
			return r
		}
		if !n.session(ctx, u) {
			return r
		}
		n.sem <- struct{}{}
		r = n.send(ctx, u, method, path, b, ctype)
		<-n.sem
	}
	if r.RetryAfter > 0 && path != "/auth/step-up" {
		if n.e.Sched.Sleep(ctx, r.RetryAfter) {
			n.sem <- struct{}{}
			r = n.send(ctx, u, method, path, b, ctype)
			<-n.sem
		}
	}
	if r.Suspended {
		n.lost.Add(1)
	}
	return r
}

func (n *work) send(ctx context.Context, u *user, method, path string, b []byte, ctype string) *Resp {
	now := n.e.Stack.Clock.Now()
	measured := !now.Before(n.measure)
	count := func(r *Resp) {
		n.allReq.Add(1)
		if measured {
			n.measured.Add(1)
		}
		switch {
		case r.Status == 0 || r.Status >= 500:
			n.errors.Add(1)
		case r.Status == 403 && !r.Suspended:
			n.denied.Add(1)
		}
		if r.RetryAfter > 0 && measured {
			n.throttled.Add(1)
		}
	}
	t0 := time.Now()
	r := u.c.Do(ctx, method, path, b, ctype)
	el := time.Since(t0)
	count(r)
	kind := kindOf(method, path)
	n.mu.Lock()
	l := n.lat[kind]
	if l == nil {
		l = &latency{}
		n.lat[kind] = l
	}
	l.n++
	l.total += el
	n.mu.Unlock()
	if r.StepUp {
		if measured {
			n.stepUps.Add(1)
			n.mu.Lock()
			n.suByRole[u.m.Role()]++
			n.mu.Unlock()
		}
		sr := u.c.PostForm(ctx, "/auth/step-up", url.Values{"otp": {u.c.Code()}})
		count(sr)
		if sr.OK() {
			if measured {
				n.answered.Add(1)
			}
			r = u.c.Do(ctx, method, path, b, ctype)
			count(r)
		}
	}
	if measured {
		day := int(now.Sub(n.start) / (24 * time.Hour))
		if day != u.lastDay {
			u.lastDay = day
			n.mu.Lock()
			n.userDays[u.m.Role()]++
			n.mu.Unlock()
		}
	}
	return r
}

// chart opens a patient's chart: the Patient, then (k > 1) observations,
// prescriptions and conditions.
func (n *work) chart(ctx context.Context, u *user, patient string, k int) {
	paths := []string{"/fhir/Patient/" + patient, "/fhir/Observation?patient=" + patient + "&_count=10",
		"/fhir/MedicationRequest?patient=" + patient, "/fhir/Condition?patient=" + patient}
	for _, p := range paths[:min(k, len(paths))] {
		if r := n.req(ctx, u, "GET", p, nil); r == nil || !r.OK() {
			return
		}
	}
}

var simFamilies = []string{"Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau", "Simon", "Laurent", "Lefebvre", "Michel", "Garcia", "David", "Bertrand", "Roux", "Vincent", "Fournier"}
var simGiven = []string{"Camille", "Louis", "Léa", "Hugo", "Chloé", "Lucas", "Manon", "Jules", "Emma", "Arthur", "Inès", "Gabriel"}

// arrival: an admission clerk registers a patient (searching by family
// name and birth date; a new patient is created) and opens a stay; the
// physician and nurses follow.
func (n *work) arrival(ctx context.Context, f *facState, clerk *user, d int, kind string) {
	now := n.e.Stack.Clock.Now()
	mc := kind == "EMER-MC"
	class := "AMB"
	if f.kind == "clinic" {
		switch x := n.float(); {
		case mc || x < 0.28:
			class = "EMER"
		case x < 0.45:
			class = "IMP"
		}
	}
	// Who arrives.
	var pid, family, birth string
	newP := n.float() < 0.12 || (mc && n.float() < 0.6)
	if !newP {
		f.mu.Lock()
		for tries := 0; tries < 20 && pid == ""; tries++ {
			if len(f.extra) > 0 && n.float() < 0.05 {
				np := f.extra[n.intn(len(f.extra))]
				if !f.busy[np.id] {
					pid, family, birth = np.id, np.family, np.birth
				}
				continue
			}
			if len(f.pool) == 0 {
				break
			}
			p := &n.w.Patients[f.pool[n.intn(len(f.pool))]]
			if !p.Deceased && !f.busy[p.ID] && p.Family != "" {
				pid, family, birth = p.ID, p.Family, p.Birth
			}
		}
		if pid != "" {
			f.busy[pid] = true
		}
		f.mu.Unlock()
		newP = pid == ""
	}
	if newP {
		family = simFamilies[n.intn(len(simFamilies))]
		birth = time.Date(1930+n.intn(90), time.Month(1+n.intn(12)), 1+n.intn(28), 0, 0, 0, 0, time.UTC).Format("2006-01-02")
	}
	r := n.req(ctx, clerk, "GET", "/fhir/Patient?"+url.Values{"family": {family}, "birthdate": {birth}}.Encode(), nil)
	if r == nil || !r.OK() {
		n.release(f, pid)
		return
	}
	if newP {
		gender := []string{"female", "male"}[n.intn(2)]
		pr := n.req(ctx, clerk, "POST", "/fhir/Patient", map[string]any{"resourceType": "Patient",
			"name": []any{map[string]any{"family": family, "given": []any{simGiven[n.intn(len(simGiven))]}}}, "gender": gender,
			"birthDate": birth, "managingOrganization": map[string]any{"reference": "Organization/" + f.id}})
		var out map[string]any
		if pr == nil || !pr.OK() || pr.JSON(&out) != nil {
			return
		}
		pid, _ = out["id"].(string)
		f.mu.Lock()
		f.extra = append(f.extra, newPatient{pid, family, birth})
		f.busy[pid] = true
		f.mu.Unlock()
	}
	// Who treats them.
	docs := n.working(f.phys, d)
	if mc && len(docs) > 4 {
		docs = docs[:4] // the emergency team
	}
	var phys *user
	if mc && len(docs) > 0 {
		f.mu.Lock()
		phys = docs[f.nextMC%len(docs)]
		f.nextMC++
		f.mu.Unlock()
	} else {
		phys = n.pick(docs)
	}
	if phys == nil {
		phys = n.pick(f.phys)
	}
	if phys == nil {
		n.release(f, pid)
		return
	}
	var nurses []*user
	switch class {
	case "IMP":
		for range 3 {
			if nu := n.pick(f.nurses); nu != nil && !slices.Contains(nurses, nu) {
				nurses = append(nurses, nu)
			}
		}
	case "EMER":
		on := n.working(f.nurses, d)
		if mc && len(on) > 8 {
			on = on[:8]
		}
		if nu := n.pick(on); nu != nil {
			nurses = append(nurses, nu)
		}
	default:
		if n.float() < 0.4 {
			if nu := n.pick(n.working(f.nurses, d)); nu != nil {
				nurses = append(nurses, nu)
			}
		}
	}
	parts := []any{map[string]any{"individual": map[string]any{"reference": "Practitioner/" + phys.m.PractitionerID}}}
	for _, nu := range nurses {
		parts = append(parts, map[string]any{"individual": map[string]any{"reference": "Practitioner/" + nu.m.PractitionerID}})
	}
	enc := map[string]any{"resourceType": "Encounter", "status": "in-progress",
		"class":           map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class},
		"subject":         map[string]any{"reference": "Patient/" + pid},
		"participant":     parts,
		"period":          map[string]any{"start": now.Format(time.RFC3339)},
		"serviceProvider": map[string]any{"reference": "Organization/" + f.id}}
	er := n.req(ctx, clerk, "POST", "/fhir/Encounter", enc)
	var out map[string]any
	if er == nil || !er.OK() || er.JSON(&out) != nil {
		n.release(f, pid)
		return
	}
	if !now.Before(n.measure) {
		n.arrivals.Add(1)
	}
	st := &stay{enc: out["id"].(string), patient: pid, class: class, body: out, ver: 1, phys: phys, nurses: nurses}
	switch class {
	case "AMB":
		n.task(ctx, phys, now.Add(time.Duration(15+n.intn(100))*time.Minute), func(ctx context.Context) {
			n.chart(ctx, phys, pid, 4)
			if n.float() < 0.4 {
				n.prescribe(ctx, phys, st)
			}
			n.finishStay(ctx, f, phys, st)
		})
		for _, nu := range nurses {
			n.task(ctx, nu, now.Add(time.Duration(5+n.intn(20))*time.Minute), func(ctx context.Context) { n.vitals(ctx, nu, st) })
		}
	case "EMER":
		for _, nu := range nurses {
			n.task(ctx, nu, now.Add(time.Duration(5+n.intn(25))*time.Minute), func(ctx context.Context) {
				n.chart(ctx, nu, pid, 1)
				n.vitals(ctx, nu, st)
			})
		}
		n.task(ctx, phys, now.Add(time.Duration(10+n.intn(50))*time.Minute), func(ctx context.Context) {
			n.chart(ctx, phys, pid, 4)
			if n.float() < 0.5 {
				n.prescribe(ctx, phys, st)
			}
			if n.float() < 0.25 {
				// admitted: a stay of a few days, three nurses
				st.class = "IMP"
				for range 2 {
					if nu := n.pick(f.nurses); nu != nil && !slices.Contains(st.nurses, nu) {
						st.nurses = append(st.nurses, nu)
					}
				}
				n.update(ctx, phys, st, func(b map[string]any) {
					b["class"] = map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}
					ps := []any{}
					for _, u := range append([]*user{st.phys}, st.nurses...) {
						ps = append(ps, map[string]any{"individual": map[string]any{"reference": "Practitioner/" + u.m.PractitionerID}})
					}
					b["participant"] = ps
				})
				n.admit(f, st, now)
				return
			}
			n.finishStay(ctx, f, phys, st)
		})
	case "IMP":
		n.task(ctx, phys, now.Add(time.Duration(30+n.intn(150))*time.Minute), func(ctx context.Context) {
			n.chart(ctx, phys, pid, 4)
			n.prescribe(ctx, phys, st)
		})
		for _, nu := range nurses {
			if from, to, ok := n.works(nu, d); ok && now.Before(now.Truncate(24*time.Hour).Add(to)) && now.After(now.Truncate(24*time.Hour).Add(from)) {
				n.task(ctx, nu, now.Add(time.Duration(20+n.intn(60))*time.Minute), func(ctx context.Context) {
					n.chart(ctx, nu, pid, 2)
					n.vitals(ctx, nu, st)
				})
			}
		}
		n.admit(f, st, now)
	}
}

func (n *work) release(f *facState, pid string) {
	if pid == "" {
		return
	}
	f.mu.Lock()
	delete(f.busy, pid)
	f.mu.Unlock()
}

// admit keeps a stay for 1 to 10 days.
func (n *work) admit(f *facState, st *stay, now time.Time) {
	days := 1 + n.intn(10)
	st.discharge = n.between(now.Truncate(24*time.Hour).Add(time.Duration(days)*24*time.Hour), 10*time.Hour, 14*time.Hour)
	f.mu.Lock()
	f.stays = append(f.stays, st)
	f.mu.Unlock()
}

// update changes a stay's Encounter (reading it first if the simulation did
// not create it).
func (n *work) update(ctx context.Context, u *user, st *stay, change func(map[string]any)) bool {
	if st.body == nil {
		r := n.req(ctx, u, "GET", "/fhir/Encounter/"+st.enc, nil)
		if r == nil || !r.OK() || r.JSON(&st.body) != nil {
			return false
		}
		if m, ok := st.body["meta"].(map[string]any); ok {
			fmt.Sscan(fmt.Sprint(m["versionId"]), &st.ver)
		}
	}
	change(st.body)
	r := n.req(ctx, u, "PUT", "/fhir/Encounter/"+st.enc, st.body)
	if r == nil || !r.OK() {
		st.body = nil
		return false
	}
	var out map[string]any
	if r.JSON(&out) == nil {
		st.body = out
		st.ver++
	}
	return true
}

func (n *work) finishStay(ctx context.Context, f *facState, u *user, st *stay) {
	now := n.e.Stack.Clock.Now()
	n.update(ctx, u, st, func(b map[string]any) {
		b["status"] = "finished"
		per, _ := b["period"].(map[string]any)
		if per == nil {
			per = map[string]any{}
		}
		per["end"] = now.Format(time.RFC3339)
		b["period"] = per
	})
	f.mu.Lock()
	delete(f.busy, st.patient)
	f.bill = append(f.bill, st.patient)
	f.mu.Unlock()
}

func (n *work) discharge(ctx context.Context, f *facState, st *stay) {
	n.chart(ctx, st.phys, st.patient, 2)
	n.finishStay(ctx, f, st.phys, st)
	f.mu.Lock()
	if i := slices.Index(f.stays, st); i >= 0 {
		f.stays = slices.Delete(f.stays, i, i+1)
	}
	f.mu.Unlock()
}

var meds = [][2]string{{"C09AA05", "Ramipril"}, {"N02BE01", "Paracétamol"}, {"B01AB05", "Énoxaparine"}, {"A02BC01", "Oméprazole"}, {"J01CA04", "Amoxicilline"}}

func (n *work) prescribe(ctx context.Context, u *user, st *stay) {
	med := meds[n.intn(len(meds))]
	mr := map[string]any{"resourceType": "MedicationRequest", "status": "active", "intent": "order",
		"medicationCodeableConcept": map[string]any{"coding": []any{map[string]any{"system": "http://www.whocc.no/atc", "code": med[0], "display": med[1]}}},
		"subject":                   map[string]any{"reference": "Patient/" + st.patient},
		"authoredOn":                n.e.Stack.Clock.Now().Format(time.RFC3339),
		"requester":                 map[string]any{"reference": "Practitioner/" + u.m.PractitionerID}}
	if st.enc != "" {
		mr["encounter"] = map[string]any{"reference": "Encounter/" + st.enc}
	}
	n.req(ctx, u, "POST", "/fhir/MedicationRequest", mr)
}

func (n *work) vitals(ctx context.Context, u *user, st *stay) {
	obs := map[string]any{"resourceType": "Observation", "status": "final",
		"category":          []any{map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}}}},
		"code":              map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}}},
		"subject":           map[string]any{"reference": "Patient/" + st.patient},
		"effectiveDateTime": n.e.Stack.Clock.Now().Format(time.RFC3339),
		"valueQuantity":     map[string]any{"value": 60 + n.intn(40), "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
		"performer":         []any{map[string]any{"reference": "Practitioner/" + u.m.PractitionerID}}}
	if st.enc != "" {
		obs["encounter"] = map[string]any{"reference": "Encounter/" + st.enc}
	}
	n.req(ctx, u, "POST", "/fhir/Observation", obs)
}

func (n *work) billing(ctx context.Context, f *facState, b *user) {
	f.mu.Lock()
	if len(f.bill) == 0 {
		f.mu.Unlock()
		return
	}
	p := f.bill[0]
	f.bill = f.bill[1:]
	f.mu.Unlock()
	if r := n.req(ctx, b, "GET", "/fhir/Patient/"+p, nil); r == nil || !r.OK() {
		return
	}
	if n.float() < 0.2 {
		// The charge items of the stay, when the invoice needs checking (a
		// fifth of them: a facility-wide search costs far more than a read,
		// see the report's notes).
		n.req(ctx, b, "GET", "/fhir/ChargeItem?patient="+p, nil)
	}
	n.req(ctx, b, "POST", "/fhir/Invoice", map[string]any{"resourceType": "Invoice", "status": "issued",
		"subject": map[string]any{"reference": "Patient/" + p}, "issuer": map[string]any{"reference": "Organization/" + f.id},
		"date": n.e.Stack.Clock.Now().Format(time.RFC3339), "totalNet": map[string]any{"value": 25 + n.intn(400), "currency": "EUR"}})
}

// onCall: the night nurse calls the on-call physician about an inpatient.
func (n *work) onCall(ctx context.Context, f *facState, oc *user) {
	f.mu.Lock()
	if len(f.stays) == 0 {
		f.mu.Unlock()
		return
	}
	st := f.stays[n.intn(len(f.stays))]
	f.mu.Unlock()
	if st.phys != oc {
		r := n.req(ctx, oc, "POST", "/fhir/Patient/"+st.patient+"/$break-the-glass", map[string]any{"reason": "on-call",
			"detail": "called by the night nurse about this inpatient", "minutes": 240})
		if r == nil || !r.OK() {
			return
		}
		if !n.e.Stack.Clock.Now().Before(n.measure) {
			n.bg.Add(1)
		}
	}
	n.chart(ctx, oc, st.patient, 3)
	if n.float() < 0.3 {
		n.prescribe(ctx, oc, st)
	}
}

// officerLoop: the security officer looks at the alerts every hour of the
// day, re-enables the accounts the guard suspended (here: all of them are
// legitimate) and reviews break-the-glass grants once a day.
func (n *work) officerLoop(ctx context.Context) {
	s := n.e.Sched
	u := n.officer
	for t := n.start.Add(8 * time.Hour); t.Before(n.end); t = t.Add(time.Hour) {
		if h := t.Hour(); h < 8 || h > 20 {
			continue
		}
		if !s.SleepUntil(ctx, t) {
			return
		}
		u.mu.Lock()
		r := n.req(ctx, u, "GET", "/security/alerts?status=open&_count=1000", nil)
		var al struct {
			Alerts []struct {
				ID, Username, Action string
			} `json:"alerts"`
		}
		if r != nil && r.OK() && r.JSON(&al) == nil {
			for _, a := range al.Alerts {
				if a.Action == "suspend" {
					n.req(ctx, u, "POST", "/admin/accounts/"+a.Username+"/enable", nil)
				}
				n.req(ctx, u, "POST", "/security/alerts/"+a.ID+"/acknowledge", map[string]any{"note": "reviewed: normal work"})
			}
		}
		if t.Hour() == 9 {
			q := n.req(ctx, u, "GET", "/security/break-glass", nil)
			var gs []struct{ ID string }
			if q != nil && q.OK() && q.JSON(&gs) == nil {
				for _, g := range gs {
					n.req(ctx, u, "POST", "/security/break-glass/"+g.ID+"/review", map[string]any{"note": "on-call, justified"})
				}
			}
		}
		u.mu.Unlock()
	}
}

// suspensions counts the guard's suspensions of normal-work accounts since
// t.
func (n *work) suspensions(ctx context.Context, since time.Time) int {
	as, err := n.w.Store.Alerts(ctx, "", "", 1_000_000)
	if err != nil {
		return 0
	}
	c := 0
	for _, a := range as {
		if a.Action == "suspend" && !a.At.Before(since) && n.isWorker(a.Account) {
			c++
		}
	}
	return c
}

func (n *work) isWorker(account string) bool {
	id := strings.TrimPrefix(account, "acct-")
	i, ok := n.w.StaffByPractitioner(id)
	if !ok {
		return false
	}
	_, ok = n.users[i]
	return ok
}

func (n *work) result(ctx context.Context, real time.Duration) (*WorkResult, error) {
	r := &WorkResult{Days: n.opt.Days, Warmup: n.opt.Warmup, Staff: len(n.users), Requests: int(n.measured.Load()), AllRequests: int(n.allReq.Load()),
		Errors: int(n.errors.Load()), Denied: int(n.denied.Load()), StepUps: int(n.stepUps.Load()), Answered: int(n.answered.Load()),
		Throttled: int(n.throttled.Load()), BreakGlass: int(n.bg.Load()), Arrivals: int(n.arrivals.Load()), LostTasks: int(n.lost.Load()),
		OnCallNights: int(n.oncall.Load()), Real: real, StepUpsByRole: n.suByRole, UserDaysByRole: n.userDays, SuspensionsByWhy: map[string]int{}}
	for _, v := range n.userDays {
		r.UserDays += v
	}
	r.ReqPerSec = float64(r.AllRequests) / real.Seconds()
	if n.mcFac != nil && n.opt.MassCasualties > 0 {
		r.MassCasualty = fmt.Sprintf("%d casualties at %s on %s, 14:00-17:00", n.opt.MassCasualties, n.mcFac.name, n.start.Add(time.Duration(n.mcDay)*24*time.Hour).Format("Mon 2 Jan"))
	}
	as, err := n.w.Store.Alerts(ctx, "", "", 1_000_000)
	if err != nil {
		return nil, err
	}
	for _, a := range as {
		if a.Action != "suspend" || !n.isWorker(a.Account) {
			continue
		}
		r.SuspensionsAll++
		if !a.At.Before(n.measure) {
			r.Suspensions++
			r.SuspensionsByWhy[shortReason(a.Reason)]++
		}
	}
	r.Slowest = n.kinds(8)
	loads, err := n.loads(ctx)
	if err != nil {
		return nil, err
	}
	r.PerRole = loads
	return r, nil
}

// shortReason drops the numbers of a guard reason, to group them.
func shortReason(s string) string {
	var b strings.Builder
	digits := false
	for _, c := range s {
		if c >= '0' && c <= '9' {
			if !digits {
				b.WriteByte('N')
			}
			digits = true
			continue
		}
		digits = false
		b.WriteRune(c)
	}
	out := b.String()
	if i := strings.Index(out, "canary patient"); i >= 0 {
		return "a canary patient was opened"
	}
	return out
}

// loads reads the guard's daily counts of the working accounts.
func (n *work) loads(ctx context.Context) ([]RoleLoad, error) {
	type acc struct {
		days []int
	}
	by := map[string][]acc{}
	for _, u := range n.users {
		days, err := n.w.Store.GuardBaseline(ctx, u.m.Account, n.end, n.opt.Days)
		if err != nil {
			return nil, err
		}
		by[u.m.Role()] = append(by[u.m.Role()], acc{days})
	}
	var out []RoleLoad
	for _, role := range synth.AllRoles {
		as := by[role]
		if len(as) == 0 {
			continue
		}
		rl := RoleLoad{Role: role, Accounts: len(as)}
		var all []int
		for _, a := range as {
			sum7, sum30 := 0, 0
			for i, v := range a.days {
				if v > 0 {
					all = append(all, v)
				}
				rl.Max = max(rl.Max, v)
				sum30 += v
				sum7 += v
				if i >= 7 {
					sum7 -= a.days[i-7]
				}
				rl.WeekMax = max(rl.WeekMax, sum7)
			}
			rl.MonthMax = max(rl.MonthMax, sum30)
		}
		sort.Ints(all)
		if len(all) > 0 {
			rl.DayP50 = all[len(all)/2]
			rl.DayP99 = all[min(len(all)-1, len(all)*99/100)]
		}
		out = append(out, rl)
	}
	return out, nil
}
