// Package guard is Carnet's exfiltration guard (DESIGN.md §3): it sits on
// the request path after the policy and before the response, sees every
// patient a response would disclose before it is disclosed, and decides:
// allow, ask for a step-up (a fresh one-time code), throttle, or suspend the
// account and alert the security officer.
//
// Its counters live in the store, so several instances sharing one
// PostgreSQL database count together. Each instance only remembers which
// patients an account was already counted for (per freshness period), so
// re-reading the same charts — most of clinical work — costs a map lookup.
//
// What it counts per account, over sliding windows from a minute to 30
// days: distinct patients given (reads, searches, histories, includes),
// break-the-glass grants, denied requests for patient data, step-ups asked
// and not answered. Limits are per role (the peer group), the day's soft
// limit rises with the account's own baseline, and hard limits no score
// lifts. Canary patients — generated records no workflow reaches — suspend
// whoever is given one.
package guard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"carnet/internal/store"
)

// Store is the guard's shared state (store.SQL).
type Store interface {
	GuardTouch(ctx context.Context, account string, patients []string, now, fresh time.Time, since []time.Time) ([]int, int, error)
	GuardEvent(ctx context.Context, account, kind string, now time.Time, since []time.Time) ([]int, error)
	GuardBaseline(ctx context.Context, account string, now time.Time, days int) ([]int, error)
	GuardAccounts(ctx context.Context, kind string, since time.Time) (int, error)
	GuardLast(ctx context.Context, account string, kinds ...string) ([]time.Time, error)
	SteppedUp(ctx context.Context, session string) (time.Time, error)
	RecordStepUp(ctx context.Context, session, account string, t time.Time) error
	Suspend(ctx context.Context, account, reason string, now time.Time) (bool, error)
	AddAlert(ctx context.Context, a *store.Alert) error
	Canaries(ctx context.Context) (map[string]string, error)
}

// Verdict is what the guard decided.
type Verdict int

// Verdicts, from mildest to strongest.
const (
	Allow    Verdict = iota
	Flag             // allowed, and an alert asks the security officer to look
	StepUp           // refused until the session proves a fresh second factor
	Throttle         // refused for RetryAfter
	Suspend          // refused; the account is suspended until reviewed
)

func (v Verdict) String() string {
	return [...]string{"allow", "flag", "step-up", "throttle", "suspend"}[v]
}

// Decision is the guard's answer for one request.
type Decision struct {
	Verdict    Verdict
	Reason     string
	RetryAfter time.Duration
}

// Refused reports whether the response must not disclose anything.
func (d Decision) Refused() bool { return d.Verdict >= StepUp }

// Note is the decision as the audit entry records it ("" for a plain allow).
func (d Decision) Note() string {
	if d.Verdict == Allow && d.Reason == "" {
		return ""
	}
	if d.Reason == "" {
		return d.Verdict.String()
	}
	return d.Verdict.String() + ": " + d.Reason
}

// Input is one request as the guard sees it.
type Input struct {
	Account, Username, Session, Client string
	Roles                              []string
	Action                             string   // the audit action: read, search, history, export, break-the-glass, ...
	Patients                           []string // every patient the response would disclose
}

// Event kinds counted besides patients.
const (
	EventBreakGlass = "break-the-glass"
	EventDenied     = "denied"
	EventStepUp     = "step-up-asked"
	EventSteppedUp  = "stepped-up"
	EventSuspended  = "suspended"
)

// Break-the-glass grants per 24 hours before a step-up is asked, and
// before the account is suspended (Options.BreakGlassSoft, BreakGlassHard).
const (
	DefaultBreakGlassSoft = 3
	DefaultBreakGlassHard = 12
)

// Options configure a Guard.
type Options struct {
	// Now is the clock (default time.Now; the attack replay simulates one).
	Now    func() time.Time
	Logger *slog.Logger
	// Limits per role (default DefaultLimits).
	Limits map[string]Limits
	// Fresh: a patient given to an account is counted again only after
	// this long (default 7 days: continuity of care — today's ward is
	// mostly yesterday's — costs nothing; a walk meets only new patients).
	Fresh time.Duration
	// StepUpFor: how long a step-up lifts the soft limits of its session
	// (default 8 hours).
	StepUpFor time.Duration
	// BreakGlassSoft, BreakGlassHard: grants per 24 hours before a step-up
	// is asked (default 3) and before the account is suspended (default
	// 12). A stolen session is stopped by the step-up at the 4th grant; the
	// hard limit is for someone who holds the authenticator too, and must
	// spare the on-call physician of a clinic (called about 3 inpatients a
	// night on average, 7 or more one night in 30).
	BreakGlassSoft, BreakGlassHard int
	// DeniedHard: denied requests for patient data per hour before the
	// account is suspended (default 20).
	DeniedHard int
	// StepUpHard: step-ups asked and not answered per hour before the
	// account is suspended (default 10).
	StepUpHard int
	// BulkListing: a canary in a response with at least this many patients
	// suspends (default 10); in a smaller one (a name search that happened
	// to match) it is flagged for review.
	BulkListing int
	// GroupAlarm: this many accounts suspended by the guard within an hour
	// raise a group-level alert (several accounts compromised at once,
	// DESIGN T4; default 3).
	GroupAlarm int
	// Alerts receive every alert after it is stored (webhook, log).
	Alerts []Notifier
}

// Notifier delivers an alert (a webhook); it must not block.
type Notifier interface {
	Notify(a *store.Alert)
}

// Guard decides. It is safe for concurrent use.
type Guard struct {
	st  Store
	opt Options
	log *slog.Logger

	accts sync.Map // account id -> *account

	mu        sync.Mutex
	sightings map[string]int64 // account, kind -> the day it was last recorded

	canaries atomic.Pointer[map[string]string]
	canaryAt atomic.Int64 // unix nanos of the last canary load
}

type account struct {
	mu    sync.RWMutex
	known map[string]time.Time // patient -> when it was counted
}

// New returns a Guard over st.
func New(st Store, opt Options) *Guard {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Limits == nil {
		opt.Limits = DefaultLimits
	}
	if opt.Fresh <= 0 {
		opt.Fresh = 7 * 24 * time.Hour
	}
	if opt.StepUpFor <= 0 {
		opt.StepUpFor = 8 * time.Hour
	}
	if opt.BreakGlassSoft <= 0 {
		opt.BreakGlassSoft = DefaultBreakGlassSoft
	}
	if opt.BreakGlassHard <= 0 {
		opt.BreakGlassHard = DefaultBreakGlassHard
	}
	if opt.DeniedHard <= 0 {
		opt.DeniedHard = 20
	}
	if opt.StepUpHard <= 0 {
		opt.StepUpHard = 10
	}
	if opt.GroupAlarm <= 0 {
		opt.GroupAlarm = 3
	}
	if opt.BulkListing <= 0 {
		opt.BulkListing = 10
	}
	return &Guard{st: st, opt: opt, log: opt.Logger, sightings: map[string]int64{}}
}

// Now is the guard's clock.
func (g *Guard) Now() time.Time { return g.opt.Now().UTC() }

func (g *Guard) account(id string) *account {
	if a, ok := g.accts.Load(id); ok {
		return a.(*account)
	}
	a, _ := g.accts.LoadOrStore(id, &account{known: map[string]time.Time{}})
	return a.(*account)
}

// forget drops what this instance remembers of an account (suspension).
func (g *Guard) forget(id string) { g.accts.Delete(id) }

// canaryOf returns the facility of patient if it is a canary. The list is
// reloaded every minute (another instance or a seed may have added some).
func (g *Guard) canaryOf(ctx context.Context, patient string) (string, bool) {
	m := g.canaries.Load()
	if m == nil || time.Since(time.Unix(0, g.canaryAt.Load())) > time.Minute {
		if fresh, err := g.st.Canaries(ctx); err == nil {
			m = &fresh
			g.canaries.Store(m)
			g.canaryAt.Store(time.Now().UnixNano())
		} else if m == nil {
			g.log.ErrorContext(ctx, "guard: canaries", "err", err)
			return "", false
		}
	}
	f, ok := (*m)[patient]
	return f, ok
}

// Check decides on a response that would disclose in.Patients. Counting is
// done before the answer: a refused request's patients stay counted (they
// were asked for), so a retry after a step-up is not counted twice.
func (g *Guard) Check(ctx context.Context, in Input) (Decision, error) {
	if len(in.Patients) == 0 || in.Account == "" {
		return Decision{}, nil
	}
	now := g.Now()
	flag := ""
	// Canaries first: nothing else matters once one is touched.
	for _, p := range in.Patients {
		fac, ok := g.canaryOf(ctx, p)
		if !ok {
			continue
		}
		switch {
		case in.Action == "export":
			// An approved export of a facility carries its canaries: they
			// then trace a leak of that export (incident trace).
			flag = "an approved export carried canary patient " + p
		case in.Action == "search" && len(in.Patients) < g.opt.BulkListing:
			flag = "a search result carried canary patient " + p
		default:
			return g.suspend(ctx, in, now, fmt.Sprintf("canary patient %s of %s was %s", p, fac, verbOf(in.Action, len(in.Patients))))
		}
	}
	d, err := g.count(ctx, in, now)
	if err != nil || d.Verdict != Allow {
		return d, err
	}
	if flag != "" {
		g.alert(ctx, in, now, "warning", Flag, flag, "")
		return Decision{Verdict: Flag, Reason: flag}, nil
	}
	return d, nil
}

func verbOf(action string, n int) string {
	switch action {
	case "read", "vread", "history":
		return "opened (" + action + ")"
	case "break-the-glass":
		return "the target of a break-the-glass"
	}
	return fmt.Sprintf("disclosed in a %s of %d patients", action, n)
}

// count counts the patients the account was not given recently and holds
// the counts against its limits.
func (g *Guard) count(ctx context.Context, in Input, now time.Time) (Decision, error) {
	if in.Action == "export" {
		return Decision{}, nil // approved by a second person: not a walk
	}
	a := g.account(in.Account)
	fresh := now.Add(-g.opt.Fresh)
	a.mu.RLock()
	novel := 0
	for _, p := range in.Patients {
		if t, ok := a.known[p]; !ok || t.Before(fresh) {
			novel++
		}
	}
	a.mu.RUnlock()
	if novel == 0 {
		return Decision{}, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var ps []string
	for _, p := range in.Patients {
		if t, ok := a.known[p]; !ok || t.Before(fresh) {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return Decision{}, nil
	}
	since := make([]time.Time, NumWindows)
	for i, w := range Windows {
		since[i] = now.Add(-w)
	}
	counts, _, err := g.st.GuardTouch(ctx, in.Account, ps, now, fresh, since)
	if err != nil {
		return Decision{}, fmt.Errorf("guard: %w", err)
	}
	g.sight(ctx, in, now)
	lim := limitsFor(g.opt.Limits, in.Roles)
	for i := range NumWindows {
		if h := lim.Hard[i]; h > 0 && counts[i] > h {
			return g.suspend(ctx, in, now, fmt.Sprintf("%d patients in %s, over the hard limit of %d for %s", counts[i], windowNames[i], h, strings.Join(in.Roles, ",")))
		}
	}
	if counts[Minute] > lim.Soft[Minute] {
		return Decision{Verdict: Throttle, RetryAfter: time.Minute,
			Reason: fmt.Sprintf("%d patients in 1 minute, over %d", counts[Minute], lim.Soft[Minute])}, nil
	}
	// A step-up asked in the last 24 hours and not answered since holds:
	// waiting does not lift it, only a fresh code does.
	last, err := g.st.GuardLast(ctx, in.Account, EventStepUp, EventSteppedUp)
	if err != nil {
		return Decision{}, fmt.Errorf("guard: %w", err)
	}
	// remember marks the patients as given when the answer is not refused
	// (a stepped-up session over a soft limit too): re-reading them is
	// then the fast path, not a database round trip per request.
	remember := func(d Decision, err error) (Decision, error) {
		if err == nil && !d.Refused() {
			for _, p := range ps {
				a.known[p] = now
			}
		}
		return d, err
	}
	if ask := last[0]; !ask.IsZero() && now.Sub(ask) < 24*time.Hour && last[1].Before(ask) {
		return remember(g.stepUp(ctx, in, now, "a step-up asked at "+ask.Format("15:04 UTC")+" is still unanswered"))
	}
	// An unusual context (a client address or an hour of the day new to
	// an account with a history) halves the soft limits. It is only looked
	// up when halving could matter.
	unusual := ""
	for i := TenMinutes; i < NumWindows; i++ {
		if counts[i] > lim.Soft[i]/2 {
			unusual = g.unusual(ctx, in, now)
			break
		}
	}
	for i := TenMinutes; i < NumWindows; i++ {
		soft := lim.Soft[i]
		if unusual != "" {
			soft = max(1, soft/2)
		}
		if counts[i] <= soft {
			continue
		}
		if i >= Day {
			// The account's own baseline lifts the longer soft limits.
			if b, err := g.baseline(ctx, in.Account, now); err == nil {
				scaled := b * float64(Windows[i]/(24*time.Hour)) * 2
				soft = min(max(soft, int(scaled)), max(lim.Hard[i]-1, soft))
			}
			if counts[i] <= soft {
				continue
			}
		}
		reason := fmt.Sprintf("%d patients in %s, over %d", counts[i], windowNames[i], soft)
		if unusual != "" {
			reason += " (halved: " + unusual + ")"
		}
		return remember(g.stepUp(ctx, in, now, reason))
	}
	remember(Decision{}, nil)
	if len(a.known) > 50_000 {
		for p, t := range a.known {
			if t.Before(fresh) {
				delete(a.known, p)
			}
		}
	}
	return Decision{}, nil
}

// unusual says why the context of in is unusual for its account ("" if it
// is not, or if the account has too little history to say): a client
// address first seen in the last 24 hours, or an hour of the day (UTC) the
// account was first active at in the last 24 hours, when it has a history.
func (g *Guard) unusual(ctx context.Context, in Input, now time.Time) string {
	if b, err := g.baseline(ctx, in.Account, now); err != nil || b == 0 {
		return "" // no history: nothing is unusual yet
	}
	var why []string
	for _, k := range contextKinds(in, now) {
		counts, err := g.st.GuardEvent(ctx, in.Account, k[0], time.Time{}, []time.Time{now.Add(-Windows[Month]), now.Add(-24 * time.Hour)})
		if err == nil && counts[0] == counts[1] {
			why = append(why, k[1])
		}
	}
	return strings.Join(why, ", ")
}

// contextKinds are the sightings of in: its client address and its hour.
func contextKinds(in Input, now time.Time) [][2]string {
	ks := [][2]string{{fmt.Sprintf("hour %02d", now.Hour()), fmt.Sprintf("unusual hour %02d:00 UTC", now.Hour())}}
	if in.Client != "" {
		ks = append(ks, [2]string{"client " + in.Client, "new client address " + in.Client})
	}
	return ks
}

// sight records the client address and hour of in for its account, at most
// once a day each (per instance): the history unusual reads.
func (g *Guard) sight(ctx context.Context, in Input, now time.Time) {
	day := now.Unix() / 86400
	for _, k := range contextKinds(in, now) {
		key := in.Account + "\x00" + k[0]
		g.mu.Lock()
		seen := g.sightings[key] == day
		g.sightings[key] = day
		g.mu.Unlock()
		if seen {
			continue
		}
		if _, err := g.st.GuardEvent(ctx, in.Account, k[0], now, nil); err != nil {
			g.log.ErrorContext(ctx, "guard: sighting", "err", err)
		}
	}
}

// baseline is the account's mean patients per active day over the last 14
// days (0 with fewer than 5 active days: a new account has no baseline).
func (g *Guard) baseline(ctx context.Context, account string, now time.Time) (float64, error) {
	days, err := g.st.GuardBaseline(ctx, account, now, 14)
	if err != nil {
		return 0, err
	}
	var sum, active int
	for _, n := range days {
		if n > 0 {
			sum += n
			active++
		}
	}
	if active < 5 {
		return 0, nil
	}
	return float64(sum) / float64(active), nil
}

// stepUp asks for a fresh second factor unless the session gave one
// recently. An account that keeps asking without answering, or that was
// already asked on an earlier day this week and never answered, is
// suspended: a stolen session cannot answer.
func (g *Guard) stepUp(ctx context.Context, in Input, now time.Time, reason string) (Decision, error) {
	if in.Session != "" {
		t, err := g.st.SteppedUp(ctx, in.Session)
		if err != nil {
			return Decision{}, fmt.Errorf("guard: %w", err)
		}
		if !t.IsZero() && now.Sub(t) < g.opt.StepUpFor && !t.After(now.Add(time.Minute)) {
			return Decision{Verdict: Allow, Reason: "stepped up: " + reason}, nil
		}
	}
	asked, err := g.st.GuardEvent(ctx, in.Account, EventStepUp, now, []time.Time{now.Add(-time.Hour), now.Add(-7 * 24 * time.Hour)})
	if err != nil {
		return Decision{}, fmt.Errorf("guard: %w", err)
	}
	if asked[0] > g.opt.StepUpHard {
		return g.suspend(ctx, in, now, fmt.Sprintf("asked for a step-up %d times in an hour without answering (%s)", asked[0], reason))
	}
	answered, err := g.st.GuardEvent(ctx, in.Account, EventSteppedUp, time.Time{}, []time.Time{now.Add(-7 * 24 * time.Hour)})
	if err != nil {
		return Decision{}, fmt.Errorf("guard: %w", err)
	}
	if earlier := asked[1] - asked[0]; earlier > 0 && answered[0] == 0 {
		return g.suspend(ctx, in, now, "asked for a step-up again after an unanswered one this week ("+reason+")")
	}
	if asked[0] == 1 {
		g.alert(ctx, in, now, "warning", StepUp, "step-up asked: "+reason, "")
	}
	return Decision{Verdict: StepUp, Reason: reason}, nil
}

// RecordStepUp records a successful step-up of session: its soft limits
// are lifted until the returned time, and the step-ups asked of the
// account this week count as answered.
func (g *Guard) RecordStepUp(ctx context.Context, session, account string) (time.Time, error) {
	now := g.Now()
	if err := g.st.RecordStepUp(ctx, session, account, now); err != nil {
		return time.Time{}, err
	}
	if _, err := g.st.GuardEvent(ctx, account, EventSteppedUp, now, nil); err != nil {
		return time.Time{}, err
	}
	return now.Add(g.opt.StepUpFor), nil
}

// BreakGlass decides on a break-the-glass grant before it is made. Every
// grant is flagged for review; too many in a day ask for a step-up, then
// suspend.
func (g *Guard) BreakGlass(ctx context.Context, in Input) (Decision, error) {
	now := g.Now()
	for _, p := range in.Patients {
		if fac, ok := g.canaryOf(ctx, p); ok {
			return g.suspend(ctx, in, now, fmt.Sprintf("canary patient %s of %s was the target of a break-the-glass", p, fac))
		}
	}
	n, err := g.st.GuardEvent(ctx, in.Account, EventBreakGlass, now, []time.Time{now.Add(-24 * time.Hour)})
	if err != nil {
		return Decision{}, fmt.Errorf("guard: %w", err)
	}
	switch {
	case n[0] > g.opt.BreakGlassHard:
		return g.suspend(ctx, in, now, fmt.Sprintf("%d break-the-glass grants in 24 hours, over %d", n[0], g.opt.BreakGlassHard))
	case n[0] > g.opt.BreakGlassSoft:
		d, err := g.stepUp(ctx, in, now, fmt.Sprintf("%d break-the-glass grants in 24 hours, over %d", n[0], g.opt.BreakGlassSoft))
		if err != nil || d.Refused() {
			return d, err
		}
	}
	reason := fmt.Sprintf("break-the-glass on patient %s (%d in 24 hours): review it", strings.Join(in.Patients, ","), n[0])
	g.alert(ctx, in, now, "warning", Flag, reason, "")
	return Decision{Verdict: Flag, Reason: reason}, nil
}

// Denied counts a request for patient data the policy refused (or a probe
// for a record that does not exist); too many in an hour suspend.
func (g *Guard) Denied(ctx context.Context, in Input) (Decision, error) {
	if in.Account == "" {
		return Decision{}, nil
	}
	now := g.Now()
	n, err := g.st.GuardEvent(ctx, in.Account, EventDenied, now, []time.Time{now.Add(-time.Hour)})
	if err != nil {
		return Decision{}, fmt.Errorf("guard: %w", err)
	}
	if n[0] > g.opt.DeniedHard {
		return g.suspend(ctx, in, now, fmt.Sprintf("%d refused requests for patient data in an hour, over %d", n[0], g.opt.DeniedHard))
	}
	return Decision{}, nil
}

// suspend locks the account, revokes its tokens and alerts.
func (g *Guard) suspend(ctx context.Context, in Input, now time.Time, reason string) (Decision, error) {
	ctx = context.WithoutCancel(ctx)
	changed, err := g.st.Suspend(ctx, in.Account, "guard: "+reason, now)
	if err != nil {
		return Decision{}, fmt.Errorf("guard: suspend: %w", err)
	}
	g.forget(in.Account)
	if changed {
		g.alert(ctx, in, now, "critical", Suspend, reason, "")
		g.groupAlarm(ctx, in, now)
	}
	return Decision{Verdict: Suspend, Reason: reason}, nil
}

// groupAlarm counts a suspension group-wide: when GroupAlarm accounts were
// suspended within an hour, the security officer gets one group alert (at
// most one an hour): several accounts at once is a campaign, not a user.
func (g *Guard) groupAlarm(ctx context.Context, in Input, now time.Time) {
	if _, err := g.st.GuardEvent(ctx, in.Account, EventSuspended, now, nil); err != nil {
		g.log.ErrorContext(ctx, "guard: group count", "err", err)
		return
	}
	n, err := g.st.GuardAccounts(ctx, EventSuspended, now.Add(-time.Hour))
	if err != nil || n < g.opt.GroupAlarm {
		return
	}
	raised, err := g.st.GuardEvent(ctx, "", "group-alarm", time.Time{}, []time.Time{now.Add(-time.Hour)})
	if err != nil || raised[0] > 0 {
		return
	}
	if _, err := g.st.GuardEvent(ctx, "", "group-alarm", now, nil); err != nil {
		return
	}
	g.alert(ctx, Input{Account: "", Username: "(group)"}, now, "critical", Flag,
		fmt.Sprintf("%d accounts suspended by the guard within an hour: several accounts are compromised at once", n),
		"see the suspension alerts of the last hour; consider forcing password and MFA resets group-wide")
}

func (g *Guard) alert(ctx context.Context, in Input, now time.Time, severity string, v Verdict, reason, detail string) {
	if detail == "" {
		detail = fmt.Sprintf("action %s, %d patients in the response, client %s, session %s, roles %s",
			in.Action, len(in.Patients), in.Client, shortSession(in.Session), strings.Join(in.Roles, ","))
	}
	a := &store.Alert{ID: newID(), At: now, Account: in.Account, Username: in.Username, Severity: severity,
		Action: v.String(), Reason: reason, Detail: detail, Status: "open"}
	if err := g.st.AddAlert(context.WithoutCancel(ctx), a); err != nil {
		g.log.ErrorContext(ctx, "guard: alert not stored", "err", err)
	}
	lvl := slog.LevelWarn
	if severity == "critical" {
		lvl = slog.LevelError
	}
	g.log.Log(ctx, lvl, "guard alert", "alert", a.ID, "severity", severity, "action", a.Action,
		"account", in.Account, "username", in.Username, "client", in.Client, "reason", reason)
	for _, n := range g.opt.Alerts {
		n.Notify(a)
	}
}

func shortSession(s string) string {
	if len(s) > 8 {
		return s[:8] + "…"
	}
	return s
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// PatientRoutes are the audit actions that concern patient data (a denial
// of one counts).
var PatientRoutes = []string{"read", "vread", "history", "search", "break-the-glass", "export"}

// IsPatientAction reports whether action concerns patient data.
func IsPatientAction(action string) bool { return slices.Contains(PatientRoutes, action) }

// Forgetter drops old guard counts (store.SQL).
type Forgetter interface {
	GuardForget(ctx context.Context, before time.Time) error
}

// Housekeep drops counts older than the longest window, hourly, until ctx
// ends. Several instances may run it: deleting twice is harmless.
func Housekeep(ctx context.Context, st Forgetter, log *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if err := st.GuardForget(ctx, time.Now().Add(-Windows[Month]-24*time.Hour)); err != nil && ctx.Err() == nil {
			log.Error("guard housekeeping", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
