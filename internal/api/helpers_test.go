package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"carnet/internal/audit"
	"carnet/internal/store"
	"carnet/internal/store/sqlite"
)

// testServer is a Carnet API over a fresh SQLite store, served on loopback.
type testServer struct {
	*httptest.Server
	st store.Store
}

func newTestServer(t testing.TB, opt Options) *testServer {
	t.Helper()
	st, err := sqlite.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	if opt.Auth == nil {
		opt.InsecureOpen = true // the FHIR mechanics; security_test.go covers access
	}
	srv := httptest.NewServer(New(st, opt))
	t.Cleanup(func() {
		srv.Close()
		st.Close()
	})
	return &testServer{Server: srv, st: st}
}

// resp is a fully read HTTP response.
type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r *resp) String() string {
	b := r.Body
	if len(b) > 600 {
		b = append(b[:600:600], "..."...)
	}
	return http.StatusText(r.Status) + " " + string(b)
}

// do sends one request. hdr are name, value pairs; POST and PUT bodies get
// Content-Type application/fhir+json unless hdr sets one (value "" removes
// it).
func (s *testServer) do(t testing.TB, method, path string, body []byte, hdr ...string) *resp {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	return s.doReader(t, method, path, rd, hdr...)
}

func (s *testServer) doReader(t testing.TB, method, path string, body io.Reader, hdr ...string) *resp {
	t.Helper()
	u := path
	if !strings.HasPrefix(path, "http") {
		u = s.URL + path
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatalf("NewRequest %s %s: %v", method, path, err)
	}
	if method == http.MethodPost || method == http.MethodPut {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	if len(hdr)%2 != 0 {
		t.Fatalf("odd header list %q", hdr)
	}
	for i := 0; i < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := s.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return &resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

func (s *testServer) get(t testing.TB, path string, hdr ...string) *resp {
	t.Helper()
	return s.do(t, http.MethodGet, path, nil, hdr...)
}

// mustStatus fails the test unless r has status want.
func mustStatus(t testing.TB, r *resp, want int, what string) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("%s: status %d, want %d; body: %s", what, r.Status, want, r)
	}
}

// decode decodes a JSON object keeping numbers exact.
func decode(t testing.TB, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %.300s", err, b)
	}
	if dec.More() {
		t.Fatalf("trailing data after the JSON object: %.300s", b)
	}
	return m
}

// create POSTs a resource and returns its id.
func (s *testServer) create(t testing.TB, typ, body string) string {
	t.Helper()
	r := s.do(t, http.MethodPost, "/fhir/"+typ, []byte(body))
	mustStatus(t, r, http.StatusCreated, "create "+typ)
	m := decode(t, r.Body)
	id, _ := m["id"].(string)
	if id == "" {
		t.Fatalf("created %s has no id: %s", typ, r)
	}
	return id
}

// put PUTs a resource with the given id (update-as-create allowed).
func (s *testServer) put(t testing.TB, typ, id, body string) *resp {
	t.Helper()
	r := s.do(t, http.MethodPut, "/fhir/"+typ+"/"+id, []byte(body))
	if r.Status != http.StatusCreated && r.Status != http.StatusOK {
		t.Fatalf("PUT %s/%s: %s", typ, id, r)
	}
	return r
}

// bundleEntries returns the entries of a Bundle response.
func bundleEntries(t testing.TB, m map[string]any) []map[string]any {
	t.Helper()
	if m["resourceType"] != "Bundle" {
		t.Fatalf("not a Bundle: %v", m["resourceType"])
	}
	raw, _ := m["entry"].([]any)
	out := make([]map[string]any, 0, len(raw))
	for _, e := range raw {
		em, ok := e.(map[string]any)
		if !ok {
			t.Fatalf("entry is not an object: %v", e)
		}
		out = append(out, em)
	}
	return out
}

// linkURL returns the url of the Bundle link with the given relation, or "".
func linkURL(m map[string]any, rel string) string {
	links, _ := m["link"].([]any)
	for _, l := range links {
		lm, _ := l.(map[string]any)
		if lm["relation"] == rel {
			s, _ := lm["url"].(string)
			return s
		}
	}
	return ""
}

// num reads a JSON number as an int (-1 if absent or not a number).
func num(v any) int {
	n, ok := v.(json.Number)
	if !ok {
		return -1
	}
	i, err := n.Int64()
	if err != nil {
		return -1
	}
	return int(i)
}

// entryIDs lists "Type/id" of the resources of entries with search.mode mode
// ("" for any).
func entryIDs(entries []map[string]any, mode string) []string {
	var out []string
	for _, e := range entries {
		if mode != "" {
			sm, _ := e["search"].(map[string]any)
			if sm["mode"] != mode {
				continue
			}
		}
		r, _ := e["resource"].(map[string]any)
		if r == nil {
			continue
		}
		out = append(out, r["resourceType"].(string)+"/"+r["id"].(string))
	}
	return out
}

// pathOf strips the scheme and host of an absolute link so it can be sent
// to the test server.
func pathOf(t testing.TB, link string) string {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatalf("bad link %q: %v", link, err)
	}
	return u.RequestURI()
}

// outcomeOf checks that b is an OperationOutcome with at least one issue
// carrying a code and diagnostics, and returns issue[0].
func outcomeOf(t testing.TB, b []byte) map[string]any {
	t.Helper()
	m := decode(t, b)
	if m["resourceType"] != "OperationOutcome" {
		t.Fatalf("body is not an OperationOutcome: %.300s", b)
	}
	issues, _ := m["issue"].([]any)
	if len(issues) == 0 {
		t.Fatalf("OperationOutcome without issue: %.300s", b)
	}
	is, _ := issues[0].(map[string]any)
	if c, _ := is["code"].(string); c == "" {
		t.Fatalf("issue[0] has no code: %.300s", b)
	}
	if d, _ := is["diagnostics"].(string); strings.TrimSpace(d) == "" {
		t.Fatalf("issue[0] has no diagnostics: %.300s", b)
	}
	if s, _ := is["severity"].(string); s == "" {
		t.Fatalf("issue[0] has no severity: %.300s", b)
	}
	return is
}

// auditLog opens an audit log over st with a witness in a temp directory.
func auditLog(t testing.TB, st *store.SQL) *audit.Log {
	t.Helper()
	l, err := audit.Open(context.Background(), st, t.TempDir(), nil)
	if err != nil {
		t.Fatalf("audit.Open: %v", err)
	}
	return l
}
