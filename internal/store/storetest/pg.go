// Package storetest holds helpers shared by the tests of several packages:
// a throw-away PostgreSQL database per test, and openers for every store
// back end so that one test body runs against each of them.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"carnet/internal/seal"
	"carnet/internal/store"
	"carnet/internal/store/postgres"
	"carnet/internal/store/sqlite"
)

// DefaultPostgresURL is the server the tests use when CARNET_TEST_PG is unset.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// BaseURL returns the PostgreSQL URL the tests use (env CARNET_TEST_PG).
func BaseURL() string {
	if u := os.Getenv("CARNET_TEST_PG"); u != "" {
		return u
	}
	return DefaultPostgresURL
}

// withDatabase returns base with its database name replaced by name.
func withDatabase(base, name string) (string, error) {
	if strings.HasPrefix(base, "postgres://") || strings.HasPrefix(base, "postgresql://") {
		u, err := url.Parse(base)
		if err != nil {
			return "", err
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	// keyword/value form: a later keyword overrides an earlier one
	return base + " dbname=" + name, nil
}

// redact hides a password in a URL for messages.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		return u.Redacted()
	}
	return s
}

// adminConnect connects to the server of base: to base's own database, or,
// if that database does not exist, to the "postgres" maintenance database.
func adminConnect(ctx context.Context, base string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		return nil, err
	}
	cfg.ConnectTimeout = 5 * time.Second
	c, err := pgx.ConnectConfig(ctx, cfg)
	var pe *pgconn.PgError
	if err != nil && errors.As(err, &pe) && pe.Code == "3D000" && cfg.Database != "postgres" { // invalid_catalog_name
		cfg.Database = "postgres"
		c, err = pgx.ConnectConfig(ctx, cfg)
	}
	return c, err
}

// PostgresURL creates a fresh, uniquely named database on the test server
// (env CARNET_TEST_PG, default DefaultPostgresURL), drops it when the test
// ends, and returns its URL. An unreachable server fails the test: these
// tests never skip.
func PostgresURL(t testing.TB) string {
	t.Helper()
	base := BaseURL()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := adminConnect(ctx, base)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL is unreachable at %s (env CARNET_TEST_PG): %v\n"+
				"CI=true: the PostgreSQL store tests require a running server (scripts/test starts one)", redact(base), err)
		}
		t.Fatalf("PostgreSQL is unreachable at %s (env CARNET_TEST_PG): %v\n"+
			"These tests do not skip. Start the local server with:\n"+
			"    pg_ctlcluster 15 main start\n"+
			"(or run scripts/test, which starts it), or point CARNET_TEST_PG at a reachable server.", redact(base), err)
	}
	defer conn.Close(context.Background())
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("storetest: random name: %v", err)
	}
	name := "carnet_t_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("storetest: create database %s on %s: %v", name, redact(base), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := adminConnect(ctx, base)
		if err != nil {
			t.Errorf("storetest: drop database %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("storetest: drop database %s: %v", name, err)
		}
	})
	u, err := withDatabase(base, name)
	if err != nil {
		t.Fatalf("storetest: bad CARNET_TEST_PG %s: %v", redact(base), err)
	}
	return u
}

// Backends returns, per store back end, an opener of a fresh, empty store
// that is closed when the test using it ends: "sqlite" (a data directory
// in t.TempDir()) and "postgres" (a fresh database from PostgresURL). Both
// are sealed (Seal), as every store Carnet makes is.
func Backends(t *testing.T) map[string]func(t *testing.T) store.Store {
	t.Helper()
	return map[string]func(t *testing.T) store.Store{
		"sqlite": func(t *testing.T) store.Store {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			st, err := sqlite.Open(ctx, t.TempDir())
			if err != nil {
				t.Fatalf("sqlite.Open: %v", err)
			}
			t.Cleanup(func() {
				if err := st.Close(); err != nil {
					t.Errorf("sqlite store Close: %v", err)
				}
			})
			Seal(t, st)
			return st
		},
		"postgres": func(t *testing.T) store.Store {
			t.Helper()
			u := PostgresURL(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			st, err := postgres.Open(ctx, u)
			if err != nil {
				t.Fatalf("postgres.Open: %v", err)
			}
			t.Cleanup(func() {
				if err := st.Close(); err != nil {
					t.Errorf("postgres store Close: %v", err)
				}
			})
			Seal(t, st)
			return st
		},
	}
}

// Seal gives st a keyring under a fresh key file in t.TempDir() and
// returns it.
func Seal(t testing.TB, st *store.SQL) *seal.Keyring {
	t.Helper()
	kek, err := seal.InitKeyFile(t.TempDir() + "/carnet.key")
	if err != nil {
		t.Fatal(err)
	}
	kr, err := seal.Open(context.Background(), st, kek)
	if err != nil {
		t.Fatalf("seal.Open: %v", err)
	}
	st.UseSealer(kr)
	return kr
}
