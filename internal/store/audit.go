package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// AuditRecord is one audit log entry on its way to the store: Entry is the
// canonical bytes the Merkle tree hashes; the other fields are copies kept
// for searching. Index is set by AppendAudit.
type AuditRecord struct {
	At                               time.Time
	Account, Action, Client, Session string
	Patients                         []string
	Entry                            []byte
	Index                            int64
}

// AppendAudit appends records durably, in order, through the group-commit
// writer (many requests' entries share one transaction and one fsync), and
// sets their Index. Indexes are dense and follow commit order, across every
// instance sharing a PostgreSQL database.
func (s *SQL) AppendAudit(ctx context.Context, recs ...*AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	if s.auditFault != nil {
		if err := s.auditFault(); err != nil {
			return err
		}
	}
	return s.enqueue(ctx, &commitReq{audit: recs, done: make(chan error, 1)})
}

// SetAuditFault makes every later AppendAudit fail with what fail returns
// (nil: no fault). For tests of "no audit, no data".
func (s *SQL) SetAuditFault(fail func() error) { s.auditFault = fail }

// appendAudit writes the batch's audit records inside the batch transaction.
func (s *SQL) appendAudit(tx wtx, batch []*commitReq) error {
	n := 0
	for _, r := range batch {
		n += len(r.audit)
	}
	if n == 0 {
		return nil
	}
	if s.d.AuditLock != "" {
		if err := tx.raw(s.d.AuditLock); err != nil {
			return fmt.Errorf("store: audit lock: %w", err)
		}
	}
	var next int64
	if err := tx.QueryRow(`SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_log`).Scan(&next); err != nil {
		return fmt.Errorf("store: audit: %w", err)
	}
	rows := make([][]any, 0, n)
	var ps []string
	for _, r := range batch {
		for _, a := range r.audit {
			a.Index = next
			next++
			ps = ps[:0]
			for _, p := range a.Patients {
				if p != "" && !slices.Contains(ps, p) {
					ps = append(ps, p)
				}
			}
			rows = append(rows, []any{a.Index, micros(a.At), a.Account, a.Action, a.Client, a.Session, strings.Join(ps, " "), a.Entry})
		}
	}
	if err := s.insertRows(tx, "audit_log", "idx, at, account, action, client, session, patients, entry", rows); err != nil {
		return fmt.Errorf("store: audit: %w", err)
	}
	return nil
}

// Search keys of the audit log (audit_key.k): a kind letter, a space, the
// value. Client addresses and sessions are filtered on the log's columns,
// within the time window an incident gives: keying them too would double
// the cost of keys for searches that are rare and bounded in time.
//
// A key names a block of auditKeyBlock consecutive entries (audit_key.idx
// is the block's first index), not each entry: a busy account or an open
// chart puts many entries in one block, and keying every entry cost the
// writer about a tenth of a loaded server's CPU. A search reads the blocks
// of its key and keeps the entries whose columns match. Keys written
// before blocks name one entry each, and the search reads them the same
// way (the block that holds the entry).
const (
	keyPatient = "p "
	keyAccount = "a "
)

// auditKeyBlock is how many consecutive entries one search key names.
const auditKeyBlock = 64

// auditKeyEvery is how often the writer keys new audit entries.
const auditKeyEvery = time.Second

// auditKeyChunk is how many entries one IndexAudit transaction keys.
const auditKeyChunk = 5_000

// IndexAudit derives the search keys (patients, account)
// of the entries appended since the last call, in sorted batches: appends
// only write at the end of B-trees, and a batch of keys shares leaf pages.
// The writer does it every second; FindAudit does it first, so searches
// see every entry.
func (s *SQL) IndexAudit(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		s.wmu.Lock()
		more, err := s.indexAuditChunk(auditKeyChunk)
		s.wmu.Unlock()
		if err != nil || !more {
			return err
		}
	}
}

// indexAuditChunk keys up to max entries; more says whether entries are
// left. Call with wmu held.
func (s *SQL) indexAuditChunk(max int) (more bool, err error) {
	err = s.inTx(func(tx wtx) error {
		var upto, end int64
		if err := tx.QueryRow(`SELECT upto FROM audit_keyed WHERE id = 1` + s.d.ForUpdate).Scan(&upto); err != nil {
			return fmt.Errorf("store: audit keys: %w", err)
		}
		if err := tx.QueryRow(`SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_log`).Scan(&end); err != nil {
			return fmt.Errorf("store: audit keys: %w", err)
		}
		if end <= upto {
			return nil
		}
		to := min(end, upto+int64(max))
		more = to < end
		rows, err := tx.Query(`SELECT idx, account, patients FROM audit_log WHERE idx >= ? AND idx < ?`, upto, to)
		if err != nil {
			return fmt.Errorf("store: audit keys: %w", err)
		}
		type blockKey struct {
			k     string
			block int64
		}
		seen := map[blockKey]bool{}
		var keys [][]any
		add := func(k string, idx int64) {
			bk := blockKey{k, idx / auditKeyBlock * auditKeyBlock}
			if !seen[bk] {
				seen[bk] = true
				keys = append(keys, []any{bk.k, bk.block})
			}
		}
		for rows.Next() {
			var idx int64
			var account, patients string
			if err := rows.Scan(&idx, &account, &patients); err != nil {
				rows.Close()
				return fmt.Errorf("store: audit keys: %w", err)
			}
			for p := range strings.FieldsSeq(patients) {
				add(keyPatient+p, idx)
			}
			if account != "" {
				add(keyAccount+account, idx)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("store: audit keys: %w", err)
		}
		// The chunk before this one may have keyed its first block.
		if upto%auditKeyBlock != 0 && len(keys) > 0 {
			first := upto / auditKeyBlock * auditKeyBlock
			rows, err := tx.Query(`SELECT k FROM audit_key WHERE idx = ?`, first)
			if err != nil {
				return fmt.Errorf("store: audit keys: %w", err)
			}
			for rows.Next() {
				var k string
				if err := rows.Scan(&k); err != nil {
					rows.Close()
					return fmt.Errorf("store: audit keys: %w", err)
				}
				seen[blockKey{k, first}] = false // keyed already
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("store: audit keys: %w", err)
			}
			keys = slices.DeleteFunc(keys, func(r []any) bool {
				return r[1].(int64) == first && !seen[blockKey{r[0].(string), first}]
			})
		}
		slices.SortFunc(keys, func(a, b []any) int {
			if c := strings.Compare(a[0].(string), b[0].(string)); c != 0 {
				return c
			}
			return cmp.Compare(a[1].(int64), b[1].(int64))
		})
		if len(keys) == 0 {
			// Entries of no account and no patient (a failed login of an
			// unknown user): nothing to key. (json_each('null') would
			// yield one NULL row.)
		} else if s.d.JSONEach {
			b, err := json.Marshal(keys)
			if err != nil {
				return err
			}
			if err := tx.Exec(`INSERT INTO audit_key (k, idx) SELECT value->>0, value->>1 FROM json_each(?)`, string(b)); err != nil {
				return fmt.Errorf("store: audit keys: %w", err)
			}
		} else if err := s.insertRows(tx, "audit_key", "k, idx", keys); err != nil {
			return fmt.Errorf("store: audit keys: %w", err)
		}
		return tx.Exec(`UPDATE audit_keyed SET upto = ? WHERE id = 1`, to)
	})
	return more, err
}

// AuditSize is the number of entries in the log.
func (s *SQL) AuditSize(ctx context.Context) (int64, error) {
	var n int64
	err := s.rdb.QueryRowContext(ctx, `SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_log`).Scan(&n)
	return n, err
}

// AuditEntries calls fn for each entry with from <= idx < to (to < 0: to
// the end), in index order.
func (s *SQL) AuditEntries(ctx context.Context, from, to int64, fn func(idx int64, entry []byte) error) error {
	q := `SELECT idx, entry FROM audit_log WHERE idx >= ?`
	args := []any{from}
	if to >= 0 {
		q += ` AND idx < ?`
		args = append(args, to)
	}
	rows, err := s.rdb.QueryContext(ctx, s.q(q+` ORDER BY idx`), args...)
	if err != nil {
		return fmt.Errorf("store: audit: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var idx int64
		var e []byte
		if err := rows.Scan(&idx, &e); err != nil {
			return fmt.Errorf("store: audit: %w", err)
		}
		if err := fn(idx, e); err != nil {
			return err
		}
	}
	return rows.Err()
}

// AuditFilter selects entries.
type AuditFilter struct {
	Account, Client, Session, Patient, Action string
	Since, Until                              time.Time // zero: open
	Limit                                     int       // 0: no limit
}

// FindAudit returns the entries matching f, oldest first.
func (s *SQL) FindAudit(ctx context.Context, f AuditFilter) ([]AuditRow, error) {
	if err := s.IndexAudit(ctx); err != nil {
		return nil, err
	}
	// The patient or else the account drives the search through the
	// blocks audit_key names for it; the entries of those blocks are kept
	// if their columns match.
	q := `SELECT l.idx, l.entry, l.account, l.patients FROM audit_log l`
	var conds []string
	var args []any
	var key string
	switch {
	case f.Patient != "":
		key = keyPatient + f.Patient
	case f.Account != "":
		key = keyAccount + f.Account
	}
	if key != "" {
		q = `SELECT l.idx, l.entry, l.account, l.patients FROM (SELECT DISTINCT idx / ` + strconv.Itoa(auditKeyBlock) + ` AS b FROM audit_key WHERE k = ?) kb` +
			` JOIN audit_log l ON l.idx >= kb.b * ` + strconv.Itoa(auditKeyBlock) + ` AND l.idx < (kb.b + 1) * ` + strconv.Itoa(auditKeyBlock)
		args = append(args, key)
	}
	if f.Account != "" {
		conds = append(conds, `l.account = ?`)
		args = append(args, f.Account)
	}
	for _, c := range []struct{ col, v string }{{"l.client", f.Client}, {"l.session", f.Session}, {"l.action", f.Action}} {
		if c.v != "" {
			conds = append(conds, c.col+` = ?`)
			args = append(args, c.v)
		}
	}
	if !f.Since.IsZero() {
		conds = append(conds, `l.at >= ?`)
		args = append(args, micros(f.Since))
	}
	if !f.Until.IsZero() {
		conds = append(conds, `l.at < ?`)
		args = append(args, micros(f.Until))
	}
	for i, c := range conds {
		if i == 0 {
			q += ` WHERE ` + c
		} else {
			q += ` AND ` + c
		}
	}
	q += ` ORDER BY l.idx`
	if f.Limit > 0 && f.Patient == "" {
		q += fmt.Sprintf(` LIMIT %d`, f.Limit)
	}
	rows, err := s.rdb.QueryContext(ctx, s.q(q), args...)
	if err != nil {
		return nil, fmt.Errorf("store: audit: %w", err)
	}
	defer rows.Close()
	var out []AuditRow
	for rows.Next() {
		var r AuditRow
		var account, patients string
		if err := rows.Scan(&r.Index, &r.Entry, &account, &patients); err != nil {
			return nil, err
		}
		if f.Patient != "" && !slices.Contains(strings.Fields(patients), f.Patient) {
			continue // another entry of the patient's block
		}
		out = append(out, r)
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	return out, rows.Err()
}

// AuditRow is a stored entry.
type AuditRow struct {
	Index int64
	Entry []byte
}

// Checkpoint is a signed (size, root) of the audit tree.
type Checkpoint struct {
	Size    int64
	Root    []byte
	Note    string // the signed note
	Created time.Time
}

// AddCheckpoint stores a checkpoint (a second one of the same size is
// ignored: instances checkpoint the same tree alike).
func (s *SQL) AddCheckpoint(ctx context.Context, c *Checkpoint) error {
	return s.execAuth(ctx, func(tx wtx) error {
		return tx.Exec(`INSERT INTO audit_checkpoints (size, root, note, created) VALUES (?, ?, ?, ?) ON CONFLICT (size) DO NOTHING`,
			c.Size, c.Root, c.Note, micros(c.Created))
	})
}

// Checkpoints lists the stored checkpoints by size.
func (s *SQL) Checkpoints(ctx context.Context) ([]Checkpoint, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT size, root, note, created FROM audit_checkpoints ORDER BY size`)
	if err != nil {
		return nil, fmt.Errorf("store: checkpoints: %w", err)
	}
	defer rows.Close()
	var out []Checkpoint
	for rows.Next() {
		var c Checkpoint
		var at int64
		if err := rows.Scan(&c.Size, &c.Root, &c.Note, &at); err != nil {
			return nil, err
		}
		c.Created = fromMicros(at)
		out = append(out, c)
	}
	return out, rows.Err()
}

// LatestCheckpoint returns the largest checkpoint, or ErrNotFound.
func (s *SQL) LatestCheckpoint(ctx context.Context) (*Checkpoint, error) {
	var c Checkpoint
	var at int64
	err := s.rdb.QueryRowContext(ctx, `SELECT size, root, note, created FROM audit_checkpoints ORDER BY size DESC LIMIT 1`).Scan(&c.Size, &c.Root, &c.Note, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	c.Created = fromMicros(at)
	return &c, nil
}
