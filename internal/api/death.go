package api

import (
	"context"
	"net/http"
	"strings"
	"time"

	"carnet/internal/fhir"
	"carnet/internal/policy"
	"carnet/internal/store"
)

// declareDeath: POST /fhir/Patient/{id}/$declare-death
// {"deceasedDateTime": "2026-03-02T14:05:00+01:00"}.
//
// A physician who cares for the patient declares the death: the operation
// sets Patient.deceasedDateTime and nothing else, so physicians need no
// right to edit identities (name, INS, address stay the admission desk's).
// If-Match guards against a concurrent edit. A patient already declared
// deceased is a conflict. The write is audited like an update.
func (s *Server) declareDeath(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	if !s.opt.InsecureOpen && (p == nil || !p.HasRole(policy.Physician) || p.Practitioner == "") {
		s.fail(w, r, policy.Forbidden("a death is declared by a physician who cares for the patient"))
		return
	}
	id := r.PathValue("id")
	if !fhir.ValidID(id) {
		s.fail(w, r, fhir.Errorf(http.StatusBadRequest, "value", "invalid id"))
		return
	}
	var in map[string]any
	if err := readJSON(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	for k := range in {
		if k != "deceasedDateTime" {
			s.fail(w, r, fhir.Invalid(k, "$declare-death takes deceasedDateTime only, not %q", clip(k)))
			return
		}
	}
	v, _ := in["deceasedDateTime"].(string)
	when, err := time.Parse(time.RFC3339, strings.TrimSpace(v))
	if err != nil {
		s.fail(w, r, fhir.Invalid("deceasedDateTime", "deceasedDateTime must be an instant with its time zone (2026-03-02T14:05:00+01:00)"))
		return
	}
	if when.After(time.Now().Add(5 * time.Minute)) {
		s.fail(w, r, fhir.Invalid("deceasedDateTime", "a death cannot be declared in the future"))
		return
	}
	im, err := ifMatch(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	cur, err := s.st.Read(r.Context(), "Patient", id)
	if err != nil || cur.Deleted {
		s.fail(w, r, fhir.Errorf(http.StatusNotFound, "not-found", "Patient/%s is not known", clip(id)))
		return
	}
	if err := s.canRead(r, cur); err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := fhir.Parse(cur.Data)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if d, _ := res["deceasedDateTime"].(string); d != "" || res["deceasedBoolean"] == true {
		s.fail(w, r, fhir.Errorf(http.StatusConflict, "conflict", "Patient/%s is already declared deceased", id))
		return
	}
	if birth, _ := res["birthDate"].(string); birth != "" && when.Format("2006-01-02") < birth {
		s.fail(w, r, fhir.Invalid("deceasedDateTime", "the death cannot precede the birth (%s)", birth))
		return
	}
	if im == 0 {
		im = cur.Version
	}
	delete(res, "deceasedBoolean")
	res["deceasedDateTime"] = fhir.FormatInstant(when)
	// The policy's checks are the ones above: a physician with a care
	// relationship, one field. The record service still checks the version.
	rec := s.rec.As(func(ctx context.Context, typ string, prev *store.Resource, next *store.Write, batch []store.Write) error {
		if typ != "Patient" || prev == nil || prev.ID != id {
			return policy.Forbidden("$declare-death writes the declared patient only")
		}
		return nil
	})
	if a := recOf(r); a != nil {
		rec = rec.Audited(a.record)
	}
	out, err := rec.Update(r.Context(), "Patient", id, res, im)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if p != nil {
		s.log.InfoContext(r.Context(), "death declared", "patient", id, "by", p.Username)
	}
	s.written(w, r, out)
}
