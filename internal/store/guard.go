package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The exfiltration guard's state (internal/guard) lives in the store so that
// every instance sharing a PostgreSQL database counts the same touches: a
// walk split across instances is stopped at the same total as on one.

// Alert is a guard alert for the security officer.
type Alert struct {
	ID                string
	At                time.Time
	Account, Username string
	Severity          string // "critical" (suspension), "warning" (flag for review)
	Action            string // what the guard did: suspend, step-up, flag
	Reason, Detail    string
	Status            string // open, acknowledged
	ReviewedBy, Note  string
	Reviewed          time.Time
}

// execGuard runs fn in a write transaction without clearing the caches of
// security state (guard counters are not tokens or relationships). On
// PostgreSQL the transaction first takes an advisory lock on the account, so
// that two instances counting for one account serialise.
func (s *SQL) execGuard(ctx context.Context, account string, fn func(tx wtx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.inTx(func(tx wtx) error {
		if s.d.Name == "postgres" && account != "" {
			var one int
			if err := tx.QueryRow(`SELECT 1 FROM pg_advisory_xact_lock(hashtext(?))`, "guard:"+account).Scan(&one); err != nil {
				return fmt.Errorf("store: guard lock: %w", err)
			}
		}
		return fn(tx)
	})
}

// GuardTouch counts the patients of one response for account: a patient not
// counted since fresh is counted now (at now). It returns how many of the
// account's patients were counted at or after each of since, and how many
// of patients this call counted.
func (s *SQL) GuardTouch(ctx context.Context, account string, patients []string, now, fresh time.Time, since []time.Time) (counts []int, added int, err error) {
	counts = make([]int, len(since))
	err = s.execGuard(ctx, account, func(tx wtx) error {
		added = 0
		for _, p := range patients {
			n, err := tx.ExecN(`INSERT INTO guard_touch (account, patient, at) VALUES (?, ?, ?)
				ON CONFLICT (account, patient) DO UPDATE SET at = excluded.at WHERE guard_touch.at < ?`,
				account, p, micros(now), micros(fresh))
			if err != nil {
				return fmt.Errorf("store: guard touch: %w", err)
			}
			added += int(n)
		}
		if added > 0 {
			if err := tx.Exec(`INSERT INTO guard_daily (account, day, n) VALUES (?, ?, ?)
				ON CONFLICT (account, day) DO UPDATE SET n = guard_daily.n + excluded.n`, account, dayOf(now), added); err != nil {
				return fmt.Errorf("store: guard daily: %w", err)
			}
		}
		for i, t := range since {
			if err := tx.QueryRow(`SELECT COUNT(*) FROM guard_touch WHERE account = ? AND at >= ?`, account, micros(t)).Scan(&counts[i]); err != nil {
				return fmt.Errorf("store: guard count: %w", err)
			}
		}
		return nil
	})
	return counts, added, err
}

func dayOf(t time.Time) int64 { return t.Unix() / 86400 }

// GuardBaseline returns the patients counted per day for account over the
// days days before now's day (today excluded), oldest first.
func (s *SQL) GuardBaseline(ctx context.Context, account string, now time.Time, days int) ([]int, error) {
	today := dayOf(now)
	out := make([]int, days)
	rows, err := s.rdb.QueryContext(ctx, s.q(`SELECT day, n FROM guard_daily WHERE account = ? AND day >= ? AND day < ?`), account, today-int64(days), today)
	if err != nil {
		return nil, fmt.Errorf("store: guard baseline: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var d, n int64
		if err := rows.Scan(&d, &n); err != nil {
			return nil, err
		}
		out[d-(today-int64(days))] = int(n)
	}
	return out, rows.Err()
}

// GuardEvent records one event of kind for account at now (unless now is
// zero) and returns how many such events happened at or after each of since.
func (s *SQL) GuardEvent(ctx context.Context, account, kind string, now time.Time, since []time.Time) ([]int, error) {
	counts := make([]int, len(since))
	err := s.execGuard(ctx, account, func(tx wtx) error {
		if !now.IsZero() {
			if err := tx.Exec(`INSERT INTO guard_event (account, kind, at) VALUES (?, ?, ?)`, account, kind, micros(now)); err != nil {
				return fmt.Errorf("store: guard event: %w", err)
			}
		}
		for i, t := range since {
			if err := tx.QueryRow(`SELECT COUNT(*) FROM guard_event WHERE account = ? AND kind = ? AND at >= ?`, account, kind, micros(t)).Scan(&counts[i]); err != nil {
				return fmt.Errorf("store: guard event: %w", err)
			}
		}
		return nil
	})
	return counts, err
}

// GuardLast returns when account last had an event of each kind (zero:
// never).
func (s *SQL) GuardLast(ctx context.Context, account string, kinds ...string) ([]time.Time, error) {
	out := make([]time.Time, len(kinds))
	for i, k := range kinds {
		var at sql.NullInt64
		if err := s.rdb.QueryRowContext(ctx, s.q(`SELECT MAX(at) FROM guard_event WHERE account = ? AND kind = ?`), account, k).Scan(&at); err != nil {
			return nil, fmt.Errorf("store: guard last: %w", err)
		}
		if at.Valid {
			out[i] = fromMicros(at.Int64)
		}
	}
	return out, nil
}

// GuardAccounts returns how many distinct accounts had an event of kind at
// or after since (group-level alarms).
func (s *SQL) GuardAccounts(ctx context.Context, kind string, since time.Time) (int, error) {
	var n int
	err := s.rdb.QueryRowContext(ctx, s.q(`SELECT COUNT(DISTINCT account) FROM guard_event WHERE kind = ? AND at >= ?`), kind, micros(since)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: guard accounts: %w", err)
	}
	return n, nil
}

// GuardForget drops guard counts older than before (housekeeping).
func (s *SQL) GuardForget(ctx context.Context, before time.Time) error {
	return s.execGuard(ctx, "", func(tx wtx) error {
		if err := tx.Exec(`DELETE FROM guard_touch WHERE at < ?`, micros(before)); err != nil {
			return err
		}
		if err := tx.Exec(`DELETE FROM guard_daily WHERE day < ?`, dayOf(before)); err != nil {
			return err
		}
		return tx.Exec(`DELETE FROM guard_event WHERE at < ?`, micros(before))
	})
}

// RecordStepUp notes that session proved a fresh second factor at t.
func (s *SQL) RecordStepUp(ctx context.Context, session, account string, t time.Time) error {
	return s.execGuard(ctx, account, func(tx wtx) error {
		return tx.Exec(`INSERT INTO step_ups (session, account, at) VALUES (?, ?, ?)
			ON CONFLICT (session) DO UPDATE SET at = excluded.at`, session, account, micros(t))
	})
}

// SteppedUp returns when session last proved a fresh second factor (zero:
// never).
func (s *SQL) SteppedUp(ctx context.Context, session string) (time.Time, error) {
	var at int64
	err := s.rdb.QueryRowContext(ctx, s.q(`SELECT at FROM step_ups WHERE session = ?`), session).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("store: step-up: %w", err)
	}
	return fromMicros(at), nil
}

// Suspend suspends account (until a security officer reviews it) and
// revokes all its tokens, in one transaction. It reports whether the
// account was not already suspended.
func (s *SQL) Suspend(ctx context.Context, account, reason string, now time.Time) (bool, error) {
	var changed bool
	err := s.execAuth(ctx, func(tx wtx) error {
		n, err := tx.ExecN(`UPDATE accounts SET status = ?, status_reason = ?, updated = ? WHERE id = ? AND status <> ?`,
			StatusSuspended, reason, micros(now), account, StatusSuspended)
		if err != nil {
			return fmt.Errorf("store: suspend: %w", err)
		}
		changed = n > 0
		return tx.Exec(`UPDATE tokens SET revoked = 1 WHERE account = ?`, account)
	})
	return changed, err
}

// AddAlert stores a guard alert.
func (s *SQL) AddAlert(ctx context.Context, a *Alert) error {
	if a.Status == "" {
		a.Status = "open"
	}
	return s.execGuard(ctx, "", func(tx wtx) error {
		return tx.Exec(`INSERT INTO guard_alerts (id, at, account, username, severity, action, reason, detail, status, reviewed_by, reviewed, note)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '', 0, '')`,
			a.ID, micros(a.At), a.Account, a.Username, a.Severity, a.Action, a.Reason, a.Detail, a.Status)
	})
}

const alertCols = `id, at, account, username, severity, action, reason, detail, status, reviewed_by, reviewed, note`

// Alerts lists alerts, newest first: all, or only those with status, or only
// those of account.
func (s *SQL) Alerts(ctx context.Context, status, account string, limit int) ([]*Alert, error) {
	q := `SELECT ` + alertCols + ` FROM guard_alerts WHERE 1 = 1`
	var args []any
	if status != "" {
		q += ` AND status = ?`
		args = append(args, status)
	}
	if account != "" {
		q += ` AND account = ?`
		args = append(args, account)
	}
	if limit <= 0 {
		limit = 1000
	}
	q += fmt.Sprintf(` ORDER BY at DESC, id LIMIT %d`, limit)
	rows, err := s.rdb.QueryContext(ctx, s.q(q), args...)
	if err != nil {
		return nil, fmt.Errorf("store: alerts: %w", err)
	}
	defer rows.Close()
	var out []*Alert
	for rows.Next() {
		var a Alert
		var at, rev int64
		if err := rows.Scan(&a.ID, &at, &a.Account, &a.Username, &a.Severity, &a.Action, &a.Reason, &a.Detail, &a.Status, &a.ReviewedBy, &rev, &a.Note); err != nil {
			return nil, err
		}
		a.At = fromMicros(at)
		if rev != 0 {
			a.Reviewed = fromMicros(rev)
		}
		out = append(out, &a)
	}
	return out, rows.Err()
}

// AcknowledgeAlert closes an open alert with the reviewer and a note.
func (s *SQL) AcknowledgeAlert(ctx context.Context, id, by, note string, now time.Time) error {
	return s.execGuard(ctx, "", func(tx wtx) error {
		n, err := tx.ExecN(`UPDATE guard_alerts SET status = 'acknowledged', reviewed_by = ?, reviewed = ?, note = ? WHERE id = ? AND status = 'open'`,
			by, micros(now), note, id)
		if err != nil {
			return fmt.Errorf("store: alert: %w", err)
		}
		if n == 0 {
			var st string
			if err := tx.QueryRow(`SELECT status FROM guard_alerts WHERE id = ?`, id).Scan(&st); errors.Is(err, sql.ErrNoRows) {
				return ErrNotFound
			}
			return ErrExists // already acknowledged
		}
		return nil
	})
}

// AddCanaries registers canary patients (patient id -> facility).
func (s *SQL) AddCanaries(ctx context.Context, canaries map[string]string) error {
	return s.execGuard(ctx, "", func(tx wtx) error {
		for p, f := range canaries {
			if err := tx.Exec(`INSERT INTO canaries (patient, facility) VALUES (?, ?) ON CONFLICT (patient) DO NOTHING`, p, f); err != nil {
				return fmt.Errorf("store: canaries: %w", err)
			}
		}
		return nil
	})
}

// Canaries returns the canary patients (patient id -> facility).
func (s *SQL) Canaries(ctx context.Context) (map[string]string, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT patient, facility FROM canaries`)
	if err != nil {
		return nil, fmt.Errorf("store: canaries: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var p, f string
		if err := rows.Scan(&p, &f); err != nil {
			return nil, err
		}
		out[p] = f
	}
	return out, rows.Err()
}
