// Package postgres is Carnet's production store on PostgreSQL through pgx.
// Several Carnet instances may share one database: version checks take row
// locks and migrations an advisory lock.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"carnet/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Open connects to the database at url (postgres://...) and migrates it.
func Open(ctx context.Context, url string) (*store.SQL, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: bad database URL: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := store.Migrate(ctx, db, migrations, "migrations", "SELECT pg_advisory_xact_lock(7236411)"); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	d := store.Dialect{Name: "postgres", Dollar: true, ForUpdate: " FOR UPDATE", IsUnique: isUnique,
		AuditLock: "SELECT pg_advisory_xact_lock(7236412)",
		// Bulk-load transactions commit asynchronously (a crash loses the
		// tail of a load, never acknowledged API writes); statistics are
		// refreshed at the end.
		BulkTx:  "SET LOCAL synchronous_commit = off",
		BulkEnd: []string{"ANALYZE"},
	}
	s, err := store.NewSQL(d, db, db, db.Close)
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}
