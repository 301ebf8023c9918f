package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"carnet/internal/fhir"
)

// Dialect is what differs between the SQL back ends.
type Dialect struct {
	Name string
	// Placeholders: "?" (SQLite) or "$n" (PostgreSQL).
	Dollar bool
	// ForUpdate is appended to the version check of updates ("FOR UPDATE").
	ForUpdate string
	// IsUnique reports a unique-constraint violation.
	IsUnique func(error) bool
	// Unindexed marks a column term so the planner does not drive the query
	// from it (SQLite: unary plus); used when index filters are selective.
	Unindexed func(col string) string
	// BulkTx runs at the start of each bulk-load transaction (PostgreSQL:
	// asynchronous commit; the load is made durable at its end).
	BulkTx string
	// BulkStart and BulkEnd run on the writer around a bulk load (SQLite:
	// synchronous off, then a full checkpoint and synchronous back on).
	BulkStart, BulkEnd []string
}

// SQL is the Store shared by the SQL back ends. Reads use rdb; writes go
// through a single writer loop on wdb (which may be the same pool).
type SQL struct {
	d        Dialect
	rdb, wdb *sql.DB
	queue    chan *commitReq
	stop     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
	closeFns []func() error

	readStmt *sql.Stmt
	qcache   sync.Map // string -> rebound string
}

type commitReq struct {
	ws   []Write
	done chan error
}

// maxBatch bounds how many Commit calls share one transaction.
const maxBatch = 256

// secondary are the indexes a bulk load drops and builds again at its end
// (one sorted build is much cheaper than millions of inserts). Every open
// ensures they exist, in case a load was interrupted.
var secondary = []struct{ name, def string }{
	{"idx_str_pk", "idx_str (pk, p)"},
	{"idx_tok_pk", "idx_tok (pk, p)"},
	{"idx_date_pk", "idx_date (pk, p)"},
	{"idx_ref_pk", "idx_ref (pk, p)"},
	{"resources_updated", "resources (rtype, updated)"},
}

func ensureSecondary(ctx context.Context, db *sql.DB) error {
	for _, ix := range secondary {
		if _, err := db.ExecContext(ctx, "CREATE INDEX IF NOT EXISTS "+ix.name+" ON "+ix.def); err != nil {
			return fmt.Errorf("store: index %s: %w", ix.name, err)
		}
	}
	return nil
}

// NewSQL wraps opened, migrated databases. closeFns run on Close after the
// writer stops.
func NewSQL(d Dialect, rdb, wdb *sql.DB, closeFns ...func() error) (*SQL, error) {
	s := &SQL{d: d, rdb: rdb, wdb: wdb, queue: make(chan *commitReq, 4096), stop: make(chan struct{}), closeFns: closeFns}
	if err := ensureSecondary(context.Background(), wdb); err != nil {
		return nil, err
	}
	var err error
	s.readStmt, err = rdb.Prepare(s.q(`SELECT ver, updated, deleted, patient, data FROM resources WHERE rtype = ? AND id = ?`))
	if err != nil {
		return nil, fmt.Errorf("store: prepare: %w", err)
	}
	s.wg.Add(1)
	go s.writer()
	return s, nil
}

// Backend names the dialect.
func (s *SQL) Backend() string { return s.d.Name }

// q rebinds "?" placeholders for the dialect (cached).
func (s *SQL) q(query string) string {
	if !s.d.Dollar {
		return query
	}
	if v, ok := s.qcache.Load(query); ok {
		return v.(string)
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	out := b.String()
	if len(query) < 4096 {
		s.qcache.Store(query, out)
	}
	return out
}

// Close stops the writer (pending commits finish) and closes the databases.
func (s *SQL) Close() error {
	var err error
	s.once.Do(func() {
		close(s.stop)
		s.wg.Wait()
		s.readStmt.Close()
		for _, f := range s.closeFns {
			if e := f(); e != nil && err == nil {
				err = e
			}
		}
	})
	return err
}

func micros(t time.Time) int64     { return t.UnixMicro() }
func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

// Read returns the current version of a resource.
func (s *SQL) Read(ctx context.Context, typ, id string) (*Resource, error) {
	r := &Resource{Type: typ, ID: id}
	var upd int64
	var del int
	var patient sql.NullString
	err := s.readStmt.QueryRowContext(ctx, typ, id).Scan(&r.Version, &upd, &del, &patient, &r.Data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: read: %w", err)
	}
	r.Updated, r.Deleted, r.Patient = fromMicros(upd), del != 0, patient.String
	return r, nil
}

// ReadVersion returns one version of a resource.
func (s *SQL) ReadVersion(ctx context.Context, typ, id string, version int) (*Resource, error) {
	cur, err := s.Read(ctx, typ, id)
	if err != nil {
		return nil, err
	}
	if cur.Version == version {
		return cur, nil
	}
	r := &Resource{Type: typ, ID: id, Version: version, Patient: cur.Patient}
	var upd int64
	var del int
	err = s.rdb.QueryRowContext(ctx, s.q(`SELECT h.updated, h.deleted, h.data FROM history h JOIN resources r ON r.pk = h.pk
		WHERE r.rtype = ? AND r.id = ? AND h.ver = ?`), typ, id, version).Scan(&upd, &del, &r.Data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: vread: %w", err)
	}
	r.Updated, r.Deleted = fromMicros(upd), del != 0
	return r, nil
}

// History returns the versions of a resource, newest first.
func (s *SQL) History(ctx context.Context, typ, id string, limit int) ([]*Resource, error) {
	cur, err := s.Read(ctx, typ, id)
	if err != nil {
		return nil, err
	}
	out := []*Resource{cur}
	if limit <= 1 {
		return out, nil
	}
	rows, err := s.rdb.QueryContext(ctx, s.q(`SELECT h.ver, h.updated, h.deleted, h.data FROM history h JOIN resources r ON r.pk = h.pk
		WHERE r.rtype = ? AND r.id = ? ORDER BY h.ver DESC LIMIT ?`), typ, id, limit-1)
	if err != nil {
		return nil, fmt.Errorf("store: history: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r := &Resource{Type: typ, ID: id, Patient: cur.Patient}
		var upd int64
		var del int
		if err := rows.Scan(&r.Version, &upd, &del, &r.Data); err != nil {
			return nil, fmt.Errorf("store: history: %w", err)
		}
		r.Updated, r.Deleted = fromMicros(upd), del != 0
		out = append(out, r)
	}
	return out, rows.Err()
}

// Missing returns the references that do not resolve to a live resource.
func (s *SQL) Missing(ctx context.Context, refs []string) ([]string, error) {
	var missing []string
	for _, ref := range refs {
		typ, id, ok := strings.Cut(ref, "/")
		if !ok {
			missing = append(missing, ref)
			continue
		}
		r, err := s.Read(ctx, typ, id)
		if errors.Is(err, ErrNotFound) || err == nil && r.Deleted {
			missing = append(missing, ref)
			continue
		}
		if err != nil {
			return nil, err
		}
	}
	return missing, nil
}

// Stats counts live resources by type.
func (s *SQL) Stats(ctx context.Context) (Stats, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT rtype, COUNT(*) FROM resources WHERE deleted = 0 GROUP BY rtype`)
	if err != nil {
		return nil, fmt.Errorf("store: stats: %w", err)
	}
	defer rows.Close()
	st := Stats{}
	for rows.Next() {
		var t string
		var n int
		if err := rows.Scan(&t, &n); err != nil {
			return nil, err
		}
		st[t] = n
	}
	return st, rows.Err()
}

// Commit applies ws atomically and durably, through the group-commit writer.
func (s *SQL) Commit(ctx context.Context, ws []Write) error {
	if len(ws) == 0 {
		return nil
	}
	req := &commitReq{ws: ws, done: make(chan error, 1)}
	select {
	case s.queue <- req:
	case <-s.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued the write may commit: wait for the outcome whatever the
	// caller's context says, so that an answer never lies.
	return <-req.done
}

func (s *SQL) writer() {
	defer s.wg.Done()
	batch := make([]*commitReq, 0, maxBatch)
	for {
		var first *commitReq
		select {
		case first = <-s.queue:
		case <-s.stop:
			// drain what is queued, then stop
			for {
				select {
				case r := <-s.queue:
					s.commitBatch([]*commitReq{r})
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
	fill:
		for len(batch) < maxBatch {
			select {
			case r := <-s.queue:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.commitBatch(batch)
	}
}

// commitBatch runs a batch in one transaction, each request in a savepoint.
// A request that fails is rolled back to its savepoint alone. If the
// transaction itself fails, every request in it gets the error.
func (s *SQL) commitBatch(batch []*commitReq) {
	errs := make([]error, len(batch))
	err := s.inTx(func(tx *wtx) error {
		for i, r := range batch {
			if len(batch) > 1 {
				if _, err := tx.Exec("SAVEPOINT w"); err != nil {
					return err
				}
			}
			errs[i] = s.apply(tx, r.ws)
			if len(batch) > 1 {
				if errs[i] != nil {
					if _, err := tx.Exec("ROLLBACK TO SAVEPOINT w"); err != nil {
						return err
					}
				}
				if _, err := tx.Exec("RELEASE SAVEPOINT w"); err != nil {
					return err
				}
			} else if errs[i] != nil {
				return errs[i]
			}
		}
		return nil
	})
	for i, r := range batch {
		switch {
		case err != nil && len(batch) == 1:
			r.done <- err
		case err != nil:
			r.done <- fmt.Errorf("store: commit: %w", err)
		default:
			r.done <- errs[i]
		}
	}
}

func (s *SQL) inTx(fn func(tx *wtx) error) error {
	t, err := s.wdb.Begin()
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	tx := &wtx{Tx: t, s: s, stmts: map[string]*sql.Stmt{}}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

func (s *SQL) apply(tx *wtx, ws []Write) error {
	for i := range ws {
		if err := s.applyOne(tx, &ws[i]); err != nil {
			return err
		}
	}
	return nil
}

func bool01(b bool) int {
	if b {
		return 1
	}
	return 0
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (s *SQL) applyOne(tx *wtx, w *Write) error {
	var pk int64
	if !w.New {
		var cur int
		err := tx.QueryRow(s.q(`SELECT pk, ver FROM resources WHERE rtype = ? AND id = ?`+s.d.ForUpdate), w.Type, w.ID).Scan(&pk, &cur)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if w.IfVersion != 0 {
				return ErrConflict
			}
		case err != nil:
			return fmt.Errorf("store: version check: %w", err)
		case cur != w.IfVersion:
			return ErrConflict
		}
	}
	if pk == 0 {
		err := tx.QueryRow(s.q(`INSERT INTO resources (rtype, id, ver, updated, deleted, patient, data) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING pk`),
			w.Type, w.ID, w.Version, micros(w.Updated), bool01(w.Deleted), nullStr(w.Patient), w.Data).Scan(&pk)
		if err != nil {
			if s.d.IsUnique(err) {
				return ErrConflict
			}
			return fmt.Errorf("store: insert: %w", err)
		}
	} else {
		if _, err := tx.Exec(s.q(`INSERT INTO history (pk, ver, updated, deleted, data) SELECT pk, ver, updated, deleted, data FROM resources WHERE pk = ?`), pk); err != nil {
			return fmt.Errorf("store: history: %w", err)
		}
		if _, err := tx.Exec(s.q(`UPDATE resources SET ver = ?, updated = ?, deleted = ?, patient = ?, data = ? WHERE pk = ?`),
			w.Version, micros(w.Updated), bool01(w.Deleted), nullStr(w.Patient), w.Data, pk); err != nil {
			return fmt.Errorf("store: update: %w", err)
		}
		for _, t := range []string{"idx_str", "idx_tok", "idx_date", "idx_ref"} {
			if _, err := tx.Exec(s.q(`DELETE FROM `+t+` WHERE pk = ?`), pk); err != nil {
				return fmt.Errorf("store: unindex: %w", err)
			}
		}
	}
	if w.Deleted {
		return nil
	}
	return s.insertIndex(tx, []int64{pk}, [][]fhir.IndexEntry{w.Index})
}

// insertIndex writes index rows with multi-row INSERTs.
func (s *SQL) insertIndex(tx *wtx, pks []int64, idx [][]fhir.IndexEntry) error {
	var str, tok, date, ref [][]any
	for i, es := range idx {
		pk := pks[i]
		for _, e := range es {
			switch e.Type {
			case fhir.String:
				str = append(str, []any{e.Param, e.S, pk})
			case fhir.Token:
				tok = append(tok, []any{e.Param, e.S, e.Sys, pk})
			case fhir.Date:
				date = append(date, []any{e.Param, e.Lo, e.Hi, pk})
			case fhir.Reference:
				ref = append(ref, []any{e.Param, e.S, pk})
			}
		}
	}
	for _, t := range []struct {
		table, cols string
		rows        [][]any
	}{
		{"idx_str", "p, v, pk", str},
		{"idx_tok", "p, code, sys, pk", tok},
		{"idx_date", "p, lo, hi, pk", date},
		{"idx_ref", "p, v, pk", ref},
	} {
		if err := s.insertRows(tx, t.table, t.cols, t.rows); err != nil {
			return fmt.Errorf("store: index: %w", err)
		}
	}
	return nil
}

const rowsPerInsert = 100

func (s *SQL) insertRows(tx *wtx, table, cols string, rows [][]any) error {
	for len(rows) > 0 {
		n := min(len(rows), rowsPerInsert)
		chunk := rows[:n]
		rows = rows[n:]
		var b strings.Builder
		b.WriteString("INSERT INTO " + table + " (" + cols + ") VALUES ")
		args := make([]any, 0, n*len(chunk[0]))
		for i, r := range chunk {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('(')
			for j := range r {
				if j > 0 {
					b.WriteByte(',')
				}
				b.WriteByte('?')
			}
			b.WriteByte(')')
			args = append(args, r...)
		}
		st, err := tx.prep(b.String())
		if err != nil {
			return err
		}
		if _, err := st.Exec(args...); err != nil {
			return err
		}
	}
	return nil
}

// wtx is a write transaction with its prepared statements (closed with it).
type wtx struct {
	*sql.Tx
	s     *SQL
	stmts map[string]*sql.Stmt
}

// prep returns the statement for query, prepared once per transaction.
func (t *wtx) prep(query string) (*sql.Stmt, error) {
	if st, ok := t.stmts[query]; ok {
		return st, nil
	}
	st, err := t.Prepare(t.s.q(query))
	if err != nil {
		return nil, err
	}
	t.stmts[query] = st
	return st, nil
}

// Load bulk-inserts batches of new resources, one transaction per batch.
func (s *SQL) Load(ctx context.Context, batches <-chan []Write, progress func(int)) (err error) {
	for _, p := range s.d.BulkStart {
		if _, err := s.wdb.ExecContext(ctx, p); err != nil {
			return fmt.Errorf("store: load: %w", err)
		}
	}
	for _, ix := range secondary {
		if _, err := s.wdb.ExecContext(ctx, "DROP INDEX IF EXISTS "+ix.name); err != nil {
			return fmt.Errorf("store: load: %w", err)
		}
	}
	defer func() {
		if e := ensureSecondary(context.Background(), s.wdb); e != nil && err == nil {
			err = e
		}
		for _, p := range s.d.BulkEnd {
			if _, e := s.wdb.Exec(p); e != nil && err == nil {
				err = fmt.Errorf("store: load: %w", e)
			}
		}
	}()
	// One transaction spans many batches: fewer commits means far fewer
	// rewrites of the same random index pages.
	var tx *wtx
	inTx := 0
	finish := func(commit bool) error {
		if tx == nil {
			return nil
		}
		t := tx
		tx, inTx = nil, 0
		if !commit {
			return t.Rollback()
		}
		if err := t.Commit(); err != nil {
			return fmt.Errorf("store: load: commit: %w", err)
		}
		return nil
	}
	defer finish(false)
	for {
		var ws []Write
		var ok bool
		select {
		case ws, ok = <-batches:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			return finish(true)
		}
		if tx == nil {
			t, err := s.wdb.Begin()
			if err != nil {
				return fmt.Errorf("store: load: begin: %w", err)
			}
			tx = &wtx{Tx: t, s: s, stmts: map[string]*sql.Stmt{}}
			if s.d.BulkTx != "" {
				if _, err := tx.Exec(s.d.BulkTx); err != nil {
					return fmt.Errorf("store: load: %w", err)
				}
			}
		}
		pks, err := s.insertResources(tx, ws)
		if err != nil {
			return err
		}
		idx := make([][]fhir.IndexEntry, len(ws))
		for i := range ws {
			idx[i] = ws[i].Index
		}
		if err := s.insertIndex(tx, pks, idx); err != nil {
			return err
		}
		if inTx += len(ws); inTx >= loadTxResources {
			if err := finish(true); err != nil {
				return err
			}
		}
		if progress != nil {
			progress(len(ws))
		}
	}
}

// loadTxResources is how many resources a bulk-load transaction holds.
const loadTxResources = 20_000

func (s *SQL) insertResources(tx *wtx, ws []Write) ([]int64, error) {
	pks := make([]int64, len(ws))
	pos := make(map[string]int, len(ws))
	for start := 0; start < len(ws); start += rowsPerInsert {
		chunk := ws[start:min(start+rowsPerInsert, len(ws))]
		var b strings.Builder
		b.WriteString("INSERT INTO resources (rtype, id, ver, updated, deleted, patient, data) VALUES ")
		args := make([]any, 0, len(chunk)*7)
		for i := range chunk {
			w := &chunk[i]
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("(?,?,?,?,?,?,?)")
			args = append(args, w.Type, w.ID, w.Version, micros(w.Updated), bool01(w.Deleted), nullStr(w.Patient), w.Data)
			pos[w.Type+"/"+w.ID] = start + i
		}
		b.WriteString(" RETURNING pk, rtype, id")
		st, err := tx.prep(b.String())
		if err != nil {
			return nil, fmt.Errorf("store: load: %w", err)
		}
		rows, err := st.Query(args...)
		if err != nil {
			if s.d.IsUnique(err) {
				return nil, fmt.Errorf("store: load: a resource already exists: %w", ErrConflict)
			}
			return nil, fmt.Errorf("store: load: %w", err)
		}
		for rows.Next() {
			var pk int64
			var t, id string
			if err := rows.Scan(&pk, &t, &id); err != nil {
				rows.Close()
				return nil, err
			}
			pks[pos[t+"/"+id]] = pk
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			if s.d.IsUnique(err) {
				return nil, fmt.Errorf("store: load: a resource already exists: %w", ErrConflict)
			}
			return nil, fmt.Errorf("store: load: %w", err)
		}
	}
	return pks, nil
}
