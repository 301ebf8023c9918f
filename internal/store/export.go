package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Export request statuses. A request is pending until a security officer
// decides; an approved request is downloaded once, or expires.
const (
	ExportPending    = "pending"
	ExportApproved   = "approved"
	ExportRejected   = "rejected"
	ExportDownloaded = "downloaded"
	ExportExpired    = "expired"
)

// ExportRequest is a bulk export awaiting, or past, a second person's
// approval. Accounts are ids. Since and Until (zero: open) bound the
// exported resources' lastUpdated. Expires is the approval deadline while
// pending, then the end of the download window. WatermarkKey derives the
// export's fingerprint (incident.Watermark).
type ExportRequest struct {
	ID, Requester          string
	Facility, FacilityName string
	Types                  []string
	Since, Until           time.Time
	Reason, Recipient      string
	Status                 string
	Created                time.Time
	DecidedBy              string
	Decided                time.Time
	DecisionNote           string
	Valid                  time.Duration // download window after approval
	Expires                time.Time
	MaxPatients            int
	WatermarkKey           []byte
	Downloaded             time.Time
	Patients, Rows         int
}

// execExport runs fn in a write transaction. Export requests are not
// security state that the token and reach caches hold: nothing to clear.
func (s *SQL) execExport(ctx context.Context, fn func(tx wtx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.inTx(fn)
}

const exportCols = `id, requester, facility, facility_name, types, since, until, reason, recipient, status, created, decided_by, decided, decision_note, valid_secs, expires, max_patients, watermark_key, downloaded_at, patient_count, row_count`

// optMicros is t in microseconds, 0 for the zero time.
func optMicros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return micros(t)
}

func optTime(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return fromMicros(v)
}

func scanExport(sc interface{ Scan(...any) error }) (*ExportRequest, error) {
	e := &ExportRequest{}
	var types string
	var since, until, created, decided, valid, expires, downloaded int64
	if err := sc.Scan(&e.ID, &e.Requester, &e.Facility, &e.FacilityName, &types, &since, &until, &e.Reason, &e.Recipient, &e.Status,
		&created, &e.DecidedBy, &decided, &e.DecisionNote, &valid, &expires, &e.MaxPatients, &e.WatermarkKey, &downloaded, &e.Patients, &e.Rows); err != nil {
		return nil, err
	}
	e.Types = split(types)
	e.Since, e.Until = optTime(since), optTime(until)
	e.Created, e.Decided, e.Expires, e.Downloaded = fromMicros(created), optTime(decided), fromMicros(expires), optTime(downloaded)
	e.Valid = time.Duration(valid) * time.Second
	return e, nil
}

// CreateExportRequest stores a new request (status as given: pending).
func (s *SQL) CreateExportRequest(ctx context.Context, e *ExportRequest) error {
	if len(e.WatermarkKey) < 16 {
		return fmt.Errorf("store: export request %s: watermark key too short", e.ID)
	}
	return s.execExport(ctx, func(tx wtx) error {
		err := tx.Exec(`INSERT INTO export_requests (`+exportCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			e.ID, e.Requester, e.Facility, e.FacilityName, join(e.Types), optMicros(e.Since), optMicros(e.Until), e.Reason, e.Recipient, e.Status,
			micros(e.Created), e.DecidedBy, optMicros(e.Decided), e.DecisionNote, int64(e.Valid/time.Second), micros(e.Expires), e.MaxPatients,
			e.WatermarkKey, optMicros(e.Downloaded), e.Patients, e.Rows)
		if err != nil {
			if s.d.IsUnique(err) {
				return fmt.Errorf("%w: export request %s", ErrExists, e.ID)
			}
			return fmt.Errorf("store: export request: %w", err)
		}
		return nil
	})
}

// ExportRequest returns one request or ErrNotFound.
func (s *SQL) ExportRequest(ctx context.Context, id string) (*ExportRequest, error) {
	e, err := scanExport(s.rdb.QueryRowContext(ctx, s.q(`SELECT `+exportCols+` FROM export_requests WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: export request: %w", err)
	}
	return e, nil
}

// ExportRequests lists requests, newest first: all of them, or those of one
// requester (account id).
func (s *SQL) ExportRequests(ctx context.Context, requester string) ([]*ExportRequest, error) {
	q := `SELECT ` + exportCols + ` FROM export_requests`
	var args []any
	if requester != "" {
		q += ` WHERE requester = ?`
		args = append(args, requester)
	}
	rows, err := s.rdb.QueryContext(ctx, s.q(q+` ORDER BY created DESC, id`), args...)
	if err != nil {
		return nil, fmt.Errorf("store: export requests: %w", err)
	}
	defer rows.Close()
	var out []*ExportRequest
	for rows.Next() {
		e, err := scanExport(rows)
		if err != nil {
			return nil, fmt.Errorf("store: export requests: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// DecideExportRequest approves (the download window then ends at expires)
// or rejects a request that is pending and not past its approval deadline
// at now. Otherwise ErrConflict (ErrNotFound if there is no such request).
func (s *SQL) DecideExportRequest(ctx context.Context, id string, approve bool, by, note string, now, expires time.Time) error {
	status := ExportRejected
	if approve {
		status = ExportApproved
	}
	return s.execExport(ctx, func(tx wtx) error {
		n, err := tx.ExecN(`UPDATE export_requests SET status = ?, decided_by = ?, decided = ?, decision_note = ?, expires = ?
			WHERE id = ? AND status = 'pending' AND expires > ?`, status, by, micros(now), note, micros(expires), id, micros(now))
		if err != nil {
			return fmt.Errorf("store: export request: %w", err)
		}
		if n == 0 {
			return exportMissingOrConflict(tx, id)
		}
		return nil
	})
}

func exportMissingOrConflict(tx wtx, id string) error {
	var x int
	if err := tx.QueryRow(`SELECT 1 FROM export_requests WHERE id = ?`, id).Scan(&x); errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	} else if err != nil {
		return fmt.Errorf("store: export request: %w", err)
	}
	return ErrConflict
}

// ExpireExportRequest marks a pending or approved request expired if its
// deadline has passed at now; it reports whether it did.
func (s *SQL) ExpireExportRequest(ctx context.Context, id string, now time.Time) (bool, error) {
	var done bool
	err := s.execExport(ctx, func(tx wtx) error {
		n, err := tx.ExecN(`UPDATE export_requests SET status = 'expired' WHERE id = ? AND status IN ('pending', 'approved') AND expires <= ?`, id, micros(now))
		done = n == 1
		return err
	})
	return done, err
}

// ClaimExport marks an approved, unexpired request downloaded at now, once:
// of two concurrent downloads (on any instance) one gets ErrConflict.
func (s *SQL) ClaimExport(ctx context.Context, id string, now time.Time) error {
	return s.execExport(ctx, func(tx wtx) error {
		n, err := tx.ExecN(`UPDATE export_requests SET status = 'downloaded', downloaded_at = ? WHERE id = ? AND status = 'approved' AND expires > ?`,
			micros(now), id, micros(now))
		if err != nil {
			return fmt.Errorf("store: export claim: %w", err)
		}
		if n == 0 {
			return exportMissingOrConflict(tx, id)
		}
		return nil
	})
}

// FinishExport records how many patients and rows a download carried.
func (s *SQL) FinishExport(ctx context.Context, id string, patients, rows int) error {
	return s.execExport(ctx, func(tx wtx) error {
		return tx.Exec(`UPDATE export_requests SET patient_count = ?, row_count = ? WHERE id = ?`, patients, rows, id)
	})
}

// exportWhere is the condition on alias r selecting the current resources
// of typ within sc whose lastUpdated is in [since, until) (zero: open).
func (s *SQL) exportWhere(ctx context.Context, typ string, sc *Scope, since, until time.Time) (string, []any, error) {
	if !patientBound(typ) {
		return "", nil, fmt.Errorf("store: export: %s is not patient data", typ)
	}
	if sc == nil {
		return "", nil, errors.New("store: export: a scope is required")
	}
	cond := "r.rtype = ? AND r.deleted = 0 AND r.patient IS NOT NULL AND r.patient <> ''"
	args := []any{typ}
	if !since.IsZero() {
		cond += " AND r.updated >= ?"
		args = append(args, micros(since))
	}
	if !until.IsZero() {
		cond += " AND r.updated < ?"
		args = append(args, micros(until))
	}
	f, fargs, err := s.filter(ctx, sc, typ)
	if err != nil {
		return "", nil, err
	}
	return cond + " AND " + f, append(args, fargs...), nil
}

// ExportPatients returns the distinct patients that have current resources
// of typ within sc, last updated in [since, until), at most limit of them
// (limit+1 tells the caller there are more).
func (s *SQL) ExportPatients(ctx context.Context, typ string, sc *Scope, since, until time.Time, limit int) ([]string, error) {
	cond, args, err := s.exportWhere(ctx, typ, sc, since, until)
	if err != nil {
		return nil, err
	}
	rows, err := s.rdb.QueryContext(ctx, s.q("SELECT DISTINCT r.patient FROM resources r WHERE "+cond+" LIMIT ?"), append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("store: export patients: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, fmt.Errorf("store: export patients: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// exportChunk is how many resources one query of ExportScan reads.
const exportChunk = 500

// ExportScan calls fn with each current resource of typ within sc, last
// updated in [since, until), in storage order, reading exportChunk at a
// time (keyset paging: a resource written meanwhile is seen at most once).
func (s *SQL) ExportScan(ctx context.Context, typ string, sc *Scope, since, until time.Time, fn func(*Resource) error) error {
	cond, args, err := s.exportWhere(ctx, typ, sc, since, until)
	if err != nil {
		return err
	}
	query := s.q("SELECT r.pk, r.id, r.ver, r.updated, r.patient, r.data FROM resources r WHERE r.pk > ? AND " + cond + " ORDER BY r.pk LIMIT ?")
	var after int64
	for {
		rows, err := s.rdb.QueryContext(ctx, query, append(append([]any{after}, args...), exportChunk)...)
		if err != nil {
			return fmt.Errorf("store: export: %w", err)
		}
		var chunk []*Resource
		for rows.Next() {
			r := &Resource{Type: typ}
			var upd int64
			var patient sql.NullString
			if err := rows.Scan(&after, &r.ID, &r.Version, &upd, &patient, &r.Data); err != nil {
				rows.Close()
				return fmt.Errorf("store: export: %w", err)
			}
			r.Updated, r.Patient = fromMicros(upd), patient.String
			chunk = append(chunk, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("store: export: %w", err)
		}
		// Decrypt and hand over after the rows are closed: fn may write
		// to the client, which can be slow.
		for _, r := range chunk {
			if r.Data, err = s.openData(r.Type, r.ID, r.Version, r.Data); err != nil {
				return fmt.Errorf("store: export: %w", err)
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(chunk) < exportChunk {
			return nil
		}
	}
}
