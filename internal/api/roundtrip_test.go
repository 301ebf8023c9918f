package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// r4Examples are official FHIR R4 examples (npm hl7.fhir.r4.examples 4.0.1,
// CC0, see testdata/r4-examples/NOTICE.md), in an order where every
// reference resolves to a resource loaded before it. Patient-pat1 and
// Patient-pat2 link to each other: they go in one transaction.
var r4Examples = [][]string{
	{"Organization-1.json"},
	{"Practitioner-example.json"},
	{"Practitioner-f007.json"},
	{"Patient-example.json"},                   // -> Organization/1
	{"Patient-pat1.json", "Patient-pat2.json"}, // -> each other, Organization/1
	{"Encounter-example.json"},                 // -> Patient/example
	{"Observation-example.json"},               // valueQuantity 185 lbs
	{"Observation-blood-pressure.json"},        // components, meta.profile
	{"Observation-glasgow.json"},               // extensions on codings
	{"Observation-decimal.json"},               // 1.0, 1.00, 1E-22, -1.000000000000000000E+245
	{"Condition-example.json"},                 // -> Patient/example
	{"AllergyIntolerance-example.json"},        // -> Patient/example, Practitioner/example
	{"MedicationRequest-medrx0304.json"},       // contained Medication
	{"Medication-med0301.json"},                // contained Organization
}

func loadExample(t *testing.T, name string) (raw []byte, m map[string]any) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "r4-examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return raw, decode(t, raw)
}

// comparable strips what the server owns: id (when stripID), and
// meta.versionId and meta.lastUpdated (other meta elements are the client's
// and must survive).
func comparable(m map[string]any, stripID bool) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	if stripID {
		delete(out, "id")
	}
	if meta, ok := out["meta"].(map[string]any); ok {
		mc := map[string]any{}
		for k, v := range meta {
			if k != "versionId" && k != "lastUpdated" {
				mc[k] = v
			}
		}
		if len(mc) == 0 {
			delete(out, "meta")
		} else {
			out["meta"] = mc
		}
	}
	return out
}

// sameJSON fails with the first difference between want and got.
func sameJSON(t *testing.T, what string, want, got map[string]any) {
	t.Helper()
	if reflect.DeepEqual(want, got) {
		return
	}
	path, w, g := firstDiff("", want, got)
	t.Errorf("%s: differs at %s: want %s, got %s", what, path, short(w), short(g))
}

func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

func firstDiff(path string, a, b any) (string, any, any) {
	switch at := a.(type) {
	case map[string]any:
		bt, ok := b.(map[string]any)
		if !ok {
			return path, a, b
		}
		keys := map[string]bool{}
		for k := range at {
			keys[k] = true
		}
		for k := range bt {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		slices.Sort(sorted)
		for _, k := range sorted {
			if !reflect.DeepEqual(at[k], bt[k]) {
				return firstDiff(path+"."+k, at[k], bt[k])
			}
		}
	case []any:
		bt, ok := b.([]any)
		if !ok || len(at) != len(bt) {
			return path, a, b
		}
		for i := range at {
			if !reflect.DeepEqual(at[i], bt[i]) {
				return firstDiff(path+"["+strconv.Itoa(i)+"]", at[i], bt[i])
			}
		}
	}
	return path, a, b
}

// TestRoundTripR4Examples stores official examples with PUT (keeping their
// ids) and POST (server ids) and checks that reading them back gives the
// same JSON, decimals included, apart from id and meta.versionId /
// meta.lastUpdated.
func TestRoundTripR4Examples(t *testing.T) {
	s := newTestServer(t, Options{})
	type stored struct {
		name string
		orig map[string]any
	}
	var all []stored

	// 1. PUT with the example's own id (update as create).
	for _, group := range r4Examples {
		var entries []string
		for _, name := range group {
			raw, m := loadExample(t, name)
			typ, id := m["resourceType"].(string), m["id"].(string)
			if !strings.HasPrefix(name, typ+"-"+id) {
				t.Fatalf("%s holds %s/%s", name, typ, id)
			}
			all = append(all, stored{name, m})
			if len(group) == 1 {
				r := s.do(t, http.MethodPut, "/fhir/"+typ+"/"+id, raw)
				mustStatus(t, r, http.StatusCreated, "PUT "+name)
				if et := r.Header.Get("ETag"); et != `W/"1"` {
					t.Errorf("PUT %s: ETag %q, want W/\"1\"", name, et)
				}
				sameJSON(t, "PUT response of "+name, comparable(m, false), comparable(decode(t, r.Body), false))
				continue
			}
			entries = append(entries, `{"fullUrl":"http://example.org/fhir/`+typ+`/`+id+`","resource":`+string(raw)+`,"request":{"method":"PUT","url":"`+typ+`/`+id+`"}}`)
		}
		if len(entries) > 0 {
			r := s.do(t, http.MethodPost, "/fhir", []byte(txJSON("transaction", entries...)))
			mustStatus(t, r, http.StatusOK, "transaction of "+strings.Join(group, " + "))
			for i, e := range bundleEntries(t, decode(t, r.Body)) {
				st, _ := e["response"].(map[string]any)["status"].(string)
				if !strings.HasPrefix(st, "201") {
					t.Errorf("transaction entry %d: status %q, want 201", i, st)
				}
			}
		}
	}

	// 2. Read back, vread version 1, and a second identical PUT is a no-op.
	for _, e := range all {
		typ, id := e.orig["resourceType"].(string), e.orig["id"].(string)
		path := "/fhir/" + typ + "/" + id
		r := s.get(t, path)
		mustStatus(t, r, http.StatusOK, "read "+e.name)
		got := decode(t, r.Body)
		sameJSON(t, "read of "+e.name, comparable(e.orig, false), comparable(got, false))
		meta, _ := got["meta"].(map[string]any)
		if meta["versionId"] != "1" || meta["lastUpdated"] == nil {
			t.Errorf("%s: meta %v lacks versionId 1 / lastUpdated", e.name, meta)
		}
		v := s.get(t, path+"/_history/1")
		mustStatus(t, v, http.StatusOK, "vread "+e.name)
		if !bytes.Equal(v.Body, r.Body) {
			t.Errorf("%s: vread 1 differs from read", e.name)
		}
		raw, _ := loadExample(t, e.name)
		again := s.do(t, http.MethodPut, path, raw)
		mustStatus(t, again, http.StatusOK, "identical PUT of "+e.name)
		if et := again.Header.Get("ETag"); et != `W/"1"` {
			t.Errorf("identical PUT of %s made a new version: ETag %s", e.name, et)
		}
	}

	// 3. POST: the server assigns a new id, everything else is kept.
	for _, e := range all {
		raw, _ := loadExample(t, e.name)
		typ := e.orig["resourceType"].(string)
		r := s.do(t, http.MethodPost, "/fhir/"+typ, raw)
		mustStatus(t, r, http.StatusCreated, "POST "+e.name)
		created := decode(t, r.Body)
		id, _ := created["id"].(string)
		if id == "" || id == e.orig["id"] {
			t.Fatalf("POST %s: server id %q", e.name, id)
		}
		if loc := r.Header.Get("Location"); !strings.HasSuffix(loc, "/fhir/"+typ+"/"+id+"/_history/1") {
			t.Errorf("POST %s: Location %q", e.name, loc)
		}
		rr := s.get(t, "/fhir/"+typ+"/"+id)
		mustStatus(t, rr, http.StatusOK, "read POSTed "+e.name)
		sameJSON(t, "read of POSTed "+e.name, comparable(e.orig, true), comparable(decode(t, rr.Body), true))
	}

	// 4. The exact decimals of Observation-decimal, checked literally too.
	r := s.get(t, "/fhir/Observation/decimal")
	for _, lit := range []string{`"value":1.0}`, `"value":1.00}`, `"value":1E-22}`, `"value":1000000000000000000}`, `"value":1.000000000000000000E-245}`, `"value":-1.000000000000000000E+245}`} {
		if !bytes.Contains(r.Body, []byte(lit)) {
			t.Errorf("stored Observation/decimal lost the literal %s", lit)
		}
	}

	// 5. The examples are searchable by what they hold: each query finds
	// the PUT copy (example id) and the POSTed copy.
	for _, q := range []struct{ path, want string }{
		{"/fhir/Patient?family=chalmers", "Patient/example"},
		{"/fhir/Observation?subject=Patient/example&code=http://loinc.org|85354-9", "Observation/blood-pressure"},
		{"/fhir/Encounter?patient=example&status=in-progress", "Encounter/example"},
		{"/fhir/MedicationRequest?subject=Patient/pat1&status=completed&intent=order", "MedicationRequest/medrx0304"},
		{"/fhir/Organization?name=gastroenterology", "Organization/1"},
	} {
		r := s.get(t, q.path)
		mustStatus(t, r, http.StatusOK, q.path)
		got := entryIDs(bundleEntries(t, decode(t, r.Body)), "match")
		if len(got) != 2 || !slices.Contains(got, q.want) {
			t.Errorf("%s: matches %v, want %s and its POSTed copy", q.path, got, q.want)
		}
	}
}

// TestRoundTripExampleFilesListed: every example in testdata is exercised.
func TestRoundTripExampleFilesListed(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "r4-examples", "*-*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, g := range r4Examples {
		listed = append(listed, g...)
	}
	for _, f := range files {
		if !slices.Contains(listed, filepath.Base(f)) {
			t.Errorf("%s is in testdata but not in r4Examples", f)
		}
	}
	if len(listed) != len(files) {
		t.Errorf("r4Examples lists %d files, testdata has %d", len(listed), len(files))
	}
	if _, err := os.Stat(filepath.Join("testdata", "r4-examples", "NOTICE.md")); err != nil {
		t.Errorf("license notice missing: %v", err)
	}
}
