package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
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
	// Begin starts a write transaction ("BEGIN IMMEDIATE" on SQLite).
	Begin string
	// StatementAtomic: a failed statement leaves the transaction usable
	// (SQLite). PostgreSQL aborts the transaction, so every request of a
	// group commit runs in a savepoint there.
	StatementAtomic bool
	// CacheBytes > 0 keeps current versions in memory (only for a store
	// this process alone writes: embedded SQLite).
	CacheBytes int
	// Unindexed marks a column term so the planner does not drive the query
	// from it (SQLite: unary plus); used when index filters are selective.
	Unindexed func(col string) string
	// BulkTx runs at the start of each bulk-load transaction (PostgreSQL:
	// asynchronous commit; the load is made durable at its end).
	BulkTx string
	// AuditLock runs in a transaction that appends audit entries, before
	// the next index is read (PostgreSQL: an advisory lock, so that
	// instances sharing the database number entries densely).
	AuditLock string
	// BulkStart and BulkEnd run on the writer around a bulk load (SQLite:
	// synchronous off, then a full checkpoint and synchronous back on).
	BulkStart, BulkEnd []string
	// RowInserts: insertRows runs one prepared single-row INSERT per row
	// (SQLite: a statement is a function call, and a multi-row INSERT
	// inside a transaction needs a statement journal, which costs more
	// than the rows). Otherwise multi-row INSERTs (PostgreSQL: one round
	// trip per 100 rows).
	RowInserts bool
	// JSONEach: rows of text and integers can be inserted as one JSON
	// array parameter through json_each (SQLite: one statement and one
	// call for thousands of rows).
	JSONEach bool
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
	stmts    sync.Map // query -> *sql.Stmt on rdb (hot read queries)
	nstmts   atomic.Int64
	cache    *cache
	auth     *authCache  // token lookups; only for a single-process store
	reach    *reachCache // reach answers; only for a single-process store

	auditFault func() error // test fault injection for AppendAudit
	sealer     Sealer       // nil: resources in clear

	// The writer: one dedicated connection with its prepared statements,
	// used by the group-commit loop and by Load (wmu serialises them).
	wmu   sync.Mutex
	wconn *sql.Conn
	wst   map[string]*sql.Stmt
}

type commitReq struct {
	ws    []Write
	audit []*AuditRecord // audit entries (AppendAudit), committed in order
	done  chan error
}

// maxBatch bounds how many Commit calls share one transaction.
const maxBatch = 1024

// secondary are the indexes a bulk load drops and builds again at its end
// (one sorted build is much cheaper than millions of inserts). Every open
// ensures they exist, in case a load was interrupted.
var secondary = []struct{ name, def string }{
	{"idx_date_pk", "idx_date (pk, p)"},
	{"resources_updated", "resources (rtype, updated)"},
	{"resources_patient", "resources (patient, rtype)"},
	{"care_link_src", "care_link (src)"},
	{"care_link_facility", "care_link (facility, patient) WHERE prac = ''"},
}

// unique are indexes a bulk load into an empty store also builds at its end
// (a duplicate id then fails the load).
var unique = []struct{ name, def string }{
	{"resources_type_id", "resources (rtype, id)"},
}

func ensureIndexes(ctx context.Context, db *sql.DB) error {
	for _, ix := range unique {
		if _, err := db.ExecContext(ctx, "CREATE UNIQUE INDEX IF NOT EXISTS "+ix.name+" ON "+ix.def); err != nil {
			return fmt.Errorf("store: index %s: %w", ix.name, err)
		}
	}
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
	if err := ensureIndexes(context.Background(), wdb); err != nil {
		return nil, err
	}
	if d.CacheBytes > 0 {
		s.cache = newCache(d.CacheBytes)
		s.auth = &authCache{m: map[string]tokenEntry{}}
		s.reach = &reachCache{m: map[string]reachEntry{}}
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

// maxStmts bounds the prepared statements kept on the read pool.
const maxStmts = 1000

// stmt returns a prepared statement on the read pool for a query run often
// (prepared once; database/sql prepares it again per connection as needed),
// or nil once maxStmts shapes are cached: run the query directly then.
func (s *SQL) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if v, ok := s.stmts.Load(query); ok {
		return v.(*sql.Stmt), nil
	}
	if s.nstmts.Load() >= maxStmts {
		return nil, nil
	}
	st, err := s.rdb.PrepareContext(ctx, s.q(query))
	if err != nil {
		return nil, err
	}
	if v, loaded := s.stmts.LoadOrStore(query, st); loaded {
		st.Close()
		return v.(*sql.Stmt), nil
	}
	s.nstmts.Add(1)
	return st, nil
}

// query runs a read query, prepared when possible.
func (s *SQL) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := s.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return s.rdb.QueryContext(ctx, s.q(query), args...)
	}
	return st.QueryContext(ctx, args...)
}

// queryRow runs a one-row read query, prepared when possible.
func (s *SQL) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := s.stmt(ctx, query)
	if err != nil || st == nil {
		return s.rdb.QueryRowContext(ctx, s.q(query), args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// Close stops the writer (pending commits finish) and closes the databases.
func (s *SQL) Close() error {
	var err error
	s.once.Do(func() {
		close(s.stop)
		s.wg.Wait()
		s.wmu.Lock()
		s.resetWriter()
		s.wmu.Unlock()
		s.readStmt.Close()
		s.stmts.Range(func(_, v any) bool { v.(*sql.Stmt).Close(); return true })
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
	if r := s.cache.get(typ, id); r != nil {
		return r, nil
	}
	since := s.cache.begin()
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
	if r.Data, err = s.openData(typ, id, r.Version, r.Data); err != nil {
		return nil, fmt.Errorf("store: read: %w", err)
	}
	s.cache.putRead(r, since)
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
	if r.Data, err = s.openData(typ, id, version, r.Data); err != nil {
		return nil, fmt.Errorf("store: vread: %w", err)
	}
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
		if r.Data, err = s.openData(typ, id, r.Version, r.Data); err != nil {
			return nil, fmt.Errorf("store: history: %w", err)
		}
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
