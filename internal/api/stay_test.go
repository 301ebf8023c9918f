package api

import (
	"net/http"
	"testing"
)

// TestSecStayAtAnotherFacility: a stay links its patient to its facility
// for good and gives that facility's staff access, so a clerk opens stays
// at their own facilities only (an attacker with a clerk's session could
// otherwise hand a patient to an accomplice's facility).
func TestSecStayAtAnotherFacility(t *testing.T) {
	w := newSecWorld(t)
	clerk := w.login(t, "clerk", "")
	stay := func(fac string) string {
		return `{"resourceType":"Encounter","status":"in-progress","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},` +
			`"subject":{"reference":"Patient/` + w.A + `"},"serviceProvider":{"reference":"Organization/` + fac + `"},` +
			`"participant":[{"individual":{"reference":"Practitioner/` + w.D2 + `"}}]}`
	}
	secWant(t, w.postJSON(t, "/fhir/Encounter", clerk.access, stay(w.F2)), http.StatusForbidden, "stay at another facility")
	r := w.postJSON(t, "/fhir/Encounter", clerk.access, stay(w.F1))
	secWant(t, r, http.StatusCreated, "stay at the clerk's facility")
	// Moving it to another facility afterwards is refused too.
	id := r.json(t)["id"].(string)
	moved := `{"resourceType":"Encounter","id":"` + id + `","status":"in-progress","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},` +
		`"subject":{"reference":"Patient/` + w.A + `"},"serviceProvider":{"reference":"Organization/` + w.F2 + `"}}`
	secWant(t, w.do(t, http.MethodPut, "/fhir/Encounter/"+id, clerk.access, []byte(moved), "application/fhir+json"), http.StatusForbidden, "stay moved to another facility")
}
