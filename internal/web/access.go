package web

// Break-the-glass (the dialog and the red banner while a grant lasts) and
// a patient's access history (who opened the record), both through the
// API: POST /fhir/Patient/{id}/$break-the-glass and GET
// /fhir/AuditEvent?patient=ID.

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"carnet/internal/api"
	"carnet/internal/policy"
)

// breakGlassReasons are the API's (internal/api/admin.go).
var breakGlassReasons = []string{"emergency", "continuity-of-care", "on-call", "patient-request", "other"}

// breakGlassMinutes are the durations offered (the API caps them at its
// MaxBreakGlass, 4 hours by default).
var breakGlassMinutes = []int{30, 60, 120, 240}

// cookieBTG remembers, for the banner, the break-the-glass grants this
// browser's user obtained: "account/patient:unix-expiry/..." as the API
// answered them. It is only a display hint (the API decides every
// access): a forged value shows a banner to its own author and opens
// nothing. Entries of another account (a shared workstation) are ignored.
const cookieBTG = "carnet_btg"

func btgEntries(r *http.Request, account string, now time.Time) map[string]time.Time {
	out := map[string]time.Time{}
	acct, rest, ok := strings.Cut(cookie(r, cookieBTG), "/")
	if !ok || acct == "" || acct != cookieSafe(account) {
		return out
	}
	for part := range strings.SplitSeq(rest, "/") {
		id, exp, ok := strings.Cut(part, ":")
		n, err := strconv.ParseInt(exp, 10, 64)
		if !ok || err != nil || id == "" {
			continue
		}
		if t := time.Unix(n, 0); t.After(now) {
			out[id] = t
		}
	}
	return out
}

// cookieSafe keeps the characters a cookie value may hold unquoted.
func cookieSafe(s string) string {
	return strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' {
			return c
		}
		return -1
	}, s)
}

// btgUntil reports the end of the user's grant to patient id, if one is
// running.
func (s *Server) btgUntil(r *http.Request, u *user, id string) (time.Time, bool) {
	if t, ok := u.btg[id]; ok {
		return t, true // the API said so on this request's Patient read
	}
	t, ok := btgEntries(r, u.AccountID, s.opt.Now())[id]
	return t, ok
}

// noteBreakGlass records the API's word that a Patient read was made under
// an active break-the-glass grant (whichever browser or instance made it).
func (u *user) noteBreakGlass(id string, a *apiResponse) {
	h := a.Header.Get(api.BreakGlassHeader)
	_, exp, ok := strings.Cut(h, "; expires=")
	if !ok {
		return
	}
	t, err := time.Parse(time.RFC3339, exp)
	if err != nil {
		return
	}
	if u.btg == nil {
		u.btg = map[string]time.Time{}
	}
	u.btg[id] = t
}

func (s *Server) rememberBTG(w http.ResponseWriter, r *http.Request, u *user, id string, until time.Time) {
	now := s.opt.Now()
	m := btgEntries(r, u.AccountID, now)
	m[id] = until
	ids := make([]string, 0, len(m))
	for k := range m {
		ids = append(ids, k)
	}
	// The newest grants, a handful at most (a cookie is small).
	slices.SortFunc(ids, func(a, b string) int { return m[b].Compare(m[a]) })
	if len(ids) > 12 {
		ids = ids[:12]
	}
	parts := []string{cookieSafe(u.AccountID)}
	last := until
	for _, k := range ids {
		parts = append(parts, k+":"+strconv.FormatInt(m[k].Unix(), 10))
		if m[k].After(last) {
			last = m[k]
		}
	}
	age := last.Sub(now)
	if age < time.Minute {
		age = time.Minute
	}
	s.setCookie(w, r, cookieBTG, strings.Join(parts, "/"), min(age, 24*time.Hour), true)
}

// glassData is the dialog's state.
type glassData struct {
	ID, Reason, Detail string
	Minutes            int
	Reasons            []string
	Options            []glassOption
	Allowed            bool
}

type glassOption struct {
	Minutes int
	Until   string
}

func (s *Server) glassPage(r *http.Request, u *user, id string) (*page, *glassData) {
	p := s.newPage(r, u)
	p.Title = p.T("btg.title")
	d := &glassData{ID: id, Minutes: 60, Reasons: breakGlassReasons,
		Allowed: (u.HasRole(policy.Physician) || u.HasRole(policy.Nurse)) && u.Practitioner != ""}
	now := s.opt.Now()
	for _, m := range breakGlassMinutes {
		d.Options = append(d.Options, glassOption{Minutes: m, Until: now.Add(time.Duration(m) * time.Minute).In(time.Local).Format("15:04")})
	}
	p.Data = d
	return p, d
}

// breakGlassForm is the dialog. It shows no patient data: the user has no
// access yet (the patient id is all the page knows).
func (s *Server) breakGlassForm(w http.ResponseWriter, r *http.Request, u *user) {
	id := r.PathValue("id")
	p, _ := s.glassPage(r, u, id)
	s.render(w, r, http.StatusOK, "breakglass", p)
}

func (s *Server) breakGlass(w http.ResponseWriter, r *http.Request, u *user) {
	id := r.PathValue("id")
	p, d := s.glassPage(r, u, id)
	d.Reason = r.PostFormValue("reason")
	d.Detail = strings.TrimSpace(r.PostFormValue("detail"))
	m, err := strconv.Atoi(r.PostFormValue("minutes"))
	switch {
	case !slices.Contains(breakGlassReasons, d.Reason):
		p.Error = p.T("btg.bad-reason")
	case len([]rune(d.Detail)) < 10:
		p.Error = p.T("btg.short-detail")
	case len(d.Detail) > 1000:
		d.Detail = clipRunes(d.Detail, 1000)
		p.Error = p.T("btg.long-detail")
	case err != nil || !slices.Contains(breakGlassMinutes, m):
		p.Error = p.T("btg.bad-minutes")
	}
	if err == nil && slices.Contains(breakGlassMinutes, m) {
		d.Minutes = m
	}
	if p.Error != "" {
		s.render(w, r, http.StatusBadRequest, "breakglass", p)
		return
	}
	body, _ := json.Marshal(map[string]any{"reason": d.Reason, "detail": d.Detail, "minutes": d.Minutes})
	a := s.call(r, u, http.MethodPost, "/fhir/Patient/"+url.PathEscape(id)+"/$break-the-glass", body)
	if s.handled(w, r, u, a) {
		return
	}
	if !a.OK() {
		p.Error = a.Message()
		s.render(w, r, a.Status, "breakglass", p)
		return
	}
	var g struct {
		Expires time.Time `json:"expires"`
	}
	if err := a.JSON(&g); err != nil || g.Expires.IsZero() {
		g.Expires = s.opt.Now().Add(time.Duration(d.Minutes) * time.Minute)
	}
	s.rememberBTG(w, r, u, id, g.Expires)
	http.Redirect(w, r, Prefix+"patients/"+url.PathEscape(id)+"?done=btg", http.StatusSeeOther)
}

// clipRunes cuts s to at most n bytes without splitting a character.
func clipRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// ---- access history -----------------------------------------------------------

// accessRow is one visit: the consecutive audit entries of one account
// within a few minutes (a chart view is several API requests).
type accessRow struct {
	From, To   string
	Who, Roles string
	Actions    []string
	Purpose    string
	BreakGlass bool
	Denied     bool
	Requests   int
	last       time.Time
	account    string
}

type accessData struct {
	ID        string
	Rows      []*accessRow
	Entries   int
	Truncated bool
	From, To  string // the period filter as typed
	Links     *chartLinks
}

// accessLimit is the most entries one page reads (the API's maximum).
const accessLimit = 1000

// visitGap groups entries into one visit.
const visitGap = 10 * time.Minute

// accessHistory: who opened this record. The API says who may ask: the
// security officer, or someone who may read the patient (a patient's
// request goes through their physician or the records office).
func (s *Server) accessHistory(w http.ResponseWriter, r *http.Request, u *user) {
	id := r.PathValue("id")
	p := s.newPage(r, u)
	p.Title = p.T("access.title")
	d := &accessData{ID: id, From: strings.TrimSpace(r.URL.Query().Get("from")), To: strings.TrimSpace(r.URL.Query().Get("to"))}
	p.Data = d
	v := url.Values{"patient": {id}, "_count": {strconv.Itoa(accessLimit)}}
	if !addDateRange(v, d.From, d.To) {
		p.Error = p.T("access.bad-date")
		s.render(w, r, http.StatusBadRequest, "access", p)
		return
	}
	a := s.call(r, u, http.MethodGet, "/fhir/AuditEvent?"+v.Encode(), nil)
	if s.handled(w, r, u, a) {
		return
	}
	if !a.OK() {
		p.Error = p.T("access.refused") + " " + a.Message()
		s.render(w, r, a.Status, "access", p)
		return
	}
	entries, _, err := a.Entries()
	if err != nil {
		p.Error = p.T("error.unavailable")
		s.render(w, r, http.StatusBadGateway, "access", p)
		return
	}
	// The banner, for those who read patients (the security officer reads
	// the log, not the record).
	if may(u, policy.Read, "Patient") {
		pv, _, ok := s.loadPatient(w, r, u, id)
		if !ok {
			return
		}
		p.Patient = pv
		d.Links = s.linksFor(w, r, u, id, "access")
	}
	d.Entries = len(entries)
	d.Truncated = len(entries) >= accessLimit
	d.Rows = visits(p, entries)
	s.render(w, r, http.StatusOK, "access", p)
}

// visits groups the entries (oldest first from the API) into visits,
// newest first.
func visits(p *page, entries []res) []*accessRow {
	var rows []*accessRow
	var cur *accessRow
	for _, e := range entries {
		if e.str("resourceType") != "AuditEvent" {
			continue
		}
		t, _ := parseWhen(e.str("recorded"))
		agents := e.list("agent")
		var ag res
		if len(agents) > 0 {
			ag = agents[0]
		}
		who := ag.str("who", "display")
		if who == "" {
			who = ag.str("who", "identifier", "value")
		}
		var roles []string
		for _, ro := range ag.list("role") {
			roles = append(roles, p.Label("role.", ro.str("coding", "code")))
		}
		account := ag.str("who", "identifier", "value")
		purpose := ""
		if pu := ag.list("purposeOfUse"); len(pu) > 0 {
			purpose = pu[0].str("text")
		}
		action := e.str("subtype", "code")
		btg := strings.HasPrefix(purpose, "break-the-glass") || action == "break-the-glass"
		denied := e.str("outcome") != "" && e.str("outcome") != "0"
		if cur == nil || cur.Who != who || cur.account != account || t.Sub(cur.last) > visitGap || (btg && !cur.BreakGlass) {
			cur = &accessRow{From: e.str("recorded"), Who: who, Roles: strings.Join(roles, ", "), account: account}
			rows = append(rows, cur)
		}
		cur.To, cur.last = e.str("recorded"), t
		cur.Requests++
		if a := p.Label("audit.", action); !slices.Contains(cur.Actions, a) {
			cur.Actions = append(cur.Actions, a)
		}
		if btg {
			cur.BreakGlass = true
			purpose = strings.TrimPrefix(purpose, "break-the-glass:")
			cur.Purpose = p.T("access.btg") + " (" + p.Label("btg.reason.", purpose) + ")"
		} else if cur.Purpose == "" && purpose != "" {
			var ps []string
			for pp := range strings.SplitSeq(purpose, ",") {
				ps = append(ps, p.Label("purpose.", pp))
			}
			cur.Purpose = strings.Join(ps, ", ")
		}
		cur.Denied = cur.Denied || denied
	}
	slices.Reverse(rows)
	return rows
}
