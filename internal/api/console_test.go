package api

// Tests of what the web application's administration and security console
// added to the API: accounts enrolled at first login, the incident scope
// over HTTP, the audit log's check.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"carnet/internal/audit"
	"carnet/internal/auth"
	"carnet/internal/guard"
	"carnet/internal/store"
)

func TestConsoleCreateAccountEnrolAtFirstLogin(t *testing.T) {
	w := newSecWorld(t)
	ga := w.login(t, "ga", "")

	r := w.postJSON(t, "/admin/accounts", ga.access, `{"username":"new.nurse","display":"New Nurse","facilities":["`+w.F1+`"],"roles":["nurse"],"enrol":"first-login"}`)
	secWant(t, r, http.StatusCreated, "create with enrol=first-login")
	var out struct {
		Enrolment    auth.Enrolment   `json:"enrolment"`
		RoleRequests []map[string]any `json:"role_requests"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatal(err)
	}
	en := out.Enrolment
	if en.Username != "new.nurse" || en.Password == "" || en.TOTPSecret != "" || en.TOTPURI != "" || len(en.RecoveryCodes) != 0 {
		t.Fatalf("first-login enrolment: %+v", en)
	}
	if len(out.RoleRequests) != 1 || out.RoleRequests[0]["status"] != "pending" {
		t.Fatalf("role requests: %s", r)
	}
	// The password leads to enrolment, not to a session.
	pend, err := w.svc.BeginLogin(context.Background(), "new.nurse", en.Password, "127.0.0.1")
	if err != nil || !pend.Enrol {
		t.Fatalf("BeginLogin: %+v %v", pend, err)
	}
	// And nowhere else: no token without an authenticator.
	r = w.tokenReq(t, url.Values{"username": {"new.nurse"}, "password": {en.Password}, "otp": {"123456"}})
	if r.Status == http.StatusOK {
		t.Fatalf("a first-login account got a token before enrolling: %s", r)
	}

	// Without the option: an authenticator now, returned once.
	r = w.postJSON(t, "/admin/accounts", ga.access, `{"username":"new.clerk","facilities":["`+w.F1+`"]}`)
	secWant(t, r, http.StatusCreated, "create with an authenticator")
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatal(err)
	}
	if out.Enrolment.TOTPSecret == "" || len(out.Enrolment.RecoveryCodes) != 10 {
		t.Fatalf("enrolment: %+v", out.Enrolment)
	}
	// Anything else is refused, and creates nothing.
	r = w.postJSON(t, "/admin/accounts", ga.access, `{"username":"new.odd","facilities":["`+w.F1+`"],"enrol":"sms"}`)
	secWant(t, r, http.StatusBadRequest, "enrol=sms")
	if _, err := w.st.AccountByUsername(context.Background(), "new.odd"); err == nil {
		t.Fatal("a refused creation created the account")
	}
	// Still administrators only.
	n1 := w.login(t, "n1", "")
	secWant(t, w.postJSON(t, "/admin/accounts", n1.access, `{"username":"new.x","facilities":["`+w.F1+`"],"enrol":"first-login"}`), http.StatusForbidden, "nurse creates an account")
}

// TestConsoleIncidentScope: the scope of an account lists exactly the
// patients it was shown, for the security officer only, and the guard does
// not count the ids against the officer (who reaches no patient).
func TestConsoleIncidentScope(t *testing.T) {
	w := newSecWorld(t, func(o *Options, st *store.SQL, clk *secClock) {
		o.Guard = guard.New(st, guard.Options{Now: clk.Now})
	})
	ctx := context.Background()
	want := []string{w.A}
	for i := range 7 {
		want = append(want, w.seed(t, "Patient", `{"resourceType":"Patient","name":[{"family":"Scoped`+string(rune('a'+i))+`"}],"managingOrganization":{"reference":"Organization/`+w.F1+`"},"generalPractitioner":[{"reference":"Practitioner/`+w.D1+`"}]}`))
	}
	slices.Sort(want)
	d1 := w.login(t, "d1", "")
	r := w.get(t, "/fhir/Patient?_count=50", d1.access)
	secWant(t, r, http.StatusOK, "d1 lists their patients")
	if n := bundleTotal(t, r); n != len(want) {
		t.Fatalf("d1 sees %d patients, want %d", n, len(want))
	}
	secWant(t, w.get(t, "/fhir/Observation/"+w.ObsA, d1.access), http.StatusOK, "d1 reads A's observation")
	secWant(t, w.get(t, "/fhir/Patient/"+w.B, d1.access), http.StatusForbidden, "d1 is refused B")

	so := w.login(t, "so", "")
	r = w.get(t, "/security/incident?account=D1", so.access)
	secWant(t, r, http.StatusOK, "scope of d1")
	var rep struct {
		Patients []struct {
			Patient    string   `json:"patient"`
			Categories []string `json:"categories"`
			Accesses   int      `json:"accesses"`
		} `json:"patients"`
	}
	if err := json.Unmarshal(r.Body, &rep); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range rep.Patients {
		got = append(got, p.Patient)
		if p.Patient == w.A && !slices.Equal(p.Categories, []string{"identity", "contact", "clinical"}) {
			t.Errorf("A's categories: %v", p.Categories)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("scope lists %v, want %v (B was refused, C never reached)", got, want)
	}
	// The officer was not suspended by the ids: another scope answers.
	r = w.get(t, "/security/incident?account=d1&format=csv", so.access)
	secWant(t, r, http.StatusOK, "csv scope")
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "text/csv") || !strings.Contains(string(r.Body), w.A+",identity contact clinical,") {
		t.Fatalf("csv scope: %s %s", r.Header.Get("Content-Type"), r)
	}
	if strings.Count(string(r.Body), "\n") != len(want)+1 {
		t.Fatalf("csv scope has %d lines: %s", strings.Count(string(r.Body), "\n"), r)
	}
	noPatientData(t, r, "csv scope")
	r = w.get(t, "/security/incident?account=d1&format=md&since=2000-01-01", so.access)
	secWant(t, r, http.StatusOK, "md scope")
	if !strings.Contains(string(r.Body), "# Incident scope") || !strings.Contains(string(r.Body), "patients disclosed: **8**") {
		t.Fatalf("md scope: %s", r)
	}
	// The GDPR article 33 draft: the exact count, no names.
	r = w.get(t, "/security/incident?account=d1&format=art33", so.access)
	secWant(t, r, http.StatusOK, "art33 draft")
	if !strings.Contains(string(r.Body), "GDPR article 33") || !strings.Contains(string(r.Body), "data subjects (patients): **8**") {
		t.Fatalf("art33 draft: %s", r)
	}
	noPatientData(t, r, "art33 draft")
	// A window after the reads holds nothing.
	r = w.get(t, "/security/incident?account=d1&since=2999-01-01T00:00", so.access)
	secWant(t, r, http.StatusOK, "future window")
	if strings.Contains(string(r.Body), w.A) {
		t.Fatalf("future window lists patients: %s", r)
	}
	// The officer's entries record the scope and its ids.
	soAcct, _ := w.st.AccountByUsername(ctx, "so")
	rows, err := w.st.FindAudit(ctx, store.AuditFilter{Account: soAcct.ID, Action: "incident-scope"})
	if err != nil || len(rows) < 3 {
		t.Fatalf("officer's incident-scope entries: %d %v", len(rows), err)
	}
	e, _ := audit.Decode(rows[0].Entry)
	if e.Subject != "incident:account:d1" || !slices.Equal(e.Patients, want) || e.Outcome != 200 {
		t.Fatalf("audit entry: %+v", e)
	}

	// Bad input: 4xx with a message.
	for q, st := range map[string]int{
		"":                           http.StatusBadRequest,
		"account=d1&client=10.0.0.1": http.StatusBadRequest,
		"account=nobody.here":        http.StatusNotFound,
		"account=d1&since=yesterday": http.StatusBadRequest,
		"account=d1&since=2026-03-02&until=2026-03-01": http.StatusBadRequest,
		"account=d1&format=xlsx":                       http.StatusBadRequest,
		"account=d1&patient=" + w.A:                    http.StatusBadRequest,
	} {
		r := w.get(t, "/security/incident?"+q, so.access)
		secWant(t, r, st, "scope ?"+q)
		outcomeOf(t, r.Body)
	}
	// Others: 403, and nothing of the scope.
	for _, u := range []string{"ga", "fa1", "d2", "clerk"} {
		tok := w.login(t, u, "")
		r := w.get(t, "/security/incident?account=d1", tok.access)
		secWant(t, r, http.StatusForbidden, u+" scopes an incident")
		if strings.Contains(string(r.Body), w.A) {
			t.Fatalf("%s's refusal names a patient: %s", u, r)
		}
	}
}

// tamperedLog is the store with one audit entry changed on the way out.
type tamperedLog struct {
	*store.SQL
	idx int64 // -1: intact
}

func (s *tamperedLog) AuditEntries(ctx context.Context, from, to int64, fn func(int64, []byte) error) error {
	return s.SQL.AuditEntries(ctx, from, to, func(i int64, e []byte) error {
		if i == s.idx {
			e = append(append([]byte(nil), e...), ' ')
		}
		return fn(i, e)
	})
}

func TestConsoleAuditLogCheck(t *testing.T) {
	var tl *tamperedLog
	var alog *audit.Log
	w := newSecWorld(t, func(o *Options, st *store.SQL, clk *secClock) {
		tl = &tamperedLog{SQL: st, idx: -1}
		o.Admin = tl
		alog = o.Audit.(*audit.Log)
	})
	so := w.login(t, "so", "")
	for range 5 {
		w.get(t, "/auth/me", so.access)
	}
	if _, err := alog.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := w.get(t, "/security/audit-log", so.access)
	secWant(t, r, http.StatusOK, "log status")
	m := r.json(t)
	cp, _ := m["checkpoint"].(map[string]any)
	if cp == nil || num(cp["size"]) < 5 || m["last_check"] != nil {
		t.Fatalf("status before any check: %s", r)
	}
	r = w.postJSON(t, "/security/audit-log/verify", so.access, "")
	secWant(t, r, http.StatusOK, "check")
	last, _ := r.json(t)["last_check"].(map[string]any)
	if last == nil || last["ok"] != true || num(last["entries"]) < num(cp["size"]) || num(last["checkpoints"]) < 1 || last["by"] != "so" {
		t.Fatalf("check of an intact log: %s", r)
	}
	// An entry below the signed checkpoint changed in the database.
	tl.idx = 2
	r = w.postJSON(t, "/security/audit-log/verify", so.access, "")
	secWant(t, r, http.StatusOK, "check")
	last, _ = r.json(t)["last_check"].(map[string]any)
	if last == nil || last["ok"] != false || !strings.Contains(last["problem"].(string), "was changed") {
		t.Fatalf("check of a tampered log: %s", r)
	}
	// GET shows the last result.
	last, _ = w.get(t, "/security/audit-log", so.access).json(t)["last_check"].(map[string]any)
	if last == nil || last["ok"] != false {
		t.Fatalf("last check: %v", last)
	}
	for _, u := range []string{"ga", "d1"} {
		tok := w.login(t, u, "")
		secWant(t, w.get(t, "/security/audit-log", tok.access), http.StatusForbidden, u+" reads the log status")
		secWant(t, w.postJSON(t, "/security/audit-log/verify", tok.access, ""), http.StatusForbidden, u+" checks the log")
	}
}

// memLog is an audit store in memory for checkLog.
type memLog struct {
	entries [][]byte
	cps     []store.Checkpoint
}

func (m *memLog) AuditSize(context.Context) (int64, error) { return int64(len(m.entries)), nil }
func (m *memLog) Checkpoints(context.Context) ([]store.Checkpoint, error) {
	return m.cps, nil
}
func (m *memLog) AuditEntries(_ context.Context, from, to int64, fn func(int64, []byte) error) error {
	for i, e := range m.entries {
		if e == nil || int64(i) < from || to >= 0 && int64(i) >= to {
			continue
		}
		if err := fn(int64(i), e); err != nil {
			return err
		}
	}
	return nil
}

func TestConsoleCheckLogFindsChanges(t *testing.T) {
	ctx := context.Background()
	m := &memLog{}
	rng := (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewEmptyRange(0)
	var signed []byte
	for i := range 100 {
		e := []byte(`{"entry":` + itoa(int64(i)) + `}`)
		m.entries = append(m.entries, e)
		rng.Append(rfc6962.DefaultHasher.HashLeaf(e), nil)
		if i == 49 || i == 79 {
			root, _ := rng.GetRootHash(nil)
			m.cps = append(m.cps, store.Checkpoint{Size: int64(i + 1), Root: root})
		}
		if i == 89 {
			signed, _ = rng.GetRootHash(nil)
		}
	}
	c, err := checkLog(ctx, m, 90, signed)
	if err != nil || !c.OK || c.Entries != 100 || c.Checkpoints != 3 {
		t.Fatalf("intact: %+v %v", c, err)
	}
	orig := m.entries[60]
	m.entries[60] = []byte(`{"entry":61}`)
	if c, _ := checkLog(ctx, m, 90, signed); c.OK || c.BadIndex == nil || *c.BadIndex != 50 {
		t.Fatalf("edited entry 60: %+v", c)
	}
	m.entries[60] = orig
	// Entries after the last checkpoint are not covered (yet): an edit there
	// passes until the next checkpoint.
	m.entries[95] = []byte(`{"entry":"x"}`)
	if c, _ := checkLog(ctx, m, 90, signed); !c.OK {
		t.Fatalf("edit past the checkpoints: %+v", c)
	}
	// A deleted entry.
	m.entries[10] = nil
	if c, _ := checkLog(ctx, m, 90, signed); c.OK || *c.BadIndex != 10 || !strings.Contains(c.Problem, "missing") {
		t.Fatalf("deleted entry 10: %+v", c)
	}
	// The tail cut below a checkpoint.
	m.entries[10] = []byte(`{"entry":10}`)
	full := m.entries
	m.entries = full[:85]
	if c, _ := checkLog(ctx, m, 90, signed); c.OK || !strings.Contains(c.Problem, "removed") {
		t.Fatalf("truncated log: %+v", c)
	}
	m.entries = full
	m.entries[95] = []byte(`{"entry":95}`)
	if c, _ := checkLog(ctx, m, 90, signed); !c.OK {
		t.Fatalf("restored: %+v", c)
	}
	// The signed checkpoint is what counts: a log rebuilt with database
	// checkpoints to match does not match it.
	if c, _ := checkLog(ctx, m, 90, []byte("another root, another root......")); c.OK {
		t.Fatalf("signed root mismatch: %+v", c)
	}
	m.cps = append(m.cps, store.Checkpoint{Size: 90, Root: []byte("a rewritten database checkpoint.")})
	if c, _ := checkLog(ctx, m, 90, signed); c.OK || !strings.Contains(c.Problem, "differs from the signed checkpoint") {
		t.Fatalf("database checkpoint differs from the signed one: %+v", c)
	}
}
