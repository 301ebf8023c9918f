package api

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"carnet/internal/fhir"
)

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestCapabilityStatement(t *testing.T) {
	s := newTestServer(t, Options{Version: "1.2.3"})
	r := s.get(t, "/fhir/metadata")
	mustStatus(t, r, http.StatusOK, "metadata")
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Errorf("Content-Type %q", ct)
	}
	if r.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("X-Content-Type-Options missing")
	}
	cs := decode(t, r.Body)
	if cs["resourceType"] != "CapabilityStatement" || cs["fhirVersion"] != "4.0.1" || cs["kind"] != "instance" {
		t.Fatalf("not an R4 instance CapabilityStatement: %v %v %v", cs["resourceType"], cs["fhirVersion"], cs["kind"])
	}
	if sw, _ := cs["software"].(map[string]any); sw["version"] != "1.2.3" {
		t.Errorf("software.version %v", sw["version"])
	}
	rest := cs["rest"].([]any)[0].(map[string]any)
	var sysInteractions []string
	for _, i := range rest["interaction"].([]any) {
		sysInteractions = append(sysInteractions, i.(map[string]any)["code"].(string))
	}
	if !slices.Contains(sysInteractions, "transaction") || !slices.Contains(sysInteractions, "batch") {
		t.Errorf("system interactions %v", sysInteractions)
	}
	byType := map[string]map[string]any{}
	for _, res := range rest["resource"].([]any) {
		m := res.(map[string]any)
		byType[m["type"].(string)] = m
	}
	for _, ti := range fhir.StoredTypes() {
		if byType[ti.Name] == nil {
			t.Errorf("stored type %s missing from the CapabilityStatement", ti.Name)
		}
	}
	if len(byType) != len(fhir.StoredTypes()) {
		t.Errorf("%d resources listed, %d stored types", len(byType), len(fhir.StoredTypes()))
	}
	pat := byType["Patient"]
	params := map[string]string{}
	for _, sp := range pat["searchParam"].([]any) {
		m := sp.(map[string]any)
		params[m["name"].(string)] = m["type"].(string)
	}
	for _, want := range []struct{ name, typ string }{
		{"_id", "token"}, {"_lastUpdated", "date"}, {"family", "string"}, {"given", "string"}, {"name", "string"},
		{"birthdate", "date"}, {"gender", "token"}, {"identifier", "token"}, {"phone", "token"}, {"email", "token"},
		{"organization", "reference"}, {"general-practitioner", "reference"}, {"address-city", "string"}, {"deceased", "token"},
	} {
		if params[want.name] != want.typ {
			t.Errorf("Patient search param %s: type %q, want %q", want.name, params[want.name], want.typ)
		}
	}
	for _, p := range fhir.Params("Patient") {
		if params[p.Name] != p.Type.String() {
			t.Errorf("registry param Patient.%s (%s) not advertised as such: %q", p.Name, p.Type, params[p.Name])
		}
	}
	if len(params) != len(fhir.Params("Patient"))+2 {
		t.Errorf("Patient advertises %d params, registry has %d (+_id, _lastUpdated)", len(params), len(fhir.Params("Patient")))
	}
	var incs []string
	for _, v := range pat["searchInclude"].([]any) {
		incs = append(incs, v.(string))
	}
	if !slices.Contains(incs, "Patient:organization") || !slices.Contains(incs, "Patient:general-practitioner") {
		t.Errorf("Patient searchInclude %v", incs)
	}
	var inter []string
	for _, i := range pat["interaction"].([]any) {
		inter = append(inter, i.(map[string]any)["code"].(string))
	}
	for _, want := range []string{"read", "vread", "update", "delete", "history-instance", "create", "search-type"} {
		if !slices.Contains(inter, want) {
			t.Errorf("Patient interaction %s missing", want)
		}
	}
	// Metadata also answers with Accept: application/json and */*.
	for _, acc := range []string{"application/json", "*/*", "application/fhir+json; fhirVersion=4.0", "text/html,application/xhtml+xml,*/*;q=0.8"} {
		mustStatus(t, s.get(t, "/fhir/metadata", "Accept", acc), http.StatusOK, "metadata Accept "+acc)
	}
}

func TestCRUDLifecycle(t *testing.T) {
	s := newTestServer(t, Options{})
	body := `{"resourceType":"Patient","id":"client-chosen","meta":{"tag":[{"system":"urn:t","code":"keep"}],"versionId":"77"},"name":[{"family":"Lefèvre","given":["Hélène"]}],"gender":"female","birthDate":"1980-03-01"}`
	r := s.do(t, http.MethodPost, "/fhir/Patient", []byte(body))
	mustStatus(t, r, http.StatusCreated, "create")
	m := decode(t, r.Body)
	id := m["id"].(string)
	if id == "client-chosen" || !uuidV4.MatchString(id) {
		t.Fatalf("created id %q: want a server-assigned random UUID", id)
	}
	if loc := r.Header.Get("Location"); loc != s.URL+"/fhir/Patient/"+id+"/_history/1" {
		t.Errorf("Location %q", loc)
	}
	if et := r.Header.Get("ETag"); et != `W/"1"` {
		t.Errorf("ETag %q", et)
	}
	if r.Header.Get("Last-Modified") == "" {
		t.Errorf("no Last-Modified")
	}
	meta := m["meta"].(map[string]any)
	if meta["versionId"] != "1" || meta["lastUpdated"] == nil {
		t.Errorf("meta %v", meta)
	}
	if tags, _ := meta["tag"].([]any); len(tags) != 1 {
		t.Errorf("client meta.tag lost: %v", meta)
	}

	path := "/fhir/Patient/" + id
	rd := s.get(t, path)
	mustStatus(t, rd, http.StatusOK, "read")
	if string(rd.Body) != string(r.Body) || rd.Header.Get("ETag") != `W/"1"` {
		t.Errorf("read differs from create: %s", rd)
	}

	// Update with the right If-Match.
	upd := strings.Replace(body, `"client-chosen"`, `"`+id+`"`, 1)
	upd = strings.Replace(upd, `"female"`, `"other"`, 1)
	u := s.do(t, http.MethodPut, path, []byte(upd), "If-Match", `W/"1"`)
	mustStatus(t, u, http.StatusOK, "update with If-Match")
	if et := u.Header.Get("ETag"); et != `W/"2"` {
		t.Errorf("update ETag %q", et)
	}
	if u.Header.Get("Location") != "" {
		t.Errorf("an update of an existing resource has a Location")
	}
	if g := decode(t, u.Body)["gender"]; g != "other" {
		t.Errorf("updated gender %v", g)
	}
	// Stale If-Match.
	mustStatus(t, s.do(t, http.MethodPut, path, []byte(upd), "If-Match", `W/"1"`), http.StatusPreconditionFailed, "stale If-Match")
	// Same content, no If-Match: no new version.
	same := s.do(t, http.MethodPut, path, []byte(upd))
	mustStatus(t, same, http.StatusOK, "identical update")
	if et := same.Header.Get("ETag"); et != `W/"2"` {
		t.Errorf("identical update made version %s", et)
	}

	// vread both versions.
	v1 := s.get(t, path+"/_history/1")
	mustStatus(t, v1, http.StatusOK, "vread 1")
	if decode(t, v1.Body)["gender"] != "female" || v1.Header.Get("ETag") != `W/"1"` {
		t.Errorf("vread 1: %s", v1)
	}
	v2 := s.get(t, path+"/_history/2")
	mustStatus(t, v2, http.StatusOK, "vread 2")
	if decode(t, v2.Body)["gender"] != "other" {
		t.Errorf("vread 2: %s", v2)
	}
	mustStatus(t, s.get(t, path+"/_history/3"), http.StatusNotFound, "vread 3 before delete")

	// History.
	h := s.get(t, path+"/_history")
	mustStatus(t, h, http.StatusOK, "history")
	hb := decode(t, h.Body)
	if hb["type"] != "history" || num(hb["total"]) != 2 {
		t.Errorf("history bundle type %v total %v", hb["type"], hb["total"])
	}
	es := bundleEntries(t, hb)
	if len(es) != 2 {
		t.Fatalf("history has %d entries", len(es))
	}
	wantHist := []struct{ method, status, etag, gender string }{{"PUT", "200 OK", `W/"2"`, "other"}, {"POST", "201 Created", `W/"1"`, "female"}}
	for i, w := range wantHist {
		req := es[i]["request"].(map[string]any)
		rs := es[i]["response"].(map[string]any)
		res := es[i]["resource"].(map[string]any)
		if req["method"] != w.method || req["url"] != "Patient/"+id || rs["status"] != w.status || rs["etag"] != w.etag || res["gender"] != w.gender {
			t.Errorf("history entry %d: request %v response %v gender %v", i, req, rs, res["gender"])
		}
		if es[i]["fullUrl"] != s.URL+"/fhir/Patient/"+id {
			t.Errorf("history entry %d fullUrl %v", i, es[i]["fullUrl"])
		}
	}
	if es := bundleEntries(t, decode(t, s.get(t, path+"/_history?_count=1").Body)); len(es) != 1 || es[0]["resource"].(map[string]any)["gender"] != "other" {
		t.Errorf("_history?_count=1 should give the newest version only")
	}

	// Delete with If-Match, then 410.
	d := s.do(t, http.MethodDelete, path, nil, "If-Match", `W/"2"`)
	mustStatus(t, d, http.StatusNoContent, "delete")
	if d.Header.Get("ETag") != `W/"3"` || len(d.Body) != 0 {
		t.Errorf("delete: ETag %q body %q", d.Header.Get("ETag"), d.Body)
	}
	g := s.get(t, path)
	mustStatus(t, g, http.StatusGone, "read after delete")
	outcomeOf(t, g.Body)
	mustStatus(t, s.get(t, path+"/_history/3"), http.StatusGone, "vread of the deletion")
	mustStatus(t, s.get(t, path+"/_history/2"), http.StatusOK, "vread before the deletion")
	hd := bundleEntries(t, decode(t, s.get(t, path+"/_history").Body))
	if len(hd) != 3 || hd[0]["request"].(map[string]any)["method"] != "DELETE" || hd[0]["resource"] != nil {
		t.Errorf("history after delete: %v", hd)
	}
	if n := num(decode(t, s.get(t, "/fhir/Patient?_id="+id).Body)["total"]); n != 0 {
		t.Errorf("a deleted patient is still found by search")
	}
	// Deleting again is idempotent; re-creating with PUT gives version 4.
	d2 := s.do(t, http.MethodDelete, path, nil)
	mustStatus(t, d2, http.StatusNoContent, "second delete")
	if d2.Header.Get("ETag") != `W/"3"` {
		t.Errorf("second delete made a version: %s", d2.Header.Get("ETag"))
	}
	rc := s.do(t, http.MethodPut, path, []byte(upd))
	mustStatus(t, rc, http.StatusCreated, "re-create after delete")
	if rc.Header.Get("ETag") != `W/"4"` || !strings.HasSuffix(rc.Header.Get("Location"), "/_history/4") {
		t.Errorf("re-create: ETag %s Location %s", rc.Header.Get("ETag"), rc.Header.Get("Location"))
	}
}

func TestRandomIDs(t *testing.T) {
	s := newTestServer(t, Options{})
	var ids []string
	for range 20 {
		ids = append(ids, s.create(t, "Patient", `{"resourceType":"Patient"}`))
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if !uuidV4.MatchString(id) {
			t.Errorf("id %q is not a random (v4) UUID", id)
		}
		if seen[id] {
			t.Errorf("id %q assigned twice", id)
		}
		seen[id] = true
	}
	if slices.IsSorted(ids) {
		t.Errorf("20 ids came out in increasing order: sequential, not random: %v", ids)
	}
	// No long shared prefix: consecutive ids differ early.
	for i := 1; i < len(ids); i++ {
		if ids[i][:8] == ids[i-1][:8] {
			t.Errorf("consecutive ids share their first 8 characters: %s %s", ids[i-1], ids[i])
		}
	}
}

func TestPreferReturn(t *testing.T) {
	s := newTestServer(t, Options{BaseURL: "https://ehr.example/fhir/"})
	r := s.do(t, http.MethodPost, "/fhir/Patient", []byte(`{"resourceType":"Patient"}`), "Prefer", "return=minimal")
	mustStatus(t, r, http.StatusCreated, "create, return=minimal")
	if len(r.Body) != 0 {
		t.Errorf("return=minimal body %q", r.Body)
	}
	loc := r.Header.Get("Location")
	if !strings.HasPrefix(loc, "https://ehr.example/fhir/Patient/") || !strings.HasSuffix(loc, "/_history/1") || r.Header.Get("ETag") != `W/"1"` {
		t.Fatalf("return=minimal: Location %q ETag %q", loc, r.Header.Get("ETag"))
	}
	id := strings.TrimSuffix(strings.TrimPrefix(loc, "https://ehr.example/fhir/Patient/"), "/_history/1")
	mustStatus(t, s.get(t, "/fhir/Patient/"+id), http.StatusOK, "read the minimal create")

	o := s.do(t, http.MethodPut, "/fhir/Patient/"+id, []byte(`{"resourceType":"Patient","id":"`+id+`","active":true}`), "Prefer", `return="OperationOutcome"`)
	mustStatus(t, o, http.StatusOK, "update, return=OperationOutcome")
	oo := decode(t, o.Body)
	if oo["resourceType"] != "OperationOutcome" || o.Header.Get("ETag") != `W/"2"` {
		t.Errorf("return=OperationOutcome: %s", o)
	}
	rep := s.do(t, http.MethodPut, "/fhir/Patient/"+id, []byte(`{"resourceType":"Patient","id":"`+id+`","active":false}`), "Prefer", "return=representation")
	if decode(t, rep.Body)["active"] != false {
		t.Errorf("return=representation: %s", rep)
	}
	// Search links use the configured base.
	sr := decode(t, s.get(t, "/fhir/Patient?_count=1").Body)
	if self := linkURL(sr, "self"); !strings.HasPrefix(self, "https://ehr.example/fhir/Patient") {
		t.Errorf("self link %q ignores BaseURL", self)
	}
}

// seedPatients creates n patients with family "Pager" and distinct birth
// dates in one transaction and returns their ids.
func seedPatients(t *testing.T, s *testServer, family string, n int) []string {
	var entries []string
	for i := range n {
		entries = append(entries, fmt.Sprintf(`{"resource":{"resourceType":"Patient","name":[{"family":%q,"given":["G%03d"]}],"birthDate":"%04d-01-01","gender":"unknown"},"request":{"method":"POST","url":"Patient"}}`, family, i, 1900+(i*37)%100))
	}
	r := s.do(t, http.MethodPost, "/fhir", []byte(txJSON("transaction", entries...)))
	mustStatus(t, r, http.StatusOK, "seed transaction")
	var ids []string
	for _, e := range bundleEntries(t, decode(t, r.Body)) {
		ids = append(ids, e["resource"].(map[string]any)["id"].(string))
	}
	if len(ids) != n {
		t.Fatalf("seeded %d of %d", len(ids), n)
	}
	return ids
}

func TestSearchBundleAndPaging(t *testing.T) {
	s := newTestServer(t, Options{})
	ids := seedPatients(t, s, "Pager", 23)
	seedPatients(t, s, "Other", 3)

	first := s.get(t, "/fhir/Patient?family=pager&_count=5")
	mustStatus(t, first, http.StatusOK, "search")
	if ct := first.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Errorf("Content-Type %q", ct)
	}
	b := decode(t, first.Body)
	if b["type"] != "searchset" || num(b["total"]) != 23 {
		t.Fatalf("searchset total %v", b["total"])
	}
	self := linkURL(b, "self")
	if u, err := url.Parse(self); err != nil || u.Path != "/fhir/Patient" || u.Query().Get("family") != "pager" || u.Query().Get("_count") != "5" {
		t.Errorf("self link %q", self)
	}
	if linkURL(b, "previous") != "" {
		t.Errorf("first page has a previous link")
	}
	for _, e := range bundleEntries(t, b) {
		if !strings.HasPrefix(e["fullUrl"].(string), s.URL+"/fhir/Patient/") {
			t.Errorf("fullUrl %v", e["fullUrl"])
		}
	}

	// Follow next links: every match exactly once, in pages of 5.
	var got []string
	pages := 0
	page := b
	for {
		pages++
		if pages > 10 {
			t.Fatalf("paging does not end")
		}
		es := bundleEntries(t, page)
		if n := len(es); n != 5 && !(pages == 5 && n == 3) {
			t.Errorf("page %d has %d entries", pages, n)
		}
		if num(page["total"]) != 23 {
			t.Errorf("page %d total %v", pages, page["total"])
		}
		got = append(got, entryIDs(es, "match")...)
		if pages > 1 && linkURL(page, "previous") == "" {
			t.Errorf("page %d has no previous link", pages)
		}
		next := linkURL(page, "next")
		if next == "" {
			break
		}
		nu, err := url.Parse(next)
		if err != nil || nu.Query().Get("_cursor") == "" || nu.Query().Get("family") != "" || len(nu.Query()) != 1 {
			t.Fatalf("next link %q is not an opaque cursor", next)
		}
		r := s.get(t, pathOf(t, next))
		mustStatus(t, r, http.StatusOK, "next page")
		page = decode(t, r.Body)
		if linkURL(page, "self") != next {
			t.Errorf("page %d self link %q is not the link that fetched it %q", pages+1, linkURL(page, "self"), next)
		}
	}
	if pages != 5 {
		t.Errorf("%d pages, want 5", pages)
	}
	want := make([]string, len(ids))
	for i, id := range ids {
		want[i] = "Patient/" + id
	}
	sortedGot := slices.Clone(got)
	sort.Strings(sortedGot)
	sort.Strings(want)
	if !slices.Equal(sortedGot, want) {
		t.Errorf("paging returned %d ids (%d distinct), want each of the 23 exactly once", len(got), len(slices.Compact(sortedGot)))
	}

	// _sort=birthdate orders the matches; -birthdate reverses.
	asc := entryIDs(bundleEntries(t, decode(t, s.get(t, "/fhir/Patient?family=pager&_sort=birthdate&_count=50").Body)), "match")
	desc := entryIDs(bundleEntries(t, decode(t, s.get(t, "/fhir/Patient?family=pager&_sort=-birthdate&_count=50").Body)), "match")
	if len(asc) != 23 || !slices.Equal(asc, reversed(desc)) {
		t.Errorf("_sort=birthdate %v is not the reverse of -birthdate %v", asc, desc)
	}
	prev := ""
	for _, ref := range asc {
		bd := decode(t, s.get(t, "/fhir/"+ref).Body)["birthDate"].(string)
		if bd < prev {
			t.Errorf("_sort=birthdate out of order: %s after %s", bd, prev)
		}
		prev = bd
	}

	// _summary=count: the total only.
	c := decode(t, s.get(t, "/fhir/Patient?family=pager&_summary=count").Body)
	if num(c["total"]) != 23 || c["entry"] != nil || linkURL(c, "next") != "" {
		t.Errorf("_summary=count: total %v entry %v", c["total"], c["entry"] != nil)
	}
	// _count=0 too.
	z := decode(t, s.get(t, "/fhir/Patient?family=pager&_count=0").Body)
	if num(z["total"]) != 23 || z["entry"] != nil {
		t.Errorf("_count=0: total %v, entries present %v", z["total"], z["entry"] != nil)
	}

	// An offset past the end (even one that would overflow) has no next link.
	for _, off := range []string{"23", "1000", "9223372036854775807", "9223372036854775800"} {
		o := s.get(t, "/fhir/Patient?family=pager&_count=5&_offset="+off)
		mustStatus(t, o, http.StatusOK, "_offset="+off)
		ob := decode(t, o.Body)
		if next := linkURL(ob, "next"); next != "" || ob["entry"] != nil || num(ob["total"]) != 23 {
			t.Errorf("_offset=%s: next link %q, entries %v, total %v", off, next, ob["entry"] != nil, ob["total"])
		}
	}
	if ob := decode(t, s.get(t, "/fhir/Patient?family=pager&_count=5&_offset=20").Body); linkURL(ob, "next") != "" || len(bundleEntries(t, ob)) != 3 {
		t.Errorf("_offset=20: the last page has a next link or not 3 entries")
	}
	if ob := decode(t, s.get(t, "/fhir/Patient?family=pager&_count=5&_offset=17").Body); linkURL(ob, "next") == "" || len(bundleEntries(t, ob)) != 5 {
		t.Errorf("_offset=17: want 5 entries and a next link")
	}

	// POST _search with a form body gives the same first page as GET.
	p := s.do(t, http.MethodPost, "/fhir/Patient/_search", []byte("family=pager&_count=5"), "Content-Type", "application/x-www-form-urlencoded")
	mustStatus(t, p, http.StatusOK, "POST _search")
	pb := decode(t, p.Body)
	if num(pb["total"]) != 23 || !slices.Equal(entryIDs(bundleEntries(t, pb), "match"), got[:5]) {
		t.Errorf("POST _search differs from GET: total %v", pb["total"])
	}
	// Query string and form body combine (AND).
	q := s.do(t, http.MethodPost, "/fhir/Patient/_search?family=pager", []byte("birthdate=ge1950&_summary=count"), "Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	mustStatus(t, q, http.StatusOK, "POST _search with query and body")
	wantN := 0
	for i := range 23 {
		if 1900+(i*37)%100 >= 1950 {
			wantN++
		}
	}
	if n := num(decode(t, q.Body)["total"]); n != wantN {
		t.Errorf("family=pager AND birthdate>=1950: total %d, want %d", n, wantN)
	}
	// The next link of a POST _search works with GET.
	if next := linkURL(pb, "next"); next == "" {
		t.Errorf("POST _search has no next link")
	} else {
		n := decode(t, s.get(t, pathOf(t, next)).Body)
		if !slices.Equal(entryIDs(bundleEntries(t, n), "match"), got[5:10]) {
			t.Errorf("next page of POST _search differs from GET's")
		}
	}
}

func reversed(s []string) []string {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

func TestSearchCountClamp(t *testing.T) {
	s := newTestServer(t, Options{})
	seedPatients(t, s, "Many", fhir.MaxCount+7)
	b := decode(t, s.get(t, "/fhir/Patient?_count=100000").Body)
	if num(b["total"]) != fhir.MaxCount+7 {
		t.Fatalf("total %v", b["total"])
	}
	if n := len(bundleEntries(t, b)); n != fhir.MaxCount {
		t.Errorf("_count=100000 gave %d entries, want the maximum %d", n, fhir.MaxCount)
	}
	next := linkURL(b, "next")
	if next == "" {
		t.Fatalf("no next link after a clamped page")
	}
	n := decode(t, s.get(t, pathOf(t, next)).Body)
	if got := len(bundleEntries(t, n)); got != 7 {
		t.Errorf("second page has %d entries, want 7", got)
	}
	// Default page size.
	d := decode(t, s.get(t, "/fhir/Patient").Body)
	if n := len(bundleEntries(t, d)); n != fhir.DefaultCount {
		t.Errorf("default page has %d entries, want %d", n, fhir.DefaultCount)
	}
}

func TestSearchIncludeRevinclude(t *testing.T) {
	s := newTestServer(t, Options{})
	s.put(t, "Organization", "org", `{"resourceType":"Organization","id":"org","name":"Hôpital"}`)
	s.put(t, "Practitioner", "doc", `{"resourceType":"Practitioner","id":"doc","name":[{"family":"House"}]}`)
	s.put(t, "Patient", "pa", `{"resourceType":"Patient","id":"pa","managingOrganization":{"reference":"Organization/org"},"generalPractitioner":[{"reference":"Practitioner/doc"}]}`)
	s.put(t, "Patient", "pb", `{"resourceType":"Patient","id":"pb"}`)
	enc := func(id, pat string) string {
		return `{"resourceType":"Encounter","id":"` + id + `","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/` + pat + `"},"serviceProvider":{"reference":"Organization/org"},"participant":[{"individual":{"reference":"Practitioner/doc"}}]}`
	}
	s.put(t, "Encounter", "ea", enc("ea", "pa"))
	s.put(t, "Encounter", "eb", enc("eb", "pb"))
	s.put(t, "Observation", "oa", `{"resourceType":"Observation","id":"oa","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/pa"},"encounter":{"reference":"Encounter/ea"}}`)

	type want struct{ match, include []string }
	check := func(path string, w want) {
		t.Helper()
		r := s.get(t, path)
		mustStatus(t, r, http.StatusOK, path)
		b := decode(t, r.Body)
		es := bundleEntries(t, b)
		m, inc := entryIDs(es, "match"), entryIDs(es, "include")
		sort.Strings(m)
		sort.Strings(inc)
		if !slices.Equal(m, w.match) || !slices.Equal(inc, w.include) {
			t.Errorf("%s: match %v include %v, want %v %v", path, m, inc, w.match, w.include)
		}
		if num(b["total"]) != len(w.match) {
			t.Errorf("%s: total %v counts included resources", path, b["total"])
		}
		// Matches come before includes.
		sawInclude := false
		for _, e := range es {
			mode := e["search"].(map[string]any)["mode"]
			if mode == "include" {
				sawInclude = true
			} else if mode == "match" && sawInclude {
				t.Errorf("%s: a match after an include", path)
			}
		}
	}
	check("/fhir/Encounter?_id=ea&_include=Encounter:patient", want{[]string{"Encounter/ea"}, []string{"Patient/pa"}})
	check("/fhir/Encounter?_id=ea&_include=Encounter:subject", want{[]string{"Encounter/ea"}, []string{"Patient/pa"}})
	check("/fhir/Encounter?_include=Encounter:patient", want{[]string{"Encounter/ea", "Encounter/eb"}, []string{"Patient/pa", "Patient/pb"}})
	check("/fhir/Encounter?_id=ea,eb&_include=Encounter:service-provider&_include=Encounter:participant:Practitioner",
		want{[]string{"Encounter/ea", "Encounter/eb"}, []string{"Organization/org", "Practitioner/doc"}})
	check("/fhir/Encounter?_id=ea&_include=Encounter:participant:RelatedPerson", want{[]string{"Encounter/ea"}, nil})
	check("/fhir/Patient?_id=pa&_revinclude=Encounter:patient", want{[]string{"Patient/pa"}, []string{"Encounter/ea"}})
	check("/fhir/Patient?_id=pa&_revinclude=Encounter:patient&_revinclude=Observation:subject", want{[]string{"Patient/pa"}, []string{"Encounter/ea", "Observation/oa"}})
	check("/fhir/Patient?_id=pb&_revinclude=Observation:patient", want{[]string{"Patient/pb"}, nil})
	check("/fhir/Patient?_id=pa&_include=Patient:organization&_include=Patient:general-practitioner&_revinclude=Encounter:patient",
		want{[]string{"Patient/pa"}, []string{"Encounter/ea", "Organization/org", "Practitioner/doc"}})
	check("/fhir/Organization?_revinclude=Patient:organization&_revinclude=Encounter:service-provider",
		want{[]string{"Organization/org"}, []string{"Encounter/ea", "Encounter/eb", "Patient/pa"}})
	// Reference searches in their various forms.
	check("/fhir/Encounter?subject=Patient/pa", want{[]string{"Encounter/ea"}, nil})
	check("/fhir/Encounter?patient=pa", want{[]string{"Encounter/ea"}, nil})
	check("/fhir/Encounter?subject:Patient=pb", want{[]string{"Encounter/eb"}, nil})
	check("/fhir/Observation?encounter=ea", want{[]string{"Observation/oa"}, nil})
	check("/fhir/Patient?organization=org&_summary=false", want{[]string{"Patient/pa"}, nil})
	check("/fhir/Patient?organization:missing=true", want{[]string{"Patient/pb"}, nil})
	// A deleted target is not included.
	mustStatus(t, s.do(t, http.MethodDelete, "/fhir/Observation/oa", nil), http.StatusNoContent, "delete oa")
	check("/fhir/Patient?_id=pa&_revinclude=Observation:subject", want{[]string{"Patient/pa"}, nil})
}

func TestTransactionURNReferences(t *testing.T) {
	s := newTestServer(t, Options{})
	const (
		pu = "urn:uuid:6f1e2b8a-0c1d-4a5e-9f00-000000000001"
		eu = "urn:uuid:6f1e2b8a-0c1d-4a5e-9f00-000000000002"
	)
	bundle := txJSON("transaction",
		`{"fullUrl":"`+pu+`","resource":{"resourceType":"Patient","name":[{"family":"Urn"}]},"request":{"method":"POST","url":"Patient"}}`,
		`{"fullUrl":"`+eu+`","resource":{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"`+pu+`"},"serviceProvider":{"reference":"Organization/tx-org"}},"request":{"method":"POST","url":"Encounter"}}`,
		`{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"`+pu+`"},"encounter":{"reference":"`+eu+`"},"hasMember":[{"reference":"#not-rewritten"}]},"request":{"method":"POST","url":"Observation"}}`,
		`{"fullUrl":"https://other.example/fhir/Organization/tx-org","resource":{"resourceType":"Organization","id":"tx-org","name":"Tx"},"request":{"method":"PUT","url":"Organization/tx-org"}}`,
	)
	r := s.do(t, http.MethodPost, "/fhir", []byte(bundle))
	mustStatus(t, r, http.StatusOK, "transaction")
	b := decode(t, r.Body)
	if b["type"] != "transaction-response" {
		t.Errorf("type %v", b["type"])
	}
	es := bundleEntries(t, b)
	if len(es) != 4 {
		t.Fatalf("%d response entries", len(es))
	}
	var refs []string
	for i, e := range es {
		rs := e["response"].(map[string]any)
		if rs["status"] != "201 Created" {
			t.Errorf("entry %d status %v", i, rs["status"])
		}
		res := e["resource"].(map[string]any)
		ref := res["resourceType"].(string) + "/" + res["id"].(string)
		if rs["location"] != ref+"/_history/1" || rs["etag"] != `W/"1"` || rs["lastModified"] == nil {
			t.Errorf("entry %d response %v", i, rs)
		}
		if e["fullUrl"] != s.URL+"/fhir/"+ref {
			t.Errorf("entry %d fullUrl %v", i, e["fullUrl"])
		}
		refs = append(refs, ref)
	}
	if !uuidV4.MatchString(strings.TrimPrefix(refs[0], "Patient/")) || refs[3] != "Organization/tx-org" {
		t.Errorf("ids %v", refs)
	}
	enc := decode(t, s.get(t, "/fhir/"+refs[1]).Body)
	if got := enc["subject"].(map[string]any)["reference"]; got != refs[0] {
		t.Errorf("Encounter.subject %v, want rewritten to %s", got, refs[0])
	}
	obs := decode(t, s.get(t, "/fhir/"+refs[2]).Body)
	if obs["subject"].(map[string]any)["reference"] != refs[0] || obs["encounter"].(map[string]any)["reference"] != refs[1] {
		t.Errorf("Observation references not rewritten: %v %v", obs["subject"], obs["encounter"])
	}
	if obs["hasMember"].([]any)[0].(map[string]any)["reference"] != "#not-rewritten" {
		t.Errorf("a contained reference was touched")
	}
	// The rewritten references are indexed.
	n := decode(t, s.get(t, "/fhir/Observation?subject="+refs[0]+"&encounter="+refs[1]).Body)
	if num(n["total"]) != 1 {
		t.Errorf("search by rewritten references: total %v", n["total"])
	}
	// Prefer: return=minimal drops the resources from the response.
	m := s.do(t, http.MethodPost, "/fhir", []byte(txJSON("transaction", postEntry("minimal", ""))), "Prefer", "return=minimal")
	mustStatus(t, m, http.StatusOK, "minimal transaction")
	me := bundleEntries(t, decode(t, m.Body))
	if len(me) != 1 || me[0]["resource"] != nil || me[0]["response"].(map[string]any)["location"] == nil {
		t.Errorf("return=minimal transaction entries %v", me)
	}
	// An empty transaction is fine and writes nothing.
	e := s.do(t, http.MethodPost, "/fhir", []byte(`{"resourceType":"Bundle","type":"transaction"}`))
	mustStatus(t, e, http.StatusOK, "empty transaction")
}

// TestTransactionAllOrNothing: an entry failing late (after valid entries,
// including updates and deletes of existing resources) leaves the store as
// it was.
func TestTransactionAllOrNothing(t *testing.T) {
	s := newTestServer(t, Options{})
	s.put(t, "Patient", "keep", `{"resourceType":"Patient","id":"keep","gender":"female"}`)
	s.put(t, "Patient", "victim", `{"resourceType":"Patient","id":"victim"}`)
	bundle := txJSON("transaction",
		postEntry("aon", ""),
		`{"resource":{"resourceType":"Patient","id":"keep","gender":"male"},"request":{"method":"PUT","url":"Patient/keep"}}`,
		`{"request":{"method":"DELETE","url":"Patient/victim"}}`,
		`{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/ghost"}},"request":{"method":"POST","url":"Observation"}}`,
	)
	r := s.do(t, http.MethodPost, "/fhir", []byte(bundle))
	mustStatus(t, r, http.StatusUnprocessableEntity, "transaction with a broken reference")
	outcomeOf(t, r.Body)
	nothingWritten("aon")(t, s)
	k := s.get(t, "/fhir/Patient/keep")
	if k.Header.Get("ETag") != `W/"1"` || decode(t, k.Body)["gender"] != "female" {
		t.Errorf("the PUT of a failed transaction was applied: %s", k)
	}
	mustStatus(t, s.get(t, "/fhir/Patient/victim"), http.StatusOK, "the DELETE of a failed transaction was applied")
	if n := num(decode(t, s.get(t, "/fhir/Observation?_summary=count").Body)["total"]); n != 0 {
		t.Errorf("%d observations written by a failed transaction", n)
	}
	// The same bundle without the bad entry commits all of it.
	ok := txJSON("transaction",
		postEntry("aon", ""),
		`{"resource":{"resourceType":"Patient","id":"keep","gender":"male"},"request":{"method":"PUT","url":"Patient/keep"}}`,
		`{"request":{"method":"DELETE","url":"Patient/victim"}}`,
	)
	r = s.do(t, http.MethodPost, "/fhir", []byte(ok))
	mustStatus(t, r, http.StatusOK, "valid transaction")
	es := bundleEntries(t, decode(t, r.Body))
	statuses := []string{}
	for _, e := range es {
		statuses = append(statuses, e["response"].(map[string]any)["status"].(string))
	}
	if !slices.Equal(statuses, []string{"201 Created", "200 OK", "204 No Content"}) {
		t.Errorf("statuses %v", statuses)
	}
	mustStatus(t, s.get(t, "/fhir/Patient/victim"), http.StatusGone, "deleted by the transaction")
	if decode(t, s.get(t, "/fhir/Patient/keep").Body)["gender"] != "male" {
		t.Errorf("PUT not applied")
	}
}

func TestBatchPartialFailures(t *testing.T) {
	s := newTestServer(t, Options{})
	s.put(t, "Patient", "b1", `{"resourceType":"Patient","id":"b1"}`)
	bundle := txJSON("batch",
		postEntry("batch-ok", ""),
		postEntry("batch-bad", `"gender":"M"`),
		`{"request":{"method":"DELETE","url":"Patient/nobody"}}`,
		`{"resource":{"resourceType":"Patient","id":"b2","gender":"male"},"request":{"method":"PUT","url":"Patient/b2"}}`,
		`{"resource":{"resourceType":"Patient","id":"b1","active":true},"request":{"method":"PUT","url":"Patient/b1","ifMatch":"W/\"5\""}}`,
		`{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/ghost"}},"request":{"method":"POST","url":"Observation"}}`,
		`{"request":{"method":"DELETE","url":"Patient/b1"}}`,
	)
	r := s.do(t, http.MethodPost, "/fhir", []byte(bundle))
	mustStatus(t, r, http.StatusOK, "batch")
	b := decode(t, r.Body)
	if b["type"] != "batch-response" {
		t.Errorf("type %v", b["type"])
	}
	es := bundleEntries(t, b)
	want := []struct {
		status string
		code   string
	}{{"201 Created", ""}, {"400 Bad Request", "invalid"}, {"404 Not Found", "not-found"}, {"201 Created", ""},
		{"412 Precondition Failed", "conflict"}, {"422 Unprocessable Entity", "processing"}, {"204 No Content", ""}}
	if len(es) != len(want) {
		t.Fatalf("%d entries, want %d", len(es), len(want))
	}
	for i, w := range want {
		rs := es[i]["response"].(map[string]any)
		if rs["status"] != w.status {
			t.Errorf("entry %d: status %v, want %s", i, rs["status"], w.status)
		}
		if w.code != "" {
			oo, _ := rs["outcome"].(map[string]any)
			b, _ := fhir.Marshal(oo)
			if is := outcomeOf(t, b); is["code"] != w.code {
				t.Errorf("entry %d: outcome code %v, want %s", i, is["code"], w.code)
			}
			if es[i]["resource"] != nil {
				t.Errorf("failed entry %d has a resource", i)
			}
		}
	}
	// The good entries were applied, the bad ones not.
	if n := num(decode(t, s.get(t, "/fhir/Patient?identifier=urn:test:marker|batch-ok&_summary=count").Body)["total"]); n != 1 {
		t.Errorf("batch-ok written %d times", n)
	}
	nothingWritten("batch-bad")(t, s)
	mustStatus(t, s.get(t, "/fhir/Patient/b2"), http.StatusOK, "b2 created by the batch")
	mustStatus(t, s.get(t, "/fhir/Patient/b1"), http.StatusGone, "b1 deleted by the batch")
	if n := num(decode(t, s.get(t, "/fhir/Observation?_summary=count").Body)["total"]); n != 0 {
		t.Errorf("the failing Observation was written")
	}
}

func TestSearchByIndexedValues(t *testing.T) {
	s := newTestServer(t, Options{})
	s.put(t, "Patient", "h", `{"resourceType":"Patient","id":"h","name":[{"family":"Lefèvre","given":["Hélène","Marie"]}],"gender":"female","birthDate":"1980-03-01",
		"telecom":[{"system":"phone","value":"+33 6 12 34 56 78"},{"system":"email","value":"Helene.Lefevre@Example.FR"}],
		"address":[{"city":"Saint-Étienne","postalCode":"42000"}],"identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":"280037512345678"}],
		"deceasedBoolean":false,"active":true}`)
	s.put(t, "Patient", "j", `{"resourceType":"Patient","id":"j","name":[{"family":"Dupont","given":["Jean"]}],"gender":"male","birthDate":"1975","deceasedDateTime":"2020-05-01T10:00:00+02:00"}`)
	for q, want := range map[string][]string{
		"family=LEFEVRE":       {"h"},
		"family=lef":           {"h"},
		"family:exact=lefevre": {"h"},
		"family:exact=lef":     {},
		"family:contains=fev":  {"h"},
		"name=helene":          {"h"},
		"given=MARIE":          {"h"},
		"name=dup,lef":         {"h", "j"},
		"phone=0612345678":     {"h"},
		"phone=" + url.QueryEscape("+33612345678"):               {"h"},
		"email=helene.lefevre@example.fr":                        {"h"},
		"telecom=0612345678":                                     {"h"},
		"address-city=saint-etienne":                             {"h"},
		"address=42000":                                          {"h"},
		"identifier=urn:oid:1.2.250.1.213.1.4.8|280037512345678": {"h"},
		"identifier=280037512345678":                             {"h"},
		"identifier=urn:other|280037512345678":                   {},
		"identifier=urn:oid:1.2.250.1.213.1.4.8|":                {"h"},
		"gender=male":                                            {"j"},
		"birthdate=1980":                                         {"h"},
		"birthdate=1980-03":                                      {"h"},
		"birthdate=gt1979":                                       {"h"},
		"birthdate=lt1980-01-01":                                 {"j"},
		"birthdate=ge1975-06-01":                                 {"h", "j"}, // 1975 overlaps the range after June 1975
		"birthdate=ge1976":                                       {"h"},
		"birthdate=ne1980-03-01":                                 {"j"},
		"death-date=2020-05-01":                                  {"j"},
		"death-date=ge2020-05-01T09:00:00Z":                      {},
		"death-date=2020-05-01T08:00:00Z":                        {"j"},
		"deceased=true":                                          {"j"},
		"deceased=false":                                         {"h"},
		"active=true":                                            {"h"},
		"_id=h,j":                                                {"h", "j"},
		"_lastUpdated=ge2000-01-01":                              {"h", "j"},
		"_lastUpdated=lt2000-01-01":                              {},
	} {
		r := s.get(t, "/fhir/Patient?"+q+"&_sort=_id")
		if r.Status != http.StatusOK {
			t.Errorf("%s: %s", q, r)
			continue
		}
		var got []string
		for _, ref := range entryIDs(bundleEntries(t, decode(t, r.Body)), "match") {
			got = append(got, strings.TrimPrefix(ref, "Patient/"))
		}
		if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("%s: got %v, want %v", q, got, want)
		}
	}
}

// rawPut is a goroutine-safe PUT (no t.Fatal): status and ETag, or an error.
func rawPut(s *testServer, path, body string, hdr ...string) (int, string, error) {
	req, err := http.NewRequest(http.MethodPut, s.URL+path, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := s.Client().Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	_, err = io.Copy(io.Discard, res.Body)
	return res.StatusCode, res.Header.Get("ETag"), err
}

// TestConcurrentUpdates: concurrent writers to one resource never get a 5xx,
// never lose an update silently (every success is its own version) and
// If-Match lets exactly one of several racing writers through.
func TestConcurrentUpdates(t *testing.T) {
	s := newTestServer(t, Options{})
	const workers, each = 8, 6
	body := func(id string, w, i int) string {
		return fmt.Sprintf(`{"resourceType":"Patient","id":%q,"name":[{"family":"W%d","given":["I%d"]}]}`, id, w, i)
	}

	type result struct {
		status int
		etag   string
		err    error
	}
	run := func(n int, f func(w int) result) []result {
		out := make([]result, n)
		var wg sync.WaitGroup
		for w := range n {
			wg.Go(func() { out[w] = f(w) })
		}
		wg.Wait()
		return out
	}

	// 1. Racing update-as-create of a new id: exactly one 201.
	res := run(workers, func(w int) result {
		st, et, err := rawPut(s, "/fhir/Patient/race", body("race", w, 0))
		return result{st, et, err}
	})
	created := 0
	for _, r := range res {
		if r.err != nil || r.status >= 500 {
			t.Fatalf("racing create: %d %v", r.status, r.err)
		}
		switch r.status {
		case http.StatusCreated:
			created++
		case http.StatusOK, http.StatusConflict:
		default:
			t.Errorf("racing create: status %d", r.status)
		}
	}
	if created != 1 {
		t.Errorf("%d racing PUTs created the resource", created)
	}

	// 2. Many writers without If-Match: each success is a distinct version.
	var mu sync.Mutex
	versions := map[string]bool{}
	oks := 0
	for _, r := range res {
		if r.status == http.StatusOK || r.status == http.StatusCreated {
			versions[r.etag] = true
			oks++
		}
	}
	res = run(workers, func(w int) result {
		for i := 1; i <= each; i++ {
			st, et, err := rawPut(s, "/fhir/Patient/race", body("race", w, i))
			if err != nil || st >= 500 {
				return result{st, et, err}
			}
			if st == http.StatusOK {
				mu.Lock()
				if versions[et] {
					mu.Unlock()
					return result{-1, et, fmt.Errorf("version %s acknowledged twice", et)}
				}
				versions[et] = true
				oks++
				mu.Unlock()
			} else if st != http.StatusConflict {
				return result{st, et, fmt.Errorf("status %d", st)}
			}
		}
		return result{status: http.StatusOK}
	})
	for _, r := range res {
		if r.err != nil || r.status >= 500 {
			t.Fatalf("concurrent updates: %d %v", r.status, r.err)
		}
	}
	cur := s.get(t, "/fhir/Patient/race")
	if want := fmt.Sprintf(`W/"%d"`, oks); cur.Header.Get("ETag") != want {
		t.Errorf("current version %s after %d acknowledged writes", cur.Header.Get("ETag"), oks)
	}
	h := decode(t, s.get(t, "/fhir/Patient/race/_history?_count=500").Body)
	if num(h["total"]) != oks || len(bundleEntries(t, h)) != oks {
		t.Errorf("history has %v versions, %d writes were acknowledged", h["total"], oks)
	}

	// 3. Racing writers with the same If-Match: exactly one wins.
	ifm := cur.Header.Get("ETag")
	res = run(workers, func(w int) result {
		st, et, err := rawPut(s, "/fhir/Patient/race", body("race", w, 99), "If-Match", ifm)
		return result{st, et, err}
	})
	wins := 0
	for _, r := range res {
		switch {
		case r.err != nil || r.status >= 500:
			t.Fatalf("If-Match race: %d %v", r.status, r.err)
		case r.status == http.StatusOK:
			wins++
		case r.status != http.StatusPreconditionFailed:
			t.Errorf("If-Match race: status %d", r.status)
		}
	}
	if wins != 1 {
		t.Errorf("%d writers with If-Match %s succeeded, want exactly 1", wins, ifm)
	}
}
