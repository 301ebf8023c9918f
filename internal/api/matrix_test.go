package api

// The access matrix: every role, every stored resource type, patients with
// and without a care relationship, at the caller's facility and at another,
// and break-the-glass, on both back ends. The expectations are written out
// by hand below (what a clinic expects of each job), not derived from
// policy.Rules, so a change to the rules that widens access fails here.

import (
	"context"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"carnet/internal/auth"
	"carnet/internal/fhir"
	"carnet/internal/policy"
	"carnet/internal/record"
	"carnet/internal/store"
	"carnet/internal/store/storetest"
)

// Patients of the matrix world:
//
//	A at F1: the physician is attending physician, the nurse in the care team (both at F1)
//	B at F1: nobody's patient
//	C at F2: the same physician and nurse care for C, but at F2 (not their facility)
var matrixPatients = []string{"A", "B", "C"}

// expected lists, per role and data category (or type), the patients whose
// resources the role reads; "" means none (403 on the type).
var expected = map[string]map[string]string{
	policy.Physician:       {"identity": "A", "clinical": "A", "prescriptions": "A", "billing": "A"},
	policy.Nurse:           {"identity": "A", "clinical": "A", "prescriptions": "A", "billing": ""},
	policy.Pharmacist:      {"identity": "AB", "clinical": "", "prescriptions": "AB", "billing": ""},
	policy.AdmissionClerk:  {"identity": "AB", "clinical": "", "Encounter": "AB", "prescriptions": "", "billing": ""},
	policy.BillingClerk:    {"identity": "AB", "clinical": "", "prescriptions": "", "billing": "AB"},
	policy.FacilityAdmin:   {"identity": "", "clinical": "", "prescriptions": "", "billing": ""},
	policy.GroupAdmin:      {"identity": "", "clinical": "", "prescriptions": "", "billing": ""},
	policy.SecurityOfficer: {"identity": "", "clinical": "", "prescriptions": "", "billing": ""},
}

// expectedWrite: per role and category, the patients for whom the role
// creates a resource of that category.
var expectedWrite = map[string]map[string]string{
	policy.Physician:      {"clinical": "A", "prescriptions": "A"},
	policy.Nurse:          {"clinical": "A"},
	policy.Pharmacist:     {},
	policy.AdmissionClerk: {"identity": "AB", "Encounter": "AB"},
	policy.BillingClerk:   {"billing": "AB"},
}

func expectFor(m map[string]map[string]string, role, typ string) string {
	if v, ok := m[role][typ]; ok {
		return v
	}
	return m[role][string(fhir.LookupType(typ).Category)]
}

// minimal returns a valid resource of typ for patient pid.
func minimal(typ, pid string) string {
	ref := `{"reference":"Patient/` + pid + `"}`
	extra := map[string]string{
		"Encounter":         `"status":"planned","class":{"code":"AMB"},`,
		"MedicationRequest": `"status":"active","intent":"order",`,
		"Observation":       `"status":"final","code":{"text":"t"},`,
		"ChargeItem":        `"status":"billable","code":{"text":"t"},`,
		"Invoice":           `"status":"draft",`,
	}[typ]
	return `{"resourceType":"` + typ + `",` + extra + `"` + fhir.LookupType(typ).PatientRef + `":` + ref + `}`
}

type matrixWorld struct {
	ts       *testServer
	st       *store.SQL
	f1, f2   string
	patients map[string]string            // A, B, C -> Patient id
	res      map[string]map[string]string // type -> patient letter -> resource id
	count    map[string]map[string]int    // type -> patient letter -> resources
	tokens   map[string]string            // role -> access token
	accounts map[string]string            // role -> account id
	pol      *policy.Decider
	auditLog Auditor
}

func bearerHdr(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

func newMatrixWorld(t *testing.T, st *store.SQL) *matrixWorld {
	ctx := context.Background()
	rec := record.New(st)
	mk := func(typ, js string) string {
		r, err := fhir.Parse([]byte(js))
		if err != nil {
			t.Fatalf("parse %s: %v", js, err)
		}
		out, err := rec.Create(ctx, typ, r)
		if err != nil {
			t.Fatalf("create %s: %v", js, err)
		}
		return out.Resource.ID
	}
	w := &matrixWorld{st: st, patients: map[string]string{}, res: map[string]map[string]string{}, count: map[string]map[string]int{"Patient": {"A": 1, "B": 1, "C": 1}},
		tokens: map[string]string{}, accounts: map[string]string{}}
	w.f1 = mk("Organization", `{"resourceType":"Organization","name":"Clinique Un"}`)
	w.f2 = mk("Organization", `{"resourceType":"Organization","name":"Clinique Deux"}`)
	doc := mk("Practitioner", `{"resourceType":"Practitioner","name":[{"family":"Docteur"}]}`)
	nurse := mk("Practitioner", `{"resourceType":"Practitioner","name":[{"family":"Infirmiere"}]}`)
	pharm := mk("Practitioner", `{"resourceType":"Practitioner","name":[{"family":"Pharmacien"}]}`)
	facOf := map[string]string{"A": w.f1, "B": w.f1, "C": w.f2}
	for _, p := range matrixPatients {
		gp := ""
		if p != "B" {
			gp = `,"generalPractitioner":[{"reference":"Practitioner/` + doc + `"}]`
		}
		w.patients[p] = mk("Patient", `{"resourceType":"Patient","name":[{"family":"Matrix`+p+`"}],"managingOrganization":{"reference":"Organization/`+facOf[p]+`"}`+gp+`}`)
	}
	for _, ti := range fhir.StoredTypes() {
		if ti.PatientRef == "" {
			continue
		}
		w.res[ti.Name] = map[string]string{}
		for _, p := range matrixPatients {
			js := minimal(ti.Name, w.patients[p])
			if ti.Name == "CareTeam" && p != "B" {
				js = `{"resourceType":"CareTeam","status":"active","subject":{"reference":"Patient/` + w.patients[p] + `"},"managingOrganization":[{"reference":"Organization/` + facOf[p] + `"}],"participant":[{"member":{"reference":"Practitioner/` + nurse + `"}}]}`
			}
			w.res[ti.Name][p] = mk(ti.Name, js)
		}
		w.count[ti.Name] = map[string]int{"A": 1, "B": 1, "C": 1}
	}
	pol := policy.New(st)
	w.pol = pol
	svc := auth.NewService(st, auth.Options{})
	now := time.Now()
	for _, role := range policy.Roles {
		prac := map[string]string{policy.Physician: doc, policy.Nurse: nurse, policy.Pharmacist: pharm}[role]
		if _, err := svc.CreateAccount(ctx, auth.NewAccount{Username: "m-" + role, Practitioner: prac, Roles: []string{role}, Facilities: []string{w.f1}}); err != nil {
			t.Fatal(err)
		}
		a, err := st.AccountByUsername(ctx, "m-"+role)
		if err != nil {
			t.Fatal(err)
		}
		tok, hash, _ := auth.NewToken(auth.AccessTokenPrefix)
		if err := st.InsertTokens(ctx, &store.Token{Hash: hash, Kind: "access", Account: a.ID, Session: role, Scopes: policy.DefaultScope, Created: now, Expires: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		w.tokens[role], w.accounts[role] = tok, a.ID
	}
	w.auditLog = auditLog(t, st)
	srv := httptest.NewServer(New(st, Options{Auth: svc, Policy: pol, Admin: st, Audit: w.auditLog}))
	t.Cleanup(srv.Close)
	w.ts = &testServer{Server: srv, st: st}
	return w
}

func letters(s string, p string) bool { return s != "" && strings.Contains(s, p) }

func TestAccessMatrix(t *testing.T) {
	for name, open := range storetest.Backends(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t).(*store.SQL)
			w := newMatrixWorld(t, st)
			types := make([]string, 0, len(w.res)+1)
			for typ := range w.res {
				types = append(types, typ)
			}
			types = append(types, "Patient")
			sort.Strings(types)
			idOf := func(typ, p string) string {
				if typ == "Patient" {
					return w.patients[p]
				}
				return w.res[typ][p]
			}
			checkReads := func(t *testing.T, role, typ, want string) {
				t.Helper()
				h := bearerHdr(w.tokens[role])
				for _, p := range matrixPatients {
					r := w.ts.do(t, "GET", "/fhir/"+typ+"/"+idOf(typ, p), nil, h...)
					wantStatus := 403
					if letters(want, p) {
						wantStatus = 200
					}
					if r.Status != wantStatus {
						t.Errorf("%s read %s of patient %s: %d, want %d (%s)", role, typ, p, r.Status, wantStatus, r)
					}
					if r.Status != 200 && strings.Contains(string(r.Body), `"resourceType":"`+typ+`"`) && typ != "OperationOutcome" {
						t.Errorf("%s read %s of %s: denied but the body holds the resource", role, typ, p)
					}
				}
				// Search: the total counts only what the role reaches; a type
				// it may not read at all is 403.
				r := w.ts.do(t, "GET", "/fhir/"+typ+"?_count=50", nil, h...)
				if want == "" {
					if r.Status != 403 {
						t.Errorf("%s search %s: %d, want 403 (%s)", role, typ, r.Status, r)
					}
					return
				}
				if r.Status != 200 {
					t.Fatalf("%s search %s: %s", role, typ, r)
				}
				m := decode(t, r.Body)
				n := 0
				for _, p := range want {
					n += w.count[typ][string(p)]
				}
				if got := num(m["total"]); got != n {
					t.Errorf("%s search %s: total %d, want %d (patients %s)", role, typ, got, n, want)
				}
				if got := len(entryIDs(bundleEntries(t, m), "match")); got != n {
					t.Errorf("%s search %s: %d entries, want %d", role, typ, got, n)
				}
			}
			for _, role := range policy.Roles {
				for _, typ := range types {
					checkReads(t, role, typ, expectFor(expected, role, typ))
				}
				// Directory types: everyone reads them; only administrators write.
				r := w.ts.do(t, "GET", "/fhir/Organization?name=clinique", nil, bearerHdr(w.tokens[role])...)
				if r.Status != 200 || num(decode(t, r.Body)["total"]) != 2 {
					t.Errorf("%s: Organization search %s", role, r)
				}
				r = w.ts.do(t, "POST", "/fhir/Organization", []byte(`{"resourceType":"Organization","name":"New"}`), bearerHdr(w.tokens[role])...)
				if admin := role == policy.FacilityAdmin || role == policy.GroupAdmin; (r.Status == 201) != admin {
					t.Errorf("%s: create Organization %d", role, r.Status)
				}
			}

			// Writes: create one resource of each type for each patient.
			for role := range expectedWrite {
				for _, typ := range types {
					if typ == "Patient" {
						continue
					}
					want := expectFor(expectedWrite, role, typ)
					for _, p := range matrixPatients {
						r := w.ts.do(t, "POST", "/fhir/"+typ, []byte(minimal(typ, w.patients[p])), bearerHdr(w.tokens[role])...)
						wantStatus := 403
						if letters(want, p) {
							wantStatus = 201
						}
						if r.Status != wantStatus {
							t.Errorf("%s create %s for %s: %d, want %d (%s)", role, typ, p, r.Status, wantStatus, r)
						}
						if r.Status == 201 {
							w.count[typ][p]++
						}
					}
				}
			}
			// Registering patients: the admission clerk at their own facility only.
			for _, c := range []struct {
				role, fac string
				want      int
			}{{policy.AdmissionClerk, w.f1, 201}, {policy.AdmissionClerk, w.f2, 403}, {policy.Physician, w.f1, 403}, {policy.GroupAdmin, w.f1, 403}} {
				r := w.ts.do(t, "POST", "/fhir/Patient", []byte(`{"resourceType":"Patient","name":[{"family":"Nouveau"}],"managingOrganization":{"reference":"Organization/`+c.fac+`"}}`), bearerHdr(w.tokens[c.role])...)
				if r.Status != c.want {
					t.Errorf("%s registers a patient at %s: %d, want %d (%s)", c.role, c.fac, r.Status, c.want, r)
				}
			}
			// Moving a reachable record onto another patient is a write to both.
			obs := w.res["Observation"]["A"]
			r := w.ts.do(t, "PUT", "/fhir/Observation/"+obs, []byte(`{"resourceType":"Observation","id":"`+obs+`","status":"final","code":{"text":"t"},"subject":{"reference":"Patient/`+w.patients["B"]+`"}}`), bearerHdr(w.tokens[policy.Physician])...)
			if r.Status != 403 {
				t.Errorf("physician moves A's observation to B: %d, want 403", r.Status)
			}
			// A transaction with one forbidden entry writes nothing.
			before, _ := st.Stats(context.Background())
			tx := `{"resourceType":"Bundle","type":"transaction","entry":[` +
				`{"resource":` + minimal("Observation", w.patients["A"]) + `,"request":{"method":"POST","url":"Observation"}},` +
				`{"resource":` + minimal("Observation", w.patients["B"]) + `,"request":{"method":"POST","url":"Observation"}}]}`
			if r := w.ts.do(t, "POST", "/fhir", []byte(tx), bearerHdr(w.tokens[policy.Physician])...); r.Status != 403 {
				t.Errorf("transaction with a forbidden entry: %d, want 403 (%s)", r.Status, r)
			}
			after, _ := st.Stats(context.Background())
			if after["Observation"] != before["Observation"] {
				t.Errorf("forbidden transaction wrote %d observations", after["Observation"]-before["Observation"])
			}
			// _include and _revinclude never reach past the caller's patients.
			r = w.ts.do(t, "GET", "/fhir/Observation?_include=Observation:subject", nil, bearerHdr(w.tokens[policy.Physician])...)
			m := decode(t, r.Body)
			if inc := entryIDs(bundleEntries(t, m), "include"); len(inc) != 1 || !strings.HasSuffix(inc[0], w.patients["A"]) {
				t.Errorf("physician _include: %v, want only patient A", inc)
			}
			r = w.ts.do(t, "GET", "/fhir/Patient?_revinclude=Observation:subject", nil, bearerHdr(w.tokens[policy.AdmissionClerk])...)
			m = decode(t, r.Body)
			if inc := entryIDs(bundleEntries(t, m), "include"); len(inc) != 0 {
				t.Errorf("admission clerk _revinclude Observation: %v, want none", inc)
			}

			// Break-the-glass: the physician opens B (not C) for a while.
			r = w.ts.do(t, "POST", "/fhir/Patient/"+w.patients["B"]+"/$break-the-glass", []byte(`{"reason":"emergency","detail":"unconscious patient in the ER","minutes":30}`),
				append(bearerHdr(w.tokens[policy.Physician]), "Content-Type", "application/json")...)
			if r.Status != 201 {
				t.Fatalf("break-the-glass: %s", r)
			}
			for _, typ := range types {
				checkReads(t, policy.Physician, typ, expectFor(map[string]map[string]string{
					policy.Physician: {"identity": "AB", "clinical": "AB", "prescriptions": "AB", "billing": "AB"},
				}, policy.Physician, typ))
			}
			// The nurse has no grant; the physician's ends with its time.
			checkReads(t, policy.Nurse, "Observation", "A")
			w.pol.Now = func() time.Time { return time.Now().Add(31 * time.Minute) }
			checkReads(t, policy.Physician, "Observation", "A")
		})
	}
}
