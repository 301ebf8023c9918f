package store

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"carnet/internal/fhir"
)

// Scope restricts reads to the patients a caller may reach. The policy
// builds it; the store turns it into SQL so that searches are filtered in
// the query itself (totals, paging and includes never see other patients).
// A nil *Scope means no restriction (internal use: import, incident tools).
type Scope struct {
	// Practitioner's care relationships (fhir.CareLinks) at Facilities count
	// if they last until at least Since. Empty: no care relationships.
	Practitioner string
	Facilities   []string
	Since        time.Time
	// FacilityWide: every patient linked to one of Facilities counts
	// (admission and billing staff), relationship or not.
	FacilityWide bool
	// Account's unexpired break-the-glass grants (at Now) count too.
	Account string
	Now     time.Time
	// Include returns the scope under which the caller reads resources of
	// typ (nil: not at all); _include and _revinclude results are checked
	// against it, type by type. Nil Include: no included resource passes.
	Include func(typ string) *Scope
}

// patientBound reports whether resources of typ belong to a patient (and so
// are subject to the scope's patient filter).
func patientBound(typ string) bool {
	if typ == "Patient" {
		return true
	}
	ti := fhir.LookupType(typ)
	return ti != nil && ti.PatientRef != ""
}

// reachSQL is the subquery of patient ids the scope reaches.
func (sc *Scope) reachSQL() (string, []any) {
	var parts []string
	var args []any
	if len(sc.Facilities) > 0 {
		ph := placeholders(len(sc.Facilities))
		if sc.FacilityWide {
			parts = append(parts, "SELECT c.patient FROM care_link c WHERE c.prac = '' AND c.facility IN ("+ph+")")
			for _, f := range sc.Facilities {
				args = append(args, f)
			}
		}
		if sc.Practitioner != "" {
			parts = append(parts, "SELECT c.patient FROM care_link c WHERE c.prac = ? AND c.facility IN ("+ph+") AND c.until >= ?")
			args = append(args, sc.Practitioner)
			for _, f := range sc.Facilities {
				args = append(args, f)
			}
			args = append(args, sc.Since.Unix())
		}
	}
	if sc.Account != "" {
		parts = append(parts, "SELECT g.patient FROM break_glass g WHERE g.account = ? AND g.expires > ?")
		args = append(args, sc.Account, micros(sc.Now))
	}
	if len(parts) == 0 {
		return "SELECT '' AS patient WHERE 1 = 0", nil
	}
	return strings.Join(parts, " UNION ALL "), args
}

// filter is the condition on alias r a scoped search of typ adds. (Binding
// a clinician's patients as a list of ids was measured slower on SQLite
// than the subquery, which walks one practitioner's care links.)
func (s *SQL) filter(ctx context.Context, sc *Scope, typ string) (string, []any, error) {
	if sc == nil || !patientBound(typ) {
		return "", nil, nil
	}
	sub, args := sc.reachSQL()
	return "r.patient IN (" + sub + ")", args, nil
}

// Reach returns which of patients the scope reaches.
func (s *SQL) Reach(ctx context.Context, sc *Scope, patients []string) (map[string]bool, error) {
	out := make(map[string]bool, len(patients))
	if len(patients) == 0 {
		return out, nil
	}
	if sc == nil {
		for _, p := range patients {
			out[p] = true
		}
		return out, nil
	}
	if len(patients) == 1 {
		// The common case (one read): check each source with the patient
		// bound, so every branch is a point lookup.
		return s.reachOne(ctx, sc, patients[0])
	}
	sub, args := sc.reachSQL()
	q := "SELECT DISTINCT x.patient FROM (" + sub + ") x(patient) WHERE x.patient IN (" + placeholders(len(patients)) + ")"
	if !s.d.Dollar {
		// SQLite has no column aliases on a derived table: the subquery
		// names its column.
		q = "SELECT DISTINCT patient FROM (" + sub + ") WHERE patient IN (" + placeholders(len(patients)) + ")"
	}
	for _, p := range patients {
		args = append(args, p)
	}
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: reach: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, fmt.Errorf("store: reach: %w", err)
		}
		out[p] = true
	}
	return out, rows.Err()
}

// reachTTL bounds how long a cached reach answer stands without a change of
// relationships (a care window or a break-the-glass grant may end meanwhile).
const reachTTL = time.Second

// reachCache remembers point answers for a single-process store. Entries
// carry the relationship generation they were computed at: any write that
// can change a relationship (Patient, Encounter, CareTeam, break-the-glass)
// bumps it, so a stale answer is never used.
type reachCache struct {
	mu  sync.RWMutex
	m   map[string]reachEntry
	gen atomic.Uint64
}

type reachEntry struct {
	gen uint64
	at  time.Time
	ok  bool
}

func reachKey(sc *Scope, patient string) string {
	var b strings.Builder
	b.WriteString(sc.Practitioner)
	b.WriteByte('|')
	b.WriteString(sc.Account)
	if sc.FacilityWide {
		b.WriteString("|w|")
	} else {
		b.WriteString("|c|")
	}
	for _, f := range sc.Facilities {
		b.WriteString(f)
		b.WriteByte(',')
	}
	b.WriteByte('|')
	b.WriteString(strconv.FormatInt(sc.Since.Unix(), 10))
	b.WriteByte('|')
	b.WriteString(patient)
	return b.String()
}

// relationshipsChanged invalidates cached reach answers.
func (s *SQL) relationshipsChanged() {
	if s.reach != nil {
		s.reach.gen.Add(1)
	}
}

func (s *SQL) reachOne(ctx context.Context, sc *Scope, patient string) (map[string]bool, error) {
	var key string
	var gen uint64
	if s.reach != nil {
		key = reachKey(sc, patient)
		gen = s.reach.gen.Load()
		s.reach.mu.RLock()
		e, hit := s.reach.m[key]
		s.reach.mu.RUnlock()
		if hit && e.gen == gen && sc.Now.Sub(e.at) < reachTTL && !sc.Now.Before(e.at) {
			if e.ok {
				return map[string]bool{patient: true}, nil
			}
			return map[string]bool{}, nil
		}
	}
	out, err := s.reachOneSQL(ctx, sc, patient)
	if err == nil && s.reach != nil {
		s.reach.mu.Lock()
		if len(s.reach.m) > 200_000 {
			clear(s.reach.m)
		}
		s.reach.m[key] = reachEntry{gen: gen, at: sc.Now, ok: out[patient]}
		s.reach.mu.Unlock()
	}
	return out, err
}

func (s *SQL) reachOneSQL(ctx context.Context, sc *Scope, patient string) (map[string]bool, error) {
	var ors []string
	var args []any
	if len(sc.Facilities) > 0 {
		ph := placeholders(len(sc.Facilities))
		if sc.FacilityWide {
			ors = append(ors, "EXISTS (SELECT 1 FROM care_link c WHERE c.prac = '' AND c.patient = ? AND c.facility IN ("+ph+"))")
			args = append(args, patient)
			for _, f := range sc.Facilities {
				args = append(args, f)
			}
		}
		if sc.Practitioner != "" {
			ors = append(ors, "EXISTS (SELECT 1 FROM care_link c WHERE c.prac = ? AND c.patient = ? AND c.facility IN ("+ph+") AND c.until >= ?)")
			args = append(args, sc.Practitioner, patient)
			for _, f := range sc.Facilities {
				args = append(args, f)
			}
			args = append(args, sc.Since.Unix())
		}
	}
	if sc.Account != "" {
		ors = append(ors, "EXISTS (SELECT 1 FROM break_glass g WHERE g.account = ? AND g.patient = ? AND g.expires > ?)")
		args = append(args, sc.Account, patient, micros(sc.Now))
	}
	out := map[string]bool{}
	if len(ors) == 0 {
		return out, nil
	}
	var ok bool
	if err := s.queryRow(ctx, "SELECT "+strings.Join(ors, " OR "), args...).Scan(&ok); err != nil {
		return nil, fmt.Errorf("store: reach: %w", err)
	}
	if ok {
		out[patient] = true
	}
	return out, nil
}

// scopeIncluded drops included resources the caller may not read: of a type
// it does not read, or of a patient its scope for that type does not reach.
func (s *SQL) scopeIncluded(ctx context.Context, sc *Scope, rs []*Resource) ([]*Resource, error) {
	if sc == nil || len(rs) == 0 {
		return rs, nil
	}
	scopes := map[string]*Scope{}
	asked := map[string][]string{}
	for _, r := range rs {
		if _, done := scopes[r.Type]; !done {
			var ts *Scope
			if sc.Include != nil {
				ts = sc.Include(r.Type)
			}
			scopes[r.Type] = ts
		}
		if scopes[r.Type] != nil && patientBound(r.Type) && r.Patient != "" {
			asked[r.Type] = append(asked[r.Type], r.Patient)
		}
	}
	ok := map[string]map[string]bool{}
	for typ, pats := range asked {
		slices.Sort(pats)
		got, err := s.Reach(ctx, scopes[typ], slices.Compact(pats))
		if err != nil {
			return nil, err
		}
		ok[typ] = got
	}
	out := rs[:0]
	for _, r := range rs {
		if scopes[r.Type] == nil {
			continue
		}
		if patientBound(r.Type) && !ok[r.Type][r.Patient] {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}
