package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"carnet/internal/store"
	"carnet/internal/store/sqlite"
)

// auditRec makes the i-th synthetic audit record: 40 accounts, 30 client
// addresses, up to 3 patients (some repeated, some empty).
func auditRec(i int, base time.Time) *store.AuditRecord {
	r := &store.AuditRecord{
		At:      base.Add(time.Duration(i) * time.Millisecond),
		Account: "acct-" + strconv.Itoa(i%40),
		Action:  []string{"read", "search", "create", "login"}[i%4],
		Client:  "10.0.0." + strconv.Itoa(i%30),
		Session: "sess-" + strconv.Itoa(i%40) + "-" + strconv.Itoa(i/500),
	}
	if i%7 == 0 {
		r.Account, r.Session = "", "" // a failed login has no account
	}
	switch i % 3 {
	case 0:
		r.Patients = []string{"pat-" + strconv.Itoa(i%97)}
	case 1:
		r.Patients = []string{"pat-" + strconv.Itoa(i%97), "pat-" + strconv.Itoa(i%89), "pat-" + strconv.Itoa(i%97), ""}
	}
	r.Entry = fmt.Appendf(nil, `{"i":%d}`, i)
	return r
}

// TestAuditSearchKeys: entries appended by concurrent requests, while the
// writer derives search keys in the background, are all found, exactly,
// by patient, account, client, session, action and time, on both back
// ends; a search right after an append sees it.
func TestAuditSearchKeys(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		s := st.(*store.SQL)
		ctx := t.Context()
		base := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
		const n, workers = 12_000, 16
		recs := make([]*store.AuditRecord, n)
		for i := range recs {
			recs[i] = auditRec(i, base)
		}
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Go(func() {
				for i := w * 3; i < n; i += workers * 3 {
					if err := s.AppendAudit(ctx, recs[i:min(i+3, n)]...); err != nil {
						errs <- err
						return
					}
					if i%(workers*300) == w*3 { // searches while appends go on
						if _, err := s.FindAudit(ctx, store.AuditFilter{Patient: "pat-1"}); err != nil {
							errs <- err
							return
						}
					}
				}
			})
		}
		// Keys may be derived while entries are appended.
		wg.Go(func() {
			for range 5 {
				if err := s.IndexAudit(ctx); err != nil {
					errs <- err
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// Each record was appended once, and got its own index.
		byIdx := map[int64]*store.AuditRecord{}
		for _, r := range recs {
			if _, dup := byIdx[r.Index]; dup {
				t.Fatalf("index %d given twice", r.Index)
			}
			byIdx[r.Index] = r
		}
		if size, err := s.AuditSize(ctx); err != nil || size != n {
			t.Fatalf("AuditSize = %d, %v; want %d", size, err, n)
		}

		want := func(keep func(r *store.AuditRecord) bool) []int64 {
			var out []int64
			for idx, r := range byIdx {
				if keep(r) {
					out = append(out, idx)
				}
			}
			slices.Sort(out)
			return out
		}
		check := func(name string, f store.AuditFilter, keep func(r *store.AuditRecord) bool) {
			t.Helper()
			rows, err := s.FindAudit(ctx, f)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			var got []int64
			for _, r := range rows {
				if string(r.Entry) != string(byIdx[r.Index].Entry) {
					t.Fatalf("%s: entry %d is %s, want %s", name, r.Index, r.Entry, byIdx[r.Index].Entry)
				}
				got = append(got, r.Index)
			}
			w := want(keep)
			if !slices.Equal(got, w) {
				t.Fatalf("%s: %d entries, want %d (first got %v, want %v)", name, len(got), len(w), got[:min(5, len(got))], w[:min(5, len(w))])
			}
			if len(w) == 0 {
				t.Fatalf("%s: the test selects nothing", name)
			}
		}
		since, until := base.Add(2*time.Second), base.Add(9*time.Second)
		in := func(r *store.AuditRecord) bool { return !r.At.Before(since) && r.At.Before(until) }
		for _, p := range []string{"pat-0", "pat-5", "pat-88", "pat-96"} {
			check("patient "+p, store.AuditFilter{Patient: p}, func(r *store.AuditRecord) bool { return slices.Contains(r.Patients, p) })
		}
		check("patient+account", store.AuditFilter{Patient: "pat-3", Account: "acct-3"}, func(r *store.AuditRecord) bool {
			return slices.Contains(r.Patients, "pat-3") && r.Account == "acct-3"
		})
		check("account", store.AuditFilter{Account: "acct-17"}, func(r *store.AuditRecord) bool { return r.Account == "acct-17" })
		check("account in window", store.AuditFilter{Account: "acct-2", Since: since, Until: until}, func(r *store.AuditRecord) bool { return r.Account == "acct-2" && in(r) })
		check("client", store.AuditFilter{Client: "10.0.0.7", Since: since}, func(r *store.AuditRecord) bool { return r.Client == "10.0.0.7" && !r.At.Before(since) })
		check("session", store.AuditFilter{Session: "sess-9-3"}, func(r *store.AuditRecord) bool { return r.Session == "sess-9-3" })
		check("action", store.AuditFilter{Action: "login", Until: until}, func(r *store.AuditRecord) bool { return r.Action == "login" && r.At.Before(until) })

		// A limit keeps the first entries that match, not the first of the
		// blocks read.
		rows, err := s.FindAudit(ctx, store.AuditFilter{Patient: "pat-5", Limit: 3})
		if w := want(func(r *store.AuditRecord) bool { return slices.Contains(r.Patients, "pat-5") })[:3]; err != nil || len(rows) != 3 || rows[0].Index != w[0] || rows[2].Index != w[2] {
			t.Fatalf("patient pat-5, limit 3: %d rows, %v; want %v", len(rows), err, w)
		}
		// One key per block of entries that holds the patient or account,
		// not one per entry.
		type block struct {
			k     string
			first int64
		}
		blocks := map[block]bool{}
		for idx, r := range byIdx {
			for _, p := range r.Patients {
				if p != "" {
					blocks[block{"p " + p, idx / 64}] = true
				}
			}
			if r.Account != "" {
				blocks[block{"a " + r.Account, idx / 64}] = true
			}
		}
		var keys int
		if err := s.WriterSetting(ctx, `SELECT count(*) FROM audit_key`, &keys); err != nil {
			t.Fatal(err)
		}
		if keys != len(blocks) {
			t.Errorf("%d search keys, want %d (one per block of 64 entries and patient or account)", keys, len(blocks))
		}

		// An entry is found by the very next search, keys or not.
		last := auditRec(n+1, base.Add(time.Hour))
		last.Patients = []string{"pat-fresh"}
		if err := s.AppendAudit(ctx, last); err != nil {
			t.Fatal(err)
		}
		rows, err = s.FindAudit(ctx, store.AuditFilter{Patient: "pat-fresh"})
		if err != nil || len(rows) != 1 || rows[0].Index != n {
			t.Fatalf("fresh entry: %d rows, %v", len(rows), err)
		}
	})
}

// TestSQLiteAuditSchemaUpgrade: an audit database made before search keys
// were derived (patients in audit_patient, no user_version) is upgraded
// on open, and its old entries are still found by patient and account.
func TestSQLiteAuditSchemaUpgrade(t *testing.T) {
	dir := t.TempDir()
	db, err := sql.Open("sqlite3", "file:"+sqlite.AuditPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`CREATE TABLE audit_log (idx INTEGER PRIMARY KEY, at INTEGER NOT NULL, account TEXT NOT NULL, action TEXT NOT NULL, client TEXT NOT NULL, session TEXT NOT NULL, entry BLOB NOT NULL)`,
		`CREATE INDEX audit_log_account ON audit_log (account, at)`,
		`CREATE INDEX audit_log_at ON audit_log (at)`,
		`CREATE TABLE audit_patient (patient TEXT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (patient, idx)) WITHOUT ROWID`,
		`CREATE TABLE audit_checkpoints (size INTEGER PRIMARY KEY, root BLOB NOT NULL, note TEXT NOT NULL, created INTEGER NOT NULL)`,
		`INSERT INTO audit_log VALUES (0, 1, 'acct-a', 'read', '10.0.0.1', 's1', '{"old":0}'), (1, 2, 'acct-b', 'read', '10.0.0.1', 's2', '{"old":1}')`,
		`INSERT INTO audit_patient VALUES ('pat-x', 0), ('pat-x', 1), ('pat-y', 1)`,
	} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	db.Close()

	ctx := context.Background()
	st, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatalf("open an old audit database: %v", err)
	}
	defer st.Close()
	if err := st.AppendAudit(ctx, &store.AuditRecord{At: time.UnixMicro(3), Account: "acct-a", Action: "read", Patients: []string{"pat-y"}, Entry: []byte(`{"new":2}`)}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		f    store.AuditFilter
		want []int64
	}{
		{store.AuditFilter{Patient: "pat-x"}, []int64{0, 1}},
		{store.AuditFilter{Patient: "pat-y"}, []int64{1, 2}},
		{store.AuditFilter{Account: "acct-a"}, []int64{0, 2}},
		{store.AuditFilter{Account: "acct-b", Patient: "pat-y"}, []int64{1}},
	} {
		rows, err := st.FindAudit(ctx, c.f)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, r := range rows {
			got = append(got, r.Index)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("FindAudit(%+v) = %v, want %v", c.f, got, c.want)
		}
	}
	// Opening again leaves the upgraded schema alone.
	st.Close()
	st2, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	st2.Close()
}

// TestAuditKeysOfAnAnonymousEntry: entries of no account and no patient (a
// failed login of an unknown user) alone between two key derivations must
// not stop the derivation (they once made SQLite insert a NULL key).
func TestAuditKeysOfAnAnonymousEntry(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		s := st.(*store.SQL)
		ctx := t.Context()
		base := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
		anon := &store.AuditRecord{At: base, Action: "login-failed", Client: "10.0.0.9", Entry: []byte(`{"i":0}`)}
		if err := s.AppendAudit(ctx, anon); err != nil {
			t.Fatal(err)
		}
		if err := s.IndexAudit(ctx); err != nil {
			t.Fatalf("keys of an anonymous entry: %v", err)
		}
		rec := &store.AuditRecord{At: base.Add(time.Second), Account: "acct-1", Action: "read", Client: "10.0.0.1", Patients: []string{"pat-1"}, Entry: []byte(`{"i":1}`)}
		if err := s.AppendAudit(ctx, rec); err != nil {
			t.Fatal(err)
		}
		rows, err := s.FindAudit(ctx, store.AuditFilter{Patient: "pat-1"})
		if err != nil || len(rows) != 1 {
			t.Fatalf("after an anonymous entry: %d rows, %v", len(rows), err)
		}
	})
}
