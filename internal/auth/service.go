package auth

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"carnet/internal/store"
)

// Repo is the security state the auth service keeps in the store.
type Repo interface {
	CreateAccount(ctx context.Context, a *store.Account, factors []store.Factor, recovery []string) error
	AccountByUsername(ctx context.Context, username string) (*store.Account, error)
	UpdateAccount(ctx context.Context, a *store.Account) error
	Factors(ctx context.Context, account string) ([]store.Factor, error)
	ResetFactors(ctx context.Context, account string, factors []store.Factor, recovery []string) error
	SetPendingFactor(ctx context.Context, f store.Factor) error
	AdvanceFactor(ctx context.Context, id string, counter int64) (bool, error)
	UseRecoveryCode(ctx context.Context, account, hash string) (bool, error)
	InsertTokens(ctx context.Context, ts ...*store.Token) error
	LookupToken(ctx context.Context, hash string) (*store.Token, *store.Account, error)
	ConsumeToken(ctx context.Context, hash string) (bool, error)
	RevokeSession(ctx context.Context, session string) error
	RevokeAccountTokens(ctx context.Context, account string) error
	ThrottleState(ctx context.Context, keys ...string) (map[string]store.Throttle, error)
	ThrottleFailure(ctx context.Context, now time.Time, backoff func(failures int) time.Duration, keys ...string) error
	ThrottleReset(ctx context.Context, keys ...string) error
}

// Errors of the auth service. Their messages are safe to show a client.
var (
	// ErrInvalidCredentials covers every login failure alike: unknown user,
	// wrong password, wrong or replayed code, disabled account.
	ErrInvalidCredentials = errors.New("invalid username, password or one-time code")
	// ErrUnauthenticated: no valid token (missing, unknown, expired,
	// revoked, or its account is no longer active).
	ErrUnauthenticated = errors.New("authentication required: a valid bearer token")
	ErrNoSuchAccount   = errors.New("no such account")
)

// ThrottledError: too many recent failures for this account or address.
type ThrottledError struct{ RetryAfter time.Duration }

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("too many failed attempts: try again in %s", e.RetryAfter.Round(time.Second))
}

// Options tune the service; zero values take the defaults.
type Options struct {
	Issuer     string        // shown by authenticator apps; default "Carnet"
	AccessTTL  time.Duration // default and maximum 15 minutes
	RefreshTTL time.Duration // default 8 hours (a working day)
	// Failures tolerated before back-off starts, per account and per client
	// address; back-off then doubles from one second up to MaxBackoff.
	AccountFreeFailures, AddressFreeFailures int
	MaxBackoff                               time.Duration // default 15 minutes
	Now                                      func() time.Time
	Logger                                   *slog.Logger
}

// Service authenticates staff.
type Service struct {
	repo Repo
	opt  Options
}

// NewService returns a Service over repo.
func NewService(repo Repo, opt Options) *Service {
	if opt.Issuer == "" {
		opt.Issuer = "Carnet"
	}
	if opt.AccessTTL <= 0 || opt.AccessTTL > 15*time.Minute {
		opt.AccessTTL = 15 * time.Minute
	}
	if opt.RefreshTTL <= 0 {
		opt.RefreshTTL = 8 * time.Hour
	}
	if opt.AccountFreeFailures <= 0 {
		opt.AccountFreeFailures = 5
	}
	if opt.AddressFreeFailures <= 0 {
		opt.AddressFreeFailures = 20
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = 15 * time.Minute
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{repo: repo, opt: opt}
}

// Principal is an authenticated caller.
type Principal struct {
	AccountID, Username, Practitioner string
	Roles, Facilities                 []string
	Scopes                            string // SMART scopes the token carries
	Session                           string
	Client                            string // client address
}

// HasRole reports whether the principal holds role.
func (p *Principal) HasRole(role string) bool {
	for _, r := range p.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// Grant is what a successful login or refresh returns.
type Grant struct {
	AccessToken  string
	RefreshToken string
	ExpiresIn    time.Duration
	Scope        string
	Session      string
	Account      *store.Account
}

func normUser(u string) string { return strings.ToLower(strings.TrimSpace(u)) }

func (s *Service) backoff(free int) func(n int) time.Duration {
	return func(n int) time.Duration {
		if n < free {
			return 0
		}
		shift := n - free
		if shift > 20 {
			return s.opt.MaxBackoff
		}
		return min(time.Second<<shift, s.opt.MaxBackoff)
	}
}

// Login checks a username, password and one-time code (TOTP or recovery
// code) and issues tokens carrying scope. Every failure is
// ErrInvalidCredentials (or a *ThrottledError), whatever failed, and costs
// the same password hash whether the user exists or not.
func (s *Service) Login(ctx context.Context, username, password, otp, client, scope string) (*Grant, error) {
	now := s.opt.Now()
	user := normUser(username)
	if err := s.throttled(ctx, user, client, now); err != nil {
		// Nothing is evaluated while backing off: no oracle, no cost.
		return nil, err
	}
	a, ok, err := s.checkPassword(ctx, user, password)
	if err != nil {
		return nil, err
	}
	if ok {
		if ok, err = s.checkSecondFactor(ctx, a, otp, now); err != nil {
			return nil, err
		}
	}
	if !ok {
		return nil, s.failed(ctx, user, client, now)
	}
	return s.loggedIn(ctx, a, scope, client, now)
}

// checkPassword reports whether user is an active account with password,
// at the cost of one password hash whether the account exists or not.
func (s *Service) checkPassword(ctx context.Context, user, password string) (*store.Account, bool, error) {
	a, err := s.repo.AccountByUsername(ctx, user)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, false, err
	}
	ok := false
	if a == nil || a.PasswordHash == "" {
		DummyVerify(password)
	} else if ok, err = VerifyPassword(a.PasswordHash, password); err != nil {
		s.opt.Logger.ErrorContext(ctx, "stored password hash unreadable", "account", a.ID, "err", err)
		ok = false
	}
	return a, ok && a.Status == store.StatusActive, nil
}

// checkSecondFactor accepts a current TOTP code of one of the account's
// authenticators (each time step once) or an unused recovery code.
func (s *Service) checkSecondFactor(ctx context.Context, a *store.Account, otp string, now time.Time) (bool, error) {
	otp = strings.TrimSpace(otp)
	if otp == "" {
		return false, nil
	}
	if LooksLikeRecoveryCode(otp) {
		return s.repo.UseRecoveryCode(ctx, a.ID, HashRecoveryCode(otp))
	}
	factors, err := s.repo.Factors(ctx, a.ID)
	if err != nil {
		return false, err
	}
	for _, f := range factors {
		if f.Kind != "totp" {
			continue
		}
		step, ok := CheckTOTP(string(f.Secret), otp, now)
		if !ok {
			continue
		}
		// Atomic in the store: a code used once (on any instance) is refused.
		return s.repo.AdvanceFactor(ctx, f.ID, step)
	}
	return false, nil
}

func newSession() string { return randomID() }

func randomID() string {
	var b [16]byte
	rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

func (s *Service) issue(ctx context.Context, a *store.Account, session, scope, client string, now time.Time) (*Grant, error) {
	at, ah, err := NewToken(AccessTokenPrefix)
	if err != nil {
		return nil, err
	}
	rt, rh, err := NewToken(RefreshTokenPrefix)
	if err != nil {
		return nil, err
	}
	access := &store.Token{Hash: ah, Kind: "access", Account: a.ID, Session: session, Scopes: scope, Client: client, Created: now, Expires: now.Add(s.opt.AccessTTL)}
	refresh := &store.Token{Hash: rh, Kind: "refresh", Account: a.ID, Session: session, Scopes: scope, Client: client, Created: now, Expires: now.Add(s.opt.RefreshTTL)}
	if err := s.repo.InsertTokens(ctx, access, refresh); err != nil {
		return nil, err
	}
	return &Grant{AccessToken: at, RefreshToken: rt, ExpiresIn: s.opt.AccessTTL, Scope: scope, Session: session, Account: a}, nil
}

// Refresh exchanges a refresh token for new tokens of the same session. A
// refresh token works once: presenting a used one again (a sign it was
// stolen) revokes the whole session.
func (s *Service) Refresh(ctx context.Context, refreshToken, client string) (*Grant, error) {
	now := s.opt.Now()
	t, a, err := s.repo.LookupToken(ctx, HashToken(refreshToken))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrInvalidCredentials
	}
	if err != nil {
		return nil, err
	}
	if t.Kind != "refresh" || !now.Before(t.Expires) || a.Status != store.StatusActive {
		return nil, ErrInvalidCredentials
	}
	fresh, err := s.repo.ConsumeToken(ctx, t.Hash)
	if err != nil {
		return nil, err
	}
	if !fresh {
		if err := s.repo.RevokeSession(ctx, t.Session); err != nil {
			return nil, err
		}
		s.opt.Logger.WarnContext(ctx, "refresh token reused: session revoked", "account", a.ID, "session", t.Session, "client", client)
		return nil, ErrInvalidCredentials
	}
	return s.issue(ctx, a, t.Session, t.Scopes, client, now)
}

// Revoke ends the session a token belongs to (RFC 7009: unknown tokens are
// not an error).
func (s *Service) Revoke(ctx context.Context, token string) error {
	t, _, err := s.repo.LookupToken(ctx, HashToken(token))
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return s.repo.RevokeSession(ctx, t.Session)
}

// Authenticate resolves a bearer access token. It consults the store on
// every call, so revocation and suspension apply to the next request.
func (s *Service) Authenticate(ctx context.Context, bearer, client string) (*Principal, error) {
	if bearer == "" {
		return nil, ErrUnauthenticated
	}
	t, a, err := s.repo.LookupToken(ctx, HashToken(bearer))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrUnauthenticated
	}
	if err != nil {
		return nil, err
	}
	if t.Kind != "access" || t.Revoked || !s.opt.Now().Before(t.Expires) || a.Status != store.StatusActive {
		return nil, ErrUnauthenticated
	}
	return &Principal{AccountID: a.ID, Username: a.Username, Practitioner: a.Practitioner, Roles: a.Roles, Facilities: a.Facilities,
		Scopes: t.Scopes, Session: t.Session, Client: client}, nil
}

// NewAccount describes an account to create.
type NewAccount struct {
	Username, Practitioner, Display string
	Roles, Facilities               []string
	// Password: empty generates a strong one, returned in the Enrolment.
	Password string
	// EnrolAtFirstLogin creates the account without an authenticator: its
	// owner enrols one (QR code, recovery codes) at the first login in the
	// web application, and cannot log in anywhere else before.
	EnrolAtFirstLogin bool
}

// Enrolment is what a new account (or an MFA reset) hands to its owner,
// once: the password if generated, the TOTP secret and its otpauth:// URI,
// and the recovery codes. None of it is stored in clear.
type Enrolment struct {
	Username      string
	Password      string `json:",omitempty"`
	TOTPSecret    string
	TOTPURI       string
	RecoveryCodes []string
}

// GeneratePassword returns a random 20-character password (about 100 bits).
func GeneratePassword() string {
	var b [13]byte
	rand.Read(b[:])
	p := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))[:20]
	return p[:5] + "-" + p[5:10] + "-" + p[10:15] + "-" + p[15:]
}

// ValidUsername: 2 to 64 characters of a-z, 0-9, '.', '-', '_'.
func ValidUsername(u string) bool {
	if len(u) < 2 || len(u) > 64 {
		return false
	}
	for _, c := range u {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// CreateAccount creates an account with a password and a TOTP
// authenticator (MFA is mandatory: there is no account without one).
func (s *Service) CreateAccount(ctx context.Context, na NewAccount) (*Enrolment, error) {
	user := normUser(na.Username)
	if !ValidUsername(user) {
		return nil, fmt.Errorf("invalid username %q: use 2 to 64 characters among a-z 0-9 . - _", na.Username)
	}
	en := &Enrolment{Username: user}
	pw := na.Password
	if pw == "" {
		pw = GeneratePassword()
		en.Password = pw
	}
	if err := CheckPasswordPolicy(pw, user); err != nil {
		return nil, err
	}
	hash, err := HashPassword(pw)
	if err != nil {
		return nil, err
	}
	now := s.opt.Now().UTC()
	a := &store.Account{ID: randomID(), Username: user, Practitioner: na.Practitioner, Display: na.Display,
		Roles: na.Roles, Facilities: na.Facilities, PasswordHash: hash, Status: store.StatusActive, Created: now, Updated: now}
	if na.EnrolAtFirstLogin {
		return en, s.repo.CreateAccount(ctx, a, nil, nil)
	}
	factors, codes, hashes, err := s.newFactors(a, en, now)
	if err != nil {
		return nil, err
	}
	if err := s.repo.CreateAccount(ctx, a, factors, hashes); err != nil {
		return nil, err
	}
	en.RecoveryCodes = codes
	return en, nil
}

func (s *Service) newFactors(a *store.Account, en *Enrolment, now time.Time) ([]store.Factor, []string, []string, error) {
	secret, err := NewTOTPSecret()
	if err != nil {
		return nil, nil, nil, err
	}
	codes, hashes, err := NewRecoveryCodes(10)
	if err != nil {
		return nil, nil, nil, err
	}
	en.TOTPSecret, en.TOTPURI = secret, TOTPURI(s.opt.Issuer, a.Username, secret)
	f := store.Factor{ID: randomID(), Account: a.ID, Kind: "totp", Label: "authenticator app", Secret: []byte(secret), Created: now}
	return []store.Factor{f}, codes, hashes, nil
}

// ResetMFA replaces an account's authenticators and recovery codes (lost
// phone) and ends its sessions.
func (s *Service) ResetMFA(ctx context.Context, username string) (*Enrolment, error) {
	a, err := s.account(ctx, username)
	if err != nil {
		return nil, err
	}
	en := &Enrolment{Username: a.Username}
	factors, codes, hashes, err := s.newFactors(a, en, s.opt.Now().UTC())
	if err != nil {
		return nil, err
	}
	if err := s.repo.ResetFactors(ctx, a.ID, factors, hashes); err != nil {
		return nil, err
	}
	en.RecoveryCodes = codes
	return en, nil
}

// SetPassword sets a new password (policy-checked) and ends the account's
// sessions.
func (s *Service) SetPassword(ctx context.Context, username, pw string) error {
	a, err := s.account(ctx, username)
	if err != nil {
		return err
	}
	if err := CheckPasswordPolicy(pw, a.Username); err != nil {
		return err
	}
	if a.PasswordHash, err = HashPassword(pw); err != nil {
		return err
	}
	a.Updated = s.opt.Now().UTC()
	if err := s.repo.UpdateAccount(ctx, a); err != nil {
		return err
	}
	return s.repo.RevokeAccountTokens(ctx, a.ID)
}

// SetStatus enables, disables or suspends an account; anything but active
// revokes its tokens at once.
func (s *Service) SetStatus(ctx context.Context, username, status, reason string) (*store.Account, error) {
	a, err := s.account(ctx, username)
	if err != nil {
		return nil, err
	}
	a.Status, a.StatusReason, a.Updated = status, reason, s.opt.Now().UTC()
	return a, s.repo.UpdateAccount(ctx, a)
}

func (s *Service) account(ctx context.Context, username string) (*store.Account, error) {
	a, err := s.repo.AccountByUsername(ctx, normUser(username))
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %q", ErrNoSuchAccount, username)
	}
	return a, err
}

// ErrStepUpFailed: a step-up code was wrong, replayed or not a TOTP code.
var ErrStepUpFailed = errors.New("the one-time code is wrong or was already used")

// StepUp checks a fresh TOTP code (not a recovery code: a step-up proves the
// authenticator is at hand now) for the username's active account. Each
// time step is accepted once, as at login.
func (s *Service) StepUp(ctx context.Context, username, otp string) error {
	a, err := s.repo.AccountByUsername(ctx, normUser(username))
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return ErrUnauthenticated
		}
		return err
	}
	if a.Status != store.StatusActive {
		return ErrUnauthenticated
	}
	if LooksLikeRecoveryCode(strings.TrimSpace(otp)) {
		return ErrStepUpFailed
	}
	ok, err := s.checkSecondFactor(ctx, a, otp, s.opt.Now())
	if err != nil {
		return err
	}
	if !ok {
		return ErrStepUpFailed
	}
	return nil
}
