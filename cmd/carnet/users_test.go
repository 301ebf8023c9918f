package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"carnet/internal/auth"
	"carnet/internal/store"
	"carnet/internal/store/postgres"
	"carnet/internal/store/sqlite"
	"carnet/internal/store/storetest"
)

// TestUserCommands drives carnet user on both back ends: an account made by
// the CLI can log in with the printed credentials; disable stops it; reset-mfa
// replaces the authenticator.
func TestUserCommands(t *testing.T) {
	backends := map[string][]string{
		"sqlite":   {"--data", filepath.Join(t.TempDir(), "s")},
		"postgres": {"--db", storetest.PostgresURL(t)},
	}
	for name, st := range backends {
		t.Run(name, func(t *testing.T) {
			user := func(args ...string) (int, string, string) {
				t.Helper()
				return runCmd(t, append(append([]string{"user", args[0]}, st...), args[1:]...)...)
			}
			code, out, errs := user("add", "--username", "J.Dupont", "--roles", "nurse", "--facilities", "F1", "--practitioner", "P1")
			if code != 0 {
				t.Fatalf("add: %d %s %s", code, out, errs)
			}
			pw := regexp.MustCompile(`password:\s+(\S+)`).FindStringSubmatch(out)
			secret := regexp.MustCompile(`totp secret:\s+(\S+)`).FindStringSubmatch(out)
			if pw == nil || secret == nil || !strings.Contains(out, "otpauth://totp/Carnet:j.dupont?") || strings.Count(out, "\n  ") != 10 {
				t.Fatalf("add printed no usable enrolment:\n%s", out)
			}
			if code, _, errs := user("add", "--username", "j.dupont", "--roles", "nurse", "--facilities", "F1"); code != 1 || !strings.Contains(errs, "exists") {
				t.Errorf("duplicate add: %d %s", code, errs)
			}
			if code, _, errs := user("add", "--username", "x.y", "--roles", "surgeon", "--facilities", "F1"); code != 1 || !strings.Contains(errs, "unknown role") {
				t.Errorf("bad role: %d %s", code, errs)
			}
			if code, out, _ := user("list"); code != 0 || !strings.Contains(out, "j.dupont") || !strings.Contains(out, "password+mfa") {
				t.Errorf("list: %s", out)
			}
			if code, out, _ := user("grant", "j.dupont", "physician", "--facility", "F2"); code != 0 || !strings.Contains(out, "nurse, physician") {
				t.Errorf("grant: %s", out)
			}
			if code, out, _ := user("revoke", "j.dupont", "nurse"); code != 0 || !strings.Contains(out, "roles physician") {
				t.Errorf("revoke: %s", out)
			}
			if code, out, _ := user("show", "j.dupont"); code != 0 || !strings.Contains(out, "F1, F2") || !strings.Contains(out, "recovery codes: 10 left") {
				t.Errorf("show: %s", out)
			}
			// The printed credentials work (checked against the same store).
			login := func(secret string, at time.Time) error {
				var s *auth.Service
				var close func()
				if name == "sqlite" {
					db, err := sqlite.Open(t.Context(), st[1])
					if err != nil {
						t.Fatal(err)
					}
					s, close = auth.NewService(db, auth.Options{Now: func() time.Time { return at }}), func() { db.Close() }
				} else {
					db := openPG(t, st[1])
					s, close = auth.NewService(db, auth.Options{Now: func() time.Time { return at }}), func() { db.Close() }
				}
				defer close()
				code, _ := auth.TOTPCode(secret, at)
				_, err := s.Login(t.Context(), "j.dupont", pw[1], code, "127.0.0.1", "user/*.cruds")
				return err
			}
			now := time.Now()
			if err := login(secret[1], now); err != nil {
				t.Fatalf("login with the printed credentials: %v", err)
			}
			if code, out, _ := user("disable", "j.dupont", "--reason", "left"); code != 0 || !strings.Contains(out, "disabled") {
				t.Errorf("disable: %s", out)
			}
			if err := login(secret[1], now.Add(time.Minute)); err == nil {
				t.Error("a disabled account logged in")
			}
			user("enable", "j.dupont")
			code, out, _ = user("reset-mfa", "j.dupont")
			secret2 := regexp.MustCompile(`totp secret:\s+(\S+)`).FindStringSubmatch(out)
			if code != 0 || secret2 == nil || secret2[1] == secret[1] {
				t.Fatalf("reset-mfa: %s", out)
			}
			if err := login(secret[1], now.Add(2*time.Minute)); err == nil {
				t.Error("the old authenticator still works after reset-mfa")
			}
			if err := login(secret2[1], now.Add(3*time.Minute)); err != nil {
				t.Errorf("the new authenticator does not work: %v", err)
			}
			if code, _, errs := user("show", "nobody"); code != 1 || !strings.Contains(errs, "no account") {
				t.Errorf("show nobody: %d %s", code, errs)
			}
		})
	}
}

func openPG(t *testing.T, url string) *store.SQL {
	db, err := postgres.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	return db
}
