package guard

import "time"

// Windows are the sliding windows the guard counts patients over.
var Windows = [NumWindows]time.Duration{time.Minute, 10 * time.Minute, time.Hour, 24 * time.Hour, 7 * 24 * time.Hour, 30 * 24 * time.Hour}

// NumWindows is the number of counting windows.
const NumWindows = 6

// Window indexes.
const (
	Minute = iota
	TenMinutes
	Hour
	Day
	Week
	Month
)

var windowNames = [NumWindows]string{"1 minute", "10 minutes", "1 hour", "24 hours", "7 days", "30 days"}

// Limits are the patient counts a role's account may reach per window.
//
//   - Soft: crossing it asks for a step-up (a fresh one-time code) unless
//     the session stepped up recently; in the one-minute window it
//     throttles instead (no human opens that many new charts a minute).
//     The day's soft limit rises with the account's own baseline, never
//     above Hard.
//   - Hard: crossing it suspends the account. No score and no step-up
//     lifts it. 0: no hard limit in that window.
type Limits struct {
	Soft, Hard [NumWindows]int
}

// DefaultLimits are per role, from the synthetic group's normal work (see
// docs/guard.md for how they were chosen and bench/ATTACKS.md for what
// they cost in false step-ups). A role that reaches no patient (the
// administrators, the security officer) gets the tightest one: any patient
// it is ever given is an anomaly.
var DefaultLimits = map[string]Limits{
	// Physicians: morning rounds, consultations, on-call nights and a
	// mass-casualty day reach dozens of new patients a day; the patients of
	// a ward are the same from one day to the next (they are counted once
	// a week, see Options.Fresh).
	"physician": {
		Soft: [NumWindows]int{30, 20, 45, 100, 300, 900},
		Hard: [NumWindows]int{0, 80, 150, 250, 700, 2000},
	},
	"nurse": {
		Soft: [NumWindows]int{30, 20, 45, 100, 300, 900},
		Hard: [NumWindows]int{0, 80, 150, 250, 700, 2000},
	},
	// Pharmacists validate the facility's new prescriptions.
	"pharmacist": {
		Soft: [NumWindows]int{30, 30, 60, 150, 450, 1400},
		Hard: [NumWindows]int{0, 100, 200, 350, 1000, 3000},
	},
	// Admission and billing clerks see many patients' demographics: the
	// data of the seed leak. They work one patient at a time.
	"admission-clerk": {
		Soft: [NumWindows]int{20, 20, 45, 90, 300, 900},
		Hard: [NumWindows]int{0, 60, 100, 200, 600, 1800},
	},
	"billing-clerk": {
		Soft: [NumWindows]int{20, 20, 45, 90, 300, 900},
		Hard: [NumWindows]int{0, 60, 100, 200, 600, 1800},
	},
}

// noReach applies to roles that reach no patient.
var noReach = Limits{
	Soft: [NumWindows]int{1, 1, 1, 1, 1, 1},
	Hard: [NumWindows]int{0, 5, 5, 5, 5, 5},
}

// limitsFor is the most generous limit of any of roles in each window.
func limitsFor(table map[string]Limits, roles []string) Limits {
	var out Limits
	found := false
	for _, r := range roles {
		l, ok := table[r]
		if !ok {
			continue
		}
		found = true
		for i := range NumWindows {
			out.Soft[i] = max(out.Soft[i], l.Soft[i])
			out.Hard[i] = max(out.Hard[i], l.Hard[i])
		}
	}
	if !found {
		return noReach
	}
	return out
}
