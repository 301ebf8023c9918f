package main

import (
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"carnet/internal/policy"
)

// A demo session leaves an audit log that verifies; incident scope names the
// physician's patients; an edit of one entry is caught and named.
func TestAuditVerifyAndIncidentScopeCommands(t *testing.T) {
	data := filepath.Join(t.TempDir(), "demo")
	var seen []string
	t.Run("session", func(t *testing.T) {
		base, _ := startCommand(t, "demo", "--data", data, "--patients", "200", "--addr", "127.0.0.1:0")
		raw, _ := os.ReadFile(filepath.Join(data, "demo-users.json"))
		var users []demoUser
		json.Unmarshal(raw, &users)
		var doc demoUser
		for _, u := range users {
			if slices.Contains(u.Roles, policy.Physician) {
				doc = u
				break
			}
		}
		tok := demoLogin(t, base, doc, time.Now())
		var page struct {
			Entry []struct {
				Resource struct{ ID string } `json:"resource"`
			} `json:"entry"`
		}
		if st := getAuthJSON(t, base+"/Patient?_count=3", tok, &page); st != 200 || len(page.Entry) == 0 {
			t.Fatalf("search: %d", st)
		}
		for _, e := range page.Entry {
			seen = append(seen, e.Resource.ID)
		}
		slices.Sort(seen)
	})
	code, out, stderr := runCmd(t, "audit", "verify", "--data", data)
	if code != 0 || !strings.Contains(out, "intact:") {
		t.Fatalf("verify: %d %s %s", code, out, stderr)
	}
	code, out, _ = runCmd(t, "incident", "scope", "--data", data, "--account", firstPhysician(t, data), "--format", "csv")
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		got = append(got, strings.Split(line, ",")[0])
	}
	if code != 0 || !slices.Equal(got, seen) {
		t.Fatalf("incident scope: exit %d, patients %v, want %v\n%s", code, got, seen, out)
	}
	notify := filepath.Join(t.TempDir(), "notice")
	if code, _, errs := runCmd(t, "incident", "scope", "--data", data, "--account", firstPhysician(t, data), "--notify", notify); code != 0 {
		t.Fatalf("--notify: %s", errs)
	}
	csvb, _ := os.ReadFile(filepath.Join(notify, "notification.csv"))
	md, _ := os.ReadFile(filepath.Join(notify, "gdpr-art33.md"))
	if strings.Count(string(csvb), "\n") != len(seen)+1 || !strings.Contains(string(md), "article 33") {
		t.Errorf("notification files:\n%s\n%s", csvb, md)
	}
	// The lookup of names was itself audited, and the log still verifies.
	if code, out, _ := runCmd(t, "audit", "verify", "--data", data); code != 0 {
		t.Fatalf("verify after notify: %s", out)
	}
	// Edit one entry behind Carnet's back: verify exits 1 and names it.
	db, err := sql.Open("sqlite3", filepath.Join(data, "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE audit_log SET entry = CAST(replace(CAST(entry AS TEXT), '"outcome":200', '"outcome":404') AS BLOB) WHERE idx = 1`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	code, out, _ = runCmd(t, "audit", "verify", "--data", data)
	if code != 1 || !strings.Contains(out, "first bad entry 1") {
		t.Fatalf("verify after tampering: exit %d %s", code, out)
	}
	if code, _, errs := runCmd(t, "incident", "scope", "--data", data); code != 2 || !strings.Contains(errs, "exactly one") {
		t.Errorf("scope without a subject: %d %s", code, errs)
	}
	// A mistyped username is an error, not an empty scope.
	if code, out, errs := runCmd(t, "incident", "scope", "--data", data, "--account", "no.such.user"); code == 0 || !strings.Contains(errs, `no account "no.such.user"`) {
		t.Errorf("scope of an unknown account: exit %d, %s %s", code, out, errs)
	}
}

func firstPhysician(t *testing.T, data string) string {
	raw, _ := os.ReadFile(filepath.Join(data, "demo-users.json"))
	var users []demoUser
	json.Unmarshal(raw, &users)
	for _, u := range users {
		if slices.Contains(u.Roles, policy.Physician) {
			return u.Username
		}
	}
	t.Fatal("no physician")
	return ""
}
