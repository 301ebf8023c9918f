package store_test

import (
	"slices"
	"testing"
	"time"

	"carnet/internal/record"
	"carnet/internal/store"
)

// careWorld creates two facilities, two practitioners and three patients:
// p1 at F1 with D1 as attending physician, p2 at F1 seen by D2 in a finished
// encounter, p3 at F2 in D1's care team at F2.
type careWorld struct {
	f1, f2, d1, d2, p1, p2, p3 string
	enc                        *store.Resource
}

func newCareWorld(t *testing.T, svc *record.Service) *careWorld {
	w := &careWorld{}
	w.f1 = create(t, svc, "Organization", `{"resourceType":"Organization","name":"F1"}`).ID
	w.f2 = create(t, svc, "Organization", `{"resourceType":"Organization","name":"F2"}`).ID
	w.d1 = create(t, svc, "Practitioner", `{"resourceType":"Practitioner","name":[{"family":"Un"}]}`).ID
	w.d2 = create(t, svc, "Practitioner", `{"resourceType":"Practitioner","name":[{"family":"Deux"}]}`).ID
	w.p1 = create(t, svc, "Patient", `{"resourceType":"Patient","name":[{"family":"Alpha"}],"managingOrganization":{"reference":"Organization/`+w.f1+`"},"generalPractitioner":[{"reference":"Practitioner/`+w.d1+`"}]}`).ID
	w.p2 = create(t, svc, "Patient", `{"resourceType":"Patient","name":[{"family":"Alpha"}],"managingOrganization":{"reference":"Organization/`+w.f1+`"}}`).ID
	w.p3 = create(t, svc, "Patient", `{"resourceType":"Patient","name":[{"family":"Alpha"}],"managingOrganization":{"reference":"Organization/`+w.f2+`"}}`).ID
	w.enc = create(t, svc, "Encounter", `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/`+w.p2+`"},"serviceProvider":{"reference":"Organization/`+w.f1+`"},"participant":[{"individual":{"reference":"Practitioner/`+w.d2+`"}}],"period":{"start":"2026-01-01T10:00:00Z","end":"2026-01-02T10:00:00Z"}}`)
	create(t, svc, "CareTeam", `{"resourceType":"CareTeam","status":"active","subject":{"reference":"Patient/`+w.p3+`"},"managingOrganization":[{"reference":"Organization/`+w.f2+`"}],"participant":[{"member":{"reference":"Practitioner/`+w.d1+`"}}]}`)
	for _, p := range []string{w.p1, w.p2, w.p3} {
		create(t, svc, "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/`+p+`"}}`)
	}
	return w
}

func scopedIDs(t *testing.T, st store.Store, typ, qs string, sc *store.Scope) (int, []string) {
	t.Helper()
	q, err := query(t, typ, qs)
	if err != nil {
		t.Fatal(err)
	}
	page, err := st.Search(t.Context(), q, sc)
	if err != nil {
		t.Fatalf("Search %s?%s: %v", typ, qs, err)
	}
	var ids []string
	for _, r := range page.Matches {
		ids = append(ids, r.Patient)
	}
	for _, r := range page.Included {
		ids = append(ids, r.Type+":"+r.Patient)
	}
	slices.Sort(ids)
	return page.Total, ids
}

func TestScopeFiltersSearchInTheQuery(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		svc := record.New(st)
		w := newCareWorld(t, svc)
		all := map[string]bool{"Patient": true, "Observation": true, "Practitioner": true, "Organization": true, "Encounter": true}
		now := time.Now()
		d1 := &store.Scope{Practitioner: w.d1, Facilities: []string{w.f1}, Since: now.Add(-30 * 24 * time.Hour), Now: now}
		// D1 at F1 reaches p1 only (attending physician); p3's care team is at F2.
		if n, ids := scopedIDs(t, st, "Patient", "family=alpha", d1); n != 1 || !slices.Equal(ids, []string{w.p1}) {
			t.Errorf("D1@F1 Patient?family=alpha: total %d ids %v, want 1 [%s]", n, ids, w.p1)
		}
		if n, _ := scopedIDs(t, st, "Observation", "", d1); n != 1 {
			t.Errorf("D1@F1 Observation: total %d, want 1", n)
		}
		// _count=1 paging and _summary=count see the scoped total too.
		if n, _ := scopedIDs(t, st, "Patient", "_summary=count", d1); n != 1 {
			t.Errorf("D1@F1 _summary=count: %d", n)
		}
		// With F2 as well, p3 (care team) joins.
		d1b := *d1
		d1b.Facilities = []string{w.f1, w.f2}
		if n, ids := scopedIDs(t, st, "Patient", "family=alpha", &d1b); n != 2 || !slices.Equal(ids, sortedOf(w.p1, w.p3)) {
			t.Errorf("D1@F1+F2: total %d ids %v", n, ids)
		}
		// D2's encounter with p2 ended 2026-01-02: inside a window reaching
		// back before it, outside a window starting after it.
		d1.Include = includeAs(d1, all)
		d2 := &store.Scope{Practitioner: w.d2, Facilities: []string{w.f1}, Since: time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC), Now: now}
		if n, _ := scopedIDs(t, st, "Patient", "", d2); n != 1 {
			t.Errorf("D2 within window: total %d, want 1", n)
		}
		d2late := *d2
		d2late.Since = time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
		if n, _ := scopedIDs(t, st, "Patient", "", &d2late); n != 0 {
			t.Errorf("D2 after window: total %d, want 0", n)
		}
		// Facility-wide (admission): every patient linked to F1.
		clerk := &store.Scope{Facilities: []string{w.f1}, FacilityWide: true, Now: now}
		clerk.Include = includeAs(clerk, map[string]bool{"Patient": true})
		if n, ids := scopedIDs(t, st, "Patient", "family=alpha", clerk); n != 2 || !slices.Equal(ids, sortedOf(w.p1, w.p2)) {
			t.Errorf("clerk@F1: total %d ids %v", n, ids)
		}
		// _revinclude of a type the scope may not read is dropped; of a
		// readable type, only reachable patients' resources come back.
		if _, ids := scopedIDs(t, st, "Patient", "family=alpha&_revinclude=Observation:subject", clerk); !slices.Equal(ids, sortedOf(w.p1, w.p2)) {
			t.Errorf("clerk revinclude Observation leaked: %v", ids)
		}
		if _, ids := scopedIDs(t, st, "Observation", "_include=Observation:subject", d1); !slices.Equal(ids, sortedOf(w.p1, "Patient:"+w.p1)) {
			t.Errorf("D1 include: %v", ids)
		}
		// Including patients from a directory search: each included type under
		// its own scope; an empty scope includes nothing (and does not fail).
		if _, ids := scopedIDs(t, st, "Practitioner", "_revinclude=Patient:general-practitioner", d1); !slices.Equal(ids, []string{"", "", "Patient:" + w.p1}) {
			t.Errorf("D1 Practitioner _revinclude Patient: %v", ids)
		}
		// Nobody: empty scope reaches nothing, but non-patient types stay readable.
		none := &store.Scope{Now: now}
		if n, _ := scopedIDs(t, st, "Patient", "", none); n != 0 {
			t.Errorf("empty scope: %d patients", n)
		}
		if n, _ := scopedIDs(t, st, "Practitioner", "", none); n != 2 {
			t.Errorf("empty scope: %d practitioners, want 2", n)
		}
		none.Include = includeAs(none, all)
		if _, ids := scopedIDs(t, st, "Practitioner", "_revinclude=Patient:general-practitioner", none); len(ids) != 2 {
			t.Errorf("empty scope revinclude: %v, want the 2 practitioners only", ids)
		}
		// Reach answers point and batch questions alike.
		for _, ps := range [][]string{{w.p1}, {w.p2}, {w.p1, w.p2, w.p3}} {
			got, err := st.Reach(t.Context(), d1, ps)
			if err != nil {
				t.Fatal(err)
			}
			if want := slices.Contains(ps, w.p1); len(got) != map[bool]int{true: 1}[want] || got[w.p1] != want {
				t.Errorf("Reach(D1, %v) = %v, want only p1", ps, got)
			}
		}
		// An update that removes the participant removes the relationship.
		enc, _ := st.Read(t.Context(), "Encounter", w.enc.ID)
		r := parse(t, string(enc.Data))
		delete(r, "participant")
		if _, err := svc.Update(t.Context(), "Encounter", w.enc.ID, r, 0); err != nil {
			t.Fatal(err)
		}
		if n, _ := scopedIDs(t, st, "Patient", "", d2); n != 0 {
			t.Errorf("after removing D2 from the encounter: %d patients", n)
		}
		// Deleting the attending physician's patient link ends it too.
		if _, err := svc.Delete(t.Context(), "Patient", w.p1, 0); err != nil {
			t.Fatal(err)
		}
		if got, _ := st.Reach(t.Context(), d1, []string{w.p1}); got[w.p1] {
			t.Error("deleted patient still reachable through its links")
		}
	})
}

// includeAs reads the given types under sc itself.
func includeAs(sc *store.Scope, types map[string]bool) func(string) *store.Scope {
	return func(t string) *store.Scope {
		if types[t] {
			return sc
		}
		return nil
	}
}

func sortedOf(s ...string) []string { slices.Sort(s); return s }
