package auth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"carnet/internal/auth"
)

func code(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	c, err := auth.TOTPCode(secret, at)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTwoStepLogin(t *testing.T) {
	ctx := context.Background()
	e := newSvcEnv(t, "alice")
	en := e.ens["alice"]
	p, err := e.svc.BeginLogin(ctx, "Alice", en.Password, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if p.Enrol || p.Username != "alice" {
		t.Fatalf("pending = %+v, want a code step for alice", p)
	}
	// The pending token is no bearer token.
	if _, err := e.svc.Authenticate(ctx, p.Token, "10.0.0.1"); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("pending token authenticated: %v", err)
	}
	g, err := e.svc.FinishLogin(ctx, p.Token, code(t, en.TOTPSecret, e.clk.Now()), "10.0.0.1", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Authenticate(ctx, g.AccessToken, "10.0.0.1"); err != nil {
		t.Fatalf("access token: %v", err)
	}
	// Used once.
	e.clk.Advance(30 * time.Second)
	if _, err := e.svc.FinishLogin(ctx, p.Token, code(t, en.TOTPSecret, e.clk.Now()), "10.0.0.1", ""); !errors.Is(err, auth.ErrPendingExpired) {
		t.Fatalf("pending token reused: %v", err)
	}
}

func TestTwoStepLoginAttacks(t *testing.T) {
	ctx := context.Background()
	e := newSvcEnv(t, "alice")
	en := e.ens["alice"]
	// A wrong password and an unknown user answer alike.
	if _, err := e.svc.BeginLogin(ctx, "alice", "wrong password!", "10.0.0.2"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := e.svc.BeginLogin(ctx, "nobody", "wrong password!", "10.0.0.2"); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("unknown user: %v", err)
	}
	// The stolen password alone: a wrong code uses up the pending login and counts.
	p, err := e.svc.BeginLogin(ctx, "alice", en.Password, "10.0.0.3")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.FinishLogin(ctx, p.Token, "000000", "10.0.0.3", ""); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("wrong code: %v", err)
	}
	if _, err := e.svc.FinishLogin(ctx, p.Token, code(t, en.TOTPSecret, e.clk.Now()), "10.0.0.3", ""); !errors.Is(err, auth.ErrPendingExpired) {
		t.Fatalf("second guess on the same pending login: %v", err)
	}
	// Guessing codes backs off: after the free failures, even the right
	// password is not evaluated.
	for range 5 {
		p, err := e.svc.BeginLogin(ctx, "alice", en.Password, "10.0.0.3")
		if err != nil {
			break
		}
		e.svc.FinishLogin(ctx, p.Token, "123456", "10.0.0.3", "")
	}
	var th *auth.ThrottledError
	if _, err := e.svc.BeginLogin(ctx, "alice", en.Password, "10.0.0.3"); !errors.As(err, &th) {
		t.Fatalf("after guessing codes: %v, want back-off", err)
	}
	// A pending login expires.
	e.clk.Advance(time.Hour)
	p, err = e.svc.BeginLogin(ctx, "alice", en.Password, "10.0.0.4")
	if err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(auth.PendingTTL + time.Second)
	if _, err := e.svc.FinishLogin(ctx, p.Token, code(t, en.TOTPSecret, e.clk.Now()), "10.0.0.4", ""); !errors.Is(err, auth.ErrPendingExpired) {
		t.Fatalf("expired pending login: %v", err)
	}
	// An enrolled account cannot be re-enrolled through a pending login.
	p, err = e.svc.BeginLogin(ctx, "alice", en.Password, "10.0.0.4")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.StartEnrolment(ctx, p.Token); !errors.Is(err, auth.ErrPendingExpired) {
		t.Fatalf("re-enrolment of an enrolled account: %v", err)
	}
}

func TestEnrolAtFirstLogin(t *testing.T) {
	ctx := context.Background()
	e := newSvcEnv(t)
	en, err := e.svc.CreateAccount(ctx, auth.NewAccount{Username: "bob", Roles: []string{"nurse"}, Facilities: []string{"f1"}, EnrolAtFirstLogin: true})
	if err != nil {
		t.Fatal(err)
	}
	if en.TOTPSecret != "" || len(en.RecoveryCodes) != 0 || en.Password == "" {
		t.Fatalf("enrolment = %+v, want a password only", en)
	}
	// No authenticator: the API's one-step login refuses every code.
	if _, err := e.svc.Login(ctx, "bob", en.Password, "123456", "10.0.0.5", ""); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("one-step login before enrolment: %v", err)
	}
	p, err := e.svc.BeginLogin(ctx, "bob", en.Password, "10.0.0.5")
	if err != nil {
		t.Fatal(err)
	}
	if !p.Enrol {
		t.Fatal("pending login of an account without authenticator does not ask for enrolment")
	}
	// A code cannot complete it (there is nothing to check it against).
	if _, err := e.svc.FinishLogin(ctx, p.Token, "123456", "10.0.0.5", ""); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("code without authenticator: %v", err)
	}
	p, _ = e.svc.BeginLogin(ctx, "bob", en.Password, "10.0.0.5")
	secret, uri, err := e.svc.StartEnrolment(ctx, p.Token)
	if err != nil {
		t.Fatal(err)
	}
	if secret == "" || uri == "" {
		t.Fatal("no secret")
	}
	// Asking again replaces the secret: the first one no longer works.
	secret2, _, err := e.svc.StartEnrolment(ctx, p.Token)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.ConfirmEnrolment(ctx, p.Token, code(t, secret, e.clk.Now().Add(-5*time.Minute)), "10.0.0.5", ""); !errors.Is(err, auth.ErrEnrolmentCode) {
		t.Fatalf("wrong enrolment code: %v", err)
	}
	// The pending factor is no authenticator for a one-step login.
	if _, err := e.svc.Login(ctx, "bob", en.Password, code(t, secret2, e.clk.Now()), "10.0.0.5", ""); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("login with a secret not yet confirmed: %v", err)
	}
	g, codes, err := e.svc.ConfirmEnrolment(ctx, p.Token, code(t, secret2, e.clk.Now()), "10.0.0.5", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != 10 {
		t.Fatalf("%d recovery codes", len(codes))
	}
	if _, err := e.svc.Authenticate(ctx, g.AccessToken, "10.0.0.5"); err != nil {
		t.Fatal(err)
	}
	// Now the authenticator and a recovery code both log in.
	e.clk.Advance(time.Minute)
	if _, err := e.svc.Login(ctx, "bob", en.Password, code(t, secret2, e.clk.Now()), "10.0.0.5", ""); err != nil {
		t.Fatalf("login after enrolment: %v", err)
	}
	if _, err := e.svc.Login(ctx, "bob", en.Password, codes[3], "10.0.0.5", ""); err != nil {
		t.Fatalf("recovery code: %v", err)
	}
	// And the pending login that enrolled is spent.
	if _, _, err := e.svc.StartEnrolment(ctx, p.Token); !errors.Is(err, auth.ErrPendingExpired) {
		t.Fatalf("pending login after enrolment: %v", err)
	}
}
