package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"carnet/internal/incident"
	"carnet/internal/store"
	"carnet/internal/synth"
)

// Result is what one scenario measured.
type Result struct {
	ID, Title string
	Attacker  string   // what the attacker did
	Accounts  []string // the accounts it used
	Target    string
	Met       bool
	Why       string // why the target was met or not, in a phrase

	Disclosed  int // distinct patients in 2xx bodies the attacker received
	Requests   int
	StepUps    int // step-ups asked (and not answered)
	Throttled  int
	Suspended  int // accounts suspended
	Stopped    string
	SimToStop  time.Duration // first request to the first suspension, simulated
	RealToStop time.Duration // the same, wall clock
	AfterStop  int           // 2xx answers after the suspension
	Alerts     int           // alerts raised about the attacker's accounts
	Critical   int           // of which suspensions
	Status     map[int]int
	AlertLog   []string // the alerts, oldest first: time since the start, account, action, reason
	Scope      *ScopeCheck
	Notes      []string
	Real       time.Duration // wall time of the scenario
	Sim        time.Duration // simulated time the attacker was active
}

// ScopeCheck compares incident.Scope with what the attacker received.
type ScopeCheck struct {
	Listed, Missed, Extra int
}

// Exact reports that the scope listed exactly the disclosed patients.
func (s *ScopeCheck) Exact() bool { return s.Missed == 0 && s.Extra == 0 }

// Env is what a scenario runs in: a fresh server over the world.
type Env struct {
	World *World
	Stack *Stack
	Sched *Sched
	Rand  *rand.Rand

	r          *Runner
	mu         sync.Mutex
	transports map[string]*http.Transport
}

func (e *Env) transport(ip string) *http.Transport {
	e.mu.Lock()
	defer e.mu.Unlock()
	if t, ok := e.transports[ip]; ok {
		return t
	}
	t := Transport(ip)
	e.transports[ip] = t
	return t
}

// attackerIP returns a new client address for an attacker.
func (e *Env) attackerIP() string {
	e.r.mu.Lock()
	defer e.r.mu.Unlock()
	e.r.ips++
	return ipFor(66, e.r.ips)
}

// pick returns the first staff member with role, not used by an earlier
// scenario, for which ok holds (nil: any), and marks it used.
func (e *Env) pick(role string, ok func(m *Member) bool) *Member {
	e.r.mu.Lock()
	defer e.r.mu.Unlock()
	for _, m := range e.World.Staff {
		if m.Role() == role && !e.r.used[m.Index] && (ok == nil || ok(m)) {
			e.r.used[m.Index] = true
			return m
		}
	}
	return nil
}

// officer returns a client of the security officer (an in-process
// session).
func (e *Env) officer(ctx context.Context) (*Client, error) {
	m := e.World.Officer
	tok, _, err := e.Stack.Session(ctx, m, "127.0.0.9", e.Stack.Clock.Now().Add(30*24*time.Hour))
	if err != nil {
		return nil, err
	}
	c := e.Stack.NewClient(m.Username, e.transport("127.0.0.9"))
	c.Access, c.TOTP = tok, m.TOTP
	return c, nil
}

// finish fills the common numbers of r from the attackers' tallies and
// the alert queue.
func (e *Env) finish(ctx context.Context, r *Result, accounts []string, ts ...*Tally) error {
	t := NewTally()
	for _, x := range ts {
		t.Merge(x)
	}
	r.Disclosed = len(t.Disclosed)
	r.Requests = t.Requests
	r.StepUps = t.StepUps
	r.Throttled = t.Throttled
	r.AfterStop = t.AfterStop
	r.Status = t.Status
	r.Sim = t.LastAt.Sub(t.FirstAt)
	if !t.SuspendedAt.IsZero() {
		r.SimToStop = t.SuspendedAt.Sub(t.FirstAt)
		r.RealToStop = t.RealAt.Sub(t.RealStart)
	}
	for _, acct := range accounts {
		as, err := e.Stack.Alerts(ctx, acct)
		if err != nil {
			return err
		}
		r.Alerts += len(as)
		for i := len(as) - 1; i >= 0; i-- { // oldest first
			a := as[i]
			if a.Severity == "critical" {
				r.Critical++
			}
			at := a.At.Sub(e.Stack.World.Epoch.Add(9 * time.Hour)).Round(time.Second)
			r.AlertLog = append(r.AlertLog, fmt.Sprintf("+%s %s %s: %s", at, a.Username, a.Action, a.Reason))
		}
		a, err := e.World.Store.AccountByID(ctx, acct)
		if err == nil && a.Status == store.StatusSuspended {
			r.Suspended++
		}
	}
	return nil
}

// scope runs incident.Scope on username and compares it with what the
// attacker's client received.
func (e *Env) scope(ctx context.Context, username string, t *Tally) (*ScopeCheck, error) {
	rep, err := incident.Scope(ctx, e.World.Store, incident.Query{Account: username})
	if err != nil {
		return nil, err
	}
	sc := &ScopeCheck{Listed: len(rep.Patients)}
	listed := map[string]bool{}
	for _, p := range rep.Patients {
		listed[p.ID] = true
		if !t.Disclosed[p.ID] {
			sc.Extra++
		}
	}
	for p := range t.Disclosed {
		if !listed[p] {
			sc.Missed++
		}
	}
	return sc, nil
}

// Scenario is one replay.
type Scenario struct {
	ID, Title, Target string
	// Hours of simulated time the attacker has.
	Hours int
	Run   func(ctx context.Context, e *Env, r *Result) error
}

// Scenarios are the attack replays of issue 6, in order.
func Scenarios() []Scenario {
	return []Scenario{
		{"S1", "the seed attack with a group administrator's stolen password, no OTP", "0 patients", 24, runS1},
		{"S1b", "the seed attack with a group administrator's stolen session (after MFA)", "≤ 25 patients; incident scope exact", 24, runS1b},
		{"S2", "a physician's stolen session reading beyond their care relationships", "≤ 50 patients; incident scope exact", 72, runS2},
		{"S3", "slow-and-low: a billing clerk's session under every per-hour limit, 30 days", "≤ 200 patients over 30 days, and detected", 30 * 24, runS3},
		{"S3w", "slow-and-low under every window's soft limit (day, week, 30 days too), 30 days", "informative: not a target of issue 6", 30 * 24, runS3w},
		{"S4", "ten compromised accounts of different roles and facilities at once", "≤ 250 patients in all", 72, runS4},
		{"S5", "a curious insider opening 5 chosen patients through break-the-glass", "all 5 flagged for review", 5 * 24, runS5},
		{"S6", "an admission clerk's stolen session walking its facility's patient list", "≤ 100 patients, nothing after the stop", 72, runS6},
	}
}

// ---- S1 ---------------------------------------------------------------------

func runS1(ctx context.Context, e *Env, r *Result) error {
	m := e.pick(synth.RoleGroupAdmin, nil)
	if m == nil {
		return fmt.Errorf("no group administrator")
	}
	pw, err := e.World.Password(ctx, m)
	if err != nil {
		return err
	}
	r.Accounts = []string{m.Username}
	r.Attacker = "logs in with the right password and no code, then wrong TOTP codes and recovery-code guesses from 4 addresses (honouring the back-off), then calls the API without a token"
	var clients []*Client
	for range 4 {
		c := e.Stack.NewClient(m.Username, e.transport(e.attackerIP()))
		c.Parse = true
		clients = append(clients, c)
	}
	tries := 0
	for i := 0; i < 120; i++ {
		c := clients[i%len(clients)]
		var otp string
		switch {
		case i == 0:
			otp = ""
		case i%2 == 1:
			otp = fmt.Sprintf("%06d", e.Rand.IntN(1_000_000))
		default:
			otp = recoveryGuess(e.Rand)
		}
		res := c.Login(ctx, m.Username, pw, otp)
		tries++
		if res.OK() {
			r.Notes = append(r.Notes, "a guessed code was accepted")
			break
		}
		wait := 3 * time.Second
		if res.RetryAfter > 0 {
			wait = res.RetryAfter
		}
		if !e.Sched.Sleep(ctx, wait) {
			break
		}
	}
	r.Notes = append(r.Notes, fmt.Sprintf("%d login attempts with the right password, none with a valid second factor", tries))
	c := clients[0]
	c.Access = ""
	for _, p := range []string{"/fhir/Patient", "/fhir/Patient?_count=500", "/fhir/$export", "/fhir/Patient/$export",
		"/fhir/Encounter?_include=Encounter:patient", "/admin/accounts", "/security/alerts"} {
		c.Get(ctx, p)
	}
	c.PostJSON(ctx, "/admin/accounts", map[string]any{"username": "x.helper", "roles": []string{"group-admin"}, "facilities": []string{e.World.Group.GroupID()}})
	var ts []*Tally
	for _, c := range clients {
		ts = append(ts, c.T)
	}
	if err := e.finish(ctx, r, []string{m.Account}, ts...); err != nil {
		return err
	}
	r.Stopped = "never logged in"
	r.Met = r.Disclosed == 0
	r.Why = "no login without the second factor"
	return nil
}

func recoveryGuess(rng *rand.Rand) string {
	const b32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	var b strings.Builder
	for i := range 16 {
		if i > 0 && i%4 == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(b32[rng.IntN(32)])
	}
	return b.String()
}

// ---- S1b --------------------------------------------------------------------

func runS1b(ctx context.Context, e *Env, r *Result) error {
	w := e.World
	m := e.pick(synth.RoleGroupAdmin, nil)
	if m == nil {
		return fmt.Errorf("no second group administrator")
	}
	c, err := e.stolenSession(ctx, m, e.attackerIP())
	if err != nil {
		return err
	}
	r.Accounts = []string{m.Username}
	a := newAttacker(c, e.Sched, 2*time.Second)
	a.tries = 1 // a script: a refused avenue is left for the next
	fac := w.Group.Facilities[0].ID
	known := samplePatients(w, e.Rand, 10)
	// The administrator's own surface first (what a group administrator
	// can do), then the patient data.
	// 1. A new account of its own, with a clinical role.
	var newTally *Tally
	newUser := "s.martin-sim" + randomHex(2)
	res := a.postJSON(ctx, "/admin/accounts", map[string]any{"username": newUser, "display": "Sophie Martin", "roles": []string{"physician"}, "facilities": []string{fac}})
	var newAcct string
	if res != nil && res.OK() {
		var out struct {
			Enrolment struct {
				Username, Password, TOTPSecret string
			} `json:"enrolment"`
			Requests []struct{ ID string } `json:"role_requests"`
		}
		json.Unmarshal(res.Body, &out)
		r.Notes = append(r.Notes, fmt.Sprintf("created account %s (password and TOTP secret returned; %d role request(s) pending a second administrator)", newUser, len(out.Requests)))
		for _, rq := range out.Requests {
			if d := a.do(ctx, "POST", "/admin/role-requests/"+rq.ID+"/approve", nil, ""); d != nil {
				r.Notes = append(r.Notes, fmt.Sprintf("approving its own role request: %d", d.Status))
			}
		}
		nc := e.Stack.NewClient(newUser, e.transport(e.attackerIP()))
		nc.TOTP, nc.Parse = out.Enrolment.TOTPSecret, true
		if lr := nc.Login(ctx, newUser, out.Enrolment.Password, nc.Code()); lr.OK() {
			if acct, err := w.Store.AccountByUsername(ctx, newUser); err == nil {
				newAcct = acct.ID
				r.Accounts = append(r.Accounts, newUser)
			}
			na := newAttacker(nc, e.Sched, 2*time.Second)
			na.tries = 1
			na.walk(ctx, "/fhir/Patient?_count=500", 1000)
			for _, id := range known[:5] {
				na.get(ctx, "/fhir/Patient/"+id)
				na.postJSON(ctx, "/fhir/Patient/"+id+"/$break-the-glass", map[string]any{"reason": "emergency", "detail": "patient admitted unconscious, history needed", "minutes": 60})
			}
			r.Notes = append(r.Notes, fmt.Sprintf("logged in with the new account: %s", statusSummary(nc.T)))
		} else {
			r.Notes = append(r.Notes, fmt.Sprintf("login with the new account: %d", lr.Status))
		}
		newTally = nc.T
	} else if res != nil {
		r.Notes = append(r.Notes, fmt.Sprintf("creating an account: %d", res.Status))
	}
	// 2. A role for itself.
	if rr := a.postJSON(ctx, "/admin/role-requests", map[string]any{"username": m.Username, "op": "grant", "role": "physician", "facility": fac}); rr != nil {
		r.Notes = append(r.Notes, fmt.Sprintf("requesting a role for itself: %d", rr.Status))
	}
	// 3. Break-the-glass.
	if bg := a.postJSON(ctx, "/fhir/Patient/"+known[0]+"/$break-the-glass", map[string]any{"reason": "emergency", "detail": "unconscious patient, need allergies", "minutes": 240}); bg != nil {
		r.Notes = append(r.Notes, fmt.Sprintf("break-the-glass: %d", bg.Status))
	}
	// 4. "Disable the guard through configuration": there is no such
	// endpoint; it tries the plausible ones, then silencing the reviewer.
	disabled := 0
	for _, p := range [][2]string{{"PUT", "/admin/config"}, {"POST", "/admin/guard"}, {"POST", "/admin/guard/disable"}, {"PATCH", "/admin/settings"},
		{"PUT", "/admin/limits"}, {"DELETE", "/security/alerts"}, {"POST", "/fhir/$guard"}, {"PUT", "/security/guard"}} {
		if res := a.do(ctx, p[0], p[1], []byte(`{"guard":{"enabled":false},"limits":{"physician":{"hard":[0,0,0,0,0,0]}}}`), "application/json"); res != nil && res.OK() {
			disabled++
		}
	}
	r.Notes = append(r.Notes, fmt.Sprintf("configuration endpoints that accepted a change: %d of 8", disabled))
	if al := a.get(ctx, "/security/alerts"); al != nil {
		r.Notes = append(r.Notes, fmt.Sprintf("reading the alert queue: %d", al.Status))
	}
	if off := w.Officer; off != nil {
		if d := a.do(ctx, "POST", "/admin/accounts/"+off.Username+"/disable", nil, ""); d != nil {
			r.Notes = append(r.Notes, fmt.Sprintf("disabling the security officer's account: %d", d.Status))
			if d.OK() {
				// The operator puts the officer back for the next scenarios.
				if _, err := e.Stack.Auth.SetStatus(ctx, off.Username, store.StatusActive, "sim: restored after S1b"); err != nil {
					return err
				}
			}
		}
	}
	// 5. Bulk export: the FHIR endpoints, then an export request (which a
	// security officer other than the requester must approve).
	exp := 0
	for _, p := range []string{"/fhir/$export", "/fhir/Patient/$export", "/fhir/Group/" + w.Group.GroupID() + "/$export"} {
		if res := a.get(ctx, p); res != nil && res.OK() {
			exp++
		}
	}
	for _, f := range []string{fac, w.Group.GroupID()} {
		res := a.postJSON(ctx, "/export-requests", map[string]any{"facility": f, "types": []string{"Patient", "MedicationRequest"},
			"reason": "annual activity statistics for the board", "recipient": "board@example.org", "max_patients": 1000000, "valid_hours": 24})
		if res == nil {
			break
		}
		r.Notes = append(r.Notes, fmt.Sprintf("export request for facility %s: %d", f, res.Status))
		var er struct{ ID string }
		if res.OK() && json.Unmarshal(res.Body, &er) == nil && er.ID != "" {
			if ap := a.do(ctx, "POST", "/export-requests/"+er.ID+"/approve", []byte(`{"note":"approved"}`), "application/json"); ap != nil {
				r.Notes = append(r.Notes, fmt.Sprintf("approving its own export request: %d", ap.Status))
			}
			if g := a.get(ctx, "/fhir/$export?_exportRequest="+url.QueryEscape(er.ID)); g != nil {
				r.Notes = append(r.Notes, fmt.Sprintf("downloading it: %d", g.Status))
			}
		}
	}
	r.Notes = append(r.Notes, fmt.Sprintf("FHIR $export endpoints that answered 2xx: %d of 3", exp))
	// 6. Search everything and walk every page.
	for _, t := range []string{"Patient", "Encounter", "Observation", "Condition", "MedicationRequest", "CareTeam", "ChargeItem", "Invoice"} {
		a.walk(ctx, "/fhir/"+t+"?_count=500", 10_000)
	}
	a.walk(ctx, "/fhir?_type=Patient,Encounter&_count=500", 10_000)
	a.walk(ctx, "/fhir/Patient?organization=Organization/"+fac+"&_count=500", 10_000)
	// 7. Patient by patient: ids from the results (none), then known or
	// guessed ids.
	for _, id := range known {
		a.get(ctx, "/fhir/Patient/"+id)
		a.get(ctx, "/fhir/MedicationRequest?patient="+id)
	}
	for range 10 {
		a.get(ctx, "/fhir/Patient/"+randomUUID(e.Rand))
	}
	// 8. _include and _revinclude chains, through the directory it may read.
	for _, p := range []string{
		"/fhir/Organization?_revinclude=Patient:organization&_count=500",
		"/fhir/Practitioner?_revinclude=Patient:general-practitioner&_count=500",
		"/fhir/Encounter?_include=Encounter:patient&_count=500",
		"/fhir/Patient?_revinclude=Observation:patient&_revinclude=MedicationRequest:patient&_count=500",
		"/fhir/MedicationRequest?_include=MedicationRequest:patient&_count=500",
	} {
		a.walk(ctx, p, 10_000)
	}
	// 9. History.
	for _, id := range known[:3] {
		a.get(ctx, "/fhir/Patient/"+id+"/_history")
		a.get(ctx, "/fhir/Patient/"+id+"/_history/1")
	}
	a.get(ctx, "/fhir/Patient/_history")
	a.get(ctx, "/fhir/_history")
	a.probe(ctx, 5)
	tallies := []*Tally{c.T}
	accts := []string{m.Account}
	if newTally != nil {
		tallies = append(tallies, newTally)
	}
	if newAcct != "" {
		accts = append(accts, newAcct)
	}
	if err := e.finish(ctx, r, accts, tallies...); err != nil {
		return err
	}
	r.Stopped = stopLabel(a)
	sc, err := e.scope(ctx, m.Username, c.T)
	if err != nil {
		return err
	}
	if newTally != nil && newAcct != "" {
		sc2, err := e.scope(ctx, newUser, newTally)
		if err != nil {
			return err
		}
		sc.Listed += sc2.Listed
		sc.Missed += sc2.Missed
		sc.Extra += sc2.Extra
	}
	r.Scope = sc
	r.Attacker = "searches every patient type and walks every page, reads known and guessed ids, _include/_revinclude through the directory, history, $export and an export request, creates an account (and logs in with it), approves its role request, asks a role for itself, break-the-glass, configuration endpoints, disables the security officer"
	r.Met = r.Disclosed <= 25 && sc.Exact()
	r.Why = fmt.Sprintf("%d patients; scope missed %d, extra %d", r.Disclosed, sc.Missed, sc.Extra)
	return nil
}

// stopLabel says how an attacker's run ended: suspended (possibly on one of
// its last tries), or why it stopped otherwise.
func stopLabel(a *attacker) string {
	a.c.T.mu.Lock()
	susp := !a.c.T.SuspendedAt.IsZero()
	a.c.T.mu.Unlock()
	switch {
	case susp:
		return "suspended"
	case a.why != "":
		return a.why
	case a.gaveUp > 0:
		return fmt.Sprintf("gave up (%d requests met a step-up it cannot answer)", a.gaveUp)
	}
	return ""
}

func samplePatients(w *World, rng *rand.Rand, n int) []string {
	var out []string
	for len(out) < n {
		p := &w.Patients[rng.IntN(len(w.Patients))]
		out = append(out, p.ID)
	}
	return out
}

func randomUUID(rng *rand.Rand) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func statusSummary(t *Tally) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ks []int
	for k := range t.Status {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%d×%d", t.Status[k], k))
	}
	return fmt.Sprintf("%d requests (%s), %d patients", t.Requests, strings.Join(parts, ", "), len(t.Disclosed))
}

// ---- S2 ---------------------------------------------------------------------

func runS2(ctx context.Context, e *Env, r *Result) error {
	w := e.World
	// The physician who reaches the most patients (attending physician of
	// the most), at a clinic.
	var best *Member
	for _, m := range w.Staff {
		if m.Role() == synth.RolePhysician && len(m.Fac) > 0 && w.Group.Facilities[m.Fac[0]].Kind == "clinic" && !e.r.isUsed(m.Index) &&
			(best == nil || len(w.GPOf[m.Index]) > len(w.GPOf[best.Index])) {
			best = m
		}
	}
	if best == nil {
		return fmt.Errorf("no physician")
	}
	e.r.use(best.Index)
	c, err := e.stolenSession(ctx, best, e.attackerIP())
	if err != nil {
		return err
	}
	r.Accounts = []string{best.Username}
	r.Notes = append(r.Notes, fmt.Sprintf("%s is the attending physician of %d patients at %s", best.Username, len(w.GPOf[best.Index]), w.Group.Facilities[best.Fac[0]].Name))
	a := newAttacker(c, e.Sched, 3*time.Second)
	// 1. Their own patients, page by page, and each one's prescriptions.
	a.walk(ctx, walkPath(20), 100_000)
	got := c.T.snapshot()
	for i, p := range got {
		if i >= 40 || a.stopped {
			break
		}
		a.get(ctx, "/fhir/MedicationRequest?patient="+p)
	}
	// 2. Guessed ids.
	for range 15 {
		a.get(ctx, "/fhir/Patient/"+randomUUID(e.Rand))
	}
	// 3. Other facilities: their lists, and patients whose ids it knows.
	home := best.Fac[0]
	for f := range w.Group.Facilities {
		if f != home {
			a.walk(ctx, "/fhir/Patient?organization=Organization/"+w.Group.Facilities[f].ID+"&_count=50", 100)
		}
	}
	others := otherPatients(w, e.Rand, home, 10, best.Index)
	for _, p := range others {
		a.get(ctx, "/fhir/Patient/"+p)
	}
	// 4. Break-the-glass, repeatedly.
	for _, p := range others {
		bg := a.postJSON(ctx, "/fhir/Patient/"+p+"/$break-the-glass", map[string]any{"reason": "emergency", "detail": "patient in the emergency room, need history", "minutes": 240})
		if bg != nil && bg.OK() {
			a.get(ctx, "/fhir/Patient/"+p)
			a.get(ctx, "/fhir/MedicationRequest?patient="+p)
		}
	}
	a.probe(ctx, 5)
	if err := e.finish(ctx, r, []string{best.Account}, c.T); err != nil {
		return err
	}
	r.Stopped = stopLabel(a)
	sc, err := e.scope(ctx, best.Username, c.T)
	if err != nil {
		return err
	}
	r.Scope = sc
	r.Attacker = "walks its patient list 20 a page (then reads their prescriptions), guesses ids, lists the other facilities' patients, reads known ids there, then breaks the glass on 10 of them"
	r.Met = r.Disclosed <= 50 && sc.Exact()
	r.Why = fmt.Sprintf("%d patients; scope missed %d, extra %d", r.Disclosed, sc.Missed, sc.Extra)
	return nil
}

// otherPatients returns n patients of facilities other than home, alive,
// that staff member s does not care for.
func otherPatients(w *World, rng *rand.Rand, home, n, s int) []string {
	var out []string
	for tries := 0; len(out) < n && tries < 100_000; tries++ {
		p := &w.Patients[rng.IntN(len(w.Patients))]
		if p.Home == home || p.Second == home || p.Deceased || p.GP == s {
			continue
		}
		out = append(out, p.ID)
	}
	return out
}

func (t *Tally) snapshot() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.Disclosed))
	for p := range t.Disclosed {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// ---- S3 ---------------------------------------------------------------------

// slowWalk walks the account's patient list count a page, perDay pages
// each weekday from 08:00, every gap, for days days, and keeps the session
// alive with its refresh token (every few hours, nights and weekends too).
// Asked for a step-up it cannot answer, it stops for the day and tries
// again the next working day.
func slowWalk(ctx context.Context, e *Env, a *attacker, count, perDay, days int, gap time.Duration) {
	start := e.Sched.Now()
	day0 := start.Truncate(24 * time.Hour)
	path := walkPath(count)
	for d := 0; d < days && !a.stopped && path != ""; d++ {
		day := day0.Add(time.Duration(d) * 24 * time.Hour)
		if wd := day.Weekday(); wd != time.Saturday && wd != time.Sunday {
			for k := 0; k < perDay && path != "" && !a.stopped; k++ {
				at := day.Add(8*time.Hour + time.Duration(k)*gap)
				if at.Before(e.Sched.Now()) {
					continue
				}
				if !keepAlive(ctx, e, a, at) {
					return
				}
				r := a.get(ctx, path)
				if r == nil {
					return
				}
				if r.OK() {
					path = NextLink(r.Body)
				} else if r.StepUp {
					break // asked for a code it does not have: tries again tomorrow
				}
			}
		}
		if !keepAlive(ctx, e, a, day.Add(24*time.Hour)) {
			return
		}
	}
}

// keepAlive sleeps until t, refreshing the stolen session before its
// refresh token expires.
func keepAlive(ctx context.Context, e *Env, a *attacker, t time.Time) bool {
	for {
		if a.c.Refresh == "" {
			a.stop("session lost")
			return false
		}
		by := a.c.RefreshBy.Add(-time.Hour)
		if !by.Before(t) {
			return e.Sched.SleepUntil(ctx, t)
		}
		if !e.Sched.SleepUntil(ctx, by) {
			return false
		}
		a.c.refresh(ctx)
	}
}

func runS3(ctx context.Context, e *Env, r *Result) error {
	return slowAndLow(ctx, e, r, 20, 20, 31*time.Minute, "walks its facility's patient list 20 a page, one page every 31 minutes from 08:00 on weekdays (at most 40 patients in any hour: under the billing clerk's 1-minute, 10-minute and hourly soft limits of 20, 20 and 45), for 30 days, keeping its session alive with the refresh token; asked for a step-up it tries again the next working day",
		func(r *Result) (bool, string) {
			det := r.Alerts > 0 || r.Suspended > 0
			return r.Disclosed <= 200 && det, fmt.Sprintf("%d patients, detected: %v", r.Disclosed, det)
		})
}

func runS3w(ctx context.Context, e *Env, r *Result) error {
	return slowAndLow(ctx, e, r, 10, 4, 2*time.Hour, "walks its facility's patient list 10 a page, 4 pages a working day (40 patients a day, 200 a week, about 880 in 30 days: under every soft limit of the billing clerk, 90 a day, 300 a week, 900 in 30 days), for 30 days",
		func(r *Result) (bool, string) {
			det := r.Alerts > 0 || r.Suspended > 0
			return r.Disclosed <= 200 && det, fmt.Sprintf("%d patients, detected: %v", r.Disclosed, det)
		})
}

func slowAndLow(ctx context.Context, e *Env, r *Result, count, perDay int, gap time.Duration, what string, judge func(*Result) (bool, string)) error {
	w := e.World
	m := e.pick(synth.RoleBillingClerk, func(m *Member) bool {
		return len(m.Fac) > 0 && w.Group.Facilities[m.Fac[0]].Kind == "clinic"
	})
	if m == nil {
		return fmt.Errorf("no billing clerk")
	}
	c, err := e.stolenSession(ctx, m, e.attackerIP())
	if err != nil {
		return err
	}
	r.Accounts = []string{m.Username}
	r.Notes = append(r.Notes, fmt.Sprintf("%s, billing clerk at %s (%d patients there)", m.Username, w.Group.Facilities[m.Fac[0]].Name, len(w.ByFacility[m.Fac[0]])))
	a := newAttacker(c, e.Sched, time.Second)
	a.tries = 1
	slowWalk(ctx, e, a, count, perDay, 30, gap)
	a.probe(ctx, 3)
	if err := e.finish(ctx, r, []string{m.Account}, c.T); err != nil {
		return err
	}
	r.Stopped = stopLabel(a)
	if r.Stopped == "" {
		r.Stopped = "30 days over"
	}
	r.Attacker = what
	r.Met, r.Why = judge(r)
	return nil
}

// ---- S4 ---------------------------------------------------------------------

func runS4(ctx context.Context, e *Env, r *Result) error {
	roles := []string{synth.RolePhysician, synth.RolePhysician, synth.RolePhysician, synth.RoleNurse, synth.RoleNurse,
		synth.RolePharmacist, synth.RoleAdmissionClerk, synth.RoleAdmissionClerk, synth.RoleBillingClerk, synth.RoleBillingClerk}
	facUsed := map[int]bool{}
	var ms []*Member
	for _, role := range roles {
		m := e.pick(role, func(m *Member) bool { return len(m.Fac) > 0 && !facUsed[m.Fac[0]] })
		if m == nil {
			m = e.pick(role, func(m *Member) bool { return len(m.Fac) > 0 })
		}
		if m == nil {
			return fmt.Errorf("no %s left", role)
		}
		facUsed[m.Fac[0]] = true
		ms = append(ms, m)
	}
	var tallies []*Tally
	var accts []string
	var left atomic.Int32
	for _, m := range ms {
		c, err := e.stolenSession(ctx, m, e.attackerIP())
		if err != nil {
			return err
		}
		tallies = append(tallies, c.T)
		accts = append(accts, m.Account)
		r.Accounts = append(r.Accounts, m.Username)
		left.Add(1)
		e.Sched.Go(func() {
			defer left.Add(-1)
			a := newAttacker(c, e.Sched, 3*time.Second)
			a.walk(ctx, walkPath(20), 100_000)
			a.probe(ctx, 3)
		})
	}
	// The scenario's own actor sleeps until the attackers are done.
	for left.Load() > 0 && e.Sched.Sleep(ctx, time.Minute) {
	}
	if err := e.finish(ctx, r, accts, tallies...); err != nil {
		return err
	}
	per := make([]string, len(ms))
	for i, m := range ms {
		per[i] = fmt.Sprintf("%s %s: %d", m.Role(), m.Username, len(tallies[i].Disclosed))
	}
	r.Notes = append(r.Notes, "per account: "+strings.Join(per, "; "))
	r.Stopped = fmt.Sprintf("%d of 10 suspended", r.Suspended)
	r.Attacker = "10 stolen sessions (3 physicians, 2 nurses, a pharmacist, 2 admission and 2 billing clerks, 10 facilities) each walk their patient list 20 a page at once, as the S2 attacker"
	r.Met = r.Disclosed <= 250
	r.Why = fmt.Sprintf("%d patients in all", r.Disclosed)
	return nil
}

// ---- S5 ---------------------------------------------------------------------

func runS5(ctx context.Context, e *Env, r *Result) error {
	w := e.World
	m := e.pick(synth.RoleNurse, func(m *Member) bool {
		return len(m.Fac) > 0 && w.Group.Facilities[m.Fac[0]].Kind == "clinic"
	})
	if m == nil {
		return fmt.Errorf("no nurse")
	}
	// A legitimate session: the insider is the account's owner and holds
	// the authenticator.
	c := e.Stack.NewClient(m.Username, e.transport(e.attackerIP()))
	c.TOTP, c.Parse = m.TOTP, true
	tok, _, err := e.Stack.Session(ctx, m, "127.66.0.5", e.Stack.Clock.Now().Add(6*24*time.Hour))
	if err != nil {
		return err
	}
	c.Access = tok
	r.Accounts = []string{m.Username}
	home := m.Fac[0]
	care := map[int]bool{}
	for _, p := range w.TeamOf[m.Index] {
		care[p] = true
	}
	var targets []string
	for _, p := range w.ByFacility[home] {
		if len(targets) == 5 {
			break
		}
		pt := &w.Patients[p]
		if !care[p] && !pt.Deceased && e.Rand.IntN(4) == 0 {
			targets = append(targets, pt.ID)
		}
	}
	reasons := [][2]string{
		{"continuity-of-care", "patient transferred from the other ward, checking treatment"},
		{"patient-request", "the patient asked me to check their last results"},
		{"emergency", "patient unwell in the corridor, need allergies"},
		{"other", "checking an address for a form the patient left behind"},
		{"continuity-of-care", "follow-up of a patient I cared for last month"},
	}
	day0 := e.Sched.Now().Truncate(24 * time.Hour)
	for i, p := range targets {
		at := day0.Add(time.Duration(i)*24*time.Hour + time.Duration(10+e.Rand.IntN(7))*time.Hour)
		if !e.Sched.SleepUntil(ctx, at) {
			break
		}
		bg := c.DoAnswering(ctx, "POST", "/fhir/Patient/"+p+"/$break-the-glass", mustJSON(map[string]any{"reason": reasons[i][0], "detail": reasons[i][1], "minutes": 30}), "application/fhir+json")
		if !bg.OK() {
			r.Notes = append(r.Notes, fmt.Sprintf("break-the-glass %d: %d", i+1, bg.Status))
			continue
		}
		for _, q := range []string{"/fhir/Patient/" + p, "/fhir/Condition?patient=" + p, "/fhir/MedicationRequest?patient=" + p} {
			c.DoAnswering(ctx, "GET", q, nil, "")
			e.Sched.Sleep(ctx, time.Minute)
		}
	}
	if err := e.finish(ctx, r, []string{m.Account}, c.T); err != nil {
		return err
	}
	// What the security officer sees.
	off, err := e.officer(ctx)
	if err != nil {
		return err
	}
	alerts := off.Get(ctx, "/security/alerts?username="+url.QueryEscape(m.Username))
	var al struct {
		Alerts []struct{ Reason string } `json:"alerts"`
	}
	json.Unmarshal(alerts.Body, &al)
	queue := off.Get(ctx, "/security/break-glass")
	var q []struct {
		Username, Patient string
		Reviewed          bool
	}
	json.Unmarshal(queue.Body, &q)
	inAlerts, inQueue := 0, 0
	for _, p := range targets {
		for _, a := range al.Alerts {
			if strings.Contains(a.Reason, p) {
				inAlerts++
				break
			}
		}
		for _, g := range q {
			if g.Patient == p && g.Username == m.Username && !g.Reviewed {
				inQueue++
				break
			}
		}
	}
	r.Notes = append(r.Notes, fmt.Sprintf("of the 5 patients: %d named in an alert (GET /security/alerts: %d), %d in the unreviewed break-the-glass queue (GET /security/break-glass: %d)", inAlerts, alerts.Status, inQueue, queue.Status))
	r.Stopped = "not stopped (a legitimate account; flagged for review)"
	r.Attacker = "a nurse opens 5 patients of her clinic she does not care for, one a day, through break-the-glass with plausible reasons, and reads their identity, conditions and prescriptions"
	r.Met = len(targets) == 5 && inAlerts == 5 && inQueue == 5
	r.Why = fmt.Sprintf("%d of 5 in the alerts, %d of 5 in the review queue", inAlerts, inQueue)
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// ---- S6 ---------------------------------------------------------------------

func runS6(ctx context.Context, e *Env, r *Result) error {
	w := e.World
	// The admission clerk of the facility with the most patients.
	big := 0
	for f := range w.Group.Facilities {
		if len(w.ByFacility[f]) > len(w.ByFacility[big]) {
			big = f
		}
	}
	m := e.pick(synth.RoleAdmissionClerk, func(m *Member) bool { return len(m.Fac) > 0 && m.Fac[0] == big })
	if m == nil {
		m = e.pick(synth.RoleAdmissionClerk, nil)
	}
	if m == nil {
		return fmt.Errorf("no admission clerk")
	}
	c, err := e.stolenSession(ctx, m, e.attackerIP())
	if err != nil {
		return err
	}
	r.Accounts = []string{m.Username}
	fac := w.Group.Facilities[m.Fac[0]]
	r.Notes = append(r.Notes, fmt.Sprintf("%s, admission clerk at %s (%d patients there)", m.Username, fac.Name, len(w.ByFacility[m.Fac[0]])))
	a := newAttacker(c, e.Sched, 3*time.Second)
	a.walk(ctx, "/fhir/Patient?organization=Organization/"+fac.ID, 100_000)
	before := c.T.Count()
	a.probe(ctx, 10)
	if err := e.finish(ctx, r, []string{m.Account}, c.T); err != nil {
		return err
	}
	r.Stopped = stopLabel(a)
	r.Attacker = "walks GET /fhir/Patient?organization=<its facility> page by page (20 a page), waiting when throttled, pausing an hour and slowing down when asked for a step-up; after the stop keeps trying (next page, searches, refresh token)"
	r.Met = r.Disclosed <= 100 && r.AfterStop == 0 && c.T.Count() == before
	r.Why = fmt.Sprintf("%d patients, %d answers after the stop", r.Disclosed, r.AfterStop)
	return nil
}
