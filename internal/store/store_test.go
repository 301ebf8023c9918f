package store_test

// Conformance suite of the Store interface: every test runs against each
// back end (storetest.Backends: SQLite and PostgreSQL) with the same
// expectations. Writes go through record.Service where a client's write is
// meant, and straight to Store.Commit where the store's own contract
// (versions, atomicity, group commit) is under test.

import (
	"cmp"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // database/sql driver "sqlite3" for EXPLAIN QUERY PLAN

	"carnet/internal/fhir"
	"carnet/internal/load"
	"carnet/internal/record"
	"carnet/internal/store"
	"carnet/internal/store/sqlite"
	"carnet/internal/store/storetest"
	"carnet/internal/synth"
)

// eachBackend runs fn in a subtest per back end, each on a fresh store.
func eachBackend(t *testing.T, fn func(t *testing.T, st store.Store)) {
	t.Helper()
	bs := storetest.Backends(t)
	names := make([]string, 0, len(bs))
	for n := range bs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t.Run(n, func(t *testing.T) { fn(t, bs[n](t)) })
	}
}

func parse(t *testing.T, js string) fhir.Resource {
	t.Helper()
	r, err := fhir.Parse([]byte(js))
	if err != nil {
		t.Fatalf("parse %s: %v", js, err)
	}
	return r
}

func create(t *testing.T, svc *record.Service, typ, js string) *store.Resource {
	t.Helper()
	out, err := svc.Create(t.Context(), typ, parse(t, js))
	if err != nil {
		t.Fatalf("create %s: %v", typ, err)
	}
	if !out.Created || out.Resource.Version != 1 {
		t.Fatalf("create %s: outcome %+v", typ, out)
	}
	return out.Resource
}

func put(t *testing.T, svc *record.Service, typ, id, js string) *record.Outcome {
	t.Helper()
	r := parse(t, js)
	r["id"] = id
	out, err := svc.Update(t.Context(), typ, id, r, 0)
	if err != nil {
		t.Fatalf("update %s/%s: %v", typ, id, err)
	}
	return out
}

// mkWrite prepares a write of r (which carries its id) as version ver,
// stamped at, straight for Store.Commit.
func mkWrite(t *testing.T, r fhir.Resource, ver, ifVer int, isNew bool, at time.Time) store.Write {
	t.Helper()
	id := fhir.ID(r)
	fhir.SetMeta(r, id, ver, at)
	data, err := fhir.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return store.Write{
		Resource:  store.Resource{Type: fhir.Type(r), ID: id, Version: ver, Updated: at, Patient: fhir.PatientOf(r), Data: data},
		IfVersion: ifVer,
		New:       isNew,
		Index:     fhir.Extract(r),
	}
}

func patientJSON(id, family, given, birth string) string {
	s := `{"resourceType":"Patient"`
	if id != "" {
		s += `,"id":"` + id + `"`
	}
	s += `,"name":[{"family":"` + family + `","given":["` + given + `"]}]`
	if birth != "" {
		s += `,"birthDate":"` + birth + `"`
	}
	return s + "}"
}

// query parses "k=v&k=v" without URL unescaping (values keep '+' and
// spaces as written) and runs it.
func query(t *testing.T, typ, qs string) (*fhir.Query, error) {
	t.Helper()
	vals := url.Values{}
	if qs != "" {
		for kv := range strings.SplitSeq(qs, "&") {
			k, v, _ := strings.Cut(kv, "=")
			vals[k] = append(vals[k], v)
		}
	}
	return fhir.ParseQuery(typ, vals, true)
}

func search(t *testing.T, st store.Store, typ, qs string) *store.Page {
	t.Helper()
	q, err := query(t, typ, qs)
	if err != nil {
		t.Fatalf("ParseQuery %s?%s: %v", typ, qs, err)
	}
	page, err := st.Search(t.Context(), q, nil)
	if err != nil {
		t.Fatalf("Search %s?%s: %v", typ, qs, err)
	}
	return page
}

func refs(rs []*store.Resource) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.Type+"/"+r.ID)
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

func mustRead(t *testing.T, st store.Store, typ, id string) *store.Resource {
	t.Helper()
	r, err := st.Read(t.Context(), typ, id)
	if err != nil {
		t.Fatalf("Read %s/%s: %v", typ, id, err)
	}
	return r
}

func TestCreateRead(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := t.Context()
		svc := record.New(st)
		// accents, an unmodelled element and an exact decimal must survive
		js := `{"resourceType":"Patient","name":[{"family":"Lefèvre","given":["Hélène","Zoë"]}],"gender":"female","birthDate":"1980-03-15",` +
			`"extension":[{"url":"http://example.org/weight","valueDecimal":1.50}],"photo":[{"title":"<b>&</b>"}]}`
		created := create(t, svc, "Patient", js)
		got := mustRead(t, st, "Patient", created.ID)
		if string(got.Data) != string(created.Data) {
			t.Fatalf("Read data differs from the write:\nwrote %s\nread  %s", created.Data, got.Data)
		}
		if got.Version != 1 || got.Deleted || got.Patient != created.ID || got.Type != "Patient" || got.ID != created.ID {
			t.Fatalf("Read: %+v", got)
		}
		if !got.Updated.Equal(created.Updated) {
			t.Fatalf("Updated: read %v, wrote %v", got.Updated, created.Updated)
		}
		for _, want := range []string{`"family":"Lefèvre"`, `"given":["Hélène","Zoë"]`, `"valueDecimal":1.50`, `"title":"<b>&</b>"`,
			`"versionId":"1"`, `"id":"` + created.ID + `"`} {
			if !strings.Contains(string(got.Data), want) {
				t.Errorf("stored JSON lacks %s: %s", want, got.Data)
			}
		}
		v1, err := st.ReadVersion(ctx, "Patient", created.ID, 1)
		if err != nil || string(v1.Data) != string(created.Data) {
			t.Fatalf("ReadVersion 1: %v %s", err, v1.Data)
		}
		if _, err := st.ReadVersion(ctx, "Patient", created.ID, 2); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("ReadVersion 2 of a version-1 resource: %v, want ErrNotFound", err)
		}
		if _, err := st.Read(ctx, "Patient", "no-such-id"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Read of an unknown id: %v, want ErrNotFound", err)
		}
		if _, err := st.Read(ctx, "Practitioner", created.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Read of the id under another type: %v, want ErrNotFound", err)
		}
		// a resource in a patient's compartment records its patient
		enc := create(t, svc, "Encounter", `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/`+created.ID+`"}}`)
		if e := mustRead(t, st, "Encounter", enc.ID); e.Patient != created.ID || string(e.Data) != string(enc.Data) {
			t.Fatalf("Encounter read: patient %q data %s", e.Patient, e.Data)
		}
		if st.Backend() == "" {
			t.Error("Backend() is empty")
		}
	})
}

func TestUpdateHistory(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := t.Context()
		svc := record.New(st)
		v1 := create(t, svc, "Patient", patientJSON("", "Martin", "Louis", "1990-01-01"))
		id := v1.ID
		o2 := put(t, svc, "Patient", id, patientJSON(id, "Bernard", "Louis", "1990-01-01"))
		if o2.Created || o2.NoChange || o2.Resource.Version != 2 {
			t.Fatalf("update: %+v", o2)
		}
		o3 := put(t, svc, "Patient", id, patientJSON(id, "Bernard", "Louis-Marie", "1990-01-01"))
		if o3.Resource.Version != 3 {
			t.Fatalf("second update: version %d", o3.Resource.Version)
		}
		// identical content: no new version
		if o := put(t, svc, "Patient", id, patientJSON(id, "Bernard", "Louis-Marie", "1990-01-01")); !o.NoChange || o.Resource.Version != 3 {
			t.Fatalf("identical update: %+v", o)
		}
		cur := mustRead(t, st, "Patient", id)
		if cur.Version != 3 || string(cur.Data) != string(o3.Resource.Data) {
			t.Fatalf("Read after updates: v%d %s", cur.Version, cur.Data)
		}
		want := map[int][]byte{1: v1.Data, 2: o2.Resource.Data, 3: o3.Resource.Data}
		for v, data := range want {
			r, err := st.ReadVersion(ctx, "Patient", id, v)
			if err != nil {
				t.Fatalf("ReadVersion %d: %v", v, err)
			}
			if r.Version != v || string(r.Data) != string(data) || r.Deleted {
				t.Fatalf("ReadVersion %d: v%d deleted=%v %s, want %s", v, r.Version, r.Deleted, r.Data, data)
			}
			if !strings.Contains(string(r.Data), fmt.Sprintf(`"versionId":"%d"`, v)) {
				t.Fatalf("ReadVersion %d: meta.versionId wrong in %s", v, r.Data)
			}
		}
		if !o2.Resource.Updated.After(v1.Updated) && !o2.Resource.Updated.Equal(v1.Updated) {
			t.Fatalf("version 2 is older than version 1")
		}
		h, err := st.History(ctx, "Patient", id, 10)
		if err != nil {
			t.Fatal(err)
		}
		var vs []int
		for _, r := range h {
			vs = append(vs, r.Version)
			if string(r.Data) != string(want[r.Version]) {
				t.Errorf("History v%d data %s", r.Version, r.Data)
			}
		}
		if !slices.Equal(vs, []int{3, 2, 1}) {
			t.Fatalf("History versions %v, want [3 2 1]", vs)
		}
		for limit, wantVs := range map[int][]int{1: {3}, 2: {3, 2}} {
			h, err := st.History(ctx, "Patient", id, limit)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, r := range h {
				got = append(got, r.Version)
			}
			if !slices.Equal(got, wantVs) {
				t.Errorf("History limit %d: %v, want %v", limit, got, wantVs)
			}
		}
		if _, err := st.History(ctx, "Patient", "nope", 10); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("History of unknown id: %v", err)
		}
		// the index follows the current version only
		if p := search(t, st, "Patient", "family=martin"); p.Total != 0 {
			t.Errorf("old family still indexed: %v", refs(p.Matches))
		}
		if p := search(t, st, "Patient", "family=bernard"); p.Total != 1 || p.Matches[0].ID != id || p.Matches[0].Version != 3 {
			t.Errorf("family=bernard: total %d %v", p.Total, refs(p.Matches))
		}
		if p := search(t, st, "Patient", "given=louis-marie"); p.Total != 1 {
			t.Errorf("given=louis-marie: total %d", p.Total)
		}
		if p := search(t, st, "Patient", "given:exact=louis"); p.Total != 0 {
			t.Errorf("given:exact=louis (old given): total %d", p.Total)
		}
	})
}

func TestIfVersionConflict(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := t.Context()
		svc := record.New(st)
		p := create(t, svc, "Patient", patientJSON("", "Conflit", "Anne", "1970-01-01"))
		now := time.Now().UTC().Truncate(time.Millisecond)
		cases := []struct {
			name string
			w    store.Write
		}{
			{"stale IfVersion", mkWrite(t, parse(t, patientJSON(p.ID, "Changed", "Anne", "")), 2, 7, false, now)},
			{"IfVersion 0 on an existing resource", mkWrite(t, parse(t, patientJSON(p.ID, "Changed", "Anne", "")), 1, 0, false, now)},
			{"New with a taken id", mkWrite(t, parse(t, patientJSON(p.ID, "Changed", "Anne", "")), 1, 0, true, now)},
			{"IfVersion on a missing resource", mkWrite(t, parse(t, patientJSON("ghost-1", "Changed", "Anne", "")), 4, 3, false, now)},
		}
		for _, c := range cases {
			if err := st.Commit(ctx, []store.Write{c.w}); !errors.Is(err, store.ErrConflict) {
				t.Errorf("%s: Commit = %v, want ErrConflict", c.name, err)
			}
		}
		got := mustRead(t, st, "Patient", p.ID)
		if got.Version != 1 || string(got.Data) != string(p.Data) {
			t.Fatalf("resource changed by failed writes: v%d %s", got.Version, got.Data)
		}
		if h, _ := st.History(ctx, "Patient", p.ID, 10); len(h) != 1 {
			t.Fatalf("history has %d versions after failed writes", len(h))
		}
		if _, err := st.Read(ctx, "Patient", "ghost-1"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("ghost-1 exists after a failed write: %v", err)
		}
		if pg := search(t, st, "Patient", "family=changed"); pg.Total != 0 {
			t.Fatalf("index rows of failed writes are visible: %v", refs(pg.Matches))
		}
		if pg := search(t, st, "Patient", "family=conflit"); pg.Total != 1 {
			t.Fatalf("index of the current version lost: total %d", pg.Total)
		}
		// the right version goes through
		if err := st.Commit(ctx, []store.Write{mkWrite(t, parse(t, patientJSON(p.ID, "Changed", "Anne", "")), 2, 1, false, now)}); err != nil {
			t.Fatalf("Commit with the right IfVersion: %v", err)
		}
		if got := mustRead(t, st, "Patient", p.ID); got.Version != 2 {
			t.Fatalf("version %d after a good write", got.Version)
		}
		// record.Service: If-Match with a stale version is refused, nothing written
		r := parse(t, patientJSON(p.ID, "Other", "Anne", ""))
		if _, err := svc.Update(ctx, "Patient", p.ID, r, 1); fhir.AsError(err).Status != 412 {
			t.Fatalf("Update If-Match stale: %v, want 412", err)
		}
		if got := mustRead(t, st, "Patient", p.ID); got.Version != 2 {
			t.Fatalf("version %d after a refused If-Match", got.Version)
		}
	})
}

func TestDelete(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := t.Context()
		svc := record.New(st)
		keep := create(t, svc, "Patient", patientJSON("", "Effacer", "Garde", "1960-05-05"))
		p := create(t, svc, "Patient", patientJSON("", "Effacer", "Part", "1961-06-06"))
		enc := create(t, svc, "Encounter", `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/`+p.ID+`"}}`)
		out, err := svc.Delete(ctx, "Patient", p.ID, 0)
		if err != nil || out.Resource.Version != 2 {
			t.Fatalf("Delete: %v %+v", err, out)
		}
		got := mustRead(t, st, "Patient", p.ID)
		if !got.Deleted || got.Version != 2 || got.Data != nil {
			t.Fatalf("Read after delete: deleted=%v v%d data=%q", got.Deleted, got.Version, got.Data)
		}
		for _, qs := range []string{"family=effacer", "given=part", "_id=" + p.ID, "birthdate=1961", "birthdate:missing=false", "_lastUpdated=gt2000"} {
			pg := search(t, st, "Patient", qs)
			if slices.Contains(refs(pg.Matches), "Patient/"+p.ID) {
				t.Errorf("%s finds the deleted patient", qs)
			}
		}
		if pg := search(t, st, "Patient", "family=effacer"); pg.Total != 1 || pg.Matches[0].ID != keep.ID {
			t.Errorf("family=effacer: total %d %v", pg.Total, refs(pg.Matches))
		}
		if pg := search(t, st, "Patient", "_summary=count"); pg.Total != 1 {
			t.Errorf("Patient total %d after delete, want 1", pg.Total)
		}
		// the deleted patient is not _included by its encounter
		if pg := search(t, st, "Encounter", "_id="+enc.ID+"&_include=Encounter:patient"); len(pg.Included) != 0 {
			t.Errorf("_include returns a deleted patient: %v", refs(pg.Included))
		}
		st1, err := st.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st1["Patient"] != 1 || st1["Encounter"] != 1 {
			t.Errorf("Stats after delete: %v", st1)
		}
		h, err := st.History(ctx, "Patient", p.ID, 10)
		if err != nil || len(h) != 2 || !h[0].Deleted || h[0].Version != 2 || h[1].Deleted || string(h[1].Data) != string(p.Data) {
			t.Fatalf("History after delete: %v %+v", err, h)
		}
		if v2, err := st.ReadVersion(ctx, "Patient", p.ID, 2); err != nil || !v2.Deleted {
			t.Fatalf("ReadVersion of the deletion: %v %+v", err, v2)
		}
		// deleting again changes nothing
		if out, err := svc.Delete(ctx, "Patient", p.ID, 0); err != nil || !out.NoChange {
			t.Fatalf("second Delete: %v %+v", err, out)
		}
		// a PUT brings it back as version 3, searchable again
		o := put(t, svc, "Patient", p.ID, patientJSON(p.ID, "Revenu", "Part", "1961-06-06"))
		if !o.Created || o.Resource.Version != 3 {
			t.Fatalf("re-create after delete: %+v", o)
		}
		if pg := search(t, st, "Patient", "family=revenu"); pg.Total != 1 {
			t.Fatalf("re-created patient not searchable: %d", pg.Total)
		}
	})
}

func TestCommitAtomic(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := t.Context()
		svc := record.New(st)
		a := create(t, svc, "Patient", patientJSON("", "Atome", "Alice", "1980-01-01"))
		now := time.Now().UTC().Truncate(time.Millisecond)
		ws := []store.Write{
			mkWrite(t, parse(t, patientJSON("atomic-b", "Atome", "Bruno", "")), 1, 0, true, now),
			mkWrite(t, parse(t, patientJSON("atomic-c", "Atome", "Chloe", "")), 1, 0, false, now),
			mkWrite(t, parse(t, patientJSON(a.ID, "Atome", "Alice-Changed", "")), 2, 1, false, now),
			// conflicting last write: the resource is at version 1, not 5
			mkWrite(t, parse(t, patientJSON(a.ID, "Atome", "Alice-Again", "")), 6, 5, false, now),
		}
		if err := st.Commit(ctx, ws); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("Commit: %v, want ErrConflict", err)
		}
		for _, id := range []string{"atomic-b", "atomic-c"} {
			if _, err := st.Read(ctx, "Patient", id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s visible after a failed commit: %v", id, err)
			}
		}
		if got := mustRead(t, st, "Patient", a.ID); got.Version != 1 || string(got.Data) != string(a.Data) {
			t.Errorf("a changed by a failed commit: v%d", got.Version)
		}
		if pg := search(t, st, "Patient", "family=atome"); pg.Total != 1 {
			t.Errorf("family=atome: %d matches after a failed commit, want 1", pg.Total)
		}
		if pg := search(t, st, "Patient", "given=alice-changed"); pg.Total != 0 {
			t.Errorf("index of a rolled-back update is visible")
		}
		// the same writes minus the conflict all land
		if err := st.Commit(ctx, ws[:3]); err != nil {
			t.Fatalf("Commit of the good writes: %v", err)
		}
		if pg := search(t, st, "Patient", "family=atome"); pg.Total != 3 {
			t.Errorf("family=atome: %d matches, want 3", pg.Total)
		}
		// a transaction Bundle through record.Service: a broken reference
		// in the last entry means none of it is written
		bundle := parse(t, `{"resourceType":"Bundle","type":"transaction","entry":[
			{"fullUrl":"urn:uuid:p1","resource":`+patientJSON("", "Bundled", "One", "")+`,"request":{"method":"POST","url":"Patient"}},
			{"resource":{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"urn:uuid:p1"}},"request":{"method":"POST","url":"Encounter"}},
			{"resource":{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/missing-one"}},"request":{"method":"POST","url":"Encounter"}}]}`)
		if _, err := svc.Transaction(ctx, bundle, nil); err == nil {
			t.Fatal("transaction with a broken reference succeeded")
		}
		if pg := search(t, st, "Patient", "family=bundled"); pg.Total != 0 {
			t.Errorf("part of a failed transaction is visible")
		}
		if s, _ := st.Stats(ctx); s["Encounter"] != 0 {
			t.Errorf("Encounters after a failed transaction: %v", s)
		}
		bundle = parse(t, `{"resourceType":"Bundle","type":"transaction","entry":[
			{"fullUrl":"urn:uuid:p1","resource":`+patientJSON("", "Bundled", "One", "")+`,"request":{"method":"POST","url":"Patient"}},
			{"resource":{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"urn:uuid:p1"}},"request":{"method":"POST","url":"Encounter"}}]}`)
		res, err := svc.Transaction(ctx, bundle, nil)
		if err != nil || len(res) != 2 {
			t.Fatalf("transaction: %v", err)
		}
		pid := res[0].Resource.ID
		if pg := search(t, st, "Encounter", "patient="+pid); pg.Total != 1 || pg.Matches[0].ID != res[1].Resource.ID {
			t.Errorf("transaction's Encounter not found by its patient (urn reference rewritten): %d", pg.Total)
		}
	})
}

func TestConcurrentCommits(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := t.Context()
		now := time.Now().UTC().Truncate(time.Millisecond)
		const writers = 64
		base := mkWrite(t, parse(t, patientJSON("contended", "Contended", "Base", "")), 1, 0, true, now)
		if err := st.Commit(ctx, []store.Write{base}); err != nil {
			t.Fatal(err)
		}
		type result struct {
			err error
			ws  []store.Write
		}
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			good    = make([]result, writers)
			doomed  = make([]result, 16)
			racers  = make([]result, 16)
			timeout = time.AfterFunc(30*time.Second, func() { panic("concurrent commits hang") })
		)
		defer timeout.Stop()
		for i := range writers { // two new patients each: all must land
			ws := []store.Write{
				mkWrite(t, parse(t, patientJSON(fmt.Sprintf("conc-%d-a", i), "Concurrent", fmt.Sprintf("A%d", i), "")), 1, 0, true, now),
				mkWrite(t, parse(t, patientJSON(fmt.Sprintf("conc-%d-b", i), "Concurrent", fmt.Sprintf("B%d", i), "")), 1, 0, false, now),
			}
			good[i].ws = ws
			wg.Add(1)
			go func() { defer wg.Done(); <-start; good[i].err = st.Commit(ctx, ws) }()
		}
		for i := range doomed { // a new patient and a stale update: none of it may land
			ws := []store.Write{
				mkWrite(t, parse(t, patientJSON(fmt.Sprintf("doomed-%d", i), "Doomed", "X", "")), 1, 0, true, now),
				mkWrite(t, parse(t, patientJSON("contended", "Doomed", "X", "")), 10, 9, false, now),
			}
			doomed[i].ws = ws
			wg.Add(1)
			go func() { defer wg.Done(); <-start; doomed[i].err = st.Commit(ctx, ws) }()
		}
		for i := range racers { // same update of version 1: exactly one wins
			ws := []store.Write{mkWrite(t, parse(t, patientJSON("contended", "Contended", fmt.Sprintf("Racer%d", i), "")), 2, 1, false, now)}
			racers[i].ws = ws
			wg.Add(1)
			go func() { defer wg.Done(); <-start; racers[i].err = st.Commit(ctx, ws) }()
		}
		close(start)
		wg.Wait()
		for i, r := range good {
			if r.err != nil {
				t.Errorf("writer %d: %v", i, r.err)
				continue
			}
			for _, w := range r.ws {
				got, err := st.Read(ctx, "Patient", w.ID)
				if err != nil || string(got.Data) != string(w.Data) {
					t.Errorf("acknowledged %s not readable as written: %v", w.ID, err)
				}
			}
		}
		for i, r := range doomed {
			if !errors.Is(r.err, store.ErrConflict) {
				t.Errorf("doomed %d: %v, want ErrConflict", i, r.err)
			}
			if _, err := st.Read(ctx, "Patient", r.ws[0].ID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("doomed %d: its new patient exists: %v", i, err)
			}
		}
		winners := 0
		for i, r := range racers {
			switch {
			case r.err == nil:
				winners++
				if got := mustRead(t, st, "Patient", "contended"); string(got.Data) != string(r.ws[0].Data) {
					t.Errorf("racer %d won but the stored version is another's", i)
				}
			case !errors.Is(r.err, store.ErrConflict):
				t.Errorf("racer %d: %v", i, r.err)
			}
		}
		if winners != 1 {
			t.Errorf("%d racers updated version 1, want exactly 1", winners)
		}
		if got := mustRead(t, st, "Patient", "contended"); got.Version != 2 {
			t.Errorf("contended at version %d, want 2", got.Version)
		}
		if h, err := st.History(ctx, "Patient", "contended", 100); err != nil || len(h) != 2 {
			t.Errorf("contended history: %d versions, %v", len(h), err)
		}
		if pg := search(t, st, "Patient", "family=concurrent&_count=0"); pg.Total != 2*writers {
			t.Errorf("family=concurrent: %d, want %d", pg.Total, 2*writers)
		}
		if pg := search(t, st, "Patient", "family=doomed&_count=0"); pg.Total != 0 {
			t.Errorf("family=doomed: %d, want 0", pg.Total)
		}
		// and through record.Service, as the HTTP API does
		svc := record.New(st)
		ids := make([]string, writers)
		errs := make([]error, writers)
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, err := svc.Create(ctx, "Patient", parse(t, patientJSON("", "Parallel", fmt.Sprintf("P%d", i), "")))
				if err == nil {
					ids[i] = out.Resource.ID
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		for i := range writers {
			if errs[i] != nil {
				t.Fatalf("Create %d: %v", i, errs[i])
			}
			if got := mustRead(t, st, "Patient", ids[i]); !strings.Contains(string(got.Data), fmt.Sprintf(`"P%d"`, i)) {
				t.Errorf("Create %d: read %s", i, got.Data)
			}
		}
		if s, err := st.Stats(ctx); err != nil || s["Patient"] != 1+2*writers+writers {
			t.Errorf("Stats: %v %v", s, err)
		}
	})
}

// TestCommitSameResourceTwice: one Commit may hold successive versions of
// the same resource (each write's IfVersion is the previous write's
// version). It must apply them in order, leave only the last version's
// index rows, and a problem in one Commit must not fail the other Commit
// calls that share its group-commit transaction.
//
// BUG (write.go, since "batch-wide index inserts"): index rows are queued in
// indexRows and inserted once at the end of the batch, but the update
// branch of applyOne only deletes the index rows already in the database.
// The earlier version's queued rows are then inserted next to the later
// version's; Patient's computed "deceased" token (param 17, "false") is in
// both, so the batch-wide INSERT violates idx_tok's primary key and the
// whole transaction fails: this Commit gets a raw constraint error, and
// every other Commit of the same batch fails with it.
func TestCommitSameResourceTwice(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := t.Context()
		now := time.Now().UTC().Truncate(time.Millisecond)
		if err := st.Commit(ctx, []store.Write{mkWrite(t, parse(t, patientJSON("twice", "Un", "A", "")), 1, 0, true, now)}); err != nil {
			t.Fatal(err)
		}
		err := st.Commit(ctx, []store.Write{
			mkWrite(t, parse(t, patientJSON("twice", "Deux", "A", "")), 2, 1, false, now),
			mkWrite(t, parse(t, patientJSON("twice", "Trois", "B", "")), 3, 2, false, now),
		})
		if err != nil {
			t.Errorf("Commit of versions 2 and 3 of one resource: %v", err)
		} else {
			if got := mustRead(t, st, "Patient", "twice"); got.Version != 3 {
				t.Errorf("version %d after the commit, want 3", got.Version)
			}
			if h, err := st.History(ctx, "Patient", "twice", 10); err != nil || len(h) != 3 {
				t.Errorf("History: %d versions, %v", len(h), err)
			}
			for qs, want := range map[string]int{"family=un": 0, "family=deux": 0, "family=trois": 1, "given=a": 0} {
				if n := search(t, st, "Patient", qs).Total; n != want {
					t.Errorf("%s: %d matches, want %d (index rows of an intermediate version?)", qs, n, want)
				}
			}
		}
		// create and update in one Commit
		err = st.Commit(ctx, []store.Write{
			mkWrite(t, parse(t, patientJSON("cu", "Cinq", "B", "")), 1, 0, true, now),
			mkWrite(t, parse(t, patientJSON("cu", "Six", "C", "")), 2, 1, false, now),
		})
		if err != nil {
			t.Errorf("Commit of a create and an update of one resource: %v", err)
		} else if n := search(t, st, "Patient", "family=cinq").Total; n != 0 {
			t.Errorf("family=cinq: %d matches after the update to Six", n)
		}
		// whatever happens to such a Commit, the others of its batch commit
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, 48)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = st.Commit(ctx, []store.Write{mkWrite(t, parse(t, patientJSON(fmt.Sprintf("bystander-%d", i), "Bystander", "X", "")), 1, 0, true, now)})
			}()
		}
		var odd error
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			odd = st.Commit(ctx, []store.Write{
				mkWrite(t, parse(t, patientJSON("odd", "Odd", "A", "")), 1, 0, true, now),
				mkWrite(t, parse(t, patientJSON("odd", "Odd", "B", "")), 2, 1, false, now),
			})
		}()
		close(start)
		wg.Wait()
		failed := 0
		var first error
		for _, err := range errs {
			if err != nil {
				failed++
				first = cmp.Or(first, err)
			}
		}
		if failed > 0 {
			t.Errorf("%d of %d unrelated Commits failed alongside a two-version Commit (which got %v); first error: %v",
				failed, len(errs), odd, first)
		}
	})
}

// fixture is a small, fully known data set for the search tests.
type fixture struct {
	st  store.Store
	ref map[string]string // label -> "Type/id"
}

func (f *fixture) id(label string) string {
	r, ok := f.ref[label]
	if !ok {
		panic("no fixture " + label)
	}
	_, id, _ := strings.Cut(r, "/")
	return id
}

// expand replaces {label} with the label's id.
func (f *fixture) expand(s string) string {
	for label := range f.ref {
		s = strings.ReplaceAll(s, "{"+label+"}", f.id(label))
	}
	return s
}

// oldUpdated is the lastUpdated of the "old" patient.
var oldUpdated = time.Date(2020, 6, 15, 10, 0, 0, 0, time.UTC)

func newFixture(t *testing.T, st store.Store) *fixture {
	t.Helper()
	svc := record.New(st)
	f := &fixture{st: st, ref: map[string]string{}}
	for _, o := range []struct{ id, name string }{{"org-1", "Clinique des Lilas"}, {"org-2", "Centre de santé Nord"}} {
		put(t, svc, "Organization", o.id, `{"resourceType":"Organization","name":"`+o.name+`"}`)
		f.ref[o.id] = "Organization/" + o.id
	}
	for _, d := range []struct{ id, family string }{{"dr-1", "Lefort"}, {"dr-2", "Durand"}} {
		// "Lefort": a Practitioner family a Patient family search must not return
		put(t, svc, "Practitioner", d.id, `{"resourceType":"Practitioner","name":[{"family":"`+d.family+`"}]}`)
		f.ref[d.id] = "Practitioner/" + d.id
	}
	patients := []struct{ label, js string }{
		{"helene", `{"resourceType":"Patient","name":[{"family":"Lefèvre","given":["Hélène","Marie"]}],"gender":"female","birthDate":"1980-03-15",
			"identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":"280037512345678"},{"system":"urn:oid:1.2.250.1.71.4.2.7","value":"IPP-0001"}],
			"telecom":[{"system":"phone","value":"+33 6 12 34 56 78"},{"system":"email","value":"Helene.Lefevre@Example.FR"}],
			"address":[{"line":["3 rue des Lilas"],"city":"Paris","postalCode":"75002"}],
			"generalPractitioner":[{"reference":"Practitioner/dr-1"}],"managingOrganization":{"reference":"Organization/org-1"}}`},
		{"jean", `{"resourceType":"Patient","name":[{"family":"Dupont","given":["Jean"]}],"gender":"male","birthDate":"1975-12-31",
			"identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":"175127512345699"}],
			"telecom":[{"system":"phone","value":"06.98.76.54.32"},{"system":"email","value":"jean.dupont@example.fr"}],
			"address":[{"city":"Lyon","postalCode":"69001"}],"generalPractitioner":[{"reference":"Practitioner/dr-2"}]}`},
		{"mh", `{"resourceType":"Patient","name":[{"family":"Dupond","given":["Marie-Hélène"]}],"gender":"female","birthDate":"1980-07-01",
			"telecom":[{"system":"phone","value":"0033 1 44 55 66 77"}],
			"address":[{"city":"Paris","postalCode":"75011"}],"generalPractitioner":[{"reference":"Practitioner/dr-1"}]}`},
		{"lefebvre", `{"resourceType":"Patient","name":[{"family":"Lefebvre","given":["Paul"]}],"gender":"male",
			"address":[{"city":"Marseille","postalCode":"13001"}]}`},
	}
	for _, p := range patients {
		f.ref[p.label] = "Patient/" + create(t, svc, "Patient", p.js).ID
	}
	// "old": written straight to the store with a lastUpdated in 2020
	old := parse(t, `{"resourceType":"Patient","id":"old-1","name":[{"family":"Ancien","given":["Alex"]}],"gender":"other","birthDate":"2001-01-01"}`)
	if err := st.Commit(t.Context(), []store.Write{mkWrite(t, old, 1, 0, true, oldUpdated)}); err != nil {
		t.Fatal(err)
	}
	f.ref["old"] = "Patient/old-1"

	enc := func(label, patient, status, period, org string, parts ...string) {
		var ps []string
		for _, p := range parts {
			ps = append(ps, `{"individual":{"reference":"Practitioner/`+p+`"}}`)
		}
		class := map[string]string{"finished": "AMB", "in-progress": "IMP"}[status]
		js := `{"resourceType":"Encounter","status":"` + status + `","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"` + class + `"},` +
			`"subject":{"reference":"Patient/` + f.id(patient) + `"},"period":` + period + `,"serviceProvider":{"reference":"Organization/` + org + `"},` +
			`"participant":[` + strings.Join(ps, ",") + `]}`
		f.ref[label] = "Encounter/" + create(t, svc, "Encounter", js).ID
	}
	enc("e1", "helene", "finished", `{"start":"2024-01-10T09:00:00+01:00","end":"2024-01-10T10:00:00+01:00"}`, "org-1", "dr-1")
	enc("e2", "helene", "in-progress", `{"start":"2024-03-05T14:00:00Z"}`, "org-2", "dr-2")
	enc("e3", "jean", "finished", `{"start":"2023-12-31T22:00:00Z","end":"2023-12-31T23:30:00Z"}`, "org-1", "dr-1", "dr-2")

	mr := func(label, patient, status, authored, requester string) {
		js := `{"resourceType":"MedicationRequest","status":"` + status + `","intent":"order",` +
			`"medicationCodeableConcept":{"coding":[{"system":"http://www.whocc.no/atc","code":"N02BE01"}]},` +
			`"subject":{"reference":"Patient/` + f.id(patient) + `"},"authoredOn":"` + authored + `","requester":{"reference":"Practitioner/` + requester + `"}}`
		f.ref[label] = "MedicationRequest/" + create(t, svc, "MedicationRequest", js).ID
	}
	mr("m1", "helene", "active", "2024-02-01", "dr-1")
	mr("m2", "jean", "completed", "2023-05-05T08:30:00+02:00", "dr-2")
	mr("m3", "helene", "stopped", "2024-02-20T10:00:00Z", "dr-2")
	return f
}

type searchCase struct {
	typ, q string
	want   []string // labels
}

var searchCases = []searchCase{
	// Patient: family, prefix, accents
	{"Patient", "family=lefevre", []string{"helene"}},
	{"Patient", "family=Lefèvre", []string{"helene"}},
	{"Patient", "family=LEF", []string{"helene", "lefebvre"}},
	{"Patient", "family=dup", []string{"jean", "mh"}},
	{"Patient", "family=lefort", nil}, // a Practitioner's family
	{"Patient", "family:exact=dupont", []string{"jean"}},
	{"Patient", "family:exact=dupon", nil},
	{"Patient", "family:contains=fev", []string{"helene"}},
	{"Patient", "family:contains=PON", []string{"jean", "mh"}},
	{"Patient", "family:contains=ONT", []string{"jean"}},
	{"Patient", "family=lefevre,dupond", []string{"helene", "mh"}},
	// given, name
	{"Patient", "given=helene", []string{"helene"}},
	{"Patient", "given=Hélène", []string{"helene"}},
	{"Patient", "given=marie", []string{"helene", "mh"}},
	{"Patient", "given=marie-hel", []string{"mh"}},
	{"Patient", "name=helene", []string{"helene"}},
	{"Patient", "name=dupon", []string{"jean", "mh"}},
	{"Patient", "name=paul", []string{"lefebvre"}},
	// birthdate
	{"Patient", "birthdate=1980", []string{"helene", "mh"}},
	{"Patient", "birthdate=1980-03-15", []string{"helene"}},
	{"Patient", "birthdate=eq1980-03", []string{"helene"}},
	{"Patient", "birthdate=ge1980-03-15", []string{"helene", "mh", "old"}},
	{"Patient", "birthdate=ge1980-03-16", []string{"mh", "old"}},
	{"Patient", "birthdate=gt1980", []string{"old"}},
	{"Patient", "birthdate=lt1980", []string{"jean"}},
	{"Patient", "birthdate=lt1980-03-15", []string{"jean"}},
	{"Patient", "birthdate=le1980-03-15", []string{"helene", "jean"}},
	{"Patient", "birthdate=ne1980", []string{"jean", "old"}},
	{"Patient", "birthdate=1975,2001", []string{"jean", "old"}},
	{"Patient", "birthdate=ge1980&birthdate=lt1981", []string{"helene", "mh"}},
	{"Patient", "birthdate:missing=true", []string{"lefebvre"}},
	{"Patient", "birthdate:missing=false", []string{"helene", "jean", "mh", "old"}},
	// gender
	{"Patient", "gender=female", []string{"helene", "mh"}},
	{"Patient", "gender=male", []string{"jean", "lefebvre"}},
	{"Patient", "gender=male,other", []string{"jean", "lefebvre", "old"}},
	// identifier
	{"Patient", "identifier=urn:oid:1.2.250.1.213.1.4.8|280037512345678", []string{"helene"}},
	{"Patient", "identifier=280037512345678", []string{"helene"}},
	{"Patient", "identifier=urn:oid:1.2.250.1.71.4.2.7|280037512345678", nil},
	{"Patient", "identifier=urn:oid:1.2.250.1.213.1.4.8|", []string{"helene", "jean"}},
	{"Patient", "identifier=IPP-0001", []string{"helene"}},
	{"Patient", "identifier=|IPP-0001", nil},
	{"Patient", "identifier=28003751234567", nil}, // tokens are exact
	// phone: national and international forms match each other
	{"Patient", "phone=0612345678", []string{"helene"}},
	{"Patient", "phone=06 12 34 56 78", []string{"helene"}},
	{"Patient", "phone=+33612345678", []string{"helene"}},
	{"Patient", "phone=+33 6 12 34 56 78", []string{"helene"}},
	{"Patient", "phone=06.98.76.54.32", []string{"jean"}},
	{"Patient", "phone=+33 6 98 76 54 32", []string{"jean"}},
	{"Patient", "phone=01 44 55 66 77", []string{"mh"}},
	{"Patient", "phone=+33144556677", []string{"mh"}},
	{"Patient", "phone=061234567", nil},
	// email: case-insensitive
	{"Patient", "email=helene.lefevre@example.fr", []string{"helene"}},
	{"Patient", "email=HELENE.LEFEVRE@EXAMPLE.FR", []string{"helene"}},
	{"Patient", "email=Jean.Dupont@example.fr", []string{"jean"}},
	{"Patient", "telecom=0612345678", []string{"helene"}},
	{"Patient", "telecom=jean.dupont@example.fr", []string{"jean"}},
	// address
	{"Patient", "address-postalcode=75", []string{"helene", "mh"}},
	{"Patient", "address-postalcode=75002", []string{"helene"}},
	{"Patient", "address-city=paris", []string{"helene", "mh"}},
	{"Patient", "address=marseille", []string{"lefebvre"}},
	{"Patient", "address=69", []string{"jean"}},
	// references
	{"Patient", "general-practitioner=Practitioner/dr-1", []string{"helene", "mh"}},
	{"Patient", "general-practitioner=dr-2", []string{"jean"}},
	{"Patient", "general-practitioner:Practitioner=dr-1", []string{"helene", "mh"}},
	{"Patient", "general-practitioner=Organization/dr-1", nil},
	{"Patient", "organization=org-1", []string{"helene"}},
	// _id, _lastUpdated
	{"Patient", "_id={helene},{jean}", []string{"helene", "jean"}},
	{"Patient", "_id=old-1", []string{"old"}},
	{"Patient", "_id={e1}", nil}, // an Encounter's id
	{"Patient", "_lastUpdated=2020-06-15", []string{"old"}},
	{"Patient", "_lastUpdated=lt2021", []string{"old"}},
	{"Patient", "_lastUpdated=ge2021", []string{"helene", "jean", "mh", "lefebvre"}},
	{"Patient", "_lastUpdated=gt2020-06-15T10:00:00Z", []string{"helene", "jean", "mh", "lefebvre"}},
	{"Patient", "_lastUpdated=le2020-06-15T10:00:00Z", []string{"old"}},
	// AND of parameters
	{"Patient", "family=dup&gender=female", []string{"mh"}},
	{"Patient", "family=lef&birthdate:missing=false", []string{"helene"}},
	{"Patient", "address-city=paris&general-practitioner=dr-1&birthdate=lt1980-06", []string{"helene"}},
	{"Patient", "", []string{"helene", "jean", "mh", "lefebvre", "old"}},

	// Encounter
	{"Encounter", "patient=Patient/{helene}", []string{"e1", "e2"}},
	{"Encounter", "patient={helene}", []string{"e1", "e2"}},
	{"Encounter", "subject=Patient/{jean}", []string{"e3"}},
	{"Encounter", "patient={mh}", nil},
	{"Encounter", "date=2024-01-10", []string{"e1"}},
	{"Encounter", "date=2024-01", []string{"e1"}},
	{"Encounter", "date=2023", []string{"e3"}},
	{"Encounter", "date=lt2024", []string{"e3"}},
	{"Encounter", "date=ge2024-02", []string{"e2"}}, // open-ended period
	{"Encounter", "date=ge2024-01-10T08:30:00Z", []string{"e1", "e2"}},
	{"Encounter", "date=sa2024-01-31", []string{"e2"}},
	{"Encounter", "status=finished", []string{"e1", "e3"}},
	{"Encounter", "status=in-progress", []string{"e2"}},
	{"Encounter", "status=finished,in-progress", []string{"e1", "e2", "e3"}},
	{"Encounter", "class=IMP", []string{"e2"}},
	{"Encounter", "service-provider=Organization/org-1", []string{"e1", "e3"}},
	{"Encounter", "service-provider=org-2", []string{"e2"}},
	{"Encounter", "participant=Practitioner/dr-2", []string{"e2", "e3"}},
	{"Encounter", "participant=dr-1", []string{"e1", "e3"}},
	{"Encounter", "practitioner=dr-1", []string{"e1", "e3"}},
	{"Encounter", "patient={helene}&status=finished", []string{"e1"}},

	// MedicationRequest
	{"MedicationRequest", "patient={helene}", []string{"m1", "m3"}},
	{"MedicationRequest", "subject=Patient/{jean}", []string{"m2"}},
	{"MedicationRequest", "authoredon=2024-02", []string{"m1", "m3"}},
	{"MedicationRequest", "authoredon=2024-02-01", []string{"m1"}},
	{"MedicationRequest", "authoredon=2023-05-05", []string{"m2"}},
	{"MedicationRequest", "authoredon=lt2024", []string{"m2"}},
	{"MedicationRequest", "authoredon=ge2024-02-10", []string{"m3"}},
	{"MedicationRequest", "status=active", []string{"m1"}},
	{"MedicationRequest", "status=completed,stopped", []string{"m2", "m3"}},
	{"MedicationRequest", "requester=Practitioner/dr-2", []string{"m2", "m3"}},
	{"MedicationRequest", "requester=dr-1", []string{"m1"}},
	{"MedicationRequest", "code=N02BE01", []string{"m1", "m2", "m3"}},
	{"MedicationRequest", "patient={helene}&status=stopped", []string{"m3"}},
}

func TestSearch(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st)
		for _, c := range searchCases {
			qs := f.expand(c.q)
			page := search(t, st, c.typ, qs)
			var want []string
			for _, l := range c.want {
				want = append(want, f.ref[l])
			}
			got := refs(page.Matches)
			if !slices.Equal(sorted(got), sorted(want)) {
				t.Errorf("%s?%s: got %v, want %v", c.typ, c.q, labels(f, got), c.want)
			}
			if page.Total != len(want) {
				t.Errorf("%s?%s: total %d, want %d", c.typ, c.q, page.Total, len(want))
			}
			for _, m := range page.Matches {
				cur := mustRead(t, st, m.Type, m.ID)
				if string(m.Data) != string(cur.Data) || m.Version != cur.Version || !m.Updated.Equal(cur.Updated) || m.Patient != cur.Patient {
					t.Errorf("%s?%s: match %s/%s differs from Read", c.typ, c.q, m.Type, m.ID)
				}
			}
		}
		// totals without matches
		for _, qs := range []string{"_summary=count", "_count=0"} {
			p := search(t, st, "Patient", qs)
			if p.Total != 5 || len(p.Matches) != 0 {
				t.Errorf("Patient?%s: total %d, %d matches", qs, p.Total, len(p.Matches))
			}
		}
		if p := search(t, st, "Encounter", "status=finished&_summary=count"); p.Total != 2 || len(p.Matches) != 0 {
			t.Errorf("Encounter?status=finished&_summary=count: total %d, %d matches", p.Total, len(p.Matches))
		}
	})
}

func labels(f *fixture, refs []string) []string {
	var out []string
	for _, r := range refs {
		l := r
		for label, ref := range f.ref {
			if ref == r {
				l = label
			}
		}
		out = append(out, l)
	}
	return out
}

func TestSearchSort(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st)
		cases := []struct {
			q    string
			want []string
		}{
			{"birthdate:missing=false&_sort=birthdate", []string{"jean", "helene", "mh", "old"}},
			{"birthdate:missing=false&_sort=-birthdate", []string{"old", "mh", "helene", "jean"}},
			{"_sort=family", []string{"old", "mh", "jean", "lefebvre", "helene"}}, // ancien dupond dupont lefebvre lefevre
			{"_sort=-family", []string{"helene", "lefebvre", "jean", "mh", "old"}},
			{"birthdate:missing=false&_sort=-birthdate,family", []string{"old", "mh", "helene", "jean"}},
		}
		for _, c := range cases {
			got := labels(f, refs(search(t, st, "Patient", c.q).Matches))
			if !slices.Equal(got, c.want) {
				t.Errorf("Patient?%s: order %v, want %v", c.q, got, c.want)
			}
		}
		// _sort=_id: ids in byte order
		var all []string
		for _, l := range []string{"helene", "jean", "mh", "lefebvre", "old"} {
			all = append(all, f.id(l))
		}
		sort.Strings(all)
		var got []string
		for _, m := range search(t, st, "Patient", "_sort=_id").Matches {
			got = append(got, m.ID)
		}
		if !slices.Equal(got, all) {
			t.Errorf("_sort=_id: %v, want %v", got, all)
		}
		// _sort=-_lastUpdated: newest first, the 2020 patient last
		ms := search(t, st, "Patient", "_sort=-_lastUpdated").Matches
		if len(ms) != 5 || ms[4].ID != "old-1" {
			t.Fatalf("_sort=-_lastUpdated: %v", refs(ms))
		}
		for i := 1; i < len(ms); i++ {
			if ms[i].Updated.After(ms[i-1].Updated) {
				t.Errorf("_sort=-_lastUpdated: %s after %s", ms[i].Updated, ms[i-1].Updated)
			}
		}
		// Encounter by date
		if got := labels(f, refs(search(t, st, "Encounter", "_sort=date").Matches)); !slices.Equal(got, []string{"e3", "e1", "e2"}) {
			t.Errorf("Encounter?_sort=date: %v", got)
		}
	})
}

func TestSearchPaging(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := t.Context()
		now := time.Now().UTC().Truncate(time.Millisecond)
		const n = 23
		var ws []store.Write
		births := []string{"1950-01-01", "1960-06-15", "1960-06-15", "1999-12-31"} // ties on purpose
		families := []string{"Page", "Pagnol", "Pages", "Paget", "Pagé"}
		for i := range n {
			id := fmt.Sprintf("page-%02d", (i*7)%n) // ids not in insertion order
			ws = append(ws, mkWrite(t, parse(t, patientJSON(id, families[i%len(families)], "P", births[i%len(births)])), 1, 0, true, now.Add(time.Duration(i)*time.Millisecond)))
		}
		if err := st.Commit(ctx, ws); err != nil {
			t.Fatal(err)
		}
		// a non-matching patient
		if err := st.Commit(ctx, []store.Write{mkWrite(t, parse(t, patientJSON("other", "Autre", "P", "1960-06-15")), 1, 0, true, now)}); err != nil {
			t.Fatal(err)
		}
		for _, sortBy := range []string{"", "birthdate", "-birthdate", "family", "-family", "_id", "-_lastUpdated", "birthdate,-_id"} {
			qs := "family=pag&_count=5"
			if sortBy != "" {
				qs += "&_sort=" + sortBy
			}
			q, err := query(t, "Patient", qs)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]int{}
			var order []*store.Resource
			for off := 0; off <= n+5; off += 5 {
				q.Offset = off
				page, err := st.Search(ctx, q, nil)
				if err != nil {
					t.Fatal(err)
				}
				if page.Total != n {
					t.Errorf("sort %q offset %d: total %d, want %d", sortBy, off, page.Total, n)
				}
				if want := max(0, min(5, n-off)); len(page.Matches) != want {
					t.Errorf("sort %q offset %d: %d matches, want %d", sortBy, off, len(page.Matches), want)
				}
				for _, m := range page.Matches {
					seen[m.ID]++
					order = append(order, m)
				}
			}
			if len(seen) != n {
				t.Errorf("sort %q: pages cover %d distinct patients, want %d", sortBy, len(seen), n)
			}
			for id, c := range seen {
				if c != 1 || !strings.HasPrefix(id, "page-") {
					t.Errorf("sort %q: %s seen %d times", sortBy, id, c)
				}
			}
			// the concatenated pages respect the sort
			key := func(r *store.Resource) string {
				p, err := fhir.Parse(r.Data)
				if err != nil {
					t.Fatal(err)
				}
				switch strings.TrimPrefix(strings.Split(sortBy, ",")[0], "-") {
				case "birthdate":
					return p["birthDate"].(string)
				case "family":
					return fhir.NormString(p["name"].([]any)[0].(map[string]any)["family"].(string))
				case "_id":
					return r.ID
				case "_lastUpdated":
					return r.Updated.Format("2006-01-02T15:04:05.000000")
				}
				return ""
			}
			desc := strings.HasPrefix(sortBy, "-")
			for i := 1; i < len(order); i++ {
				a, b := key(order[i-1]), key(order[i])
				if (!desc && a > b) || (desc && a < b) {
					t.Errorf("sort %q: %s (%s) before %s (%s)", sortBy, order[i-1].ID, a, order[i].ID, b)
				}
			}
		}
	})
}

func TestSearchInclude(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		f := newFixture(t, st)
		cases := []struct {
			typ, q            string
			matches, included []string
		}{
			{"Encounter", "status=finished&_include=Encounter:patient", []string{"e1", "e3"}, []string{"helene", "jean"}},
			{"Encounter", "_id={e1},{e2}&_include=Encounter:patient", []string{"e1", "e2"}, []string{"helene"}},
			{"Encounter", "_id={e3}&_include=Encounter:participant:Practitioner", []string{"e3"}, []string{"dr-1", "dr-2"}},
			{"Encounter", "_id={e3}&_include=Encounter:participant:RelatedPerson", []string{"e3"}, nil},
			{"Encounter", "_id={e2}&_include=Encounter:patient&_include=Encounter:service-provider", []string{"e2"}, []string{"helene", "org-2"}},
			{"Patient", "_id={helene}&_revinclude=Encounter:patient", []string{"helene"}, []string{"e1", "e2"}},
			{"Patient", "family=dup&_revinclude=Encounter:patient&_revinclude=MedicationRequest:patient", []string{"jean", "mh"}, []string{"e3", "m2"}},
			{"Patient", "_id={helene}&_revinclude=MedicationRequest:patient&_include=Patient:general-practitioner", []string{"helene"}, []string{"dr-1", "m1", "m3"}},
			{"Patient", "_id={lefebvre}&_revinclude=Encounter:patient", []string{"lefebvre"}, nil},
			{"MedicationRequest", "status=active,stopped&_include=MedicationRequest:patient&_include=MedicationRequest:requester", []string{"m1", "m3"}, []string{"helene", "dr-1", "dr-2"}},
		}
		for _, c := range cases {
			page := search(t, st, c.typ, f.expand(c.q))
			var wm, wi []string
			for _, l := range c.matches {
				wm = append(wm, f.ref[l])
			}
			for _, l := range c.included {
				wi = append(wi, f.ref[l])
			}
			if got := refs(page.Matches); !slices.Equal(sorted(got), sorted(wm)) {
				t.Errorf("%s?%s: matches %v, want %v", c.typ, c.q, labels(f, got), c.matches)
			}
			got := refs(page.Included)
			if !slices.Equal(sorted(got), sorted(wi)) {
				t.Errorf("%s?%s: included %v, want %v", c.typ, c.q, labels(f, got), c.included)
			}
			if page.Total != len(wm) {
				t.Errorf("%s?%s: total %d counts included resources", c.typ, c.q, page.Total)
			}
			for _, r := range page.Included {
				cur := mustRead(t, st, r.Type, r.ID)
				if string(cur.Data) != string(r.Data) || cur.Version != r.Version {
					t.Errorf("%s?%s: included %s/%s differs from Read", c.typ, c.q, r.Type, r.ID)
				}
			}
		}
	})
}

func TestMissing(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := t.Context()
		f := newFixture(t, st)
		svc := record.New(st)
		if _, err := svc.Delete(ctx, "Patient", f.id("lefebvre"), 0); err != nil {
			t.Fatal(err)
		}
		in := []string{"Patient/" + f.id("helene"), "Patient/nope", "Organization/org-1", "Practitioner/org-1", "junk",
			"Patient/" + f.id("lefebvre"), "Encounter/" + f.id("e1")}
		got, err := st.Missing(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"Patient/nope", "Practitioner/org-1", "junk", "Patient/" + f.id("lefebvre")}
		if !slices.Equal(sorted(got), sorted(want)) {
			t.Errorf("Missing = %v, want %v", got, want)
		}
		if got, err := st.Missing(ctx, nil); err != nil || len(got) != 0 {
			t.Errorf("Missing(nil) = %v, %v", got, err)
		}
		// record.Service refuses a reference to the deleted patient
		_, err = svc.Create(ctx, "Encounter", parse(t, `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/`+f.id("lefebvre")+`"}}`))
		if fhir.AsError(err).Status != 422 {
			t.Errorf("Encounter referencing a deleted patient: %v, want 422", err)
		}
	})
}

func TestLoadSynthetic(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		ctx := t.Context()
		const patients = 300
		res, err := load.Synthetic(ctx, st, synth.Config{Seed: 7, Patients: patients}, nil, nil)
		if err != nil {
			t.Fatalf("Synthetic: %v", err)
		}
		stats, err := st.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sum := 0
		for _, n := range stats {
			sum += n
		}
		if stats["Patient"] != patients || sum != res.Resources {
			t.Fatalf("Stats %v (sum %d), want %d patients and %d resources", stats, sum, patients, res.Resources)
		}
		for _, typ := range []string{"Encounter", "Organization", "Practitioner"} {
			if stats[typ] == 0 {
				t.Errorf("no %s loaded: %v", typ, stats)
			}
		}
		// every type's search total agrees with Stats (the index was rebuilt)
		for typ, n := range stats {
			if p := search(t, st, typ, "_summary=count"); p.Total != n {
				t.Errorf("%s: search total %d, Stats %d", typ, p.Total, n)
			}
		}
		// searches through the rebuilt secondary indexes work
		page := search(t, st, "Patient", "_count=10&_sort=_id")
		if len(page.Matches) != 10 {
			t.Fatalf("%d patients in the first page", len(page.Matches))
		}
		for _, m := range page.Matches {
			r, err := fhir.Parse(m.Data)
			if err != nil {
				t.Fatal(err)
			}
			fam := r["name"].([]any)[0].(map[string]any)["family"].(string)
			if p := search(t, st, "Patient", "family:exact="+fam+"&_count=500"); !slices.Contains(refs(p.Matches), "Patient/"+m.ID) {
				t.Errorf("family:exact=%s does not find Patient/%s", fam, m.ID)
			}
			encs := search(t, st, "Encounter", "patient="+m.ID+"&_count=500")
			rev := search(t, st, "Patient", "_id="+m.ID+"&_revinclude=Encounter:patient")
			if encs.Total != len(rev.Included) {
				t.Errorf("Patient/%s: %d encounters by patient=, %d by _revinclude", m.ID, encs.Total, len(rev.Included))
			}
			for _, e := range encs.Matches {
				if e.Patient != m.ID {
					t.Errorf("Encounter/%s of Patient/%s has compartment %q", e.ID, m.ID, e.Patient)
				}
			}
		}
		if _, err := load.Synthetic(ctx, st, synth.Config{Seed: 7, Patients: 1}, nil, nil); !errors.Is(err, load.ErrNotEmpty) {
			t.Errorf("second Synthetic: %v, want ErrNotEmpty", err)
		}
		// ordinary writes after a bulk load
		svc := record.New(st)
		p := create(t, svc, "Patient", patientJSON("", "Apreschargement", "X", ""))
		if got := mustRead(t, st, "Patient", p.ID); string(got.Data) != string(p.Data) {
			t.Fatal("write after load not readable")
		}
		if s, _ := st.Stats(ctx); s["Patient"] != patients+1 {
			t.Errorf("Patient count %d after one create", s["Patient"])
		}
	})
}

// TestSQLiteSearchUsesIndex checks that a family prefix search is driven by
// the idx_str primary key rather than a scan (SQLite's EXPLAIN QUERY PLAN of
// the SQL Store.Search builds for "family=dup", with the unary plus on
// rtype that search.go puts when a filter is selective).
func TestSQLiteSearchUsesIndex(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := load.Synthetic(ctx, st, synth.Config{Seed: 3, Patients: 200}, nil, nil); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+sqlite.Path(dir)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	family := fhir.LookupParam("Patient", "family").IndexIDs()[0]
	queries := map[string]string{
		"count": `SELECT COUNT(*) FROM resources r WHERE +r.rtype = ? AND r.deleted = 0 AND r.pk IN (SELECT x.pk FROM idx_str x WHERE x.p = ? AND ((x.v >= ? AND x.v < ?)))`,
		"page":  `SELECT r.pk, r.id, r.ver, r.updated, r.patient, r.data FROM resources r WHERE +r.rtype = ? AND r.deleted = 0 AND r.pk IN (SELECT x.pk FROM idx_str x WHERE x.p = ? AND ((x.v >= ? AND x.v < ?))) ORDER BY r.pk LIMIT ? OFFSET ?`,
	}
	for name, q := range queries {
		args := []any{"Patient", family, "dup", "duq"}
		if name == "page" {
			args = append(args, 20, 0)
		}
		rows, err := db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		text := strings.Join(plan, "\n")
		t.Logf("%s plan:\n%s", name, text)
		usesIdx := false
		for _, l := range plan {
			if strings.HasPrefix(l, "SCAN r") || strings.HasPrefix(l, "SCAN resources") || strings.HasPrefix(l, "SCAN x") || strings.HasPrefix(l, "SCAN idx_str") {
				t.Errorf("%s: full scan in plan:\n%s", name, text)
			}
			if strings.Contains(l, "SEARCH x USING") || strings.Contains(l, "SEARCH idx_str USING") {
				usesIdx = true
			}
		}
		if !usesIdx {
			t.Errorf("%s: idx_str is not searched through an index:\n%s", name, text)
		}
	}
	// and the query really is the one Search runs: same answers
	p := search(t, st, "Patient", "family=dup&_count=500")
	var n int
	if err := db.QueryRowContext(ctx, queries["count"], "Patient", family, "dup", "duq").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != p.Total {
		t.Errorf("reconstructed count %d, Search total %d", n, p.Total)
	}
}
