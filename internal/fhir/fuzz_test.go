package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// clientError fails unless err is an *Error with a 4xx status, a code and a
// message: what reaches a client must never be a 5xx or an untyped error.
func clientError(t *testing.T, what string, err error) *Error {
	t.Helper()
	var fe *Error
	if !errors.As(err, &fe) {
		t.Fatalf("%s: error %T %v is not a *fhir.Error", what, err, err)
	}
	if fe.Status < 400 || fe.Status > 499 || fe.Code == "" || fe.Msg == "" {
		t.Fatalf("%s: error %+v is not a complete 4xx", what, fe)
	}
	return fe
}

var parseSeeds = []string{
	`{"resourceType":"Patient"}`,
	`{"resourceType":"Patient","id":"p1","meta":{"tag":[{"code":"x"}]},"name":[{"family":"Lefèvre","given":["Hélène"]}],"gender":"female","birthDate":"1980-03-01",
	 "telecom":[{"system":"phone","value":"+33 6 12 34 56 78"},{"system":"email","value":"a@b.fr"}],"address":[{"city":"Lyon","postalCode":"69001"}],
	 "identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":"1"}],"managingOrganization":{"reference":"Organization/o"},"deceasedDateTime":"2020-01-01T10:00:00Z","active":true}`,
	`{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p"},"period":{"start":"2024-01-01","end":"2024-01-02T10:00:00+02:00"},"participant":[{"individual":{"reference":"Practitioner/d"}}]}`,
	`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},"subject":{"reference":"urn:uuid:1"},"effectivePeriod":{"start":"2024"},"valueQuantity":{"value":1.50,"unit":"g"}}`,
	`{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Patient/p/_history/2"},"contained":[{"resourceType":"Medication","id":"m"}],"medicationReference":{"reference":"#m"}}`,
	`{"resourceType":"Condition","subject":{"reference":"http://other/fhir/Patient/p"},"onsetPeriod":{"end":"2020"}}`,
	`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient"}}]}`,
	`{"resourceType":"Patient","name":[]}`,
	`{"resourceType":"Patient","gender":null}`,
	`{"resourceType":"Patient","x":[null]}`,
	`{"resourceType":"Patient"} x`,
	`[1,2]`,
	``,
	`{"resourceType":"Patient","extension":[[[[[[[[]]]]]]]]}`,
	`{"resourceType":"Patient","birthDate":1e999999}`,
	"{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"\xff\"}]}",
	`{"resourceType":"Encounter","status":"finished","class":{},"period":{"start":"2024-02-01","end":"2024-01-01"}}`,
	`{"resourceType":"Patient","telecom":[{"system":"phone","value":7}],"generalPractitioner":[{"reference":5}]}`,
	`{"resourceType":"Patient","deceasedBoolean":"yes","address":"Lyon","name":{"family":["a"]}}`,
	`{"resourceType":"Observation","status":"final","code":{},"effectiveInstant":"2024-01-01T00:00:00Z","issued":"2024"}`,
}

// addExampleSeeds adds the official examples the api tests use.
func addExampleSeeds(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "api", "testdata", "r4-examples", "*-*.json"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
}

// FuzzParse: Parse, Validate and Extract never panic; errors are 4xx; a
// valid resource survives Marshal and Parse unchanged and indexes alike.
func FuzzParse(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add([]byte(s))
	}
	addExampleSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err != nil {
			clientError(t, "Parse", err)
			return
		}
		if r == nil {
			t.Fatal("Parse returned nil without an error")
		}
		// Marshal (a hand-written encoder) writes exactly what encoding/json
		// writes without HTML escaping.
		var std bytes.Buffer
		je := json.NewEncoder(&std)
		je.SetEscapeHTML(false)
		stdErr := je.Encode(r)
		mine, err := Marshal(r)
		if (err == nil) != (stdErr == nil) {
			t.Fatalf("Marshal error %v, encoding/json error %v", err, stdErr)
		}
		if err == nil && !bytes.Equal(mine, bytes.TrimSuffix(std.Bytes(), []byte("\n"))) {
			t.Fatalf("Marshal differs from encoding/json:\n%s\n%s", mine, std.Bytes())
		}
		// Extract and friends must cope with anything Parse accepts.
		entries := Extract(r)
		_ = PatientOf(r)
		_ = LocalReferences(r)
		for _, want := range []string{"", "Patient", Type(r)} {
			if err := Validate(r, want); err != nil {
				clientError(t, "Validate", err)
			}
		}
		if Validate(r, "") != nil {
			return
		}
		enc, err := Marshal(r)
		if err != nil {
			t.Fatalf("Marshal of a valid resource: %v", err)
		}
		r2, err := Parse(enc)
		if err != nil {
			t.Fatalf("re-Parse of Marshal output failed: %v\n%s", err, enc)
		}
		if err := Validate(r2, Type(r)); err != nil {
			t.Fatalf("re-parsed resource no longer valid: %v", err)
		}
		enc2, err := Marshal(r2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("Marshal is not stable:\n%s\n%s", enc, enc2)
		}
		if e2 := Extract(r2); !reflect.DeepEqual(entries, e2) {
			t.Fatalf("index entries changed across a round trip:\n%+v\n%+v", entries, e2)
		}
		for _, e := range entries {
			if e.Type == Date && e.Lo > e.Hi {
				t.Fatalf("date entry with Lo > Hi: %+v", e)
			}
			if e.Type == Reference {
				if typ, id, ok := SplitReference(e.S); !ok || typ+"/"+id != e.S {
					t.Fatalf("reference entry %q is not Type/id", e.S)
				}
			}
		}
		for _, ref := range LocalReferences(r) {
			if typ, id, ok := SplitReference(ref); !ok || typ+"/"+id != ref {
				t.Fatalf("local reference %q is not Type/id", ref)
			}
		}
	})
}

var querySeeds = []string{
	"", "family=a", "family=a,b&given=c", `family=a\,b\\`, "name:contains=x", "family:exact=X",
	"birthdate=ge1980&birthdate=lt1990-06-01T10:00:00Z", "birthdate=xx1", "birthdate=ge", "date=sa2024-01-01T10:00",
	"_id=a,b", "_lastUpdated=gt2020", "identifier=s|c", "identifier=s|", "identifier=|", "phone=%2B33612345678",
	"organization=Organization/o", "organization:Organization=o", "general-practitioner=x", "subject=Patient/p",
	"subject:Patient=p", "patient=p", "subject.name=x", "participant=Practitioner/x",
	"_count=5", "_count=-1", "_count=99999999999999999999", "_offset=10", "_summary=count", "_summary=text",
	"_sort=-birthdate,family,_id", "_sort=", "_sort=-", "_include=Patient:organization", "_include=Encounter:patient:Patient",
	"_revinclude=Encounter:patient", "_revinclude=Observation:subject", "_include=a:b:c:d", "_include:iterate=x",
	"_format=json", "_format=xml", "_total=none", "_elements=id", "gender:missing=true", "_id:missing=true",
	"foo=bar", "family=" + strings.Repeat("a,", 120), strings.Repeat("family=a&", 45), "a=%zz", "a;b=c",
}

// FuzzParseQuery: any query string parses to a query or to a 4xx *Error,
// for several types and both handling modes; a parsed query's canonical
// encoding (what paging cursors carry) parses again to the same query.
func FuzzParseQuery(f *testing.F) {
	for _, s := range querySeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		vals, _ := url.ParseQuery(raw) // keep what parsed, like a lenient client
		for _, typ := range []string{"Patient", "Encounter", "Observation"} {
			for _, strict := range []bool{false, true} {
				q, err := ParseQuery(typ, vals, strict)
				if err != nil {
					clientError(t, "ParseQuery", err)
					continue
				}
				if q.Type != typ || q.Count < 0 || q.Count > MaxCount || q.Offset < 0 || len(q.Filters) > maxFilters {
					t.Fatalf("query out of bounds: %+v", q)
				}
				if strict && len(q.Ignored) > 0 {
					t.Fatalf("strict query ignored %v", q.Ignored)
				}
				for _, fl := range q.Filters {
					if fl.Param == nil && fl.Name != "_id" && fl.Name != "_lastUpdated" {
						t.Fatalf("filter %q without a parameter", fl.Name)
					}
					if len(fl.Values) == 0 {
						t.Fatalf("filter %q without values", fl.Name)
					}
				}
				for _, s := range q.Sort {
					if s.Param == nil && s.Name != "_id" && s.Name != "_lastUpdated" {
						t.Fatalf("sort key %q without a parameter", s.Name)
					}
				}
				for _, inc := range append(append([]Include{}, q.Include...), q.RevInclude...) {
					if inc.Param == nil || inc.Param.Type != Reference {
						t.Fatalf("include without a reference parameter: %+v", inc)
					}
				}
				// The canonical form round-trips (cursors depend on it).
				enc := q.Encode(vals)
				back, err := url.ParseQuery(enc)
				if err != nil {
					t.Fatalf("Encode produced an unparsable query %q: %v", enc, err)
				}
				q2, err := ParseQuery(typ, back, strict)
				if err != nil {
					t.Fatalf("canonical query %q no longer parses: %v", enc, err)
				}
				q.Offset, q2.Offset = 0, 0
				if !reflect.DeepEqual(q.Filters, q2.Filters) || !reflect.DeepEqual(q.Sort, q2.Sort) || q.Count != q2.Count ||
					!reflect.DeepEqual(q.Include, q2.Include) || !reflect.DeepEqual(q.RevInclude, q2.RevInclude) || q.SummaryCount != q2.SummaryCount {
					t.Fatalf("canonical query %q parses differently", enc)
				}
			}
		}
	})
}

// FuzzDateRange: DateRange never panics, ranges are ordered, and the
// validity predicates agree with it.
func FuzzDateRange(f *testing.F) {
	for _, s := range []string{"2023", "2023-02", "2023-02-28", "2023-02-29", "2024-02-29", "1980-13-45", "yesterday", "0000", "9999-12-31",
		"2023-01-01T10:00", "2023-01-01T10:00Z", "2023-01-01T10:00:00", "2023-01-01T10:00:00Z", "2023-01-01T10:00:00.123+02:00",
		"2023-01-01T10:00:00-14:00", "2023-01-01T10:00:00+15:00", "2023-01-01T23:59:60Z", "2023-01-01T24:00:00Z", "2023-06-30T23:59:60+14:59", ""} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, allowTime bool) {
		lo, hi, ok := DateRange(s, allowTime)
		if !ok {
			if lo != 0 || hi != 0 {
				t.Fatalf("invalid %q with a range [%d, %d]", s, lo, hi)
			}
		} else if lo > hi {
			t.Fatalf("DateRange(%q) = [%d, %d]: Lo > Hi", s, lo, hi)
		}
		if ok {
			// Every range is a second, a minute, a day, a month or a year.
			switch n := hi - lo + 1; n {
			case 1, 60, 86400, 28 * 86400, 29 * 86400, 30 * 86400, 31 * 86400, 365 * 86400, 366 * 86400:
			default:
				t.Fatalf("DateRange(%q) spans %d seconds", s, n)
			}
		}
		dlo, dhi, dok := DateRange(s, false)
		tlo, thi, tok := DateRange(s, true)
		if dok && (!tok || dlo != tlo || dhi != thi) {
			t.Fatalf("%q: a valid date means the same with times allowed", s)
		}
		if ValidDate(s) != dok {
			t.Fatalf("ValidDate(%q) disagrees with DateRange", s)
		}
		if ValidDateTime(s) && !tok {
			t.Fatalf("ValidDateTime(%q) but DateRange fails", s)
		}
		if ValidInstant(s) && (!ValidDateTime(s) || dok || thi != tlo) {
			t.Fatalf("ValidInstant(%q) is not a one-second dateTime", s)
		}
	})
}
