package auth_test

// Tests of auth.Service over the real SQLite store, with a fake clock.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"carnet/internal/auth"
	"carnet/internal/store"
	"carnet/internal/store/sqlite"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type svcEnv struct {
	clk *fakeClock
	st  *store.SQL
	svc *auth.Service
	ens map[string]*auth.Enrolment
	// last TOTP step used per account
	steps map[string]int64
}

func newSvcEnv(t *testing.T, users ...string) *svcEnv {
	t.Helper()
	st, err := sqlite.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	clk := &fakeClock{t: time.Date(2031, 3, 14, 9, 26, 0, 0, time.UTC)}
	e := &svcEnv{clk: clk, st: st, svc: auth.NewService(st, auth.Options{Now: clk.Now}), ens: map[string]*auth.Enrolment{}, steps: map[string]int64{}}
	for _, u := range users {
		en, err := e.svc.CreateAccount(context.Background(), auth.NewAccount{Username: u, Practitioner: "prac-" + u, Roles: []string{"physician"}, Facilities: []string{"f1"}})
		if err != nil {
			t.Fatalf("CreateAccount %s: %v", u, err)
		}
		e.ens[u] = en
	}
	return e
}

// code returns a TOTP code of a step the account has not used, moving the
// clock to the next step if needed.
func (e *svcEnv) code(t *testing.T, user string) string {
	t.Helper()
	if auth.TOTPStep(e.clk.Now()) <= e.steps[user] {
		e.clk.Advance(time.Duration(auth.TOTPPeriod) * time.Second)
	}
	e.steps[user] = auth.TOTPStep(e.clk.Now())
	c, err := auth.TOTPCode(e.ens[user].TOTPSecret, e.clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *svcEnv) login(t *testing.T, user, client string) *auth.Grant {
	t.Helper()
	g, err := e.svc.Login(context.Background(), user, e.ens[user].Password, e.code(t, user), client, "user/*.cruds")
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return g
}

func (e *svcEnv) fail(t *testing.T, user, client string) error {
	t.Helper()
	_, err := e.svc.Login(context.Background(), user, "not-the-password-at-all", "123456", client, "")
	return err
}

func throttledFor(err error) (time.Duration, bool) {
	var te *auth.ThrottledError
	if errors.As(err, &te) {
		return te.RetryAfter, true
	}
	return 0, false
}

// TestSecServiceBackoffGrowth: five free failures, then a back-off that
// doubles from one second up to MaxBackoff, during which nothing is
// evaluated and nothing is counted.
func TestSecServiceBackoffGrowth(t *testing.T) {
	e := newSvcEnv(t, "alice")
	client := 0
	next := func() string { client++; return fmt.Sprintf("10.1.%d.%d", client/250, client%250) }

	for i := 1; i <= 4; i++ {
		if err := e.fail(t, "alice", next()); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	// The fifth attempt is still evaluated; after it, the back-off starts.
	if err := e.fail(t, "alice", next()); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("failure 5: %v", err)
	}
	want := time.Second
	for failures := 5; failures <= 17; failures++ {
		// Throttled, whatever the address, for exactly the back-off; a few
		// throttled attempts do not lengthen it.
		for range 3 {
			wait, ok := throttledFor(e.fail(t, "alice", next()))
			if !ok || wait != want {
				t.Fatalf("after %d failures: wait %v (throttled %v), want %v", failures, wait, ok, want)
			}
		}
		// Even the right password and code are not evaluated now.
		_, err := e.svc.Login(context.Background(), "alice", e.ens["alice"].Password, e.code(t, "alice"), next(), "")
		if w, ok := throttledFor(err); !ok || w > want {
			t.Fatalf("after %d failures: correct login %v, want throttled", failures, err)
		}
		e.steps["alice"]-- // that code was never checked
		// One second short: still throttled, one second left.
		e.clk.Advance(want - time.Second)
		if wait, ok := throttledFor(e.fail(t, "alice", next())); !ok || wait != time.Second {
			t.Fatalf("after %d failures, 1 s before the end: %v %v", failures, wait, ok)
		}
		e.clk.Advance(time.Second)
		if err := e.fail(t, "alice", next()); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("failure %d: %v", failures+1, err)
		}
		want = min(2*want, 15*time.Minute)
	}
	if want != 15*time.Minute {
		t.Fatalf("back-off never reached the cap: %v", want)
	}
	// Capped: 15 minutes, not 2^13 s.
	wait, ok := throttledFor(e.fail(t, "alice", next()))
	if !ok || wait != 15*time.Minute {
		t.Fatalf("capped wait %v %v", wait, ok)
	}
	// After the cap has passed, the owner logs in.
	e.clk.Advance(15 * time.Minute)
	e.login(t, "alice", "192.168.1.10")
}

// TestSecServiceThrottleResetAfterSuccess: a successful login forgets the
// account's failures.
func TestSecServiceThrottleResetAfterSuccess(t *testing.T) {
	e := newSvcEnv(t, "bob")
	for i := range 4 {
		if err := e.fail(t, "bob", fmt.Sprintf("10.2.0.%d", i)); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	e.login(t, "bob", "10.2.1.1")
	// Four more failures: without the reset this would be failures 5..8
	// and the sixth attempt would be throttled.
	for i := range 4 {
		if err := e.fail(t, "bob", fmt.Sprintf("10.2.2.%d", i)); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("failure %d after success: %v", i+1, err)
		}
	}
	e.login(t, "bob", "10.2.1.1")
	// And the fifth after the reset does start the back-off.
	for i := range 5 {
		if err := e.fail(t, "bob", fmt.Sprintf("10.2.3.%d", i)); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("failure %d after second success: %v", i+1, err)
		}
	}
	if wait, ok := throttledFor(e.fail(t, "bob", "10.2.4.1")); !ok || wait != time.Second {
		t.Fatalf("after 5 failures: %v %v, want throttled 1s", wait, ok)
	}
}

// TestSecServiceAddressThrottle: one address guessing many usernames is
// held back after 20 failures, for every account, not other addresses.
func TestSecServiceAddressThrottle(t *testing.T) {
	e := newSvcEnv(t, "carol")
	const addr = "203.0.113.9"
	for i := range 20 {
		// Each username fails once: the account back-off never applies.
		_, err := e.svc.Login(context.Background(), fmt.Sprintf("user%02d", i), "some-guessed-password", "123456", addr, "")
		if !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	_, err := e.svc.Login(context.Background(), "carol", e.ens["carol"].Password, e.code(t, "carol"), addr, "")
	if wait, ok := throttledFor(err); !ok || wait <= 0 {
		t.Fatalf("21st attempt from the address: %v, want throttled", err)
	}
	e.steps["carol"]--
	// Another address is not affected.
	e.login(t, "carol", "198.51.100.1")
}

// TestSecServiceUniformFailures: every kind of failed login is the same
// error with the same message.
func TestSecServiceUniformFailures(t *testing.T) {
	e := newSvcEnv(t, "dave", "erin")
	ctx := context.Background()
	if _, err := e.svc.SetStatus(ctx, "erin", store.StatusDisabled, "test"); err != nil {
		t.Fatal(err)
	}
	dave := e.ens["dave"]
	cases := []struct{ what, user, pw, otp string }{
		{"unknown user", "nobody", "whatever-password", "123456"},
		{"wrong password", "dave", "wrong-password-123", e.code(t, "dave")},
		{"no code", "dave", dave.Password, ""},
		{"wrong code", "dave", dave.Password, "12345x"},
		{"recovery code of another account", "dave", dave.Password, e.ens["erin"].RecoveryCodes[0]},
		{"disabled account, all correct", "erin", e.ens["erin"].Password, e.code(t, "erin")},
	}
	for i, c := range cases {
		_, err := e.svc.Login(ctx, c.user, c.pw, c.otp, fmt.Sprintf("10.3.0.%d", i), "")
		if err != auth.ErrInvalidCredentials {
			t.Errorf("%s: %v, want exactly ErrInvalidCredentials", c.what, err)
		}
	}
	// erin's recovery code was not consumed by dave's attempt, nor the
	// disabled erin's TOTP step: once enabled, both work.
	if _, err := e.svc.SetStatus(ctx, "erin", store.StatusActive, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Login(ctx, "erin", e.ens["erin"].Password, e.ens["erin"].RecoveryCodes[0], "10.3.1.1", ""); err != nil {
		t.Fatalf("erin's recovery code after dave's attempt: %v", err)
	}
	e.login(t, "erin", "10.3.1.1")
}

// TestSecServiceAuthenticate: only live access tokens authenticate.
func TestSecServiceAuthenticate(t *testing.T) {
	e := newSvcEnv(t, "frank")
	ctx := context.Background()
	g := e.login(t, "frank", "10.4.0.1")
	p, err := e.svc.Authenticate(ctx, g.AccessToken, "10.4.0.2")
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if p.Username != "frank" || p.Practitioner != "prac-frank" || !p.HasRole("physician") || p.HasRole("group-admin") ||
		len(p.Facilities) != 1 || p.Facilities[0] != "f1" || p.Scopes != "user/*.cruds" || p.Session != g.Session || p.Client != "10.4.0.2" {
		t.Fatalf("principal %+v", p)
	}
	for _, c := range []struct{ what, tok string }{
		{"empty", ""},
		{"refresh token", g.RefreshToken},
		{"unknown access token", auth.AccessTokenPrefix + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
		{"access token with a refresh prefix", auth.RefreshTokenPrefix + g.AccessToken[len(auth.AccessTokenPrefix):]},
		{"truncated access token", g.AccessToken[:len(g.AccessToken)-1]},
		{"access token with a trailing space", g.AccessToken + " "},
	} {
		if _, err := e.svc.Authenticate(ctx, c.tok, "10.4.0.2"); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("%s: %v, want ErrUnauthenticated", c.what, err)
		}
	}
	// An access token cannot refresh, and trying does not end the session.
	if _, err := e.svc.Refresh(ctx, g.AccessToken, "10.4.0.2"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("Refresh with an access token: %v", err)
	}
	if _, err := e.svc.Authenticate(ctx, g.AccessToken, ""); err != nil {
		t.Fatalf("session ended by a refresh attempt with its access token: %v", err)
	}
	// Expiry, exactly at AccessTTL.
	e.clk.Advance(15*time.Minute - time.Nanosecond)
	if _, err := e.svc.Authenticate(ctx, g.AccessToken, ""); err != nil {
		t.Fatalf("just before expiry: %v", err)
	}
	e.clk.Advance(time.Nanosecond)
	if _, err := e.svc.Authenticate(ctx, g.AccessToken, ""); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("at expiry: %v", err)
	}
	// Revocation: Revoke takes either token of the session.
	g2 := e.login(t, "frank", "10.4.0.1")
	g3 := e.login(t, "frank", "10.4.0.1")
	if err := e.svc.Revoke(ctx, g2.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Authenticate(ctx, g2.AccessToken, ""); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("access token of a session revoked by its refresh token: %v", err)
	}
	if _, err := e.svc.Authenticate(ctx, g3.AccessToken, ""); err != nil {
		t.Fatalf("another session: %v", err)
	}
	if err := e.svc.Revoke(ctx, "cat_nonsense"); err != nil {
		t.Fatalf("Revoke of an unknown token: %v", err)
	}
}

// TestSecServiceRefreshReuse: a refresh token works once; its reuse ends
// that session and no other.
func TestSecServiceRefreshReuse(t *testing.T) {
	e := newSvcEnv(t, "gina")
	ctx := context.Background()
	g1 := e.login(t, "gina", "10.5.0.1")
	other := e.login(t, "gina", "10.5.0.1")
	g2, err := e.svc.Refresh(ctx, g1.RefreshToken, "10.5.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if g2.Session != g1.Session || g2.Scope != g1.Scope || g2.AccessToken == g1.AccessToken {
		t.Fatalf("refresh grant %+v", g2)
	}
	if _, err := e.svc.Refresh(ctx, g1.RefreshToken, "10.9.9.9"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("reuse: %v", err)
	}
	for _, tok := range []string{g1.AccessToken, g2.AccessToken} {
		if _, err := e.svc.Authenticate(ctx, tok, ""); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("token of the reused session: %v", err)
		}
	}
	if _, err := e.svc.Refresh(ctx, g2.RefreshToken, ""); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("second-generation refresh token after reuse: %v", err)
	}
	if _, err := e.svc.Authenticate(ctx, other.AccessToken, ""); err != nil {
		t.Fatalf("the other session: %v", err)
	}
	// Refresh tokens expire after RefreshTTL (8 h).
	e.clk.Advance(8 * time.Hour)
	if _, err := e.svc.Refresh(ctx, other.RefreshToken, ""); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("refresh at expiry: %v", err)
	}
}

// TestSecServiceSetStatus: anything but active ends the sessions and
// refuses logins; re-enabling does not revive old tokens.
func TestSecServiceSetStatus(t *testing.T) {
	e := newSvcEnv(t, "hugo")
	ctx := context.Background()
	for _, status := range []string{store.StatusDisabled, store.StatusSuspended} {
		g := e.login(t, "hugo", "10.6.0.1")
		if _, err := e.svc.SetStatus(ctx, "hugo", status, "test"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Authenticate(ctx, g.AccessToken, ""); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("%s: access token: %v", status, err)
		}
		if _, err := e.svc.Refresh(ctx, g.RefreshToken, ""); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("%s: refresh: %v", status, err)
		}
		if _, err := e.svc.Login(ctx, "hugo", e.ens["hugo"].Password, e.code(t, "hugo"), "10.6.0.1", ""); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("%s: login: %v", status, err)
		}
		if _, err := e.svc.SetStatus(ctx, "hugo", store.StatusActive, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Authenticate(ctx, g.AccessToken, ""); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("%s then active: old access token: %v", status, err)
		}
		if _, err := e.svc.Refresh(ctx, g.RefreshToken, ""); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("%s then active: old refresh token: %v", status, err)
		}
		e.login(t, "hugo", "10.6.0.1")
	}
	if _, err := e.svc.SetStatus(ctx, "nobody", store.StatusDisabled, ""); !errors.Is(err, auth.ErrNoSuchAccount) {
		t.Fatalf("SetStatus of an unknown account: %v", err)
	}
}

// TestSecServiceResetMFA: the old authenticator and recovery codes stop
// working, the sessions end, the new ones work.
func TestSecServiceResetMFA(t *testing.T) {
	e := newSvcEnv(t, "iris")
	ctx := context.Background()
	old := e.ens["iris"]
	g := e.login(t, "iris", "10.7.0.1")
	en, err := e.svc.ResetMFA(ctx, "iris")
	if err != nil {
		t.Fatal(err)
	}
	if en.TOTPSecret == old.TOTPSecret || len(en.RecoveryCodes) == 0 || en.Password != "" {
		t.Fatalf("reset enrolment %+v", en)
	}
	if _, err := e.svc.Authenticate(ctx, g.AccessToken, ""); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("session survived the MFA reset: %v", err)
	}
	e.clk.Advance(time.Minute)
	oldCode, _ := auth.TOTPCode(old.TOTPSecret, e.clk.Now())
	newCode, _ := auth.TOTPCode(en.TOTPSecret, e.clk.Now())
	if oldCode != newCode {
		if _, err := e.svc.Login(ctx, "iris", old.Password, oldCode, "10.7.0.1", ""); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("old authenticator after reset: %v", err)
		}
	}
	if _, err := e.svc.Login(ctx, "iris", old.Password, old.RecoveryCodes[0], "10.7.0.1", ""); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("old recovery code after reset: %v", err)
	}
	if _, err := e.svc.Login(ctx, "iris", old.Password, newCode, "10.7.0.1", ""); err != nil {
		t.Fatalf("new authenticator: %v", err)
	}
	if _, err := e.svc.Login(ctx, "iris", old.Password, en.RecoveryCodes[0], "10.7.0.1", ""); err != nil {
		t.Fatalf("new recovery code: %v", err)
	}
}

// TestSecServiceSetPassword: the policy applies, the old password stops
// working, the new one works.
func TestSecServiceSetPassword(t *testing.T) {
	e := newSvcEnv(t, "jack")
	ctx := context.Background()
	for _, pw := range []string{"qwerty123456", "short", "xx-jack-xxxxxxxx"} {
		if err := e.svc.SetPassword(ctx, "jack", pw); !errors.Is(err, auth.ErrWeakPassword) {
			t.Fatalf("SetPassword %q: %v, want ErrWeakPassword", pw, err)
		}
	}
	e.login(t, "jack", "10.8.0.1") // the refused changes left the password alone
	const newPW = "a much better passphrase 42"
	if err := e.svc.SetPassword(ctx, "jack", newPW); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Login(ctx, "jack", e.ens["jack"].Password, e.code(t, "jack"), "10.8.0.1", ""); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("old password after change: %v", err)
	}
	e.steps["jack"]-- // the code was not checked (wrong password)
	if _, err := e.svc.Login(ctx, "jack", newPW, e.code(t, "jack"), "10.8.0.1", ""); err != nil {
		t.Fatalf("new password: %v", err)
	}
	if err := e.svc.SetPassword(ctx, "nobody", newPW); !errors.Is(err, auth.ErrNoSuchAccount) {
		t.Fatalf("SetPassword of an unknown account: %v", err)
	}
}
