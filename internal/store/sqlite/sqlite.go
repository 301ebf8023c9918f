// Package sqlite is Carnet's embedded store: one SQLite database file in WAL
// mode, synchronous=FULL (every acknowledged commit is fsync'd), written by
// one connection and read by a pool. See docs/storage.md for the driver
// choice (mattn/go-sqlite3).
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/mattn/go-sqlite3"

	"carnet/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// FileName is the database file inside a data directory.
const FileName = "carnet.db"

// Path returns the database path inside data directory dir.
func Path(dir string) string { return filepath.Join(dir, FileName) }

// AuditPath returns the audit log's database path inside dir.
func AuditPath(dir string) string { return filepath.Join(dir, "audit.db") }

// auditSchema creates the audit log's tables in the attached database (the
// same tables as the PostgreSQL migrations 003 and 004), in steps numbered
// by the audit database's user_version.
var auditSchema = [][]string{
	{ // 1: the log
		`CREATE TABLE IF NOT EXISTS audit.audit_log (idx INTEGER PRIMARY KEY, at INTEGER NOT NULL, account TEXT NOT NULL, action TEXT NOT NULL, client TEXT NOT NULL, session TEXT NOT NULL, entry BLOB NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS audit.audit_log_account ON audit_log (account, at)`,
		`CREATE INDEX IF NOT EXISTS audit.audit_log_at ON audit_log (at)`,
		`CREATE TABLE IF NOT EXISTS audit.audit_patient (patient TEXT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (patient, idx)) WITHOUT ROWID`,
		`CREATE TABLE IF NOT EXISTS audit.audit_checkpoints (size INTEGER PRIMARY KEY, root BLOB NOT NULL, note TEXT NOT NULL, created INTEGER NOT NULL)`,
	},
	{ // 2: search keys derived after the append (see store.IndexAudit)
		`ALTER TABLE audit.audit_log ADD COLUMN patients TEXT NOT NULL DEFAULT ''`,
		`DROP INDEX audit.audit_log_account`,
		`CREATE TABLE audit.audit_key (k TEXT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (k, idx)) WITHOUT ROWID`,
		`INSERT OR IGNORE INTO audit.audit_key SELECT 'p ' || patient, idx FROM audit.audit_patient`,
		`INSERT OR IGNORE INTO audit.audit_key SELECT 'a ' || account, idx FROM audit.audit_log WHERE account <> ''`,
		`DROP TABLE audit.audit_patient`,
		`CREATE TABLE audit.audit_keyed (id INTEGER PRIMARY KEY CHECK (id = 1), upto INTEGER NOT NULL)`,
		`INSERT INTO audit.audit_keyed SELECT 1, COALESCE(MAX(idx) + 1, 0) FROM audit.audit_log`,
	},
	{ // 3: search keys name blocks of entries, and a search checks each
		// entry's patients column: fill it for entries logged before step 2
		// (their patients were in audit_patient only).
		`UPDATE audit.audit_log SET patients = g.ps FROM (SELECT idx, group_concat(substr(k, 3), ' ') AS ps FROM audit.audit_key WHERE k >= 'p ' AND k < 'p!' GROUP BY idx) AS g WHERE audit_log.idx = g.idx AND audit_log.patients = ''`,
	},
}

// migrateAudit brings the attached audit database to the last step of
// auditSchema, one transaction per step.
func migrateAudit(ctx context.Context, db *sql.DB) error {
	c, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	var v int
	if err := c.QueryRowContext(ctx, `PRAGMA audit.user_version`).Scan(&v); err != nil {
		return err
	}
	if v == 0 {
		// Logs made before the steps were numbered have step 1's tables.
		var n int
		if err := c.QueryRowContext(ctx, `SELECT count(*) FROM audit.sqlite_master WHERE name = 'audit_patient'`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			v = 1
		}
	}
	for ; v < len(auditSchema); v++ {
		if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			return err
		}
		for _, stmt := range append(auditSchema[v], fmt.Sprintf("PRAGMA audit.user_version = %d", v+1)) {
			if _, err := c.ExecContext(ctx, stmt); err != nil {
				c.ExecContext(ctx, "ROLLBACK")
				return fmt.Errorf("step %d: %w", v+1, err)
			}
		}
		if _, err := c.ExecContext(ctx, "COMMIT"); err != nil {
			return err
		}
	}
	return nil
}

type connector struct {
	drv *sqlite3.SQLiteDriver
	dsn string
}

func (c connector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c connector) Driver() driver.Driver                        { return c.drv }

func open(path string, params url.Values, pragmas ...string) *sql.DB {
	drv := &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		for _, p := range pragmas {
			if _, err := c.Exec(p, nil); err != nil {
				return err
			}
		}
		return nil
	}}
	return sql.OpenDB(connector{drv: drv, dsn: "file:" + path + "?" + params.Encode()})
}

// Open opens (creating if needed) the store in data directory dir.
func Open(ctx context.Context, dir string) (*store.SQL, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	path := Path(dir)
	common := url.Values{"_busy_timeout": {"10000"}, "_foreign_keys": {"0"}}
	wp := url.Values{"_synchronous": {"FULL"}}
	for k, v := range common {
		wp[k] = v
	}
	fail := func(err error) (*store.SQL, error) {
		lock.Close()
		return nil, err
	}
	// The audit log lives in a second database file, attached to every
	// connection: each request appends to it, and a commit to the main file
	// would reset every reader's page cache (SQLite re-reads a database
	// another connection changed), slowing every query behind it.
	attach := "ATTACH DATABASE '" + strings.ReplaceAll(AuditPath(dir), "'", "''") + "' AS audit"
	// page_size applies to a new database only, and before WAL is on.
	wdb := open(path, wp, "PRAGMA page_size = 8192", "PRAGMA journal_mode = WAL", "PRAGMA cache_size = -524288", "PRAGMA temp_store = MEMORY", "PRAGMA wal_autocheckpoint = 10000",
		attach, "PRAGMA audit.journal_mode = WAL", "PRAGMA audit.synchronous = FULL", "PRAGMA audit.cache_size = -131072")
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	if err := wdb.PingContext(ctx); err != nil {
		wdb.Close()
		return fail(fmt.Errorf("sqlite: open %s: %w", path, err))
	}
	if err := store.Migrate(ctx, wdb, migrations, "migrations", ""); err != nil {
		wdb.Close()
		return fail(fmt.Errorf("sqlite: %w", err))
	}
	if err := migrateAudit(ctx, wdb); err != nil {
		wdb.Close()
		return fail(fmt.Errorf("sqlite: audit schema: %w", err))
	}
	rp := url.Values{"_query_only": {"1"}}
	for k, v := range common {
		rp[k] = v
	}
	rdb := open(path, rp, "PRAGMA mmap_size = 4294967296", "PRAGMA cache_size = -65536", attach)
	n := 4 * runtime.GOMAXPROCS(0)
	rdb.SetMaxOpenConns(n)
	rdb.SetMaxIdleConns(n)
	rdb.SetConnMaxLifetime(0)
	d := store.Dialect{Name: "sqlite", IsUnique: isUnique, Begin: "BEGIN IMMEDIATE", StatementAtomic: true,
		CacheBytes: 128 << 20, RowInserts: true, JSONEach: true,
		Unindexed: func(col string) string { return "+" + col },
		// A bulk load is made durable once, at its end: checkpoint the WAL
		// into the database file (fsync'd) before synchronous goes back on.
		BulkStart: []string{"PRAGMA synchronous = OFF", "PRAGMA cache_size = -2097152"},
		BulkEnd:   []string{"PRAGMA synchronous = FULL", "PRAGMA analysis_limit = 2000", "ANALYZE", "PRAGMA wal_checkpoint(TRUNCATE)", "PRAGMA cache_size = -524288"},
	}
	s, err := store.NewSQL(d, rdb, wdb, rdb.Close, wdb.Close, lock.Close)
	if err != nil {
		rdb.Close()
		wdb.Close()
		return fail(err)
	}
	return s, nil
}

// lockDir takes an exclusive lock on the data directory: one process owns an
// embedded store (its in-memory cache relies on being the only writer).
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "carnet.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("sqlite: the store in %s is in use by another Carnet process", dir)
	}
	return f, nil
}

func isUnique(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey)
}
