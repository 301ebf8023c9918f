package web_test

// Tests of the patient pages (chart.go, prescribe.go, admission.go,
// access.go). Accounts: members 10..29 of each role.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"carnet/internal/fhir"
	"carnet/internal/policy"
	"carnet/internal/record"
	"carnet/internal/sim"
)

// ownPatient returns the first living patient m is the attending physician of.
func ownPatient(t testing.TB, a *app, m *sim.Member) sim.Patient {
	t.Helper()
	for _, i := range a.W.GPOf[m.Index] {
		if p := a.W.Patients[i]; !p.Deceased {
			return p
		}
	}
	t.Fatalf("%s has no living patient", m.Username)
	return sim.Patient{}
}

// strangerPatient returns a living patient of none of m's facilities.
func strangerPatient(t testing.TB, a *app, m *sim.Member, skip int) sim.Patient {
	t.Helper()
	for _, p := range a.W.Patients {
		if p.Deceased || slices.Contains(m.Fac, p.Home) || p.Second >= 0 && slices.Contains(m.Fac, p.Second) {
			continue
		}
		if skip == 0 {
			return p
		}
		skip--
	}
	t.Fatal("no patient outside the member's facilities")
	return sim.Patient{}
}

// stored reads a resource from the store (out of band, to check writes).
func stored(t testing.TB, a *app, typ, id string) map[string]any {
	t.Helper()
	r, err := a.W.Store.Read(context.Background(), typ, id)
	if err != nil {
		t.Fatalf("reading %s/%s: %v", typ, id, err)
	}
	var m map[string]any
	if err := json.Unmarshal(r.Data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// find lists the stored resources of typ matching the search, out of band.
func find(t testing.TB, a *app, typ string, q url.Values) []map[string]any {
	t.Helper()
	q.Set("_count", "500")
	fq, err := fhir.ParseQuery(typ, q, true)
	if err != nil {
		t.Fatal(err)
	}
	page, err := a.W.Store.Search(context.Background(), fq, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, r := range page.Matches {
		var m map[string]any
		json.Unmarshal(r.Data, &m)
		out = append(out, m)
	}
	return out
}

// rawKey is a catalog key shown untranslated.
var rawKey = regexp.MustCompile(`>[^<]*\b(chart|section|done|enc|class|cond|obs|loinc|vital|trend|charge|rx|route|death|btg|access|purpose|role|audit|adm|pager)\.[a-z0-9-]+\b`)

func noRawKeys(t testing.TB, where, body string) {
	t.Helper()
	if m := rawKey.FindString(body); m != "" {
		t.Errorf("%s shows an untranslated key: %q", where, m)
	}
}

func wantStatus(t testing.TB, what string, resp *http.Response, body string, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s: status %d, want %d\n%s", what, resp.StatusCode, status, body)
	}
}

func TestChartShowsBannerAndSections(t *testing.T) {
	a := newApp(t)
	m := a.member(t, policy.Physician, 10)
	pat := ownPatient(t, a, m)
	b := a.browser(t)
	b.login(m)
	resp, body := b.get("/app/patients/" + pat.ID)
	wantStatus(t, "own patient's chart", resp, body, http.StatusOK)
	for _, want := range []string{
		// the banner
		`class="banner`, strings.ToUpper(pat.Family),
		// the sections
		`id="h-encounters"`, `id="h-conditions"`, `id="h-observations"`, `id="h-prescriptions"`, `id="h-billing"`, `id="h-death"`,
		`<caption>Séjours et consultations`,
		// the link bar
		`href="/app/patients/` + pat.ID + `/prescriptions"`, `href="/app/patients/` + pat.ID + `/access"`,
		`data-print`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("chart lacks %q", want)
		}
	}
	noRawKeys(t, "chart", body)
	if t.Failed() {
		t.Log(body)
	}
	// No inline script or style: the CSP forbids them and the page needs none.
	if regexp.MustCompile(`(?i)<script>|<script [^>]*>[^<]|style=|\son[a-z]+=`).MatchString(body) {
		t.Error("chart has inline script, style or event handler")
	}
	// English.
	for _, path := range []string{"", "/encounters", "/prescriptions", "/death", "/access", "/observations", "/billing", "/conditions"} {
		req, _ := http.NewRequest(http.MethodGet, a.URL+"/app/patients/"+pat.ID+path, nil)
		req.Header.Set("Accept-Language", "en")
		r2, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, body = b.read(r2)
		if r2.StatusCode != http.StatusOK || !strings.Contains(body, `<html lang="en">`) || !strings.Contains(body, "Who accessed this record") {
			t.Fatalf("%s in English: %d\n%s", path, r2.StatusCode, body)
		}
		noRawKeys(t, "English "+path, body)
	}
}

func TestChartNeedsCareRelationship(t *testing.T) {
	a := newApp(t)
	m := a.member(t, policy.Physician, 11)
	pat := strangerPatient(t, a, m, 0)
	full := stored(t, a, "Patient", pat.ID)
	b := a.browser(t)
	b.login(m)
	for _, path := range []string{"", "/encounters", "/prescriptions", "/death", "/observations"} {
		resp, body := b.get("/app/patients/" + pat.ID + path)
		wantStatus(t, "stranger's chart"+path, resp, body, http.StatusForbidden)
		if !strings.Contains(body, "/break-the-glass") {
			t.Errorf("%s: the no-access page offers no break-the-glass", path)
		}
		// Nothing of the patient: names, birth date, INS.
		ins := ""
		if ids, _ := full["identifier"].([]any); len(ids) > 0 {
			ins, _ = ids[0].(map[string]any)["value"].(string)
		}
		for _, secret := range []string{pat.Family, strings.ToUpper(pat.Family), pat.Birth, ins} {
			if secret != "" && strings.Contains(body, secret) {
				t.Fatalf("%s: the no-access page shows %q", path, secret)
			}
		}
	}
	// A write is refused the same way (nothing is read or written).
	before := len(find(t, a, "MedicationRequest", url.Values{"patient": {pat.ID}}))
	resp, _ := b.post("/app/patients/"+pat.ID+"/prescriptions", url.Values{"med": {"N02BE01"}, "dose": {"1 cp"}, "route": {"26643006"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("prescribing for a stranger: %d", resp.StatusCode)
	}
	if after := len(find(t, a, "MedicationRequest", url.Values{"patient": {pat.ID}})); after != before {
		t.Fatal("a prescription was written for a patient without care relationship")
	}
}

func TestPrescribeThenStop(t *testing.T) {
	a := newApp(t)
	m := a.member(t, policy.Physician, 12)
	pat := ownPatient(t, a, m)
	b := a.browser(t)
	b.login(m)
	resp, body := b.get("/app/patients/" + pat.ID + "/prescriptions")
	wantStatus(t, "prescriptions page", resp, body, http.StatusOK)
	if !strings.Contains(body, `<label for="dose">`) {
		t.Fatal("a physician sees no prescription form")
	}
	noRawKeys(t, "prescriptions", body)
	dose := "2 comprimés matin et soir, marqueur " + time.Now().Format("150405.000")
	resp, body = b.post("/app/patients/"+pat.ID+"/prescriptions", url.Values{"med": {"C09AA05"}, "dose": {dose}, "route": {"26643006"}})
	wantStatus(t, "prescribing", resp, body, http.StatusOK)
	if !strings.Contains(body, "Prescription enregistrée") || !strings.Contains(body, dose) {
		t.Fatalf("after prescribing:\n%s", body)
	}
	// It exists, as written.
	var mr map[string]any
	for _, x := range find(t, a, "MedicationRequest", url.Values{"patient": {pat.ID}, "status": {"active"}}) {
		if strings.Contains(string(mustJSON(x)), dose) {
			mr = x
		}
	}
	if mr == nil {
		t.Fatal("the prescription is not in the store")
	}
	if mr["intent"] != "order" || mr["requester"].(map[string]any)["reference"] != "Practitioner/"+m.PractitionerID ||
		mr["subject"].(map[string]any)["reference"] != "Patient/"+pat.ID || !strings.Contains(string(mustJSON(mr)), "C09AA05") {
		t.Fatalf("prescription as stored: %s", mustJSON(mr))
	}
	id := mr["id"].(string)
	// Stop it with a stale version: refused.
	resp, body = b.post("/app/patients/"+pat.ID+"/prescriptions/"+id+"/stop", url.Values{"version": {"7"}})
	wantStatus(t, "stop with a stale version", resp, body, http.StatusConflict)
	// Then as shown.
	if !strings.Contains(body, `/prescriptions/`+id+`/stop"`) {
		t.Fatal("no stop button for the new prescription")
	}
	resp, body = b.post("/app/patients/"+pat.ID+"/prescriptions/"+id+"/stop", url.Values{"version": {"1"}})
	wantStatus(t, "stopping", resp, body, http.StatusOK)
	if !strings.Contains(body, "Prescription arrêtée") {
		t.Fatalf("after stopping:\n%s", body)
	}
	got := stored(t, a, "MedicationRequest", id)
	if got["status"] != "stopped" || got["meta"].(map[string]any)["versionId"] != "2" {
		t.Fatalf("stopped prescription as stored: %s", mustJSON(got))
	}
	// Stopping twice: refused, nothing written.
	resp, body = b.post("/app/patients/"+pat.ID+"/prescriptions/"+id+"/stop", url.Values{"version": {"2"}})
	wantStatus(t, "stopping twice", resp, body, http.StatusConflict)
	// Another patient's prescription through this patient's URL: refused.
	other := a.W.Patients[a.W.GPOf[m.Index][len(a.W.GPOf[m.Index])-1]]
	if other.ID != pat.ID {
		resp, body = b.post("/app/patients/"+other.ID+"/prescriptions/"+id+"/stop", nil)
		wantStatus(t, "stopping through another patient", resp, body, http.StatusNotFound)
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func TestNurseCannotPrescribe(t *testing.T) {
	a := newApp(t)
	var m *sim.Member
	var pat sim.Patient
	for k := 10; k < 30 && m == nil; k++ {
		n := a.member(t, policy.Nurse, k)
		for _, i := range a.W.TeamOf[n.Index] {
			if !a.W.Patients[i].Deceased {
				m, pat = n, a.W.Patients[i]
				break
			}
		}
	}
	if m == nil {
		t.Fatal("no nurse on a care team among members 10..29: the test world changed")
	}
	b := a.browser(t)
	b.login(m)
	resp, body := b.get("/app/patients/" + pat.ID + "/prescriptions")
	wantStatus(t, "a nurse's view of the prescriptions", resp, body, http.StatusOK)
	if strings.Contains(body, `<label for="dose">`) {
		t.Fatal("a nurse is offered the prescription form")
	}
	before := len(find(t, a, "MedicationRequest", url.Values{"patient": {pat.ID}}))
	resp, body = b.post("/app/patients/"+pat.ID+"/prescriptions", url.Values{"med": {"N02BE01"}, "dose": {"1 cp 3 fois par jour"}, "route": {"26643006"}})
	wantStatus(t, "a nurse prescribing", resp, body, http.StatusForbidden)
	if !strings.Contains(body, `class="error"`) || !strings.Contains(body, "MedicationRequest") {
		t.Fatalf("the API's refusal is not shown:\n%s", body)
	}
	if after := len(find(t, a, "MedicationRequest", url.Values{"patient": {pat.ID}})); after != before {
		t.Fatal("a nurse's prescription was written")
	}
	// The nurse's chart has no billing section request (not the role's).
	_, body = b.get("/app/patients/" + pat.ID)
	if strings.Contains(body, `href="/app/patients/`+pat.ID+`/billing"`) {
		t.Error("a nurse is offered billing")
	}
}

// admissionSetup returns a clerk (members from..to-1) and a physician
// (members 22..27) of one of the clerk's facilities.
func admissionSetup(t *testing.T, a *app, from, to int) (*sim.Member, *sim.Member) {
	for c := from; c < to; c++ {
		clerk := a.member(t, policy.AdmissionClerk, c)
		for k := 22; k < 28; k++ {
			ph := a.member(t, policy.Physician, k)
			for _, f := range ph.Facilities {
				if slices.Contains(clerk.Facilities, f) {
					return clerk, ph
				}
			}
		}
	}
	t.Fatalf("no clerk (members %d..%d) and physician (22..27) sharing a facility: the test world changed", from, to-1)
	return nil, nil
}

func admissionForm(ph *sim.Member, clerk *sim.Member, family, given, birth, ins string) url.Values {
	fac := ""
	for _, f := range ph.Facilities {
		if slices.Contains(clerk.Facilities, f) {
			fac = f
		}
	}
	return url.Values{"family": {family}, "given": {given}, "birthdate": {birth}, "sex": {"female"}, "ins": {ins},
		"line": {"3 rue des Lilas"}, "postalcode": {"75014"}, "city": {"Paris"}, "phone": {"06 12 34 56 78"},
		"facility": {fac}, "physician": {fac + "/" + ph.PractitionerID}, "class": {"IMP"}}
}

var chartLink = regexp.MustCompile(`^/app/patients/([A-Za-z0-9-]+)$`)

func TestAdmissionWithDuplicateDetection(t *testing.T) {
	a := newApp(t)
	clerk, ph := admissionSetup(t, a, 10, 12)
	b := a.browser(t)
	b.login(clerk)
	resp, body := b.get("/app/admission")
	wantStatus(t, "admission form", resp, body, http.StatusOK)
	noRawKeys(t, "admission", body)
	if !strings.Contains(body, `value="`+admissionForm(ph, clerk, "", "", "", "").Get("physician")+`"`) {
		t.Fatalf("the physician %s is not offered", ph.Username)
	}
	ins := "285017512312301" // a valid NIR (key 01)
	family := "Duplessis-Testadm"
	resp, body = b.post("/app/admission", admissionForm(ph, clerk, family, "Éloïse", "17/01/1985", ins))
	wantStatus(t, "first admission", resp, body, http.StatusOK)
	m := chartLink.FindStringSubmatch(resp.Request.URL.Path)
	if m == nil || !strings.Contains(body, "Patient enregistré et séjour ouvert") {
		t.Fatalf("after admission: %s\n%s", resp.Request.URL, body)
	}
	first := m[1]
	pat := stored(t, a, "Patient", first)
	if pat["birthDate"] != "1985-01-17" || pat["managingOrganization"].(map[string]any)["reference"] == "" {
		t.Fatalf("patient as stored: %s", mustJSON(pat))
	}
	stays := find(t, a, "Encounter", url.Values{"patient": {first}})
	if len(stays) != 1 || stays[0]["status"] != "in-progress" || !strings.Contains(string(mustJSON(stays[0])), "Practitioner/"+ph.PractitionerID) {
		t.Fatalf("stay as stored: %s", mustJSON(stays))
	}

	count := func() int { return len(find(t, a, "Patient", url.Values{"family": {family}})) }
	// The same INS, another name: a warning, nothing created.
	resp, body = b.post("/app/admission", admissionForm(ph, clerk, "Autrenom", "Zoé", "01/02/1990", ins))
	wantStatus(t, "same INS", resp, body, http.StatusConflict)
	noRawKeys(t, "duplicate warning", body)
	if !strings.Contains(body, `href="/app/patients/`+first+`"`) || !strings.Contains(body, `name="anyway"`) {
		t.Fatalf("duplicate warning:\n%s", body)
	}
	if n := len(find(t, a, "Patient", url.Values{"family": {"Autrenom"}})); n != 0 {
		t.Fatal("a duplicate was created without confirmation")
	}
	// Same family name and birth date, a similar given name (accents,
	// case): a warning too.
	resp, body = b.post("/app/admission", admissionForm(ph, clerk, "DUPLESSIS-TESTADM", "eloise", "1985-01-17", ""))
	wantStatus(t, "same name and birth date", resp, body, http.StatusConflict)
	if count() != 1 {
		t.Fatal("a duplicate was created without confirmation")
	}
	// A different given name is no duplicate... but "create anyway" is
	// what the clerk ticks when it is one by mistake: created.
	f := admissionForm(ph, clerk, family, "Éloïse", "17/01/1985", ins)
	f.Set("anyway", "yes")
	resp, body = b.post("/app/admission", f)
	wantStatus(t, "create anyway", resp, body, http.StatusOK)
	if count() != 2 {
		t.Fatalf("create anyway: %d patients", count())
	}

	// The stay gives the attending physician access to the chart.
	b2 := a.browser(t)
	b2.login(ph)
	resp, body = b2.get("/app/patients/" + first)
	wantStatus(t, "the attending physician's chart", resp, body, http.StatusOK)
	if !strings.Contains(body, "DUPLESSIS-TESTADM") || !strings.Contains(body, "en cours") {
		t.Fatalf("the physician's chart of the new patient:\n%s", body)
	}
}

func TestAdmissionNotForPhysicians(t *testing.T) {
	a := newApp(t)
	m := a.member(t, policy.Physician, 17)
	b := a.browser(t)
	b.login(m)
	_, body := b.get("/app/admission")
	if strings.Contains(body, `name="family"`) {
		t.Fatal("a physician is offered patient registration (the policy gives it to admission clerks)")
	}
	resp, _ := b.post("/app/admission", url.Values{"family": {"X"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a physician's admission: %d", resp.StatusCode)
	}
}

func TestDeathDeclaration(t *testing.T) {
	a := newApp(t)
	clerk, ph := admissionSetup(t, a, 14, 18)
	bc := a.browser(t)
	bc.login(clerk)
	resp, body := bc.post("/app/admission", admissionForm(ph, clerk, "Mortelle-Testdc", "Jeanne", "02/03/1930", ""))
	wantStatus(t, "admission", resp, body, http.StatusOK)
	id := chartLink.FindStringSubmatch(resp.Request.URL.Path)[1]
	when := a.Clock.Now().Add(-2 * time.Hour).In(time.Local).Format("2006-01-02T15:04")

	// The admission clerk: no form, and a forged POST gets the API's
	// refusal ($declare-death is a physician's) and writes nothing.
	_, body = bc.get("/app/patients/" + id + "/death")
	if strings.Contains(body, `name="when"`) {
		t.Fatal("the death form is offered to an admission clerk")
	}
	resp, body = bc.post("/app/patients/"+id+"/death", url.Values{"when": {when}, "confirm": {"yes"}})
	wantStatus(t, "a clerk's declaration", resp, body, http.StatusForbidden)
	if !strings.Contains(body, `class="error"`) {
		t.Fatal("the refusal is not shown")
	}
	if _, ok := stored(t, a, "Patient", id)["deceasedDateTime"]; ok {
		t.Fatal("a refused declaration was written")
	}

	// The physician of the stay declares it.
	b := a.browser(t)
	b.login(ph)
	resp, body = b.get("/app/patients/" + id + "/death")
	wantStatus(t, "death form", resp, body, http.StatusOK)
	noRawKeys(t, "death form", body)
	if !strings.Contains(body, `data-confirm=`) || !strings.Contains(body, `name="when"`) {
		t.Fatalf("death form:\n%s", body)
	}
	for _, bad := range []url.Values{
		{"when": {"hier"}, "confirm": {"yes"}},
		{"when": {""}, "confirm": {"yes"}},
		{"when": {"2999-01-01T10:00"}, "confirm": {"yes"}},
		{"when": {"1920-01-01T10:00"}, "confirm": {"yes"}},
		{"when": {when}},
	} {
		resp, body = b.post("/app/patients/"+id+"/death", bad)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `class="error"`) {
			t.Fatalf("death %v: %d", bad, resp.StatusCode)
		}
	}
	if _, ok := stored(t, a, "Patient", id)["deceasedDateTime"]; ok {
		t.Fatal("an invalid declaration was written")
	}
	resp, body = b.post("/app/patients/"+id+"/death", url.Values{"when": {when}, "confirm": {"yes"}})
	wantStatus(t, "declaring", resp, body, http.StatusOK)
	if !strings.Contains(body, "Décès enregistré") || !strings.Contains(body, "Décédé(e)") {
		t.Fatalf("chart after the declaration:\n%s", body)
	}
	if _, ok := stored(t, a, "Patient", id)["deceasedDateTime"]; !ok {
		t.Fatal("no deceasedDateTime stored")
	}
	// Declared once.
	resp, body = b.post("/app/patients/"+id+"/death", url.Values{"when": {when}, "confirm": {"yes"}})
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, `class="error"`) {
		t.Fatalf("second declaration: %d", resp.StatusCode)
	}
}

func TestBreakTheGlass(t *testing.T) {
	a := newApp(t)
	m := a.member(t, policy.Physician, 13)
	pat := strangerPatient(t, a, m, 3)
	b := a.browser(t)
	b.login(m)
	resp, body := b.get("/app/patients/" + pat.ID)
	wantStatus(t, "before", resp, body, http.StatusForbidden)
	resp, body = b.get("/app/patients/" + pat.ID + "/break-the-glass")
	wantStatus(t, "dialog", resp, body, http.StatusOK)
	noRawKeys(t, "break-the-glass dialog", body)
	for _, want := range []string{`name="reason"`, `value="emergency"`, `name="detail"`, `name="minutes"`, "jusqu&#39;à", `data-confirm=`} {
		if !strings.Contains(body, want) {
			t.Fatalf("dialog lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, strings.ToUpper(pat.Family)) {
		t.Fatal("the dialog shows the patient's name before access")
	}
	// Without a real reason: refused here, no grant.
	resp, body = b.post("/app/patients/"+pat.ID+"/break-the-glass", url.Values{"reason": {"emergency"}, "detail": {"vite"}, "minutes": {"60"}})
	wantStatus(t, "short detail", resp, body, http.StatusBadRequest)
	resp, _ = b.get("/app/patients/" + pat.ID)
	wantStatus(t, "after a refused grant", resp, "", http.StatusForbidden)

	resp, body = b.post("/app/patients/"+pat.ID+"/break-the-glass", url.Values{"reason": {"emergency"},
		"detail": {"Patient inconscient aux urgences, antécédents nécessaires"}, "minutes": {"60"}})
	wantStatus(t, "grant", resp, body, http.StatusOK)
	if resp.Request.URL.Path != "/app/patients/"+pat.ID {
		t.Fatalf("after the grant: %s", resp.Request.URL)
	}
	banner := regexp.MustCompile(`class="btg-active"[^>]*><strong>Accès exceptionnel jusqu&#39;à (\d\d:\d\d), revu par le responsable sécurité`).FindStringSubmatch(body)
	if banner == nil || !strings.Contains(body, strings.ToUpper(pat.Family)) {
		t.Fatalf("chart after break-the-glass:\n%s", body)
	}
	if want := time.Now().Add(time.Hour).In(time.Local).Format("15:04"); banner[1] != want && banner[1] != time.Now().Add(time.Hour-time.Minute).In(time.Local).Format("15:04") {
		t.Errorf("access until %s, want about %s", banner[1], want)
	}
	// The banner stays on the other pages of the record.
	_, body = b.get("/app/patients/" + pat.ID + "/encounters")
	if !strings.Contains(body, `class="btg-active"`) {
		t.Error("no break-the-glass banner on the encounters page")
	}
	// Another browser of the same clinician (no cookie of the grant): the
	// API's word on the Patient read shows the banner too.
	b2 := a.browser(t)
	b2.login(m)
	_, body = b2.get("/app/patients/" + pat.ID)
	if !strings.Contains(body, `class="btg-active"`) {
		t.Error("no break-the-glass banner in another browser of the same clinician")
	}
	// The access history shows it, marked.
	resp, body = b.get("/app/patients/" + pat.ID + "/access")
	wantStatus(t, "access history", resp, body, http.StatusOK)
	if !regexp.MustCompile(`<tr class="btg">\s*<td>[^<]+</td><td>`+regexp.QuoteMeta(m.Username)+`</td>`).MatchString(body) ||
		!strings.Contains(body, "Bris de glace (Urgence vitale)") {
		t.Fatalf("access history after break-the-glass:\n%s", body)
	}
}

func TestAccessHistory(t *testing.T) {
	a := newApp(t)
	m := a.member(t, policy.Physician, 14)
	pat := ownPatient(t, a, m)
	b := a.browser(t)
	b.login(m)
	b.get("/app/patients/" + pat.ID)
	b.get("/app/patients/" + pat.ID + "/prescriptions")
	resp, body := b.get("/app/patients/" + pat.ID + "/access")
	wantStatus(t, "access history", resp, body, http.StatusOK)
	noRawKeys(t, "access history", body)
	row := regexp.MustCompile(`<tr>\s*<td>[^<]+</td><td>` + regexp.QuoteMeta(m.Username) + `</td><td>médecin</td>\s*<td>([^<]+)`).FindStringSubmatch(body)
	if row == nil || !strings.Contains(row[1], "lecture") || !strings.Contains(row[1], "recherche") {
		t.Fatalf("the visit just made is not listed:\n%s", body)
	}
	if !strings.Contains(body, `data-print`) || !strings.Contains(body, "lien de soin") {
		t.Fatal("no print button or purpose")
	}
	// A period filter in dd/mm/yyyy; an unreadable one is a 400.
	resp, _ = b.get("/app/patients/" + pat.ID + "/access?from=01/01/2020&to=31/12/2099")
	wantStatus(t, "period", resp, "", http.StatusOK)
	resp, body = b.get("/app/patients/" + pat.ID + "/access?from=32/13/2020")
	wantStatus(t, "bad period", resp, body, http.StatusBadRequest)

	// Staff without the right: the API's refusal, clearly.
	for _, who := range []*sim.Member{a.member(t, policy.FacilityAdmin, 10), a.member(t, policy.Physician, 19)} {
		if who.Role() == policy.Physician && slices.Contains(a.W.GPOf[who.Index], slices.Index(a.W.Patients, pat)) {
			continue
		}
		bx := a.browser(t)
		bx.login(who)
		resp, body = bx.get("/app/patients/" + pat.ID + "/access")
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Accès à l&#39;historique refusé") {
			t.Fatalf("%s's access history: %d\n%s", who.Role(), resp.StatusCode, body)
		}
		if strings.Contains(body, m.Username) {
			t.Fatal("a refused history shows who accessed the record")
		}
	}
}

// TestHostileNamesEscaped: names written to attack the pages render as
// text on the search results, the banner and the chart's pages.
func TestHostileNamesEscaped(t *testing.T) {
	a := newApp(t)
	m := a.member(t, policy.Physician, 15)
	rec := record.New(a.W.Store)
	ctx := context.Background()
	var ids []string
	for _, family := range []string{`<script>alert(1)</script>`, `"><img src=x onerror=alert(1)>`} {
		out, err := rec.Create(ctx, "Patient", fhir.Resource{
			"resourceType": "Patient", "name": []any{map[string]any{"family": family, "given": []any{`<b>x</b>`}}},
			"birthDate": "1901-02-03", "gender": "other",
			"managingOrganization": map[string]any{"reference": "Organization/" + m.Facilities[0]},
			"generalPractitioner":  []any{map[string]any{"reference": "Practitioner/" + m.PractitionerID}},
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, out.Resource.ID)
		if _, err := rec.Create(ctx, "Encounter", fhir.Resource{"resourceType": "Encounter", "status": "in-progress",
			"class": map[string]any{"code": `<svg onload=alert(1)>`}, "subject": map[string]any{"reference": "Patient/" + out.Resource.ID},
			"serviceProvider": map[string]any{"reference": "Organization/" + m.Facilities[0]},
			"participant":     []any{map[string]any{"individual": map[string]any{"reference": "Practitioner/" + m.PractitionerID}}},
			"period":          map[string]any{"start": "2026-03-01T10:00:00Z"}}); err != nil {
			t.Fatal(err)
		}
	}
	b := a.browser(t)
	b.login(m)
	raw := regexp.MustCompile(`(?i)<script>alert|<img|<svg onload|<b>x`)
	check := func(where, body string) {
		t.Helper()
		if loc := raw.FindStringIndex(body); loc != nil {
			t.Fatalf("%s: raw markup %q", where, body[max(0, loc[0]-40):min(len(body), loc[1]+40)])
		}
	}
	_, body := b.get("/app/patients?birthdate=03/02/1901")
	check("search", body)
	for _, want := range []string{`&lt;SCRIPT&gt;ALERT(1)&lt;/SCRIPT&gt;`, `&#34;&gt;&lt;IMG SRC=X ONERROR=ALERT(1)&gt;`} {
		if !strings.Contains(body, want) {
			t.Fatalf("search results lack the escaped %q:\n%s", want, body)
		}
	}
	for _, id := range ids {
		for _, path := range []string{"", "/encounters", "/prescriptions", "/death", "/access", "/break-the-glass"} {
			resp, body := b.get("/app/patients/" + id + path)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s%s: %d\n%s", id, path, resp.StatusCode, body)
			}
			check(path, body)
		}
		_, body := b.get("/app/patients/" + id)
		if !strings.Contains(body, "&lt;SCRIPT&gt;") && !strings.Contains(body, "&lt;IMG SRC=X") {
			t.Fatalf("chart lacks the escaped name:\n%s", body)
		}
		if !strings.Contains(body, "&lt;svg onload=alert(1)&gt;") {
			t.Fatalf("chart lacks the escaped stay class:\n%s", body)
		}
	}
}

// TestBadInputIsA4xx: invalid dates, empty fields, huge strings and
// malformed ids get a page with a clear message and a 4xx, never a 500.
func TestBadInputIsA4xx(t *testing.T) {
	a := newApp(t)
	m := a.member(t, policy.Physician, 16)
	pat := ownPatient(t, a, m)
	b := a.browser(t)
	b.login(m)
	huge := strings.Repeat("A<é>", 50000)
	p := "/app/patients/" + pat.ID
	type req struct {
		path string
		form url.Values // nil: GET
	}
	for _, r := range []req{
		{"/app/patients/bad%20id", nil},
		{"/app/patients/" + strings.Repeat("x", 200), nil},
		{p + "/encounters?offset=abc", nil},
		{p + "/encounters?offset=-5", nil},
		{p + "/access?from=2020-99-99", nil},
		{p + "/prescriptions", url.Values{}},
		{p + "/prescriptions", url.Values{"med": {"N02BE01"}, "route": {"26643006"}}},
		{p + "/prescriptions", url.Values{"med": {"N02BE01"}, "dose": {huge}, "route": {"26643006"}}},
		{p + "/prescriptions", url.Values{"med_text": {huge}, "dose": {"1"}, "route": {"26643006"}}},
		{p + "/prescriptions", url.Values{"med": {"ZZZ"}, "dose": {"1"}, "route": {"26643006"}}},
		{p + "/prescriptions", url.Values{"med": {"N02BE01"}, "dose": {"1"}, "route": {"nose"}}},
		{p + "/prescriptions", url.Values{"med": {"N02BE01"}, "dose": {"1\x00"}, "route": {"26643006"}}},
		{p + "/prescriptions/nope/stop", url.Values{}},
		{p + "/prescriptions/bad%20rx/stop", url.Values{}},
		{"/app/patients/bad%20id/access", nil},
		{"/app/patients/bad%20id/death", url.Values{"when": {"2020-01-01T10:00"}, "confirm": {"yes"}}},
		{p + "/death", url.Values{"when": {"31/02/2020 10:00"}, "confirm": {"yes"}}},
		{p + "/death", url.Values{"when": {huge}, "confirm": {"yes"}}},
		{p + "/break-the-glass", url.Values{"reason": {"boredom"}, "detail": {"just looking around"}, "minutes": {"60"}}},
		{p + "/break-the-glass", url.Values{"reason": {"emergency"}, "detail": {huge}, "minutes": {"60"}}},
		{p + "/break-the-glass", url.Values{"reason": {"emergency"}, "detail": {"a real reason here"}, "minutes": {"100000"}}},
		{"/app/patients/..%2F..%2Fadmin/break-the-glass", url.Values{"reason": {"emergency"}, "detail": {"a real reason here"}, "minutes": {"60"}}},
	} {
		var resp *http.Response
		var body string
		if r.form == nil {
			resp, body = b.get(r.path)
		} else {
			b.get(p) // a fresh CSRF token
			resp, body = b.post(r.path, r.form)
		}
		if resp.StatusCode < 400 || resp.StatusCode >= 500 || !strings.Contains(body, `class="error"`) {
			t.Errorf("%s %v: %d, want a 4xx page with a message\n%.2000s", r.path, len(r.form), resp.StatusCode, body)
		}
		if strings.Contains(body, "A<é>A<é>") {
			t.Errorf("%s: the huge input is echoed unescaped", r.path)
		}
	}

	clerk := a.member(t, policy.AdmissionClerk, 12)
	bc := a.browser(t)
	bc.login(clerk)
	base := url.Values{"family": {"Valide"}, "given": {"Anne"}, "birthdate": {"01/01/1970"}, "sex": {"female"},
		"facility": {clerk.Facilities[0]}, "physician": {clerk.Facilities[0] + "/none"}, "class": {"IMP"}}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for kk, vv := range base {
			f[kk] = vv
		}
		f.Set(k, v)
		return f
	}
	for _, f := range []url.Values{
		{},
		with("family", ""),
		with("family", huge),
		with("given", "\x01"),
		with("birthdate", "31/02/1970"),
		with("birthdate", "01/01/2999"),
		with("birthdate", "hier"),
		with("sex", "robot"),
		with("ins", "123"),
		with("ins", "285017512312302"), // wrong key
		with("postalcode", "7501"),
		with("phone", "call me"),
		with("facility", "someone-elses"),
		with("class", "SPA"),
		base, // a physician who is not on the list
	} {
		bc.get("/app/admission")
		resp, body := bc.post("/app/admission", f)
		if resp.StatusCode < 400 || resp.StatusCode >= 500 || !strings.Contains(body, `class="error"`) {
			t.Errorf("admission %v: %d\n%.3000s", f, resp.StatusCode, body)
		}
		if strings.Contains(body, "A<é>A<é>") || strings.Count(body, "A&lt;é&gt;") > 10 {
			t.Errorf("admission: the huge input is echoed back")
		}
	}
	if n := len(find(t, a, "Patient", url.Values{"family": {"Valide"}})); n != 0 {
		t.Fatalf("%d invalid admissions were written", n)
	}
}
