package api

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestSecDeclareDeath: the physician who cares for a patient declares the
// death (one field); others cannot, and no one edits the identity through it.
func TestSecDeclareDeath(t *testing.T) {
	w := newSecWorld(t)
	d1, d2, n1 := w.login(t, "d1", ""), w.login(t, "d2", ""), w.login(t, "n1", "")
	path := "/fhir/Patient/" + w.A + "/$declare-death"
	when := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	body := `{"deceasedDateTime":"` + when + `"}`
	secWant(t, w.postJSON(t, path, n1.access, body), http.StatusForbidden, "a nurse declares a death")
	secWant(t, w.postJSON(t, path, d2.access, body), http.StatusForbidden, "a physician without a care relationship declares a death")
	secWant(t, w.postJSON(t, path, d1.access, `{"deceasedDateTime":"`+time.Now().Add(time.Hour).UTC().Format(time.RFC3339)+`"}`), http.StatusBadRequest, "a death in the future")
	secWant(t, w.postJSON(t, path, d1.access, `{"deceasedDateTime":"yesterday"}`), http.StatusBadRequest, "an unreadable date")
	secWant(t, w.postJSON(t, path, d1.access, `{"deceasedDateTime":"`+when+`","name":[{"family":"Changed"}]}`), http.StatusBadRequest, "another field")
	before := w.get(t, "/fhir/Patient/"+w.A, d1.access)
	r := w.postJSON(t, path, d1.access, body)
	secWant(t, r, http.StatusOK, "the attending physician declares the death")
	got := w.get(t, "/fhir/Patient/"+w.A, d1.access).json(t)
	if d, _ := got["deceasedDateTime"].(string); d == "" {
		t.Fatalf("no deceasedDateTime after the declaration: %v", got)
	}
	// Nothing else changed.
	b := before.json(t)
	for _, k := range []string{"name", "managingOrganization", "generalPractitioner", "identifier", "birthDate"} {
		if fmt.Sprint(b[k]) != fmt.Sprint(got[k]) {
			t.Errorf("%s changed by the declaration: %v -> %v", k, b[k], got[k])
		}
	}
	secWant(t, w.postJSON(t, path, d1.access, body), http.StatusConflict, "declared twice")
	// The physician still cannot edit the identity.
	secWant(t, w.do(t, http.MethodPut, "/fhir/Patient/"+w.A, d1.access, w.patientJSON(w.A, "Renamed", w.F1), "application/fhir+json"), http.StatusForbidden, "a physician edits the identity")
}
