package web_test

// The test world: a small synthetic group (internal/sim builds it as the
// attack replay does: sealed store, canaries, an account with a TOTP
// authenticator for every staff member), served as carnet serve serves it
// (API with auth, policy, durable audit and guard; the web application
// mounted beside it), with every clock on one simulated clock.

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"carnet/internal/api"
	"carnet/internal/auth"
	"carnet/internal/guard"
	"carnet/internal/policy"
	"carnet/internal/sim"
	"carnet/internal/web"
)

type app struct {
	W     *sim.World
	Clock *sim.Clock
	Auth  *auth.Service
	URL   string
	srv   *httptest.Server
}

var (
	worldOnce sync.Once
	world     *sim.World
	worldErr  error
)

// sharedWorld builds the group once per test binary (a few seconds); each
// test gets its own server and clock over it. Tests must use accounts no
// other test logs in with, or tolerate their state.
func sharedWorld(t testing.TB) *sim.World {
	t.Helper()
	worldOnce.Do(func() {
		world, worldErr = sim.Build(context.Background(), sim.WorldConfig{Patients: 1500, Seed: 7, Staff: 200})
	})
	if worldErr != nil {
		t.Fatalf("building the test world: %v", worldErr)
	}
	return world
}

// newApp serves the shared world with a fresh guard, at the world's epoch
// plus a working morning.
func newApp(t testing.TB) *app {
	t.Helper()
	w := sharedWorld(t)
	clock := sim.NewClock(w.Epoch.Add(9 * time.Hour))
	grd := guard.New(w.Store, guard.Options{Now: clock.Now})
	pol := policy.New(w.Store)
	pol.Now = clock.Now
	svc := auth.NewService(w.Store, auth.Options{Now: clock.Now})
	apiSrv := api.New(w.Store, api.Options{Version: "test", Auth: svc, Policy: pol, Admin: w.Store,
		MaxBreakGlass: 4 * time.Hour, Audit: w.Audit, Guard: grd, Alerts: w.Store})
	ws, err := web.New(web.Options{API: apiSrv, Auth: svc, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(web.Mount(apiSrv, ws))
	t.Cleanup(srv.Close)
	return &app{W: w, Clock: clock, Auth: svc, URL: srv.URL, srv: srv}
}

// member returns the n-th staff member holding role (working ones first)
// whose attending-physician list has at least minPatients patients when
// role is physician.
func (a *app) member(t testing.TB, role string, n int) *sim.Member {
	t.Helper()
	for _, m := range a.W.Staff {
		if m.Role() != role {
			continue
		}
		if role == policy.Physician && len(a.W.GPOf[m.Index]) < 3 {
			continue
		}
		if n == 0 {
			return m
		}
		n--
	}
	t.Fatalf("no %d-th %s in the test world", n, role)
	return nil
}

// lastStep is the last TOTP time step used per account, across the tests
// of the binary: the accounts' factors live in the shared world's store,
// which refuses a step used before (each test's clock starts at the same
// time).
var (
	stepMu   sync.Mutex
	lastStep = map[string]int64{}
)

// code returns the member's current TOTP code, moving the clock to the
// next 30-second step first, and past any step this account used in an
// earlier test, so that no code is used twice.
func (a *app) code(t testing.TB, m *sim.Member) string {
	t.Helper()
	stepMu.Lock()
	defer stepMu.Unlock()
	a.Clock.Advance(31 * time.Second)
	if last, ok := lastStep[m.Username]; ok {
		if step := a.Clock.Now().Unix() / 30; step <= last {
			a.Clock.Advance(time.Duration(last-step+1) * 30 * time.Second)
		}
	}
	lastStep[m.Username] = a.Clock.Now().Unix() / 30
	c, err := auth.TOTPCode(m.TOTP, a.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// browser is an HTTP client with cookies, like a browser.
type browser struct {
	t    testing.TB
	a    *app
	c    *http.Client
	csrf string
}

func (a *app) browser(t testing.TB) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, a: a, c: &http.Client{Jar: jar}}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// get fetches a page (following redirects) and remembers its CSRF token.
func (b *browser) get(path string) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.c.Get(b.a.URL + path)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.read(resp)
}

func (b *browser) read(resp *http.Response) (*http.Response, string) {
	b.t.Helper()
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if m := csrfRE.FindSubmatch(body); m != nil {
		b.csrf = string(m[1])
	}
	return resp, string(body)
}

// post submits a form as the page would (with its CSRF token), following
// redirects.
func (b *browser) post(path string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if form.Get("csrf") == "" {
		form.Set("csrf", b.csrf)
	}
	req, _ := http.NewRequest(http.MethodPost, b.a.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.a.URL)
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.read(resp)
}

// login signs m in with password and code; it fails the test unless the
// home page answers.
func (b *browser) login(m *sim.Member) {
	b.t.Helper()
	pw, err := b.a.W.Password(context.Background(), m)
	if err != nil {
		b.t.Fatal(err)
	}
	b.get("/app/login")
	resp, body := b.post("/app/login", url.Values{"username": {m.Username}, "password": {pw}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="otp"`) {
		b.t.Fatalf("password step: %d\n%s", resp.StatusCode, body)
	}
	resp, body = b.post("/app/login/code", url.Values{"otp": {b.a.code(b.t, m)}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `action="/app/logout"`) {
		b.t.Fatalf("code step: %d\n%s", resp.StatusCode, body)
	}
}
