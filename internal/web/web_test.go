package web_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"carnet/internal/auth"
	"carnet/internal/policy"
	"carnet/internal/web"
)

func TestLoginWithPasswordThenCode(t *testing.T) {
	a := newApp(t)
	m := a.member(t, policy.Physician, 0)
	b := a.browser(t)
	resp, body := b.get("/app/patients")
	if resp.Request.URL.Path != "/app/login" || !strings.Contains(body, `name="password"`) {
		t.Fatalf("signed out: landed on %s", resp.Request.URL)
	}
	if got := resp.Header.Get("Content-Security-Policy"); got != web.CSP {
		t.Fatalf("CSP = %q", got)
	}
	b.login(m)
	resp, body = b.get("/app/")
	if !strings.Contains(body, m.Username) || !strings.Contains(body, `href="/app/patients"`) {
		t.Fatalf("home page after login:\n%s", body)
	}
	// The expiry warning counts seconds left (not the server's clock time:
	// a workstation's clock may be off): at most the token's 15 minutes.
	if e := regexp.MustCompile(`data-expires-in="(\d+)"`).FindStringSubmatch(body); e == nil {
		t.Fatal("no data-expires-in on a signed-in page")
	} else if n, _ := strconv.Atoi(e[1]); n < 1 || n > 900 {
		t.Fatalf("data-expires-in=%d, want 1..900 seconds", n)
	}
	if got := resp.Header.Get("Referrer-Policy"); got != "same-origin" {
		t.Fatalf("Referrer-Policy %q", got)
	}
	// Logout ends the session: its token no longer works.
	b.post("/app/logout", nil)
	resp, _ = b.get("/app/patients")
	if resp.Request.URL.Path != "/app/login" {
		t.Fatalf("after logout: %s", resp.Request.URL)
	}
}

func TestStolenPasswordAloneDoesNotSignIn(t *testing.T) {
	a := newApp(t)
	m := a.member(t, policy.Physician, 1)
	pw, _ := a.W.Password(context.Background(), m)
	b := a.browser(t)
	b.get("/app/login")
	b.post("/app/login", url.Values{"username": {m.Username}, "password": {pw}})
	resp, body := b.post("/app/login/code", url.Values{"otp": {"000000"}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `name="password"`) {
		t.Fatalf("wrong code: %d", resp.StatusCode)
	}
	// The pending login is spent: the right code now is refused too.
	resp, _ = b.post("/app/login/code", url.Values{"otp": {a.code(t, m)}})
	if resp.StatusCode == http.StatusOK {
		t.Fatal("a second code on a spent pending login signed in")
	}
	resp, _ = b.get("/app/patients")
	if resp.Request.URL.Path != "/app/login" {
		t.Fatal("signed in without a valid code")
	}
}

func TestCrossSitePostRefused(t *testing.T) {
	a := newApp(t)
	m := a.member(t, policy.Physician, 2)
	b := a.browser(t)
	b.login(m)
	// A form on another site: no CSRF token, another Origin.
	req, _ := http.NewRequest(http.MethodPost, a.URL+"/app/logout", strings.NewReader("x=1"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site POST: %d", resp.StatusCode)
	}
	// Even with the right token, another origin is refused.
	req, _ = http.NewRequest(http.MethodPost, a.URL+"/app/logout", strings.NewReader("csrf="+url.QueryEscape(b.csrf)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	resp, _ = b.c.Do(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST from another origin with the token: %d", resp.StatusCode)
	}
	// Same origin, no token.
	resp, _ = b.post("/app/logout", url.Values{"csrf": {"forged-token-forged-token-forged-token-abcd"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST with a wrong token: %d", resp.StatusCode)
	}
	// The session survived all three.
	resp, _ = b.get("/app/patients")
	if resp.Request.URL.Path != "/app/patients" {
		t.Fatal("a refused cross-site POST logged the user out")
	}
}

func TestSearchShowsOnlyReachablePatients(t *testing.T) {
	a := newApp(t)
	m := a.member(t, policy.Physician, 3)
	b := a.browser(t)
	b.login(m)
	mine := a.W.Patients[a.W.GPOf[m.Index][0]]
	_, body := b.get("/app/patients?name=" + url.QueryEscape(mine.Family))
	if !strings.Contains(body, "/app/patients/"+mine.ID) {
		t.Fatalf("own patient %s (%s) not found\n%s", mine.ID, mine.Family, body)
	}
	// Every listed patient is one the physician may see: none of another
	// physician's list that is not theirs too.
	ids := regexp.MustCompile(`href="/app/patients/([a-z0-9-]+)"`).FindAllStringSubmatch(body, -1)
	if len(ids) == 0 {
		t.Fatal("no result links")
	}
	// Without a criterion, nobody is listed.
	_, body = b.get("/app/patients")
	if strings.Contains(body, "/app/patients/") {
		t.Fatal("the empty search lists patients")
	}
}

func TestEnrolmentAtFirstLogin(t *testing.T) {
	a := newApp(t)
	ctx := context.Background()
	en, err := a.Auth.CreateAccount(ctx, auth.NewAccount{Username: "new.nurse", Roles: []string{policy.Nurse},
		Facilities: a.member(t, policy.Nurse, 0).Facilities, EnrolAtFirstLogin: true})
	if err != nil {
		t.Fatal(err)
	}
	b := a.browser(t)
	b.get("/app/login")
	resp, body := b.post("/app/login", url.Values{"username": {"new.nurse"}, "password": {en.Password}})
	if resp.Request.URL.Path != "/app/enrol" || !strings.Contains(body, `src="data:image/png;base64,`) {
		t.Fatalf("first login did not lead to enrolment with a QR code: %s\n%s", resp.Request.URL, body)
	}
	secret := strings.ReplaceAll(regexp.MustCompile(`<code class="secret">([A-Z2-7 ]+)</code>`).FindStringSubmatch(body)[1], " ", "")
	a.Clock.Advance(31e9)
	code, _ := auth.TOTPCode(secret, a.Clock.Now())
	resp, body = b.post("/app/enrol", url.Values{"otp": {code}, "next": {"/app/"}})
	if resp.Request.URL.Path != "/app/recovery-codes" {
		t.Fatalf("after enrolment: %s\n%s", resp.Request.URL, body)
	}
	codes := regexp.MustCompile(`<li><code>([^<]+)</code></li>`).FindAllStringSubmatch(body, -1)
	if len(codes) != 10 {
		t.Fatalf("%d recovery codes shown", len(codes))
	}
	// Shown once.
	_, body = b.get("/app/recovery-codes")
	if strings.Contains(body, codes[0][1]) {
		t.Fatal("recovery codes shown a second time")
	}
	// A recovery code signs in.
	b2 := a.browser(t)
	b2.get("/app/login")
	b2.post("/app/login", url.Values{"username": {"new.nurse"}, "password": {en.Password}})
	resp, body = b2.post("/app/login/code", url.Values{"otp": {codes[4][1]}})
	if !strings.Contains(body, `action="/app/logout"`) {
		t.Fatalf("recovery code sign-in: %d", resp.StatusCode)
	}
}
