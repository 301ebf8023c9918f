package web_test

// The administration pages (issue 7): accounts but no patient data,
// account creation with enrolment at first login, four-eyes role changes,
// status and MFA, facilities, export requests and their approval, CSRF on
// every form. Clinicians used here have index 120 to 129 (the chart tests
// use 0 to 29, the browser tests 40 to 99 at first, then 200 and up).

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"carnet/internal/auth"
	"carnet/internal/policy"
	"carnet/internal/sim"
	"carnet/internal/store"
)

// admClock keeps the simulated clocks of these tests moving forward from
// one test to the next: every app starts at the same morning, and an
// account's one-time codes are accepted once per 30-second step, so an
// account that signs in in two tests (the security officer, the group
// administrators) needs the second one later. These tests make no failed
// login from the tests' address: its back-off would be stamped with this
// later clock and hold for the other tests. extra moves the clock further.
var admClock struct {
	sync.Mutex
	last time.Time
}

func admStart(t *testing.T, a *app, extra time.Duration) {
	t.Helper()
	admClock.Lock()
	if d := admClock.last.Sub(a.Clock.Now()); d > 0 {
		a.Clock.Advance(d)
	}
	admClock.Unlock()
	a.Clock.Advance(10*time.Minute + extra)
	t.Cleanup(func() {
		admClock.Lock()
		defer admClock.Unlock()
		if n := a.Clock.Now(); n.After(admClock.last) {
			admClock.last = n
		}
	})
}

// apiToken signs m in on the API (password and code) and returns a bearer
// token, for the clinician's side of a scenario.
func admToken(t *testing.T, a *app, m *sim.Member) string {
	t.Helper()
	pw, err := a.W.Password(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	g, err := a.Auth.Login(context.Background(), m.Username, pw, a.code(t, m), "127.0.0.1", policy.DefaultScope)
	if err != nil {
		t.Fatalf("API login of %s: %v", m.Username, err)
	}
	return g.AccessToken
}

// apiDo sends an API request with a bearer token.
func admAPI(t *testing.T, a *app, token, method, path, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, a.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// admPostNoCSRF submits a same-origin form without the CSRF token.
func (b *browser) admPostNoCSRF(path string, form url.Values) int {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.a.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.a.URL)
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func admAccount(t *testing.T, a *app, username string) *store.Account {
	t.Helper()
	acc, err := a.W.Store.AccountByUsername(context.Background(), username)
	if err != nil {
		t.Fatalf("account %s: %v", username, err)
	}
	return acc
}

func admWant(t *testing.T, resp *http.Response, body string, want int, what string) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s: status %d, want %d\n%s", what, resp.StatusCode, want, body)
	}
}

// wantError checks a refusal: the status, the API's message on the page,
// and the page's error box.
func admWantError(t *testing.T, resp *http.Response, body string, want int, msg, what string) {
	t.Helper()
	admWant(t, resp, body, want, what)
	if !strings.Contains(body, `class="error"`) || !strings.Contains(body, msg) {
		t.Fatalf("%s: no error %q on the page\n%s", what, msg, body)
	}
}

func TestAdminSeesAccountsButNoPatientData(t *testing.T) {
	a := newApp(t)
	admStart(t, a, 0)
	ga := a.member(t, policy.GroupAdmin, 0)
	b := a.browser(t)
	b.login(ga)

	resp, body := b.get("/app/admin")
	admWant(t, resp, body, http.StatusOK, "accounts")
	doc := a.member(t, policy.Physician, 120)
	if !strings.Contains(body, `href="/app/admin?page=2`) || !strings.Contains(body, "<caption>") {
		t.Fatalf("accounts page: no paging or caption\n%.3000s", body)
	}
	// Filters: the security officers, by role.
	_, body = b.get("/app/admin?role=security-officer")
	if !strings.Contains(body, ">"+a.W.Officer.Username+"</a>") || strings.Contains(body, ">"+doc.Username+"</a>") {
		t.Fatalf("role filter\n%s", body)
	}
	_, body = b.get("/app/admin?q=" + url.QueryEscape(doc.Username))
	if !strings.Contains(body, `href="/app/admin/accounts/`+doc.Username+`"`) {
		t.Fatalf("search by username\n%s", body)
	}
	resp, body = b.get("/app/admin/accounts/" + doc.Username)
	admWant(t, resp, body, http.StatusOK, "account page")
	if !strings.Contains(body, doc.Username) || !strings.Contains(body, "Médecin") {
		t.Fatalf("account page\n%s", body)
	}
	// The facilities, from the directory.
	resp, body = b.get("/app/admin/facilities")
	admWant(t, resp, body, http.StatusOK, "facilities")
	if !strings.Contains(body, html.EscapeString(a.W.Group.Facilities[0].Name)) {
		t.Fatalf("facilities list lacks %q\n%s", a.W.Group.Facilities[0].Name, body)
	}

	// No patient: neither a chart nor a search result.
	pt := a.W.Patients[a.W.GPOf[doc.Index][0]]
	resp, body = b.get("/app/patients/" + pt.ID)
	if resp.StatusCode < 400 || strings.Contains(body, pt.Family) {
		t.Fatalf("group admin opened patient %s (%s): %d\n%s", pt.ID, pt.Family, resp.StatusCode, body)
	}
	resp, body = b.get("/app/patients?birthdate=" + url.QueryEscape(pt.Birth))
	if resp.StatusCode < 400 || strings.Contains(body, pt.Family) || strings.Contains(body, "/app/patients/"+pt.ID) {
		t.Fatalf("group admin searched patients by birth date: %d\n%s", resp.StatusCode, body)
	}
	// (A name search echoes the name in its form: no result, no chart link.)
	resp, body = b.get("/app/patients?name=" + url.QueryEscape(pt.Family))
	if resp.StatusCode < 400 || strings.Contains(body, "/app/patients/"+pt.ID) || strings.Contains(body, `<table class="list">`) {
		t.Fatalf("group admin searched patients by name: %d\n%s", resp.StatusCode, body)
	}
	// The security officer is no administrator.
	so := a.browser(t)
	so.login(a.W.Officer)
	resp, body = so.get("/app/admin")
	admWant(t, resp, body, http.StatusForbidden, "officer on /app/admin")
}

func TestAdminPagesForbiddenToClinicians(t *testing.T) {
	a := newApp(t)
	admStart(t, a, 0)
	doc := a.member(t, policy.Physician, 121)
	b := a.browser(t)
	b.login(doc)
	for _, p := range []string{"/app/admin", "/app/admin/new-account", "/app/admin/roles", "/app/admin/facilities", "/app/admin/accounts/" + doc.Username} {
		resp, body := b.get(p)
		admWant(t, resp, body, http.StatusForbidden, "physician GET "+p)
	}
	resp, body := b.post("/app/admin/new-account", url.Values{"username": {"web.by.doctor"}, "facility": doc.Facilities, "enrol": {"first-login"}})
	admWant(t, resp, body, http.StatusForbidden, "physician creates an account")
	if _, err := a.W.Store.AccountByUsername(context.Background(), "web.by.doctor"); err == nil {
		t.Fatal("a physician created an account")
	}
}

var passwordRE = regexp.MustCompile(`id="initial-password">([^<]+)<`)

func TestAdminCreateAccountEnrolsAtFirstLogin(t *testing.T) {
	a := newApp(t)
	admStart(t, a, 0)
	fa := a.member(t, policy.FacilityAdmin, 0)
	fac := fa.Facilities[0]
	b := a.browser(t)
	b.login(fa)
	resp, body := b.get("/app/admin/new-account")
	admWant(t, resp, body, http.StatusOK, "form")
	if !strings.Contains(body, `value="`+fac+`"`) || !strings.Contains(body, `value="first-login" checked`) {
		t.Fatalf("form\n%s", body)
	}
	other := a.member(t, policy.FacilityAdmin, 1).Facilities[0]
	if strings.Contains(body, `value="`+other+`"`) {
		t.Fatal("a facility admin is offered another facility")
	}

	resp, body = b.post("/app/admin/new-account", url.Values{"username": {"web.new.nurse"}, "display": {"Nouvelle Infirmière"},
		"facility": {fac}, "role": {policy.Nurse}, "enrol": {"first-login"}})
	admWant(t, resp, body, http.StatusCreated, "create")
	m := passwordRE.FindStringSubmatch(body)
	if m == nil || strings.Contains(body, `class="qr"`) {
		t.Fatalf("no initial password, or an authenticator for a first-login account\n%s", body)
	}
	pw := m[1]
	acc := admAccount(t, a, "web.new.nurse")
	if len(acc.Roles) != 0 || !slices.Equal(acc.Facilities, []string{fac}) {
		t.Fatalf("created account: roles %v (want none before approval), facilities %v", acc.Roles, acc.Facilities)
	}
	// The first login goes to the enrolment page.
	nb := a.browser(t)
	nb.get("/app/login")
	resp, body = nb.post("/app/login", url.Values{"username": {"web.new.nurse"}, "password": {pw}})
	if resp.Request.URL.Path != "/app/enrol" || !strings.Contains(body, `src="data:image/png;base64,`) {
		t.Fatalf("first login landed on %s\n%s", resp.Request.URL, body)
	}
	// The password is not shown again anywhere.
	_, body = b.get("/app/admin/accounts/web.new.nurse")
	if strings.Contains(body, pw) {
		t.Fatal("the initial password is shown again")
	}

	// With the authenticator now: QR code, secret and recovery codes, once.
	resp, body = b.post("/app/admin/new-account", url.Values{"username": {"web.new.clerk"}, "facility": {fac}, "enrol": {"now"}})
	admWant(t, resp, body, http.StatusCreated, "create with an authenticator")
	if !strings.Contains(body, `src="data:image/png;base64,`) || len(regexp.MustCompile(`<li><code>[^<]+</code></li>`).FindAllString(body, -1)) != 10 {
		t.Fatalf("enrolment now\n%s", body)
	}

	// Bad input: 4xx with the API's message, the form kept.
	resp, body = b.post("/app/admin/new-account", url.Values{"username": {"x"}, "display": {"Kept Display"}, "facility": {fac}, "enrol": {"first-login"}})
	admWantError(t, resp, body, http.StatusBadRequest, "invalid username", "short username")
	if !strings.Contains(body, `value="Kept Display"`) || !strings.Contains(body, `value="`+fac+`" checked`) {
		t.Fatalf("form not kept\n%s", body)
	}
	resp, body = b.post("/app/admin/new-account", url.Values{"username": {"web.new.nurse"}, "facility": {fac}, "enrol": {"first-login"}})
	admWantError(t, resp, body, http.StatusConflict, "taken", "duplicate")
	resp, body = b.post("/app/admin/new-account", url.Values{"username": {"web.no.facility"}, "enrol": {"first-login"}})
	admWantError(t, resp, body, http.StatusBadRequest, "at least one facility", "no facility")
	resp, body = b.post("/app/admin/new-account", url.Values{"username": {"web.other.fac"}, "facility": {other}, "enrol": {"first-login"}})
	admWantError(t, resp, body, http.StatusForbidden, "your own facilities", "another facility")
	resp, body = b.post("/app/admin/new-account", url.Values{"username": {"web.bad.role"}, "facility": {fac}, "role": {"root"}, "enrol": {"first-login"}})
	admWantError(t, resp, body, http.StatusBadRequest, "unknown role", "unknown role")
	resp, body = b.post("/app/admin/new-account", url.Values{"username": {"web.bad.enrol"}, "facility": {fac}, "enrol": {"sms"}})
	admWant(t, resp, body, http.StatusBadRequest, "unknown enrolment")
	for _, u := range []string{"web.other.fac", "web.bad.role", "web.bad.enrol", "web.no.facility"} {
		if _, err := a.W.Store.AccountByUsername(context.Background(), u); err == nil {
			t.Fatalf("refused creation of %s created it", u)
		}
	}
	// Without the CSRF token: refused, nothing created.
	if st := b.admPostNoCSRF("/app/admin/new-account", url.Values{"username": {"web.no.csrf"}, "facility": {fac}, "enrol": {"first-login"}}); st != http.StatusForbidden {
		t.Fatalf("create without CSRF token: %d", st)
	}
	if _, err := a.W.Store.AccountByUsername(context.Background(), "web.no.csrf"); err == nil {
		t.Fatal("created without a CSRF token")
	}
}

var roleFormRE = regexp.MustCompile(`action="/app/admin/roles/([^"]+)"`)

func TestAdminFourEyesRoleChange(t *testing.T) {
	a := newApp(t)
	admStart(t, a, 0)
	ga0, ga1 := a.member(t, policy.GroupAdmin, 0), a.member(t, policy.GroupAdmin, 1)
	fac := a.W.Group.Facilities[2].ID
	b0, b1 := a.browser(t), a.browser(t)
	b0.login(ga0)
	b1.login(ga1)
	resp, body := b0.post("/app/admin/new-account", url.Values{"username": {"web.fe.clerk"}, "facility": {fac}, "enrol": {"first-login"}})
	admWant(t, resp, body, http.StatusCreated, "create")

	// ga0 asks for a role: pending, not applied.
	resp, body = b0.post("/app/admin/accounts/web.fe.clerk/roles", url.Values{"op": {"grant"}, "role": {policy.AdmissionClerk}})
	admWant(t, resp, body, http.StatusOK, "request")
	if resp.Request.URL.Path != "/app/admin/accounts/web.fe.clerk" || !strings.Contains(body, `class="notice"`) {
		t.Fatalf("after the request: %s\n%s", resp.Request.URL, body)
	}
	if r := admAccount(t, a, "web.fe.clerk").Roles; len(r) != 0 {
		t.Fatalf("role applied before approval: %v", r)
	}
	_, body = b0.get("/app/admin/roles")
	i := strings.Index(body, `href="/app/admin/accounts/web.fe.clerk"`)
	if i < 0 {
		t.Fatalf("pending request not listed\n%s", body)
	}
	m := roleFormRE.FindStringSubmatch(body[i:])
	if m == nil || !strings.Contains(body[i:min(len(body), i+2000)], "votre demande") {
		t.Fatalf("no decision form, or not marked as ga0's own\n%s", body[i:])
	}
	id := m[1]

	// The requester cannot approve their own request: the API's refusal.
	resp, body = b0.post("/app/admin/roles/"+id, url.Values{"decision": {"approve"}})
	admWantError(t, resp, body, http.StatusForbidden, "four-eyes", "self-approval")
	if r := admAccount(t, a, "web.fe.clerk").Roles; len(r) != 0 {
		t.Fatalf("self-approval applied: %v", r)
	}
	// ga0 is still signed in (a refusal is not a suspension).
	if resp, _ := b0.get("/app/admin"); resp.Request.URL.Path != "/app/admin" {
		t.Fatalf("the refusal ended the session: %s", resp.Request.URL)
	}
	resp, body = b1.post("/app/admin/roles/"+id, url.Values{"decision": {"maybe"}})
	admWant(t, resp, body, http.StatusBadRequest, "unknown decision")
	// Without the token: nothing.
	if st := b1.admPostNoCSRF("/app/admin/roles/"+id, url.Values{"decision": {"approve"}}); st != http.StatusForbidden {
		t.Fatalf("approval without CSRF token: %d", st)
	}
	if r := admAccount(t, a, "web.fe.clerk").Roles; len(r) != 0 {
		t.Fatalf("approved without a CSRF token: %v", r)
	}
	// A second administrator approves.
	resp, body = b1.post("/app/admin/roles/"+id, url.Values{"decision": {"approve"}})
	admWant(t, resp, body, http.StatusOK, "second approval")
	if !strings.Contains(body, `class="notice"`) {
		t.Fatalf("no notice after approval\n%s", body)
	}
	if r := admAccount(t, a, "web.fe.clerk").Roles; !slices.Equal(r, []string{policy.AdmissionClerk}) {
		t.Fatalf("roles after approval: %v", r)
	}
	resp, body = b1.post("/app/admin/roles/"+id, url.Values{"decision": {"approve"}})
	admWantError(t, resp, body, http.StatusConflict, "already", "approve twice")
	_, body = b1.get("/app/admin/roles?status=approved")
	if !strings.Contains(body, "web.fe.clerk") || !strings.Contains(body, "("+ga1.Username+")") {
		t.Fatalf("approved list\n%s", body)
	}

	// A revocation applies at once, without a second person.
	resp, body = b0.post("/app/admin/accounts/web.fe.clerk/roles", url.Values{"op": {"revoke"}, "role": {policy.AdmissionClerk}})
	admWant(t, resp, body, http.StatusOK, "revoke")
	if r := admAccount(t, a, "web.fe.clerk").Roles; len(r) != 0 {
		t.Fatalf("roles after revocation: %v", r)
	}
	// Nobody asks for their own roles; bad input is a 4xx with a message.
	resp, body = b0.post("/app/admin/accounts/"+ga0.Username+"/roles", url.Values{"op": {"grant"}, "role": {policy.Physician}})
	admWantError(t, resp, body, http.StatusForbidden, "your own roles", "own roles")
	resp, body = b0.post("/app/admin/accounts/web.fe.clerk/roles", url.Values{"op": {"grant"}, "role": {"root"}})
	admWantError(t, resp, body, http.StatusBadRequest, "unknown role", "unknown role")
	if !strings.Contains(body, `<option value="grant" selected>`) {
		t.Fatal("role form not kept")
	}
	resp, body = b0.post("/app/admin/accounts/no.such.account/roles", url.Values{"op": {"grant"}, "role": {policy.Nurse}})
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("request for a missing account: %d\n%s", resp.StatusCode, body)
	}
}

func TestAdminStatusAndMFA(t *testing.T) {
	a := newApp(t)
	admStart(t, a, 0)
	fa := a.member(t, policy.FacilityAdmin, 2)
	fac := fa.Facilities[0]
	b := a.browser(t)
	b.login(fa)
	resp, body := b.post("/app/admin/new-account", url.Values{"username": {"web.sd.nurse"}, "facility": {fac}, "enrol": {"first-login"}})
	admWant(t, resp, body, http.StatusCreated, "create")
	pw := passwordRE.FindStringSubmatch(body)[1]

	resp, body = b.post("/app/admin/accounts/web.sd.nurse/status", url.Values{"action": {"disable"}})
	admWant(t, resp, body, http.StatusOK, "disable")
	if st := admAccount(t, a, "web.sd.nurse").Status; st != store.StatusDisabled {
		t.Fatalf("status after disable: %s", st)
	}
	// (From another address: a failure from the tests' own address would
	// count against it, at this test's clock, for the tests after.)
	if _, err := a.Auth.BeginLogin(context.Background(), "web.sd.nurse", pw, "192.0.2.7"); err == nil {
		t.Fatal("a disabled account begins a login")
	}
	resp, body = b.post("/app/admin/accounts/web.sd.nurse/status", url.Values{"action": {"enable"}})
	admWant(t, resp, body, http.StatusOK, "enable")
	if st := admAccount(t, a, "web.sd.nurse").Status; st != store.StatusActive {
		t.Fatalf("status after enable: %s", st)
	}
	resp, body = b.post("/app/admin/accounts/web.sd.nurse/status", url.Values{"action": {"delete"}})
	admWant(t, resp, body, http.StatusBadRequest, "unknown action")
	if st := b.admPostNoCSRF("/app/admin/accounts/web.sd.nurse/status", url.Values{"action": {"disable"}}); st != http.StatusForbidden {
		t.Fatalf("disable without CSRF token: %d", st)
	}
	if st := admAccount(t, a, "web.sd.nurse").Status; st != store.StatusActive {
		t.Fatal("disabled without a CSRF token")
	}

	// MFA reset: a new authenticator, shown once; it signs in.
	resp, body = b.post("/app/admin/accounts/web.sd.nurse/reset-mfa", nil)
	admWant(t, resp, body, http.StatusOK, "reset MFA")
	sm := regexp.MustCompile(`<code class="secret">([A-Z2-7 ]+)</code>`).FindStringSubmatch(body)
	if sm == nil || !strings.Contains(body, `src="data:image/png;base64,`) {
		t.Fatalf("reset page\n%s", body)
	}
	a.Clock.Advance(31e9)
	code, _ := auth.TOTPCode(strings.ReplaceAll(sm[1], " ", ""), a.Clock.Now())
	if _, err := a.Auth.Login(context.Background(), "web.sd.nurse", pw, code, "127.0.0.1", policy.DefaultScope); err != nil {
		t.Fatalf("login with the new authenticator: %v", err)
	}
	if st := b.admPostNoCSRF("/app/admin/accounts/web.sd.nurse/reset-mfa", nil); st != http.StatusForbidden {
		t.Fatalf("reset without CSRF token: %d", st)
	}

	// One's own account, another facility's: refused with a message.
	resp, body = b.post("/app/admin/accounts/"+fa.Username+"/status", url.Values{"action": {"disable"}})
	admWantError(t, resp, body, http.StatusForbidden, "your own account", "disable oneself")
	var other *sim.Member
	for n := 120; other == nil || slices.Contains(other.Facilities, fac); n++ {
		other = a.member(t, policy.Nurse, n)
	}
	resp, body = b.post("/app/admin/accounts/"+other.Username+"/status", url.Values{"action": {"disable"}})
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "that you manage") {
		t.Fatalf("disable an account of another facility: %d\n%s", resp.StatusCode, body)
	}
	resp, body = b.get("/app/admin/accounts/" + other.Username)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("account of another facility: %d\n%s", resp.StatusCode, body)
	}
	if st := admAccount(t, a, other.Username).Status; st != store.StatusActive {
		t.Fatalf("other facility's account: %s", st)
	}
}
