package fhir

import (
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func parseQ(t *testing.T, typ, raw string, strict bool) (*Query, error) {
	t.Helper()
	vals, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatalf("url.ParseQuery(%q): %v", raw, err)
	}
	return ParseQuery(typ, vals, strict)
}

func mustQ(t *testing.T, typ, raw string) *Query {
	t.Helper()
	q, err := parseQ(t, typ, raw, true)
	if err != nil {
		t.Fatalf("ParseQuery(%s, %q): %v", typ, raw, err)
	}
	return q
}

func TestParseQueryFull(t *testing.T) {
	q := mustQ(t, "Patient", "family=L%C3%A9f%C3%A8vre,DUPONT&gender=http://hl7.org/fhir/administrative-gender|female"+
		"&birthdate=ge1980&birthdate=lt1990-06&_count=10&_sort=-birthdate,family,_id&_include=Patient:organization"+
		"&_revinclude=Encounter:patient&_revinclude=Observation:subject&_total=accurate&_format=json&_pretty=true")
	if q.Type != "Patient" || q.Count != 10 || q.Offset != 0 || q.SummaryCount || len(q.Ignored) != 0 {
		t.Errorf("query %+v", q)
	}
	// Filters come in parameter-name order, one per occurrence.
	var names []string
	for _, f := range q.Filters {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, []string{"birthdate", "birthdate", "family", "gender"}) {
		t.Fatalf("filters %v", names)
	}
	lo80, _, _ := DateRange("1980", true)
	lo90, _, _ := DateRange("1990-06", true)
	_, hi80, _ := DateRange("1980", true)
	_, hi90, _ := DateRange("1990-06", true)
	if v := q.Filters[0].Values; len(v) != 1 || v[0].Prefix != "ge" || v[0].Lo != lo80 || v[0].Hi != hi80 {
		t.Errorf("birthdate ge1980: %+v", v)
	}
	if v := q.Filters[1].Values; len(v) != 1 || v[0].Prefix != "lt" || v[0].Lo != lo90 || v[0].Hi != hi90 {
		t.Errorf("birthdate lt1990-06: %+v", v)
	}
	fam := q.Filters[2]
	if fam.Param != LookupParam("Patient", "family") || fam.Type != String || len(fam.Values) != 2 || fam.Values[0].S != "lefevre" || fam.Values[1].S != "dupont" {
		t.Errorf("family: %+v", fam)
	}
	g := q.Filters[3].Values
	if len(g) != 1 || !g[0].HasSys || g[0].Sys != "http://hl7.org/fhir/administrative-gender" || g[0].S != "female" || g[0].NoCode {
		t.Errorf("gender: %+v", g)
	}
	wantSort := []SortKey{{Name: "birthdate", Param: LookupParam("Patient", "birthdate"), Desc: true}, {Name: "family", Param: LookupParam("Patient", "family")}, {Name: "_id"}}
	if !reflect.DeepEqual(q.Sort, wantSort) {
		t.Errorf("sort %+v", q.Sort)
	}
	if len(q.Include) != 1 || q.Include[0].Source != "Patient" || q.Include[0].Param != LookupParam("Patient", "organization") {
		t.Errorf("include %+v", q.Include)
	}
	if len(q.RevInclude) != 2 || q.RevInclude[0].Param != LookupParam("Encounter", "patient") || q.RevInclude[1].Param != LookupParam("Observation", "subject") {
		t.Errorf("revinclude %+v", q.RevInclude)
	}
}

func TestParseQueryValues(t *testing.T) {
	one := func(typ, raw string) Filter {
		t.Helper()
		q := mustQ(t, typ, raw)
		if len(q.Filters) != 1 {
			t.Fatalf("%s?%s: %d filters", typ, raw, len(q.Filters))
		}
		return q.Filters[0]
	}
	// Escaped commas and backslashes.
	if f := one("Patient", `family=a\,b,c\\d`); len(f.Values) != 2 || f.Values[0].S != "a,b" || f.Values[1].S != `c\d` {
		t.Errorf("escapes: %+v", f.Values)
	}
	// Token forms.
	for raw, want := range map[string]Value{
		"identifier=sys|code":  {S: "code", Sys: "sys", HasSys: true},
		"identifier=|code":     {S: "code", Sys: "", HasSys: true},
		"identifier=sys|":      {S: "", Sys: "sys", HasSys: true, NoCode: true},
		"identifier=code":      {S: "code"},
		"identifier=a|b|c":     {S: "b|c", Sys: "a", HasSys: true},
		"phone=%2B33612345678": {S: "0612345678"},
		"email=A%40B.FR":       {S: "a@b.fr"},
		"_id=abc-1.2":          {S: "abc-1.2"},
	} {
		if f := one("Patient", raw); len(f.Values) != 1 || f.Values[0] != want {
			t.Errorf("%s: %+v, want %+v", raw, f.Values, want)
		}
	}
	// Reference forms.
	for _, c := range []struct {
		typ, raw string
		want     []string
		mod      string
	}{
		{"Encounter", "patient=p1", []string{"Patient/p1"}, ""},
		{"Encounter", "patient=Patient/p1", []string{"Patient/p1"}, ""},
		{"Encounter", "subject=Patient/p1", []string{"Patient/p1"}, ""},
		{"Encounter", "subject=Group/g1", []string{"Group/g1"}, ""},
		{"Encounter", "subject=http://x.org/fhir/Patient/p1", []string{"Patient/p1"}, ""},
		{"Encounter", "subject:Patient=p1", []string{"Patient/p1"}, "type:Patient"},
		{"Encounter", "subject:Patient=Patient/p1", []string{"Patient/p1"}, "type:Patient"},
		{"Patient", "general-practitioner=d1", []string{"Practitioner/d1", "Organization/d1", "PractitionerRole/d1"}, ""},
		{"Patient", "organization=o1,o2", []string{"Organization/o1", "Organization/o2"}, ""},
	} {
		f := one(c.typ, c.raw)
		var got []string
		for _, v := range f.Values {
			got = append(got, v.S)
		}
		if !slices.Equal(got, c.want) || f.Modifier != c.mod || f.Type != Reference {
			t.Errorf("%s?%s: %v modifier %q, want %v %q", c.typ, c.raw, got, f.Modifier, c.want, c.mod)
		}
	}
	// Modifiers.
	if f := one("Patient", "family:exact=Dupont"); f.Modifier != "exact" || f.Values[0].S != "dupont" {
		t.Errorf(":exact %+v", f)
	}
	if f := one("Patient", "name:contains=upo"); f.Modifier != "contains" || f.Param != LookupParam("Patient", "name") {
		t.Errorf(":contains %+v", f)
	}
	if f := one("Patient", "birthdate:missing=true"); f.Modifier != "missing" || f.Values[0].S != "true" {
		t.Errorf(":missing %+v", f)
	}
	// Every date prefix.
	for _, p := range []string{"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"} {
		if f := one("Observation", "date="+p+"2024-01-01T10:00"); f.Values[0].Prefix != p {
			t.Errorf("prefix %s: %+v", p, f.Values[0])
		}
	}
	if f := one("Observation", "date=2024"); f.Values[0].Prefix != "eq" {
		t.Errorf("default prefix %+v", f.Values[0])
	}
	// _lastUpdated and _id have no Param.
	if f := one("Encounter", "_lastUpdated=gt2024-01-01T00:00:00Z"); f.Param != nil || f.Type != Date || f.Values[0].Prefix != "gt" {
		t.Errorf("_lastUpdated %+v", f)
	}
}

func TestParseQueryControl(t *testing.T) {
	for raw, want := range map[string]int{"_count=0": 0, "_count=1": 1, "_count=500": 500, "_count=501": MaxCount, "_count=99999": MaxCount, "": DefaultCount} {
		if q := mustQ(t, "Patient", raw); q.Count != want {
			t.Errorf("%q: Count %d, want %d", raw, q.Count, want)
		}
	}
	if q := mustQ(t, "Patient", "_offset=40"); q.Offset != 40 {
		t.Errorf("_offset %d", q.Offset)
	}
	if q := mustQ(t, "Patient", "_summary=count"); !q.SummaryCount {
		t.Errorf("_summary=count")
	}
	if q := mustQ(t, "Patient", "_summary=false"); q.SummaryCount {
		t.Errorf("_summary=false")
	}
	if q := mustQ(t, "Encounter", "_include=Encounter:participant:Practitioner"); q.Include[0].Target != "Practitioner" {
		t.Errorf("include target %+v", q.Include)
	}
	// Lenient: unknown, chained and unsupported controls are ignored and listed.
	q, err := parseQ(t, "Encounter", "shoe=1&subject.name=x&_elements=id&_summary=text&_include:iterate=Encounter:patient&status=finished", false)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(q.Ignored)
	if want := []string{"_elements", "_include:iterate", "_summary=text", "shoe", "subject.name"}; !slices.Equal(q.Ignored, want) {
		t.Errorf("Ignored %v, want %v", q.Ignored, want)
	}
	if len(q.Filters) != 1 || q.Filters[0].Name != "status" {
		t.Errorf("lenient filters %+v", q.Filters)
	}
	// Strict: each of them is a 400 not-supported naming the parameter.
	for _, raw := range []string{"shoe=1", "subject.name=x", "_elements=id", "_summary=text", "_include:iterate=Encounter:patient"} {
		_, err := parseQ(t, "Encounter", raw, true)
		var fe *Error
		if !errors.As(err, &fe) || fe.Status != http.StatusBadRequest || fe.Code != "not-supported" || !strings.Contains(fe.Msg, strings.Split(strings.Split(raw, "=")[0], ":")[0]) {
			t.Errorf("strict %q: %v", raw, err)
		}
	}
}

func TestParseQueryErrors(t *testing.T) {
	for _, c := range []struct {
		typ, raw string
		status   int
		code     string
	}{
		{"Patient", "birthdate=xx2020", 400, "invalid"},
		{"Patient", "birthdate=2023-02-29", 400, "invalid"},
		{"Patient", "birthdate=ge", 400, "invalid"},
		{"Patient", "family=", 400, "invalid"},
		{"Patient", "family=%20%20", 400, "invalid"},
		{"Patient", "family=a,,b", 400, "invalid"},
		{"Patient", "identifier=|", 400, "invalid"},
		{"Patient", "_id=a%20b", 400, "invalid"},
		{"Patient", "_count=x", 400, "invalid"},
		{"Patient", "_count=-1", 400, "invalid"},
		{"Patient", "_offset=x", 400, "invalid"},
		{"Patient", "_total=maybe", 400, "invalid"},
		{"Patient", "_format=xml", 406, "not-supported"},
		{"Patient", "_sort=nope", 400, "invalid"},
		{"Patient", "_sort=organization", 400, "invalid"},
		{"Patient", "_sort=-", 400, "invalid"},
		{"Patient", "_include=Patient", 400, "invalid"},
		{"Patient", "_include=a:b:c:d", 400, "invalid"},
		{"Patient", "_include=Encounter:patient", 400, "invalid"},
		{"Patient", "_include=Patient:gender", 400, "invalid"},
		{"Patient", "_include=Patient:organization:Foo", 400, "invalid"},
		{"Patient", "_revinclude=Foo:bar", 400, "invalid"},
		{"Patient", "_revinclude=Encounter:service-provider", 400, "invalid"},
		{"Patient", "family:foo=x", 400, "invalid"},
		{"Patient", "gender:contains=x", 400, "invalid"},
		{"Patient", "gender:missing=1", 400, "invalid"},
		{"Patient", "organization:Foo=x", 400, "invalid"},
		{"Patient", "organization:Patient=Organization/o", 400, "invalid"},
		{"Patient", "organization=Foo/x", 400, "invalid"},
		{"Patient", "organization=a%20b", 400, "invalid"},
		{"Observation", "performer=abc", 400, "invalid"},
		{"Patient", "family=" + strings.Repeat("a,", 100) + "a", 400, "too-costly"},
		{"Patient", strings.Repeat("family=a&", 41), 400, "too-costly"},
	} {
		_, err := parseQ(t, c.typ, c.raw, false)
		var fe *Error
		if !errors.As(err, &fe) {
			t.Errorf("%s?%.60s: error %v, want *Error", c.typ, c.raw, err)
			continue
		}
		if fe.Status != c.status || fe.Code != c.code || fe.Msg == "" {
			t.Errorf("%s?%.60s: %d %s %q, want %d %s", c.typ, c.raw, fe.Status, fe.Code, fe.Msg, c.status, c.code)
		}
	}
	// 100 values and 40 filters are still fine.
	if _, err := parseQ(t, "Patient", "family="+strings.Repeat("a,", 99)+"a", true); err != nil {
		t.Errorf("100 values: %v", err)
	}
	if _, err := parseQ(t, "Patient", strings.Repeat("family=a&", 40), true); err != nil {
		t.Errorf("40 filters: %v", err)
	}
}

func TestQueryEncode(t *testing.T) {
	vals, _ := url.ParseQuery("family=a&_offset=20&_cursor=xyz&_count=5&given=b&given=c")
	q, err := ParseQuery("Patient", vals, false)
	if err != nil {
		t.Fatal(err)
	}
	enc := q.Encode(vals)
	back, err := url.ParseQuery(enc)
	if err != nil {
		t.Fatal(err)
	}
	if back.Has("_offset") || back.Has("_cursor") {
		t.Errorf("Encode kept paging state: %q", enc)
	}
	if back.Get("family") != "a" || !slices.Equal(back["given"], []string{"b", "c"}) || back.Get("_count") != "5" {
		t.Errorf("Encode lost parameters: %q", enc)
	}
	// Canonical: the same parameters in another order encode alike.
	vals2, _ := url.ParseQuery("given=b&_count=5&given=c&family=a")
	if enc2 := q.Encode(vals2); enc2 != enc {
		t.Errorf("Encode not canonical: %q vs %q", enc, enc2)
	}
}

func TestRegistryConsistency(t *testing.T) {
	ids := map[int]bool{}
	for _, p := range AllParams() {
		if ids[p.ID] {
			t.Errorf("duplicate param id %d", p.ID)
		}
		ids[p.ID] = true
		if LookupType(p.Resource) == nil {
			t.Errorf("param %s.%s on a type Carnet does not store", p.Resource, p.Name)
		}
		if len(p.IndexIDs()) == 0 {
			t.Errorf("param %s.%s searches no index rows", p.Resource, p.Name)
		}
		for _, tg := range p.Targets {
			if !IsR4Type(tg) {
				t.Errorf("param %s.%s targets %q", p.Resource, p.Name, tg)
			}
		}
	}
	for _, ti := range StoredTypes() {
		if !IsR4Type(ti.Name) {
			t.Errorf("stored type %s is not an R4 type", ti.Name)
		}
		if ti.PatientRef != "" && LookupParam(ti.Name, "patient") == nil {
			t.Errorf("%s is in the patient compartment but has no patient parameter", ti.Name)
		}
	}
	if !slices.IsSorted(r4Types) {
		t.Errorf("r4Types must be sorted for binary search")
	}
}
