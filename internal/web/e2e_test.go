package web_test

// End-to-end tests in a real headless Chromium (browser_test.go): a person
// signing in, enrolling, searching, switching language, and an attacker's
// page and patient names trying to run script in a clinician's browser.
// Each test uses staff accounts no other test signs in with (e2eStaff).

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"carnet/internal/auth"
	"carnet/internal/fhir"
	"carnet/internal/policy"
	"carnet/internal/record"
	"carnet/internal/sim"
)

// e2eStaff is the first index of the clinicians the browser tests sign in
// with: far from the other tests' (members 0 to 50), so that no two tests
// use one account's one-time codes. Administrators and security officers,
// of whom the world has few, are accounts each test creates (newAccount).
const e2eStaff = 200

// Accept-Language headers of a French and an English browser.
const (
	acceptFR = "fr-FR,fr;q=0.9"
	acceptEN = "en-GB,en;q=0.9"
)

// account is someone who signs in.
type account struct{ Username, Password, Secret string }

// staff is a world member's account.
func (a *app) staff(t testing.TB, m *sim.Member) account {
	t.Helper()
	pw, err := a.W.Password(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	return account{m.Username, pw, m.TOTP}
}

var accountSeq atomic.Int64

// uniqueName is a-z letters, different at each call.
func uniqueName() string {
	n := accountSeq.Add(1)*1_000_003 + time.Now().UnixNano()%1_000_000
	var b []byte
	for ; n > 0; n /= 26 {
		b = append(b, byte('a'+n%26))
	}
	return string(b)
}

// newAccount creates an account with an authenticator (no enrolment).
func (a *app) newAccount(t testing.TB, role string, facilities []string) account {
	t.Helper()
	username := "e2e." + strings.ReplaceAll(role, "-", "") + "." + uniqueName()
	en, err := a.Auth.CreateAccount(context.Background(), auth.NewAccount{Username: username, Roles: []string{role},
		Facilities: facilities, Display: "E2e " + role})
	if err != nil {
		t.Fatal(err)
	}
	return account{username, en.Password, en.TOTPSecret}
}

// signIn types the password (Enter submits) and then the code (clicking
// the button); it fails the test unless the home page answers.
func (tb *tab) signIn(acc account) {
	tb.t.Helper()
	tb.open("/app/login")
	tb.do(chromedp.SendKeys(chromedp.ID("username"), acc.Username))
	tb.load(chromedp.SendKeys(chromedp.ID("password"), acc.Password+"\n"))
	if p := tb.path(); !strings.HasPrefix(p, "/app/login?") || !strings.Contains(p, "step=code") {
		tb.t.Fatalf("after the password: %s\n%s", p, tb.body())
	}
	tb.a.Clock.Advance(31 * time.Second)
	code, err := auth.TOTPCode(acc.Secret, tb.a.Clock.Now())
	if err != nil {
		tb.t.Fatal(err)
	}
	tb.do(chromedp.SendKeys(chromedp.ID("otp"), code))
	tb.load(chromedp.Click(chromedp.CSS(`main button[type=submit]`)))
	if p := tb.path(); p != "/app/" {
		tb.t.Fatalf("after the code: %s\n%s", p, tb.body())
	}
}

// login signs a world member in.
func (tb *tab) login(m *sim.Member) {
	tb.t.Helper()
	tb.signIn(tb.a.staff(tb.t, m))
}

func TestBrowserLoginPasswordThenCode(t *testing.T) {
	a := newApp(t)
	m := a.member(t, policy.Physician, e2eStaff)
	tb := a.newTab(t, acceptFR)

	// Signed out, a page sends the browser to the login form.
	tb.open("/app/patients")
	if p := tb.path(); !strings.HasPrefix(p, "/app/login?") {
		t.Fatalf("signed out, /app/patients shows %s", p)
	}
	tb.login(m)
	if h := tb.text("main h1"); !strings.Contains(h, m.Username) {
		t.Fatalf("home page heading %q", h)
	}
	if got := tb.text("header .who"); got != m.Username {
		t.Fatalf("header shows %q", got)
	}
	// The session cookies are HttpOnly: the page's script cannot read them.
	if c := evalIn[string](tb, "document.cookie"); strings.Contains(c, "carnet_at") || strings.Contains(c, "carnet_rt") {
		t.Fatalf("script sees the session tokens: %q", c)
	}
	// Logging out (the header's button) ends the session.
	tb.load(chromedp.Click(chromedp.CSS(`header form[action="/app/logout"] button`)))
	if n := tb.text("main .notice"); !strings.Contains(n, "déconnecté") {
		t.Fatalf("after logout: %q", n)
	}
	tb.open("/app/patients")
	if p := tb.path(); !strings.HasPrefix(p, "/app/login?") {
		t.Fatalf("after logout, /app/patients shows %s", p)
	}
}

// newEnrolAccount creates an account that enrols its authenticator at
// first login.
func newEnrolAccount(t testing.TB, a *app, role string, facilities []string) (username, password string) {
	t.Helper()
	username = "e2e." + strings.ReplaceAll(role, "-", "") + "." + uniqueName()
	en, err := a.Auth.CreateAccount(context.Background(), auth.NewAccount{Username: username, Roles: []string{role},
		Facilities: facilities, EnrolAtFirstLogin: true})
	if err != nil {
		t.Fatal(err)
	}
	return username, en.Password
}

// enrol signs in a new account and enrols: it reads the key off the page
// as a person would type it into an authenticator app, types the app's
// code, and returns the recovery codes shown. shoot takes screenshots.
func (tb *tab) enrol(username, password string, shoot bool) []string {
	tb.t.Helper()
	tb.open("/app/login")
	tb.do(chromedp.SendKeys(chromedp.ID("username"), username))
	tb.load(chromedp.SendKeys(chromedp.ID("password"), password+"\n"))
	if p := tb.path(); !strings.HasPrefix(p, "/app/enrol") {
		tb.t.Fatalf("first login landed on %s, not the enrolment", p)
	}
	if n := evalIn[int](tb, `(function(){var i=document.querySelector("img.qr");return i&&i.complete?i.naturalWidth:0})()`); n < 100 {
		tb.t.Fatalf("the QR code did not load (width %d)", n)
	}
	if shoot {
		tb.shot("enrol")
	}
	secret := strings.ReplaceAll(tb.text("code.secret"), " ", "")
	if !regexp.MustCompile(`^[A-Z2-7]{16,}$`).MatchString(secret) {
		tb.t.Fatalf("secret on the page: %q", secret)
	}
	tb.a.Clock.Advance(31 * time.Second)
	code, err := auth.TOTPCode(secret, tb.a.Clock.Now())
	if err != nil {
		tb.t.Fatal(err)
	}
	tb.load(chromedp.SendKeys(chromedp.ID("otp"), code+"\n"))
	if p := tb.path(); !strings.HasPrefix(p, "/app/recovery-codes") {
		tb.t.Fatalf("after the code: %s\n%s", p, tb.body())
	}
	codes := evalIn[[]string](tb, `Array.from(document.querySelectorAll("ol.codes li code")).map(function(c){return c.textContent})`)
	if shoot {
		tb.shot("recovery-codes")
	}
	return codes
}

func TestBrowserEnrolmentAtFirstLogin(t *testing.T) {
	a := newApp(t)
	user, pw := newEnrolAccount(t, a, policy.Nurse, a.member(t, policy.Nurse, e2eStaff).Facilities)
	tb := a.newTab(t, acceptFR)
	codes := tb.enrol(user, pw, false)
	if len(codes) != 10 {
		t.Fatalf("%d recovery codes shown: %q", len(codes), codes)
	}
	seen := map[string]bool{}
	for _, c := range codes {
		if len(c) < 8 || seen[c] {
			t.Fatalf("recovery codes %q", codes)
		}
		seen[c] = true
	}
	// "I have written them down" leads home, signed in.
	tb.load(chromedp.Click(chromedp.CSS(`main a.button`)))
	if p := tb.path(); p != "/app/" {
		t.Fatalf("after the recovery codes: %s", p)
	}
	if got := tb.text("header .who"); got != user {
		t.Fatalf("signed in as %q", got)
	}
	// The codes are shown once.
	tb.open("/app/recovery-codes")
	if strings.Contains(tb.body(), codes[0]) {
		t.Fatal("recovery codes shown a second time")
	}
	// A recovery code signs in, in another browser.
	tb2 := a.newTab(t, acceptFR)
	tb2.open("/app/login")
	tb2.do(chromedp.SendKeys(chromedp.ID("username"), user))
	tb2.load(chromedp.SendKeys(chromedp.ID("password"), pw+"\n"))
	tb2.load(chromedp.SendKeys(chromedp.ID("otp"), codes[3]+"\n"))
	if p := tb2.path(); p != "/app/" {
		t.Fatalf("recovery code sign-in landed on %s\n%s", p, tb2.body())
	}
}

// search types a name into the search form and submits it.
func (tb *tab) search(name string) {
	tb.t.Helper()
	if p := tb.path(); p != "/app/patients" && !strings.HasPrefix(p, "/app/patients?") {
		if tb.count(`header nav a[href="/app/patients"]`) > 0 {
			tb.load(chromedp.Click(chromedp.CSS(`header nav a[href="/app/patients"]`)))
		} else {
			tb.open("/app/patients")
		}
	}
	tb.do(chromedp.Evaluate[chromedp.Void](`document.getElementById("name").value = ""`))
	tb.load(chromedp.SendKeys(chromedp.ID("name"), name+"\n"))
}

// resultIDs are the patient ids the results table links to.
func (tb *tab) resultIDs() []string {
	tb.t.Helper()
	return evalIn[[]string](tb, `Array.from(document.querySelectorAll("table.list tbody a[href^='/app/patients/']")).map(function(a){return a.getAttribute("href").split("/")[3]})`)
}

func TestBrowserPatientSearch(t *testing.T) {
	a := newApp(t)
	m := a.member(t, policy.Physician, e2eStaff+1)
	mine := a.W.Patients[a.W.GPOf[m.Index][0]]
	tb := a.newTab(t, acceptFR)
	tb.login(m)
	tb.search(mine.Family)
	if p := tb.path(); !strings.HasPrefix(p, "/app/patients?") || !strings.Contains(p, "name=") {
		t.Fatalf("search landed on %s", p)
	}
	ids := tb.resultIDs()
	found := false
	for _, id := range ids {
		found = found || id == mine.ID
	}
	if !found {
		t.Fatalf("own patient %s (%s) not among the results %v\n%s", mine.ID, mine.Family, ids, tb.body())
	}
	if c := tb.text("table.list caption"); !strings.Contains(c, "patient") {
		t.Fatalf("results caption %q", c)
	}
	// The criterion stays in the form.
	if v := evalIn[string](tb, `document.getElementById("name").value`); v != mine.Family {
		t.Fatalf("name field after the search: %q", v)
	}
	// Click through to the patient.
	tb.load(chromedp.Click(chromedp.CSS(fmt.Sprintf(`table.list a[href="/app/patients/%s"]`, mine.ID))))
	if p := tb.path(); p != "/app/patients/"+mine.ID {
		t.Fatalf("the result link led to %s", p)
	}
	if h := tb.text("main .banner h1.pname"); !strings.Contains(strings.ToUpper(h), strings.ToUpper(mine.Family)) {
		t.Fatalf("the chart's banner %q does not name %s", h, mine.Family)
	}
	// A name nobody has: the page says so, and lists nobody.
	tb.search("Zzyzxqwv")
	if n := tb.count("table.list tbody tr"); n != 0 {
		t.Fatalf("%d results for a name nobody has", n)
	}
	if !strings.Contains(tb.body(), "Aucun patient trouvé") {
		t.Fatalf("no 'none found' message:\n%s", tb.body())
	}
}

// Script-injection payloads used as patient names.
const (
	xssScript = `<script>alert(1)</script>`
	xssImg    = `"><img src=x onerror=alert(1)>`
)

// createPatient stores a patient of m's (attending physician, managed by
// m's first facility) straight in the store, as an import would.
func createPatient(t testing.TB, a *app, m *sim.Member, family, given string) string {
	t.Helper()
	res, err := fhir.Parse(fmt.Appendf(nil, `{"resourceType":"Patient","active":true,
		"name":[{"family":%q,"given":[%q]}],"gender":"female","birthDate":"1961-04-12",
		"managingOrganization":{"reference":"Organization/%s"},
		"generalPractitioner":[{"reference":"Practitioner/%s"}]}`, family, given, m.Facilities[0], m.PractitionerID))
	if err != nil {
		t.Fatal(err)
	}
	out, err := record.New(a.W.Store).Create(context.Background(), "Patient", res)
	if err != nil {
		t.Fatal(err)
	}
	return out.Resource.ID
}

func TestBrowserPatientNamesDoNotRunScript(t *testing.T) {
	a := newApp(t)
	m := a.member(t, policy.Physician, e2eStaff+2)
	given := fmt.Sprintf("Xssprobe%d", time.Now().UnixNano()%1_000_000)
	ids := map[string]string{
		createPatient(t, a, m, xssScript, given): xssScript,
		createPatient(t, a, m, xssImg, given):    xssImg,
	}
	tb := a.newTab(t, acceptFR)
	tb.login(m)

	check := func(where string) {
		t.Helper()
		if d := tb.dialogList(); len(d) > 0 {
			t.Fatalf("%s: a JavaScript dialog opened: %v", where, d)
		}
		if n := tb.count(`img[src="x"]`); n != 0 {
			t.Fatalf("%s: %d injected img elements", where, n)
		}
		if n := tb.count(`main script, main img:not(.qr)`); n != 0 {
			t.Fatalf("%s: %d script or img elements in the page's content", where, n)
		}
	}
	// Search by the given name: both listed, their names as text.
	tb.search(given)
	names := evalIn[[]string](tb, `Array.from(document.querySelectorAll("table.list tbody td:first-child a")).map(function(a){return a.textContent})`)
	for id, payload := range ids {
		found := false
		for _, n := range names {
			found = found || strings.Contains(strings.ToUpper(n), strings.ToUpper(payload))
		}
		if !found {
			t.Fatalf("patient %s: its name %q is not shown literally among %q", id, payload, names)
		}
	}
	check("search by given name")
	// Search by each payload: it is echoed into the search field (an
	// attribute) and matched against the names.
	for _, payload := range []string{xssScript, xssImg} {
		tb.search(payload)
		if v := evalIn[string](tb, `document.getElementById("name").value`); v != payload {
			t.Fatalf("search field holds %q, want %q", v, payload)
		}
		found := false
		for _, n := range evalIn[[]string](tb, `Array.from(document.querySelectorAll("table.list tbody td:first-child a")).map(function(a){return a.textContent})`) {
			found = found || strings.Contains(strings.ToUpper(n), strings.ToUpper(payload))
		}
		if !found {
			t.Fatalf("searching %q does not list its patient:\n%s", payload, tb.body())
		}
		check("search by " + payload)
	}
	// Each patient's chart: the banner, the title, the access history.
	for id, payload := range ids {
		for _, page := range []string{"", "/prescriptions", "/access"} {
			tb.open("/app/patients/" + id + page)
			if h := tb.text("main .banner h1.pname"); !strings.Contains(strings.ToUpper(h), strings.ToUpper(payload)) {
				t.Fatalf("%s: banner %q, want the name %q as text", page, h, payload)
			}
			if title := evalIn[string](tb, "document.title"); strings.Contains(title, "<") && !strings.Contains(strings.ToUpper(title), strings.ToUpper(payload)) {
				t.Fatalf("%s: title %q", page, title)
			}
			check("patient page " + page + " " + payload)
		}
	}
}

func TestBrowserContentSecurityPolicy(t *testing.T) {
	a := newApp(t)
	m := a.member(t, policy.Physician, e2eStaff+3)
	tb := a.newTab(t, acceptFR)
	tb.login(m)
	mine := a.W.Patients[a.W.GPOf[m.Index][0]]
	tb.search(mine.Family)
	for _, page := range []string{"", "/encounters", "/conditions", "/observations", "/prescriptions", "/billing", "/access"} {
		tb.open("/app/patients/" + mine.ID + page)
	}
	tb.open("/app/admission")
	tb.open("/app/no-such-page")
	tb.open("/app/lang?to=en&next=/app/")
	// Every page loaded its script and style sheet (no CSP refusal): the
	// style sheet colours the header, and the script runs.
	bg := evalIn[string](tb, `getComputedStyle(document.querySelector("header.top")).backgroundColor`)
	if bg != "rgb(13, 42, 74)" {
		t.Fatalf("the style sheet did not apply: header background %s", bg)
	}
	docs := tb.documents()
	if len(docs) < 13 {
		t.Fatalf("only %d documents seen: %+v", len(docs), docs)
	}
	for _, d := range docs {
		if d.CSP == "" {
			t.Errorf("%s (%d) came without a Content-Security-Policy", d.URL, d.Status)
		}
	}
	for _, v := range tb.cspViolations() {
		t.Errorf("CSP violation: %s", v)
	}
	// The policy is enforced, and a violation would be seen: an inline
	// script and an inline style added by the page are refused.
	tb.do(chromedp.Evaluate[chromedp.Void](`(function(){
		var s=document.createElement("script"); s.textContent="window.__inline=1"; document.body.appendChild(s);
		var d=document.createElement("div"); d.setAttribute("style","color:red"); d.id="styled"; document.body.appendChild(d);
	})()`), chromedp.Sleep(200*time.Millisecond))
	if ran := evalIn[bool](tb, `window.__inline === 1`); ran {
		t.Fatal("an inline script ran")
	}
	if c := evalIn[string](tb, `getComputedStyle(document.getElementById("styled")).color`); c == "rgb(255, 0, 0)" {
		t.Fatal("an inline style applied")
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(tb.cspViolations()) < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if v := tb.cspViolations(); len(v) < 2 {
		t.Fatalf("the refused inline script and style were not reported: %q", tb.messages())
	}
	// That was this test's own doing: clear it so the tab's cleanup does
	// not count it.
	tb.mu.Lock()
	tb.console = nil
	tb.mu.Unlock()
}

func TestBrowserCrossSitePostRefused(t *testing.T) {
	a := newApp(t)
	m := a.member(t, policy.Physician, e2eStaff+4)
	pat := a.W.Patients[a.W.GPOf[m.Index][0]]
	tb := a.newTab(t, acceptFR)
	tb.login(m)

	// An attacker's page: a form that posts itself, with every field but
	// the CSRF token it cannot know: to the logout, or a prescription for
	// one of the physician's patients.
	forged := "Dose forgée " + uniqueName()
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>Offre</title>
<form id="f" method="post" action="%s%s"><input type="hidden" name="csrf" value="guess">
<input type="hidden" name="med" value="N02BE01"><input type="hidden" name="dose" value="%s"><input type="hidden" name="route" value="26643006"></form>
<script>document.getElementById("f").submit()</script>`, a.URL, r.URL.Query().Get("to"), forged)
	}))
	defer evil.Close()
	_, port, _ := strings.Cut(strings.TrimPrefix(evil.URL, "http://"), ":")
	rx := "/app/patients/" + pat.ID + "/prescriptions"
	for _, c := range []struct{ name, origin, to string }{
		// Another site: the browser sends no session cookie (SameSite=Lax)
		// and Sec-Fetch-Site: cross-site.
		{"cross-site", "http://localhost:" + port, "/app/logout"},
		{"cross-site", "http://localhost:" + port, rx},
		// The same site on another port: the cookies go along, so only the
		// origin check and the token stand in the way.
		{"same-site", evil.URL, "/app/logout"},
		{"same-site", evil.URL, rx},
	} {
		tb.load(chromedp.Navigate(c.origin + "/?to=" + c.to))
		ctx, cancel := context.WithTimeout(tb.ctx, actionTimeout)
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(`location.href === %q && document.readyState === "complete"`, a.URL+c.to)))
		cancel()
		if err != nil {
			t.Fatalf("%s: the attacker's form did not post to %s: %v (at %s)", c.name, c.to, err, tb.location())
		}
		var status int64
		for _, d := range tb.documents() {
			if d.URL == a.URL+c.to {
				status = d.Status
			}
		}
		if status != http.StatusForbidden {
			t.Fatalf("%s POST to %s: status %d, want 403", c.name, c.to, status)
		}
		if !strings.Contains(tb.body(), "Requête refusée") {
			t.Fatalf("%s: the refusal page:\n%s", c.name, tb.body())
		}
		// Still signed in, and nothing prescribed.
		tb.open(rx)
		if p := tb.path(); p != rx {
			t.Fatalf("%s: after the refused POST, %s shows %s", c.name, rx, p)
		}
		if got := tb.text("header .who"); got != m.Username {
			t.Fatalf("%s: signed in as %q", c.name, got)
		}
		if strings.Contains(tb.body(), forged) {
			t.Fatalf("%s: the forged prescription was written", c.name)
		}
	}
}

func TestBrowserLanguageSwitch(t *testing.T) {
	a := newApp(t)
	m := a.member(t, policy.Physician, e2eStaff+5)
	tb := a.newTab(t, acceptFR)
	tb.login(m)
	tb.load(chromedp.Click(chromedp.CSS(`header nav a[href="/app/patients"]`)))
	if b := tb.text("form.search button"); b != "Rechercher" {
		t.Fatalf("French search button %q", b)
	}
	if l := evalIn[string](tb, "document.documentElement.lang"); l != "fr" {
		t.Fatalf("lang %q", l)
	}
	tb.load(chromedp.Click(chromedp.CSS(`header .tools a[hreflang="en"]`)))
	if p := tb.path(); p != "/app/patients" {
		t.Fatalf("the switch led to %s", p)
	}
	if b := tb.text("form.search button"); b != "Search" {
		t.Fatalf("English search button %q", b)
	}
	if l := evalIn[string](tb, "document.documentElement.lang"); l != "en" {
		t.Fatalf("lang %q", l)
	}
	// The choice sticks (a cookie), over the browser's French.
	tb.open("/app/")
	if h := tb.text("main h1"); !strings.HasPrefix(h, "Hello") {
		t.Fatalf("home after the switch: %q", h)
	}
	tb.load(chromedp.Click(chromedp.CSS(`header .tools a[hreflang="fr"]`)))
	if h := tb.text("main h1"); !strings.HasPrefix(h, "Bonjour") {
		t.Fatalf("home after switching back: %q", h)
	}

	// First visit: the browser's Accept-Language decides; French otherwise.
	for _, c := range []struct{ accept, want string }{
		{acceptEN, "Sign in"},
		{"en-US,en;q=0.9", "Sign in"},
		{acceptFR, "Connexion"},
		{"de-DE,de;q=0.9", "Connexion"},
	} {
		other := a.newTab(t, c.accept)
		other.open("/app/login")
		if h := other.text("main h1"); h != c.want {
			t.Errorf("Accept-Language %s: login page heading %q, want %q", c.accept, h, c.want)
		}
	}
}

// scrollTo scrolls the element with that id to the top of the window.
func (tb *tab) scrollTo(id string) {
	tb.t.Helper()
	tb.do(chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`window.scrollTo(0, document.getElementById(%q).getBoundingClientRect().top + window.scrollY - 16)`, id)))
}

// setSelect chooses an option of a <select> as a person would, firing
// its change event.
func (tb *tab) setSelect(id, value string) {
	tb.t.Helper()
	ok := evalIn[bool](tb, fmt.Sprintf(`(function(){var s=document.getElementById(%q);
		if(!s||!Array.from(s.options).some(function(o){return o.value===%q})){return false}
		s.value=%q; s.dispatchEvent(new Event("change",{bubbles:true})); return true})()`, id, value, value))
	if !ok {
		tb.t.Fatalf("no option %q in #%s on %s", value, id, tb.location())
	}
}

// activeDoses are the dose texts of the active prescriptions listed.
func (tb *tab) activeDoses() []string {
	tb.t.Helper()
	return evalIn[[]string](tb, `Array.from(document.querySelectorAll("tr.active-rx td:nth-child(2)")).map(function(td){return td.textContent.trim()})`)
}

func TestBrowserChartAndPrescribing(t *testing.T) {
	a := newApp(t)
	m := a.member(t, policy.Physician, e2eStaff+7)
	pat := a.W.Patients[a.W.GPOf[m.Index][0]]
	tb := a.newTab(t, acceptFR)
	tb.login(m)
	tb.search(pat.Family)
	tb.load(chromedp.Click(chromedp.CSS(fmt.Sprintf(`table.list a[href="/app/patients/%s"]`, pat.ID))))

	// The chart: the banner names the patient, and every section is there.
	if h := tb.text("main .banner h1.pname"); !strings.Contains(strings.ToUpper(h), strings.ToUpper(pat.Family)) {
		t.Fatalf("banner %q", h)
	}
	for _, id := range []string{"h-encounters", "h-conditions", "h-observations", "h-prescriptions", "h-billing", "h-death"} {
		if tb.count("#"+id) != 1 {
			t.Fatalf("the chart has no section #%s:\n%s", id, tb.body())
		}
	}
	if n := tb.count(".chart .error"); n != 0 {
		t.Fatalf("%d sections in error:\n%s", n, tb.body())
	}

	// Prescribe from the list: the chart's navigation leads to the form.
	tb.load(chromedp.Click(chromedp.CSS(fmt.Sprintf(`nav.chartnav a[href="/app/patients/%s/prescriptions"]`, pat.ID))))
	dose := "1 comprimé matin et soir pendant 5 jours (" + uniqueName() + ")"
	tb.setSelect("med", "C08CA01")
	tb.do(chromedp.SendKeys(chromedp.ID("dose"), dose))
	tb.setSelect("route", evalIn[string](tb, `document.getElementById("route").options[0].value`))
	tb.load(chromedp.Click(chromedp.CSS(`form[action$="/prescriptions"] button[type=submit]`)))
	if p := tb.path(); p != "/app/patients/"+pat.ID+"/prescriptions?done=prescribed" {
		t.Fatalf("after prescribing: %s\n%s", p, tb.body())
	}
	if n := tb.text("main .notice"); !strings.Contains(n, "Prescription enregistrée") {
		t.Fatalf("notice %q", n)
	}
	row := -1
	for i, d := range tb.activeDoses() {
		if d == dose {
			row = i
		}
	}
	if row < 0 {
		t.Fatalf("the new prescription is not among the active ones %q", tb.activeDoses())
	}
	if med := tb.text(fmt.Sprintf("tr.active-rx:nth-child(%d) td:first-child", row+1)); !strings.Contains(med, "Amlodipine") {
		t.Fatalf("medication shown %q", med)
	}
	// It is on the chart's summary too.
	tb.open("/app/patients/" + pat.ID)
	if !strings.Contains(tb.text("#prescriptions"), dose) {
		t.Fatal("the new prescription is not on the chart")
	}

	// Stop it: the button asks for confirmation first.
	tb.open("/app/patients/" + pat.ID + "/prescriptions")
	before := len(tb.dialogList())
	tb.load(chromedp.Click(chromedp.CSS(fmt.Sprintf("tr.active-rx:nth-child(%d) form button", row+1))))
	if d := tb.dialogList(); len(d) != before+1 || !strings.HasPrefix(d[len(d)-1], "confirm:") {
		t.Fatalf("no confirmation before stopping: %q", d)
	}
	if n := tb.text("main .notice"); !strings.Contains(n, "Prescription arrêtée") {
		t.Fatalf("notice %q", n)
	}
	for _, d := range tb.activeDoses() {
		if d == dose {
			t.Fatal("the stopped prescription is still active")
		}
	}
	if !strings.Contains(tb.text("table.list tbody"), dose) {
		t.Fatal("the stopped prescription is no longer listed")
	}
}

// admissionPair is an admission clerk and a physician sharing a facility
// (the clerk's index from e2eStaff+k, physicians from e2eStaff+20).
func admissionPair(t *testing.T, a *app, k int) (clerk, ph *sim.Member, fac string) {
	t.Helper()
	for c := e2eStaff + k; c < e2eStaff+k+10; c++ {
		clerk := a.member(t, policy.AdmissionClerk, c)
		for p := e2eStaff + 20; p < e2eStaff+40; p++ {
			ph := a.member(t, policy.Physician, p)
			for _, f := range ph.Facilities {
				if slices.Contains(clerk.Facilities, f) {
					return clerk, ph, f
				}
			}
		}
	}
	t.Fatal("no admission clerk and physician sharing a facility")
	return nil, nil, ""
}

// fillAdmission types a new patient into the admission form.
func (tb *tab) fillAdmission(family, given, birth, fac string, ph *sim.Member) {
	tb.t.Helper()
	tb.do(
		chromedp.SendKeys(chromedp.ID("family"), family),
		chromedp.SendKeys(chromedp.ID("given"), given),
		chromedp.SendKeys(chromedp.ID("birthdate"), birth),
		chromedp.SendKeys(chromedp.ID("line"), "3 rue des Lilas"),
		chromedp.SendKeys(chromedp.ID("postalcode"), "75014"),
		chromedp.SendKeys(chromedp.ID("city"), "Paris"),
	)
	tb.setSelect("sex", "female")
	tb.setSelect("facility", fac)
	tb.setSelect("physician", fac+"/"+ph.PractitionerID)
}

func TestBrowserAdmissionDuplicateWarning(t *testing.T) {
	a := newApp(t)
	clerk, ph, fac := admissionPair(t, a, 0)
	family := "Essai-" + strings.ToUpper(uniqueName()[:1]) + uniqueName()
	tb := a.newTab(t, acceptFR)
	tb.login(clerk)
	tb.load(chromedp.Click(chromedp.CSS(`header nav a[href="/app/admission"]`)))
	tb.fillAdmission(family, "Éloïse", "17/01/1985", fac, ph)
	tb.load(chromedp.Click(chromedp.CSS(`form.admission button[type=submit]`)))
	first := strings.TrimSuffix(strings.TrimPrefix(tb.path(), "/app/patients/"), "?done=admitted")
	if !fhir.ValidID(first) {
		t.Fatalf("after the admission: %s\n%s", tb.path(), tb.body())
	}
	if n := tb.text("main .notice"); !strings.Contains(n, "séjour ouvert") {
		t.Fatalf("notice %q", n)
	}
	if h := tb.text("main .banner h1.pname"); !strings.Contains(strings.ToUpper(h), strings.ToUpper(family)) {
		t.Fatalf("banner %q", h)
	}

	// The same person again (the given name without accents): a warning
	// that links to the first record, and nothing created.
	tb.open("/app/admission")
	tb.fillAdmission(family, "eloise", "17/01/1985", fac, ph)
	if st := tb.load(chromedp.Click(chromedp.CSS(`form.admission button[type=submit]`))); st != http.StatusConflict {
		t.Fatalf("a likely duplicate: status %d\n%s", st, tb.body())
	}
	if p := tb.path(); p != "/app/admission" {
		t.Fatalf("a likely duplicate led to %s", p)
	}
	if n := tb.count(fmt.Sprintf(`section.duplicates a[href="/app/patients/%s"]`, first)); n != 1 {
		t.Fatalf("the warning does not link to the first record:\n%s", tb.body())
	}
	if v := evalIn[string](tb, `document.getElementById("family").value`); v != family {
		t.Fatalf("the form lost what was typed: family %q", v)
	}
	// Not the same person after all: confirm and create.
	tb.do(chromedp.Click(chromedp.ID("anyway")))
	tb.load(chromedp.Click(chromedp.CSS(`form.admission button[type=submit]`)))
	second := strings.TrimSuffix(strings.TrimPrefix(tb.path(), "/app/patients/"), "?done=admitted")
	if !fhir.ValidID(second) || second == first {
		t.Fatalf("after confirming: %s (first %s)\n%s", tb.path(), first, tb.body())
	}
}

// notMine is a living patient of m's facility that m has no care
// relationship with.
func notMine(t *testing.T, a *app, m *sim.Member) sim.Patient {
	t.Helper()
	own := map[int]bool{}
	for _, i := range a.W.GPOf[m.Index] {
		own[i] = true
	}
	for _, i := range a.W.TeamOf[m.Index] {
		own[i] = true
	}
	for _, i := range a.W.ByFacility[m.Fac[0]] {
		if p := a.W.Patients[i]; !own[i] && !p.Deceased {
			return p
		}
	}
	t.Fatal("no patient of the physician's facility outside their care")
	return sim.Patient{}
}

func TestBrowserBreakTheGlass(t *testing.T) {
	a := newApp(t)
	m := a.member(t, policy.Physician, e2eStaff+8)
	pat := notMine(t, a, m)
	tb := a.newTab(t, acceptFR)
	tb.login(m)

	// Not one of theirs: no data, an offer of emergency access.
	if st := tb.open("/app/patients/" + pat.ID); st != http.StatusForbidden && st != http.StatusNotFound {
		t.Fatalf("someone else's patient: status %d", st)
	}
	if strings.Contains(strings.ToUpper(tb.body()), strings.ToUpper(pat.Family)) {
		t.Fatal("the refusal names the patient")
	}
	tb.load(chromedp.Click(chromedp.CSS(`main a.button.danger`)))
	if p := tb.path(); p != "/app/patients/"+pat.ID+"/break-the-glass" {
		t.Fatalf("the emergency access button led to %s", p)
	}
	tb.do(
		chromedp.Click(chromedp.ID("reason-emergency")),
		chromedp.SendKeys(chromedp.ID("detail"), "Patient inconscient aux urgences, traitement en cours inconnu."),
	)
	tb.setSelect("minutes", "30")
	// Cancelling the confirmation sends nothing.
	tb.mu.Lock()
	tb.confirms = false
	tb.mu.Unlock()
	tb.do(chromedp.Click(chromedp.CSS(`form[data-confirm] button[type=submit]`)), chromedp.Sleep(300*time.Millisecond))
	if d := tb.dialogList(); len(d) != 1 || !strings.Contains(d[0], "revu par le responsable sécurité") {
		t.Fatalf("dialogs: %q", d)
	}
	if p := tb.path(); p != "/app/patients/"+pat.ID+"/break-the-glass" {
		t.Fatalf("after cancelling: %s", p)
	}
	tb.open("/app/patients/" + pat.ID)
	if tb.count(".banner") != 0 {
		t.Fatal("cancelled, yet the chart opens")
	}
	tb.open("/app/patients/" + pat.ID + "/break-the-glass")
	tb.do(
		chromedp.Click(chromedp.ID("reason-emergency")),
		chromedp.SendKeys(chromedp.ID("detail"), "Patient inconscient aux urgences, traitement en cours inconnu."),
	)
	// Confirmed: the chart, under a red banner saying until when.
	tb.mu.Lock()
	tb.confirms = true
	tb.mu.Unlock()
	tb.load(chromedp.Click(chromedp.CSS(`form[data-confirm] button[type=submit]`)))
	if p := tb.path(); p != "/app/patients/"+pat.ID+"?done=btg" {
		t.Fatalf("after breaking the glass: %s\n%s", p, tb.body())
	}
	if h := tb.text("main .banner h1.pname"); !strings.Contains(strings.ToUpper(h), strings.ToUpper(pat.Family)) {
		t.Fatalf("banner %q", h)
	}
	banner := tb.text(".btg-active")
	if !regexp.MustCompile(`Accès exceptionnel jusqu'à \d\d:\d\d`).MatchString(banner) {
		t.Fatalf("break-the-glass banner %q", banner)
	}
	if bg := evalIn[string](tb, `getComputedStyle(document.querySelector(".btg-active")).backgroundColor`); bg != "rgb(164, 22, 26)" {
		t.Fatalf("the banner is not red: %s", bg)
	}
	// It stays on every page of the chart while the access lasts.
	tb.load(chromedp.Click(chromedp.CSS(fmt.Sprintf(`nav.chartnav a[href="/app/patients/%s/access"]`, pat.ID))))
	if tb.count(".btg-active") != 1 {
		t.Fatal("no break-the-glass banner on the access history")
	}
}

func TestBrowserStepUp(t *testing.T) {
	a := newApp(t)
	// An admission clerk reaches every patient of the facility; opening
	// one new chart after another is what a stolen session does.
	var clerk *sim.Member
	var pats []sim.Patient
	for k := e2eStaff - 10; len(pats) < 30; k++ { // clerks 190 up: no other test signs them in
		clerk, pats = a.member(t, policy.AdmissionClerk, k), nil
		for _, i := range a.W.ByFacility[clerk.Fac[0]] {
			if p := a.W.Patients[i]; !p.Deceased {
				pats = append(pats, p)
			}
		}
	}
	tb := a.newTab(t, acceptFR)
	acc := a.staff(t, clerk)
	tb.signIn(acc)
	asked := -1
	for i, p := range pats[:30] {
		if i > 0 && i%15 == 0 {
			a.Clock.Advance(61 * time.Second) // under the one-minute throttle
		}
		tb.open("/app/patients/" + p.ID)
		if strings.HasPrefix(tb.path(), "/app/step-up") {
			asked = i
			break
		}
		if h := tb.text("main .banner h1.pname"); !strings.Contains(strings.ToUpper(h), strings.ToUpper(p.Family)) {
			t.Fatalf("chart %d: banner %q", i, h)
		}
	}
	// The clerk's ten-minute limit is 20 new patients: the 21st asks.
	if asked != 20 {
		t.Fatalf("step-up asked at chart %d, want 20 (the 21st)", asked)
	}
	next := pats[asked]
	if strings.Contains(strings.ToUpper(tb.body()), strings.ToUpper(next.Family)) || tb.count(".banner") != 0 {
		t.Fatal("the step-up page shows the patient")
	}
	tb.shotBoth("step-up")
	// A wrong code is refused; the right one leads back to the chart asked for.
	tb.load(chromedp.SendKeys(chromedp.ID("otp"), "000000\n"))
	if !strings.HasPrefix(tb.path(), "/app/step-up") || tb.count("main .error") != 1 {
		t.Fatalf("a wrong step-up code: %s\n%s", tb.path(), tb.body())
	}
	a.Clock.Advance(31 * time.Second)
	code, err := auth.TOTPCode(acc.Secret, a.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	tb.load(chromedp.SendKeys(chromedp.ID("otp"), code+"\n"))
	if p := tb.path(); p != "/app/patients/"+next.ID {
		t.Fatalf("after the step-up: %s\n%s", p, tb.body())
	}
	if h := tb.text("main .banner h1.pname"); !strings.Contains(strings.ToUpper(h), strings.ToUpper(next.Family)) {
		t.Fatalf("after the step-up: banner %q", h)
	}
}

// physicians is how many members a.member(t, policy.Physician, n) can give.
func physicians(a *app) int {
	n := 0
	for _, m := range a.W.Staff {
		if m.Role() == policy.Physician && len(a.W.GPOf[m.Index]) >= 3 {
			n++
		}
	}
	return n
}

// screenshotPhysician is a physician (a member from 170 up, of parity
// odd, outside the other browser tests' range) with an inpatient stay in
// progress, and that patient: a full chart, vitals with trends.
func screenshotPhysician(t *testing.T, a *app, odd int) (*sim.Member, sim.Patient) {
	t.Helper()
	for k := 170 + odd; k < physicians(a); k += 2 {
		if k >= e2eStaff && k < e2eStaff+40 {
			continue
		}
		m := a.member(t, policy.Physician, k)
		for _, st := range a.W.Open {
			if st.Phys == m.Index && st.Class == "IMP" && !a.W.Patients[st.Patient].Deceased {
				return m, a.W.Patients[st.Patient]
			}
		}
	}
	m := a.member(t, policy.Physician, e2eStaff+40+odd)
	return m, a.W.Patients[a.W.GPOf[m.Index][0]]
}

// addVitals records a stay's rounds for the screenshots' chart: heart
// rate, blood pressure and temperature every 6 hours over the last day
// and a half (the world's stays in progress have few).
func addVitals(t testing.TB, a *app, pat sim.Patient) {
	t.Helper()
	svc := record.New(a.W.Store)
	hr := []float64{96, 92, 88, 84, 80, 78, 76}
	sys := []float64{142, 138, 135, 130, 128, 126, 124}
	dia := []float64{88, 86, 84, 82, 80, 79, 78}
	temp := []float64{38.6, 38.4, 38.1, 37.8, 37.4, 37.1, 36.9}
	start := a.Clock.Now().Add(-36 * time.Hour)
	for i := range hr {
		when := start.Add(time.Duration(i) * 6 * time.Hour).Format(time.RFC3339)
		for _, o := range []struct {
			code, display, text, unit, ucum string
			v                               float64
		}{
			// As the synthetic group codes them (internal/synth).
			{"8867-4", "Heart rate", "Fréquence cardiaque", "/min", "/min", hr[i]},
			{"8480-6", "Systolic blood pressure", "Pression artérielle systolique", "mm[Hg]", "mm[Hg]", sys[i]},
			{"8462-4", "Diastolic blood pressure", "Pression artérielle diastolique", "mm[Hg]", "mm[Hg]", dia[i]},
			{"8310-5", "Body temperature", "Température corporelle", "°C", "Cel", temp[i]},
		} {
			res, err := fhir.Parse(fmt.Appendf(nil, `{"resourceType":"Observation","status":"final",
				"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
				"code":{"coding":[{"system":"http://loinc.org","code":%q,"display":%q}],"text":%q},
				"subject":{"reference":"Patient/%s"},"effectiveDateTime":%q,
				"valueQuantity":{"value":%v,"unit":%q,"system":"http://unitsofmeasure.org","code":%q}}`,
				o.code, o.display, o.text, pat.ID, when, o.v, o.unit, o.ucum))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Create(context.Background(), "Observation", res); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestBrowserScreenshots walks the main pages in each language and takes
// their pictures (docs/screenshots with CARNET_SCREENSHOTS=1).
func TestBrowserScreenshots(t *testing.T) {
	a := newApp(t)
	for i, lang := range []struct{ code, accept string }{{"fr", acceptFR}, {"en", acceptEN}} {
		t.Run(lang.code, func(t *testing.T) {
			m, pat := screenshotPhysician(t, a, i)
			addVitals(t, a, pat)
			tb := a.newTab(t, lang.accept)
			tb.open("/app/login")
			tb.shot("login")
			acc := a.staff(t, m)
			tb.do(chromedp.SendKeys(chromedp.ID("username"), acc.Username))
			tb.load(chromedp.SendKeys(chromedp.ID("password"), acc.Password+"\n"))
			tb.shot("login-code")
			tb.load(chromedp.SendKeys(chromedp.ID("otp"), a.code(t, m)+"\n"))
			tb.shot("home")
			tb.search(pat.Family)
			tb.shot("search")
			tb.load(chromedp.Click(chromedp.CSS(fmt.Sprintf(`table.list a[href="/app/patients/%s"]`, pat.ID))))
			tb.shot("chart")
			tb.scrollTo("h-observations")
			tb.shot("chart-observations")
			tb.open("/app/patients/" + pat.ID + "/prescriptions")
			tb.scrollTo("h-new-rx")
			tb.shot("prescribe")
			tb.open("/app/patients/" + pat.ID + "/access")
			tb.shot("access")

			other := notMine(t, a, m)
			tb.open("/app/patients/" + other.ID)
			tb.shot("no-access")
			tb.load(chromedp.Click(chromedp.CSS(`main a.button.danger`)))
			tb.shot("break-the-glass")
			tb.do(
				chromedp.Click(chromedp.ID("reason-on-call")),
				chromedp.SendKeys(chromedp.ID("detail"), "Garde de nuit : patient hospitalisé, appel de l'infirmière."),
			)
			tb.load(chromedp.Click(chromedp.CSS(`form[data-confirm] button[type=submit]`)))
			tb.shot("chart-break-the-glass")

			clerk, ph, fac := admissionPair(t, a, 10+10*i)
			ct := a.newTab(t, lang.accept)
			ct.login(clerk)
			ct.open("/app/admission")
			ct.shot("admission")
			family := "Martin-" + strings.ToUpper(uniqueName()[:1]) + uniqueName()
			ct.fillAdmission(family, "Claire", "03/05/1972", fac, ph)
			ct.load(chromedp.Click(chromedp.CSS(`form.admission button[type=submit]`)))
			ct.open("/app/admission")
			ct.fillAdmission(family, "Claire", "03/05/1972", fac, ph)
			ct.load(chromedp.Click(chromedp.CSS(`form.admission button[type=submit]`)))
			ct.shot("admission-duplicate")

			en := a.newTab(t, lang.accept)
			user, pw := newEnrolAccount(t, a, policy.Nurse, m.Facilities)
			en.enrol(user, pw, true)
		})
	}
}

// TestOriginNullPost: under Referrer-Policy: no-referrer, browsers send
// "Origin: null" with every form POST (TestBrowserLoginPasswordThenCode
// signs in that way); such a POST passes only when Sec-Fetch-Site says it
// came from the application itself.
func TestOriginNullPost(t *testing.T) {
	a := newApp(t)
	m := a.member(t, policy.Physician, e2eStaff+6)
	b := a.browser(t)
	b.login(m)
	post := func(fetchSite string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, a.URL+"/app/step-up", strings.NewReader("otp=000000&next=%2Fapp%2F&csrf="+b.csrf))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "null")
		if fetchSite != "" {
			req.Header.Set("Sec-Fetch-Site", fetchSite)
		}
		resp, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, site := range []string{"", "cross-site", "same-site"} {
		if got := post(site); got != http.StatusForbidden {
			t.Errorf("Origin: null, Sec-Fetch-Site %q: %d, want 403", site, got)
		}
	}
	// From the application's own page: past the CSRF check (the wrong code
	// is then refused by the step-up itself).
	if got := post("same-origin"); got == http.StatusForbidden {
		t.Errorf("Origin: null from the application's own page: %d", got)
	}
}
