package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Security state lives in the store, not in memory, so that every instance
// sharing a PostgreSQL database sees a revocation or a suspension on its next
// request. An embedded SQLite store is owned by one process (flock), which
// may therefore cache token lookups; every change goes through this process
// and clears that cache.

// Account statuses.
const (
	StatusActive    = "active"
	StatusDisabled  = "disabled"  // by an administrator
	StatusSuspended = "suspended" // by the guard or a security officer, until reviewed
)

// Account is a staff member's login.
type Account struct {
	ID, Username string
	Practitioner string // Practitioner id ("" for accounts with no clinical identity)
	Display      string
	Roles        []string
	Facilities   []string // Organization ids
	PasswordHash string   // argon2id PHC string; "" means no password set yet
	Status       string
	StatusReason string
	Created      time.Time
	Updated      time.Time
}

// Factor is a second authentication factor. Kind "totp" stores the shared
// secret; a WebAuthn credential fits the same row (Secret: the credential,
// Counter: its signature counter).
type Factor struct {
	ID, Account, Kind, Label string
	Secret                   []byte
	Confirmed                bool
	Counter                  int64 // TOTP: last accepted time step (replays are refused)
	Created                  time.Time
}

// Token is a bearer token, known to the store only by its hash.
type Token struct {
	Hash, Kind, Account, Session string
	Scopes, Client               string
	Created, Expires             time.Time
	Revoked                      bool
}

// Throttle is the login back-off state of one key.
type Throttle struct {
	Failures int
	Until    time.Time // no attempt is evaluated before this
}

// RoleRequest is a role change awaiting a second administrator.
type RoleRequest struct {
	ID, Account, Op, Role, Facility string // Op: "grant" or "revoke"
	RequestedBy                     string
	Created                         time.Time
	Status                          string // pending, approved, rejected
	DecidedBy                       string
	Decided                         time.Time
}

// BreakGlass is an emergency access grant to one patient.
type BreakGlass struct {
	ID, Account, Patient, Reason, Detail string
	Created, Expires                     time.Time
	ReviewedBy, ReviewNote               string
	Reviewed                             time.Time
}

// ErrExists: a unique key (username) is taken.
var ErrExists = errors.New("store: already exists")

// authCache caches token lookups for a single-process store.
type authCache struct {
	mu sync.RWMutex
	m  map[string]tokenEntry
}

type tokenEntry struct {
	t *Token
	a *Account
}

func (s *SQL) authInvalidate() {
	if s.auth == nil {
		return
	}
	s.auth.mu.Lock()
	clear(s.auth.m)
	s.auth.mu.Unlock()
}

// execAuth runs fn in a write transaction on the writer connection and
// clears cached security state.
func (s *SQL) execAuth(ctx context.Context, fn func(tx wtx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	defer s.authInvalidate()
	defer s.relationshipsChanged() // break-the-glass grants, account facilities
	return s.inTx(fn)
}

func split(s string) []string { return strings.Fields(s) }
func join(v []string) string  { return strings.Join(v, " ") }

const accountCols = `id, username, practitioner, display, roles, facilities, pwhash, status, status_reason, created, updated`

func scanAccount(sc interface{ Scan(...any) error }) (*Account, error) {
	a := &Account{}
	var roles, facs string
	var created, updated int64
	if err := sc.Scan(&a.ID, &a.Username, &a.Practitioner, &a.Display, &roles, &facs, &a.PasswordHash, &a.Status, &a.StatusReason, &created, &updated); err != nil {
		return nil, err
	}
	a.Roles, a.Facilities = split(roles), split(facs)
	a.Created, a.Updated = fromMicros(created), fromMicros(updated)
	return a, nil
}

// CreateAccount stores a new account with its factors and hashed recovery
// codes. A taken username is ErrExists.
func (s *SQL) CreateAccount(ctx context.Context, a *Account, factors []Factor, recovery []string) error {
	return s.execAuth(ctx, func(tx wtx) error {
		err := tx.Exec(`INSERT INTO accounts (`+accountCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			a.ID, a.Username, a.Practitioner, a.Display, join(a.Roles), join(a.Facilities), a.PasswordHash, a.Status, a.StatusReason, micros(a.Created), micros(a.Updated))
		if err != nil {
			if s.d.IsUnique(err) {
				return fmt.Errorf("%w: username %q", ErrExists, a.Username)
			}
			return fmt.Errorf("store: account: %w", err)
		}
		return insertFactors(tx, factors, recovery, a.ID)
	})
}

// CreateAccounts stores many accounts at once (seeding), skipping none: a
// taken username fails the whole call.
func (s *SQL) CreateAccounts(ctx context.Context, as []*Account) error {
	return s.execAuth(ctx, func(tx wtx) error {
		rows := make([][]any, len(as))
		for i, a := range as {
			rows[i] = []any{a.ID, a.Username, a.Practitioner, a.Display, join(a.Roles), join(a.Facilities), a.PasswordHash, a.Status, a.StatusReason, micros(a.Created), micros(a.Updated)}
		}
		if err := s.insertRows(tx, "accounts", accountCols, rows); err != nil {
			if s.d.IsUnique(err) {
				return fmt.Errorf("%w: a username is taken", ErrExists)
			}
			return fmt.Errorf("store: accounts: %w", err)
		}
		return nil
	})
}

func insertFactors(tx wtx, factors []Factor, recovery []string, account string) error {
	for _, f := range factors {
		if err := tx.Exec(`INSERT INTO mfa_factors (id, account, kind, label, secret, confirmed, counter, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			f.ID, f.Account, f.Kind, f.Label, f.Secret, bool01(f.Confirmed), f.Counter, micros(f.Created)); err != nil {
			return fmt.Errorf("store: factor: %w", err)
		}
	}
	for _, h := range recovery {
		if err := tx.Exec(`INSERT INTO recovery_codes (account, hash) VALUES (?, ?)`, account, h); err != nil {
			return fmt.Errorf("store: recovery code: %w", err)
		}
	}
	return nil
}

// AccountByUsername returns the account or ErrNotFound.
func (s *SQL) AccountByUsername(ctx context.Context, username string) (*Account, error) {
	return s.account(ctx, "username", username)
}

// AccountByID returns the account or ErrNotFound.
func (s *SQL) AccountByID(ctx context.Context, id string) (*Account, error) {
	return s.account(ctx, "id", id)
}

func (s *SQL) account(ctx context.Context, col, v string) (*Account, error) {
	a, err := scanAccount(s.rdb.QueryRowContext(ctx, s.q(`SELECT `+accountCols+` FROM accounts WHERE `+col+` = ?`), v))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: account: %w", err)
	}
	return a, nil
}

// Accounts lists every account, by username.
func (s *SQL) Accounts(ctx context.Context) ([]*Account, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+accountCols+` FROM accounts ORDER BY username`)
	if err != nil {
		return nil, fmt.Errorf("store: accounts: %w", err)
	}
	defer rows.Close()
	var out []*Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, fmt.Errorf("store: accounts: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// UpdateAccount writes an account's mutable fields. If its status is no
// longer active, its tokens are revoked in the same transaction.
func (s *SQL) UpdateAccount(ctx context.Context, a *Account) error {
	return s.execAuth(ctx, func(tx wtx) error {
		n, err := tx.ExecN(`UPDATE accounts SET practitioner = ?, display = ?, roles = ?, facilities = ?, pwhash = ?, status = ?, status_reason = ?, updated = ? WHERE id = ?`,
			a.Practitioner, a.Display, join(a.Roles), join(a.Facilities), a.PasswordHash, a.Status, a.StatusReason, micros(a.Updated), a.ID)
		if err != nil {
			return fmt.Errorf("store: account: %w", err)
		}
		if n == 0 {
			return ErrNotFound
		}
		if a.Status != StatusActive {
			return tx.Exec(`UPDATE tokens SET revoked = 1 WHERE account = ?`, a.ID)
		}
		return nil
	})
}

// Factors returns an account's second factors.
func (s *SQL) Factors(ctx context.Context, account string) ([]Factor, error) {
	rows, err := s.rdb.QueryContext(ctx, s.q(`SELECT id, account, kind, label, secret, confirmed, counter, created FROM mfa_factors WHERE account = ? ORDER BY created, id`), account)
	if err != nil {
		return nil, fmt.Errorf("store: factors: %w", err)
	}
	defer rows.Close()
	var out []Factor
	for rows.Next() {
		var f Factor
		var conf int
		var created int64
		if err := rows.Scan(&f.ID, &f.Account, &f.Kind, &f.Label, &f.Secret, &conf, &f.Counter, &created); err != nil {
			return nil, fmt.Errorf("store: factors: %w", err)
		}
		f.Confirmed, f.Created = conf != 0, fromMicros(created)
		out = append(out, f)
	}
	return out, rows.Err()
}

// ResetFactors replaces an account's factors and recovery codes and revokes
// its tokens (a lost or compromised authenticator).
func (s *SQL) ResetFactors(ctx context.Context, account string, factors []Factor, recovery []string) error {
	return s.execAuth(ctx, func(tx wtx) error {
		for _, q := range []string{`DELETE FROM mfa_factors WHERE account = ?`, `DELETE FROM recovery_codes WHERE account = ?`, `UPDATE tokens SET revoked = 1 WHERE account = ?`} {
			if err := tx.Exec(q, account); err != nil {
				return fmt.Errorf("store: reset factors: %w", err)
			}
		}
		return insertFactors(tx, factors, recovery, account)
	})
}

// SetPendingFactor replaces the account's factors of f's kind with f,
// leaving its other factors, recovery codes and tokens alone (an
// authenticator being enrolled, not yet proven).
func (s *SQL) SetPendingFactor(ctx context.Context, f Factor) error {
	return s.execAuth(ctx, func(tx wtx) error {
		if err := tx.Exec(`DELETE FROM mfa_factors WHERE account = ? AND kind = ?`, f.Account, f.Kind); err != nil {
			return fmt.Errorf("store: pending factor: %w", err)
		}
		return insertFactors(tx, []Factor{f}, nil, f.Account)
	})
}

// AdvanceFactor records that a factor was used at counter (a TOTP time
// step): it succeeds only if counter is beyond the last one used, so a code
// is accepted once, across all instances. The first use confirms the factor.
func (s *SQL) AdvanceFactor(ctx context.Context, id string, counter int64) (bool, error) {
	var ok bool
	err := s.execAuth(ctx, func(tx wtx) error {
		n, err := tx.ExecN(`UPDATE mfa_factors SET counter = ?, confirmed = 1 WHERE id = ? AND counter < ?`, counter, id, counter)
		ok = n == 1
		return err
	})
	return ok, err
}

// UseRecoveryCode consumes a recovery code: true once, false after.
func (s *SQL) UseRecoveryCode(ctx context.Context, account, hash string) (bool, error) {
	var ok bool
	err := s.execAuth(ctx, func(tx wtx) error {
		n, err := tx.ExecN(`DELETE FROM recovery_codes WHERE account = ? AND hash = ?`, account, hash)
		ok = n == 1
		return err
	})
	return ok, err
}

// RecoveryCodesLeft counts an account's unused recovery codes.
func (s *SQL) RecoveryCodesLeft(ctx context.Context, account string) (int, error) {
	var n int
	err := s.rdb.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM recovery_codes WHERE account = ?`), account).Scan(&n)
	return n, err
}

// InsertTokens stores tokens (an access token and its refresh token).
func (s *SQL) InsertTokens(ctx context.Context, ts ...*Token) error {
	return s.execAuth(ctx, func(tx wtx) error {
		for _, t := range ts {
			if err := tx.Exec(`INSERT INTO tokens (hash, kind, account, session, scopes, client, created, expires, revoked) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				t.Hash, t.Kind, t.Account, t.Session, t.Scopes, t.Client, micros(t.Created), micros(t.Expires), bool01(t.Revoked)); err != nil {
				return fmt.Errorf("store: token: %w", err)
			}
		}
		return nil
	})
}

// LookupToken returns a token and its account, or ErrNotFound. Expiry,
// revocation and the account's status are the caller's to check.
func (s *SQL) LookupToken(ctx context.Context, hash string) (*Token, *Account, error) {
	if s.auth != nil {
		s.auth.mu.RLock()
		e, ok := s.auth.m[hash]
		s.auth.mu.RUnlock()
		if ok {
			return e.t, e.a, nil
		}
	}
	row := s.rdb.QueryRowContext(ctx, s.q(`SELECT t.kind, t.account, t.session, t.scopes, t.client, t.created, t.expires, t.revoked,
		a.id, a.username, a.practitioner, a.display, a.roles, a.facilities, a.pwhash, a.status, a.status_reason, a.created, a.updated
		FROM tokens t JOIN accounts a ON a.id = t.account WHERE t.hash = ?`), hash)
	t := &Token{Hash: hash}
	a := &Account{}
	var tc, te int64
	var rev int
	var roles, facs string
	var ac, au int64
	err := row.Scan(&t.Kind, &t.Account, &t.Session, &t.Scopes, &t.Client, &tc, &te, &rev,
		&a.ID, &a.Username, &a.Practitioner, &a.Display, &roles, &facs, &a.PasswordHash, &a.Status, &a.StatusReason, &ac, &au)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, ErrNotFound
	}
	if err != nil {
		return nil, nil, fmt.Errorf("store: token: %w", err)
	}
	t.Created, t.Expires, t.Revoked = fromMicros(tc), fromMicros(te), rev != 0
	a.Roles, a.Facilities = split(roles), split(facs)
	a.Created, a.Updated = fromMicros(ac), fromMicros(au)
	if s.auth != nil {
		s.auth.mu.Lock()
		if len(s.auth.m) > 100_000 {
			clear(s.auth.m)
		}
		s.auth.m[hash] = tokenEntry{t, a}
		s.auth.mu.Unlock()
	}
	return t, a, nil
}

// ConsumeToken revokes a token if it is still live and reports whether it
// was (refresh-token rotation: a refresh token works once).
func (s *SQL) ConsumeToken(ctx context.Context, hash string) (bool, error) {
	var ok bool
	err := s.execAuth(ctx, func(tx wtx) error {
		n, err := tx.ExecN(`UPDATE tokens SET revoked = 1 WHERE hash = ? AND revoked = 0`, hash)
		ok = n == 1
		return err
	})
	return ok, err
}

// RevokeSession revokes every token of a session.
func (s *SQL) RevokeSession(ctx context.Context, session string) error {
	return s.execAuth(ctx, func(tx wtx) error {
		return tx.Exec(`UPDATE tokens SET revoked = 1 WHERE session = ?`, session)
	})
}

// RevokeAccountTokens revokes every token of an account.
func (s *SQL) RevokeAccountTokens(ctx context.Context, account string) error {
	return s.execAuth(ctx, func(tx wtx) error {
		return tx.Exec(`UPDATE tokens SET revoked = 1 WHERE account = ?`, account)
	})
}

// ThrottleState returns the back-off state of keys (absent keys: zero).
func (s *SQL) ThrottleState(ctx context.Context, keys ...string) (map[string]Throttle, error) {
	out := map[string]Throttle{}
	if len(keys) == 0 {
		return out, nil
	}
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = k
	}
	rows, err := s.rdb.QueryContext(ctx, s.q(`SELECT key, failures, until FROM throttle WHERE key IN (`+placeholders(len(keys))+`)`), args...)
	if err != nil {
		return nil, fmt.Errorf("store: throttle: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var th Throttle
		var until int64
		if err := rows.Scan(&k, &th.Failures, &until); err != nil {
			return nil, err
		}
		th.Until = fromMicros(until)
		out[k] = th
	}
	return out, rows.Err()
}

// ThrottleFailure counts a failed attempt for each key and sets its
// back-off to now + backoff(failures).
func (s *SQL) ThrottleFailure(ctx context.Context, now time.Time, backoff func(failures int) time.Duration, keys ...string) error {
	return s.execAuth(ctx, func(tx wtx) error {
		for _, k := range keys {
			var n int
			err := tx.QueryRow(`SELECT failures FROM throttle WHERE key = ?`+s.d.ForUpdate, k).Scan(&n)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("store: throttle: %w", err)
			}
			n++
			until := micros(now.Add(backoff(n)))
			if err := tx.Exec(`INSERT INTO throttle (key, failures, until, updated) VALUES (?, ?, ?, ?)
				ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, until = excluded.until, updated = excluded.updated`, k, n, until, micros(now)); err != nil {
				return fmt.Errorf("store: throttle: %w", err)
			}
		}
		return nil
	})
}

// ThrottleReset forgets the failures of keys (after a successful login).
func (s *SQL) ThrottleReset(ctx context.Context, keys ...string) error {
	return s.execAuth(ctx, func(tx wtx) error {
		for _, k := range keys {
			if err := tx.Exec(`DELETE FROM throttle WHERE key = ?`, k); err != nil {
				return fmt.Errorf("store: throttle: %w", err)
			}
		}
		return nil
	})
}

const roleRequestCols = `id, account, op, role, facility, requested_by, created, status, decided_by, decided`

func scanRoleRequest(sc interface{ Scan(...any) error }) (*RoleRequest, error) {
	r := &RoleRequest{}
	var c, d int64
	if err := sc.Scan(&r.ID, &r.Account, &r.Op, &r.Role, &r.Facility, &r.RequestedBy, &c, &r.Status, &r.DecidedBy, &d); err != nil {
		return nil, err
	}
	r.Created = fromMicros(c)
	if d != 0 {
		r.Decided = fromMicros(d)
	}
	return r, nil
}

// CreateRoleRequest stores a pending role change.
func (s *SQL) CreateRoleRequest(ctx context.Context, r *RoleRequest) error {
	return s.execAuth(ctx, func(tx wtx) error {
		return tx.Exec(`INSERT INTO role_requests (`+roleRequestCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.ID, r.Account, r.Op, r.Role, r.Facility, r.RequestedBy, micros(r.Created), r.Status, r.DecidedBy, 0)
	})
}

// RoleRequests lists role requests with status ("" for all), newest first.
func (s *SQL) RoleRequests(ctx context.Context, status string) ([]*RoleRequest, error) {
	q := `SELECT ` + roleRequestCols + ` FROM role_requests`
	var args []any
	if status != "" {
		q += ` WHERE status = ?`
		args = append(args, status)
	}
	rows, err := s.rdb.QueryContext(ctx, s.q(q+` ORDER BY created DESC, id`), args...)
	if err != nil {
		return nil, fmt.Errorf("store: role requests: %w", err)
	}
	defer rows.Close()
	var out []*RoleRequest
	for rows.Next() {
		r, err := scanRoleRequest(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// RoleRequest returns one request or ErrNotFound.
func (s *SQL) RoleRequest(ctx context.Context, id string) (*RoleRequest, error) {
	r, err := scanRoleRequest(s.rdb.QueryRowContext(ctx, s.q(`SELECT `+roleRequestCols+` FROM role_requests WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return r, err
}

// DecideRoleRequest approves or rejects a pending request; approving applies
// it to the account (roles, and the facility if given) in the same
// transaction. A request that is no longer pending is ErrConflict.
func (s *SQL) DecideRoleRequest(ctx context.Context, id string, approve bool, by string, now time.Time) error {
	status := "rejected"
	if approve {
		status = "approved"
	}
	return s.execAuth(ctx, func(tx wtx) error {
		n, err := tx.ExecN(`UPDATE role_requests SET status = ?, decided_by = ?, decided = ? WHERE id = ? AND status = 'pending'`, status, by, micros(now), id)
		if err != nil {
			return fmt.Errorf("store: role request: %w", err)
		}
		if n == 0 {
			return ErrConflict
		}
		if !approve {
			return nil
		}
		var acct, op, role, fac, roles, facs string
		if err := tx.QueryRow(`SELECT r.account, r.op, r.role, r.facility, a.roles, a.facilities FROM role_requests r JOIN accounts a ON a.id = r.account WHERE r.id = ?`, id).
			Scan(&acct, &op, &role, &fac, &roles, &facs); err != nil {
			return fmt.Errorf("store: role request: %w", err)
		}
		rs, fs := split(roles), split(facs)
		switch op {
		case "grant":
			rs = addUnique(rs, role)
			if fac != "" {
				fs = addUnique(fs, fac)
			}
		case "revoke":
			rs = remove(rs, role)
		}
		return tx.Exec(`UPDATE accounts SET roles = ?, facilities = ?, updated = ? WHERE id = ?`, join(rs), join(fs), micros(now), acct)
	})
}

func addUnique(v []string, s string) []string {
	for _, x := range v {
		if x == s {
			return v
		}
	}
	return append(v, s)
}

func remove(v []string, s string) []string {
	out := v[:0]
	for _, x := range v {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

const breakGlassCols = `id, account, patient, reason, detail, created, expires, reviewed_by, reviewed, review_note`

// CreateBreakGlass stores an emergency access grant.
func (s *SQL) CreateBreakGlass(ctx context.Context, g *BreakGlass) error {
	return s.execAuth(ctx, func(tx wtx) error {
		return tx.Exec(`INSERT INTO break_glass (`+breakGlassCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			g.ID, g.Account, g.Patient, g.Reason, g.Detail, micros(g.Created), micros(g.Expires), "", 0, "")
	})
}

// BreakGlasses lists grants, newest first: all, or only those not yet
// reviewed, or those of one account.
func (s *SQL) BreakGlasses(ctx context.Context, unreviewedOnly bool, account string) ([]*BreakGlass, error) {
	q := `SELECT ` + breakGlassCols + ` FROM break_glass WHERE 1 = 1`
	var args []any
	if unreviewedOnly {
		q += ` AND reviewed = 0`
	}
	if account != "" {
		q += ` AND account = ?`
		args = append(args, account)
	}
	rows, err := s.rdb.QueryContext(ctx, s.q(q+` ORDER BY created DESC, id`), args...)
	if err != nil {
		return nil, fmt.Errorf("store: break-glass: %w", err)
	}
	defer rows.Close()
	var out []*BreakGlass
	for rows.Next() {
		g := &BreakGlass{}
		var c, e, r int64
		if err := rows.Scan(&g.ID, &g.Account, &g.Patient, &g.Reason, &g.Detail, &c, &e, &g.ReviewedBy, &r, &g.ReviewNote); err != nil {
			return nil, err
		}
		g.Created, g.Expires = fromMicros(c), fromMicros(e)
		if r != 0 {
			g.Reviewed = fromMicros(r)
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

// ReviewBreakGlass records a security officer's review. ErrNotFound if no
// such grant, ErrConflict if already reviewed.
func (s *SQL) ReviewBreakGlass(ctx context.Context, id, by, note string, now time.Time) error {
	return s.execAuth(ctx, func(tx wtx) error {
		n, err := tx.ExecN(`UPDATE break_glass SET reviewed_by = ?, reviewed = ?, review_note = ? WHERE id = ? AND reviewed = 0`, by, micros(now), note, id)
		if err != nil {
			return fmt.Errorf("store: break-glass: %w", err)
		}
		if n == 0 {
			var x int
			if err := tx.QueryRow(`SELECT 1 FROM break_glass WHERE id = ?`, id).Scan(&x); errors.Is(err, sql.ErrNoRows) {
				return ErrNotFound
			}
			return ErrConflict
		}
		return nil
	})
}
