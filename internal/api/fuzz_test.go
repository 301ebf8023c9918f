package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"carnet/internal/store/sqlite"
)

// fuzzTypes are the endpoints FuzzCreate posts to, chosen by a fuzzed byte.
var fuzzTypes = []string{"Patient", "Observation", "Encounter", "MedicationRequest", "Condition", "Organization", "Practitioner", "Bundle-transaction", "Bundle-batch"}

// FuzzCreate posts arbitrary bodies to one shared server (a SQLite store in
// a temporary directory): whatever the body, the answer is never a 5xx, and
// an error is a JSON OperationOutcome.
func FuzzCreate(f *testing.F) {
	for _, s := range []string{
		`{"resourceType":"Patient","name":[{"family":"Fuzz","given":["A"]}],"gender":"female","birthDate":"1980"}`,
		`{"resourceType":"Patient","managingOrganization":{"reference":"Organization/fz-org"}}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/fz-pat"},"valueQuantity":{"value":1.50}}`,
		`{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/fz-pat"},"period":{"start":"2024-01-01T00:00:00Z"}}`,
		`{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Patient/fz-pat"},"contained":[{"resourceType":"Medication","id":"m"}],"medicationReference":{"reference":"#m"}}`,
		`{"resourceType":"Condition","subject":{"reference":"Patient/nobody"}}`,
		`{"resourceType":"Patient","gender":"M"}`,
		`{"resourceType":"Patient","name":[]}`,
		`{"resourceType":"Patient"} trailing`,
		`[{"resourceType":"Patient"}]`,
		``,
		"{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"\xff\xfe\"}]}",
		`{"resourceType":"Patient","extension":[{"url":"x","valueDecimal":1e999999}]}`,
		`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:a","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},` +
			`{"resource":{"resourceType":"Encounter","status":"finished","class":{},"subject":{"reference":"urn:uuid:a"}},"request":{"method":"POST","url":"Encounter"}}]}`,
		`{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"DELETE","url":"Patient/fz-pat"}},{"request":{"method":"PUT","url":"Patient/fz-pat"},"resource":{"resourceType":"Patient","id":"fz-pat"}}]}`,
		`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"PUT","url":"Patient/x"},"resource":{"resourceType":"Patient","id":"x"}},{"request":{"method":"DELETE","url":"Patient/x"}}]}`,
	} {
		for i := range fuzzTypes {
			f.Add(uint8(i), []byte(s))
		}
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "r4-examples", "*-*.json"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(uint8(0), b)
		}
	}

	st, err := sqlite.Open(context.Background(), f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	h := New(st, Options{InsecureOpen: true})
	// Resources the seeds refer to.
	for _, put := range []struct{ path, body string }{
		{"/fhir/Organization/fz-org", `{"resourceType":"Organization","id":"fz-org"}`},
		{"/fhir/Patient/fz-pat", `{"resourceType":"Patient","id":"fz-pat"}`},
	} {
		req := httptest.NewRequest(http.MethodPut, put.path, strings.NewReader(put.body))
		req.Header.Set("Content-Type", "application/fhir+json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 300 {
			f.Fatalf("seeding %s: %d %s", put.path, w.Code, w.Body)
		}
	}

	f.Fuzz(func(t *testing.T, sel uint8, body []byte) {
		typ := fuzzTypes[int(sel)%len(fuzzTypes)]
		path := "/fhir/" + typ
		if strings.HasPrefix(typ, "Bundle-") {
			path = "/fhir"
		}
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/fhir+json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("POST %s: %d %s", path, w.Code, w.Body)
		}
		created := bytes.Clone(w.Body.Bytes())
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(created))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("POST %s: %d with a non-JSON body: %v", path, w.Code, err)
		}
		switch {
		case w.Code >= 400:
			if m["resourceType"] != "OperationOutcome" {
				t.Fatalf("POST %s: %d without an OperationOutcome", path, w.Code)
			}
		case path == "/fhir":
			if m["resourceType"] != "Bundle" {
				t.Fatalf("POST /fhir: %d without a Bundle", w.Code)
			}
		default:
			if w.Code != http.StatusCreated || m["resourceType"] != typ {
				t.Fatalf("POST %s: %d %v", path, w.Code, m["resourceType"])
			}
			// What was accepted reads back identically.
			id, _ := m["id"].(string)
			rr := httptest.NewRecorder()
			h.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, path+"/"+id, nil))
			if rr.Code != http.StatusOK || !bytes.Equal(rr.Body.Bytes(), created) {
				t.Fatalf("read back %s/%s: %d, differs from the create response: %v", typ, id, rr.Code, !bytes.Equal(rr.Body.Bytes(), created))
			}
		}
	})
}

// FuzzSearch sends arbitrary query strings to searches of several types on
// a small shared data set: never a 5xx, always a searchset Bundle or an
// OperationOutcome, and every next link works.
func FuzzSearch(f *testing.F) {
	for _, q := range []string{
		"", "family=dup", "name=a,b&given=c", `family=a\,b`, "name:contains=u", "family:exact=dupont", "family:missing=true",
		"birthdate=ge1980&birthdate=lt1990", "birthdate=ne1985", "birthdate=sa1900&birthdate=eb2100", "_lastUpdated=gt2000",
		"_id=fz-pat,fz-pat2", "identifier=urn:s|1", "identifier=urn:s|", "gender=female,male", "phone=0612345678",
		"organization=Organization/fz-org", "organization:Organization=fz-org", "general-practitioner=fz-doc", "deceased=true",
		"_sort=-birthdate,family,_id", "_sort=-_lastUpdated", "_count=1", "_count=0", "_summary=count", "_offset=1&_count=1",
		"_include=Patient:organization", "_revinclude=Encounter:patient", "_revinclude=Observation:subject&_include=Patient:general-practitioner",
		"subject=Patient/fz-pat", "patient=fz-pat&_include=Encounter:patient", "date=ge2024", "status=finished", "class=AMB",
		"code=http://loinc.org|85354-9", "_include=Encounter:participant:Practitioner", "subject:Patient=fz-pat",
		"shoe=1", "a=%zz", "_cursor=" + cursorOf("family=dup&_offset=1&_count=1"), "_cursor=!!",
	} {
		for i := range 3 {
			f.Add(uint8(i), q)
		}
	}
	st, err := sqlite.Open(context.Background(), f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	h := New(st, Options{InsecureOpen: true})
	for _, put := range []struct{ path, body string }{
		{"/fhir/Organization/fz-org", `{"resourceType":"Organization","id":"fz-org","name":"Org"}`},
		{"/fhir/Practitioner/fz-doc", `{"resourceType":"Practitioner","id":"fz-doc","name":[{"family":"Doc"}]}`},
		{"/fhir/Patient/fz-pat", `{"resourceType":"Patient","id":"fz-pat","name":[{"family":"Dupont","given":["Anne"]}],"gender":"female","birthDate":"1980-03-01",` +
			`"identifier":[{"system":"urn:s","value":"1"}],"telecom":[{"system":"phone","value":"06 12 34 56 78"}],"managingOrganization":{"reference":"Organization/fz-org"},` +
			`"generalPractitioner":[{"reference":"Practitioner/fz-doc"}]}`},
		{"/fhir/Patient/fz-pat2", `{"resourceType":"Patient","id":"fz-pat2","name":[{"family":"Durand"}],"gender":"male","birthDate":"1990","deceasedBoolean":true}`},
		{"/fhir/Encounter/fz-enc", `{"resourceType":"Encounter","id":"fz-enc","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/fz-pat"},` +
			`"period":{"start":"2024-01-01T08:00:00Z"},"participant":[{"individual":{"reference":"Practitioner/fz-doc"}}]}`},
		{"/fhir/Observation/fz-obs", `{"resourceType":"Observation","id":"fz-obs","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},` +
			`"subject":{"reference":"Patient/fz-pat"},"encounter":{"reference":"Encounter/fz-enc"},"effectiveDateTime":"2024-01-01T09:00:00+01:00"}`},
	} {
		req := httptest.NewRequest(http.MethodPut, put.path, strings.NewReader(put.body))
		req.Header.Set("Content-Type", "application/fhir+json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 300 {
			f.Fatalf("seeding %s: %d %s", put.path, w.Code, w.Body)
		}
	}
	types := []string{"Patient", "Encounter", "Observation"}
	get := func(t *testing.T, target string, strict bool) (int, map[string]any) {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.URL.Path, req.URL.RawQuery, _ = strings.Cut(target, "?")
		if strict {
			req.Header.Set("Prefer", "handling=strict")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("GET %s: %d %s", target, w.Code, w.Body)
		}
		var m map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			t.Fatalf("GET %s: %d with a non-JSON body", target, w.Code)
		}
		return w.Code, m
	}
	f.Fuzz(func(t *testing.T, sel uint8, raw string) {
		if strings.ContainsAny(raw, "#\x00\r\n ") {
			raw = url.PathEscape(raw) // keep it a well-formed request target
		}
		typ := types[int(sel)%len(types)]
		code, m := get(t, "/fhir/"+typ+"?"+raw, sel&0x80 != 0)
		if code >= 400 {
			if m["resourceType"] != "OperationOutcome" {
				t.Fatalf("%d without an OperationOutcome", code)
			}
			return
		}
		if m["resourceType"] != "Bundle" || m["type"] != "searchset" {
			t.Fatalf("%d without a searchset", code)
		}
		// Follow at most a few next links: they must work.
		for range 3 {
			links, _ := m["link"].([]any)
			next := ""
			for _, l := range links {
				if lm, _ := l.(map[string]any); lm["relation"] == "next" {
					next, _ = lm["url"].(string)
				}
			}
			if next == "" {
				return
			}
			u, err := url.Parse(next)
			if err != nil {
				t.Fatalf("next link %q: %v", next, err)
			}
			if code, m = get(t, u.RequestURI(), false); code != http.StatusOK {
				t.Fatalf("next link %q: %d %v", next, code, m)
			}
		}
	})
}
