package web_test

// The security console (issue 7): the guard's suspensions and alerts,
// break-the-glass review, the audit log search, incident scope, the log's
// check, and the bulk export approvals. Clinicians used here have index
// 120 to 129 (see admin_test.go).

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"carnet/internal/policy"
	"carnet/internal/sim"
	"carnet/internal/store"
)

func TestSecurityConsoleForbiddenToOthers(t *testing.T) {
	a := newApp(t)
	admStart(t, a, 0)
	for _, m := range []*sim.Member{a.member(t, policy.GroupAdmin, 1), a.member(t, policy.Physician, 124)} {
		b := a.browser(t)
		b.login(m)
		for _, p := range []string{"/app/security", "/app/security/break-glass", "/app/security/audit?agent=x", "/app/security/incident?account=" + m.Username,
			"/app/security/incident/download?format=csv&account=" + m.Username, "/app/security/log"} {
			resp, body := b.get(p)
			admWant(t, resp, body, http.StatusForbidden, m.Role()+" GET "+p)
			if strings.Contains(body, "scoped") || strings.Contains(body, "cp-size") {
				t.Fatalf("%s GET %s shows console data\n%s", m.Role(), p, body)
			}
		}
		b.get("/app/")
		for _, p := range []string{"/app/security/log", "/app/security/accounts/" + m.Username + "/enable", "/app/security/alerts/x", "/app/security/break-glass/x"} {
			resp, body := b.post(p, url.Values{"note": {"a note of five"}})
			admWant(t, resp, body, http.StatusForbidden, m.Role()+" POST "+p)
		}
	}
}

var alertFormRE = regexp.MustCompile(`action="/app/security/alerts/([^"]+)"`)

// TestSecuritySuspensionAlertAcknowledgeEnable: a clerk opens a canary of
// their facility through the API; the guard suspends them; the console
// shows it; the officer acknowledges the alert and re-enables the account.
func TestSecuritySuspensionAlertAcknowledgeEnable(t *testing.T) {
	a := newApp(t)
	admStart(t, a, 0)
	clerk := a.member(t, policy.AdmissionClerk, 121)
	canary := ""
	for id, fac := range a.W.Canaries {
		if slices.Contains(clerk.Facilities, fac) {
			canary = id
			break
		}
	}
	if canary == "" {
		t.Fatal("no canary at the clerk's facility")
	}
	tok := admToken(t, a, clerk)
	if st, body := admAPI(t, a, tok, http.MethodGet, "/fhir/Patient/"+canary, ""); st != http.StatusForbidden || !strings.Contains(string(body), "suspended") {
		t.Fatalf("canary read: %d %s", st, body)
	}
	if st := admAccount(t, a, clerk.Username).Status; st != store.StatusSuspended {
		t.Fatalf("clerk after the canary: %s", st)
	}

	so := a.browser(t)
	so.login(a.W.Officer)
	resp, body := so.get("/app/security")
	admWant(t, resp, body, http.StatusOK, "console")
	if !strings.Contains(body, `data-autorefresh="30"`) || !strings.Contains(body, "<strong>"+clerk.Username+"</strong>") ||
		!strings.Contains(body, `action="/app/security/accounts/`+clerk.Username+`/enable"`) {
		t.Fatalf("the suspension is not in the console\n%s", body)
	}
	_, body = so.get("/app/security?username=" + clerk.Username)
	ids := alertFormRE.FindAllStringSubmatch(body, -1)
	if len(ids) != 1 || !strings.Contains(body, "canary patient "+canary) {
		t.Fatalf("the clerk's alerts: %d forms\n%s", len(ids), body)
	}
	id := ids[0][1]

	// Acknowledging needs a note; the note typed is kept.
	resp, body = so.post("/app/security/alerts/"+id, url.Values{"note": {"abc"}})
	admWantError(t, resp, body, http.StatusBadRequest, "say in a sentence", "short note")
	if !strings.Contains(body, ">abc</textarea>") {
		t.Fatal("the note was not kept")
	}
	if st := so.admPostNoCSRF("/app/security/alerts/"+id, url.Values{"note": {"reviewed with the clerk"}}); st != http.StatusForbidden {
		t.Fatalf("acknowledge without CSRF token: %d", st)
	}
	resp, body = so.post("/app/security/alerts/"+id, url.Values{"note": {"clerk opened the record by mistake; trained again"}})
	admWant(t, resp, body, http.StatusOK, "acknowledge")
	if resp.Request.URL.Path != "/app/security" || !strings.Contains(body, `class="notice"`) {
		t.Fatalf("after acknowledging: %s\n%s", resp.Request.URL, body)
	}
	_, body = so.get("/app/security?status=acknowledged&username=" + clerk.Username)
	if !strings.Contains(body, "trained again") || alertFormRE.MatchString(body) {
		t.Fatalf("acknowledged alert\n%s", body)
	}
	resp, body = so.post("/app/security/alerts/"+id, url.Values{"note": {"a second time around"}})
	admWantError(t, resp, body, http.StatusConflict, "already acknowledged", "acknowledge twice")
	// Its alert acknowledged, the account is still suspended, and listed.
	enableForm := `action="/app/security/accounts/` + clerk.Username + `/enable"`
	if _, body = so.get("/app/security"); !strings.Contains(body, enableForm) {
		t.Fatalf("a suspended account whose alert was acknowledged is not listed\n%s", body)
	}

	// Re-enabling: not without the token, then yes.
	if st := so.admPostNoCSRF("/app/security/accounts/"+clerk.Username+"/enable", nil); st != http.StatusForbidden {
		t.Fatalf("enable without CSRF token: %d", st)
	}
	if st := admAccount(t, a, clerk.Username).Status; st != store.StatusSuspended {
		t.Fatal("enabled without a CSRF token")
	}
	resp, body = so.post("/app/security/accounts/"+clerk.Username+"/enable", nil)
	admWant(t, resp, body, http.StatusOK, "enable")
	if st := admAccount(t, a, clerk.Username).Status; st != store.StatusActive {
		t.Fatalf("clerk after re-enabling: %s", st)
	}
	if _, body = so.get("/app/security?status=all"); strings.Contains(body, enableForm) {
		t.Fatal("a re-enabled account is still listed as suspended")
	}
	// The clerk signs in again.
	admToken(t, a, clerk)
	// Again: the API refuses (the account is no longer suspended), the
	// page says so, and the officer stays signed in.
	resp, body = so.post("/app/security/accounts/"+clerk.Username+"/enable", nil)
	admWantError(t, resp, body, http.StatusForbidden, "suspended accounts only", "enable an active account")
	if resp, _ := so.get("/app/security"); resp.Request.URL.Path != "/app/security" {
		t.Fatalf("a refusal signed the officer out: %s", resp.Request.URL)
	}
	resp, body = so.post("/app/security/accounts/no.such.user/enable", nil)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "no.such.user") {
		t.Fatalf("enable a missing account: %d\n%s", resp.StatusCode, body)
	}
}

// stranger is a patient m has no care relationship with.
func admStranger(a *app, m *sim.Member) sim.Patient {
	for i, p := range a.W.Patients {
		if !slices.Contains(a.W.GPOf[m.Index], i) && !slices.Contains(a.W.TeamOf[m.Index], i) && p.GP != m.Index {
			return p
		}
	}
	panic("no stranger")
}

func TestSecurityBreakGlassReview(t *testing.T) {
	a := newApp(t)
	admStart(t, a, 0)
	doc := a.member(t, policy.Physician, 122)
	pt := admStranger(a, doc)
	st, raw := admAPI(t, a, admToken(t, a, doc), http.MethodPost, "/fhir/Patient/"+pt.ID+"/$break-the-glass",
		`{"reason":"emergency","detail":"unconscious patient brought to the ER at night","minutes":60}`)
	var grant struct{ ID string }
	if st != http.StatusCreated || json.Unmarshal(raw, &grant) != nil || grant.ID == "" {
		t.Fatalf("break-the-glass: %d %s", st, raw)
	}

	so := a.browser(t)
	so.login(a.W.Officer)
	resp, body := so.get("/app/security/break-glass")
	admWant(t, resp, body, http.StatusOK, "queue")
	form := `action="/app/security/break-glass/` + grant.ID + `"`
	if !strings.Contains(body, form) || !strings.Contains(body, pt.ID) || !strings.Contains(body, "unconscious patient brought to the ER") || strings.Contains(body, pt.Family) {
		t.Fatalf("the grant is not in the queue (or shows the patient's name)\n%s", body)
	}
	resp, body = so.post("/app/security/break-glass/"+grant.ID, url.Values{"note": {"  "}})
	admWantError(t, resp, body, http.StatusBadRequest, "needs a note", "empty note")
	if st := so.admPostNoCSRF("/app/security/break-glass/"+grant.ID, url.Values{"note": {"justified"}}); st != http.StatusForbidden {
		t.Fatalf("review without CSRF token: %d", st)
	}
	resp, body = so.post("/app/security/break-glass/"+grant.ID, url.Values{"note": {"justified: admitted through the ER that night"}})
	admWant(t, resp, body, http.StatusOK, "review")
	if strings.Contains(body, form) || !strings.Contains(body, `class="notice"`) {
		t.Fatalf("the reviewed grant is still to review\n%s", body)
	}
	_, body = so.get("/app/security/break-glass?status=all")
	if !strings.Contains(body, "justified: admitted through the ER that night") {
		t.Fatalf("review note not shown\n%s", body)
	}
	resp, body = so.post("/app/security/break-glass/"+grant.ID, url.Values{"note": {"again"}})
	admWantError(t, resp, body, http.StatusConflict, "already reviewed", "review twice")
	resp, body = so.post("/app/security/break-glass/no-such-grant", url.Values{"note": {"again"}})
	admWant(t, resp, body, http.StatusNotFound, "review a missing grant")
}

var scopedRE = regexp.MustCompile(`class="scoped"><code>([^<]+)</code>`)

// TestSecurityIncidentScopeAndAuditSearch: the scope of an account lists
// exactly the patients it read, and the audit search finds the reads.
func TestSecurityIncidentScopeAndAuditSearch(t *testing.T) {
	a := newApp(t)
	admStart(t, a, 0)
	doc := a.member(t, policy.Physician, 123)
	tok := admToken(t, a, doc)
	var read []string
	for _, i := range a.W.GPOf[doc.Index][:3] {
		id := a.W.Patients[i].ID
		if st, body := admAPI(t, a, tok, http.MethodGet, "/fhir/Patient/"+id, ""); st != http.StatusOK {
			t.Fatalf("read own patient: %d %s", st, body)
		}
		read = append(read, id)
	}
	slices.Sort(read)
	stranger := admStranger(a, doc)
	if st, _ := admAPI(t, a, tok, http.MethodGet, "/fhir/Patient/"+stranger.ID, ""); st < 400 {
		t.Fatalf("read a stranger: %d", st)
	}

	so := a.browser(t)
	so.login(a.W.Officer)
	resp, body := so.get("/app/security/incident")
	admWant(t, resp, body, http.StatusOK, "incident form")
	resp, body = so.get("/app/security/incident?account=" + doc.Username)
	admWant(t, resp, body, http.StatusOK, "scope")
	var got []string
	for _, m := range scopedRE.FindAllStringSubmatch(body, -1) {
		got = append(got, m[1])
	}
	slices.Sort(got)
	if !slices.Equal(got, read) || !strings.Contains(body, `id="scope-count">3<`) {
		t.Fatalf("scope lists %v, want exactly %v\n%s", got, read, body)
	}
	for _, i := range a.W.GPOf[doc.Index][:3] {
		if strings.Contains(body, a.W.Patients[i].Family) {
			t.Fatal("the scope page shows a patient's name")
		}
	}
	// The notification list and the report, as files.
	resp, body = so.get("/app/security/incident/download?format=csv&account=" + doc.Username)
	admWant(t, resp, body, http.StatusOK, "csv")
	if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename="incident-`+doc.Username) || !strings.HasSuffix(cd, `.csv"`) ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("csv headers: %v", resp.Header)
	}
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "patient,categories") {
		t.Fatalf("csv:\n%s", body)
	}
	for i, id := range read {
		if !strings.HasPrefix(lines[i+1], id+",identity contact,1,") {
			t.Fatalf("csv line %d: %q, want patient %s", i+1, lines[i+1], id)
		}
	}
	resp, body = so.get("/app/security/incident/download?format=md&account=" + doc.Username)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "# Incident scope") || !strings.Contains(body, "patients disclosed: **3**") {
		t.Fatalf("md: %d\n%s", resp.StatusCode, body)
	}
	resp, body = so.get("/app/security/incident/download?format=art33&account=" + doc.Username)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "GDPR article 33") || !strings.Contains(body, "data subjects (patients): **3**") ||
		!strings.Contains(resp.Header.Get("Content-Disposition"), "gdpr-art33-") {
		t.Fatalf("art33: %d %s\n%s", resp.StatusCode, resp.Header.Get("Content-Disposition"), body)
	}
	// A period after the reads holds no patient.
	_, body = so.get("/app/security/incident?account=" + doc.Username + "&since=" + url.QueryEscape("2999-01-01T00:00"))
	if scopedRE.MatchString(body) || !strings.Contains(body, `id="scope-count">0<`) {
		t.Fatalf("future period\n%s", body)
	}
	// Bad input: a 4xx and the reason.
	resp, body = so.get("/app/security/incident?account=no.such.account")
	admWantError(t, resp, body, http.StatusNotFound, "no account", "unknown account")
	resp, body = so.get("/app/security/incident?account=" + doc.Username + "&since=yesterday")
	admWantError(t, resp, body, http.StatusBadRequest, "since must be", "bad since")
	resp, body = so.get("/app/security/incident?account=")
	admWant(t, resp, body, http.StatusBadRequest, "empty account")
	resp, body = so.get("/app/security/incident/download?format=pdf&account=" + doc.Username)
	admWant(t, resp, body, http.StatusBadRequest, "pdf")
	resp, body = so.get("/app/security/incident/download?format=csv&account=no.such.account")
	admWant(t, resp, body, http.StatusNotFound, "download of an unknown account")

	// The audit search finds the reads, by user and by patient.
	resp, body = so.get("/app/security/audit?action=read&agent=" + doc.Username)
	admWant(t, resp, body, http.StatusOK, "audit by agent")
	for _, id := range read {
		if !strings.Contains(body, `href="/app/security/audit?patient=`+id+`"`) {
			t.Fatalf("audit search lacks %s\n%s", id, body)
		}
	}
	if strings.Contains(body, `?patient=`+stranger.ID+`"`) {
		t.Fatal("a refused read lists its patient as read")
	}
	_, body = so.get("/app/security/audit?patient=" + read[0])
	if !strings.Contains(body, ">"+doc.Username+"</a>") {
		t.Fatalf("audit by patient\n%s", body)
	}
	resp, body = so.get("/app/security/audit?from=31%2F13%2F2026")
	admWant(t, resp, body, http.StatusBadRequest, "bad date")
	resp, body = so.get("/app/security/audit?patient=" + read[0] + "&action=" + url.QueryEscape(`"><script>`))
	if resp.StatusCode >= 500 || strings.Contains(body, `"><script>`) {
		t.Fatalf("odd action: %d", resp.StatusCode)
	}
}

func TestSecurityLogCheck(t *testing.T) {
	a := newApp(t)
	admStart(t, a, 0)
	so := a.browser(t)
	so.login(a.W.Officer)
	// The checkpointer runs every second.
	var body string
	for range 50 {
		_, body = so.get("/app/security/log")
		if regexp.MustCompile(`id="cp-size">[1-9]`).MatchString(body) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !regexp.MustCompile(`id="cp-size">[1-9]`).MatchString(body) {
		t.Fatalf("no signed checkpoint shown\n%s", body)
	}
	if st := so.admPostNoCSRF("/app/security/log", nil); st != http.StatusForbidden {
		t.Fatalf("check without CSRF token: %d", st)
	}
	resp, body := so.post("/app/security/log", nil)
	admWant(t, resp, body, http.StatusOK, "check")
	if !strings.Contains(body, `class="verdict verdict-ok" id="check-verdict"`) || !strings.Contains(body, a.W.Officer.Username) {
		t.Fatalf("check result\n%s", body)
	}
}

var exportFormRE = regexp.MustCompile(`action="/app/exports/([^"]+)"`)

func TestExportRequestAndApproval(t *testing.T) {
	a := newApp(t)
	admStart(t, a, 0)
	clerk := a.member(t, policy.AdmissionClerk, 120)
	fac := clerk.Facilities[0]
	b := a.browser(t)
	b.login(clerk)
	resp, body := b.get("/app/exports")
	admWant(t, resp, body, http.StatusOK, "exports page")
	if !strings.Contains(body, `<option value="`+fac+`"`) {
		t.Fatalf("no facility to export from\n%s", body)
	}
	// Refused: reason too short (the API says why), form kept.
	resp, body = b.post("/app/exports", url.Values{"facility": {fac}, "type": {"Patient"}, "reason": {"short"}, "recipient": {"Santé publique 94"}})
	admWantError(t, resp, body, http.StatusBadRequest, "reason", "short reason")
	if !strings.Contains(body, `value="Santé publique 94"`) {
		t.Fatal("form not kept")
	}
	resp, body = b.post("/app/exports", url.Values{"facility": {fac}, "type": {"Patient"}, "since": {"31/02/20x6"}, "reason": {"vaccination recall campaign"}, "recipient": {"Santé publique 94"}})
	admWant(t, resp, body, http.StatusBadRequest, "bad date")
	elsewhere := ""
	for _, f := range a.W.Group.Facilities {
		if !slices.Contains(clerk.Facilities, f.ID) {
			elsewhere = f.ID
			break
		}
	}
	resp, body = b.post("/app/exports", url.Values{"facility": {elsewhere}, "type": {"Patient"}, "reason": {"vaccination recall campaign"}, "recipient": {"Santé publique 94"}})
	admWantError(t, resp, body, http.StatusForbidden, "own facilities", "export from another facility")
	if st := b.admPostNoCSRF("/app/exports", url.Values{"facility": {fac}, "type": {"Patient"}, "reason": {"vaccination recall campaign"}, "recipient": {"Santé publique 94"}}); st != http.StatusForbidden {
		t.Fatalf("export request without CSRF token: %d", st)
	}
	resp, body = b.post("/app/exports", url.Values{"facility": {fac}, "type": {"Patient", "Encounter"}, "since": {"01/01/2026"},
		"reason": {"vaccination recall campaign"}, "recipient": {"Santé publique 94"}, "max_patients": {"5000"}, "valid_hours": {"24"}})
	admWant(t, resp, body, http.StatusOK, "export request")
	if !strings.Contains(body, `class="notice"`) || strings.Count(body, "vaccination recall campaign") != 1 {
		t.Fatalf("after the request\n%s", body)
	}
	// The requester cannot decide.
	_, body = b.get("/app/exports")
	if exportFormRE.MatchString(body) {
		t.Fatal("the requester is offered the decision")
	}
	var list []struct{ ID, Status string }
	st, raw := admAPI(t, a, admToken(t, a, clerk), http.MethodGet, "/export-requests", "")
	if st != http.StatusOK || json.Unmarshal(raw, &list) != nil || len(list) != 1 {
		t.Fatalf("the clerk's requests: %d %s", st, raw)
	}
	id := list[0].ID
	resp, body = b.post("/app/exports/"+id, url.Values{"decision": {"approve"}})
	admWantError(t, resp, body, http.StatusForbidden, "security officer", "requester approves")

	// The security officer approves.
	so := a.browser(t)
	so.login(a.W.Officer)
	_, body = so.get("/app/exports?status=pending")
	if !strings.Contains(body, `action="/app/exports/`+id+`"`) {
		t.Fatalf("the officer is not offered the decision\n%s", body)
	}
	if st := so.admPostNoCSRF("/app/exports/"+id, url.Values{"decision": {"approve"}}); st != http.StatusForbidden {
		t.Fatalf("approval without CSRF token: %d", st)
	}
	resp, body = so.post("/app/exports/"+id, url.Values{"decision": {"approve"}, "note": {"checked with the DPO"}})
	admWant(t, resp, body, http.StatusOK, "approve")
	if !strings.Contains(body, "checked with the DPO") || !strings.Contains(body, "export-approved") {
		t.Fatalf("after approval\n%s", body)
	}
	resp, body = so.post("/app/exports/"+id, url.Values{"decision": {"reject"}})
	admWantError(t, resp, body, http.StatusConflict, "already decided", "decide twice")
	resp, body = so.post("/app/exports/"+id, url.Values{"decision": {"approve"}, "note": {strings.Repeat("x", 1001)}})
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("overlong note: %d\n%s", resp.StatusCode, body)
	}
	// An administrator sees only their own requests (none).
	ga := a.browser(t)
	ga.login(a.member(t, policy.GroupAdmin, 1))
	resp, body = ga.get("/app/exports")
	admWant(t, resp, body, http.StatusOK, "admin's exports")
	if strings.Contains(body, "vaccination recall campaign") || strings.Contains(body, `action="/app/exports"`) {
		t.Fatal("an administrator sees another's export request, or is offered to request one")
	}
}
