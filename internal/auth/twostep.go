package auth

import (
	"context"
	"errors"
	"strings"
	"time"

	"carnet/internal/store"
)

// The web application logs in in two steps (password, then one-time code)
// and enrols a first authenticator for accounts created without one. The
// step between them is a pending token: short-lived, single use, stored
// hashed like every token, and useless as a bearer token (Authenticate
// accepts access tokens only).

// PendingTokenPrefix starts a pending-login token.
const PendingTokenPrefix = "cpl_"

// pendingKind is the kind of factor an enrolment stores until its first
// code proves it: checkSecondFactor ignores it.
const pendingKind = "totp-pending"

// PendingTTL is how long the second step may wait.
const PendingTTL = 5 * time.Minute

// ErrPendingExpired: the pending login is unknown, used or expired: start
// again with the password.
var ErrPendingExpired = errors.New("the login has expired: enter your password again")

// Pending is a login whose password was right.
type Pending struct {
	Token string
	// Enrol: the account has no authenticator yet; the second step is
	// enrolment (StartEnrolment, ConfirmEnrolment), not a code.
	Enrol    bool
	Username string
	Display  string
}

// BeginLogin checks a username and password. Failures count towards the
// same back-off as Login and answer ErrInvalidCredentials whatever failed.
// The back-off is reset only when the second step succeeds.
func (s *Service) BeginLogin(ctx context.Context, username, password, client string) (*Pending, error) {
	now := s.opt.Now()
	user := normUser(username)
	if err := s.throttled(ctx, user, client, now); err != nil {
		return nil, err
	}
	a, ok, err := s.checkPassword(ctx, user, password)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, s.failed(ctx, user, client, now)
	}
	factors, err := s.repo.Factors(ctx, a.ID)
	if err != nil {
		return nil, err
	}
	enrol := true
	for _, f := range factors {
		if f.Kind == "totp" {
			enrol = false
		}
	}
	tok, hash, err := NewToken(PendingTokenPrefix)
	if err != nil {
		return nil, err
	}
	t := &store.Token{Hash: hash, Kind: "pending", Account: a.ID, Session: newSession(), Client: client, Created: now, Expires: now.Add(PendingTTL)}
	if err := s.repo.InsertTokens(ctx, t); err != nil {
		return nil, err
	}
	return &Pending{Token: tok, Enrol: enrol, Username: a.Username, Display: a.Display}, nil
}

// pending resolves a pending token still usable.
func (s *Service) pending(ctx context.Context, token string) (*store.Token, *store.Account, error) {
	if token == "" {
		return nil, nil, ErrPendingExpired
	}
	t, a, err := s.repo.LookupToken(ctx, HashToken(token))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, ErrPendingExpired
	}
	if err != nil {
		return nil, nil, err
	}
	if t.Kind != "pending" || t.Revoked || !s.opt.Now().Before(t.Expires) || a.Status != store.StatusActive {
		return nil, nil, ErrPendingExpired
	}
	return t, a, nil
}

// FinishLogin completes a pending login with a one-time code (TOTP or
// recovery code) and issues tokens. The pending token is used up whether
// the code is right or not: a wrong code sends the user back to the
// password, and counts as a failed login.
func (s *Service) FinishLogin(ctx context.Context, pendingToken, otp, client, scope string) (*Grant, error) {
	now := s.opt.Now()
	t, a, err := s.pending(ctx, pendingToken)
	if err != nil {
		return nil, err
	}
	if fresh, err := s.repo.ConsumeToken(ctx, t.Hash); err != nil {
		return nil, err
	} else if !fresh {
		return nil, ErrPendingExpired
	}
	ok, err := s.checkSecondFactor(ctx, a, otp, now)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, s.failed(ctx, a.Username, client, now)
	}
	return s.loggedIn(ctx, a, scope, client, now)
}

// StartEnrolment gives a pending login of an account without an
// authenticator a new TOTP secret (and its otpauth:// URI for a QR code).
// Asking again replaces the secret.
func (s *Service) StartEnrolment(ctx context.Context, pendingToken string) (secret, uri string, err error) {
	_, a, err := s.pending(ctx, pendingToken)
	if err != nil {
		return "", "", err
	}
	if !s.needsEnrolment(ctx, a) {
		return "", "", ErrPendingExpired
	}
	if secret, err = NewTOTPSecret(); err != nil {
		return "", "", err
	}
	f := store.Factor{ID: randomID(), Account: a.ID, Kind: pendingKind, Label: "authenticator app", Secret: []byte(secret), Created: s.opt.Now().UTC()}
	if err := s.repo.SetPendingFactor(ctx, f); err != nil {
		return "", "", err
	}
	return secret, TOTPURI(s.opt.Issuer, a.Username, secret), nil
}

// ErrEnrolmentCode: the code does not match the secret being enrolled.
var ErrEnrolmentCode = errors.New("this code does not match: check the clock of your phone and type the code it shows now")

// ConfirmEnrolment proves the secret being enrolled with a code from the
// authenticator, makes it the account's authenticator, creates ten
// recovery codes (returned once) and logs in. A wrong code leaves the
// pending login usable (until it expires) and counts as a failure.
func (s *Service) ConfirmEnrolment(ctx context.Context, pendingToken, otp, client, scope string) (*Grant, []string, error) {
	now := s.opt.Now()
	_, a, err := s.pending(ctx, pendingToken)
	if err != nil {
		return nil, nil, err
	}
	factors, err := s.repo.Factors(ctx, a.ID)
	if err != nil {
		return nil, nil, err
	}
	var pend *store.Factor
	for i, f := range factors {
		if f.Kind == "totp" {
			return nil, nil, ErrPendingExpired // enrolled meanwhile
		}
		if f.Kind == pendingKind {
			pend = &factors[i]
		}
	}
	if pend == nil {
		return nil, nil, ErrPendingExpired
	}
	step, ok := CheckTOTP(string(pend.Secret), strings.TrimSpace(otp), now)
	if !ok {
		err := s.failed(ctx, a.Username, client, now)
		if errors.Is(err, ErrInvalidCredentials) {
			err = ErrEnrolmentCode
		}
		return nil, nil, err
	}
	codes, hashes, err := NewRecoveryCodes(10)
	if err != nil {
		return nil, nil, err
	}
	f := store.Factor{ID: randomID(), Account: a.ID, Kind: "totp", Label: pend.Label, Secret: pend.Secret, Confirmed: true, Counter: step, Created: now.UTC()}
	// ResetFactors also revokes the account's tokens, the pending one among them.
	if err := s.repo.ResetFactors(ctx, a.ID, []store.Factor{f}, hashes); err != nil {
		return nil, nil, err
	}
	g, err := s.loggedIn(ctx, a, scope, client, now)
	if err != nil {
		return nil, nil, err
	}
	s.opt.Logger.InfoContext(ctx, "authenticator enrolled", "account", a.ID, "username", a.Username, "client", client)
	return g, codes, nil
}

func (s *Service) needsEnrolment(ctx context.Context, a *store.Account) bool {
	factors, err := s.repo.Factors(ctx, a.ID)
	if err != nil {
		return false
	}
	for _, f := range factors {
		if f.Kind == "totp" {
			return false
		}
	}
	return true
}

// throttled answers a *ThrottledError while the account or address backs off.
func (s *Service) throttled(ctx context.Context, user, client string, now time.Time) error {
	th, err := s.repo.ThrottleState(ctx, "acct:"+user, "addr:"+client)
	if err != nil {
		return err
	}
	var wait time.Duration
	for _, t := range th {
		wait = max(wait, t.Until.Sub(now))
	}
	if wait > 0 {
		return &ThrottledError{RetryAfter: wait}
	}
	return nil
}

// failed records a failed login for the account and the address and
// answers ErrInvalidCredentials.
func (s *Service) failed(ctx context.Context, user, client string, now time.Time) error {
	if err := s.repo.ThrottleFailure(ctx, now, s.backoff(s.opt.AccountFreeFailures), "acct:"+user); err != nil {
		return err
	}
	if err := s.repo.ThrottleFailure(ctx, now, s.backoff(s.opt.AddressFreeFailures), "addr:"+client); err != nil {
		return err
	}
	s.opt.Logger.InfoContext(ctx, "login failed", "username", user, "client", client)
	return ErrInvalidCredentials
}

// loggedIn resets the account's back-off and issues a new session.
func (s *Service) loggedIn(ctx context.Context, a *store.Account, scope, client string, now time.Time) (*Grant, error) {
	if err := s.repo.ThrottleReset(ctx, "acct:"+a.Username); err != nil {
		return nil, err
	}
	g, err := s.issue(ctx, a, newSession(), scope, client, now)
	if err != nil {
		return nil, err
	}
	s.opt.Logger.InfoContext(ctx, "login", "account", a.ID, "username", a.Username, "client", client, "session", g.Session)
	return g, nil
}
