package fhir

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestNormString(t *testing.T) {
	for in, want := range map[string]string{
		"  Hélène  LEFÈVRE ":          "helene lefevre",
		"Hélène":                      "helene",
		"He\u0301le\u0300ne":          "helene", // already decomposed
		"ÉLODIE":                      "elodie",
		"Ñúñez":                       "nunez",
		"Çelik":                       "celik",
		"İstanbul":                    "istanbul", // I + combining dot above
		"Zoë Brontë":                  "zoe bronte",
		"Saint-Étienne":               "saint-etienne",
		"O'Brien":                     "o'brien",
		"Straße":                      "strasse",
		"STRASSE":                     "strasse",
		"Lætitia":                     "laetitia",
		"LÆTITIA":                     "laetitia",
		"Æsa":                         "aesa",
		"Œuvre":                       "oeuvre",
		"cœur":                        "coeur",
		"CŒUR":                        "coeur",
		"\tJean\u00a0\n  Pierre\r\n ": "jean pierre", // tabs, NBSP, newlines collapse
		"a\u2003\u2003b":              "a b",         // em spaces
		"":                            "",
		"   \t\n":                     "",
		"ABC123":                      "abc123",
		"Ελένη":                       "ελενη",   // Greek: lower case, tonos removed
		"Дмитрий":                     "дмитрии", // й loses its breve like any mark (same on index and query side)
		"李小龙":                         "李小龙",
	} {
		if got := NormString(in); got != want {
			t.Errorf("NormString(%q) = %q, want %q", in, got, want)
		}
	}
	// Composed and decomposed spellings normalise alike; so do cases.
	for _, pair := range [][2]string{{"é", "e\u0301"}, {"Å", "A\u030a"}, {"Lefèvre", "LEFÈVRE"}, {"Ÿ", "ÿ"}} {
		if NormString(pair[0]) != NormString(pair[1]) {
			t.Errorf("NormString(%q)=%q != NormString(%q)=%q", pair[0], NormString(pair[0]), pair[1], NormString(pair[1]))
		}
	}
	// Idempotent on what it produces for ordinary names.
	for _, s := range []string{"Hélène Lefèvre", "Straße", "Œuvre", "  x  y  "} {
		if n := NormString(s); NormString(n) != n {
			t.Errorf("NormString not idempotent on %q: %q then %q", s, n, NormString(n))
		}
	}
}

func TestNormToken(t *testing.T) {
	for _, c := range []struct{ kind, in, want string }{
		{"phone", "+33 6 12 34 56 78", "0612345678"},
		{"phone", "+33612345678", "0612345678"},
		{"phone", "0033 6 12 34 56 78", "0612345678"},
		{"phone", "06.12.34.56.78", "0612345678"},
		{"phone", "06-12-34-56-78", "0612345678"},
		{"phone", "06 12 34 56 78", "0612345678"},
		{"phone", "+44 20 7946 0958", "442079460958"}, // foreign numbers keep their country code
		{"phone", "tel:+33-6-12-34-56-78", "33612345678"},
		{"phone", "+3", "3"},
		{"phone", "", ""},
		{"phone", "n/a", ""},
		{"email", " Anne.Marie@Example.FR ", "anne.marie@example.fr"},
		{"email", "ANNE@EXAMPLE.FR", "anne@example.fr"},
		{"email", "", ""},
		{"", "  MiXeD  ", "  MiXeD  "}, // no normalisation: codes are exact
		{"", "http://loinc.org", "http://loinc.org"},
	} {
		if got := NormToken(c.kind, c.in); got != c.want {
			t.Errorf("NormToken(%q, %q) = %q, want %q", c.kind, c.in, got, c.want)
		}
	}
}

func utc(s string) int64 {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.Unix()
		}
	}
	panic("bad time " + s)
}

func TestDateRange(t *testing.T) {
	type rng struct{ lo, hi string }
	for _, c := range []struct {
		in        string
		allowTime bool
		want      *rng // nil: invalid
	}{
		{"2023", false, &rng{"2023-01-01T00:00:00Z", "2023-12-31T23:59:59Z"}},
		{"2024", true, &rng{"2024-01-01T00:00:00Z", "2024-12-31T23:59:59Z"}},
		{"2023-02", false, &rng{"2023-02-01T00:00:00Z", "2023-02-28T23:59:59Z"}},
		{"2024-02", false, &rng{"2024-02-01T00:00:00Z", "2024-02-29T23:59:59Z"}},
		{"2023-12", false, &rng{"2023-12-01T00:00:00Z", "2023-12-31T23:59:59Z"}},
		{"2023-02-28", false, &rng{"2023-02-28T00:00:00Z", "2023-02-28T23:59:59Z"}},
		{"2024-02-29", false, &rng{"2024-02-29T00:00:00Z", "2024-02-29T23:59:59Z"}},
		{"2000-02-29", false, &rng{"2000-02-29T00:00:00Z", "2000-02-29T23:59:59Z"}},
		{"0001", false, &rng{"0001-01-01T00:00:00Z", "0001-12-31T23:59:59Z"}},
		{"9999-12-31", false, &rng{"9999-12-31T00:00:00Z", "9999-12-31T23:59:59Z"}},
		{"2023-01-01T10:00", true, &rng{"2023-01-01T10:00:00Z", "2023-01-01T10:00:59Z"}},       // minute precision, UTC
		{"2023-01-01T10:00Z", true, &rng{"2023-01-01T10:00:00Z", "2023-01-01T10:00:59Z"}},      // minute with zone
		{"2023-01-01T10:00+01:00", true, &rng{"2023-01-01T09:00:00Z", "2023-01-01T09:00:59Z"}}, // minute with offset
		{"2023-01-01T10:00:30Z", true, &rng{"2023-01-01T10:00:30Z", "2023-01-01T10:00:30Z"}},
		{"2023-01-01T10:00:30+02:00", true, &rng{"2023-01-01T08:00:30Z", "2023-01-01T08:00:30Z"}},
		{"2023-01-01T10:00:30-05:30", true, &rng{"2023-01-01T15:30:30Z", "2023-01-01T15:30:30Z"}},
		{"2023-01-01T00:30:00+14:00", true, &rng{"2022-12-31T10:30:00Z", "2022-12-31T10:30:00Z"}},
		{"2023-12-31T23:30:00-12:00", true, &rng{"2024-01-01T11:30:00Z", "2024-01-01T11:30:00Z"}},
		{"2023-01-01T10:00:30.123Z", true, &rng{"2023-01-01T10:00:30Z", "2023-01-01T10:00:30Z"}},
		{"2023-01-01T10:00:30.123456789Z", true, &rng{"2023-01-01T10:00:30Z", "2023-01-01T10:00:30Z"}},
		{"2023-01-01T10:00:30", true, &rng{"2023-01-01T10:00:30Z", "2023-01-01T10:00:30Z"}}, // no zone: UTC
		{"2023-01-01T00:00:00Z", false, nil},                                                // dates only
		{"2023-02-29", true, nil},
		{"2023-04-31", true, nil},
		{"2023-02-30", true, nil},
		{"2023-00", true, nil},
		{"2023-13", true, nil},
		{"2023-01-00", true, nil},
		{"2023-01-32", true, nil},
		{"1980-13-45", true, nil},
		{"0000", true, nil},
		{"0000-01-01", true, nil},
		{"yesterday", true, nil},
		{"", true, nil},
		{"2023-1-1", true, nil},
		{"20230101", true, nil},
		{"023", true, nil},
		{"20234", true, nil},
		{" 2023", true, nil},
		{"2023 ", true, nil},
		{"2023-01-01Z", true, nil},
		{"2023-01-01T", true, nil},
		{"2023-01-01T10", true, nil},
		{"2023-01-01T24:00:00Z", true, nil},
		{"2023-01-01T10:60:00Z", true, nil},
		{"2023-01-01T10:00:61Z", true, nil},
		{"2023-01-01T10:00:00ZZ", true, nil},
		{"2023-01-01T10:00:00+15:00", true, nil},
		{"2023-01-01T10:00:00+0100", true, nil},
		{"2023-01-01T10:00:00+01", true, nil},
		{"2023-01-01T10:00:00.Z", true, nil},
		{"2023-01-01T10:00:00.1234567890Z", true, nil},
		{"2023-01-01 10:00:00Z", true, nil},
		{"2023-02-29T10:00:00Z", true, nil},
		{"２０２３", true, nil}, // full-width digits are not \d in Go regexp, nor FHIR
		{"2023-01-01T10:00:00z", true, nil},
	} {
		lo, hi, ok := DateRange(c.in, c.allowTime)
		if c.want == nil {
			if ok {
				t.Errorf("DateRange(%q, %v) = [%d, %d], want invalid", c.in, c.allowTime, lo, hi)
			}
			continue
		}
		wlo, whi := utc(c.want.lo), utc(c.want.hi)
		if !ok || lo != wlo || hi != whi {
			t.Errorf("DateRange(%q, %v) = [%s, %s] %v, want [%s, %s]", c.in, c.allowTime,
				time.Unix(lo, 0).UTC().Format(time.RFC3339), time.Unix(hi, 0).UTC().Format(time.RFC3339), ok, c.want.lo, c.want.hi)
		}
	}
}

func TestValidDateTimeAndInstant(t *testing.T) {
	for _, c := range []struct {
		in                  string
		date, dtime, instnt bool
	}{
		{"2023", true, true, false},
		{"2023-05", true, true, false},
		{"2023-05-06", true, true, false},
		{"2023-05-06T10:00:00Z", false, true, true},
		{"2023-05-06T10:00:00.5+02:00", false, true, true},
		{"2023-05-06T10:00:00", false, false, false}, // a dateTime with a time needs a zone
		{"2023-05-06T10:00Z", false, false, false},   // and seconds
		{"2023-05-06T10:00", false, false, false},
		{"2023-02-29", false, false, false},
		{"2023-02-29T10:00:00Z", false, false, false},
		{"yesterday", false, false, false},
	} {
		if got := ValidDate(c.in); got != c.date {
			t.Errorf("ValidDate(%q) = %v", c.in, got)
		}
		if got := ValidDateTime(c.in); got != c.dtime {
			t.Errorf("ValidDateTime(%q) = %v", c.in, got)
		}
		if got := ValidInstant(c.in); got != c.instnt {
			t.Errorf("ValidInstant(%q) = %v", c.in, got)
		}
	}
}

func TestSplitReference(t *testing.T) {
	for _, c := range []struct {
		in      string
		typ, id string
		ok      bool
	}{
		{"Patient/123", "Patient", "123", true},
		{"Patient/a-b.c", "Patient", "a-b.c", true},
		{"Patient/123/_history/4", "Patient", "123", true},
		// absolute URLs may name another server: never taken for a local resource
		{"http://example.org/fhir/Patient/123", "", "", false},
		{"https://example.org/fhir/Observation/o1/_history/2", "", "", false},
		{"Questionnaire/q1", "Questionnaire", "q1", true}, // any R4 type, stored or not
		{"Patient/", "", "", false},
		{"Patient", "", "", false},
		{"/123", "", "", false},
		{"Patient/123/", "", "", false},
		{"Foo/123", "", "", false},
		{"patient/123", "", "", false},
		{"Patient/a b", "", "", false},
		{"Patient/" + string(make([]byte, 65)), "", "", false},
		{"not a ref", "", "", false},
		{"#contained", "", "", false},
		{"urn:uuid:6f1e2b8a-0c1d-4a5e-9f00-000000000001", "", "", false},
		{"urn:oid:1.2.3", "", "", false},
		{"", "", "", false},
		{"Patient/123/_history", "", "", false},
	} {
		typ, id, ok := SplitReference(c.in)
		if typ != c.typ || id != c.id || ok != c.ok {
			t.Errorf("SplitReference(%q) = %q, %q, %v; want %q, %q, %v", c.in, typ, id, ok, c.typ, c.id, c.ok)
		}
	}
}

func mustParse(t *testing.T, s string) Resource {
	t.Helper()
	r, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return r
}

func TestExtractPatient(t *testing.T) {
	r := mustParse(t, `{"resourceType":"Patient","id":"x",
		"identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":"280037512345678"},{"value":"456"}],
		"name":[{"family":"Lefèvre","given":["Hélène","Marie"]},{"family":"LEFEVRE","given":["  marie "]}],
		"birthDate":"1980-03-01","gender":"female",
		"generalPractitioner":[{"reference":"Practitioner/doc"},{"reference":"#c1"},{"display":"no reference"}],
		"address":[{"line":["1 rue X"],"city":"Saint-Étienne","postalCode":"42000"}],
		"telecom":[{"system":"phone","value":"+33 6 12 34 56 78"},{"system":"email","value":"Helene@Example.FR"},{"system":"fax","value":"0102030405"}],
		"managingOrganization":{"reference":"Organization/o1"},
		"deceasedDateTime":"2020-01-01T10:00:00+01:00","active":true}`)
	d := func(s string) (int64, int64) { lo, hi, _ := DateRange(s, true); return lo, hi }
	blo, bhi := d("1980-03-01")
	dlo, dhi := d("2020-01-01T10:00:00+01:00")
	want := []IndexEntry{
		{Param: 1, Type: Token, S: "280037512345678", Sys: "urn:oid:1.2.250.1.213.1.4.8"},
		{Param: 1, Type: Token, S: "456"},
		{Param: 3, Type: String, S: "lefevre"}, // both spellings: one row
		{Param: 4, Type: String, S: "helene"},
		{Param: 4, Type: String, S: "marie"},
		{Param: 5, Type: Date, Lo: blo, Hi: bhi},
		{Param: 6, Type: Token, S: "female"},
		{Param: 7, Type: Reference, S: "Practitioner/doc"},
		{Param: 8, Type: String, S: "42000"},
		{Param: 9, Type: String, S: "saint-etienne"},
		{Param: 11, Type: Token, S: "0612345678", Sys: "phone"},
		{Param: 12, Type: Token, S: "helene@example.fr", Sys: "email"},
		{Param: 14, Type: Reference, S: "Organization/o1"},
		{Param: 15, Type: Date, Lo: dlo, Hi: dhi},
		{Param: 16, Type: Token, S: "true"},
		{Param: 17, Type: Token, S: "true"},
	}
	got := Extract(r)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Extract:\n got  %+v\n want %+v", got, want)
	}
	if dlo != utc("2020-01-01T09:00:00Z") || dhi != dlo {
		t.Errorf("death date range [%d, %d]", dlo, dhi)
	}
	if PatientOf(r) != "x" {
		t.Errorf("PatientOf(Patient x) = %q", PatientOf(r))
	}
	if refs := LocalReferences(r); !slices.Equal(refs, []string{"Organization/o1", "Practitioner/doc"}) {
		t.Errorf("LocalReferences = %v", refs)
	}
	// Every entry belongs to a Patient parameter that stores rows.
	for _, e := range got {
		var p *Param
		for _, q := range AllParams() {
			if q.ID == e.Param {
				p = q
			}
		}
		if p == nil || p.Resource != "Patient" || len(p.Union) > 0 || p.Type != e.Type {
			t.Errorf("entry %+v does not match a stored Patient parameter", e)
		}
	}
}

func TestExtractDeceasedAndPeriods(t *testing.T) {
	alive := Extract(mustParse(t, `{"resourceType":"Patient","deceasedBoolean":false}`))
	if !slices.Contains(alive, IndexEntry{Param: 17, Type: Token, S: "false"}) {
		t.Errorf("deceasedBoolean false: %+v", alive)
	}
	none := Extract(mustParse(t, `{"resourceType":"Patient"}`))
	if !reflect.DeepEqual(none, []IndexEntry{{Param: 17, Type: Token, S: "false"}}) {
		t.Errorf("empty Patient: %+v", none)
	}
	enc := Extract(mustParse(t, `{"resourceType":"Encounter","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},
		"subject":{"reference":"Patient/p"},"period":{"start":"2024-01-01T08:00:00Z"},
		"participant":[{"individual":{"reference":"Practitioner/d"}}],"type":[{"coding":[{"system":"s","code":"a"},{"system":"s","code":"b"}]}]}`))
	lo, _, _ := DateRange("2024-01-01T08:00:00Z", true)
	for _, e := range []IndexEntry{
		{Param: 40, Type: Reference, S: "Patient/p"},
		{Param: 43, Type: Token, S: "finished"},
		{Param: 44, Type: Token, S: "AMB", Sys: "http://terminology.hl7.org/CodeSystem/v3-ActCode"},
		{Param: 46, Type: Reference, S: "Practitioner/d"},
		{Param: 49, Type: Token, S: "a", Sys: "s"},
		{Param: 49, Type: Token, S: "b", Sys: "s"},
	} {
		if !slices.Contains(enc, e) {
			t.Errorf("Encounter entries lack %+v: %+v", e, enc)
		}
	}
	// An open-ended period is indexed with an open end.
	var date *IndexEntry
	for i := range enc {
		if enc[i].Param == 42 {
			date = &enc[i]
		}
	}
	if date == nil || date.Lo != lo || date.Hi <= utc("9999-12-31T23:59:59Z") {
		t.Errorf("open period indexed as %+v", date)
	}
	if PatientOf(mustParse(t, `{"resourceType":"Encounter","subject":{"reference":"Patient/p"}}`)) != "p" {
		t.Errorf("PatientOf(Encounter)")
	}
	if PatientOf(mustParse(t, `{"resourceType":"Encounter","subject":{"reference":"Group/g"}}`)) != "" {
		t.Errorf("PatientOf(Encounter about a Group)")
	}
	if PatientOf(mustParse(t, `{"resourceType":"Organization","id":"o"}`)) != "" {
		t.Errorf("PatientOf(Organization)")
	}
	// Invalid dates are not indexed.
	bad := Extract(mustParse(t, `{"resourceType":"Observation","effectiveDateTime":"not a date","effectivePeriod":{"start":"2024-13-01"}}`))
	for _, e := range bad {
		if e.Type == Date {
			t.Errorf("an invalid date was indexed: %+v", e)
		}
	}
}

// A resource referencing another server's Patient is not put in a local
// patient's compartment, nor indexed as a local reference.
func TestForeignReferenceNotLocal(t *testing.T) {
	r := Resource{"resourceType": "Observation", "status": "final", "code": map[string]any{"text": "x"},
		"subject": map[string]any{"reference": "http://other.example/fhir/Patient/p1"}}
	if got := PatientOf(r); got != "" {
		t.Fatalf("PatientOf = %q, want none", got)
	}
	for _, e := range Extract(r) {
		if e.Type == Reference {
			t.Fatalf("foreign reference indexed: %+v", e)
		}
	}
	if refs := LocalReferences(r); len(refs) != 0 {
		t.Fatalf("LocalReferences = %v", refs)
	}
}

func TestNormalisationExtras(t *testing.T) {
	for in, want := range map[string]string{"STRAẞE": "strasse", "Straße": "strasse", "ﬁne": "fine", "Øre Łódź Đak": "ore lodz dak"} {
		if got := NormString(in); got != want {
			t.Errorf("NormString(%q) = %q, want %q", in, got, want)
		}
	}
	if got := NormToken("phone", "+33 (0)6 12 34 56 78"); got != "0612345678" {
		t.Errorf("phone = %q", got)
	}
}
