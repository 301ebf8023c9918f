package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// badCase is one malformed or hostile request and the 4xx it must earn.
type badCase struct {
	name   string
	method string
	path   string
	body   string
	raw    []byte   // body as bytes (overrides body): invalid UTF-8, huge bodies
	hdr    []string // extra headers, name/value pairs ("" value removes)
	// chunked hides the body's length from the client so it is sent with
	// chunked transfer encoding (no Content-Length for the server to check).
	chunked bool
	status  int
	code    string // issue[0].code
	diag    string // substring of issue[0].diagnostics (case-insensitive), optional
	// check runs after the request (e.g. that a failed transaction wrote
	// nothing).
	check func(t *testing.T, s *testServer)
}

func patientJSON(extra string) string {
	if extra == "" {
		return `{"resourceType":"Patient"}`
	}
	return `{"resourceType":"Patient",` + extra + `}`
}

// txJSON builds a transaction (or batch) Bundle from raw entry JSON.
func txJSON(typ string, entries ...string) string {
	return `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(entries, ",") + `]}`
}

// postEntry is a transaction entry creating a Patient tagged with marker.
func postEntry(marker, extra string) string {
	res := `{"resourceType":"Patient","identifier":[{"system":"urn:test:marker","value":"` + marker + `"}]`
	if extra != "" {
		res += "," + extra
	}
	res += "}"
	return `{"fullUrl":"urn:uuid:` + fmt.Sprintf("%08x", len(marker)+len(extra)) + `-0000-4000-8000-000000000000","resource":` + res + `,"request":{"method":"POST","url":"Patient"}}`
}

// nothingWritten checks that no Patient carries the marker identifier.
func nothingWritten(marker string) func(t *testing.T, s *testServer) {
	return func(t *testing.T, s *testServer) {
		t.Helper()
		r := s.get(t, "/fhir/Patient?identifier=urn:test:marker|"+marker+"&_summary=count")
		mustStatus(t, r, http.StatusOK, "search for the marker")
		if n := num(decode(t, r.Body)["total"]); n != 0 {
			t.Fatalf("a failed transaction wrote %d resource(s) tagged %s", n, marker)
		}
	}
}

// versionStill checks that typ/id still has version v (nothing was written).
func versionStill(path string, v string) func(t *testing.T, s *testServer) {
	return func(t *testing.T, s *testServer) {
		t.Helper()
		r := s.get(t, path)
		mustStatus(t, r, http.StatusOK, "read "+path)
		if et := r.Header.Get("ETag"); et != `W/"`+v+`"` {
			t.Fatalf("%s: ETag %s, want W/%q: a rejected write changed it", path, et, v)
		}
	}
}

func deepArray(depth int) string {
	return patientJSON(`"extension":` + strings.Repeat("[", depth) + strings.Repeat("]", depth))
}

func cursorOf(raw string) string { return base64.RawURLEncoding.EncodeToString([]byte(raw)) }

func manyValues(n int) string {
	vs := make([]string, n)
	for i := range vs {
		vs[i] = fmt.Sprintf("n%d", i)
	}
	return strings.Join(vs, ",")
}

func manyFilters(n int) string {
	vs := make([]string, n)
	for i := range vs {
		vs[i] = fmt.Sprintf("family=f%d", i)
	}
	return strings.Join(vs, "&")
}

// fixture ids of the malformed battery.
const (
	fxOrg     = "org-1"
	fxPatient = "p-1"
	fxGone    = "p-gone"
)

func malformedServer(t *testing.T) *testServer {
	s := newTestServer(t, Options{})
	s.put(t, "Organization", fxOrg, `{"resourceType":"Organization","id":"`+fxOrg+`","name":"Clinique"}`)
	s.put(t, "Patient", fxPatient, `{"resourceType":"Patient","id":"`+fxPatient+`","gender":"female","managingOrganization":{"reference":"Organization/`+fxOrg+`"}}`)
	s.put(t, "Patient", fxGone, `{"resourceType":"Patient","id":"`+fxGone+`"}`)
	mustStatus(t, s.do(t, http.MethodDelete, "/fhir/Patient/"+fxGone, nil), http.StatusNoContent, "delete fixture")
	return s
}

func malformedCases() []badCase {
	const (
		GET, POST, PUT, DELETE = http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete
		P                      = "/fhir/Patient"
		P1                     = "/fhir/Patient/" + fxPatient
	)
	strict := []string{"Prefer", "handling=strict"}
	huge := bytes.Repeat([]byte("x"), 8<<20)
	bigBody := append(append([]byte(`{"resourceType":"Patient","text":{"status":"generated","div":"`), huge...), `"}}`...)
	obs := func(extra string) string {
		return `{"resourceType":"Observation","status":"final","code":{"text":"x"}` + extra + `}`
	}
	goodPut := patientJSON(`"id":"` + fxPatient + `","gender":"male"`)
	return []badCase{
		// --- read
		{name: "read/invalid id", method: GET, path: "/fhir/Patient/a%20b", status: 400, code: "invalid", diag: "invalid resource id"},
		{name: "read/id too long", method: GET, path: "/fhir/Patient/" + strings.Repeat("a", 65), status: 400, code: "invalid"},
		{name: "read/id with underscore", method: GET, path: "/fhir/Patient/a_b", status: 400, code: "invalid"},
		{name: "read/nonexistent", method: GET, path: "/fhir/Patient/nobody", status: 404, code: "not-found", diag: "does not exist"},
		{name: "read/unknown type", method: GET, path: "/fhir/Foo/1", status: 404, code: "not-found", diag: "unknown resource type"},
		{name: "read/lowercase type", method: GET, path: "/fhir/patient/1", status: 404, code: "not-found", diag: "unknown resource type"},
		{name: "read/unsupported FHIR type", method: GET, path: "/fhir/Questionnaire/1", status: 404, code: "not-supported", diag: "not supported"},
		{name: "read/deleted", method: GET, path: "/fhir/Patient/" + fxGone, status: 410, code: "deleted", diag: "deleted"},
		{name: "read/too many segments", method: GET, path: P1 + "/_history/1/extra", status: 404, code: "not-found", diag: "no such endpoint"},
		{name: "read/system operation", method: GET, path: "/fhir/$everything", status: 404, code: "not-found"},
		{name: "read/system history", method: GET, path: "/fhir/_history", status: 404, code: "not-found"},

		// --- vread
		{name: "vread/vid abc", method: GET, path: P1 + "/_history/abc", status: 400, code: "invalid", diag: "positive whole number"},
		{name: "vread/vid 0", method: GET, path: P1 + "/_history/0", status: 400, code: "invalid"},
		{name: "vread/vid negative", method: GET, path: P1 + "/_history/-1", status: 400, code: "invalid"},
		{name: "vread/vid overflow", method: GET, path: P1 + "/_history/99999999999999999999999", status: 400, code: "invalid"},
		{name: "vread/vid 1.5", method: GET, path: P1 + "/_history/1.5", status: 400, code: "invalid"},
		{name: "vread/no such version", method: GET, path: P1 + "/_history/99", status: 404, code: "not-found", diag: "no version 99"},
		{name: "vread/deletion version", method: GET, path: "/fhir/Patient/" + fxGone + "/_history/2", status: 410, code: "deleted"},
		{name: "vread/invalid id", method: GET, path: "/fhir/Patient/a$b/_history/1", status: 400, code: "invalid"},

		// --- history
		{name: "history/nonexistent", method: GET, path: "/fhir/Patient/nobody/_history", status: 404, code: "not-found"},
		{name: "history/bad _count", method: GET, path: P1 + "/_history?_count=abc", status: 400, code: "invalid", diag: "whole number"},
		{name: "history/_count 0", method: GET, path: P1 + "/_history?_count=0", status: 400, code: "invalid"},
		{name: "history/unknown type", method: GET, path: "/fhir/Foo/x/_history", status: 404, code: "not-found"},

		// --- create: syntax
		{name: "create/empty body", method: POST, path: P, body: "", status: 400, code: "invalid", diag: "empty body"},
		{name: "create/whitespace body", method: POST, path: P, body: " \n\t ", status: 400, code: "invalid", diag: "empty body"},
		{name: "create/non-JSON", method: POST, path: P, body: "hello, world", status: 400, code: "invalid", diag: "JSON object"},
		{name: "create/truncated JSON", method: POST, path: P, body: `{"resourceType":"Patient","name":[{"family":"Dup`, status: 400, code: "invalid", diag: "malformed JSON"},
		{name: "create/JSON array", method: POST, path: P, body: `[{"resourceType":"Patient"}]`, status: 400, code: "invalid", diag: "JSON object"},
		{name: "create/JSON string", method: POST, path: P, body: `"Patient"`, status: 400, code: "invalid"},
		{name: "create/JSON null", method: POST, path: P, body: `null`, status: 400, code: "invalid"},
		{name: "create/trailing garbage", method: POST, path: P, body: `{"resourceType":"Patient"} trailing`, status: 400, code: "invalid", diag: "after the resource"},
		{name: "create/two objects", method: POST, path: P, body: `{"resourceType":"Patient"}{"resourceType":"Patient"}`, status: 400, code: "invalid", diag: "after the resource"},
		{name: "create/byte order mark", method: POST, path: P, raw: append([]byte("\xEF\xBB\xBF"), patientJSON("")...), status: 400, code: "invalid"},
		{name: "create/single quotes", method: POST, path: P, body: `{'resourceType':'Patient'}`, status: 400, code: "invalid", diag: "malformed JSON"},
		{name: "create/trailing comma", method: POST, path: P, body: `{"resourceType":"Patient",}`, status: 400, code: "invalid"},
		{name: "create/deep nesting", method: POST, path: P, body: deepArray(20000), status: 400, code: "invalid", diag: "malformed JSON"},
		{name: "create/invalid UTF-8 outside strings", method: POST, path: P, raw: []byte("{\"resourceType\":\"Patient\",\xff}"), status: 400, code: "invalid"},

		// --- create: resource type
		{name: "create/wrong resourceType vs URL", method: POST, path: P, body: obs(""), status: 400, code: "invalid", diag: "does not match"},
		{name: "create/unknown resourceType in body", method: POST, path: P, body: `{"resourceType":"Foo"}`, status: 400, code: "invalid"},
		{name: "create/missing resourceType", method: POST, path: P, body: `{"gender":"male"}`, status: 400, code: "invalid", diag: "resourceType is missing"},
		{name: "create/numeric resourceType", method: POST, path: P, body: `{"resourceType":1}`, status: 400, code: "invalid", diag: "resourceType"},
		{name: "create/duplicate resourceType key", method: POST, path: P, body: `{"resourceType":"Patient","resourceType":"Observation"}`, status: 400, code: "invalid"},
		{name: "create/unknown type in URL", method: POST, path: "/fhir/Foo", body: `{"resourceType":"Foo"}`, status: 404, code: "not-found", diag: "unknown resource type"},
		{name: "create/unsupported FHIR type", method: POST, path: "/fhir/Questionnaire", body: `{"resourceType":"Questionnaire","status":"draft"}`, status: 404, code: "not-supported"},
		{name: "create/Bundle to type endpoint", method: POST, path: "/fhir/Bundle", body: `{"resourceType":"Bundle","type":"collection"}`, status: 404, code: "not-supported"},

		// --- create: element values
		{name: "create/gender M", method: POST, path: P, body: patientJSON(`"gender":"M"`), status: 400, code: "invalid", diag: "Patient.gender"},
		{name: "create/gender number", method: POST, path: P, body: patientJSON(`"gender":1`), status: 400, code: "invalid", diag: "Patient.gender"},
		{name: "create/birthDate 1980-13-45", method: POST, path: P, body: patientJSON(`"birthDate":"1980-13-45"`), status: 400, code: "invalid", diag: "invalid date"},
		{name: "create/birthDate yesterday", method: POST, path: P, body: patientJSON(`"birthDate":"yesterday"`), status: 400, code: "invalid", diag: "invalid date"},
		{name: "create/birthDate 2023-02-29", method: POST, path: P, body: patientJSON(`"birthDate":"2023-02-29"`), status: 400, code: "invalid", diag: "invalid date"},
		{name: "create/birthDate with time", method: POST, path: P, body: patientJSON(`"birthDate":"1980-01-01T00:00:00Z"`), status: 400, code: "invalid"},
		{name: "create/birthDate number", method: POST, path: P, body: patientJSON(`"birthDate":19800101`), status: 400, code: "invalid"},
		{name: "create/deceasedDateTime without zone", method: POST, path: P, body: patientJSON(`"deceasedDateTime":"2020-05-01T10:00:00"`), status: 400, code: "invalid", diag: "dateTime"},
		{name: "create/deceasedDateTime hh:mm only", method: POST, path: P, body: patientJSON(`"deceasedDateTime":"2020-05-01T10:00Z"`), status: 400, code: "invalid"},
		{name: "create/deceasedDateTime 25h", method: POST, path: P, body: patientJSON(`"deceasedDateTime":"2020-05-01T25:00:00Z"`), status: 400, code: "invalid"},
		{name: "create/deceasedDateTime zone +15:00", method: POST, path: P, body: patientJSON(`"deceasedDateTime":"2020-05-01T10:00:00+15:00"`), status: 400, code: "invalid"},
		{name: "create/boolean as string", method: POST, path: P, body: patientJSON(`"active":"true"`), status: 400, code: "invalid", diag: "true or false"},
		{name: "create/deceasedBoolean as number", method: POST, path: P, body: patientJSON(`"deceasedBoolean":1`), status: 400, code: "invalid"},
		{name: "create/null element", method: POST, path: P, body: patientJSON(`"gender":null`), status: 400, code: "invalid", diag: "null"},
		{name: "create/nested null", method: POST, path: P, body: patientJSON(`"name":[{"family":null}]`), status: 400, code: "invalid", diag: "null"},
		{name: "create/empty array", method: POST, path: P, body: patientJSON(`"name":[]`), status: 400, code: "invalid", diag: "empty arrays"},
		{name: "create/nested empty array", method: POST, path: P, body: patientJSON(`"name":[{"given":[]}]`), status: 400, code: "invalid", diag: "empty arrays"},
		{name: "create/name as string", method: POST, path: P, body: patientJSON(`"name":"Bob"`), status: 400, code: "invalid", diag: "object"},
		{name: "create/given number", method: POST, path: P, body: patientJSON(`"name":[{"given":[42]}]`), status: 400, code: "invalid"},
		{name: "create/blank family", method: POST, path: P, body: patientJSON(`"name":[{"family":"   "}]`), status: 400, code: "invalid"},
		{name: "create/bad name.use", method: POST, path: P, body: patientJSON(`"name":[{"use":"nick"}]`), status: 400, code: "invalid"},
		{name: "create/bad telecom.system", method: POST, path: P, body: patientJSON(`"telecom":[{"system":"telepathy","value":"x"}]`), status: 400, code: "invalid"},
		{name: "create/meta not object", method: POST, path: P, body: patientJSON(`"meta":"v1"`), status: 400, code: "invalid", diag: "meta"},
		{name: "create/reference Patient/", method: POST, path: "/fhir/Observation", body: obs(`,"subject":{"reference":"Patient/"}`), status: 400, code: "invalid", diag: "malformed reference"},
		{name: "create/reference not a ref", method: POST, path: "/fhir/Observation", body: obs(`,"subject":{"reference":"not a ref"}`), status: 400, code: "invalid", diag: "malformed reference"},
		{name: "create/reference three segments", method: POST, path: "/fhir/Observation", body: obs(`,"subject":{"reference":"Patient/a/b"}`), status: 400, code: "invalid"},
		{name: "create/reference empty", method: POST, path: "/fhir/Observation", body: obs(`,"subject":{"reference":""}`), status: 400, code: "invalid"},
		{name: "create/reference number", method: POST, path: "/fhir/Observation", body: obs(`,"subject":{"reference":7}`), status: 400, code: "invalid", diag: "must be a string"},
		{name: "create/reference to unknown type", method: POST, path: "/fhir/Observation", body: obs(`,"subject":{"reference":"Foo/1"}`), status: 400, code: "invalid"},
		{name: "create/reference not an object", method: POST, path: P, body: patientJSON(`"managingOrganization":"Organization/` + fxOrg + `"`), status: 400, code: "invalid"},
		{name: "create/broken reference", method: POST, path: "/fhir/Observation", body: obs(`,"subject":{"reference":"Patient/nobody"}`), status: 422, code: "processing", diag: "Patient/nobody"},
		{name: "create/reference to deleted", method: POST, path: "/fhir/Observation", body: obs(`,"subject":{"reference":"Patient/` + fxGone + `"}`), status: 422, code: "processing"},
		{name: "create/broken versioned reference", method: POST, path: "/fhir/Observation", body: obs(`,"subject":{"reference":"Patient/nobody/_history/1"}`), status: 422, code: "processing"},
		{name: "create/Observation without status", method: POST, path: "/fhir/Observation", body: `{"resourceType":"Observation","code":{"text":"x"}}`, status: 400, code: "invalid", diag: "required"},
		{name: "create/Encounter period reversed", method: POST, path: "/fhir/Encounter", body: `{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"period":{"start":"2024-02-01","end":"2024-01-01"}}`, status: 400, code: "invalid", diag: "ends before"},
		{name: "create/huge number where a date goes", method: POST, path: P, body: patientJSON(`"birthDate":1e999999`), status: 400, code: "invalid"},

		// --- create: transport
		{name: "create/body over 8 MiB", method: POST, path: P, raw: bigBody, status: 413, code: "too-costly"},
		{name: "create/chunked body over 8 MiB", method: POST, path: P, raw: bigBody, chunked: true, status: 413, code: "too-costly"},
		{name: "create/Content-Type text/plain", method: POST, path: P, body: patientJSON(""), hdr: []string{"Content-Type", "text/plain"}, status: 415, code: "not-supported", diag: "Content-Type"},
		{name: "create/Content-Type fhir+xml", method: POST, path: P, body: patientJSON(""), hdr: []string{"Content-Type", "application/fhir+xml"}, status: 415, code: "not-supported"},
		{name: "create/Content-Type form", method: POST, path: P, body: patientJSON(""), hdr: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: 415, code: "not-supported"},
		{name: "create/Content-Type unparsable", method: POST, path: P, body: patientJSON(""), hdr: []string{"Content-Type", ";;;"}, status: 415, code: "not-supported"},
		{name: "create/Accept fhir+xml", method: POST, path: P, body: patientJSON(""), hdr: []string{"Accept", "application/fhir+xml"}, status: 406, code: "not-supported",
			check: func(t *testing.T, s *testServer) {
				r := s.get(t, "/fhir/Patient?_summary=count")
				if n := num(decode(t, r.Body)["total"]); n != 1 {
					t.Fatalf("a create refused with 406 still wrote: %d patients", n)
				}
			}},

		// --- update
		{name: "update/invalid id in URL", method: PUT, path: "/fhir/Patient/bad!id", body: patientJSON(`"id":"bad!id"`), status: 400, code: "invalid"},
		{name: "update/invalid id in body", method: PUT, path: P1, body: patientJSON(`"id":"bad id"`), status: 400, code: "invalid", diag: "does not match"},
		{name: "update/body id mismatch", method: PUT, path: P1, body: patientJSON(`"id":"other"`), status: 400, code: "invalid", diag: "does not match", check: versionStill(P1, "1")},
		{name: "update/missing id", method: PUT, path: P1, body: patientJSON(`"gender":"male"`), status: 400, code: "invalid", diag: "must carry the id"},
		{name: "update/numeric id", method: PUT, path: P1, body: patientJSON(`"id":123456789012345678901234567890`), status: 400, code: "invalid"},
		{name: "update/invalid content", method: PUT, path: P1, body: patientJSON(`"id":"` + fxPatient + `","gender":"M"`), status: 400, code: "invalid", check: versionStill(P1, "1")},
		{name: "update/If-Match mismatch", method: PUT, path: P1, body: goodPut, hdr: []string{"If-Match", `W/"7"`}, status: 412, code: "conflict", diag: "current version is 1", check: versionStill(P1, "1")},
		{name: "update/If-Match on nonexistent", method: PUT, path: "/fhir/Patient/newbie", body: patientJSON(`"id":"newbie"`), hdr: []string{"If-Match", `W/"1"`}, status: 412, code: "conflict", diag: "does not exist"},
		{name: "update/malformed If-Match", method: PUT, path: P1, body: goodPut, hdr: []string{"If-Match", "abc"}, status: 400, code: "invalid", diag: "If-Match"},
		{name: "update/If-Match zero", method: PUT, path: P1, body: goodPut, hdr: []string{"If-Match", `W/"0"`}, status: 400, code: "invalid"},
		{name: "update/If-Match star", method: PUT, path: P1, body: goodPut, hdr: []string{"If-Match", `*`}, status: 400, code: "invalid"},
		{name: "update/wrong resourceType", method: PUT, path: P1, body: `{"resourceType":"Organization","id":"` + fxPatient + `"}`, status: 400, code: "invalid"},
		{name: "update/unsupported type", method: PUT, path: "/fhir/Questionnaire/q1", body: `{"resourceType":"Questionnaire","id":"q1"}`, status: 404, code: "not-supported"},
		{name: "update/broken reference", method: PUT, path: P1, body: patientJSON(`"id":"` + fxPatient + `","generalPractitioner":[{"reference":"Practitioner/nobody"}]`), status: 422, code: "processing", check: versionStill(P1, "1")},
		{name: "update/empty body", method: PUT, path: P1, body: "", status: 400, code: "invalid"},
		{name: "update/Content-Type xml", method: PUT, path: P1, body: goodPut, hdr: []string{"Content-Type", "application/xml"}, status: 415, code: "not-supported"},

		// --- delete
		{name: "delete/nonexistent", method: DELETE, path: "/fhir/Patient/nobody", status: 404, code: "not-found"},
		{name: "delete/invalid id", method: DELETE, path: "/fhir/Patient/a%2Fb", status: 400, code: "invalid"},
		{name: "delete/unknown type", method: DELETE, path: "/fhir/Foo/x", status: 404, code: "not-found"},
		{name: "delete/If-Match mismatch", method: DELETE, path: P1, hdr: []string{"If-Match", `W/"3"`}, status: 412, code: "conflict", check: versionStill(P1, "1")},
		{name: "delete/malformed If-Match", method: DELETE, path: P1, hdr: []string{"If-Match", `W/"x"`}, status: 400, code: "invalid", check: versionStill(P1, "1")},

		// --- method not allowed
		{name: "method/PATCH resource", method: http.MethodPatch, path: P1, body: `[]`, status: 405, code: "not-supported"},
		{name: "method/DELETE type", method: DELETE, path: P, status: 405, code: "not-supported"},
		{name: "method/PUT type", method: PUT, path: P, body: patientJSON(""), status: 405, code: "not-supported"},
		{name: "method/POST resource", method: POST, path: P1, body: patientJSON(""), status: 405, code: "not-supported"},
		{name: "method/DELETE history", method: DELETE, path: P1 + "/_history/1", status: 405, code: "not-supported"},
		{name: "method/GET /fhir", method: GET, path: "/fhir", status: 400, code: "not-supported", diag: "whole-system search"},
		{name: "method/POST metadata", method: POST, path: "/fhir/metadata", body: `{}`, status: 405, code: "not-supported"},
		{name: "method/DELETE metadata", method: DELETE, path: "/fhir/metadata", status: 405, code: "not-supported"},

		// --- metadata
		{name: "metadata/Accept fhir+xml", method: GET, path: "/fhir/metadata", hdr: []string{"Accept", "application/fhir+xml"}, status: 406, code: "not-supported", diag: "JSON"},
		{name: "metadata/Accept text/turtle", method: GET, path: "/fhir/metadata", hdr: []string{"Accept", "text/turtle"}, status: 406, code: "not-supported"},

		// --- search
		{name: "search/unknown param strict", method: GET, path: P + "?shoe-size=42", hdr: strict, status: 400, code: "not-supported", diag: "shoe-size"},
		{name: "search/chained strict", method: GET, path: "/fhir/Encounter?subject.name=x", hdr: strict, status: 400, code: "not-supported", diag: "chained"},
		{name: "search/_elements strict", method: GET, path: P + "?_elements=id", hdr: strict, status: 400, code: "not-supported"},
		{name: "search/_summary=text strict", method: GET, path: P + "?_summary=text", hdr: strict, status: 400, code: "not-supported"},
		{name: "search/_include:iterate strict", method: GET, path: "/fhir/Encounter?_include:iterate=Encounter:patient", hdr: strict, status: 400, code: "not-supported"},
		{name: "search/bad date prefix", method: GET, path: P + "?birthdate=xx2020", status: 400, code: "invalid", diag: "unknown prefix"},
		{name: "search/bad date", method: GET, path: P + "?birthdate=2020-13", status: 400, code: "invalid", diag: "invalid date"},
		{name: "search/date 2023-02-29", method: GET, path: P + "?birthdate=2023-02-29", status: 400, code: "invalid"},
		{name: "search/prefix only", method: GET, path: P + "?birthdate=ge", status: 400, code: "invalid"},
		{name: "search/_lastUpdated bad", method: GET, path: P + "?_lastUpdated=gt-yesterday", status: 400, code: "invalid"},
		{name: "search/_count abc", method: GET, path: P + "?_count=abc", status: 400, code: "invalid", diag: "_count"},
		{name: "search/_count negative", method: GET, path: P + "?_count=-5", status: 400, code: "invalid"},
		{name: "search/_count overflow", method: GET, path: P + "?_count=99999999999999999999999", status: 400, code: "invalid"},
		{name: "search/_offset negative", method: GET, path: P + "?_offset=-1", status: 400, code: "invalid"},
		{name: "search/_sort unknown", method: GET, path: P + "?_sort=shoe-size", status: 400, code: "invalid", diag: "cannot sort"},
		{name: "search/_sort by reference", method: GET, path: P + "?_sort=organization", status: 400, code: "invalid"},
		{name: "search/_sort empty key", method: GET, path: P + "?_sort=family,,given", status: 400, code: "invalid"},
		{name: "search/_include garbage", method: GET, path: P + "?_include=garbage", status: 400, code: "invalid", diag: "Type:parameter"},
		{name: "search/_include unknown param", method: GET, path: "/fhir/Encounter?_include=Encounter:foo", status: 400, code: "invalid"},
		{name: "search/_include other type", method: GET, path: P + "?_include=Encounter:patient", status: 400, code: "invalid", diag: "searched type"},
		{name: "search/_include non-reference", method: GET, path: P + "?_include=Patient:family", status: 400, code: "invalid"},
		{name: "search/_include bad target", method: GET, path: "/fhir/Encounter?_include=Encounter:patient:Foo", status: 400, code: "invalid"},
		{name: "search/_revinclude unknown type", method: GET, path: P + "?_revinclude=Foo:patient", status: 400, code: "invalid"},
		{name: "search/_revinclude wrong target", method: GET, path: P + "?_revinclude=Encounter:service-provider", status: 400, code: "invalid", diag: "does not point"},
		{name: "search/unsupported modifier", method: GET, path: P + "?family:sounds-like=x", status: 400, code: "invalid", diag: "unsupported modifier"},
		{name: "search/:exact on token", method: GET, path: P + "?gender:exact=male", status: 400, code: "invalid"},
		{name: "search/:missing value", method: GET, path: P + "?gender:missing=perhaps", status: 400, code: "invalid"},
		{name: "search/_id:missing", method: GET, path: P + "?_id:missing=true", status: 400, code: "invalid"},
		{name: "search/reference modifier contradicts", method: GET, path: "/fhir/Encounter?subject:Patient=Group/1", status: 400, code: "invalid", diag: "contradicts"},
		{name: "search/reference malformed", method: GET, path: "/fhir/Encounter?subject=Patient/", status: 400, code: "invalid", diag: "invalid reference"},
		{name: "search/reference without targets", method: GET, path: "/fhir/Observation?performer=abc", status: 400, code: "invalid", diag: "Type/id"},
		{name: "search/_id invalid", method: GET, path: P + "?_id=a$b", status: 400, code: "invalid"},
		{name: "search/empty value", method: GET, path: P + "?family=", status: 400, code: "invalid", diag: "empty value"},
		{name: "search/empty alternative", method: GET, path: P + "?gender=male,", status: 400, code: "invalid", diag: "empty value"},
		{name: "search/empty token", method: GET, path: P + "?identifier=|", status: 400, code: "invalid"},
		{name: "search/too many values", method: GET, path: P + "?family=" + manyValues(101), status: 400, code: "too-costly", diag: "too many values"},
		{name: "search/too many parameters", method: GET, path: P + "?" + manyFilters(41), status: 400, code: "too-costly"},
		{name: "search/_format xml", method: GET, path: P + "?_format=xml", status: 406, code: "not-supported"},
		{name: "search/_total bogus", method: GET, path: P + "?_total=lots", status: 400, code: "invalid"},
		{name: "search/malformed query string", method: GET, path: P + "?family=%zz", status: 400, code: "invalid", diag: "query"},
		{name: "search/semicolon in query", method: GET, path: P + "?family=a;given=b", status: 400, code: "invalid"},
		{name: "search/_cursor not base64", method: GET, path: P + "?_cursor=!!!", status: 400, code: "invalid", diag: "cursor"},
		{name: "search/_cursor bad query", method: GET, path: P + "?_cursor=" + cursorOf("family=%zz"), status: 400, code: "invalid", diag: "cursor"},
		{name: "search/_cursor hiding a bad parameter", method: GET, path: P + "?_cursor=" + cursorOf("_count=-1"), status: 400, code: "invalid"},
		{name: "search/unknown type", method: GET, path: "/fhir/Foo?name=x", status: 404, code: "not-found"},
		{name: "search/unsupported type", method: GET, path: "/fhir/Questionnaire", status: 404, code: "not-supported"},
		{name: "search/Accept xml", method: GET, path: P, hdr: []string{"Accept", "application/fhir+xml"}, status: 406, code: "not-supported"},
		{name: "_search/wrong Content-Type", method: POST, path: P + "/_search", body: `{"family":"x"}`, hdr: []string{"Content-Type", "application/json"}, status: 415, code: "not-supported"},
		{name: "_search/malformed form", method: POST, path: P + "/_search", body: "family=%zz", hdr: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: 400, code: "invalid", diag: "form"},
		{name: "_search/unknown param strict", method: POST, path: P + "/_search", body: "shoe-size=42", hdr: []string{"Content-Type", "application/x-www-form-urlencoded", "Prefer", "handling=strict"}, status: 400, code: "not-supported", diag: "shoe-size"},
		{name: "_search/bad value in body", method: POST, path: P + "/_search", body: "birthdate=xx2020", hdr: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: 400, code: "invalid"},
		{name: "_search/body over 1 MiB", method: POST, path: P + "/_search", body: "family=" + strings.Repeat("a", 1<<20), hdr: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: 413, code: "too-costly"},
		{name: "_search/unknown type", method: POST, path: "/fhir/Foo/_search", body: "", hdr: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: 404, code: "not-found"},

		// --- transaction / batch
		{name: "bundle/empty body", method: POST, path: "/fhir", body: "", status: 400, code: "invalid"},
		{name: "bundle/non-JSON", method: POST, path: "/fhir", body: "<Bundle/>", status: 400, code: "invalid"},
		{name: "bundle/not a Bundle", method: POST, path: "/fhir", body: patientJSON(""), status: 400, code: "invalid", diag: "Bundle"},
		{name: "bundle/type collection", method: POST, path: "/fhir", body: txJSON("collection", postEntry("coll", "")), status: 400, code: "invalid", diag: "transaction or batch", check: nothingWritten("coll")},
		{name: "bundle/type missing", method: POST, path: "/fhir", body: `{"resourceType":"Bundle"}`, status: 400, code: "invalid"},
		{name: "bundle/type number", method: POST, path: "/fhir/", body: `{"resourceType":"Bundle","type":7}`, status: 400, code: "invalid"},
		{name: "bundle/entry not an array", method: POST, path: "/fhir", body: `{"resourceType":"Bundle","type":"transaction","entry":{}}`, status: 400, code: "invalid"},
		{name: "bundle/entry not an object", method: POST, path: "/fhir", body: txJSON("transaction", `"x"`), status: 400, code: "invalid", diag: "entry must be an object"},
		{name: "bundle/entry without request", method: POST, path: "/fhir", body: txJSON("transaction", `{"resource":{"resourceType":"Patient"}}`), status: 400, code: "invalid", diag: "request.method"},
		{name: "bundle/entry method PATCH", method: POST, path: "/fhir", body: txJSON("transaction", `{"request":{"method":"PATCH","url":"Patient/`+fxPatient+`"}}`), status: 400, code: "not-supported"},
		{name: "bundle/entry method GET", method: POST, path: "/fhir", body: txJSON("batch", `{"request":{"method":"GET","url":"Patient/`+fxPatient+`"}}`), status: 400, code: "not-supported"},
		{name: "bundle/entry conditional url", method: POST, path: "/fhir", body: txJSON("transaction", `{"resource":{"resourceType":"Patient"},"request":{"method":"PUT","url":"Patient?identifier=x"}}`), status: 400, code: "not-supported"},
		{name: "bundle/entry ifNoneExist", method: POST, path: "/fhir", body: txJSON("transaction", `{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=x"}}`), status: 400, code: "not-supported"},
		{name: "bundle/entry unknown type", method: POST, path: "/fhir", body: txJSON("transaction", `{"resource":{"resourceType":"Foo"},"request":{"method":"POST","url":"Foo"}}`), status: 400, code: "invalid"},
		{name: "bundle/entry POST with id url", method: POST, path: "/fhir", body: txJSON("transaction", `{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient/x"}}`), status: 400, code: "invalid"},
		{name: "bundle/entry PUT bad id", method: POST, path: "/fhir", body: txJSON("transaction", `{"resource":{"resourceType":"Patient","id":"a b"},"request":{"method":"PUT","url":"Patient/a b"}}`), status: 400, code: "invalid"},
		{name: "bundle/entry without resource", method: POST, path: "/fhir", body: txJSON("transaction", `{"request":{"method":"POST","url":"Patient"}}`), status: 400, code: "invalid", diag: "needs a resource"},
		{name: "bundle/entry malformed ifMatch", method: POST, path: "/fhir", body: txJSON("transaction", `{"resource":`+goodPut+`,"request":{"method":"PUT","url":"Patient/`+fxPatient+`","ifMatch":"v1"}}`), status: 400, code: "invalid"},
		{name: "transaction/failing entry", method: POST, path: "/fhir", body: txJSON("transaction", postEntry("tx-invalid", ""), postEntry("tx-invalid", `"gender":"M"`)), status: 400, code: "invalid", diag: "entry[1]", check: nothingWritten("tx-invalid")},
		{name: "transaction/broken reference", method: POST, path: "/fhir", body: txJSON("transaction", postEntry("tx-broken", ""), postEntry("tx-broken", `"managingOrganization":{"reference":"Organization/nowhere"}`)), status: 422, code: "processing", check: nothingWritten("tx-broken")},
		{name: "transaction/duplicate targets", method: POST, path: "/fhir", body: txJSON("transaction", postEntry("tx-dup", ""),
			`{"resource":{"resourceType":"Patient","id":"dup"},"request":{"method":"PUT","url":"Patient/dup"}}`,
			`{"resource":{"resourceType":"Patient","id":"dup","gender":"male"},"request":{"method":"PUT","url":"Patient/dup"}}`), status: 400, code: "invalid", diag: "also the target",
			check: func(t *testing.T, s *testServer) {
				nothingWritten("tx-dup")(t, s)
				mustStatus(t, s.get(t, "/fhir/Patient/dup"), 404, "read the duplicated target")
			}},
		{name: "transaction/PUT and DELETE same target", method: POST, path: "/fhir", body: txJSON("transaction", postEntry("tx-putdel", ""),
			`{"resource":`+goodPut+`,"request":{"method":"PUT","url":"Patient/`+fxPatient+`"}}`,
			`{"request":{"method":"DELETE","url":"Patient/`+fxPatient+`"}}`), status: 400, code: "invalid", check: versionStill(P1, "1")},
		{name: "transaction/If-Match mismatch", method: POST, path: "/fhir", body: txJSON("transaction", postEntry("tx-ifmatch", ""),
			`{"resource":`+goodPut+`,"request":{"method":"PUT","url":"Patient/`+fxPatient+`","ifMatch":"W/\"9\""}}`), status: 412, code: "conflict",
			check: func(t *testing.T, s *testServer) { nothingWritten("tx-ifmatch")(t, s); versionStill(P1, "1")(t, s) }},
		{name: "transaction/reference to a resource it deletes", method: POST, path: "/fhir", body: txJSON("transaction", postEntry("tx-delref", `"link":[{"type":"seealso","other":{"reference":"Patient/`+fxPatient+`"}}]`),
			`{"request":{"method":"DELETE","url":"Patient/`+fxPatient+`"}}`), status: 422, code: "processing", diag: "deleted by this transaction",
			check: func(t *testing.T, s *testServer) { nothingWritten("tx-delref")(t, s); versionStill(P1, "1")(t, s) }},
		{name: "transaction/DELETE nonexistent", method: POST, path: "/fhir", body: txJSON("transaction", postEntry("tx-del", ""), `{"request":{"method":"DELETE","url":"Patient/nobody"}}`), status: 404, code: "not-found", check: nothingWritten("tx-del")},
		{name: "transaction/PUT id mismatch", method: POST, path: "/fhir", body: txJSON("transaction", postEntry("tx-idmm", ""), `{"resource":{"resourceType":"Patient","id":"x1"},"request":{"method":"PUT","url":"Patient/x2"}}`), status: 400, code: "invalid", check: nothingWritten("tx-idmm")},
		{name: "transaction/resource type vs url", method: POST, path: "/fhir", body: txJSON("transaction", postEntry("tx-type", ""), `{"resource":{"resourceType":"Organization"},"request":{"method":"POST","url":"Patient"}}`), status: 400, code: "invalid", check: nothingWritten("tx-type")},
		{name: "bundle/Content-Type text/plain", method: POST, path: "/fhir", body: txJSON("batch"), hdr: []string{"Content-Type", "text/plain"}, status: 415, code: "not-supported"},
		{name: "bundle/over 8 MiB", method: POST, path: "/fhir", raw: bigBody, status: 413, code: "too-costly"},
	}
}

// TestMalformedRequests sends each malformed or hostile request and checks
// the exact 4xx and that the body is an OperationOutcome with a code and
// diagnostics.
func TestMalformedRequests(t *testing.T) {
	s := malformedServer(t)
	cases := malformedCases()
	if len(cases) < 45 {
		t.Fatalf("only %d cases", len(cases))
	}
	seen := map[string]bool{}
	for _, c := range cases {
		if seen[c.name] {
			t.Fatalf("duplicate case name %q", c.name)
		}
		seen[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			body := c.raw
			if body == nil && (c.body != "" || c.method == http.MethodPost || c.method == http.MethodPut) {
				body = []byte(c.body)
			}
			var r *resp
			if c.chunked {
				r = s.doReader(t, c.method, c.path, io.MultiReader(bytes.NewReader(body)), c.hdr...)
			} else {
				r = s.do(t, c.method, c.path, body, c.hdr...)
			}
			if r.Status != c.status {
				t.Fatalf("%s %s: status %d, want %d; body %s", c.method, clip(c.path), r.Status, c.status, r)
			}
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
				t.Errorf("Content-Type %q, want application/fhir+json", ct)
			}
			is := outcomeOf(t, r.Body)
			if is["code"] != c.code {
				t.Errorf("issue[0].code %q, want %q (%s)", is["code"], c.code, is["diagnostics"])
			}
			if is["severity"] != "error" {
				t.Errorf("issue[0].severity %q, want error", is["severity"])
			}
			if c.diag != "" {
				// The element at fault may be named in diagnostics or in
				// issue.expression.
				text := is["diagnostics"].(string)
				if ex, ok := is["expression"].([]any); ok {
					text += fmt.Sprint(" ", ex)
				}
				if !strings.Contains(strings.ToLower(text), strings.ToLower(c.diag)) {
					t.Errorf("diagnostics %q / expression %v do not mention %q", is["diagnostics"], is["expression"], c.diag)
				}
			}
			if c.check != nil {
				c.check(t, s)
			}
		})
	}
	// No case may have written anything: the fixtures are as they were.
	r := s.get(t, "/fhir/Patient?_summary=count")
	mustStatus(t, r, http.StatusOK, "count patients")
	if n := num(decode(t, r.Body)["total"]); n != 1 {
		t.Errorf("after the malformed battery: %d live patients, want the 1 fixture", n)
	}
	versionStill(fixturePath, "1")(t, s)
}

const fixturePath = "/fhir/Patient/" + fxPatient

// TestMalformedLenientUnknownParameter: without Prefer: handling=strict an
// unknown parameter is ignored and reported in an OperationOutcome entry.
func TestMalformedLenientUnknownParameter(t *testing.T) {
	s := malformedServer(t)
	for _, path := range []string{"/fhir/Patient?shoe-size=42&gender=female", "/fhir/Patient?shoe-size=42&gender=female&_count=5"} {
		for _, prefer := range []string{"", "handling=lenient"} {
			r := s.get(t, path, "Prefer", prefer)
			mustStatus(t, r, http.StatusOK, "lenient search "+path)
			m := decode(t, r.Body)
			entries := bundleEntries(t, m)
			if got := entryIDs(entries, "match"); len(got) != 1 || got[0] != "Patient/"+fxPatient {
				t.Errorf("matches %v, want the fixture patient (the known parameter still applies)", got)
			}
			var outcome map[string]any
			for _, e := range entries {
				if sm, _ := e["search"].(map[string]any); sm["mode"] == "outcome" {
					outcome, _ = e["resource"].(map[string]any)
				}
			}
			if outcome == nil {
				t.Fatalf("no search.mode=outcome entry: %s", r)
			}
			b, _ := json.Marshal(outcome)
			is := outcomeOf(t, b)
			if is["severity"] != "warning" || !strings.Contains(is["diagnostics"].(string), "shoe-size") {
				t.Errorf("outcome issue %v does not warn about shoe-size", is)
			}
		}
	}
	// And a strict search with only known parameters is fine.
	r := s.get(t, "/fhir/Patient?gender=female", "Prefer", "handling=strict")
	mustStatus(t, r, http.StatusOK, "strict search with known parameters")
	for _, e := range bundleEntries(t, decode(t, r.Body)) {
		if sm, _ := e["search"].(map[string]any); sm["mode"] == "outcome" {
			t.Errorf("strict search without unknown parameters has an outcome entry")
		}
	}
}

// TestMalformedNever5xx sends hostile bodies that may be accepted or refused
// but must never earn a 5xx or a non-JSON answer.
func TestMalformedNever5xx(t *testing.T) {
	s := malformedServer(t)
	deepObj := patientJSON(`"extension":[{"url":"http://x","extension":` + strings.Repeat(`[{"url":"http://x","extension":`, 2000) + `[{"url":"http://x","valueString":"deep"}]` + strings.Repeat(`}]`, 2000) + `}]`)
	bodies := map[string][]byte{
		"invalid UTF-8 in a string":      []byte("{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"Du\xffpont\xc3\"}]}"),
		"overlong UTF-8":                 []byte("{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"\xc0\xaf\"}]}"),
		"lone surrogate escape":          []byte(`{"resourceType":"Patient","name":[{"family":"\ud800"}]}`),
		"NUL in string":                  []byte(`{"resourceType":"Patient","name":[{"family":"a\u0000b"}]}`),
		"huge number":                    []byte(`{"resourceType":"Patient","extension":[{"url":"http://x","valueDecimal":1e999999999}]}`),
		"long number":                    []byte(`{"resourceType":"Patient","extension":[{"url":"http://x","valueDecimal":` + strings.Repeat("9", 100000) + `}]}`),
		"deep but legal nesting":         []byte(deepObj),
		"array nesting at decoder limit": []byte(deepArray(9990)),
		"many keys":                      []byte(patientJSON(manyKeys(20000))),
		"very long family name":          []byte(patientJSON(`"name":[{"family":"` + strings.Repeat("é", 200000) + `"}]`)),
		"unknown elements":               []byte(patientJSON(`"fooBar":{"baz":[1,2,{"q":true}]}`)),
		"contained with bad ref":         []byte(patientJSON(`"contained":[{"resourceType":"Organization","id":"o","partOf":{"reference":"not a ref"}}]`)),
	}
	for name, b := range bodies {
		t.Run(name, func(t *testing.T) {
			for _, path := range []string{"/fhir/Patient"} {
				r := s.do(t, http.MethodPost, path, b)
				if r.Status >= 500 {
					t.Fatalf("POST %s: %s", path, r)
				}
				if r.Status >= 400 {
					outcomeOf(t, r.Body)
					continue
				}
				m := decode(t, r.Body)
				if id, _ := m["id"].(string); id != "" {
					rr := s.get(t, "/fhir/Patient/"+id)
					mustStatus(t, rr, 200, "read back an accepted hostile body")
					if !bytes.Equal(rr.Body, r.Body) {
						t.Errorf("read back differs from the create response")
					}
				}
			}
		})
	}
}

func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"_k%d":{"extension":[{"url":"http://x","valueInteger":%d}]}`, i, i)
	}
	return b.String()
}

// TestMalformedQueryNever5xx throws hostile query strings at search.
func TestMalformedQueryNever5xx(t *testing.T) {
	s := malformedServer(t)
	queries := []string{
		"family=" + url.QueryEscape(strings.Repeat("\\", 1000)),
		"family=" + url.QueryEscape("a\\,b\\"),
		"family=%00", "family=%ff%fe", "family:contains=%25_%5C", "given:exact=" + url.QueryEscape("É"),
		"birthdate=ne1980&birthdate=sa1900-01-01T00:00Z&birthdate=eb2100",
		"birthdate=9999-12-31T23:59:59%2B14:00", "birthdate=0001-01-01T00:00:00-14:00",
		"_lastUpdated=ge2000&_lastUpdated=le9999",
		"_sort=-birthdate,family,-_lastUpdated,_id,gender,-death-date",
		"_count=0", "_count=100000", "_offset=99999999999", "_offset=9223372036854775807",
		"_summary=count&_count=1", "_total=accurate", "_format=json&_pretty=true",
		"identifier=" + url.QueryEscape("|x"), "identifier=" + url.QueryEscape("sys|"), "telecom=" + url.QueryEscape("+33 6 12 34 56 78"),
		"organization=Organization/" + fxOrg, "organization:Organization=" + fxOrg, "general-practitioner=abc",
		"deceased=true", "active:missing=true", "name:missing=false",
		"_id=" + manyValues(100), "family=" + manyValues(100),
		"_revinclude=Encounter:patient&_revinclude=Observation:subject&_include=Patient:organization&_include=Patient:general-practitioner:Practitioner",
		"name=" + url.QueryEscape("'; DROP TABLE resources; --"), "family=" + url.QueryEscape("%' OR 1=1 --"),
		"_cursor=" + cursorOf("_cursor="+cursorOf("family=x")), "_cursor=" + cursorOf(""), "_cursor=" + cursorOf("_offset=5&_count=1"),
		"x=" + strings.Repeat("y", 5000),
	}
	for _, q := range queries {
		for _, prefer := range []string{"", "handling=strict"} {
			for _, post := range []bool{false, true} {
				var r *resp
				if post {
					r = s.do(t, http.MethodPost, "/fhir/Patient/_search", []byte(q), "Content-Type", "application/x-www-form-urlencoded", "Prefer", prefer)
				} else {
					r = s.get(t, "/fhir/Patient?"+q, "Prefer", prefer)
				}
				if r.Status >= 500 || r.Status < 200 {
					t.Errorf("search %q (prefer %q, post %v): %s", clip(q), prefer, post, r)
					continue
				}
				if r.Status >= 400 {
					outcomeOf(t, r.Body)
					continue
				}
				m := decode(t, r.Body)
				if m["resourceType"] != "Bundle" || m["type"] != "searchset" {
					t.Errorf("search %q: 200 without a searchset Bundle", clip(q))
				}
			}
		}
	}
	// The store is intact after the injection attempts.
	mustStatus(t, s.get(t, fixturePath), 200, "read fixture after hostile searches")
}
