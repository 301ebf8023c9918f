package api

// Security tests over HTTP: a server wired with the real auth service,
// policy decision point and admin store (SQLite), a small world of two
// facilities, clinicians and patients, and a fake clock shared by the auth
// service and the policy. Every test attacks a feature and fails if it
// breaks; nothing depends on wall-clock timing.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"carnet/internal/auth"
	"carnet/internal/fhir"
	"carnet/internal/policy"
	"carnet/internal/record"
	"carnet/internal/store"
	"carnet/internal/store/sqlite"
)

// secClock is a fake clock, safe to read from the server's goroutines.
type secClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *secClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *secClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *secClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// Distinctive values: if any of these shows up in a response that must not
// disclose patient data, the data leaked.
const (
	famA   = "Zabriskiequorn" // Patient A (F1, GP D1)
	famB   = "Quillfeatherby" // Patient B (F1, nobody)
	famC   = "Vanderslootix"  // Patient C (F2, GP D1: not at D1's facility)
	obsTxt = "secret-heart-rate-marker"
)

type secAccount struct {
	username string
	password string
	secret   string
	recovery []string
	lastStep int64 // last TOTP step used for a login
}

// secWorld is a secured server over a small world.
type secWorld struct {
	clk  *secClock
	st   *store.SQL
	svc  *auth.Service
	pol  *policy.Decider
	srv  *Server
	http *httptest.Server

	F1, F2           string // Organizations
	D1, D2, N1, N2   string // Practitioners
	A, B, C          string // Patients
	ObsA, ObsB, ObsC string // Observations
	acct             map[string]*secAccount
}

func newSecWorld(t *testing.T, opts ...func(o *Options, st *store.SQL, clk *secClock)) *secWorld {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	// The API stamps break-the-glass grants with the wall clock, so the
	// fake clock starts at the wall clock (and only moves forward).
	clk := &secClock{t: time.Now().UTC().Truncate(time.Second)}
	svc := auth.NewService(st, auth.Options{Now: clk.Now})
	pol := policy.New(st)
	pol.Now = clk.Now
	o := Options{Auth: svc, Policy: pol, Admin: st, Audit: auditLog(t, st)}
	for _, f := range opts {
		f(&o, st, clk)
	}
	srv := New(st, o)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		hs.Close()
		st.Close()
	})
	w := &secWorld{clk: clk, st: st, svc: svc, pol: pol, srv: srv, http: hs, acct: map[string]*secAccount{}}

	w.F1 = w.seed(t, "Organization", `{"resourceType":"Organization","name":"Facility One"}`)
	w.F2 = w.seed(t, "Organization", `{"resourceType":"Organization","name":"Facility Two"}`)
	prac := func(fam string) string {
		return w.seed(t, "Practitioner", `{"resourceType":"Practitioner","name":[{"family":"`+fam+`","given":["Pat"]}]}`)
	}
	w.D1, w.D2, w.N1, w.N2 = prac("Drake"), prac("Dunmore"), prac("Nightingale"), prac("Norwood")
	pat := func(fam, org, gp string) string {
		gpJSON := ""
		if gp != "" {
			gpJSON = `,"generalPractitioner":[{"reference":"Practitioner/` + gp + `"}]`
		}
		return w.seed(t, "Patient", `{"resourceType":"Patient","name":[{"family":"`+fam+`","given":["Secret"]}],"managingOrganization":{"reference":"Organization/`+org+`"}`+gpJSON+`}`)
	}
	w.A = pat(famA, w.F1, w.D1)
	w.B = pat(famB, w.F1, "")
	w.C = pat(famC, w.F2, w.D1)
	obs := func(p string) string {
		return w.seed(t, "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"`+obsTxt+`"},"subject":{"reference":"Patient/`+p+`"},"valueQuantity":{"value":72,"unit":"/min"}}`)
	}
	w.ObsA, w.ObsB, w.ObsC = obs(w.A), obs(w.B), obs(w.C)

	w.account(t, "d1", policy.Physician, w.D1, w.F1)
	w.account(t, "d2", policy.Physician, w.D2, w.F1)
	w.account(t, "n1", policy.Nurse, w.N1, w.F1)
	w.account(t, "n2", policy.Nurse, w.N2, w.F2)
	w.account(t, "clerk", policy.AdmissionClerk, "", w.F1)
	w.account(t, "fa1", policy.FacilityAdmin, "", w.F1)
	w.account(t, "fa2", policy.FacilityAdmin, "", w.F1)
	w.account(t, "ga", policy.GroupAdmin, "", w.F1)
	w.account(t, "so", policy.SecurityOfficer, "", w.F1)
	return w
}

// seed writes a resource with no one's authority (record.New).
func (w *secWorld) seed(t *testing.T, typ, body string) string {
	t.Helper()
	r, err := fhir.Parse([]byte(body))
	if err != nil {
		t.Fatalf("parse %s: %v", typ, err)
	}
	out, err := record.New(w.st).Create(context.Background(), typ, r)
	if err != nil {
		t.Fatalf("seed %s: %v", typ, err)
	}
	return out.Resource.ID
}

func (w *secWorld) account(t *testing.T, username, role, prac, fac string) {
	t.Helper()
	en, err := w.svc.CreateAccount(context.Background(), auth.NewAccount{Username: username, Practitioner: prac,
		Roles: []string{role}, Facilities: []string{fac}})
	if err != nil {
		t.Fatalf("CreateAccount %s: %v", username, err)
	}
	if en.Password == "" || en.TOTPSecret == "" || len(en.RecoveryCodes) == 0 {
		t.Fatalf("CreateAccount %s: incomplete enrolment %+v", username, en)
	}
	w.acct[username] = &secAccount{username: username, password: en.Password, secret: en.TOTPSecret, recovery: en.RecoveryCodes}
}

// otp returns a TOTP code of a time step not yet used by the account,
// advancing the fake clock to the next step if needed.
func (w *secWorld) otp(t *testing.T, username string) string {
	t.Helper()
	a := w.acct[username]
	if auth.TOTPStep(w.clk.Now()) <= a.lastStep {
		w.clk.Set(time.Unix((a.lastStep+1)*auth.TOTPPeriod, 0).UTC())
	}
	a.lastStep = auth.TOTPStep(w.clk.Now())
	code, err := auth.TOTPCode(a.secret, w.clk.Now())
	if err != nil {
		t.Fatalf("TOTPCode: %v", err)
	}
	return code
}

// json decodes a JSON object body.
func (r *resp) json(t *testing.T) map[string]any {
	t.Helper()
	return decode(t, r.Body)
}

// do sends a request with an optional bearer token and body.
func (w *secWorld) do(t *testing.T, method, path, token string, body []byte, ctype string) *resp {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, w.http.URL+path, rd)
	if err != nil {
		t.Fatalf("NewRequest %s %s: %v", method, path, err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := w.http.Client().Do(req)
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

func (w *secWorld) get(t *testing.T, path, token string) *resp {
	t.Helper()
	return w.do(t, http.MethodGet, path, token, nil, "")
}

func (w *secWorld) postJSON(t *testing.T, path, token, body string) *resp {
	t.Helper()
	return w.do(t, http.MethodPost, path, token, []byte(body), "application/json")
}

func (w *secWorld) postForm(t *testing.T, path, token string, f url.Values) *resp {
	t.Helper()
	return w.do(t, http.MethodPost, path, token, []byte(f.Encode()), "application/x-www-form-urlencoded")
}

func secWant(t *testing.T, r *resp, want int, what string) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("%s: status %d, want %d; body: %s", what, r.Status, want, r)
	}
}

// tokenReq posts to /auth/token.
func (w *secWorld) tokenReq(t *testing.T, f url.Values) *resp {
	t.Helper()
	return w.postForm(t, "/auth/token", "", f)
}

type secTokens struct{ access, refresh, scope string }

func tokensOf(t *testing.T, r *resp) secTokens {
	t.Helper()
	secWant(t, r, http.StatusOK, "token")
	m := r.json(t)
	at, _ := m["access_token"].(string)
	rt, _ := m["refresh_token"].(string)
	sc, _ := m["scope"].(string)
	if !strings.HasPrefix(at, auth.AccessTokenPrefix) || !strings.HasPrefix(rt, auth.RefreshTokenPrefix) || m["token_type"] != "Bearer" {
		t.Fatalf("malformed token response: %s", r)
	}
	if ei := num(m["expires_in"]); ei <= 0 || ei > 15*60 {
		t.Fatalf("expires_in %v, want in (0, 900]", m["expires_in"])
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("token response without Cache-Control: no-store")
	}
	return secTokens{at, rt, sc}
}

// login logs username in with password and a fresh TOTP code.
func (w *secWorld) login(t *testing.T, username, scope string) secTokens {
	t.Helper()
	a := w.acct[username]
	f := url.Values{"username": {username}, "password": {a.password}, "otp": {w.otp(t, username)}}
	if scope != "" {
		f.Set("scope", scope)
	}
	return tokensOf(t, w.tokenReq(t, f))
}

func (w *secWorld) refresh(t *testing.T, rt string) *resp {
	t.Helper()
	return w.tokenReq(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
}

// noPatientData fails if a response discloses patient content.
func noPatientData(t *testing.T, r *resp, what string) {
	t.Helper()
	body := string(r.Body)
	for _, s := range []string{famA, famB, famC, obsTxt, `"resourceType":"Patient"`, `"resourceType":"Observation"`} {
		if strings.Contains(body, s) {
			t.Fatalf("%s: response discloses %q: %s", what, s, r)
		}
	}
}

func bundleTotal(t *testing.T, r *resp) int {
	t.Helper()
	m := r.json(t)
	if m["resourceType"] != "Bundle" {
		t.Fatalf("not a Bundle: %s", r)
	}
	if _, ok := m["total"]; !ok {
		t.Fatalf("Bundle without total: %s", r)
	}
	return num(m["total"])
}

func bundleIDs(t *testing.T, r *resp) map[string]bool {
	t.Helper()
	m := r.json(t)
	out := map[string]bool{}
	es, _ := m["entry"].([]any)
	for _, e := range es {
		em, _ := e.(map[string]any)
		res, _ := em["resource"].(map[string]any)
		if res == nil {
			continue
		}
		typ, _ := res["resourceType"].(string)
		id, _ := res["id"].(string)
		out[typ+"/"+id] = true
	}
	return out
}

// bundleIDsLoose is bundleIDs for a response that may not be a Bundle.
func bundleIDsLoose(r *resp) map[string]bool {
	out := map[string]bool{}
	var m struct {
		Entry []struct {
			Resource struct{ ResourceType, ID string } `json:"resource"`
		} `json:"entry"`
	}
	if json.Unmarshal(r.Body, &m) == nil {
		for _, e := range m.Entry {
			out[e.Resource.ResourceType+"/"+e.Resource.ID] = true
		}
	}
	return out
}

func (w *secWorld) patientJSON(id, fam, org string) []byte {
	idJSON := ""
	if id != "" {
		idJSON = `"id":"` + id + `",`
	}
	return []byte(`{"resourceType":"Patient",` + idJSON + `"name":[{"family":"` + fam + `"}],"managingOrganization":{"reference":"Organization/` + org + `"}}`)
}

// routeRequest builds a concrete request for a registered route pattern.
type routeReq struct {
	method, path, ctype string
	body                []byte
}

func (w *secWorld) routeRequest(pattern, username string) routeReq {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = http.MethodGet, pattern
	}
	if path == "/fhir/" {
		path = "/fhir/Patient/x/y/z/w"
	}
	path = strings.NewReplacer("{type}", "Patient", "{id}", w.A, "{vid}", "1", "{username}", username, "{$}", "").Replace(path)
	rr := routeReq{method: method, path: path}
	switch {
	case strings.HasSuffix(pattern, "$break-the-glass"):
		rr.ctype, rr.body = "application/json", []byte(`{"reason":"emergency","detail":"patient unconscious in ER","minutes":60}`)
	case strings.HasSuffix(pattern, "/_search"):
		rr.ctype, rr.body = "application/x-www-form-urlencoded", []byte("family="+famA)
	case pattern == "POST /fhir" || pattern == "POST /fhir/{$}":
		// A transaction deleting Patient A.
		rr.ctype = "application/fhir+json"
		rr.body = []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/` + w.A + `"}}]}`)
	case strings.HasPrefix(path, "/fhir/") && method == http.MethodPost:
		rr.ctype, rr.body = "application/fhir+json", w.patientJSON("", "Intruder", w.F1)
	case strings.HasPrefix(path, "/fhir/") && method == http.MethodPut:
		rr.ctype, rr.body = "application/fhir+json", w.patientJSON(w.A, "Overwritten", w.F1)
	case strings.HasPrefix(path, "/security/") && method == http.MethodPost:
		rr.ctype, rr.body = "application/json", []byte(`{"note":"justified"}`)
	case method == http.MethodPost:
		rr.ctype, rr.body = "application/json", []byte(`{}`)
	}
	return rr
}

func (w *secWorld) send(t *testing.T, rr routeReq, token string) *resp {
	t.Helper()
	return w.do(t, rr.method, rr.path, token, rr.body, rr.ctype)
}

// TestSecRouteEnumeration walks every registered route: none answers
// without a token, the group administrator reaches no patient data, the
// nurse no administration.
func TestSecRouteEnumeration(t *testing.T) {
	w := newSecWorld(t)
	routes := w.srv.Routes()
	if len(routes) < 20 {
		t.Fatalf("only %d routes registered", len(routes))
	}
	ga := w.login(t, "ga", "")
	nurse := w.login(t, "n1", "")
	// Exactly these answer without a token.
	wantPublic := map[string]bool{
		"GET /fhir/metadata": true, "POST /fhir/metadata": true, "PUT /fhir/metadata": true,
		"PATCH /fhir/metadata": true, "DELETE /fhir/metadata": true,
		"GET /healthz": true, "POST /auth/token": true, "POST /auth/revoke": true,
	}
	var nPublic, nPrivate int
	for _, rt := range routes {
		if rt.Public != wantPublic[rt.Pattern] {
			t.Errorf("route %q: public %v, want %v", rt.Pattern, rt.Public, wantPublic[rt.Pattern])
		}
		rr := w.routeRequest(rt.Pattern, "clerk")
		what := rt.Pattern + " as " + rr.method + " " + rr.path
		if rt.Public {
			nPublic++
			r := w.send(t, rr, "")
			if r.Status == http.StatusUnauthorized || r.Status >= 500 {
				t.Errorf("public %s without token: %s", what, r)
			}
			noPatientData(t, r, "public "+what)
			continue
		}
		nPrivate++
		// No token, a garbage token, a refresh token, a non-Bearer scheme.
		for _, tok := range []string{"", "cat_not-a-real-token", ga.refresh} {
			r := w.send(t, rr, tok)
			if r.Status != http.StatusUnauthorized {
				t.Errorf("%s with token %.8q: status %d, want 401; %s", what, tok, r.Status, r)
			}
			if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s with token %.8q: no WWW-Authenticate: Bearer header", what, tok)
			}
			noPatientData(t, r, what+" unauthenticated")
		}
		req, _ := http.NewRequest(rr.method, w.http.URL+rr.path, bytes.NewReader(rr.body))
		req.Header.Set("Authorization", "Basic "+ga.access)
		if res, err := w.http.Client().Do(req); err != nil {
			t.Fatal(err)
		} else {
			res.Body.Close()
			if res.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s with a Basic scheme: status %d, want 401", what, res.StatusCode)
			}
		}

		// The group administrator: no patient data anywhere.
		r := w.send(t, rr, ga.access)
		noPatientData(t, r, what+" as group-admin")
		switch {
		case strings.Contains(rt.Pattern, "{type}") || strings.Contains(rt.Pattern, "$break-the-glass"):
			if r.Status != http.StatusForbidden {
				t.Errorf("%s as group-admin: status %d, want 403; %s", what, r.Status, r)
			}
		case strings.HasPrefix(rr.path, "/security/"):
			if r.Status != http.StatusForbidden {
				t.Errorf("%s as group-admin: status %d, want 403; %s", what, r.Status, r)
			}
		case strings.HasPrefix(rr.path, "/fhir"):
			if r.Status < 400 {
				t.Errorf("%s as group-admin: status %d, want >= 400; %s", what, r.Status, r)
			}
		}

		// The nurse: no administration, no security review.
		if strings.HasPrefix(rr.path, "/admin/") || strings.HasPrefix(rr.path, "/security/") {
			r := w.send(t, rr, nurse.access)
			if r.Status != http.StatusForbidden {
				t.Errorf("%s as nurse: status %d, want 403; %s", what, r.Status, r)
			}
		}
	}
	if nPublic != len(wantPublic) || nPrivate < 15 {
		t.Fatalf("routes: %d public, %d private", nPublic, nPrivate)
	}
	// The public ones do answer.
	for _, p := range []string{"/fhir/metadata", "/healthz"} {
		secWant(t, w.get(t, p, ""), http.StatusOK, "GET "+p)
	}
	// Methods and paths nobody registered fall into authenticated handlers
	// or the mux's 404, never into data.
	for _, m := range []string{http.MethodPatch, http.MethodOptions, "PROPFIND"} {
		r := w.do(t, m, "/fhir/Patient/"+w.A, "", nil, "")
		if r.Status != http.StatusUnauthorized {
			t.Errorf("%s /fhir/Patient/A without token: %s", m, r)
		}
		noPatientData(t, r, m)
	}
	// Nothing the group administrator sent changed Patient A, and the
	// nurse's disable attempt left the clerk active.
	cur, err := w.st.Read(context.Background(), "Patient", w.A)
	if err != nil || cur.Deleted || cur.Version != 1 {
		t.Fatalf("Patient A after the walk: %+v, %v (want version 1, not deleted)", cur, err)
	}
	if !strings.Contains(string(cur.Data), famA) {
		t.Fatalf("Patient A was rewritten: %s", cur.Data)
	}
	n, err := w.st.Search(context.Background(), mustQuery(t, "Patient", "family=Intruder"), nil)
	if err != nil || n.Total != 0 {
		t.Fatalf("a patient was created during the walk: %v %v", n, err)
	}
	// The group administrator disabled then re-enabled clerk during the
	// walk (legitimately, in route order); the nurse's attempts in between
	// changed nothing, so clerk ends active.
	a, err := w.st.AccountByUsername(context.Background(), "clerk")
	if err != nil || a.Status != store.StatusActive {
		t.Fatalf("clerk after the walk: %+v %v", a, err)
	}
}

func mustQuery(t *testing.T, typ, q string) *fhir.Query {
	t.Helper()
	v, err := url.ParseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	fq, err := fhir.ParseQuery(typ, v, false)
	if err != nil {
		t.Fatalf("ParseQuery: %v", err)
	}
	return fq
}

// TestSecGroupAdminNoPatientData: MFA is mandatory, and the most powerful
// administrator reaches the directory but no patient.
func TestSecGroupAdminNoPatientData(t *testing.T) {
	w := newSecWorld(t)
	ga := w.acct["ga"]
	base := url.Values{"username": {"ga"}, "password": {ga.password}}

	r := w.tokenReq(t, base)
	secWant(t, r, http.StatusUnauthorized, "password without otp")
	if r.json(t)["error"] != "invalid_grant" {
		t.Fatalf("no otp: %s", r)
	}
	noOTPBody := r.Body

	good := w.otp(t, "ga")
	bad := []byte(good)
	bad[0] = '0' + (bad[0]-'0'+1)%10
	f := url.Values{"username": {"ga"}, "password": {ga.password}, "otp": {string(bad)}}
	r = w.tokenReq(t, f)
	secWant(t, r, http.StatusUnauthorized, "wrong otp")
	if !bytes.Equal(r.Body, noOTPBody) {
		t.Fatalf("wrong otp and missing otp answer differently:\n%s\n%s", r.Body, noOTPBody)
	}
	// Four failures in all: below the five free ones, so the account is
	// not backing off when the right code comes.
	f.Set("otp", "AAAA-BBBB-CCCC-DDDD")
	r = w.tokenReq(t, f)
	secWant(t, r, http.StatusUnauthorized, "recovery-code-shaped garbage")
	if !bytes.Equal(r.Body, noOTPBody) {
		t.Fatalf("garbage recovery code answers differently")
	}
	// A right code with a wrong password is refused just the same.
	r = w.tokenReq(t, url.Values{"username": {"ga"}, "password": {ga.password + "x"}, "otp": {good}})
	secWant(t, r, http.StatusUnauthorized, "wrong password, right otp")
	if !bytes.Equal(r.Body, noOTPBody) {
		t.Fatalf("wrong password answers differently from wrong otp")
	}

	// The code was not consumed by the failed attempt (the password was
	// wrong, so the second factor was never checked): it works now.
	f.Set("otp", good)
	tk := tokensOf(t, w.tokenReq(t, f))
	if tk.scope != policy.DefaultScope {
		t.Fatalf("default scope %q, want %q", tk.scope, policy.DefaultScope)
	}
	me := w.get(t, "/auth/me", tk.access)
	secWant(t, me, http.StatusOK, "/auth/me")
	if me.json(t)["username"] != "ga" {
		t.Fatalf("/auth/me: %s", me)
	}

	for _, c := range []struct{ method, path string }{
		{"GET", "/fhir/Patient/" + w.A},
		{"GET", "/fhir/Patient/" + w.B},
		{"GET", "/fhir/Observation/" + w.ObsA},
		{"GET", "/fhir/Patient"},
		{"GET", "/fhir/Patient?family=" + famA},
		{"GET", "/fhir/Patient?_summary=count"},
		{"GET", "/fhir/Observation"},
		{"GET", "/fhir/Observation?subject=Patient/" + w.A},
		{"GET", "/fhir/Patient/" + w.A + "/_history"},
		{"GET", "/fhir/Patient/" + w.A + "/_history/1"},
		{"GET", "/fhir/Observation/" + w.ObsA + "/_history"},
		{"DELETE", "/fhir/Patient/" + w.A},
		{"DELETE", "/fhir/Observation/" + w.ObsA},
	} {
		r := w.do(t, c.method, c.path, tk.access, nil, "")
		secWant(t, r, http.StatusForbidden, "group-admin "+c.method+" "+c.path)
		noPatientData(t, r, c.path)
	}
	r = w.do(t, "POST", "/fhir/Patient", tk.access, w.patientJSON("", "Intruder", w.F1), "application/fhir+json")
	secWant(t, r, http.StatusForbidden, "group-admin POST Patient")
	r = w.do(t, "PUT", "/fhir/Patient/"+w.A, tk.access, w.patientJSON(w.A, "Overwritten", w.F1), "application/fhir+json")
	secWant(t, r, http.StatusForbidden, "group-admin PUT Patient/A")
	r = w.do(t, "POST", "/fhir/Patient/_search", tk.access, []byte("family="+famA), "application/x-www-form-urlencoded")
	secWant(t, r, http.StatusForbidden, "group-admin POST _search")
	noPatientData(t, r, "_search")
	r = w.do(t, "POST", "/fhir/Observation", tk.access, []byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/`+w.A+`"}}`), "application/fhir+json")
	secWant(t, r, http.StatusForbidden, "group-admin POST Observation")

	// The directory is theirs...
	r = w.get(t, "/fhir/Practitioner", tk.access)
	secWant(t, r, http.StatusOK, "group-admin GET Practitioner")
	if ids := bundleIDs(t, r); !ids["Practitioner/"+w.D1] || len(ids) != 4 {
		t.Fatalf("Practitioner search: %v", ids)
	}
	secWant(t, w.get(t, "/fhir/Organization/"+w.F1, tk.access), http.StatusOK, "group-admin read Organization")
	// ...but not through it: includes of patient data are dropped.
	q := "/fhir/Organization?_id=" + w.F2 + "&_revinclude=Patient:organization"
	r = w.get(t, q, tk.access)
	secWant(t, r, http.StatusOK, q)
	if ids := bundleIDs(t, r); len(ids) != 1 || !ids["Organization/"+w.F2] {
		t.Fatalf("%s: %v", q, ids)
	}
	noPatientData(t, r, q)
	// Includes spanning several patients: no patient data either. (These
	// currently answer 500, see store.(*SQL).Reach with an empty scope; the
	// property tested here is that nothing leaks.)
	for _, q := range []string{
		"/fhir/Practitioner?_revinclude=Patient:general-practitioner",
		"/fhir/Organization?_revinclude=Patient:organization",
		"/fhir/Practitioner?_id=" + w.D1 + "&_revinclude=Patient:general-practitioner&_revinclude=Observation:performer",
	} {
		r = w.get(t, q, tk.access)
		if r.Status == http.StatusOK {
			if ids := bundleIDs(t, r); len(ids) == 0 {
				t.Fatalf("%s: no directory entries: %s", q, r)
			}
		}
		noPatientData(t, r, q)
	}
	// And it can change the directory (admin category, cruds).
	r = w.do(t, "POST", "/fhir/Practitioner", tk.access, []byte(`{"resourceType":"Practitioner","name":[{"family":"Newhire"}]}`), "application/fhir+json")
	secWant(t, r, http.StatusCreated, "group-admin creates a Practitioner")
}

// TestSecBruteForceHTTP: 1,000 guesses from one address against one
// account while the clock stands still.
func TestSecBruteForceHTTP(t *testing.T) {
	w := newSecWorld(t)
	d1 := w.acct["d1"]

	type tally struct {
		n401, n429      int
		body401         []byte
		body429         []byte
		retryAfter      string
		wwwAuthenticate string
	}
	attack := func(username string) tally {
		var tl tally
		for i := range 1000 {
			r := w.tokenReq(t, url.Values{"username": {username}, "password": {fmt.Sprintf("guess-%04d-password", i)}, "otp": {"123456"}})
			switch r.Status {
			case http.StatusUnauthorized:
				tl.n401++
				if tl.body401 == nil {
					tl.body401, tl.wwwAuthenticate = r.Body, r.Header.Get("WWW-Authenticate")
				} else if !bytes.Equal(tl.body401, r.Body) {
					t.Fatalf("401 bodies differ within one attack: %s vs %s", tl.body401, r.Body)
				}
			case http.StatusTooManyRequests:
				tl.n429++
				if tl.n401 < 1 {
					t.Fatalf("throttled before any failure")
				}
				if r.json(t)["error"] != "slow_down" {
					t.Fatalf("429 body: %s", r)
				}
				ra, err := strconv.Atoi(r.Header.Get("Retry-After"))
				if err != nil || ra < 1 || ra > int(15*time.Minute/time.Second) {
					t.Fatalf("429 with Retry-After %q", r.Header.Get("Retry-After"))
				}
				if tl.body429 == nil {
					tl.body429, tl.retryAfter = r.Body, r.Header.Get("Retry-After")
				}
			default:
				t.Fatalf("attempt %d: unexpected %s", i, r)
			}
		}
		return tl
	}

	known := attack("d1")
	if known.n401 < 1 || known.n401 > 5 || known.n401+known.n429 != 1000 {
		t.Fatalf("existing account: %d evaluated (401), %d throttled (429); want at most 5 evaluated with the clock still", known.n401, known.n429)
	}
	// The owner, with the right password and code, is held back as well:
	// while backing off nothing is evaluated (no oracle for the attacker).
	r := w.tokenReq(t, url.Values{"username": {"d1"}, "password": {d1.password}, "otp": {w.otp(t, "d1")}})
	secWant(t, r, http.StatusTooManyRequests, "correct credentials during the attack")

	// The same attack on a username that does not exist answers exactly
	// the same way: no user enumeration.
	ghost := attack("ghost.user")
	if ghost.n401 != known.n401 || ghost.n429 != known.n429 {
		t.Fatalf("unknown user: %d/%d (401/429), existing user: %d/%d", ghost.n401, ghost.n429, known.n401, known.n429)
	}
	if !bytes.Equal(ghost.body401, known.body401) || ghost.wwwAuthenticate != known.wwwAuthenticate {
		t.Fatalf("401 differs between an existing and an unknown user:\n%s\n%s", known.body401, ghost.body401)
	}
	if !bytes.Equal(ghost.body429, known.body429) || ghost.retryAfter != known.retryAfter {
		t.Fatalf("429 differs between an existing and an unknown user:\n%s %s\n%s %s", known.body429, known.retryAfter, ghost.body429, ghost.retryAfter)
	}
	// A right password with a wrong code answers like a wrong password.
	w.clk.Advance(time.Second * 2)
	r = w.tokenReq(t, url.Values{"username": {"n1"}, "password": {w.acct["n1"].password}, "otp": {"000000x"}})
	secWant(t, r, http.StatusUnauthorized, "right password, malformed otp")
	if !bytes.Equal(r.Body, known.body401) {
		t.Fatalf("right password + wrong otp answers differently: %s vs %s", r.Body, known.body401)
	}

	// Once the back-off has passed, the owner gets in.
	w.clk.Advance(time.Minute)
	tokensOf(t, w.tokenReq(t, url.Values{"username": {"d1"}, "password": {d1.password}, "otp": {w.otp(t, "d1")}}))
}

// TestSecBruteForceDistributed: 1,000 guesses from 50 addresses (20 each),
// one round per address and a second between rounds: the account back-off
// holds whatever the address.
func TestSecBruteForceDistributed(t *testing.T) {
	w := newSecWorld(t)
	ctx := context.Background()
	d1 := w.acct["d1"]
	const rounds, perRound = 50, 20
	const free = 5 // auth.Options.AccountFreeFailures default
	start := w.clk.Now()
	evaluated, throttled := 0, 0
	for n := 1; n <= rounds; n++ {
		client := fmt.Sprintf("10.0.0.%d", n)
		for i := range perRound {
			_, err := w.svc.Login(ctx, "d1", fmt.Sprintf("guess-%d-%d-xxxxxx", n, i), "123456", client, "")
			var te *auth.ThrottledError
			switch {
			case errors.Is(err, auth.ErrInvalidCredentials):
				evaluated++
			case errors.As(err, &te):
				throttled++
				if te.RetryAfter <= 0 || te.RetryAfter > 15*time.Minute {
					t.Fatalf("RetryAfter %v", te.RetryAfter)
				}
			default:
				t.Fatalf("round %d attempt %d: %v", n, i, err)
			}
		}
		// The owner, from their own address, during the attack: held back.
		if n%10 == 0 {
			code, _ := auth.TOTPCode(d1.secret, w.clk.Now())
			_, err := w.svc.Login(ctx, "d1", d1.password, code, "192.168.7.7", "")
			var te *auth.ThrottledError
			if !errors.As(err, &te) {
				t.Fatalf("round %d: correct login during the attack: %v, want throttled", n, err)
			}
		}
		if n < rounds {
			w.clk.Advance(time.Second)
		}
	}
	// Bound: the fifth failure (t = 0) starts a back-off of 1 s, and the
	// k-th failure after it sets one of 2^k s; nothing is evaluated while
	// backing off. So the k-th extra evaluation cannot come before
	// 1 + 2 + ... + 2^(k-1) = 2^k - 1 s, and over T seconds of attack at
	// most floor(log2(T+1)) extras get through: T = 49 s gives 5, so at
	// most 5 + 5 = 10 evaluated attempts out of 1,000 (extras at t = 1,
	// 3, 7, 15, 31 s), whatever the number of addresses.
	T := int(w.clk.Now().Sub(start) / time.Second)
	extra := 0
	for (1<<(extra+1))-1 <= T {
		extra++
	}
	bound := free + extra
	if evaluated > bound || evaluated+throttled != rounds*perRound {
		t.Fatalf("%d of %d attempts evaluated over %d s, want at most %d", evaluated, rounds*perRound, T, bound)
	}
	if evaluated < free {
		t.Fatalf("only %d attempts evaluated: the free failures are not free", evaluated)
	}
	t.Logf("%d evaluated, %d throttled over %d s (bound %d)", evaluated, throttled, T, bound)

	// Still throttled right after the attack...
	code, _ := auth.TOTPCode(d1.secret, w.clk.Now())
	_, err := w.svc.Login(ctx, "d1", d1.password, code, "192.168.7.7", "")
	var te *auth.ThrottledError
	if !errors.As(err, &te) {
		t.Fatalf("after the attack: %v, want throttled", err)
	}
	// ...and the owner logs in once the longest back-off has passed.
	w.clk.Advance(15*time.Minute + time.Second)
	g, err := w.svc.Login(ctx, "d1", d1.password, w.otp(t, "d1"), "192.168.7.7", "")
	if err != nil {
		t.Fatalf("owner after MaxBackoff: %v", err)
	}
	if p, err := w.svc.Authenticate(ctx, g.AccessToken, "192.168.7.7"); err != nil || p.Username != "d1" {
		t.Fatalf("Authenticate: %v %v", p, err)
	}
}

// TestSecTOTPReplayAndRecoveryCodes: a code works once per time step, a
// recovery code works once.
func TestSecTOTPReplayAndRecoveryCodes(t *testing.T) {
	w := newSecWorld(t)
	d1 := w.acct["d1"]
	code := w.otp(t, "d1")
	f := url.Values{"username": {"d1"}, "password": {d1.password}, "otp": {code}}
	tokensOf(t, w.tokenReq(t, f))
	secWant(t, w.tokenReq(t, f), http.StatusUnauthorized, "replayed TOTP code")
	// One step later the old code is still within the skew window, but its
	// step was used: still refused. The new code works.
	w.clk.Advance(auth.TOTPPeriod * time.Second)
	secWant(t, w.tokenReq(t, f), http.StatusUnauthorized, "previous step's code after use")
	tokensOf(t, w.tokenReq(t, url.Values{"username": {"d1"}, "password": {d1.password}, "otp": {w.otp(t, "d1")}}))
	// A code of an earlier step than the last one used is refused too.
	old, _ := auth.TOTPCode(d1.secret, w.clk.Now().Add(-auth.TOTPPeriod*time.Second))
	secWant(t, w.tokenReq(t, url.Values{"username": {"d1"}, "password": {d1.password}, "otp": {old}}), http.StatusUnauthorized, "older code")
	// Another account's current code is no good for d1.
	other, _ := auth.TOTPCode(w.acct["d2"].secret, w.clk.Now().Add(auth.TOTPPeriod*time.Second))
	mine, _ := auth.TOTPCode(d1.secret, w.clk.Now().Add(auth.TOTPPeriod*time.Second))
	if other != mine {
		secWant(t, w.tokenReq(t, url.Values{"username": {"d1"}, "password": {d1.password}, "otp": {other}}), http.StatusUnauthorized, "another account's code")
	}

	// Recovery codes: once each, in any case and grouping.
	rc := url.Values{"username": {"d1"}, "password": {d1.password}, "otp": {d1.recovery[0]}}
	tokensOf(t, w.tokenReq(t, rc))
	secWant(t, w.tokenReq(t, rc), http.StatusUnauthorized, "recovery code reused")
	loose := strings.ToLower(strings.ReplaceAll(d1.recovery[1], "-", " "))
	tokensOf(t, w.tokenReq(t, url.Values{"username": {"d1"}, "password": {d1.password}, "otp": {loose}}))
	secWant(t, w.tokenReq(t, url.Values{"username": {"d1"}, "password": {d1.password}, "otp": {d1.recovery[1]}}), http.StatusUnauthorized, "recovery code reused in another spelling")
	// Another account's recovery code is no good.
	secWant(t, w.tokenReq(t, url.Values{"username": {"d1"}, "password": {d1.password}, "otp": {w.acct["d2"].recovery[0]}}), http.StatusUnauthorized, "another account's recovery code")
	// ...and was not consumed by that attempt.
	tokensOf(t, w.tokenReq(t, url.Values{"username": {"d2"}, "password": {w.acct["d2"].password}, "otp": {w.acct["d2"].recovery[0]}}))
}

// TestSecTokens: refresh rotation and reuse detection, revocation, expiry,
// and account disabling.
func TestSecTokens(t *testing.T) {
	w := newSecWorld(t)
	readA := "/fhir/Patient/" + w.A

	t1 := w.login(t, "d1", "")
	secWant(t, w.get(t, readA, t1.access), http.StatusOK, "d1 reads A")

	// Rotation: new tokens; the old refresh token works once.
	t2 := tokensOf(t, w.refresh(t, t1.refresh))
	if t2.access == t1.access || t2.refresh == t1.refresh {
		t.Fatalf("refresh returned the same tokens")
	}
	secWant(t, w.get(t, readA, t2.access), http.StatusOK, "new access token")
	// An access token is no refresh token.
	secWant(t, w.refresh(t, t2.access), http.StatusUnauthorized, "access token as refresh token")
	secWant(t, w.get(t, readA, t2.access), http.StatusOK, "presenting an access token to refresh does not end the session")
	// Reuse of the old refresh token: the session is stolen, end it all.
	r := w.refresh(t, t1.refresh)
	secWant(t, r, http.StatusUnauthorized, "reused refresh token")
	if r.json(t)["error"] != "invalid_grant" {
		t.Fatalf("reuse: %s", r)
	}
	secWant(t, w.get(t, readA, t2.access), http.StatusUnauthorized, "access token of a session whose refresh token was reused")
	secWant(t, w.get(t, readA, t1.access), http.StatusUnauthorized, "first access token after reuse")
	secWant(t, w.refresh(t, t2.refresh), http.StatusUnauthorized, "new refresh token after reuse")

	// Revocation of one session leaves another alone.
	s1 := w.login(t, "d1", "")
	s2 := w.login(t, "d1", "")
	secWant(t, w.postForm(t, "/auth/revoke", "", url.Values{"token": {s1.access}}), http.StatusOK, "revoke")
	secWant(t, w.get(t, readA, s1.access), http.StatusUnauthorized, "revoked access token")
	secWant(t, w.refresh(t, s1.refresh), http.StatusUnauthorized, "refresh token of a revoked session")
	secWant(t, w.get(t, readA, s2.access), http.StatusOK, "the other session")
	// Unknown tokens revoke nothing, without error (RFC 7009).
	secWant(t, w.postForm(t, "/auth/revoke", "", url.Values{"token": {"cat_unknown"}}), http.StatusOK, "revoke unknown")
	secWant(t, w.postForm(t, "/auth/revoke", "", url.Values{}), http.StatusBadRequest, "revoke without token")

	// Expiry: 15 minutes for an access token; the refresh token outlives it.
	w.clk.Advance(15*time.Minute - time.Second)
	secWant(t, w.get(t, readA, s2.access), http.StatusOK, "access token before expiry")
	w.clk.Advance(time.Minute + time.Second)
	secWant(t, w.get(t, readA, s2.access), http.StatusUnauthorized, "expired access token")
	s3 := tokensOf(t, w.refresh(t, s2.refresh))
	secWant(t, w.get(t, readA, s3.access), http.StatusOK, "after refresh")
	w.clk.Advance(8*time.Hour + time.Minute)
	secWant(t, w.refresh(t, s3.refresh), http.StatusUnauthorized, "expired refresh token")

	// Disabling by a facility administrator ends the sessions at once.
	fa := w.login(t, "fa1", "")
	d := w.login(t, "d1", "")
	secWant(t, w.get(t, readA, d.access), http.StatusOK, "before disable")
	secWant(t, w.postJSON(t, "/admin/accounts/fa1/disable", fa.access, "{}"), http.StatusForbidden, "disable oneself")
	secWant(t, w.postJSON(t, "/admin/accounts/n2/disable", fa.access, "{}"), http.StatusNotFound, "disable an account of another facility")
	r = w.postJSON(t, "/admin/accounts/d1/disable", fa.access, "{}")
	secWant(t, r, http.StatusOK, "disable d1")
	if r.json(t)["status"] != store.StatusDisabled {
		t.Fatalf("disable: %s", r)
	}
	secWant(t, w.get(t, readA, d.access), http.StatusUnauthorized, "disabled account's token")
	secWant(t, w.get(t, "/auth/me", d.access), http.StatusUnauthorized, "disabled account's /auth/me")
	secWant(t, w.refresh(t, d.refresh), http.StatusUnauthorized, "disabled account's refresh token")
	f := url.Values{"username": {"d1"}, "password": {w.acct["d1"].password}, "otp": {w.otp(t, "d1")}}
	secWant(t, w.tokenReq(t, f), http.StatusUnauthorized, "login while disabled")
	// Re-enabled: the old tokens stay dead, a new login works.
	r = w.postJSON(t, "/admin/accounts/d1/enable", fa.access, "{}")
	secWant(t, r, http.StatusOK, "enable d1")
	secWant(t, w.get(t, readA, d.access), http.StatusUnauthorized, "pre-disable token after re-enable")
	secWant(t, w.refresh(t, d.refresh), http.StatusUnauthorized, "pre-disable refresh token after re-enable")
	d = w.login(t, "d1", "")
	secWant(t, w.get(t, readA, d.access), http.StatusOK, "new login after re-enable")
}

// TestSecSuspendedAccount: a suspension (the guard's or the security
// officer's) ends the sessions, and an administrator cannot simply lift it.
func TestSecSuspendedAccount(t *testing.T) {
	w := newSecWorld(t)
	fa := w.login(t, "fa1", "")
	d := w.login(t, "d1", "")
	if _, err := w.svc.SetStatus(context.Background(), "d1", store.StatusSuspended, "anomaly under review"); err != nil {
		t.Fatal(err)
	}
	secWant(t, w.get(t, "/fhir/Patient/"+w.A, d.access), http.StatusUnauthorized, "suspended account's token")
	f := url.Values{"username": {"d1"}, "password": {w.acct["d1"].password}, "otp": {w.otp(t, "d1")}}
	secWant(t, w.tokenReq(t, f), http.StatusUnauthorized, "login while suspended")
	secWant(t, w.postJSON(t, "/admin/accounts/d1/enable", fa.access, "{}"), http.StatusForbidden, "facility admin re-enables a suspended account")
	r := w.get(t, "/admin/accounts/d1", fa.access)
	secWant(t, r, http.StatusOK, "show d1")
	if m := r.json(t); m["status"] != store.StatusSuspended {
		t.Fatalf("d1 after the refused enable: %s", r)
	}
}

// TestSecScopes: scopes narrow a role, never widen it.
func TestSecScopes(t *testing.T) {
	w := newSecWorld(t)
	tk := w.login(t, "d1", "user/Patient.rs")
	if tk.scope != "user/Patient.rs" {
		t.Fatalf("granted scope %q", tk.scope)
	}
	secWant(t, w.get(t, "/fhir/Patient/"+w.A, tk.access), http.StatusOK, "scoped read of Patient A")
	r := w.get(t, "/fhir/Observation/"+w.ObsA, tk.access)
	secWant(t, r, http.StatusForbidden, "scoped read of A's Observation")
	noPatientData(t, r, "scoped Observation read")
	secWant(t, w.get(t, "/fhir/Observation?subject=Patient/"+w.A, tk.access), http.StatusForbidden, "scoped Observation search")
	r = w.get(t, "/fhir/Patient?_revinclude=Observation:subject", tk.access)
	secWant(t, r, http.StatusOK, "scoped Patient search with revinclude")
	if strings.Contains(string(r.Body), obsTxt) {
		t.Fatalf("revinclude leaked an Observation outside the token's scope: %s", r)
	}
	r = w.do(t, "POST", "/fhir/Observation", tk.access, []byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/`+w.A+`"}}`), "application/fhir+json")
	secWant(t, r, http.StatusForbidden, "scoped write")
	me := w.get(t, "/auth/me", tk.access).json(t)
	if me["scope"] != "user/Patient.rs" {
		t.Fatalf("/auth/me scope %v", me["scope"])
	}
	// A refreshed token keeps the narrow scope.
	tk2 := tokensOf(t, w.refresh(t, tk.refresh))
	if tk2.scope != "user/Patient.rs" {
		t.Fatalf("refreshed scope %q", tk2.scope)
	}
	secWant(t, w.get(t, "/fhir/Observation/"+w.ObsA, tk2.access), http.StatusForbidden, "refreshed token reads Observation")
	// The full default scope does read it.
	full := w.login(t, "d1", "")
	secWant(t, w.get(t, "/fhir/Observation/"+w.ObsA, full.access), http.StatusOK, "default scope reads Observation")
	// SMART v1 spelling maps to v2.
	v1 := w.login(t, "d1", "user/Observation.read")
	if v1.scope != "user/Observation.rs" {
		t.Fatalf("v1 scope mapped to %q", v1.scope)
	}
	secWant(t, w.get(t, "/fhir/Patient/"+w.A, v1.access), http.StatusForbidden, "Observation-only token reads Patient")

	// Unsupported scopes are refused before any credential is checked.
	for _, bad := range []string{"patient/*.read", "system/*.cruds", "user/Patient.sr", "user/Nonsense.rs", "user/*.x"} {
		r := w.tokenReq(t, url.Values{"username": {"d1"}, "password": {w.acct["d1"].password}, "otp": {"123456"}, "scope": {bad}})
		secWant(t, r, http.StatusBadRequest, "scope "+bad)
		if r.json(t)["error"] != "invalid_scope" {
			t.Fatalf("scope %q: %s", bad, r)
		}
	}
	// Asking for everything gives a group administrator nothing more.
	ga := w.login(t, "ga", "user/*.cruds")
	secWant(t, w.get(t, "/fhir/Patient/"+w.A, ga.access), http.StatusForbidden, "group-admin with user/*.cruds")
	secWant(t, w.get(t, "/fhir/Patient", ga.access), http.StatusForbidden, "group-admin search with user/*.cruds")
}

// TestSecFourEyes: role grants wait for a second administrator.
func TestSecFourEyes(t *testing.T) {
	w := newSecWorld(t)
	fa1 := w.login(t, "fa1", "")
	fa2 := w.login(t, "fa2", "")
	ga := w.login(t, "ga", "")
	n1 := w.login(t, "n1", "")

	roles := func(tok, username string) []any {
		t.Helper()
		r := w.get(t, "/admin/accounts/"+username, tok)
		secWant(t, r, http.StatusOK, "show "+username)
		rs, _ := r.json(t)["roles"].([]any)
		return rs
	}
	hasRole := func(rs []any, role string) bool {
		for _, x := range rs {
			if x == role {
				return true
			}
		}
		return false
	}

	r := w.postJSON(t, "/admin/role-requests", fa1.access, `{"username":"n1","role":"physician","op":"grant"}`)
	secWant(t, r, http.StatusAccepted, "fa1 requests physician for n1")
	req := r.json(t)
	id, _ := req["id"].(string)
	if req["status"] != "pending" || id == "" || req["requested_by"] != "fa1" || req["username"] != "n1" {
		t.Fatalf("request: %s", r)
	}
	if hasRole(roles(fa1.access, "n1"), policy.Physician) {
		t.Fatalf("role granted before approval")
	}
	me := w.get(t, "/auth/me", n1.access).json(t)
	if rs, _ := me["roles"].([]any); hasRole(rs, policy.Physician) {
		t.Fatalf("/auth/me before approval: %v", me)
	}

	secWant(t, w.postJSON(t, "/admin/role-requests/"+id+"/approve", fa1.access, "{}"), http.StatusForbidden, "requester approves own request")
	secWant(t, w.postJSON(t, "/admin/role-requests/"+id+"/approve", n1.access, "{}"), http.StatusForbidden, "target (not admin) approves")
	if hasRole(roles(fa1.access, "n1"), policy.Physician) {
		t.Fatalf("role granted by a refused approval")
	}
	r = w.postJSON(t, "/admin/role-requests/"+id+"/approve", fa2.access, "{}")
	secWant(t, r, http.StatusOK, "fa2 approves")
	if m := r.json(t); m["status"] != "approved" || m["decided_by"] != "fa2" {
		t.Fatalf("approval: %s", r)
	}
	if !hasRole(roles(fa2.access, "n1"), policy.Physician) {
		t.Fatalf("approved role not applied")
	}
	secWant(t, w.postJSON(t, "/admin/role-requests/"+id+"/approve", ga.access, "{}"), http.StatusConflict, "approve twice")
	// The change reaches n1's existing token at its next request.
	me = w.get(t, "/auth/me", n1.access).json(t)
	if rs, _ := me["roles"].([]any); !hasRole(rs, policy.Physician) {
		t.Fatalf("/auth/me after approval: %v", me)
	}

	// An administrator who is the target cannot approve a change to itself.
	r = w.postJSON(t, "/admin/role-requests", fa1.access, `{"username":"fa2","role":"security-officer","op":"grant"}`)
	secWant(t, r, http.StatusAccepted, "fa1 requests security-officer for fa2")
	id2, _ := r.json(t)["id"].(string)
	secWant(t, w.postJSON(t, "/admin/role-requests/"+id2+"/approve", fa2.access, "{}"), http.StatusForbidden, "target approves own change")
	if hasRole(roles(ga.access, "fa2"), policy.SecurityOfficer) {
		t.Fatalf("self-approval applied")
	}
	secWant(t, w.postJSON(t, "/admin/role-requests/"+id2+"/reject", fa2.access, "{}"), http.StatusForbidden, "target rejects own change")
	r = w.postJSON(t, "/admin/role-requests/"+id2+"/reject", ga.access, "{}")
	secWant(t, r, http.StatusOK, "group admin rejects")
	if hasRole(roles(ga.access, "fa2"), policy.SecurityOfficer) {
		t.Fatalf("rejected role applied")
	}

	// Nobody requests for themselves, nor group-admin without being one.
	secWant(t, w.postJSON(t, "/admin/role-requests", fa1.access, `{"username":"fa1","role":"physician","op":"grant"}`), http.StatusForbidden, "request for oneself")
	secWant(t, w.postJSON(t, "/admin/role-requests", fa1.access, `{"username":"fa1","role":"group-admin"}`), http.StatusForbidden, "group-admin for oneself")
	secWant(t, w.postJSON(t, "/admin/role-requests", fa1.access, `{"username":"n1","role":"group-admin"}`), http.StatusForbidden, "group-admin requested by a facility admin")
	secWant(t, w.postJSON(t, "/admin/role-requests", fa1.access, `{"username":"n2","role":"physician"}`), http.StatusNotFound, "request for an account of another facility")
	secWant(t, w.postJSON(t, "/admin/role-requests", fa1.access, `{"username":"n1","role":"physician","facility":"`+w.F2+`"}`), http.StatusForbidden, "request adding a facility one does not administer")
	secWant(t, w.postJSON(t, "/admin/role-requests", fa1.access, `{"username":"n1","role":"root"}`), http.StatusBadRequest, "unknown role")

	// Non-administrators: 403 on the whole admin API.
	for _, p := range []string{"/admin/accounts", "/admin/role-requests", "/admin/accounts/n1"} {
		secWant(t, w.get(t, p, n1.access), http.StatusForbidden, "physician-nurse GET "+p)
	}
	secWant(t, w.postJSON(t, "/admin/role-requests", n1.access, `{"username":"n2","role":"physician"}`), http.StatusForbidden, "nurse requests a role")
	secWant(t, w.postJSON(t, "/admin/accounts/n2/disable", n1.access, "{}"), http.StatusForbidden, "nurse disables")

	// The approved list holds n1's grant only (fa2's was rejected).
	r = w.get(t, "/admin/role-requests?status=approved", fa1.access)
	secWant(t, r, http.StatusOK, "list approved")
	var list []map[string]any
	if err := json.Unmarshal(r.Body, &list); err != nil || len(list) != 1 || list[0]["id"] != id {
		t.Fatalf("approved list: %s", r)
	}
}

// TestSecBreakTheGlass: emergency access to one patient, bounded in time
// and reviewed.
func TestSecBreakTheGlass(t *testing.T) {
	w := newSecWorld(t)
	d1 := w.login(t, "d1", "")
	readB := "/fhir/Patient/" + w.B
	btg := "/fhir/Patient/" + w.B + "/$break-the-glass"

	secWant(t, w.get(t, readB, d1.access), http.StatusForbidden, "d1 reads B before")
	secWant(t, w.get(t, "/fhir/Observation/"+w.ObsB, d1.access), http.StatusForbidden, "d1 reads B's Observation before")
	secWant(t, w.get(t, "/fhir/Patient/"+w.C, d1.access), http.StatusForbidden, "d1 reads C (GP at another facility)")
	for _, p := range []string{readB + "/_history", readB + "/_history/1", "/fhir/Observation/" + w.ObsB + "/_history", "/fhir/Observation/" + w.ObsB + "/_history/1"} {
		r := w.get(t, p, d1.access)
		secWant(t, r, http.StatusForbidden, "d1 reads "+p)
		noPatientData(t, r, p)
	}
	r := w.get(t, "/fhir/Patient", d1.access)
	secWant(t, r, http.StatusOK, "d1 searches patients")
	if n := bundleTotal(t, r); n != 1 || !bundleIDs(t, r)["Patient/"+w.A] {
		t.Fatalf("d1 sees %d patients before break-the-glass: %s", n, r)
	}
	// D1 is C's GP, but at F2, where D1 does not work: no path to C.
	for _, q := range []string{
		"/fhir/Practitioner?_id=" + w.D1 + "&_revinclude=Patient:general-practitioner",
		"/fhir/Organization?_id=" + w.F2 + "&_revinclude=Patient:organization",
		"/fhir/Patient?_id=" + w.C,
		"/fhir/Patient?general-practitioner=Practitioner/" + w.D1,
		"/fhir/Observation?subject=Patient/" + w.C,
	} {
		r = w.get(t, q, d1.access)
		if strings.Contains(string(r.Body), famC) || bundleIDsLoose(r)["Patient/"+w.C] || bundleIDsLoose(r)["Observation/"+w.ObsC] {
			t.Fatalf("%s discloses C to D1: %s", q, r)
		}
	}

	for _, c := range []struct{ body, what string }{
		{`{"reason":"bogus","detail":"patient unconscious in ER","minutes":60}`, "unknown reason"},
		{`{"reason":"emergency","detail":"   short   ","minutes":60}`, "short detail"},
		{`{"reason":"emergency","minutes":60}`, "no detail"},
		{`{"reason":"emergency","detail":"patient unconscious in ER","minutes":-5}`, "negative minutes"},
		{`{"reason":"emergency","detail":"` + strings.Repeat("x", 1001) + `"}`, "detail too long"},
		{`not json`, "malformed body"},
	} {
		secWant(t, w.postJSON(t, btg, d1.access, c.body), http.StatusBadRequest, "break-the-glass: "+c.what)
	}
	secWant(t, w.get(t, readB, d1.access), http.StatusForbidden, "d1 reads B after refused requests")
	secWant(t, w.postJSON(t, "/fhir/Patient/no-such-patient/$break-the-glass", d1.access, `{"reason":"emergency","detail":"patient unconscious in ER"}`), http.StatusNotFound, "break-the-glass on a missing patient")

	// Only clinicians with a practitioner identity.
	valid := `{"reason":"emergency","detail":"patient unconscious in ER","minutes":60}`
	for _, u := range []string{"clerk", "fa1", "ga", "so"} {
		tk := w.login(t, u, "")
		secWant(t, w.postJSON(t, btg, tk.access, valid), http.StatusForbidden, u+" breaks the glass")
		if u != "clerk" { // admission reaches every patient of its facility
			secWant(t, w.get(t, readB, tk.access), http.StatusForbidden, u+" reads B")
		}
	}
	so := w.login(t, "so", "")
	r = w.get(t, "/security/break-glass", so.access)
	secWant(t, r, http.StatusOK, "empty review queue")
	if strings.TrimSpace(string(r.Body)) != "[]" {
		t.Fatalf("refused break-the-glass requests were recorded: %s", r)
	}

	// The valid request.
	if w.clk.Now().Before(time.Now()) {
		w.clk.Set(time.Now().UTC()) // grants are stamped with the wall clock
	}
	r = w.postJSON(t, btg, d1.access, valid)
	secWant(t, r, http.StatusCreated, "break-the-glass")
	g := r.json(t)
	gid, _ := g["id"].(string)
	created, err1 := time.Parse(time.RFC3339Nano, fmt.Sprint(g["created"]))
	expires, err2 := time.Parse(time.RFC3339Nano, fmt.Sprint(g["expires"]))
	if gid == "" || err1 != nil || err2 != nil || g["patient"] != w.B || g["reviewed"] != false || g["username"] != "d1" {
		t.Fatalf("grant: %s", r)
	}
	if d := expires.Sub(created); d != time.Hour {
		t.Fatalf("grant lasts %v, want the 60 minutes asked", d)
	}

	secWant(t, w.get(t, readB, d1.access), http.StatusOK, "d1 reads B under the grant")
	secWant(t, w.get(t, "/fhir/Observation/"+w.ObsB, d1.access), http.StatusOK, "d1 reads B's Observation under the grant")
	secWant(t, w.get(t, readB+"/_history", d1.access), http.StatusOK, "d1 reads B's history under the grant")
	r = w.get(t, "/fhir/Patient", d1.access)
	if n := bundleTotal(t, r); n != 2 || !bundleIDs(t, r)["Patient/"+w.B] {
		t.Fatalf("d1's search under the grant: total %d: %s", n, r)
	}
	r = w.get(t, "/fhir/Observation?subject=Patient/"+w.B, d1.access)
	if n := bundleTotal(t, r); n != 1 {
		t.Fatalf("d1's Observation search on B under the grant: %d", n)
	}
	// The grant is d1's, for B only.
	secWant(t, w.get(t, "/fhir/Patient/"+w.C, d1.access), http.StatusForbidden, "d1 reads C under a grant for B")
	d2 := w.login(t, "d2", "")
	secWant(t, w.get(t, readB, d2.access), http.StatusForbidden, "d2 reads B under d1's grant")
	n1 := w.login(t, "n1", "")
	secWant(t, w.get(t, readB, n1.access), http.StatusForbidden, "n1 reads B under d1's grant")

	// A grant is bounded by MaxBreakGlass (4 h) whatever is asked.
	r = w.postJSON(t, "/fhir/Patient/"+w.C+"/$break-the-glass", n1.access, `{"reason":"on-call","detail":"night shift cover for ward 3","minutes":100000}`)
	secWant(t, r, http.StatusCreated, "n1 breaks the glass on C")
	g2 := r.json(t)
	c2, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(g2["created"]))
	e2, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(g2["expires"]))
	if e2.Sub(c2) != 4*time.Hour {
		t.Fatalf("grant of 100000 minutes lasts %v, want 4h", e2.Sub(c2))
	}

	// Review queue: the security officer sees both, reviews d1's.
	r = w.get(t, "/security/break-glass", so.access)
	secWant(t, r, http.StatusOK, "review queue")
	var q []map[string]any
	if err := json.Unmarshal(r.Body, &q); err != nil || len(q) != 2 {
		t.Fatalf("queue: %s", r)
	}
	found := false
	for _, e := range q {
		if e["id"] == gid {
			found = e["reviewed"] == false && e["username"] == "d1" && e["reason"] == "emergency"
		}
	}
	if !found {
		t.Fatalf("d1's grant not in the queue as unreviewed: %s", r)
	}
	secWant(t, w.get(t, "/security/break-glass", d1.access), http.StatusForbidden, "clinician reads the queue")
	fa := w.login(t, "fa1", "")
	secWant(t, w.get(t, "/security/break-glass", fa.access), http.StatusForbidden, "facility admin reads the queue")
	secWant(t, w.postJSON(t, "/security/break-glass/"+gid+"/review", d1.access, `{"note":"justified"}`), http.StatusForbidden, "d1 reviews own grant")
	secWant(t, w.postJSON(t, "/security/break-glass/"+gid+"/review", so.access, `{"note":"   "}`), http.StatusBadRequest, "review without note")
	secWant(t, w.postJSON(t, "/security/break-glass/"+gid+"/review", so.access, `{"note":"justified"}`), http.StatusNoContent, "review")
	secWant(t, w.postJSON(t, "/security/break-glass/"+gid+"/review", so.access, `{"note":"again"}`), http.StatusConflict, "review twice")
	secWant(t, w.postJSON(t, "/security/break-glass/nope/review", so.access, `{"note":"x"}`), http.StatusNotFound, "review unknown")
	r = w.get(t, "/security/break-glass", so.access)
	q = nil
	if err := json.Unmarshal(r.Body, &q); err != nil || len(q) != 1 || q[0]["id"] == gid {
		t.Fatalf("queue after review: %s", r)
	}
	r = w.get(t, "/security/break-glass?status=all", so.access)
	q = nil
	if err := json.Unmarshal(r.Body, &q); err != nil || len(q) != 2 {
		t.Fatalf("all grants: %s", r)
	}
	// Review does not end the grant; time does.
	secWant(t, w.get(t, readB, d1.access), http.StatusOK, "d1 reads B after review")

	// Just before expiry: still open (refreshing the access token, which
	// lives 15 minutes on the same clock).
	w.clk.Set(expires.Add(-time.Minute))
	fresh := w.login(t, "d1", "")
	secWant(t, w.get(t, readB, fresh.access), http.StatusOK, "d1 reads B a minute before expiry")
	w.clk.Set(expires.Add(time.Second))
	secWant(t, w.get(t, readB, fresh.access), http.StatusForbidden, "d1 reads B after expiry")
	secWant(t, w.get(t, "/fhir/Observation/"+w.ObsB, fresh.access), http.StatusForbidden, "d1 reads B's Observation after expiry")
	secWant(t, w.get(t, readB+"/_history/1", fresh.access), http.StatusForbidden, "d1 reads B's first version after expiry")
	r = w.get(t, "/fhir/Patient", fresh.access)
	if n := bundleTotal(t, r); n != 1 || strings.Contains(string(r.Body), famB) {
		t.Fatalf("d1's search after expiry: total %d: %s", n, r)
	}
	secWant(t, w.get(t, "/fhir/Patient/"+w.A, fresh.access), http.StatusOK, "care relationship is unaffected")
}

// TestSecPasswordPolicy: account creation enforces the password policy.
func TestSecPasswordPolicy(t *testing.T) {
	w := newSecWorld(t)
	ctx := context.Background()
	for _, c := range []struct{ user, pw, what string }{
		{"weak1", "qwerty123456", "common password of 12 characters"},
		{"weak2", "QWERTY123456", "common password in upper case"},
		{"weak3", "short", "short password"},
		{"weak4", "elevenchars", "11 characters"},
		{"drsmith", "my-name-is-DrSmith-2024", "password containing the username"},
		{"weak5", "weak5", "password equal to the username"},
		{"weak6", strings.Repeat("ab3$", 300), "password over 1024 bytes"},
	} {
		_, err := w.svc.CreateAccount(ctx, auth.NewAccount{Username: c.user, Password: c.pw, Roles: []string{policy.Nurse}, Facilities: []string{w.F1}})
		if !errors.Is(err, auth.ErrWeakPassword) {
			t.Errorf("%s: CreateAccount: %v, want ErrWeakPassword", c.what, err)
		}
		if err != nil && strings.Contains(err.Error(), c.pw) {
			t.Errorf("%s: error message reveals the password: %v", c.what, err)
		}
		if _, err := w.st.AccountByUsername(ctx, c.user); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: account was created anyway (%v)", c.what, err)
		}
	}
	// A good one is accepted and logs in.
	en, err := w.svc.CreateAccount(ctx, auth.NewAccount{Username: "good", Password: "correct horse battery staple", Roles: []string{policy.Nurse}, Facilities: []string{w.F1}})
	if err != nil {
		t.Fatalf("strong password refused: %v", err)
	}
	if en.Password != "" {
		t.Fatalf("a chosen password is echoed back in the enrolment")
	}
	w.acct["good"] = &secAccount{username: "good", password: "correct horse battery staple", secret: en.TOTPSecret, recovery: en.RecoveryCodes}
	w.login(t, "good", "")
	// Taken usernames, bad usernames.
	if _, err := w.svc.CreateAccount(ctx, auth.NewAccount{Username: "GOOD", Password: "another strong passphrase"}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate username (case-folded): %v", err)
	}
	if _, err := w.svc.CreateAccount(ctx, auth.NewAccount{Username: "bad user!", Password: "another strong passphrase"}); err == nil {
		t.Fatalf("invalid username accepted")
	}
}
