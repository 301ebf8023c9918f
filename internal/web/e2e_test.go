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

// e2eStaff is the first index of the physicians (and other roles) the
// browser tests sign in with: far from the HTTP tests' first few, so that
// no two tests use one account's one-time codes.
const e2eStaff = 40

// Accept-Language headers of a French and an English browser.
const (
	acceptFR = "fr-FR,fr;q=0.9"
	acceptEN = "en-GB,en;q=0.9"
)

// login signs m in by typing the password (Enter submits) and then the
// code (clicking the button); it fails the test unless the home page
// answers.
func (tb *tab) login(m *sim.Member) {
	tb.t.Helper()
	pw, err := tb.a.W.Password(context.Background(), m)
	if err != nil {
		tb.t.Fatal(err)
	}
	tb.open("/app/login")
	tb.do(chromedp.SendKeys(chromedp.ID("username"), m.Username))
	tb.load(chromedp.SendKeys(chromedp.ID("password"), pw+"\n"))
	if p := tb.path(); !strings.HasPrefix(p, "/app/login?") || !strings.Contains(p, "step=code") {
		tb.t.Fatalf("after the password: %s\n%s", p, tb.body())
	}
	tb.do(chromedp.SendKeys(chromedp.ID("otp"), tb.a.code(tb.t, m)))
	tb.load(chromedp.Click(chromedp.CSS(`main button[type=submit]`)))
	if p := tb.path(); p != "/app/" {
		tb.t.Fatalf("after the code: %s\n%s", p, tb.body())
	}
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

var accountSeq atomic.Int64

// newEnrolAccount creates an account that enrols its authenticator at
// first login.
func newEnrolAccount(t testing.TB, a *app, role string, facilities []string) (username, password string) {
	t.Helper()
	username = fmt.Sprintf("e2e.%s%d.%d", strings.ReplaceAll(role, "-", ""), accountSeq.Add(1), time.Now().UnixNano()%1_000_000)
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
}

func TestBrowserContentSecurityPolicy(t *testing.T) {
	a := newApp(t)
	m := a.member(t, policy.Physician, e2eStaff+3)
	tb := a.newTab(t, acceptFR)
	tb.login(m)
	mine := a.W.Patients[a.W.GPOf[m.Index][0]]
	tb.search(mine.Family)
	tb.open("/app/no-such-page")
	tb.open("/app/lang?to=en&next=/app/")
	// Every page loaded its script and style sheet (no CSP refusal): the
	// style sheet colours the header, and the script runs.
	bg := evalIn[string](tb, `getComputedStyle(document.querySelector("header.top")).backgroundColor`)
	if bg != "rgb(13, 42, 74)" {
		t.Fatalf("the style sheet did not apply: header background %s", bg)
	}
	docs := tb.documents()
	if len(docs) < 6 {
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
	tb := a.newTab(t, acceptFR)
	tb.login(m)

	// An attacker's page: a form that posts itself to the logout, which
	// needs no other field than the CSRF token it cannot know.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>Offre</title>
<form id="f" method="post" action="%s/app/logout"><input type="hidden" name="csrf" value="guess"></form>
<script>document.getElementById("f").submit()</script>`, a.URL)
	}))
	defer evil.Close()
	_, port, _ := strings.Cut(strings.TrimPrefix(evil.URL, "http://"), ":")
	for _, origin := range []struct{ name, url string }{
		// Another site: the browser sends no session cookie (SameSite=Lax)
		// and Sec-Fetch-Site: cross-site.
		{"cross-site", "http://localhost:" + port},
		// The same site on another port: the cookies go along, so only the
		// origin check and the token stand in the way.
		{"same-site", evil.URL},
	} {
		tb.load(chromedp.Navigate(origin.url))
		ctx, cancel := context.WithTimeout(tb.ctx, actionTimeout)
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(`location.href === %q && document.readyState === "complete"`, a.URL+"/app/logout")))
		cancel()
		if err != nil {
			t.Fatalf("%s: the attacker's form did not post: %v (at %s)", origin.name, err, tb.location())
		}
		var status int64
		for _, d := range tb.documents() {
			if d.URL == a.URL+"/app/logout" {
				status = d.Status
			}
		}
		if status != http.StatusForbidden {
			t.Fatalf("%s POST to /app/logout: status %d, want 403", origin.name, status)
		}
		if !strings.Contains(tb.body(), "Requête refusée") {
			t.Fatalf("%s: the refusal page:\n%s", origin.name, tb.body())
		}
		// Still signed in.
		tb.open("/app/patients")
		if p := tb.path(); p != "/app/patients" {
			t.Fatalf("%s: after the refused POST, /app/patients shows %s", origin.name, p)
		}
		if got := tb.text("header .who"); got != m.Username {
			t.Fatalf("%s: signed in as %q", origin.name, got)
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

// TestBrowserScreenshots walks the main pages in each language and takes
// their pictures (docs/screenshots with CARNET_SCREENSHOTS=1).
func TestBrowserScreenshots(t *testing.T) {
	a := newApp(t)
	for i, lang := range []struct{ code, accept string }{{"fr", acceptFR}, {"en", acceptEN}} {
		t.Run(lang.code, func(t *testing.T) {
			m := a.member(t, policy.Physician, e2eStaff+10+i)
			tb := a.newTab(t, lang.accept)
			tb.open("/app/login")
			tb.shot("login")
			pw, _ := a.W.Password(context.Background(), m)
			tb.do(chromedp.SendKeys(chromedp.ID("username"), m.Username))
			tb.load(chromedp.SendKeys(chromedp.ID("password"), pw+"\n"))
			tb.shot("login-code")
			tb.load(chromedp.SendKeys(chromedp.ID("otp"), a.code(t, m)+"\n"))
			tb.shot("home")
			mine := a.W.Patients[a.W.GPOf[m.Index][0]]
			tb.search(mine.Family)
			tb.shot("search")

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
