package store_test

// Encryption at rest, end to end on real stores: a copy of the SQLite files
// or a pg_dump holds no patient (with a control proving the scan finds
// clear data), searches still find patients through the blind indexes, a
// ciphertext moved to another record does not open, and a key rotation
// with a reseal keeps every record readable while the store serves.

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"carnet/internal/fhir"
	"carnet/internal/load"
	"carnet/internal/record"
	"carnet/internal/seal"
	"carnet/internal/store"
	"carnet/internal/store/postgres"
	"carnet/internal/store/sqlite"
	"carnet/internal/store/storetest"
	"carnet/internal/synth"
)

// sysINS is the INS (NIR) identifier system.
const sysINS = "urn:oid:1.2.250.1.213.1.4.8"

// sealedPatient is what a test needs of one Patient.
type sealedPatient struct {
	id, family, given, birth, ins string
	phones, emails                []string
	data                          []byte
}

func sealedPatientOf(t *testing.T, m *store.Resource) sealedPatient {
	t.Helper()
	r, err := fhir.Parse(m.Data)
	if err != nil {
		t.Fatalf("Patient/%s: %v", m.ID, err)
	}
	p := sealedPatient{id: m.ID, data: m.Data}
	if names, ok := r["name"].([]any); ok && len(names) > 0 {
		n := names[0].(map[string]any)
		p.family, _ = n["family"].(string)
		if gs, ok := n["given"].([]any); ok && len(gs) > 0 {
			p.given, _ = gs[0].(string)
		}
	}
	p.birth, _ = r["birthDate"].(string)
	ids, _ := r["identifier"].([]any)
	for _, x := range ids {
		x := x.(map[string]any)
		if x["system"] == sysINS {
			p.ins, _ = x["value"].(string)
		}
	}
	tel, _ := r["telecom"].([]any)
	for _, x := range tel {
		x := x.(map[string]any)
		v, _ := x["value"].(string)
		switch x["system"] {
		case "phone":
			p.phones = append(p.phones, v)
		case "email":
			p.emails = append(p.emails, v)
		}
	}
	if p.family == "" || p.ins == "" || p.birth == "" {
		t.Fatalf("Patient/%s lacks a family name, an INS or a birth date: %s", m.ID, m.Data)
	}
	return p
}

// sealedPatients returns up to max current Patients, in id order, read
// through Search (so opened from the database).
func sealedPatients(t *testing.T, st store.Store, max int) []sealedPatient {
	t.Helper()
	var out []sealedPatient
	for off := 0; len(out) < max; off += fhir.MaxCount {
		page := search(t, st, "Patient", fmt.Sprintf("_sort=_id&_count=%d&_offset=%d", fhir.MaxCount, off))
		for _, m := range page.Matches {
			if len(out) < max {
				out = append(out, sealedPatientOf(t, m))
			}
		}
		if len(page.Matches) < fhir.MaxCount {
			break
		}
	}
	return out
}

// ---- scanning bytes for patient data -----------------------------------

// minNeedle is the shortest needle: shorter ones would match random bytes.
const minNeedle = 5

type leakNeedle struct {
	kind, patient string
	b             []byte
	// b64: only base64url characters (a name, digits): such a needle is
	// ignored inside a long run of them (a blind-index hash, hex), where
	// it would occur by chance.
	b64 bool
}

// leakScanner finds many needles in large byte slices in one pass.
type leakScanner struct {
	needles []leakNeedle
	seen    map[string]bool
	first   map[uint64][]int32 // first minNeedle bytes -> needles
	pair    [1 << 16 / 64]uint64
	found   []int // hits per needle
	where   []string
	ignored []bool
}

func newLeakScanner() *leakScanner {
	return &leakScanner{seen: map[string]bool{}, first: map[uint64][]int32{}}
}

func isB64(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func key5(b []byte) uint64 {
	return uint64(b[0])<<32 | uint64(b[1])<<24 | uint64(b[2])<<16 | uint64(b[3])<<8 | uint64(b[4])
}

func (s *leakScanner) add(kind, patient, v string) {
	if len(v) < minNeedle || s.seen[v] {
		return
	}
	s.seen[v] = true
	b := []byte(v)
	n := leakNeedle{kind: kind, patient: patient, b: b, b64: true}
	for _, c := range b {
		n.b64 = n.b64 && isB64(c)
	}
	i := int32(len(s.needles))
	s.needles = append(s.needles, n)
	s.found = append(s.found, 0)
	s.where = append(s.where, "")
	s.ignored = append(s.ignored, false)
	k := key5(b)
	s.first[k] = append(s.first[k], i)
	p := uint16(b[0])<<8 | uint16(b[1])
	s.pair[p/64] |= 1 << (p % 64)
}

// addPatient adds p's family and given names (as written, lower case and
// search-normalised), e-mails, phones (as written and as national digits)
// and INS.
func (s *leakScanner) addPatient(p sealedPatient) {
	for _, n := range []struct{ kind, v string }{{"family", p.family}, {"given", p.given}} {
		s.add(n.kind, p.id, n.v)
		s.add(n.kind, p.id, fhir.NormString(n.v))
		// lower case with accents: in no clear store either (not counted
		// by the control)
		s.add("lower", p.id, strings.ToLower(n.v))
	}
	for _, e := range p.emails {
		s.add("email", p.id, e)
	}
	for _, ph := range p.phones {
		s.add("phone", p.id, ph)
		s.add("phone", p.id, fhir.NormToken("phone", ph))
	}
	s.add("ins", p.id, p.ins)
}

// longRun reports whether data[i:i+n] lies in a run of at least run
// base64url characters.
func longRun(data []byte, i, n, run int) bool {
	lo, hi := i, i+n
	for lo > 0 && isB64(data[lo-1]) && hi-lo < run {
		lo--
	}
	for hi < len(data) && isB64(data[hi]) && hi-lo < run {
		hi++
	}
	return hi-lo >= run
}

// chanceRun is the run of base64url characters in which a needle is taken
// for chance: 20, and 16 for a needle of letters only (a name). A
// blind-index token is 16 characters, and a five-letter name occurs in the
// tokens of a few thousand patients now and then ("lUoUsySAannieZu0" failed
// a run); in a clear store's files names are never in such runs (the
// control finds them all), while phone numbers are (next to other digits).
func chanceRun(b []byte) int {
	for _, c := range b {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return 20
		}
	}
	return 16
}

// scan counts the needles found in data (named where).
func (s *leakScanner) scan(where string, data []byte) {
	for i := 0; i+minNeedle <= len(data); i++ {
		p := uint16(data[i])<<8 | uint16(data[i+1])
		if s.pair[p/64]&(1<<(p%64)) == 0 {
			continue
		}
		for _, ni := range s.first[key5(data[i:])] {
			n := &s.needles[ni]
			if !bytes.HasPrefix(data[i:], n.b) || n.b64 && longRun(data, i, len(n.b), chanceRun(n.b)) {
				continue
			}
			if s.found[ni] == 0 {
				lo, hi := max(0, i-40), min(len(data), i+len(n.b)+40)
				s.where[ni] = fmt.Sprintf("%s at byte %d: %q", where, i, data[lo:hi])
			}
			s.found[ni]++
		}
	}
}

// ignore drops the needles found in clear, which is what a store keeps in
// clear by design (code system URIs such as a facility's IPP system
// "https://carnet.example/fac/cl-paris15/ipp", ids, the schema, pg_dump's
// SET lines): a family name "Paris" is there as a place. It returns them.
func (s *leakScanner) ignore(clear []byte) []string {
	s.scan("clear by design", clear)
	var out []string
	for i := range s.needles {
		if s.found[i] > 0 {
			s.ignored[i] = true
			out = append(out, fmt.Sprintf("%s %q", s.needles[i].kind, s.needles[i].b))
		}
	}
	s.reset()
	return out
}

func (s *leakScanner) reset() {
	clear(s.found)
	clear(s.where)
}

// hits returns how many needles of kind ("" any) were found, out of how many.
func (s *leakScanner) hits(kind string) (found, all int) {
	for i, n := range s.needles {
		if !s.ignored[i] && (kind == "" || n.kind == kind) {
			all++
			if s.found[i] > 0 {
				found++
			}
		}
	}
	return found, all
}

// report lists up to max needles found.
func (s *leakScanner) report(max int) string {
	var b strings.Builder
	k := 0
	for i, n := range s.needles {
		if s.found[i] == 0 || s.ignored[i] {
			continue
		}
		if k++; k > max {
			fmt.Fprintf(&b, "\n  ...")
			break
		}
		fmt.Fprintf(&b, "\n  %s %q of Patient/%s (%d times), first in %s", n.kind, n.b, n.patient, s.found[i], s.where[i])
	}
	return b.String()
}

// missing lists up to max needles of kind not found.
func (s *leakScanner) missing(kind string, max int) []string {
	var out []string
	for i, n := range s.needles {
		if !s.ignored[i] && n.kind == kind && s.found[i] == 0 && len(out) < max {
			out = append(out, fmt.Sprintf("%q", n.b))
		}
	}
	return out
}

// designClear are queries of what a store keeps in clear by design: token
// systems, ids, facility ids.
var designClear = []string{`SELECT DISTINCT sys FROM idx_tok`, `SELECT DISTINCT id FROM resources`, `SELECT DISTINCT facility FROM care_link`}

// clearByDesign returns the values queries read from db.
func clearByDesign(t *testing.T, db *sql.DB, queries ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, q := range queries {
		rows, err := db.QueryContext(t.Context(), q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		for rows.Next() {
			var v sql.NullString
			if err := rows.Scan(&v); err != nil {
				t.Fatal(err)
			}
			b.WriteString(v.String)
			b.WriteByte('\n')
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// scanDir scans every file of dir.
func (s *leakScanner) scanDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		s.scan(e.Name(), b)
		names = append(names, fmt.Sprintf("%s (%d bytes)", e.Name(), len(b)))
	}
	return names
}

// fillForScan loads a synthetic group of n patients, then commits like a
// server would (new patients with a facility, contact changes, a
// deletion), and returns a scanner holding the needles of the first max
// patients and of every patient written after the load.
func fillForScan(t *testing.T, st store.Store, n, max int) *leakScanner {
	t.Helper()
	ctx := t.Context()
	if _, err := load.Synthetic(ctx, st, synth.Config{Seed: 7, Patients: n}, nil, nil); err != nil {
		t.Fatalf("Synthetic: %v", err)
	}
	sc := newLeakScanner()
	ps := sealedPatients(t, st, max)
	if len(ps) != max {
		t.Fatalf("%d patients read, want %d", len(ps), max)
	}
	for _, p := range ps {
		sc.addPatient(p)
	}
	org := search(t, st, "Organization", "_count=1&_sort=_id")
	if len(org.Matches) != 1 {
		t.Fatal("no Organization loaded")
	}
	svc := record.New(st)
	// new patients, sealed one by one with their facility's key
	for i := range 5 {
		js := fmt.Sprintf(`{"resourceType":"Patient","name":[{"family":"Scellé-Témoin%c","given":["Ondine%c"]}],"birthDate":"1977-0%d-1%d",`+
			`"identifier":[{"system":"%s","value":"29905750120%02d%02d"}],`+
			`"telecom":[{"system":"phone","value":"+33 6 71 82 93 %02d"},{"system":"email","value":"ondine.temoin%d@scelle.example.fr"}],`+
			`"managingOrganization":{"reference":"Organization/%s"}}`, 'a'+i, 'a'+i, i+1, i, sysINS, i, 40+i, 10+i, i, org.Matches[0].ID)
		sc.addPatient(sealedPatientOf(t, create(t, svc, "Patient", js)))
	}
	// e-mail changes: the old address stays in history, the new one is new
	// (phones are kept: a clear database's index drops a replaced phone's
	// digits, which the control would then miss)
	for i, p := range ps[:20] {
		r := parse(t, string(p.data))
		tel, _ := r["telecom"].([]any)
		tel = append(slices.Clone(tel), map[string]any{"system": "email", "value": fmt.Sprintf("nouvelle.adresse%d@scelle.example.fr", i), "use": "work"})
		r["telecom"] = tel
		out, err := svc.Update(ctx, "Patient", p.id, r, 0)
		if err != nil || out.Resource.Version != 2 {
			t.Fatalf("update Patient/%s: %v", p.id, err)
		}
		sc.addPatient(sealedPatientOf(t, out.Resource))
	}
	if _, err := svc.Delete(ctx, "Patient", ps[20].id, 0); err != nil {
		t.Fatalf("delete: %v", err)
	}
	return sc
}

// pgDump dumps the data of the database at url (pg_dump from PATH).
func pgDump(t *testing.T, url string) []byte {
	t.Helper()
	bin, err := exec.LookPath("pg_dump")
	if err != nil {
		// It comes with PostgreSQL, which ./scripts/test installs.
		t.Fatalf("pg_dump is not on PATH (install postgresql-client, or run ./scripts/test): %v", err)
	}
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), bin, "--data-only", "--no-owner", "--dbname="+url)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, stderr.Bytes())
	}
	return out.Bytes()
}

// dumpFrame returns the lines of a pg_dump that are not table data (SET
// statements, comments, COPY headers).
func dumpFrame(dump []byte) []byte {
	var out []byte
	inData := false
	for line := range bytes.Lines(dump) {
		switch {
		case inData && bytes.Equal(bytes.TrimRight(line, "\n"), []byte(`\.`)):
			inData = false
		case inData:
		default:
			out = append(out, line...)
			inData = bytes.HasPrefix(line, []byte("COPY "))
		}
	}
	return out
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// decodeBytea replaces each bytea value of a pg_dump (COPY text: \\x and
// hex digits) by its bytes, so that what a bytea column holds in clear is
// seen as such.
func decodeBytea(dump []byte) []byte {
	out := make([]byte, 0, len(dump))
	for i := 0; i < len(dump); {
		if bytes.HasPrefix(dump[i:], []byte(`\\x`)) {
			j := i + 3
			for j+1 < len(dump) {
				hi, ok1 := unhex(dump[j])
				lo, ok2 := unhex(dump[j+1])
				if !ok1 || !ok2 {
					break
				}
				out = append(out, hi<<4|lo)
				j += 2
			}
			out = append(out, '\t')
			i = j
			continue
		}
		out = append(out, dump[i])
		i++
	}
	return out
}

func TestSealedFilesHoldNoPatients(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		ctx := t.Context()
		const patients, scanned = 1200, 1000
		run := func(t *testing.T, sealed bool) *leakScanner {
			dir := t.TempDir()
			st, err := sqlite.Open(ctx, dir)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if sealed {
				storetest.Seal(t, st)
			}
			sc := fillForScan(t, st, patients, scanned)
			raw, err := sql.Open("sqlite3", "file:"+sqlite.Path(dir)+"?mode=ro&_busy_timeout=10000")
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			rawAudit, err := sql.Open("sqlite3", "file:"+sqlite.AuditPath(dir)+"?mode=ro&_busy_timeout=10000")
			if err != nil {
				t.Fatal(err)
			}
			defer rawAudit.Close()
			schema := `SELECT sql FROM sqlite_master WHERE sql IS NOT NULL`
			design := append(clearByDesign(t, raw, append(designClear, schema)...), clearByDesign(t, rawAudit, schema)...)
			raw.Close()
			rawAudit.Close()
			if ign := sc.ignore(design); len(ign) > 0 {
				t.Logf("sealed=%v: %d needles are in clear by design elsewhere (ignored): %v", sealed, len(ign), ign)
			}
			// open: the commits after the load are in the WAL
			files := sc.scanDir(t, dir)
			if !slices.ContainsFunc(files, func(s string) bool { return strings.HasPrefix(s, sqlite.FileName+"-wal ") }) {
				t.Errorf("no WAL file while the store is open: %v", files)
			}
			t.Logf("sealed=%v, open: scanned %v", sealed, files)
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			// closed: whatever was checkpointed into the database files
			files = sc.scanDir(t, dir)
			t.Logf("sealed=%v, closed: scanned %v", sealed, files)
			return sc
		}
		start := time.Now()
		sc := run(t, true)
		f, all := sc.hits("")
		t.Logf("sealed store: %d of %d needles found (%v)", f, all, time.Since(start))
		if f > 0 {
			t.Errorf("the files of a sealed store hold patient data: %d of %d needles found:%s", f, all, sc.report(15))
		}
		for _, k := range []string{"family", "given", "email", "phone", "ins"} {
			if _, n := sc.hits(k); n < 50 {
				t.Errorf("only %d %s needles: the scan proves little", n, k)
			}
		}
		// control: the same data in a clear store is found
		start = time.Now()
		ctl := run(t, false)
		for _, k := range []string{"family", "given", "email", "phone", "ins"} {
			f, n := ctl.hits(k)
			t.Logf("clear store (control): %d of %d %s needles found; not found: %v", f, n, k, ctl.missing(k, 8))
			if f*10 <= n*9 {
				t.Errorf("control: only %d of %d %s needles found in a clear store's files: the scan does not work", f, n, k)
			}
		}
		t.Logf("control took %v", time.Since(start))
	})

	t.Run("postgres", func(t *testing.T) {
		ctx := t.Context()
		const patients, scanned = 1100, 1000
		run := func(t *testing.T, sealed bool, n int) *leakScanner {
			u := storetest.PostgresURL(t)
			st, err := postgres.Open(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if sealed {
				storetest.Seal(t, st)
			}
			sc := fillForScan(t, st, n, min(n-100, scanned))
			dump := pgDump(t, u)
			if !bytes.Contains(dump, []byte("COPY public.resources")) {
				t.Fatalf("the dump has no resources table:\n%.2000s", dump)
			}
			raw, err := sql.Open("pgx", u)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			if ign := sc.ignore(append(clearByDesign(t, raw, designClear...), dumpFrame(dump)...)); len(ign) > 0 {
				t.Logf("sealed=%v: %d needles are in clear by design elsewhere (ignored): %v", sealed, len(ign), ign)
			}
			sc.scan("pg_dump", decodeBytea(dump))
			return sc
		}
		start := time.Now()
		sc := run(t, true, patients)
		f, all := sc.hits("")
		t.Logf("sealed database: %d of %d needles found in pg_dump (%v)", f, all, time.Since(start))
		if f > 0 {
			t.Errorf("pg_dump of a sealed database holds patient data: %d of %d needles found:%s", f, all, sc.report(15))
		}
		// control: a clear database's dump (bytea decoded) shows its patients
		start = time.Now()
		ctl := run(t, false, 200)
		for _, k := range []string{"family", "given", "email", "phone", "ins"} {
			f, n := ctl.hits(k)
			t.Logf("clear database (control): %d of %d %s needles found; not found: %v", f, n, k, ctl.missing(k, 8))
			if f*10 <= n*9 {
				t.Errorf("control: only %d of %d %s needles found in a clear database's dump: the scan does not work", f, n, k)
			}
		}
		t.Logf("control took %v", time.Since(start))
	})
}

// runesOf returns runes from to to of s.
func runesOf(s string, from, to int) string {
	rs := []rune(s)
	return string(rs[from:min(to, len(rs))])
}

func TestSealedSearchStillFinds(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := t.Context()
		const patients = 300
		if _, err := load.Synthetic(ctx, st, synth.Config{Seed: 11, Patients: patients}, nil, nil); err != nil {
			t.Fatalf("Synthetic: %v", err)
		}
		ps := sealedPatients(t, st, patients)
		if len(ps) != patients {
			t.Fatalf("%d patients", len(ps))
		}
		// 20 patients with a phone and an e-mail, spread over the group
		var picked []sealedPatient
		for _, p := range ps {
			if len(p.phones) > 0 && len(p.emails) > 0 {
				picked = append(picked, p)
			}
		}
		if len(picked) < 20 {
			t.Fatalf("only %d patients with a phone and an e-mail", len(picked))
		}
		for k := range 20 {
			p := picked[k*len(picked)/20]
			want := "Patient/" + p.id
			finds := func(qs string, exactlyOne bool) {
				t.Helper()
				page := search(t, st, "Patient", qs+"&_count=500")
				if !slices.Contains(refs(page.Matches), want) {
					t.Errorf("%s does not find %s (%d matches)", qs, want, page.Total)
				}
				if page.Total >= patients {
					t.Errorf("%s matches all %d patients: the filter is not applied", qs, page.Total)
				}
				if exactlyOne && page.Total != 1 {
					t.Errorf("%s: %d matches, want only %s", qs, page.Total, want)
				}
				for _, m := range page.Matches {
					if m.ID == p.id && string(m.Data) != string(p.data) {
						t.Errorf("%s returns %s with other data:\n%s\nwant\n%s", qs, want, m.Data, p.data)
					}
				}
			}
			finds("family:exact="+p.family, false)
			finds("given:exact="+p.given, false)
			finds("family:exact="+p.family+"&given:exact="+p.given+"&birthdate="+p.birth, false)
			finds("birthdate="+p.birth, false)
			finds("identifier="+p.ins, true)
			finds("identifier="+sysINS+"|"+p.ins, true)
			finds("phone="+p.phones[0], false)
			finds("phone="+fhir.NormToken("phone", p.phones[0]), false)
			// telecom= does not normalise its value, sealed or not: digits
			finds("telecom="+fhir.NormToken("phone", p.phones[0]), false)
			finds("telecom="+p.emails[0], false)
			finds("email="+p.emails[0], false)
			finds("email="+strings.ToUpper(p.emails[0]), false)
			finds("family="+runesOf(p.family, 0, 3), false)
			finds("family="+strings.ToLower(runesOf(p.family, 0, 3)), false)
			finds("name="+runesOf(p.family, 0, 3), false)
			finds("given="+runesOf(p.given, 0, 3), false)
			if len([]rune(p.family)) >= 4 {
				finds("family:contains="+runesOf(p.family, 1, 4), false)
			}
			finds("family:contains="+p.family, false)
			// and what is not there is not found
			for _, qs := range []string{"family:exact=" + p.family + "zq", "given:exact=Zq" + p.given, "email=zq" + p.emails[0],
				"family=" + p.family + "zqx", "family:contains=" + runesOf(p.family, 0, 3) + "zqx"} {
				if page := search(t, st, "Patient", qs); page.Total != 0 {
					t.Errorf("%s: %d matches, want none", qs, page.Total)
				}
			}
		}
	})
}

// sealAt seals st with a new key file at path.
func sealAt(t *testing.T, st *store.SQL, path string) (*seal.Keyring, *seal.FileKEK) {
	t.Helper()
	kek, err := seal.InitKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := seal.Open(t.Context(), st, kek)
	if err != nil {
		t.Fatalf("seal.Open: %v", err)
	}
	st.UseSealer(kr)
	return kr, kek
}

// reopenSealed opens the SQLite store in dir with the key file at path.
func reopenSealed(t *testing.T, dir, path string) *store.SQL {
	t.Helper()
	st, err := sqlite.Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	kek, err := seal.LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := seal.Open(t.Context(), st, kek)
	if err != nil {
		t.Fatalf("seal.Open with the store's own key file: %v", err)
	}
	st.UseSealer(kr)
	return st
}

func rawSQLite(t *testing.T, dir string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+sqlite.Path(dir)+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestMovedCiphertextFailsToOpen(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	keyPath := filepath.Join(t.TempDir(), "carnet.key")
	st, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	kr, kek := sealAt(t, st, keyPath)
	svc := record.New(st)
	a := create(t, svc, "Patient", patientJSON("", "Aubertin", "Alice", "1961-02-03"))
	b := create(t, svc, "Patient", patientJSON("", "Boisgontier", "Bastien", "1972-04-05"))
	c := create(t, svc, "Patient", patientJSON("", "Carpentras", "Capucine", "1983-06-07"))
	put(t, svc, "Patient", c.ID, patientJSON("", "Carpentras-Neuve", "Capucine", "1983-06-07"))
	keysBefore, err := st.SealKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, s := kr.Status(); len(s) != len(keysBefore) {
		t.Fatalf("keyring has %d keys, store %d", len(s), len(keysBefore))
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	db := rawSQLite(t, dir)
	mustExec := func(q string, args ...any) {
		t.Helper()
		res, err := db.ExecContext(ctx, q, args...)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			t.Fatalf("%s: %d rows changed, want 1", q, n)
		}
	}
	var stored []byte
	if err := db.QueryRowContext(ctx, `SELECT data FROM resources WHERE rtype = 'Patient' AND id = ?`, a.ID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(stored, []byte("Aubertin")) || !kr.Current(stored) {
		t.Fatalf("Patient/%s is not sealed with a current key: %q", a.ID, stored)
	}
	// A's version 1 into B's row (B is at version 1 too)
	mustExec(`UPDATE resources SET data = (SELECT data FROM resources WHERE rtype = 'Patient' AND id = ?) WHERE rtype = 'Patient' AND id = ? AND ver = 1`, a.ID, b.ID)
	// C's version 1 (history) back into its current row (version 2): a rollback
	mustExec(`UPDATE resources SET data = (SELECT h.data FROM history h JOIN resources r ON r.pk = h.pk WHERE r.rtype = 'Patient' AND r.id = ? AND h.ver = 1) WHERE rtype = 'Patient' AND id = ? AND ver = 2`, c.ID, c.ID)
	db.Close()

	st2 := reopenSealed(t, dir, keyPath)
	if got := mustRead(t, st2, "Patient", a.ID); string(got.Data) != string(a.Data) {
		t.Fatalf("Patient/%s (untouched) reads %s, want %s", a.ID, got.Data, a.Data)
	}
	checkRefused := func(what string, r *store.Resource, err error, id string, ver int) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: no error; got %s", what, r.Data)
		}
		if r != nil {
			t.Errorf("%s: a resource comes with the error: %s", what, r.Data)
		}
		if !errors.Is(err, seal.ErrOpen) {
			t.Errorf("%s: error %v does not wrap seal.ErrOpen", what, err)
		}
		if msg := err.Error(); !strings.Contains(msg, "Patient/"+id) || !strings.Contains(msg, fmt.Sprintf("version %d", ver)) {
			t.Errorf("%s: error %q does not name Patient/%s version %d", what, msg, id, ver)
		}
		if strings.Contains(err.Error(), "Aubertin") || strings.Contains(err.Error(), "Carpentras") {
			t.Errorf("%s: the error shows patient data: %v", what, err)
		}
	}
	r, err := st2.Read(ctx, "Patient", b.ID)
	checkRefused("Read of the row holding another record's ciphertext", r, err, b.ID, 1)
	r, err = st2.ReadVersion(ctx, "Patient", b.ID, 1)
	checkRefused("ReadVersion of it", r, err, b.ID, 1)
	r, err = st2.Read(ctx, "Patient", c.ID)
	checkRefused("Read of a row rolled back to an older version's ciphertext", r, err, c.ID, 2)
	// a search reaching the moved row fails too, and never shows A's data as B
	q, qerr := query(t, "Patient", "family:exact=Boisgontier")
	if qerr != nil {
		t.Fatal(qerr)
	}
	page, err := st2.Search(ctx, q, nil)
	if err == nil {
		for _, m := range page.Matches {
			if bytes.Contains(m.Data, []byte("Aubertin")) {
				t.Fatalf("search returns A's data as Patient/%s: %s", m.ID, m.Data)
			}
		}
		t.Errorf("search reaching the moved row: no error (%d matches)", page.Total)
	} else if !errors.Is(err, seal.ErrOpen) {
		t.Errorf("search reaching the moved row: %v, want seal.ErrOpen", err)
	}
	if err := st2.Close(); err != nil {
		t.Fatal(err)
	}

	// another key file: refused at seal.Open, naming both keys, and nothing
	// is written
	st3, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st3.Close()
	other, err := seal.InitKeyFile(filepath.Join(t.TempDir(), "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	kr3, err := seal.Open(ctx, st3, other)
	if err == nil {
		t.Fatalf("seal.Open with another key file: no error (keyring %v)", kr3)
	}
	msg := err.Error()
	if !strings.Contains(msg, kek.ID()) || !strings.Contains(msg, other.ID()) || !strings.Contains(msg, "key file") {
		t.Errorf("seal.Open with another key file: %q does not name the store's key (%s), the given one (%s) and the key file", msg, kek.ID(), other.ID())
	}
	keysAfter, err := st3.SealKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keysAfter) != len(keysBefore) {
		t.Errorf("seal.Open with a wrong key file changed the key table: %d keys, had %d", len(keysAfter), len(keysBefore))
	}
	for i := range min(len(keysAfter), len(keysBefore)) {
		if keysAfter[i].KEK != kek.ID() || !bytes.Equal(keysAfter[i].Wrapped, keysBefore[i].Wrapped) {
			t.Errorf("key %d changed: %+v", keysAfter[i].Num, keysAfter[i])
		}
	}
	// a clear store (no keyring) reading sealed rows does not pass them off
	// as JSON either: Read returns the sealed bytes, which do not parse
	if got, err := st3.Read(ctx, "Patient", a.ID); err == nil && bytes.Contains(got.Data, []byte("Aubertin")) {
		t.Errorf("a store without keys reads clear data: %s", got.Data)
	}
}

// rotateFixture is a sealed store with patients whose every version's
// bytes are known.
type rotateFixture struct {
	st      *store.SQL
	kr      *seal.Keyring
	oldPath string
	ids     []string          // live patients
	cur     map[string][]byte // id -> current version's JSON
	v1      map[string][]byte // updated patients: id -> version 1's JSON
	family  map[string]string
	deleted []string
}

func newRotateFixture(t *testing.T, st *store.SQL) *rotateFixture {
	t.Helper()
	ctx := t.Context()
	f := &rotateFixture{st: st, oldPath: filepath.Join(t.TempDir(), "old.key"), cur: map[string][]byte{}, v1: map[string][]byte{}, family: map[string]string{}}
	f.kr, _ = sealAt(t, st, f.oldPath)
	if _, err := load.Synthetic(ctx, st, synth.Config{Seed: 5, Patients: 300}, nil, nil); err != nil {
		t.Fatalf("Synthetic: %v", err)
	}
	svc := record.New(st)
	ps := sealedPatients(t, st, 300)
	for i, p := range ps {
		switch {
		case i%10 == 3: // a second version: the first goes to history
			f.v1[p.id] = p.data
			r := parse(t, string(p.data))
			r["gender"] = "unknown"
			out, err := svc.Update(ctx, "Patient", p.id, r, 0)
			if err != nil {
				t.Fatal(err)
			}
			p.data = out.Resource.Data
		case i%50 == 7:
			if _, err := svc.Delete(ctx, "Patient", p.id, 0); err != nil {
				t.Fatal(err)
			}
			f.deleted = append(f.deleted, p.id)
			continue
		}
		f.ids = append(f.ids, p.id)
		f.family[p.id] = p.family
	}
	// what every patient reads as before the rotation
	for _, id := range f.ids {
		r := mustRead(t, st, "Patient", id)
		if f.v1[id] != nil && r.Version != 2 {
			t.Fatalf("Patient/%s at version %d", id, r.Version)
		}
		f.cur[id] = r.Data
	}
	return f
}

// verifyAll reads every patient from st (every version) and compares.
func (f *rotateFixture) verifyAll(t *testing.T, st store.Store, who string) {
	t.Helper()
	ctx := t.Context()
	bad := 0
	for _, id := range f.ids {
		hist, err := st.History(ctx, "Patient", id, 5)
		want := [][]byte{f.cur[id]}
		if f.v1[id] != nil {
			want = append(want, f.v1[id])
		}
		if err != nil || len(hist) != len(want) {
			t.Errorf("%s: History of Patient/%s: %d versions, %v", who, id, len(hist), err)
			bad++
		} else {
			for i := range want {
				if !bytes.Equal(hist[i].Data, want[i]) {
					t.Errorf("%s: Patient/%s version %d reads\n%s\nwant\n%s", who, id, hist[i].Version, hist[i].Data, want[i])
					bad++
				}
			}
		}
		if bad > 5 {
			t.Fatalf("%s: too many bad reads", who)
		}
	}
	for _, id := range f.deleted {
		r, err := st.Read(ctx, "Patient", id)
		if err != nil || !r.Deleted {
			t.Errorf("%s: deleted Patient/%s: %v %+v", who, id, err, r)
		}
	}
	for _, id := range f.ids[:20] {
		page := search(t, st, "Patient", "family:exact="+f.family[id]+"&_count=500")
		if !slices.Contains(refs(page.Matches), "Patient/"+id) {
			t.Errorf("%s: family:exact=%s does not find Patient/%s", who, f.family[id], id)
		}
	}
}

// sealedRows returns the data column of every stored version.
func sealedRows(t *testing.T, db *sql.DB) [][]byte {
	t.Helper()
	var out [][]byte
	// A deleted version has no body (NULL), sealed or not.
	for _, q := range []string{`SELECT data FROM resources WHERE data IS NOT NULL`, `SELECT data FROM history WHERE data IS NOT NULL`} {
		rows, err := db.QueryContext(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// rotateWhileServing rotates f's key file to newPath and reseals while 4
// goroutines read and search, each read compared byte for byte.
func rotateWhileServing(t *testing.T, f *rotateFixture, raw *sql.DB, newPath string) {
	t.Helper()
	ctx := t.Context()
	st := f.st
	var stop atomic.Bool
	var ops, opsDuring, failures atomic.Int64
	var during atomic.Bool
	fail := func(format string, args ...any) {
		if failures.Add(1) <= 10 {
			t.Errorf(format, args...)
		}
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				id := f.ids[rand.IntN(len(f.ids))]
				want := f.cur[id]
				switch (g + i) % 4 {
				case 0: // possibly from the cache
					r, err := st.Read(ctx, "Patient", id)
					if err != nil {
						fail("Read Patient/%s: %v", id, err)
					} else if !bytes.Equal(r.Data, want) {
						fail("Read Patient/%s:\n%s\nwant\n%s", id, r.Data, want)
					}
				case 1: // from the database
					q, err := query(t, "Patient", "family:exact="+f.family[id]+"&_count=500")
					if err != nil {
						fail("query: %v", err)
						break
					}
					page, err := st.Search(ctx, q, nil)
					if err != nil {
						fail("Search family:exact=%s: %v", f.family[id], err)
						break
					}
					found := false
					for _, m := range page.Matches {
						if m.ID == id {
							found = true
							if !bytes.Equal(m.Data, want) {
								fail("Search returns Patient/%s as\n%s\nwant\n%s", id, m.Data, want)
							}
						}
					}
					if !found {
						fail("Search family:exact=%s does not find Patient/%s", f.family[id], id)
					}
				case 2: // history rows, from the database
					hist, err := st.History(ctx, "Patient", id, 5)
					if err != nil {
						fail("History Patient/%s: %v", id, err)
						break
					}
					wantN := 1
					if f.v1[id] != nil {
						wantN = 2
					}
					if len(hist) != wantN || !bytes.Equal(hist[0].Data, want) || wantN == 2 && !bytes.Equal(hist[1].Data, f.v1[id]) {
						fail("History Patient/%s: %d versions, not the ones written", id, len(hist))
					}
				case 3: // an older version, from the database
					for v1id, v1 := range f.v1 {
						r, err := st.ReadVersion(ctx, "Patient", v1id, 1)
						if err != nil {
							fail("ReadVersion Patient/%s 1: %v", v1id, err)
						} else if !bytes.Equal(r.Data, v1) {
							fail("ReadVersion Patient/%s 1:\n%s\nwant\n%s", v1id, r.Data, v1)
						}
						break
					}
				}
				ops.Add(1)
				if during.Load() {
					opsDuring.Add(1)
				}
				time.Sleep(time.Millisecond) // leave the reseal some of the 2 cores
			}
		})
	}
	stopReaders := sync.OnceFunc(func() {
		stop.Store(true)
		wg.Wait()
	})
	defer stopReaders() // before the store closes, even on t.Fatal
	time.Sleep(50 * time.Millisecond)

	before := sealedRows(t, raw)
	for _, b := range before {
		if !f.kr.Current(b) {
			t.Fatalf("a row is not sealed with a current key before the rotation: %x", b[:min(len(b), 8)])
		}
	}
	newKEK, err := seal.InitKeyFile(newPath)
	if err != nil {
		t.Fatal(err)
	}
	during.Store(true)
	start := time.Now()
	if err := f.kr.Rotate(ctx, newKEK); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	stale := 0
	for _, b := range sealedRows(t, raw) {
		if !f.kr.Current(b) {
			stale++
		}
	}
	if stale != len(before) {
		t.Errorf("after Rotate, %d of %d rows are sealed with a retired key, want all", stale, len(before))
	}
	var lastDone, lastTotal, calls int64
	n, err := st.Reseal(ctx, func(done, total int64) {
		if done < lastDone || total <= 0 || done > total {
			t.Errorf("progress (%d, %d) after (%d, %d)", done, total, lastDone, lastTotal)
		}
		lastDone, lastTotal = done, total
		calls++
	})
	resealTime := time.Since(start)
	during.Store(false)
	if err != nil {
		t.Fatalf("Reseal: %v", err)
	}
	t.Logf("rotate+reseal: %d versions re-encrypted in %v, %d progress calls, %d reads during it", n, resealTime, calls, opsDuring.Load())
	if n <= 0 || n != int64(len(before)) {
		t.Errorf("Reseal re-encrypted %d versions, want all %d", n, len(before))
	}
	// Progress counts every stored version, deletions (no body) included.
	var versions int64
	if err := raw.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM resources) + (SELECT COUNT(*) FROM history)`).Scan(&versions); err != nil {
		t.Fatal(err)
	}
	if lastDone != lastTotal || lastTotal != versions {
		t.Errorf("progress ended at (%d, %d), want (%d, %d)", lastDone, lastTotal, versions, versions)
	}
	after := sealedRows(t, raw)
	if len(after) != len(before) {
		t.Errorf("%d rows after the reseal, %d before", len(after), len(before))
	}
	for _, b := range after {
		if !f.kr.Current(b) {
			t.Fatalf("a row is still sealed with a retired key after Reseal: %x", b[:min(len(b), 8)])
		}
	}
	if n, err := st.Reseal(ctx, nil); err != nil || n != 0 {
		t.Errorf("second Reseal: %d re-encrypted, %v; want 0", n, err)
	}
	time.Sleep(100 * time.Millisecond) // keep reading after the reseal too
	stopReaders()
	if opsDuring.Load() == 0 {
		t.Errorf("no read ran during the rotation and reseal")
	}
	t.Logf("%d reads in all", ops.Load())
	_, keys := f.kr.Status()
	retired := 0
	for _, k := range keys {
		if k.KEK != newKEK.ID() {
			t.Errorf("data key %d still wrapped by %s", k.Num, k.KEK)
		}
		if k.Retired {
			retired++
		}
	}
	if retired == 0 {
		t.Errorf("no data key retired by the rotation: %+v", keys)
	}
	f.verifyAll(t, st, "after reseal")
}

func TestRotateAndResealWhileServing(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		ctx := t.Context()
		dir := t.TempDir()
		st, err := sqlite.Open(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		f := newRotateFixture(t, st)
		raw, err := sql.Open("sqlite3", "file:"+sqlite.Path(dir)+"?mode=ro&_busy_timeout=10000")
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		newPath := filepath.Join(t.TempDir(), "new.key")
		rotateWhileServing(t, f, raw, newPath)
		raw.Close()
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		// the new key file alone opens the store, from the files (no cache);
		// the retired one is refused
		st2, err := sqlite.Open(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		old, err := seal.LoadKeyFile(f.oldPath)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := seal.Open(ctx, st2, old); err == nil {
			t.Errorf("seal.Open with the retired key file: no error")
		}
		st2.Close()
		st3 := reopenSealed(t, dir, newPath)
		f.verifyAll(t, st3, "reopened with the new key file")
	})

	t.Run("postgres", func(t *testing.T) {
		ctx := t.Context()
		u := storetest.PostgresURL(t)
		st, err := postgres.Open(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		f := newRotateFixture(t, st)
		// a second instance on the same database, started with the old key
		// file, which rereads the key file when it meets an unknown key
		newPath := filepath.Join(t.TempDir(), "new.key")
		st2, err := postgres.Open(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		defer st2.Close()
		kr2 := unsealWith(t, st2, f.oldPath, newPath)
		f.verifyAll(t, st2, "second instance before the rotation")

		raw, err := sql.Open("pgx", u)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		rotateWhileServing(t, f, raw, newPath)

		f.verifyAll(t, st2, "second instance after the rotation")
		if kek, _ := kr2.Status(); !strings.HasPrefix(kek, "file:") {
			t.Errorf("second instance's key: %q", kek)
		} else if nk, err := seal.LoadKeyFile(newPath); err != nil || kek != nk.ID() {
			t.Errorf("second instance still uses key %s after reading the rotated keys (new key %v, %v)", kek, nk, err)
		}
		// a third instance with the new key file only
		st3, err := postgres.Open(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		defer st3.Close()
		nk, err := seal.LoadKeyFile(newPath)
		if err != nil {
			t.Fatal(err)
		}
		kr3, err := seal.Open(ctx, st3, nk)
		if err != nil {
			t.Fatalf("third instance with the new key file: %v", err)
		}
		st3.UseSealer(kr3)
		f.verifyAll(t, st3, "third instance (new key file)")
	})
}
