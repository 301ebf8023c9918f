package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"carnet/internal/audit"
	"carnet/internal/guard"
	"carnet/internal/incident"
	"carnet/internal/store"
)

// guardWorld is a secWorld with the guard on, alerts posted to a webhook,
// and many patients at facility F1.
type guardWorld struct {
	*secWorld
	many []string // patients at F1 (no care relationship)

	mu   sync.Mutex
	hook []guard.AlertJSON
}

func newGuardWorld(t *testing.T, patients int) *guardWorld {
	t.Helper()
	gw := &guardWorld{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a guard.AlertJSON
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &a); err == nil {
			gw.mu.Lock()
			gw.hook = append(gw.hook, a)
			gw.mu.Unlock()
		}
	}))
	t.Cleanup(hook.Close)
	gw.secWorld = newSecWorld(t, func(o *Options, st *store.SQL, clk *secClock) {
		wh := guard.NewWebhook(hook.URL, nil, nil)
		t.Cleanup(wh.Close)
		o.Guard = guard.New(st, guard.Options{Now: clk.Now, Alerts: []guard.Notifier{wh}})
		o.Alerts = st
	})
	for range patients {
		gw.many = append(gw.many, gw.seed(t, "Patient", `{"resourceType":"Patient","name":[{"family":"Walkable","given":["Secret"]}],"managingOrganization":{"reference":"Organization/`+gw.F1+`"}}`))
	}
	gw.account(t, "clerk2", "admission-clerk", "", gw.F1)
	return gw
}

func (gw *guardWorld) hooked() []guard.AlertJSON {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	return slices.Clone(gw.hook)
}

// entries returns the decoded audit entries of account (by username).
func (gw *guardWorld) entries(t *testing.T, username string) []*audit.Entry {
	t.Helper()
	a, err := gw.st.AccountByUsername(context.Background(), username)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := gw.st.FindAudit(context.Background(), store.AuditFilter{Account: a.ID})
	if err != nil {
		t.Fatal(err)
	}
	var out []*audit.Entry
	for _, r := range rows {
		e, err := audit.Decode(r.Entry)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// A clerk's session walking its facility's patient list page by page is
// asked for a step-up as the pages cross the ten-minute limit: the refused
// page discloses nothing, its entry says why. A fresh code lets the real
// clerk go on. What the clerk received is exactly what incident scope
// lists.
func TestGuardWalkStepUpHTTP(t *testing.T) {
	gw := newGuardWorld(t, 60)
	tok := gw.login(t, "clerk", "")
	got := map[string]bool{}
	page := "/fhir/Patient?family=Walkable&_count=10"
	var refused *resp
	for range 6 {
		r := gw.get(t, page, tok.access)
		if r.Status != http.StatusOK {
			refused = r
			break
		}
		for id := range bundleIDs(t, r) {
			got[id] = true
		}
		page = pathOf(t, linkURL(r.json(t), "next"))
		gw.clk.Advance(40 * time.Second)
	}
	if refused == nil || len(got) != 20 {
		t.Fatalf("walk: %d patients received, refusal %v; want 20 then a refusal", len(got), refused)
	}
	secWant(t, refused, http.StatusUnauthorized, "page 3")
	if h := refused.Header.Get("WWW-Authenticate"); !strings.Contains(h, `error="insufficient_user_authentication"`) {
		t.Fatalf("step-up answer without the RFC 9470 challenge: %q", h)
	}
	noPatientData(t, refused, "step-up answer")
	if strings.Contains(string(refused.Body), "Walkable") || strings.Contains(string(refused.Body), "20") {
		t.Fatalf("the refusal says too much: %s", refused.Body)
	}
	es := gw.entries(t, "clerk")
	last := es[len(es)-1]
	if last.Outcome != http.StatusUnauthorized || len(last.Patients) != 0 || !strings.HasPrefix(last.Guard, "step-up: ") {
		t.Fatalf("refused page's entry: outcome %d, patients %v, guard %q", last.Outcome, last.Patients, last.Guard)
	}

	// A wrong code is refused; a fresh one lifts the soft limit.
	r := gw.postForm(t, "/auth/step-up", tok.access, url.Values{"otp": {"000000"}})
	secWant(t, r, http.StatusUnauthorized, "wrong step-up code")
	r = gw.postForm(t, "/auth/step-up", tok.access, url.Values{"otp": {gw.otp(t, "clerk")}})
	secWant(t, r, http.StatusOK, "step-up")
	r = gw.get(t, page, tok.access)
	secWant(t, r, http.StatusOK, "page 3 after the step-up")
	for id := range bundleIDs(t, r) {
		got[id] = true
	}

	rep, err := incident.Scope(context.Background(), gw.st, incident.Query{Account: "clerk"})
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, p := range rep.Patients {
		listed["Patient/"+p.ID] = true
	}
	if len(listed) != len(got) {
		t.Fatalf("incident scope lists %d patients, the clerk received %d", len(listed), len(got))
	}
	for id := range got {
		if !listed[id] {
			t.Fatalf("incident scope misses %s", id)
		}
	}
}

// A stolen session cannot answer: its retries suspend the account. Then
// nothing: 403 "suspended", then 401 for the revoked token, and no login.
// The security officer sees the alert (API and webhook) and acknowledges
// it; nobody else may.
func TestGuardSuspensionHTTP(t *testing.T) {
	gw := newGuardWorld(t, 60)
	tok := gw.login(t, "clerk2", "")
	var last *resp
	reads := 0
	for _, id := range gw.many {
		last = gw.get(t, "/fhir/Patient/"+id, tok.access)
		gw.clk.Advance(5 * time.Second)
		if last.Status == http.StatusOK {
			reads++
			continue
		}
		if last.Status == http.StatusForbidden {
			break
		}
		secWant(t, last, http.StatusUnauthorized, "refused read")
	}
	if reads != 20 {
		t.Fatalf("%d reads allowed, want 20", reads)
	}
	secWant(t, last, http.StatusForbidden, "suspension")
	if oo := outcomeOf(t, last.Body); !strings.Contains(string(last.Body), `"code":"suspended"`) {
		t.Fatalf("suspension outcome: %v", oo)
	}
	secWant(t, gw.get(t, "/fhir/Patient/"+gw.many[0], tok.access), http.StatusUnauthorized, "after the suspension")
	a := gw.acct["clerk2"]
	r := gw.tokenReq(t, url.Values{"username": {"clerk2"}, "password": {a.password}, "otp": {gw.otp(t, "clerk2")}})
	if r.Status == http.StatusOK {
		t.Fatal("a suspended account logged in")
	}

	so := gw.login(t, "so", "")
	r = gw.get(t, "/security/alerts?status=open", so.access)
	secWant(t, r, http.StatusOK, "alerts")
	var list struct{ Alerts []guard.AlertJSON }
	if err := json.Unmarshal(r.Body, &list); err != nil {
		t.Fatal(err)
	}
	var crit *guard.AlertJSON
	for i := range list.Alerts {
		if list.Alerts[i].Username == "clerk2" && list.Alerts[i].Severity == "critical" {
			crit = &list.Alerts[i]
		}
	}
	if crit == nil || crit.Action != "suspend" {
		t.Fatalf("no critical suspension alert for clerk2: %s", r.Body)
	}
	fa := gw.login(t, "fa1", "")
	secWant(t, gw.get(t, "/security/alerts", fa.access), http.StatusForbidden, "alerts for an administrator")
	secWant(t, gw.postJSON(t, "/security/alerts/"+crit.ID+"/acknowledge", fa.access, `{"note":"looks fine to me"}`), http.StatusForbidden, "ack by an administrator")
	secWant(t, gw.postJSON(t, "/security/alerts/"+crit.ID+"/acknowledge", so.access, `{"note":"x"}`), http.StatusBadRequest, "ack without a real note")
	secWant(t, gw.postJSON(t, "/security/alerts/"+crit.ID+"/acknowledge", so.access, `{"note":"stolen session, password reset with the user"}`), http.StatusOK, "ack")
	secWant(t, gw.postJSON(t, "/security/alerts/"+crit.ID+"/acknowledge", so.access, `{"note":"stolen session, twice"}`), http.StatusConflict, "second ack")
	secWant(t, gw.postJSON(t, "/security/alerts/nope/acknowledge", so.access, `{"note":"no such alert"}`), http.StatusNotFound, "unknown alert")

	deadline := time.Now().Add(5 * time.Second)
	for {
		found := false
		for _, h := range gw.hooked() {
			found = found || (h.ID == crit.ID && h.Severity == "critical")
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhook never got alert %s: %+v", crit.ID, gw.hooked())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Opening a canary patient suspends at once.
func TestGuardCanaryHTTP(t *testing.T) {
	gw := newGuardWorld(t, 0)
	canary := gw.seed(t, "Patient", `{"resourceType":"Patient","name":[{"family":"Canaryfield"}],"managingOrganization":{"reference":"Organization/`+gw.F1+`"}}`)
	if err := gw.st.AddCanaries(context.Background(), map[string]string{canary: gw.F1}); err != nil {
		t.Fatal(err)
	}
	tok := gw.login(t, "clerk", "")
	r := gw.get(t, "/fhir/Patient/"+canary, tok.access)
	secWant(t, r, http.StatusForbidden, "canary read")
	if strings.Contains(string(r.Body), "Canaryfield") {
		t.Fatal("the canary was disclosed")
	}
	if a, _ := gw.st.AccountByUsername(context.Background(), "clerk"); a.Status != store.StatusSuspended || !strings.Contains(a.StatusReason, "canary") {
		t.Fatalf("account after the canary: %s %q", a.Status, a.StatusReason)
	}
}

// Break-the-glass grants are flagged for review; probing for patients one
// may not read suspends.
func TestGuardBreakGlassAndProbingHTTP(t *testing.T) {
	gw := newGuardWorld(t, 0)
	d1 := gw.login(t, "d1", "")
	r := gw.postJSON(t, "/fhir/Patient/"+gw.B+"/$break-the-glass", d1.access, `{"reason":"emergency","detail":"unconscious patient in the emergency room"}`)
	secWant(t, r, http.StatusCreated, "break-the-glass")
	es := gw.entries(t, "d1")
	if g := es[len(es)-1].Guard; !strings.HasPrefix(g, "flag: break-the-glass") {
		t.Fatalf("break-the-glass entry guard note %q", g)
	}
	alerts, _ := gw.st.Alerts(context.Background(), "open", "", 0)
	if len(alerts) != 1 || alerts[0].Username != "d1" {
		t.Fatalf("alerts after a break-the-glass: %+v", alerts)
	}

	d2 := gw.login(t, "d2", "")
	var last *resp
	for i := range 25 {
		last = gw.get(t, "/fhir/Patient/"+gw.C, d2.access)
		if last.Status != http.StatusForbidden {
			t.Fatalf("probe %d: %d", i, last.Status)
		}
		if strings.Contains(string(last.Body), `"code":"suspended"`) {
			break
		}
	}
	if a, _ := gw.st.AccountByUsername(context.Background(), "d2"); a.Status != store.StatusSuspended {
		t.Fatalf("d2 after 25 refused reads: %s", a.Status)
	}
	secWant(t, gw.get(t, "/fhir/Patient/"+gw.A, d2.access), http.StatusUnauthorized, "after the suspension")
}

// failingGuardStore is a store whose guard counters cannot be written.
type failingGuardStore struct{ *store.SQL }

func (failingGuardStore) GuardTouch(context.Context, string, []string, time.Time, time.Time, []time.Time) ([]int, int, error) {
	return nil, 0, errors.New("disk full")
}

// The guard fails closed: if it cannot count, nothing is disclosed (503),
// and the entry says the guard could not decide.
func TestGuardFailsClosed(t *testing.T) {
	w := newSecWorld(t, func(o *Options, st *store.SQL, clk *secClock) {
		o.Guard = guard.New(failingGuardStore{st}, guard.Options{Now: clk.Now})
	})
	d1 := w.login(t, "d1", "")
	r := w.get(t, "/fhir/Patient/"+w.A, d1.access)
	secWant(t, r, http.StatusServiceUnavailable, "read with a broken guard")
	noPatientData(t, r, "read with a broken guard")
	r = w.get(t, "/fhir/Observation?subject=Patient/"+w.A, d1.access)
	secWant(t, r, http.StatusServiceUnavailable, "search with a broken guard")
	noPatientData(t, r, "search with a broken guard")
	a, _ := w.st.AccountByUsername(context.Background(), "d1")
	rows, _ := w.st.FindAudit(context.Background(), store.AuditFilter{Account: a.ID})
	e, err := audit.Decode(rows[len(rows)-1].Entry)
	if err != nil || e.Outcome != http.StatusServiceUnavailable || len(e.Patients) != 0 || !strings.HasPrefix(e.Guard, "error") {
		t.Fatalf("entry of the refused search: %+v %v", e, err)
	}
}
