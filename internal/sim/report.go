package sim

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"carnet/internal/guard"
	"carnet/internal/synth"
)

// Meta describes the run for the report.
type Meta struct {
	Command  string // the command line
	Machine  string // CPU, cores, memory
	Date     time.Time
	Version  string
	Patients int
	Staff    int // staff of the group
	Working  int // staff in the simulated work
	Backend  string
	LoadTime time.Duration
	Seed     int64
}

// Summary writes one line per scenario.
func (r *Report) Summary(w io.Writer) {
	for _, res := range r.Results {
		fmt.Fprintf(w, "%-4s %-9s %6d patients, %6d requests, stopped: %-22s target %s (%s)\n",
			res.ID, metWord(res.Met), res.Disclosed, res.Requests, res.Stopped, res.Target, res.Why)
	}
	if wr := r.Work; wr != nil {
		fmt.Fprintf(w, "%-4s %-9s %d user-days, %d requests: %d false suspensions (%.2f per 10,000 user-days, target ≤ 1), %.4f step-ups per user-day (target ≤ 0.05)\n",
			"work", metWord(wr.Met()), wr.UserDays, wr.Requests, wr.Suspensions, wr.PerTenThousand(), wr.StepUpsPerUserDay())
	}
}

func metWord(ok bool) string {
	if ok {
		return "MET"
	}
	return "NOT MET"
}

func yes(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**NOT met**"
}

func dur(d time.Duration) string {
	switch {
	case d == 0:
		return "–"
	case d < time.Minute:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d < 2*time.Hour:
		return fmt.Sprintf("%.1f min", d.Minutes())
	default:
		return fmt.Sprintf("%.1f h", d.Hours())
	}
}

// Markdown writes the report (bench/ATTACKS.md).
func (r *Report) Markdown(w io.Writer, m Meta) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("# Attack replay: what a stolen account gets\n\n")
	p("Written by `carnet sim` (issue 6). Every scenario drives the real HTTP API of a Carnet server built as `carnet serve` builds it (argon2id passwords and TOTP, policy, durable audit log with its witness, exfiltration guard, alert queue) over a sealed store holding the synthetic group, on loopback, with a simulated clock.\n\n")
	p("- Command: `%s`\n", m.Command)
	p("- Date: %s; Carnet %s\n", m.Date.UTC().Format("2006-01-02 15:04 MST"), m.Version)
	p("- Machine: %s\n", m.Machine)
	p("- World: %d patients (+ %d canaries), 17 facilities, %d staff with accounts (%d working in the normal-work simulation), seed %d, %s store sealed at rest, loaded in %s\n",
		m.Patients, 17*3, m.Staff, m.Working, m.Seed, m.Backend, dur(m.LoadTime))
	if r.NoGuard {
		p("- **Served WITHOUT the exfiltration guard** (baseline)\n")
	}
	p("- Wall time of the run (after the load): %s\n\n", dur(r.Real))

	p("## Summary\n\n| scenario | what | patients disclosed | requests | stopped | target | |\n| --- | --- | ---: | ---: | --- | --- | --- |\n")
	for _, res := range r.Results {
		p("| %s | %s | %d | %d | %s | %s | %s |\n", res.ID, res.Title, res.Disclosed, res.Requests, res.Stopped, res.Target, yes(res.Met))
	}
	if wr := r.Work; wr != nil {
		p("| normal work | %d staff, %d measured days | – | %d | %d false suspensions (%.2f per 10,000 user-days), %.4f step-ups per user-day | ≤ 1 per 10,000 user-days; ≤ 0.05 step-ups per user-day | %s |\n",
			wr.Staff, wr.Days, wr.Requests, wr.Suspensions, wr.PerTenThousand(), wr.StepUpsPerUserDay(), yes(wr.Met()))
	}
	p("\n")
	if len(r.Results) == 0 {
		r.afterAttacks(w, m)
		return
	}
	p("S3w is not one of issue 6's scenarios: it shows what the soft limits leave to an attacker who keeps under all of them.\n\n")
	p("**Patients disclosed** counts the distinct patients in every 2xx body the attacker received: Patient ids, the patient (subject) of every other resource, in resources and Bundle entries, and the patient of a break-the-glass grant. **Stopped**: suspended by the guard (403 `suspended`, tokens revoked), or how the attack otherwise ended.\n\n")

	p("## How the attackers behave\n\n")
	p("A stolen session is an access and a refresh token taken from the victim right after a real login (password and TOTP code): the attacker keeps it alive with the refresh token, but does not hold the authenticator, so it cannot answer a step-up. The scripts are persistent: they wait out a 429's Retry-After and retry; asked for a step-up, they pause an hour, halve their pace and retry (three tries per request, then the next request; S1b's script moves on at once); they stop when suspended or when the session is revoked, then keep trying a few requests (next page, searches, refresh) to check that nothing more comes. Each scenario runs against a fresh start: a new server and guard (the guard's tables emptied), the clock back at Monday 09:00 of the simulated week, and accounts no earlier scenario used, on the store as loaded (normal work runs last).\n\n")

	for _, res := range r.Results {
		p("## %s: %s\n\n", res.ID, res.Title)
		p("| | |\n| --- | --- |\n")
		p("| attacker | %s |\n", res.Attacker)
		p("| accounts | %s |\n", strings.Join(res.Accounts, ", "))
		p("| patients disclosed before the stop | **%d** |\n", res.Disclosed)
		p("| requests | %d (%s) |\n", res.Requests, statuses(res.Status))
		p("| step-ups asked, not answered | %d |\n", res.StepUps)
		p("| throttled (429) | %d |\n", res.Throttled)
		p("| how it ended | %s |\n", res.Stopped)
		if res.SimToStop > 0 || res.RealToStop > 0 {
			p("| time to suspension | %s simulated, %s real |\n", dur(res.SimToStop), dur(res.RealToStop))
		} else {
			p("| time to suspension | – (no suspension) |\n")
		}
		p("| simulated time active | %s |\n", dur(res.Sim))
		p("| 2xx answers after the suspension | %d |\n", res.AfterStop)
		p("| alerts raised | %d (%d critical: suspensions) |\n", res.Alerts, res.Critical)
		if res.Scope != nil {
			p("| `incident.Scope` on the account(s) | lists %d patients: missed %d, extra %d |\n", res.Scope.Listed, res.Scope.Missed, res.Scope.Extra)
		}
		p("| target | %s: %s (%s) |\n", res.Target, yes(res.Met), res.Why)
		p("| wall time | %s |\n\n", dur(res.Real))
		for _, n := range res.Notes {
			p("- %s\n", n)
		}
		if len(res.Notes) > 0 {
			p("\n")
		}
		if len(res.AlertLog) > 0 {
			p("Alerts (simulated time since the start, account, action, reason):\n\n")
			for i, a := range res.AlertLog {
				if i == 12 {
					p("- … %d more\n", len(res.AlertLog)-i)
					break
				}
				p("- %s\n", a)
			}
			p("\n")
		}
	}
	r.afterAttacks(w, m)
}

func (r *Report) afterAttacks(w io.Writer, m Meta) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	if wr := r.Work; wr != nil {
		r.workMarkdown(w, wr)
	}
	p("## Limits in force\n\n")
	limitsMarkdown(w, r.Limits)
	p("\n## Clocks\n\n")
	p("The guard (`guard.Options.Now`), the auth service (`auth.Options.Now`: token lifetimes, TOTP codes, login back-off) and the policy (`policy.Decider.Now`: the care window) read one simulated clock, and the synthetic group is generated with the same reference date (Monday 2 March 2026, 00:00 UTC), so the stays in progress in the data are in progress when the simulation starts and a TOTP code computed by a simulated person is valid at the server. The clock stands still while simulated people act and jumps to the next one's wake-up when all wait (one second slots for the attacks, two minutes for normal work). Still on the wall clock: audit entry times, break-the-glass grant times (a grant lasts 4 wall-clock hours, longer than the replay runs, so grants never expire in simulated time) and the guard's housekeeping (`guard.Housekeep` is not run: it would drop every simulated count, which is months in the wall clock's past).\n")
}

func (r *Report) workMarkdown(w io.Writer, wr *WorkResult) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("## Normal work\n\n")
	p("%d staff work %d simulated days after %d days of warm-up (not counted: the first days meet every patient for the first time). Everyone answers a step-up with a fresh code from their authenticator and retries; a suspended account is re-enabled by the security officer at their next hourly look at the alerts (the suspension is counted).\n\n", wr.Staff, wr.Days, wr.Warmup)
	p("| | |\n| --- | --- |\n")
	p("| user-days (staff member × day with at least one request, measured days) | %d |\n", wr.UserDays)
	p("| requests (measured days; all days) | %d; %d (%.0f req/s over %s) |\n", wr.Requests, wr.AllRequests, wr.ReqPerSec, dur(wr.Real))
	p("| requests per user-day | %.1f |\n", float64(wr.Requests)/max(1, float64(wr.UserDays)))
	p("| admissions (measured) | %d |\n", wr.Arrivals)
	p("| on-call nights; break-the-glass grants (measured) | %d; %d |\n", wr.OnCallNights, wr.BreakGlass)
	if wr.MassCasualty != "" {
		p("| mass-casualty afternoon | %s |\n", wr.MassCasualty)
	}
	p("| **false suspensions** | **%d** (%.2f per 10,000 user-days; target ≤ 1): %s |\n", wr.Suspensions, wr.PerTenThousand(), reasons(wr.SuspensionsByWhy))
	p("| **step-ups asked** | **%d** (%.4f per user-day; target ≤ 0.05), %d answered; by role: %s |\n", wr.StepUps, wr.StepUpsPerUserDay(), wr.Answered, byRole(wr.StepUpsByRole))
	p("| throttled (429) | %d |\n", wr.Throttled)
	p("| refused (403, not suspensions); server errors | %d; %d |\n", wr.Denied, wr.Errors)
	p("| tasks lost to a suspension | %d |\n", wr.LostTasks)
	p("| targets | %s |\n\n", yes(wr.Met()))
	p("What the staff do (each patient opened is a Patient read, then the searches of its Observations, MedicationRequests and Conditions, as a chart would):\n\n")
	p("- **admissions**: each working admission clerk registers about %.0f arrivals a weekday (half on weekends): a search by family name and birth date, a new Patient when not found (12%%), an Encounter in progress with the physician (the attending physician 60%% of the time at home) and nurses; clinics: 55%% consultations, 28%% emergencies, 17%% stays;\n", r.workArrivals())
	p("- **consultations and emergencies**: the physician opens the chart 15 minutes to 2 hours later, prescribes (40%%, emergencies 50%%) and closes the Encounter; nurses take vitals (Observation); a quarter of emergencies become stays;\n")
	p("- **stays** (1 to 10 days, three nurses): the attending physician's round each working morning (chart, a prescription 25%% of the time), each participant nurse on shift opens the chart and records vitals; discharge late morning; the stays in progress in the loaded data go on;\n")
	p("- **billing**: each working billing clerk takes discharged stays from the facility's queue (Patient read, a new Invoice, and one time in five a ChargeItem search: see the request times below), up to 25 a day;\n")
	p("- **pharmacists** list the facility's new active prescriptions three times a day;\n")
	p("- **retirement homes**: nurses see 12 residents of their care teams a shift (their floor of 25), physicians 8 of their residents a day;\n")
	p("- **nights**: nurses on 12-hour night shifts do their rounds; each clinic has an on-call physician, called on average %.1f times a night (Poisson) about inpatients who are not theirs: each call is a break-the-glass (reason on-call) then the chart;\n", r.workOnCall())
	p("- **shifts**: physicians weekdays 08:00-18:00 (a fifth of them Saturday and Sunday mornings), nurses 12-hour day or night shifts every other day, clerks, pharmacists weekdays;\n")
	p("- **the security officer** looks at the alerts every hour from 08:00 to 20:00, re-enables suspended accounts and acknowledges the alerts, and reviews the break-the-glass queue every morning.\n\n")
	p("New patients per account and day, as the guard counts them (a patient counts again after 7 days), over the measured days, against the day's soft limit, and the largest 7-day and 30-day sums against theirs:\n\n")
	p("| role | accounts | day p50 | day p99 | day max | soft day | 7-day max | soft 7 days | 30-day max | soft 30 days |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, l := range wr.PerRole {
		lim, ok := r.Limits[l.Role]
		if !ok {
			p("| %s | %d | %d | %d | %d | – | %d | – | %d | – |\n", l.Role, l.Accounts, l.DayP50, l.DayP99, l.Max, l.WeekMax, l.MonthMax)
			continue
		}
		p("| %s | %d | %d | %d | %d | %d | %d | %d | %d | %d |\n", l.Role, l.Accounts, l.DayP50, l.DayP99, l.Max, lim.Soft[guard.Day], l.WeekMax, lim.Soft[guard.Week], l.MonthMax, lim.Soft[guard.Month])
	}
	p("\n")
	if len(wr.Slowest) > 0 {
		p("Where the server's time went (all days; latency under the simulated load, %d requests in flight at most, on the machine above):\n\n", r.workOpt.Concurrency)
		p("| request | count | mean latency | share of the time |\n| --- | ---: | ---: | ---: |\n")
		for _, k := range wr.Slowest {
			p("| `%s` | %d | %.1f ms | %.0f %% |\n", k.Kind, k.N, float64(k.Mean.Microseconds())/1000, k.Share*100)
		}
		p("\n")
	}
}

// the work options are not kept in the result: read them back from the
// defaults the runner used.
func (r *Report) workArrivals() float64 {
	if r.Work == nil {
		return 0
	}
	return r.workOpt.Arrivals
}

func (r *Report) workOnCall() float64 { return r.workOpt.OnCallCalls }

func reasons(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%d× \"%s\"", m[k], k))
	}
	return strings.Join(parts, "; ")
}

func byRole(m map[string]int) string {
	var parts []string
	for _, role := range synth.AllRoles {
		if m[role] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", role, m[role]))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func statuses(m map[int]int) string {
	var ks []int
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%d× %d", m[k], k))
	}
	return strings.Join(parts, ", ")
}

func limitsMarkdown(w io.Writer, lim map[string]guard.Limits) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("New patients per account (soft: a step-up is asked, or a 429 in the one-minute window; hard: suspension), per sliding window:\n\n")
	p("| role | 1 min | 10 min | 1 h | 24 h | 7 days | 30 days |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, role := range synth.AllRoles {
		l, ok := lim[role]
		if !ok {
			continue
		}
		p("| %s |", role)
		for i := range guard.NumWindows {
			h := "–"
			if l.Hard[i] > 0 {
				h = fmt.Sprint(l.Hard[i])
			}
			p(" %d / %s |", l.Soft[i], h)
		}
		p("\n")
	}
	p("| roles that reach no patient | 1 / – | 1 / 5 | 1 / 5 | 1 / 5 | 1 / 5 | 1 / 5 |\n\n")
	p("Other defaults of `guard.Options`: a patient counts again after 7 days; a step-up lifts the soft limits of its session for 8 hours; break-the-glass: a step-up from grant %d in 24 hours, suspension from grant %d; 20 refused requests for patient data in an hour suspend; 10 unanswered step-ups in an hour, or one asked again after an unanswered one earlier in the week, suspend; a canary patient in a response of 10 patients or more (or opened, or the target of a break-the-glass) suspends. The day's soft limit rises with the account's own 14-day baseline (twice its mean), never to the hard limit.\n", guard.DefaultBreakGlassSoft+1, guard.DefaultBreakGlassHard+1)
}
