package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"fmt"
	_ "github.com/jackc/pgx/v5/stdlib"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"carnet/internal/store"
	"carnet/internal/store/postgres"
	"carnet/internal/store/sqlite"
	"carnet/internal/store/storetest"
)

// tstore is a store under test plus a raw handle to tamper with its
// database below the store's guarantees.
type tstore struct {
	st *store.SQL
	db *sql.DB // for tampering
	pg bool
}

// openSQLite opens a fresh SQLite store, as storetest.Backends does, but in
// a directory the test knows. The tamper handle is a separate connection to
// the same file (the store's own write connection belongs to its writer).
func openSQLite(t testing.TB) *tstore {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("sqlite store Close: %v", err)
		}
	})
	db, err := sql.Open("sqlite3", "file:"+sqlite.AuditPath(dir)+"?_busy_timeout=10000")
	if err != nil {
		t.Fatalf("tamper connection: %v", err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return &tstore{st: st, db: db}
}

// backends runs fn against a fresh store of every back end.
func backends(t *testing.T, fn func(t *testing.T, open func(t *testing.T) *tstore)) {
	t.Helper()
	openers := map[string]func(t *testing.T) *tstore{
		"sqlite": func(t *testing.T) *tstore { return openSQLite(t) },
		"postgres": func(t *testing.T) *tstore {
			url := storetest.PostgresURL(t)
			st, err := postgres.Open(context.Background(), url)
			if err != nil {
				t.Fatalf("postgres.Open: %v", err)
			}
			t.Cleanup(func() { st.Close() })
			db, err := sql.Open("pgx", url)
			if err != nil {
				t.Fatalf("tamper connection: %v", err)
			}
			t.Cleanup(func() { db.Close() })
			return &tstore{st: st, db: db, pg: true}
		},
	}
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) { fn(t, openers[name]) })
	}
}

// exec runs a tamper statement written with ? placeholders ($n on
// PostgreSQL).
func (s *tstore) exec(t *testing.T, q string, args ...any) int64 {
	t.Helper()
	if s.pg {
		var b strings.Builder
		n := 0
		for _, c := range q {
			if c == '?' {
				n++
				b.WriteString("$" + strconv.Itoa(n))
				continue
			}
			b.WriteRune(c)
		}
		q = b.String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		t.Fatalf("tamper %q: %v", q, err)
	}
	n, _ := res.RowsAffected()
	return n
}

// entryAt reads the stored bytes of entry idx.
func (s *tstore) entryAt(t *testing.T, idx int64) []byte {
	t.Helper()
	var out []byte
	err := s.st.AuditEntries(context.Background(), idx, idx+1, func(i int64, e []byte) error {
		out = append([]byte(nil), e...)
		return nil
	})
	if err != nil || out == nil {
		t.Fatalf("entry %d: %v (found %v)", idx, err, out != nil)
	}
	return out
}

func (s *tstore) setEntry(t *testing.T, idx int64, b []byte) {
	t.Helper()
	if n := s.exec(t, `UPDATE audit_log SET entry = ? WHERE idx = ?`, b, idx); n != 1 {
		t.Fatalf("update of entry %d changed %d rows", idx, n)
	}
}

var actions = []string{"read", "search", "create", "update", "delete", "login", "export", "grant"}

// mkEntry returns a varied entry; every third one discloses patients.
func mkEntry(i int) *Entry {
	e := &Entry{
		Time:     time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(i)*time.Second + time.Duration(i%997)*time.Microsecond),
		Account:  fmt.Sprintf("acct-%d", i%7),
		Username: fmt.Sprintf("user%d", i%7),
		Roles:    []string{"practitioner"},
		Client:   fmt.Sprintf("10.0.%d.%d", i%5, i%250),
		Session:  fmt.Sprintf("sess-%d", i%19),
		Action:   actions[i%len(actions)],
		Method:   "GET",
		Route:    "/fhir/{type}/{id}",
		Outcome:  200,
	}
	if i%3 == 0 {
		e.Patients = []string{fmt.Sprintf("pat-%05d", i), fmt.Sprintf("pat-%05d", i/3)}
		e.Disclosed = map[string][]string{"Patient": e.Patients, "Observation": e.Patients[:1], "Organization": {""}}
		e.Purpose = "care"
	}
	if i%11 == 0 {
		e.Account, e.Roles, e.Session, e.Action, e.Outcome = "", nil, "", "login", 401
	}
	if i%13 == 0 {
		e.Purpose = "break-the-glass:grant-" + strconv.Itoa(i)
		e.Subject = "grant-" + strconv.Itoa(i)
	}
	if i%17 == 0 {
		e.Method, e.Outcome = "POST", 201
	}
	return e
}

func openLog(t *testing.T, st Store, dir string) *Log {
	t.Helper()
	l, err := Open(context.Background(), st, dir, nil)
	if err != nil {
		t.Fatalf("audit.Open: %v", err)
	}
	return l
}

// appendN appends entries from..to-1 through l, checking their indexes.
func appendN(t *testing.T, l *Log, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		idx, err := l.Append(context.Background(), mkEntry(i))
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		if idx != int64(i) {
			t.Fatalf("Append %d: index %d", i, idx)
		}
	}
}

func checkpoint(t *testing.T, l *Log) *store.Checkpoint {
	t.Helper()
	cp, err := l.Checkpoint(context.Background())
	if err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	return cp
}

func verify(t *testing.T, st Store, dir string) *Report {
	t.Helper()
	rep, err := Verify(context.Background(), st, dir, nil)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

func wantOK(t *testing.T, rep *Report, entries int64) {
	t.Helper()
	if !rep.OK || rep.BadIndex != -1 || rep.Problem != "" {
		t.Fatalf("Verify: not OK: bad index %d: %s", rep.BadIndex, rep.Problem)
	}
	if rep.Entries != entries {
		t.Fatalf("Verify: %d entries, want %d", rep.Entries, entries)
	}
}

func wantBad(t *testing.T, rep *Report, idx int64, problem ...string) {
	t.Helper()
	if rep.OK {
		t.Fatalf("Verify: OK (%d entries), want a failure at %d", rep.Entries, idx)
	}
	if rep.BadIndex != idx {
		t.Errorf("Verify: bad index %d, want %d (%s)", rep.BadIndex, idx, rep.Problem)
	}
	for _, p := range problem {
		if !strings.Contains(rep.Problem, p) {
			t.Errorf("Verify problem %q does not mention %q", rep.Problem, p)
		}
	}
	t.Logf("detected: bad index %d: %s", rep.BadIndex, rep.Problem)
}

// witnessCheckpointSizes reads the sizes in the witness's checkpoints file.
func witnessCheckpointSizes(t *testing.T, dir string) []int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, checkpointsFile))
	if err != nil {
		t.Fatalf("witness checkpoints: %v", err)
	}
	var out []int64
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		n, err := strconv.ParseInt(strings.Fields(line)[0], 10, 64)
		if err != nil {
			t.Fatalf("witness checkpoints line %q: %v", line, err)
		}
		out = append(out, n)
	}
	return out
}

func dbCheckpointSizes(t *testing.T, st Store) []int64 {
	t.Helper()
	cps, err := st.Checkpoints(context.Background())
	if err != nil {
		t.Fatalf("Checkpoints: %v", err)
	}
	var out []int64
	for _, c := range cps {
		out = append(out, c.Size)
	}
	return out
}

// 1. Round trip.
func TestRoundTrip(t *testing.T) {
	backends(t, func(t *testing.T, open func(*testing.T) *tstore) {
		s := open(t)
		dir := t.TempDir()
		l := openLog(t, s.st, dir)
		const n = 300
		cuts := []int{0, 37, 100, 101, 256, 299, n}
		for i := 1; i < len(cuts); i++ {
			appendN(t, l, cuts[i-1], cuts[i])
			cp := checkpoint(t, l)
			if cp == nil || cp.Size != int64(cuts[i]) {
				t.Fatalf("checkpoint after %d entries: %+v", cuts[i], cp)
			}
			if size, root, err := l.Root(); err != nil || size != cp.Size || !bytes.Equal(root, cp.Root) {
				t.Fatalf("Root() = %d %x %v, checkpoint %d %x", size, root, err, cp.Size, cp.Root)
			}
		}
		if cp := checkpoint(t, l); cp != nil {
			t.Fatalf("checkpoint with nothing new: %+v", cp)
		}
		if err := l.Close(context.Background()); err != nil {
			t.Fatalf("Close: %v", err)
		}
		rep := verify(t, s.st, dir)
		wantOK(t, rep, n)
		if rep.Witnessed != n {
			t.Errorf("Witnessed %d, want %d", rep.Witnessed, n)
		}
		// The root is RFC 6962's over the stored entries.
		var leaves [][]byte
		err := s.st.AuditEntries(context.Background(), 0, -1, func(idx int64, e []byte) error {
			if want := mkEntry(int(idx)).Encode(); !bytes.Equal(e, want) {
				return fmt.Errorf("entry %d stored as %s, want %s", idx, e, want)
			}
			leaves = append(leaves, LeafHash(e))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		cps, _ := s.st.Checkpoints(context.Background())
		if got := treeRoot(leaves); !bytes.Equal(got, cps[len(cps)-1].Root) {
			t.Fatalf("latest checkpoint root %x, recomputed %x", cps[len(cps)-1].Root, got)
		}
		// Patients are searchable.
		rows, err := s.st.FindAudit(context.Background(), store.AuditFilter{Patient: "pat-00057"})
		if err != nil || len(rows) != 2 || rows[0].Index != 57 || rows[1].Index != 171 {
			t.Fatalf("FindAudit(pat-00057) = %d rows, %v; want entries 57 and 171", len(rows), err)
		}
	})
}

// treeRoot is an independent RFC 6962 root (plain recursion).
func treeRoot(leaves [][]byte) []byte {
	h := rfc6962.DefaultHasher
	if len(leaves) == 0 {
		return h.EmptyRoot()
	}
	if len(leaves) == 1 {
		return leaves[0]
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	return h.HashChildren(treeRoot(leaves[:k]), treeRoot(leaves[k:]))
}

// fixture builds a log of n entries checkpointed at every size in cps (and
// at n), closed so that witness and database agree, and verified intact.
func fixture(t *testing.T, open func(*testing.T) *tstore, n int, cps []int) (*tstore, string) {
	t.Helper()
	s := open(t)
	dir := t.TempDir()
	l := openLog(t, s.st, dir)
	from := 0
	for _, c := range append(slices.Clone(cps), n) {
		if c <= from {
			continue
		}
		appendN(t, l, from, c)
		checkpoint(t, l)
		from = c
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wantOK(t, verify(t, s.st, dir), int64(n))
	return s, dir
}

// 2. Tampering with the database.
func TestTamper(t *testing.T) {
	const n = 200
	cps := []int{50, 100, 150}
	backends(t, func(t *testing.T, open func(*testing.T) *tstore) {
		t.Run("edit", func(t *testing.T) {
			s, dir := fixture(t, open, n, cps)
			old := s.entryAt(t, 57)
			e, err := Decode(old)
			if err != nil || len(e.Patients) == 0 {
				t.Fatalf("entry 57: %v %+v", err, e)
			}
			forged := bytes.Replace(old, []byte(`"`+e.Patients[0]+`"`), []byte(`"pat-99999"`), 1)
			if bytes.Equal(forged, old) {
				t.Fatal("patient id not replaced")
			}
			s.setEntry(t, 57, forged)
			wantBad(t, verify(t, s.st, dir), 57, "entry 57")
		})
		t.Run("delete", func(t *testing.T) {
			s, dir := fixture(t, open, n, cps)
			if k := s.exec(t, `DELETE FROM audit_log WHERE idx = ?`, 80); k != 1 {
				t.Fatalf("deleted %d rows", k)
			}
			wantBad(t, verify(t, s.st, dir), 80, "missing")
		})
		t.Run("swap", func(t *testing.T) {
			s, dir := fixture(t, open, n, cps)
			a, b := s.entryAt(t, 30), s.entryAt(t, 90)
			s.setEntry(t, 30, b)
			s.setEntry(t, 90, a)
			wantBad(t, verify(t, s.st, dir), 30, "entry 30")
		})
		t.Run("insert", func(t *testing.T) {
			s, dir := fixture(t, open, n, cps)
			if k := s.exec(t, `UPDATE audit_log SET idx = idx + 1000000 WHERE idx >= ?`, 120); k != n-120 {
				t.Fatalf("shifted %d rows", k)
			}
			s.exec(t, `UPDATE audit_log SET idx = idx - 999999 WHERE idx >= ?`, 1000000)
			e := mkEntry(120)
			e.Action, e.Patients = "read", []string{"pat-innocent"}
			s.exec(t, `INSERT INTO audit_log (idx, at, account, action, client, session, entry) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				120, e.Time.UnixMicro(), e.Account, e.Action, e.Client, e.Session, e.Encode())
			if got, _ := s.st.AuditSize(context.Background()); got != n+1 {
				t.Fatalf("size after insert %d", got)
			}
			wantBad(t, verify(t, s.st, dir), 120, "entry 120")
		})
		t.Run("truncate", func(t *testing.T) {
			s, dir := fixture(t, open, n, cps)
			if k := s.exec(t, `DELETE FROM audit_log WHERE idx >= ?`, 150); k != n-150 {
				t.Fatalf("deleted %d rows", k)
			}
			rep := verify(t, s.st, dir)
			wantBad(t, rep, 150)
			if !strings.Contains(rep.Problem, "removed") && !strings.Contains(rep.Problem, "truncated") {
				t.Errorf("problem %q mentions neither removal nor truncation", rep.Problem)
			}
		})
		t.Run("truncate-uncheckpointed-tail", func(t *testing.T) {
			// The last checkpoint covers 150 entries, the witness's leaves
			// 200: cutting back to 170 is caught by the leaves alone.
			s, dir := fixture(t, open, n, cps)
			s.exec(t, `DELETE FROM audit_checkpoints WHERE size > ?`, 150)
			if k := s.exec(t, `DELETE FROM audit_log WHERE idx >= ?`, 170); k != n-170 {
				t.Fatalf("deleted %d rows", k)
			}
			rep := verify(t, s.st, dir)
			wantBad(t, rep, 170)
			if !strings.Contains(rep.Problem, "removed") && !strings.Contains(rep.Problem, "truncated") {
				t.Errorf("problem %q mentions neither removal nor truncation", rep.Problem)
			}
		})
		t.Run("rebuild-forged-key", func(t *testing.T) {
			s, dir := fixture(t, open, n, cps)
			attacker := rebuild(t, s, 40)
			rep := verify(t, s.st, dir)
			wantBad(t, rep, -1, "not signed by the witness key")
			// The forgery is self-consistent: against the attacker's own
			// witness it passes, so only the real witness key catches it.
			wantOK(t, verify(t, s.st, attacker), n)
		})
		t.Run("rebuild-checkpoints-dropped", func(t *testing.T) {
			// No key, no witness access: the attacker drops every database
			// checkpoint rather than leave one that no longer matches.
			s, dir := fixture(t, open, n, cps)
			forgeEntry40(t, s)
			s.exec(t, `DELETE FROM audit_checkpoints`)
			wantBad(t, verify(t, s.st, dir), 40, "entry 40", "witness")
		})
		t.Run("edit-with-witness-leaf", func(t *testing.T) {
			// The attacker also rewrites leaf 40 in the witness but cannot
			// sign: the first signed root covering entry 40 (size 50) no
			// longer matches. Verify can only localise the change to the
			// range that checkpoint added: it names its first entry, 0..49
			// here (checkpoints at 50, 100, ...), and says the range.
			s, dir := fixture(t, open, n, cps)
			forged := forgeEntry40(t, s)
			rewriteLeaf(t, dir, 40, LeafHash(forged))
			wantBad(t, verify(t, s.st, dir), 0, "does not match its signed checkpoint", "one of entries 0 to 49")
		})
		t.Run("edit-with-witness-leaf-fine-checkpoints", func(t *testing.T) {
			// With a checkpoint after every entry the root check names 40.
			every := make([]int, 60)
			for i := range every {
				every[i] = i + 1
			}
			s, dir := fixture(t, open, n, every)
			forged := forgeEntry40(t, s)
			rewriteLeaf(t, dir, 40, LeafHash(forged))
			wantBad(t, verify(t, s.st, dir), 40, "does not match its signed checkpoint")
		})
	})
}

// forgeEntry40 replaces entry 40 in the database and returns its bytes.
func forgeEntry40(t *testing.T, s *tstore) []byte {
	t.Helper()
	e, err := Decode(s.entryAt(t, 40))
	if err != nil {
		t.Fatal(err)
	}
	e.Account, e.Username, e.Outcome = "acct-innocent", "innocent", 403
	b := e.Encode()
	s.setEntry(t, 40, b)
	return b
}

func rewriteLeaf(t *testing.T, dir string, idx int64, h []byte) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, leavesFile), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(h, idx*32); err != nil {
		t.Fatal(err)
	}
}

// rebuild plays an attacker with the database only: entry idx is replaced,
// every checkpoint recomputed over the altered entries and signed with the
// attacker's own key, and the database's checkpoints replaced. It returns
// the attacker's own witness directory (key, leaves, checkpoints) for the
// forged log.
func rebuild(t *testing.T, s *tstore, idx int64) string {
	t.Helper()
	ctx := context.Background()
	old := s.entryAt(t, idx)
	e, err := Decode(old)
	if err != nil {
		t.Fatal(err)
	}
	e.Patients, e.Disclosed, e.Outcome = nil, nil, 404
	s.setEntry(t, idx, e.Encode())

	sk, vk, err := note.GenerateKey(rand.Reader, "carnet-audit")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(sk)
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[int64]bool{}
	for _, sz := range dbCheckpointSizes(t, s.st) {
		sizes[sz] = true
	}
	rng := (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewEmptyRange(0)
	var leaves bytes.Buffer
	type forged struct {
		size int64
		root []byte
		note string
	}
	var out []forged
	sign := func(size int64, root []byte) error {
		text := "carnet-audit\n" + strconv.FormatInt(size, 10) + "\n" + base64.StdEncoding.EncodeToString(root) + "\n"
		if text != checkpointText(size, root) {
			t.Errorf("forged text %q differs from checkpointText", text)
		}
		msg, err := note.Sign(&note.Note{Text: text}, signer)
		if err != nil {
			return err
		}
		out = append(out, forged{size, root, string(msg)})
		return nil
	}
	if sizes[0] { // the empty tree's checkpoint, made when the log was opened
		if err := sign(0, rfc6962.DefaultHasher.EmptyRoot()); err != nil {
			t.Fatal(err)
		}
	}
	err = s.st.AuditEntries(ctx, 0, -1, func(i int64, entry []byte) error {
		h := LeafHash(entry)
		leaves.Write(h)
		if err := rng.Append(h, nil); err != nil {
			return err
		}
		if sizes[i+1] {
			root, err := rng.GetRootHash(nil)
			if err != nil {
				return err
			}
			return sign(i+1, root)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(sizes) {
		t.Fatalf("forged %d of %d checkpoints", len(out), len(sizes))
	}
	s.exec(t, `DELETE FROM audit_checkpoints`)
	adir := t.TempDir()
	var lines strings.Builder
	for _, c := range out {
		s.exec(t, `INSERT INTO audit_checkpoints (size, root, note, created) VALUES (?, ?, ?, ?)`, c.size, c.root, c.note, time.Now().UnixMicro())
		fmt.Fprintf(&lines, "%d %s %s\n", c.size, base64.StdEncoding.EncodeToString(c.root), base64.StdEncoding.EncodeToString([]byte(c.note)))
	}
	for name, data := range map[string][]byte{
		pubFile:         []byte(vk + "\n"),
		keyFile:         []byte(sk + "\n"),
		leavesFile:      leaves.Bytes(),
		checkpointsFile: []byte(lines.String()),
	} {
		if err := os.WriteFile(filepath.Join(adir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return adir
}

// 3. Entries committed but never checkpointed (a crash): Open catches up.
func TestCrashBeforeCheckpoint(t *testing.T) {
	backends(t, func(t *testing.T, open func(*testing.T) *tstore) {
		s := open(t)
		dir := t.TempDir()
		l := openLog(t, s.st, dir)
		appendN(t, l, 0, 100)
		checkpoint(t, l)
		appendN(t, l, 100, 160)
		// Crash: the process dies without a checkpoint.
		l.leaves.Close()
		if got := l.Size(); got != 100 {
			t.Fatalf("Size before the crash %d, want 100", got)
		}
		// The uncheckpointed tail is not covered yet but nothing is wrong.
		wantOK(t, verify(t, s.st, dir), 160)

		l2 := openLog(t, s.st, dir)
		if got := l2.Size(); got != 160 {
			t.Fatalf("Size after reopening %d, want 160", got)
		}
		if w := witnessCheckpointSizes(t, dir); w[len(w)-1] != 160 {
			t.Fatalf("witness checkpoints %v, want the last at 160", w)
		}
		if d := dbCheckpointSizes(t, s.st); d[len(d)-1] != 160 {
			t.Fatalf("database checkpoints %v, want the last at 160", d)
		}
		rep := verify(t, s.st, dir)
		wantOK(t, rep, 160)
		if rep.Witnessed != 160 {
			t.Fatalf("Witnessed %d, want 160", rep.Witnessed)
		}
		if err := l2.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// 3b. A crash inside Checkpoint, after the witness's leaves were written but
// before the checkpoint was: the log goes on and verifies.
func TestCrashInsideCheckpoint(t *testing.T) {
	backends(t, func(t *testing.T, open func(*testing.T) *tstore) {
		s, dir := fixture(t, open, 150, []int{100})
		// Undo the last checkpoint, leaving its leaves in the witness.
		s.exec(t, `DELETE FROM audit_checkpoints WHERE size = ?`, 150)
		cpf := filepath.Join(dir, checkpointsFile)
		b, err := os.ReadFile(cpf)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
		if err := os.WriteFile(cpf, []byte(strings.Join(lines[:len(lines)-1], "")), 0o600); err != nil {
			t.Fatal(err)
		}
		if w := witnessCheckpointSizes(t, dir); w[len(w)-1] != 100 {
			t.Fatalf("witness checkpoints %v", w)
		}
		wantOK(t, verify(t, s.st, dir), 150)
		l := openLog(t, s.st, dir)
		appendN(t, l, 150, 170)
		if err := l.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if d := dbCheckpointSizes(t, s.st); d[len(d)-1] != 170 {
			t.Fatalf("database checkpoints %v, want the last at 170", d)
		}
		wantOK(t, verify(t, s.st, dir), 170)
	})
}

// 4. Reopening continues the same tree.
func TestReopen(t *testing.T) {
	backends(t, func(t *testing.T, open func(*testing.T) *tstore) {
		s := open(t)
		dir := t.TempDir()
		l := openLog(t, s.st, dir)
		appendN(t, l, 0, 120)
		if err := l.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		_, root1, _ := l.Root()
		pub1, _ := os.ReadFile(filepath.Join(dir, pubFile))

		l = openLog(t, s.st, dir)
		if size, root, err := l.Root(); err != nil || size != 120 || !bytes.Equal(root, root1) {
			t.Fatalf("reopened Root() = %d %x %v, want 120 %x", size, root, err, root1)
		}
		if pub2, _ := os.ReadFile(filepath.Join(dir, pubFile)); !bytes.Equal(pub1, pub2) {
			t.Fatal("reopening changed the witness key")
		}
		appendN(t, l, 120, 250)
		checkpoint(t, l)
		appendN(t, l, 250, 260)
		if err := l.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		l = openLog(t, s.st, dir)
		appendN(t, l, 260, 270)
		if err := l.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(filepath.Join(dir, leavesFile)); err != nil || fi.Size() != 270*32 {
			t.Fatalf("witness leaves: %v %v, want %d bytes", fi, err, 270*32)
		}
		rep := verify(t, s.st, dir)
		wantOK(t, rep, 270)
		if rep.Witnessed != 270 {
			t.Fatalf("Witnessed %d, want 270", rep.Witnessed)
		}
		// The tree is one tree: its root covers every entry.
		var leaves [][]byte
		s.st.AuditEntries(context.Background(), 0, -1, func(_ int64, e []byte) error {
			leaves = append(leaves, LeafHash(e))
			return nil
		})
		if _, root, _ := l.Root(); !bytes.Equal(root, treeRoot(leaves)) {
			t.Fatal("root after reopening is not the root of all entries")
		}
	})
}

// 5. A witness directory that is not this log's.
func TestWrongWitness(t *testing.T) {
	backends(t, func(t *testing.T, open func(*testing.T) *tstore) {
		s, dir := fixture(t, open, 80, []int{40})
		t.Run("fresh-key", func(t *testing.T) {
			other := t.TempDir()
			if _, err := OpenWitness(other); err != nil {
				t.Fatal(err)
			}
			wantBad(t, verify(t, s.st, other), -1, "not signed by the witness key")
		})
		t.Run("another-log", func(t *testing.T) {
			// Another log's complete witness (its own key, leaves and
			// checkpoints), of the same entries even.
			s2 := open(t)
			other := t.TempDir()
			l := openLog(t, s2.st, other)
			appendN(t, l, 0, 80)
			if err := l.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			wantOK(t, verify(t, s2.st, other), 80)
			wantBad(t, verify(t, s.st, other), -1, "not signed by the witness key")
		})
		t.Run("key-swapped", func(t *testing.T) {
			// The right leaves and checkpoints but another public key.
			other := t.TempDir()
			for _, f := range []string{leavesFile, checkpointsFile} {
				b, err := os.ReadFile(filepath.Join(dir, f))
				if err != nil {
					t.Fatal(err)
				}
				os.WriteFile(filepath.Join(other, f), b, 0o600)
			}
			_, vk, _ := note.GenerateKey(rand.Reader, Origin)
			os.WriteFile(filepath.Join(other, pubFile), []byte(vk+"\n"), 0o644)
			rep := verify(t, s.st, other)
			wantBad(t, rep, -1, "signature")
		})
		t.Run("no-key", func(t *testing.T) {
			if _, err := Verify(context.Background(), s.st, t.TempDir(), nil); err == nil {
				t.Fatal("Verify without a witness key: no error")
			}
		})
	})
}

// 6. A million entries (SQLite).
func TestLarge(t *testing.T) {
	const n, batch = 1_000_000, 5_000
	s := openSQLite(t)
	ctx := context.Background()
	dir := t.TempDir()
	start := time.Now()
	l := openLog(t, s.st, dir)

	bytesTotal := appendBulk(t, s.st, n, batch)
	appended := time.Since(start)
	t0 := time.Now()
	cp := checkpoint(t, l)
	if cp == nil || cp.Size != n {
		t.Fatalf("checkpoint %+v", cp)
	}
	checkpointed := time.Since(t0)
	t0 = time.Now()
	var last int64
	rep, err := Verify(ctx, s.st, dir, func(done int64) {
		if done < last {
			t.Errorf("progress went back from %d to %d", last, done)
		}
		last = done
	})
	if err != nil {
		t.Fatal(err)
	}
	verified := time.Since(t0)
	wantOK(t, rep, n)
	if last != n {
		t.Errorf("last progress %d, want %d", last, n)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d entries (%.0f bytes each): append %v (%.0f/s), checkpoint %v, verify %v (%.0f/s), total %v",
		n, float64(bytesTotal)/n, appended.Round(time.Millisecond), n/appended.Seconds(),
		checkpointed.Round(time.Millisecond), verified.Round(time.Millisecond), n/verified.Seconds(), time.Since(start).Round(time.Millisecond))
}

// The witness's leaves file holds exactly the leaf hashes, in order.
func TestWitnessLeaves(t *testing.T) {
	s := openSQLite(t)
	dir := t.TempDir()
	l := openLog(t, s.st, dir)
	appendN(t, l, 0, 33)
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, leavesFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	for i := range 33 {
		h := make([]byte, 32)
		if _, err := io.ReadFull(r, h); err != nil {
			t.Fatal(err)
		}
		if want := LeafHash(mkEntry(i).Encode()); !bytes.Equal(h, want) {
			t.Fatalf("leaf %d %x, want %x", i, h, want)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, keyFile)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("signing key mode %v", fi.Mode())
	}
}

// appendBulk appends n small entries (about 140 bytes, every fourth with a
// patient) straight through the store, batch records per AppendAudit call;
// a producer builds the next batch while one commits. It returns the
// entries' total size.
func appendBulk(tb testing.TB, st *store.SQL, n, batch int) int {
	tb.Helper()
	ctx := context.Background()
	from, err := st.AuditSize(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	batches := make(chan []*store.AuditRecord, 2)
	go func() {
		defer close(batches)
		base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		for b := 0; b < n; b += batch {
			recs := make([]*store.AuditRecord, min(batch, n-b))
			for j := range recs {
				i := b + j
				e := &Entry{Time: base.Add(time.Duration(i) * time.Millisecond), Account: "acct-" + strconv.Itoa(i%50),
					Client: "10.1.2." + strconv.Itoa(i%250), Action: actions[i%len(actions)], Route: "/fhir/Observation", Outcome: 200}
				if i%4 == 0 {
					e.Patients = []string{"pat-" + strconv.Itoa(i%20000)}
				}
				recs[j] = &store.AuditRecord{At: e.Time, Account: e.Account, Action: e.Action, Client: e.Client, Patients: e.Patients, Entry: e.Encode()}
			}
			batches <- recs
		}
	}()
	total := 0
	next := from
	for recs := range batches {
		if err := st.AppendAudit(ctx, recs...); err != nil {
			for range batches { // let the producer finish
			}
			tb.Fatalf("AppendAudit: %v", err)
		}
		for _, r := range recs {
			if r.Index != next {
				for range batches {
				}
				tb.Fatalf("index %d, want %d", r.Index, next)
			}
			next++
			total += len(r.Entry)
		}
	}
	return total
}

// 7. Concurrent appends while checkpointing. The group-commit writer puts
// several AppendAudit requests (no resource writes) in one transaction.
func TestConcurrentAppend(t *testing.T) {
	backends(t, func(t *testing.T, open func(*testing.T) *tstore) {
		const workers, each = 16, 200
		s := open(t)
		dir := t.TempDir()
		l := openLog(t, s.st, dir)
		ctx := context.Background()

		stop := make(chan struct{})
		cpDone := make(chan int)
		go func() {
			k := 0
			for {
				select {
				case <-stop:
					cpDone <- k
					return
				default:
				}
				cp, err := l.Checkpoint(ctx)
				if err != nil {
					t.Errorf("Checkpoint: %v", err)
				}
				if cp != nil {
					k++
				}
			}
		}()

		var mu sync.Mutex
		got := map[int64][]byte{}
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					e := mkEntry(w*each + i)
					e.Session = fmt.Sprintf("worker-%d-%d", w, i)
					idx, err := l.Append(ctx, e)
					if err != nil {
						t.Errorf("Append: %v", err)
						return
					}
					mu.Lock()
					if _, dup := got[idx]; dup {
						t.Errorf("index %d returned twice", idx)
					}
					got[idx] = e.Encode()
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(stop)
		k := <-cpDone
		checkpoint(t, l)
		t.Logf("%d checkpoints during the appends", k)

		const total = workers * each
		if len(got) != total {
			t.Fatalf("%d indexes, want %d", len(got), total)
		}
		var next int64
		err := s.st.AuditEntries(ctx, 0, -1, func(idx int64, e []byte) error {
			if idx != next {
				return fmt.Errorf("index %d, want %d", idx, next)
			}
			if !bytes.Equal(e, got[idx]) {
				return fmt.Errorf("entry %d is not what Append returned it for", idx)
			}
			next++
			return nil
		})
		if err != nil || next != total {
			t.Fatalf("stored entries: %v (%d)", err, next)
		}
		if l.Size() != total {
			t.Fatalf("Size %d, want %d", l.Size(), total)
		}
		if err := l.Close(ctx); err != nil {
			t.Fatal(err)
		}
		rep := verify(t, s.st, dir)
		wantOK(t, rep, total)
		if rep.Witnessed != total {
			t.Fatalf("Witnessed %d", rep.Witnessed)
		}
	})
}
