package api

// Bulk export attacked over HTTP on both back ends: no download without a
// second person's approval, never the requester's own approval, the scope
// held to the approved facility, types, period and the requester's reach,
// once and before expiry, every exported patient in the audit entry, and
// each export's watermark traced back from a few leaked rows.

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"carnet/internal/audit"
	"carnet/internal/auth"
	"carnet/internal/fhir"
	"carnet/internal/guard"
	"carnet/internal/incident"
	"carnet/internal/policy"
	"carnet/internal/record"
	"carnet/internal/store"
	"carnet/internal/store/storetest"
	"carnet/internal/synth"
)

type exportWorld struct {
	st       *store.SQL
	ts       *testServer
	clk      *secClock
	f1, f2   string
	doc      string
	f1p, f2p []string        // patients at F1 and F2
	docs     map[string]bool // F1 patients whose attending physician is doc
	enc      map[string]bool // F1 patients with an Encounter
	tokens   map[string]string
	ids      map[string]string
}

// exportUsers: username -> roles (all at F1; clerk at F2 too).
var exportUsers = map[string][]string{
	"clerk":   {policy.AdmissionClerk},
	"clerk2":  {policy.AdmissionClerk},
	"billing": {policy.BillingClerk},
	"doc":     {policy.Physician},
	"so1":     {policy.SecurityOfficer},
	"so2":     {policy.SecurityOfficer},
	"soclerk": {policy.AdmissionClerk, policy.SecurityOfficer},
	"ga":      {policy.GroupAdmin},
	"fa":      {policy.FacilityAdmin},
}

// patientJSON is a plausible patient (an invented person) at org.
func exportPatientJSON(i int, org, gp string) string {
	p := synth.NewFakePerson([]byte(fmt.Sprintf("export-test-patient-%d", i)))
	tel := fmt.Sprintf(`[{"system":"phone","value":%q,"use":"mobile"}`, p.Phone)
	if i%3 == 0 {
		tel += fmt.Sprintf(`,{"system":"phone","value":"01 45 %02d %02d %02d","use":"home"}`, i%100, (i*7)%100, (i*13)%100)
	}
	if i%2 == 0 {
		tel += fmt.Sprintf(`,{"system":"email","value":%q,"use":"home"}`, p.Email)
	}
	tel += "]"
	gpJSON := ""
	if gp != "" {
		gpJSON = `,"generalPractitioner":[{"reference":"Practitioner/` + gp + `"}]`
	}
	return fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"use":"usual","system":"https://carnet.example/fac/t/ipp","value":"9%07d"}],`+
		`"name":[{"use":"official","family":%q,"given":[%q]}],"gender":%q,"birthDate":%q,"telecom":%s,`+
		`"address":[{"use":"home","line":[%q],"city":%q,"postalCode":%q,"country":"FR"}],"managingOrganization":{"reference":"Organization/%s"}%s}`,
		i, p.Family, p.Given, p.Gender, p.BirthDate, tel, p.Line, p.City, p.PostalCode, org, gpJSON)
}

func newExportWorld(t *testing.T, st *store.SQL) *exportWorld {
	t.Helper()
	ctx := context.Background()
	rec := record.New(st)
	mk := func(js string) string {
		r, err := fhir.Parse([]byte(js))
		if err != nil {
			t.Fatalf("parse %s: %v", js, err)
		}
		out, err := rec.Create(ctx, fhir.Type(r), r)
		if err != nil {
			t.Fatalf("create %s: %v", js, err)
		}
		return out.Resource.ID
	}
	w := &exportWorld{st: st, clk: &secClock{t: time.Now().UTC().Truncate(time.Second)}, docs: map[string]bool{}, enc: map[string]bool{},
		tokens: map[string]string{}, ids: map[string]string{}}
	w.f1 = mk(`{"resourceType":"Organization","name":"Clinique Export"}`)
	w.f2 = mk(`{"resourceType":"Organization","name":"Clinique Autre"}`)
	w.doc = mk(`{"resourceType":"Practitioner","name":[{"family":"Docteur"}]}`)
	for i := range 24 {
		gp := ""
		if i < 4 {
			gp = w.doc
		}
		id := mk(exportPatientJSON(i, w.f1, gp))
		w.f1p = append(w.f1p, id)
		if gp != "" {
			w.docs[id] = true
		}
		if i%4 == 1 {
			mk(`{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/` + id + `"},"serviceProvider":{"reference":"Organization/` + w.f1 + `"}}`)
			w.enc[id] = true
		}
		if i < 3 {
			mk(`{"resourceType":"Observation","status":"final","code":{"text":"pouls"},"subject":{"reference":"Patient/` + id + `"},"valueQuantity":{"value":72,"unit":"/min"}}`)
		}
	}
	for i := range 3 {
		gp := ""
		if i == 0 {
			gp = w.doc // cared for by doc, but at F2: not doc's patient from F1
		}
		id := mk(exportPatientJSON(100+i, w.f2, gp))
		w.f2p = append(w.f2p, id)
		mk(`{"resourceType":"Observation","status":"final","code":{"text":"pouls"},"subject":{"reference":"Patient/` + id + `"},"valueQuantity":{"value":80,"unit":"/min"}}`)
	}
	pol := policy.New(st)
	pol.Now = w.clk.Now
	svc := auth.NewService(st, auth.Options{})
	now := time.Now()
	for name, roles := range exportUsers {
		prac := ""
		if name == "doc" {
			prac = w.doc
		}
		facs := []string{w.f1}
		if name == "clerk" {
			facs = append(facs, w.f2) // works at both: an export of F1 must not carry F2
		}
		if _, err := svc.CreateAccount(ctx, auth.NewAccount{Username: name, Practitioner: prac, Roles: roles, Facilities: facs}); err != nil {
			t.Fatal(err)
		}
		a, err := st.AccountByUsername(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		tok, hash, _ := auth.NewToken(auth.AccessTokenPrefix)
		if err := st.InsertTokens(ctx, &store.Token{Hash: hash, Kind: "access", Account: a.ID, Session: "s-" + name, Scopes: policy.DefaultScope, Created: now, Expires: now.Add(2 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		w.tokens[name], w.ids[name] = tok, a.ID
	}
	srv := httptest.NewServer(New(st, Options{Auth: svc, Policy: pol, Admin: st, Audit: auditLog(t, st),
		Guard: guard.New(st, guard.Options{Now: w.clk.Now}), Alerts: st}))
	t.Cleanup(srv.Close)
	w.ts = &testServer{Server: srv, st: st}
	return w
}

func (w *exportWorld) as(user string) []string { return bearerHdr(w.tokens[user]) }

func (w *exportWorld) request(t *testing.T, user, body string) *resp {
	t.Helper()
	return w.ts.do(t, "POST", "/export-requests", []byte(body), append(w.as(user), "Content-Type", "application/json")...)
}

// requestID asks for an export and returns its id.
func (w *exportWorld) requestID(t *testing.T, user, body string) string {
	t.Helper()
	r := w.request(t, user, body)
	mustStatus(t, r, 201, user+" requests an export")
	m := decode(t, r.Body)
	if m["status"] != "pending" || m["requester"] != user {
		t.Fatalf("new request: %s", r)
	}
	return m["id"].(string)
}

func (w *exportWorld) decide(t *testing.T, user, id, verb string) *resp {
	t.Helper()
	return w.ts.do(t, "POST", "/export-requests/"+id+"/"+verb, []byte(`{"note":"checked with the data protection officer"}`), append(w.as(user), "Content-Type", "application/json")...)
}

func (w *exportWorld) download(t *testing.T, user, query string) *resp {
	t.Helper()
	return w.ts.do(t, "GET", "/fhir/$export?"+query, nil, w.as(user)...)
}

func (w *exportWorld) body(types ...string) string {
	if len(types) == 0 {
		types = []string{"Patient"}
	}
	tj, _ := json.Marshal(types)
	return `{"facility":"` + w.f1 + `","types":` + string(tj) + `,"reason":"quality audit of the diabetes clinic","recipient":"Dr Marie Curie, ARS Ile-de-France"}`
}

// exportOK requests, approves (so1) and downloads an export.
func (w *exportWorld) exportOK(t *testing.T, user, body string) (string, []byte) {
	t.Helper()
	id := w.requestID(t, user, body)
	mustStatus(t, w.decide(t, "so1", id, "approve"), 200, "so1 approves")
	r := w.download(t, user, "_exportRequest="+id)
	mustStatus(t, r, 200, "download")
	if ct := r.Header.Get("Content-Type"); ct != "application/fhir+ndjson" {
		t.Fatalf("Content-Type %q", ct)
	}
	return id, r.Body
}

// ndjson splits an export into resources by type (canaries apart: they
// are the Patients that do not exist in the store).
func (w *exportWorld) ndjson(t *testing.T, body []byte) (real map[string][]fhir.Resource, canaries []fhir.Resource) {
	t.Helper()
	real = map[string][]fhir.Resource{}
	for line := range bytes.SplitSeq(bytes.TrimSpace(body), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		r, err := fhir.Parse(line)
		if err != nil {
			t.Fatalf("bad NDJSON line %q: %v", line, err)
		}
		typ := fhir.Type(r)
		if _, err := w.st.Read(context.Background(), typ, fhir.ID(r)); err != nil {
			if typ != "Patient" {
				t.Fatalf("exported %s/%s is not in the store", typ, fhir.ID(r))
			}
			canaries = append(canaries, r)
			continue
		}
		real[typ] = append(real[typ], r)
	}
	return real, canaries
}

func patientsOf(rs []fhir.Resource) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fhir.PatientOf(r))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func sorted(v []string) []string {
	v = slices.Clone(v)
	slices.Sort(v)
	return v
}

func keysOf(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func eachBackend(t *testing.T, fn func(t *testing.T, w *exportWorld)) {
	for name, open := range storetest.Backends(t) {
		t.Run(name, func(t *testing.T) {
			fn(t, newExportWorld(t, open(t).(*store.SQL)))
		})
	}
}

// Nothing leaves without a security officer's approval, and only once.
func TestExportNeedsApprovalAndHappensOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, w *exportWorld) {
		id := w.requestID(t, "clerk", w.body())
		r := w.download(t, "clerk", "_exportRequest="+id)
		mustStatus(t, r, 403, "download before approval")
		if is := outcomeOf(t, r.Body); !strings.Contains(is["diagnostics"].(string), "approval") {
			t.Errorf("pending: %s", r)
		}
		noPatientData(t, r, "pending export")
		mustStatus(t, w.download(t, "clerk", ""), 400, "no export request")
		mustStatus(t, w.download(t, "clerk", "_type=Patient"), 400, "no export request")

		mustStatus(t, w.decide(t, "so1", id, "approve"), 200, "approve")
		if r := w.ts.do(t, "GET", "/export-requests/"+id, nil, w.as("clerk")...); r.Status != 200 || decode(t, r.Body)["status"] != "approved" || decode(t, r.Body)["decided_by"] != "so1" {
			t.Fatalf("approved request: %s", r)
		}
		// Another account, even of the same role and facility, or the
		// approver, cannot use the approval.
		for _, u := range []string{"clerk2", "so1", "billing"} {
			r := w.download(t, u, "_exportRequest="+id)
			mustStatus(t, r, 403, u+" downloads clerk's export")
			noPatientData(t, r, u+" downloads clerk's export")
		}
		r = w.download(t, "clerk", "_exportRequest="+id)
		mustStatus(t, r, 200, "download")
		real, canaries := w.ndjson(t, r.Body)
		if got := patientsOf(real["Patient"]); !slices.Equal(got, sorted(w.f1p)) {
			t.Errorf("exported patients %v, want F1's %v", got, sorted(w.f1p))
		}
		if len(canaries) < 2 || len(canaries) > 3 {
			t.Errorf("%d canaries", len(canaries))
		}
		// Once.
		for range 2 {
			r := w.download(t, "clerk", "_exportRequest="+id)
			mustStatus(t, r, 410, "second download")
			outcomeOf(t, r.Body)
			noPatientData(t, r, "second download")
		}
		if r := w.ts.do(t, "GET", "/export-requests/"+id, nil, w.as("so2")...); decode(t, r.Body)["status"] != "downloaded" || num(decode(t, r.Body)["patients"]) != len(w.f1p) {
			t.Errorf("after download: %s", r)
		}
		// A rejected request never downloads.
		id2 := w.requestID(t, "clerk", w.body())
		mustStatus(t, w.decide(t, "so2", id2, "reject"), 200, "reject")
		mustStatus(t, w.decide(t, "so1", id2, "approve"), 409, "approve after reject")
		mustStatus(t, w.download(t, "clerk", "_exportRequest="+id2), 403, "rejected download")
	})
}

// Two downloads at once: exactly one gets the data.
func TestExportConcurrentDownloadsOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, w *exportWorld) {
		id := w.requestID(t, "clerk", w.body())
		mustStatus(t, w.decide(t, "so1", id, "approve"), 200, "approve")
		var wg sync.WaitGroup
		status := make([]int, 4)
		for i := range status {
			wg.Go(func() { status[i] = w.download(t, "clerk", "_exportRequest="+id).Status })
		}
		wg.Wait()
		ok := 0
		for _, s := range status {
			switch s {
			case 200:
				ok++
			case 409, 410:
			default:
				t.Errorf("concurrent download: %d", s)
			}
		}
		if ok != 1 {
			t.Errorf("statuses %v: %d downloads succeeded, want 1", status, ok)
		}
	})
}

// Four eyes: the requester never approves their own export, even as a
// security officer; only a security officer approves.
func TestExportApprovalIsSecondPerson(t *testing.T) {
	eachBackend(t, func(t *testing.T, w *exportWorld) {
		own := w.requestID(t, "soclerk", w.body())
		r := w.decide(t, "soclerk", own, "approve")
		mustStatus(t, r, 403, "a security officer approves their own export")
		if is := outcomeOf(t, r.Body); !strings.Contains(is["diagnostics"].(string), "second person") {
			t.Errorf("message: %s", r)
		}
		mustStatus(t, w.decide(t, "soclerk", own, "reject"), 403, "a security officer rejects their own export")
		mustStatus(t, w.download(t, "soclerk", "_exportRequest="+own), 403, "own export still pending")

		id := w.requestID(t, "clerk", w.body())
		for _, u := range []string{"clerk", "clerk2", "doc", "billing", "ga", "fa"} {
			r := w.decide(t, u, id, "approve")
			mustStatus(t, r, 403, u+" approves")
			outcomeOf(t, r.Body)
		}
		mustStatus(t, w.download(t, "clerk", "_exportRequest="+id), 403, "download after refused approvals")
		mustStatus(t, w.decide(t, "soclerk", id, "approve"), 200, "another security officer approves")
		mustStatus(t, w.decide(t, "so2", id, "approve"), 409, "second approval")
		mustStatus(t, w.decide(t, "so2", id, "reject"), 409, "reject after approval")
		mustStatus(t, w.decide(t, "so2", "no-such-request", "approve"), 404, "unknown request")

		// Listing: the security officer sees all, others their own.
		var all, mine []map[string]any
		json.Unmarshal(w.ts.do(t, "GET", "/export-requests", nil, w.as("so2")...).Body, &all)
		json.Unmarshal(w.ts.do(t, "GET", "/export-requests", nil, w.as("clerk2")...).Body, &mine)
		if len(all) != 2 || len(mine) != 0 {
			t.Errorf("so2 lists %d, clerk2 %d", len(all), len(mine))
		}
		for _, v := range all {
			if _, leak := v["watermark_key"]; leak {
				t.Error("the watermark key is shown")
			}
		}
		mustStatus(t, w.ts.do(t, "GET", "/export-requests/"+id, nil, w.as("clerk2")...), 404, "another's request")
	})
}

// Who may ask, for what: never an administrator or the security officer
// (no patient reach), only the requester's facilities and readable types;
// every bad input is a 4xx OperationOutcome.
func TestExportRequestRefusals(t *testing.T) {
	eachBackend(t, func(t *testing.T, w *exportWorld) {
		body := w.body()
		for _, u := range []string{"ga", "fa", "so1"} {
			r := w.request(t, u, body)
			mustStatus(t, r, 403, u+" requests an export")
			outcomeOf(t, r.Body)
		}
		f2 := strings.Replace(body, w.f1, w.f2, 1)
		cases := []struct {
			user, body string
			status     int
		}{
			{"clerk2", f2, 403},                    // not their facility
			{"clerk", w.body("Observation"), 403},  // not a type they read
			{"billing", w.body("Encounter"), 403},  // idem
			{"doc", w.body("Invoice"), 200},        // readable (rs on billing): allowed
			{"clerk", w.body("Organization"), 400}, // not patient data
			{"clerk", w.body("Nonsense"), 400},     // no such type
			{"clerk", `{"types":["Patient"],"reason":"quality audit of the clinic","recipient":"ARS"}`, 400}, // no facility
			{"clerk", strings.Replace(body, "quality audit of the diabetes clinic", "audit", 1), 400},
			{"clerk", strings.Replace(body, `"recipient":"Dr Marie Curie, ARS Ile-de-France"`, `"recipient":""`, 1), 400},
			{"clerk", strings.Replace(body, `"reason"`, `"since":"yesterday","reason"`, 1), 400},
			{"clerk", strings.Replace(body, `"reason"`, `"since":"2026-02-01","until":"2026-01-01","reason"`, 1), 400},
			{"clerk", strings.Replace(body, `"reason"`, `"max_patients":50001,"reason"`, 1), 400},
			{"clerk", strings.Replace(body, `"reason"`, `"valid_hours":1000,"reason"`, 1), 400},
			{"clerk", strings.Replace(body, `"facility"`, `"facilty"`, 1), 400}, // unknown field
			{"clerk", `{"facility":`, 400},
			{"clerk", `[]`, 400},
			{"clerk", ``, 400},
			{"clerk", `{"facility":"` + w.f1 + `","types":7,"reason":"quality audit of the clinic","recipient":"ARS"}`, 400},
		}
		for _, c := range cases {
			r := w.request(t, c.user, c.body)
			if c.status == 200 {
				mustStatus(t, r, 201, c.user+" "+c.body)
				continue
			}
			mustStatus(t, r, c.status, c.user+" "+c.body)
			outcomeOf(t, r.Body)
		}
		id := w.requestID(t, "clerk", w.body("Patient", "Encounter"))
		mustStatus(t, w.decide(t, "so1", id, "approve"), 200, "approve")
		for _, q := range []string{
			"_exportRequest=" + id + "&_type=Observation", // not approved
			"_exportRequest=" + id + "&_since=2020-01-01", // the period is the approval's
			"_exportRequest=" + id + "&_outputFormat=text/csv",
			"_exportRequest=" + id + "&patient=x",
			"_exportRequest=../../etc",
			"_exportRequest=" + id + "&%zz",
		} {
			r := w.download(t, "clerk", q)
			mustStatus(t, r, 400, q)
			outcomeOf(t, r.Body)
		}
		mustStatus(t, w.download(t, "clerk", "_exportRequest=00000000-0000-4000-8000-000000000000"), 404, "unknown export")
		// Still approved after all those refusals.
		r := w.download(t, "clerk", "_exportRequest="+id+"&_type=Encounter&_outputFormat=application/fhir%2Bndjson")
		mustStatus(t, r, 200, "narrowed download")
		real, canaries := w.ndjson(t, r.Body)
		if len(real["Patient"]) != 0 || len(canaries) != 0 || len(real["Encounter"]) != len(w.enc) {
			t.Errorf("_type=Encounter: %d patients, %d canaries, %d encounters (want %d)", len(real["Patient"]), len(canaries), len(real["Encounter"]), len(w.enc))
		}
	})
}

// An approval expires; a request not approved in time expires too.
func TestExportExpires(t *testing.T) {
	eachBackend(t, func(t *testing.T, w *exportWorld) {
		id := w.requestID(t, "clerk", strings.Replace(w.body(), `"reason"`, `"valid_hours":2,"reason"`, 1))
		mustStatus(t, w.decide(t, "so1", id, "approve"), 200, "approve")
		w.clk.Advance(2*time.Hour + time.Second)
		r := w.download(t, "clerk", "_exportRequest="+id)
		mustStatus(t, r, 410, "download after expiry")
		noPatientData(t, r, "expired export")
		if r := w.ts.do(t, "GET", "/export-requests/"+id, nil, w.as("clerk")...); decode(t, r.Body)["status"] != "expired" {
			t.Errorf("status after expiry: %s", r)
		}
		id2 := w.requestID(t, "clerk", w.body())
		w.clk.Advance(8 * 24 * time.Hour)
		mustStatus(t, w.decide(t, "so1", id2, "approve"), 410, "approval after the deadline")
		mustStatus(t, w.download(t, "clerk", "_exportRequest="+id2), 410, "download of a request expired unapproved")
	})
}

// The scope: the approved facility and types, only what the requester
// reaches (no break-the-glass grant), the approved period, max_patients.
func TestExportScope(t *testing.T) {
	eachBackend(t, func(t *testing.T, w *exportWorld) {
		// The clerk: F1's patients and encounters, nothing of F2, nothing clinical.
		_, body := w.exportOK(t, "clerk", w.body("Patient", "Encounter"))
		real, _ := w.ndjson(t, body)
		if got := patientsOf(real["Patient"]); !slices.Equal(got, sorted(w.f1p)) {
			t.Errorf("clerk's Patients %v", got)
		}
		if got := patientsOf(real["Encounter"]); !slices.Equal(got, keysOf(w.enc)) {
			t.Errorf("clerk's Encounters %v, want %v", got, keysOf(w.enc))
		}
		if len(real) != 2 {
			t.Errorf("types exported: %v", real)
		}
		// The physician: only patients in their care at F1 (not the F2
		// patient they also care for, not the one they broke the glass for).
		bg := w.ts.do(t, "POST", "/fhir/Patient/"+w.f1p[10]+"/$break-the-glass", []byte(`{"reason":"emergency","detail":"arrived unconscious in the ER"}`), w.as("doc")...)
		mustStatus(t, bg, 201, "break the glass")
		_, body = w.exportOK(t, "doc", w.body("Patient", "Observation"))
		real, _ = w.ndjson(t, body)
		if got := patientsOf(real["Patient"]); !slices.Equal(got, keysOf(w.docs)) {
			t.Errorf("physician's Patients %v, want %v", got, keysOf(w.docs))
		}
		var wantObs []string
		for _, p := range w.f1p[:3] {
			if w.docs[p] {
				wantObs = append(wantObs, p)
			}
		}
		if got := patientsOf(real["Observation"]); !slices.Equal(got, sorted(wantObs)) {
			t.Errorf("physician's Observations %v, want %v", got, wantObs)
		}
		// The period: only what was updated since.
		since := time.Now().UTC()
		time.Sleep(5 * time.Millisecond)
		late := w.seed(t, exportPatientJSON(50, w.f1, ""))
		_, body = w.exportOK(t, "clerk", strings.Replace(w.body(), `"reason"`, `"since":"`+since.Format(time.RFC3339Nano)+`","reason"`, 1))
		real, canaries := w.ndjson(t, body)
		if got := patientsOf(real["Patient"]); !slices.Equal(got, []string{late}) || len(canaries) < 2 {
			t.Errorf("since %s: %v (and %d canaries), want only %s", since, got, len(canaries), late)
		}
		_, body = w.exportOK(t, "clerk", strings.Replace(w.body(), `"reason"`, `"until":"`+since.Format(time.RFC3339Nano)+`","reason"`, 1))
		if real, _ := w.ndjson(t, body); len(real["Patient"]) != len(w.f1p) || slices.Contains(patientsOf(real["Patient"]), late) {
			t.Errorf("until %s: %d patients", since, len(real["Patient"]))
		}
		// max_patients: a larger scope is refused, not truncated, and the
		// approval stays usable for nothing else.
		id := w.requestID(t, "clerk", strings.Replace(w.body(), `"reason"`, `"max_patients":10,"reason"`, 1))
		mustStatus(t, w.decide(t, "so1", id, "approve"), 200, "approve")
		r := w.download(t, "clerk", "_exportRequest="+id)
		mustStatus(t, r, 422, "scope over max_patients")
		noPatientData(t, r, "refused export")
		if is := outcomeOf(t, r.Body); is["code"] != "too-costly" {
			t.Errorf("issue %v", is)
		}
		// A requester who lost the facility since the approval gets nothing.
		id = w.requestID(t, "clerk2", w.body())
		mustStatus(t, w.decide(t, "so1", id, "approve"), 200, "approve")
		a, _ := w.st.AccountByID(context.Background(), w.ids["clerk2"])
		a.Facilities = []string{w.f2}
		if err := w.st.UpdateAccount(context.Background(), a); err != nil {
			t.Fatal(err)
		}
		mustStatus(t, w.download(t, "clerk2", "_exportRequest="+id), 403, "download after leaving the facility")
	})
}

func (w *exportWorld) seed(t *testing.T, js string) string {
	t.Helper()
	r, err := fhir.Parse([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	out, err := record.New(w.st).Create(context.Background(), fhir.Type(r), r)
	if err != nil {
		t.Fatal(err)
	}
	return out.Resource.ID
}

// The export's audit entry lists exactly the patients it carried (not the
// canaries), per type, and incident scope finds them.
func TestExportAuditListsExactlyTheExportedPatients(t *testing.T) {
	eachBackend(t, func(t *testing.T, w *exportWorld) {
		id, body := w.exportOK(t, "clerk", w.body("Patient", "Encounter"))
		real, canaries := w.ndjson(t, body)
		rows, err := w.st.FindAudit(context.Background(), store.AuditFilter{Account: w.ids["clerk"], Action: "export"})
		if err != nil || len(rows) != 1 {
			t.Fatalf("%d export entries, %v", len(rows), err)
		}
		e, err := audit.Decode(rows[0].Entry)
		if err != nil {
			t.Fatal(err)
		}
		if e.Subject != incident.ExportSubject(id) || e.Outcome != 200 || e.Purpose != "approval:"+w.ids["so1"] {
			t.Errorf("entry: subject %q outcome %d purpose %q", e.Subject, e.Outcome, e.Purpose)
		}
		if !slices.Equal(e.Patients, patientsOf(real["Patient"])) {
			t.Errorf("entry patients %v, exported %v", e.Patients, patientsOf(real["Patient"]))
		}
		for typ, rs := range real {
			if !slices.Equal(e.Disclosed[typ], patientsOf(rs)) {
				t.Errorf("entry %s: %v, exported %v", typ, e.Disclosed[typ], patientsOf(rs))
			}
		}
		for _, c := range canaries {
			if slices.Contains(e.Patients, fhir.ID(c)) {
				t.Error("a canary is in the audit entry")
			}
		}
		if strings.Contains(string(rows[0].Entry), "Clinique") {
			t.Error("the entry holds names")
		}
		rep, err := incident.Scope(context.Background(), w.st, incident.Query{Account: "clerk"})
		if err != nil {
			t.Fatal(err)
		}
		var scoped []string
		for _, p := range rep.Patients {
			scoped = append(scoped, p.ID)
		}
		if !slices.Equal(scoped, sorted(w.f1p)) {
			t.Errorf("incident scope %v, exported %v", scoped, sorted(w.f1p))
		}
		// The request and the approval are audited too.
		for _, c := range []struct{ user, action string }{{"clerk", "export-request"}, {"so1", "export-approve"}} {
			rows, _ := w.st.FindAudit(context.Background(), store.AuditFilter{Account: w.ids[c.user], Action: c.action})
			if len(rows) != 1 {
				t.Errorf("%d %s entries", len(rows), c.action)
				continue
			}
			if e, _ := audit.Decode(rows[0].Entry); e.Subject != incident.ExportSubject(id) {
				t.Errorf("%s subject %q", c.action, e.Subject)
			}
		}
	})
}

// csvOf turns exported Patient lines into a spreadsheet with the columns
// given, as a leaker would.
func csvOf(t *testing.T, rs []fhir.Resource, cols []string) []byte {
	t.Helper()
	var b bytes.Buffer
	cw := csv.NewWriter(&b)
	cw.Write(cols)
	for _, r := range rs {
		var rec []string
		name := r["name"].([]any)[0].(map[string]any)
		addr := r["address"].([]any)[0].(map[string]any)
		var phones []string
		for _, tc := range r["telecom"].([]any) {
			if m := tc.(map[string]any); m["system"] == "phone" {
				phones = append(phones, m["value"].(string))
			}
		}
		for _, c := range cols {
			switch c {
			case "id":
				rec = append(rec, fhir.ID(r))
			case "family":
				rec = append(rec, name["family"].(string))
			case "given":
				rec = append(rec, name["given"].([]any)[0].(string))
			case "birthDate":
				rec = append(rec, r["birthDate"].(string))
			case "phone":
				rec = append(rec, strings.Join(phones, "; "))
			case "address":
				rec = append(rec, addr["line"].([]any)[0].(string))
			case "city":
				rec = append(rec, addr["city"].(string))
			}
		}
		cw.Write(rec)
	}
	cw.Flush()
	return b.Bytes()
}

// Ten exports of the same patients differ, clinically identical; five rows
// of one, as CSV with columns reordered and dropped, name it (facility,
// requester, approver, recipient) among them; rows straight from the store
// match none; a canary row is certain.
func TestExportWatermarkTracedAmongTen(t *testing.T) {
	eachBackend(t, func(t *testing.T, w *exportWorld) {
		ctx := context.Background()
		var ids []string
		var exports []map[string][]fhir.Resource
		var canaries [][]fhir.Resource
		var bodies [][]byte
		for i := range 10 {
			user := []string{"clerk", "clerk2", "billing"}[i%3]
			id, body := w.exportOK(t, user, strings.Replace(w.body(), "ARS Ile-de-France", fmt.Sprintf("recipient %d", i), 1))
			real, cs := w.ndjson(t, body)
			ids, exports, canaries, bodies = append(ids, id), append(exports, real), append(canaries, cs), append(bodies, body)
		}
		for i := 1; i < 10; i++ {
			if bytes.Equal(bodies[i], bodies[0]) {
				t.Fatal("two exports are identical")
			}
			if !slices.Equal(patientsOf(exports[i]["Patient"]), patientsOf(exports[0]["Patient"])) {
				t.Fatal("two exports of the same scope carry different patients")
			}
			if fhir.ID(canaries[i][0]) == fhir.ID(canaries[0][0]) {
				t.Fatal("two exports share a canary")
			}
		}
		// Clinically identical: everything but the forms is as stored.
		for _, r := range exports[3]["Patient"] {
			st, _ := w.st.Read(ctx, "Patient", fhir.ID(r))
			orig, _ := fhir.Parse(st.Data)
			for _, k := range []string{"identifier", "birthDate", "gender", "managingOrganization", "generalPractitioner"} {
				if fmt.Sprint(orig[k]) != fmt.Sprint(r[k]) {
					t.Errorf("%s changed: %v -> %v", k, orig[k], r[k])
				}
			}
		}
		trace := func(sample []byte) *incident.TraceReport {
			t.Helper()
			s, err := incident.ParseSample(sample)
			if err != nil {
				t.Fatalf("%v\n%s", err, sample)
			}
			rep, err := incident.Trace(ctx, w.st, s, nil)
			if err != nil {
				t.Fatal(err)
			}
			return rep
		}
		for _, src := range []int{1, 4, 8} {
			rows := slices.Clone(exports[src]["Patient"])
			rows = []fhir.Resource{rows[2], rows[7], rows[11], rows[16], rows[21]}
			cols := []string{"city", "birthDate", "phone", "family", "address", "given"}
			if src == 4 {
				cols = []string{"phone", "id", "given", "family", "address"}
			}
			start := time.Now()
			rep := trace(csvOf(t, rows, cols))
			el := time.Since(start)
			b := rep.Best[0]
			want := []string{"clerk", "clerk2", "billing"}[src%3]
			if !rep.Matched || b.Export != ids[src] || b.Certainty != "high" || b.Confidence < 0.99 || b.Requester != want || b.Approver != "so1" ||
				b.Facility != w.f1 || b.FacilityName != "Clinique Export" || b.Recipient != fmt.Sprintf("Dr Marie Curie, recipient %d", src) || rep.Exports != 10 {
				t.Fatalf("source %s: %s\n%+v", ids[src], rep.Verdict, b)
			}
			if b.Audit == nil || b.Audit.Entry < 0 {
				t.Errorf("no audit entry found: %+v", b.Audit)
			} else if src == 4 && (b.Audit.RowsWithIDs != 5 || b.Audit.InExport != 5) {
				t.Errorf("audit check %+v", b.Audit)
			}
			t.Logf("5 CSV rows (%s) traced among 10 exports in %v: %s", strings.Join(cols, ","), el.Round(time.Millisecond), rep.Verdict)
		}
		// Straight from the store: no watermark, no match; but the audit
		// log says which exports had these patients.
		var plain bytes.Buffer
		for _, p := range w.f1p[:6] {
			res, _ := w.st.Read(ctx, "Patient", p)
			plain.Write(res.Data)
			plain.WriteByte('\n')
		}
		// One of them is registered as a facility canary (the guard's).
		if err := w.st.AddCanaries(ctx, map[string]string{w.f1p[5]: w.f1}); err != nil {
			t.Fatal(err)
		}
		rep := trace(plain.Bytes())
		if rep.Matched || len(rep.ExportedIn) != 10 {
			t.Fatalf("rows from the store: %s (exported in %v)", rep.Verdict, rep.ExportedIn)
		}
		if fc := rep.FacilityCanaries; len(fc) != 1 || fc[0].Patient != w.f1p[5] || fc[0].Facility != w.f1 || fc[0].Row != 6 {
			t.Errorf("facility canaries %+v", fc)
		}
		// A canary among rows from elsewhere: certain.
		sample := csvOf(t, []fhir.Resource{exports[0]["Patient"][0], canaries[6][0]}, []string{"family", "given", "birthDate", "phone"})
		rep = trace(sample)
		if b := rep.Best[0]; !rep.Matched || b.Export != ids[6] || b.Certainty != "certain" {
			t.Fatalf("canary: %s", rep.Verdict)
		}
	})
}
