package api

import (
	"strings"
	"testing"

	"carnet/internal/audit"
	"carnet/internal/policy"
	"carnet/internal/store"
	"carnet/internal/store/storetest"
)

// TestReadsUnderBreakGlassAudited: what a clinician reads under an active
// break-the-glass grant is audited as break-the-glass (the access history
// and the review show it), what they read in their own care as before.
func TestReadsUnderBreakGlassAudited(t *testing.T) {
	st := storetest.Backends(t)["sqlite"](t).(*store.SQL)
	w := newMatrixWorld(t, st)
	doc := bearerHdr(w.tokens[policy.Physician])
	if r := w.ts.do(t, "GET", "/fhir/Patient/"+w.patients["B"], nil, doc...); r.Status != 403 {
		t.Fatalf("B before the grant: %d, want 403 (the test needs a patient out of his care)", r.Status)
	}
	w.ts.do(t, "POST", "/fhir/Patient/"+w.patients["B"]+"/$break-the-glass", []byte(`{"reason":"emergency","detail":"unconscious patient in the emergency room"}`), doc...)
	r := w.ts.do(t, "GET", "/fhir/Patient/"+w.patients["B"], nil, doc...)
	if r.Status != 200 {
		t.Fatalf("B under the grant: %d", r.Status)
	}
	if h := r.Header.Get(BreakGlassHeader); !strings.Contains(h, "; expires=") {
		t.Errorf("read under the grant: %s header %q", BreakGlassHeader, h)
	}
	if r := w.ts.do(t, "GET", "/fhir/Patient/"+w.patients["A"], nil, doc...); r.Header.Get(BreakGlassHeader) != "" {
		t.Errorf("read of his own patient carries %s", BreakGlassHeader)
	}
	rows, err := st.FindAudit(t.Context(), store.AuditFilter{Action: "read"})
	if err != nil {
		t.Fatal(err)
	}
	var underGrant, own *audit.Entry
	for _, row := range rows {
		e, _ := audit.Decode(row.Entry)
		if e.Outcome != 200 || len(e.Patients) != 1 {
			continue
		}
		switch e.Patients[0] {
		case w.patients["B"]:
			underGrant = e
		case w.patients["A"]:
			own = e
		}
	}
	if underGrant == nil || underGrant.Purpose != "break-the-glass:emergency" || !strings.HasPrefix(underGrant.Subject, "grant:") {
		t.Errorf("read under the grant audited as %+v", underGrant)
	}
	if own == nil || own.Purpose != "care-relationship" {
		t.Errorf("read of his own patient audited as %+v", own)
	}
}
