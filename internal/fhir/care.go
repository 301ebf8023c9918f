package fhir

import "math"

// CareLink is one fact a resource states about who looks after a patient
// where: the practitioner (empty for a link of the patient to a facility
// only) has a care relationship with the patient at the facility until the
// given time (Unix seconds; Forever while it lasts). The access policy reads
// these; the store keeps them beside the index, derived from each write.
type CareLink struct {
	Patient      string
	Facility     string // Organization id
	Practitioner string // Practitioner id; "" links the patient to the facility
	Until        int64
}

// Forever is the Until of a relationship with no end yet.
const Forever = math.MaxInt64

// CareLinks derives the care relationships a resource states (DESIGN.md §2):
//   - Patient: the attending physicians (generalPractitioner) at the
//     managing organization, and the patient's link to that facility;
//   - Encounter: each participant at the serviceProvider until the end of
//     the period (no end: ongoing), and the patient's link to the facility;
//   - CareTeam: each member at the managing organization while the team is
//     active (until period.end), and the patient's link to the facility.
//
// Only Practitioner and Organization references count: a relationship must
// name a person and a place.
func CareLinks(r Resource) []CareLink {
	switch Type(r) {
	case "Patient":
		pat := ID(r)
		fac := refID(r["managingOrganization"], "Organization")
		if pat == "" || fac == "" {
			return nil
		}
		out := []CareLink{{Patient: pat, Facility: fac, Until: Forever}}
		for _, gp := range flatten(r["generalPractitioner"]) {
			if p := refID(gp, "Practitioner"); p != "" {
				out = append(out, CareLink{Patient: pat, Facility: fac, Practitioner: p, Until: Forever})
			}
		}
		return dedupeLinks(out)
	case "Encounter":
		pat := refID(r["subject"], "Patient")
		fac := refID(r["serviceProvider"], "Organization")
		if pat == "" || fac == "" {
			return nil
		}
		until := periodEnd(r["period"])
		switch r["status"] {
		case "cancelled", "entered-in-error":
			until = 0 // never happened: no relationship (the facility link stays)
		}
		out := []CareLink{{Patient: pat, Facility: fac, Until: Forever}}
		for _, part := range flatten(r["participant"]) {
			m, _ := part.(map[string]any)
			if p := refID(m["individual"], "Practitioner"); p != "" && until > 0 {
				out = append(out, CareLink{Patient: pat, Facility: fac, Practitioner: p, Until: until})
			}
		}
		return dedupeLinks(out)
	case "CareTeam":
		pat := refID(r["subject"], "Patient")
		var fac string
		for _, o := range flatten(r["managingOrganization"]) {
			if fac = refID(o, "Organization"); fac != "" {
				break
			}
		}
		if pat == "" || fac == "" {
			return nil
		}
		until := periodEnd(r["period"])
		if st, _ := r["status"].(string); st != "active" && st != "proposed" && st != "suspended" && until == Forever {
			until = 0 // inactive without an end date: over
		}
		out := []CareLink{{Patient: pat, Facility: fac, Until: Forever}}
		for _, part := range flatten(r["participant"]) {
			m, _ := part.(map[string]any)
			if p := refID(m["member"], "Practitioner"); p != "" && until > 0 {
				out = append(out, CareLink{Patient: pat, Facility: fac, Practitioner: p, Until: until})
			}
		}
		return dedupeLinks(out)
	}
	return nil
}

// refID returns the id of a Reference to a resource of type typ, or "".
func refID(v any, typ string) string {
	m, _ := v.(map[string]any)
	ref, _ := m["reference"].(string)
	if t, id, ok := SplitReference(ref); ok && t == typ {
		return id
	}
	return ""
}

// periodEnd returns the end of a Period (the last second it covers), or
// Forever when it has none.
func periodEnd(v any) int64 {
	m, _ := v.(map[string]any)
	end, _ := m["end"].(string)
	if end == "" {
		return Forever
	}
	if _, hi, ok := DateRange(end, true); ok {
		return hi
	}
	return Forever
}

// dedupeLinks keeps one link per (practitioner, facility), the longest.
func dedupeLinks(ls []CareLink) []CareLink {
	out := ls[:0]
	for _, l := range ls {
		dup := false
		for i := range out {
			if out[i].Practitioner == l.Practitioner && out[i].Facility == l.Facility {
				out[i].Until = max(out[i].Until, l.Until)
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, l)
		}
	}
	return out
}
