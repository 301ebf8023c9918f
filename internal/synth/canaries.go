package synth

// Canary patients: a few generated patients per facility that no legitimate
// workflow reaches. They are linked to their facility (so a walk of the
// facility's patient list meets them) but have no attending physician, no
// stay, no care team and no prescription, so no clinician's care
// relationship leads to them and no admission or billing task names them.
// The guard suspends whoever opens one (internal/guard).

// canaryBase is the patient-index domain of canaries: far above any real
// patient index, below the static resources' domain.
const canaryBase = 1 << 42

// Canary is one canary patient.
type Canary struct {
	Facility string // Organization id
	Patient  map[string]any
}

// Canaries returns perFacility canary patients for each facility,
// deterministically (same seed, same canaries).
func (g *Group) Canaries(perFacility int) []Canary {
	var out []Canary
	for f := range g.fac {
		for k := range perFacility {
			i := canaryBase + f*64 + k
			var pat map[string]any
			_ = g.patient(i, func(r map[string]any) error {
				if pat == nil && r["resourceType"] == "Patient" {
					pat = r
				}
				return nil
			})
			if pat == nil {
				continue
			}
			delete(pat, "generalPractitioner")
			delete(pat, "deceasedDateTime")
			pat["managingOrganization"] = ref(g.fac[f].ref)
			// Keep the national identifier only: the local ones name the
			// facilities the generated stays were at.
			if ids, ok := pat["identifier"].([]any); ok && len(ids) > 0 {
				pat["identifier"] = ids[:1]
			}
			out = append(out, Canary{Facility: g.fac[f].id, Patient: pat})
		}
	}
	return out
}
