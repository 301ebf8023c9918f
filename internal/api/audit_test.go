package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"carnet/internal/audit"
	"carnet/internal/fhir"
	"carnet/internal/incident"
	"carnet/internal/policy"
	"carnet/internal/store"
	"carnet/internal/store/storetest"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// received returns the patient ids of every resource in a response body
// (a resource or a Bundle of them), as the client sees them.
func received(t *testing.T, body []byte) []string {
	t.Helper()
	res, err := fhir.Parse(body)
	if err != nil {
		t.Fatalf("unreadable body: %v", err)
	}
	var out []string
	add := func(r fhir.Resource) {
		if p := fhir.PatientOf(r); p != "" {
			out = append(out, p)
		}
	}
	if fhir.Type(res) != "Bundle" {
		add(res)
		return out
	}
	entries, _ := res["entry"].([]any)
	for _, e := range entries {
		m, _ := e.(map[string]any)
		if r, ok := m["resource"].(map[string]any); ok {
			add(r)
		}
	}
	return out
}

// After a scripted session of reads and searches, incident scope lists
// exactly the patients the client received: 0 missed, 0 extra.
func TestIncidentScopeMatchesWhatTheClientReceived(t *testing.T) {
	for name, open := range storetest.Backends(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t).(*store.SQL)
			w := newMatrixWorld(t, st)
			h := bearerHdr(w.tokens[policy.Physician])
			got := map[string]bool{}
			collect := func(path string) {
				r := w.ts.do(t, "GET", path, nil, h...)
				if r.Status == 200 {
					for _, p := range received(t, r.Body) {
						got[p] = true
					}
				}
			}
			// Break the glass for B, then a mixed session: reads, searches
			// with includes, history, denied reads of C.
			if r := w.ts.do(t, "POST", "/fhir/Patient/"+w.patients["B"]+"/$break-the-glass", []byte(`{"reason":"emergency","detail":"arrived unconscious in the ER"}`), h...); r.Status != 201 {
				t.Fatalf("break-the-glass: %s", r)
			}
			collect("/fhir/Patient/" + w.patients["A"])
			collect("/fhir/Observation?_include=Observation:subject")
			collect("/fhir/Condition/" + w.res["Condition"]["B"])
			collect("/fhir/Patient/" + w.patients["C"]) // 403: not disclosed
			collect("/fhir/Encounter/" + w.res["Encounter"]["C"])
			collect("/fhir/MedicationRequest/" + w.res["MedicationRequest"]["A"] + "/_history")
			collect("/fhir/Practitioner")
			if len(got) != 2 || !got[w.patients["A"]] || !got[w.patients["B"]] {
				t.Fatalf("the session received %v, want A and B", got)
			}
			rep, err := incident.Scope(t.Context(), st, incident.Query{Account: "m-" + policy.Physician})
			if err != nil {
				t.Fatal(err)
			}
			var scoped []string
			for _, p := range rep.Patients {
				scoped = append(scoped, p.ID)
			}
			var want []string
			for p := range got {
				want = append(want, p)
			}
			slices.Sort(want)
			if !slices.Equal(scoped, want) {
				t.Errorf("incident scope %v, client received %v", scoped, want)
			}
			for _, p := range rep.Patients {
				if p.ID == w.patients["B"] && !slices.Contains(p.Categories, incident.CatClinical) {
					t.Errorf("B's categories %v lack clinical (a Condition was read)", p.Categories)
				}
				if p.ID == w.patients["A"] && !slices.Equal(p.Categories, []string{incident.CatIdentity, incident.CatContact, incident.CatClinical, incident.CatPrescription}) {
					t.Errorf("A's categories %v", p.Categories)
				}
			}
			// Another account disclosed nothing in this session.
			other, err := incident.Scope(t.Context(), st, incident.Query{Account: "m-" + policy.Nurse})
			if err != nil || len(other.Patients) != 0 {
				t.Errorf("nurse scope %v, %v", other, err)
			}
			// One request, one entry, holding ids and never names.
			rows, _ := st.FindAudit(t.Context(), store.AuditFilter{Account: w.accounts[policy.Physician]})
			if len(rows) != 8 {
				t.Errorf("%d entries for 8 requests", len(rows))
			}
			for _, row := range rows {
				if strings.Contains(string(row.Entry), "Matrix") {
					t.Errorf("entry %d holds a patient name: %s", row.Index, row.Entry)
				}
			}
		})
	}
}

// No audit, no data: when the log cannot be written, the request fails with
// 503 and the response carries nothing of the record.
func TestNoAuditNoData(t *testing.T) {
	for name, open := range storetest.Backends(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t).(*store.SQL)
			w := newMatrixWorld(t, st)
			h := bearerHdr(w.tokens[policy.Physician])
			before, _ := st.AuditSize(t.Context())
			st.SetAuditFault(func() error { return errors.New("disk full") })
			for _, path := range []string{
				"/fhir/Patient/" + w.patients["A"],
				"/fhir/Patient?_count=10",
				"/fhir/Observation?_include=Observation:subject",
				"/fhir/Patient/" + w.patients["A"] + "/_history",
			} {
				r := w.ts.do(t, "GET", path, nil, h...)
				if r.Status != 503 {
					t.Errorf("GET %s with the log down: %d, want 503", path, r.Status)
				}
				if strings.Contains(string(r.Body), "Matrix") || strings.Contains(string(r.Body), `"resourceType":"Patient"`) || r.Header.Get("ETag") != "" {
					t.Errorf("GET %s with the log down disclosed data: %s", path, r)
				}
			}
			// A write with the log down is not made at all: the entry and the
			// write commit together or not.
			obsBefore, _ := st.Stats(t.Context())
			if r := w.ts.do(t, "POST", "/fhir/Observation", []byte(minimal("Observation", w.patients["A"])), h...); r.Status != 503 {
				t.Errorf("create with the log down: %s", r)
			}
			if obsAfter, _ := st.Stats(t.Context()); obsAfter["Observation"] != obsBefore["Observation"] {
				t.Errorf("a write was made without its audit entry")
			}
			if after, _ := st.AuditSize(t.Context()); after != before {
				t.Errorf("entries appended while the log was down: %d -> %d", before, after)
			}
			st.SetAuditFault(nil)
			if r := w.ts.do(t, "GET", "/fhir/Patient/"+w.patients["A"], nil, h...); r.Status != 200 {
				t.Errorf("after the fault: %s", r)
			}
			if after, _ := st.AuditSize(t.Context()); after != before+1 {
				t.Errorf("one read, %d entries", after-before)
			}
			// A write and its entry: exactly one entry, with the outcome.
			if r := w.ts.do(t, "POST", "/fhir/Observation", []byte(minimal("Observation", w.patients["A"])), h...); r.Status != 201 {
				t.Fatalf("create: %s", r)
			}
			rows, _ := st.FindAudit(t.Context(), store.AuditFilter{Action: "create"})
			if len(rows) != 1 {
				t.Fatalf("%d create entries, want 1", len(rows))
			}
			if e, _ := audit.Decode(rows[0].Entry); e.Outcome != 201 || !slices.Equal(e.Patients, []string{w.patients["A"]}) || len(e.Disclosed["Observation"]) != 1 {
				t.Errorf("create entry %+v", e)
			}
		})
	}
}

// A break-the-glass grant, a login and a role request are security state:
// each leaves an entry naming who and what.
func TestSecurityActionsAreAudited(t *testing.T) {
	st := storetest.Backends(t)["sqlite"](t).(*store.SQL)
	w := newMatrixWorld(t, st)
	w.ts.do(t, "POST", "/fhir/Patient/"+w.patients["B"]+"/$break-the-glass", []byte(`{"reason":"on-call","detail":"night shift, patient transferred"}`), bearerHdr(w.tokens[policy.Physician])...)
	w.ts.do(t, "POST", "/auth/token", []byte("username=nobody&password=wrongwrongwrong&otp=123456"), "Content-Type", "application/x-www-form-urlencoded")
	rows, err := st.FindAudit(t.Context(), store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var bg, fail *audit.Entry
	for _, row := range rows {
		e, _ := audit.Decode(row.Entry)
		switch e.Action {
		case "break-the-glass":
			bg = e
		case "login-failed":
			fail = e
		}
	}
	if bg == nil || bg.Purpose != "break-the-glass:on-call" || !slices.Equal(bg.Patients, []string{w.patients["B"]}) || !strings.HasPrefix(bg.Subject, "grant:") || bg.Outcome != 201 {
		t.Errorf("break-the-glass entry %+v", bg)
	}
	if fail == nil || fail.Username != "nobody" || fail.Outcome != 401 || fail.Client == "" {
		t.Errorf("failed login entry %+v", fail)
	}
}

// The security officer searches the log as FHIR AuditEvents; a clinician
// sees the access history of a patient in their care, and nothing else.
func TestAuditEventSearch(t *testing.T) {
	st := storetest.Backends(t)["sqlite"](t).(*store.SQL)
	w := newMatrixWorld(t, st)
	doc, nurse := bearerHdr(w.tokens[policy.Physician]), bearerHdr(w.tokens[policy.Nurse])
	w.ts.do(t, "GET", "/fhir/Patient/"+w.patients["A"], nil, doc...)
	w.ts.do(t, "GET", "/fhir/Observation/"+w.res["Observation"]["A"], nil, nurse...)
	so := bearerHdr(w.tokens[policy.SecurityOfficer])
	r := w.ts.do(t, "GET", "/fhir/AuditEvent?agent=m-physician", nil, so...)
	m := decode(t, r.Body)
	if r.Status != 200 || num(m["total"]) != 1 || !strings.Contains(string(r.Body), `"reference":"Patient/`+w.patients["A"]+`"`) || !strings.Contains(string(r.Body), `"resourceType":"AuditEvent"`) {
		t.Errorf("security officer, agent=m-physician: %s", r)
	}
	r = w.ts.do(t, "GET", "/fhir/AuditEvent?patient="+w.patients["A"]+"&date=ge2020-01-01", nil, so...)
	// Two accesses, and the officer's own search above (it disclosed A's id).
	if m := decode(t, r.Body); num(m["total"]) != 3 {
		t.Errorf("security officer, patient A: %s", r)
	}
	// The physician sees who opened A (both accesses), not the whole log, not C's history.
	r = w.ts.do(t, "GET", "/fhir/AuditEvent?patient="+w.patients["A"], nil, doc...)
	if m := decode(t, r.Body); r.Status != 200 || num(m["total"]) < 2 || !strings.Contains(string(r.Body), "m-nurse") {
		t.Errorf("physician, access history of A: %s", r)
	}
	// A clerk's search that disclosed A among others: A's history names A
	// only (the officer sees the whole entry).
	w.ts.do(t, "GET", "/fhir/Patient?_count=50", nil, bearerHdr(w.tokens[policy.AdmissionClerk])...)
	r = w.ts.do(t, "GET", "/fhir/AuditEvent?patient="+w.patients["A"], nil, so...)
	others := 0
	for k, id := range w.patients {
		if k != "A" && strings.Contains(string(r.Body), "Patient/"+id) {
			others++
		}
	}
	if others == 0 {
		t.Fatalf("the clerk's search disclosed no other patient: the check below proves nothing\n%s", r)
	}
	r = w.ts.do(t, "GET", "/fhir/AuditEvent?patient="+w.patients["A"], nil, doc...)
	for k, id := range w.patients {
		if k != "A" && strings.Contains(string(r.Body), id) {
			t.Errorf("physician's access history of A names patient %s (%s)", k, id)
		}
	}
	for _, path := range []string{"/fhir/AuditEvent", "/fhir/AuditEvent?patient=" + w.patients["C"], "/fhir/AuditEvent?agent=m-nurse"} {
		if r := w.ts.do(t, "GET", path, nil, doc...); r.Status != 403 {
			t.Errorf("physician GET %s: %d, want 403", path, r.Status)
		}
	}
	if r := w.ts.do(t, "GET", "/fhir/AuditEvent?patient="+w.patients["A"], nil, bearerHdr(w.tokens[policy.GroupAdmin])...); r.Status != 403 {
		t.Errorf("group admin reads a patient's access history: %d", r.Status)
	}
	if r := w.ts.do(t, "GET", "/fhir/AuditEvent?who=x", nil, so...); r.Status != 400 {
		t.Errorf("unknown parameter: %d", r.Status)
	}
}

// The security officer fetches the signed checkpoint and proofs over the
// API and checks them with the reference RFC 6962 verifier.
func TestAuditProofsOverTheAPI(t *testing.T) {
	st := storetest.Backends(t)["sqlite"](t).(*store.SQL)
	w := newMatrixWorld(t, st)
	doc := bearerHdr(w.tokens[policy.Physician])
	for range 5 {
		w.ts.do(t, "GET", "/fhir/Patient/"+w.patients["A"], nil, doc...)
	}
	so := bearerHdr(w.tokens[policy.SecurityOfficer])
	// Checkpoint: the server's log checkpoints every second; force it here.
	type prover interface {
		Checkpoint(context.Context) (*store.Checkpoint, error)
	}
	lg := w.auditLog
	if _, err := lg.(prover).Checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	r := w.ts.do(t, "GET", "/audit/checkpoint", nil, so...)
	var cp struct {
		Size int64
		Root string
		Note string
	}
	if err := json.Unmarshal(r.Body, &cp); err != nil || r.Status != 200 || cp.Size < 5 || !strings.Contains(cp.Note, "carnet-audit") {
		t.Fatalf("checkpoint: %s", r)
	}
	root, _ := base64.StdEncoding.DecodeString(cp.Root)
	rows, _ := st.FindAudit(t.Context(), store.AuditFilter{})
	for _, idx := range []int64{0, 2, cp.Size - 1} {
		r := w.ts.do(t, "GET", fmt.Sprintf("/audit/proof/inclusion?index=%d&size=%d", idx, cp.Size), nil, so...)
		var p struct{ Proof []string }
		json.Unmarshal(r.Body, &p)
		var hs [][]byte
		for _, h := range p.Proof {
			b, _ := base64.StdEncoding.DecodeString(h)
			hs = append(hs, b)
		}
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(idx), uint64(cp.Size), rfc6962.DefaultHasher.HashLeaf(rows[idx].Entry), hs, root); err != nil {
			t.Errorf("inclusion of %d: %v (%s)", idx, err, r)
		}
	}
	if r := w.ts.do(t, "GET", "/audit/proof/consistency?from=1&to="+strconv.FormatInt(cp.Size, 10), nil, so...); r.Status != 200 {
		t.Errorf("consistency: %s", r)
	}
	if r := w.ts.do(t, "GET", "/audit/proof/inclusion?index=0&size=99999", nil, so...); r.Status != 400 {
		t.Errorf("beyond the checkpoint: %s", r)
	}
	if r := w.ts.do(t, "GET", "/audit/checkpoint", nil, doc...); r.Status != 403 {
		t.Errorf("physician reads the checkpoint: %d", r.Status)
	}
}
