package web

// The security console (issue 7), for the security officer: the guard's
// alerts and suspensions, the break-the-glass review queue, the audit log
// search, the incident scope of an account and the audit log's check.
// Like every page it is a client of the API with the officer's own token;
// the officer sees patient ids (from the log), never records.

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"carnet/internal/policy"
)

func (s *Server) securityPages() {
	s.page("GET "+Prefix+"security", s.secAlerts)
	s.page("POST "+Prefix+"security/alerts/{id}", s.secAcknowledge)
	s.page("POST "+Prefix+"security/accounts/{username}/enable", s.secEnable)
	s.page("GET "+Prefix+"security/break-glass", s.secBreakGlass)
	s.page("POST "+Prefix+"security/break-glass/{id}", s.secReview)
	s.page("GET "+Prefix+"security/audit", s.secAudit)
	s.page("GET "+Prefix+"security/incident", s.secIncident)
	s.page("GET "+Prefix+"security/incident/download", s.secIncidentDownload)
	s.page("GET "+Prefix+"security/log", s.secLog)
	s.page("POST "+Prefix+"security/log", s.secVerify)
}

func securityNav(current string) []navLink {
	return subnav(current,
		navLink{Href: Prefix + "security", Key: "sec.nav.alerts"},
		navLink{Href: Prefix + "security/break-glass", Key: "sec.nav.btg"},
		navLink{Href: Prefix + "security/audit", Key: "sec.nav.audit"},
		navLink{Href: Prefix + "security/incident", Key: "sec.nav.incident"},
		navLink{Href: Prefix + "security/log", Key: "sec.nav.log"},
		navLink{Href: Prefix + "exports", Key: "admin.nav.exports"})
}

// officerOnly reports whether u is a security officer, else answers 403.
func (s *Server) officerOnly(w http.ResponseWriter, r *http.Request, u *user) bool {
	if u.HasRole(policy.SecurityOfficer) {
		return true
	}
	s.deny(w, r, u, "sec.forbidden")
	return false
}

// Stamp formats a time (time.Time or *time.Time) to the second in the
// page's language; "—" when there is none.
func (p *page) Stamp(v any) string {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x != nil {
			t = *x
		}
	}
	if t.IsZero() {
		return "—"
	}
	t = t.UTC()
	if p.Lang == "fr" {
		return t.Format("02/01/2006 15:04:05") + " UTC"
	}
	return t.Format("2006-01-02 15:04:05") + " UTC"
}

// ---- alerts and suspensions -----------------------------------------------

// apiAlert is a guard alert as the API shows it.
type apiAlert struct {
	ID         string    `json:"id"`
	At         time.Time `json:"at"`
	Account    string    `json:"account"`
	Username   string    `json:"username"`
	Severity   string    `json:"severity"`
	Action     string    `json:"action"`
	Reason     string    `json:"reason"`
	Detail     string    `json:"detail"`
	Status     string    `json:"status"`
	ReviewedBy string    `json:"reviewed_by"`
	Reviewed   time.Time `json:"reviewed"`
	Note       string    `json:"note"`
	// AccountStatus: the account's status now.
	AccountStatus string `json:"account_status"`
}

type alertsData struct {
	Nav              []navLink
	Status, Username string
	Statuses         []string
	Alerts           []apiAlert
	Open, Critical   int
	Suspended        []string // accounts suspended now (of the latest 1,000 alerts, any status)
	Updated          time.Time
	Refresh          string
	NoteFor          map[string]string // notes kept on a refusal
}

func (s *Server) alertsPage(w http.ResponseWriter, r *http.Request, u *user, q url.Values) (*page, bool) {
	d := &alertsData{Nav: securityNav(Prefix + "security"), Status: q.Get("status"), Username: strings.TrimSpace(q.Get("username")),
		Updated: s.opt.Now(), NoteFor: map[string]string{}, Statuses: []string{"open", "acknowledged", "all"}}
	if d.Status != "acknowledged" && d.Status != "all" {
		d.Status = "open"
	}
	p := s.newPage(r, u)
	p.Title = p.T("sec.alerts.title")
	p.Data = d
	v := url.Values{"_count": {"200"}}
	rv := url.Values{}
	if d.Status != "all" {
		v.Set("status", d.Status)
	}
	rv.Set("status", d.Status)
	if d.Username != "" {
		v.Set("username", d.Username)
		rv.Set("username", d.Username)
	}
	d.Refresh = Prefix + "security?" + rv.Encode()
	a := s.call(r, u, http.MethodGet, "/security/alerts?"+v.Encode(), nil)
	if s.handled(w, r, u, a) {
		return nil, false
	}
	var out struct {
		Alerts []apiAlert `json:"alerts"`
	}
	if !a.OK() || a.JSON(&out) != nil {
		p.Error = a.Message()
		return p, true
	}
	d.Alerts = out.Alerts
	// An account is listed while it is suspended, whatever its alerts'
	// status and the filter: enabling it ends the listing, acknowledging
	// its alert does not.
	all := out.Alerts
	if d.Status != "all" || d.Username != "" {
		all = nil
		if b := s.call(r, u, http.MethodGet, "/security/alerts?_count=1000", nil); b.OK() {
			var more struct {
				Alerts []apiAlert `json:"alerts"`
			}
			if b.JSON(&more) == nil {
				all = more.Alerts
			}
		}
	}
	seen := map[string]bool{}
	for _, al := range all {
		if al.AccountStatus == "suspended" && al.Username != "" && !seen[al.Username] {
			seen[al.Username] = true
			d.Suspended = append(d.Suspended, al.Username)
		}
	}
	for _, al := range d.Alerts {
		if al.Status != "open" {
			continue
		}
		d.Open++
		if al.Severity == "critical" {
			d.Critical++
		}
	}
	return p, true
}

// secAlerts: GET /app/security, the guard's alerts (open ones first), the
// accounts it suspended, and what to do about them.
func (s *Server) secAlerts(w http.ResponseWriter, r *http.Request, u *user) {
	if !s.officerOnly(w, r, u) {
		return
	}
	p, ok := s.alertsPage(w, r, u, r.URL.Query())
	if !ok {
		return
	}
	done(p, r, "acknowledged", "enabled")
	status := http.StatusOK
	if p.Error != "" {
		status = http.StatusBadGateway
	}
	s.render(w, r, status, "security", p)
}

// secAcknowledge closes an alert with a note.
func (s *Server) secAcknowledge(w http.ResponseWriter, r *http.Request, u *user) {
	if !s.officerOnly(w, r, u) {
		return
	}
	id, note := r.PathValue("id"), strings.TrimSpace(r.PostFormValue("note"))
	a := s.call(r, u, http.MethodPost, "/security/alerts/"+url.PathEscape(id)+"/acknowledge", jsonBody(map[string]string{"note": note}))
	if s.handled(w, r, u, a) {
		return
	}
	if a.OK() {
		http.Redirect(w, r, Prefix+"security?done=acknowledged", http.StatusSeeOther)
		return
	}
	s.alertsError(w, r, u, a, func(d *alertsData) { d.NoteFor[id] = note })
}

func (s *Server) alertsError(w http.ResponseWriter, r *http.Request, u *user, a *apiResponse, keep func(*alertsData)) {
	p, ok := s.alertsPage(w, r, u, url.Values{})
	if !ok {
		return
	}
	if keep != nil {
		keep(p.Data.(*alertsData))
	}
	p.Error = a.Message()
	s.render(w, r, errStatus(a), "security", p)
}

// secEnable re-enables an account the guard suspended, after review.
func (s *Server) secEnable(w http.ResponseWriter, r *http.Request, u *user) {
	if !s.officerOnly(w, r, u) {
		return
	}
	a := s.call(r, u, http.MethodPost, "/admin/accounts/"+url.PathEscape(r.PathValue("username"))+"/enable", nil)
	if s.handled(w, r, u, a) {
		return
	}
	if a.OK() {
		http.Redirect(w, r, Prefix+"security?done=enabled", http.StatusSeeOther)
		return
	}
	s.alertsError(w, r, u, a, nil)
}

// ---- break-the-glass review -------------------------------------------------

// apiGrant is a break-the-glass grant as the API shows it.
type apiGrant struct {
	ID         string     `json:"id"`
	Username   string     `json:"username"`
	Patient    string     `json:"patient"`
	Reason     string     `json:"reason"`
	Detail     string     `json:"detail"`
	Created    time.Time  `json:"created"`
	Expires    time.Time  `json:"expires"`
	Reviewed   bool       `json:"reviewed"`
	ReviewedAt *time.Time `json:"reviewed_at"`
	ReviewNote string     `json:"review_note"`
}

type btgData struct {
	Nav     []navLink
	All     bool
	Grants  []apiGrant
	NoteFor map[string]string
}

func (s *Server) btgPage(w http.ResponseWriter, r *http.Request, u *user, all bool) (*page, bool) {
	d := &btgData{Nav: securityNav(Prefix + "security/break-glass"), All: all, NoteFor: map[string]string{}}
	p := s.newPage(r, u)
	p.Title = p.T("sec.btg.title")
	p.Data = d
	path := "/security/break-glass"
	if all {
		path += "?status=all"
	}
	a := s.call(r, u, http.MethodGet, path, nil)
	if s.handled(w, r, u, a) {
		return nil, false
	}
	if !a.OK() || a.JSON(&d.Grants) != nil {
		p.Error = a.Message()
	}
	return p, true
}

// secBreakGlass: GET /app/security/break-glass, the grants to review.
func (s *Server) secBreakGlass(w http.ResponseWriter, r *http.Request, u *user) {
	if !s.officerOnly(w, r, u) {
		return
	}
	p, ok := s.btgPage(w, r, u, r.URL.Query().Get("status") == "all")
	if !ok {
		return
	}
	done(p, r, "reviewed")
	s.render(w, r, http.StatusOK, "security_btg", p)
}

// secReview records the review of a grant, with a note.
func (s *Server) secReview(w http.ResponseWriter, r *http.Request, u *user) {
	if !s.officerOnly(w, r, u) {
		return
	}
	id, note := r.PathValue("id"), strings.TrimSpace(r.PostFormValue("note"))
	a := s.call(r, u, http.MethodPost, "/security/break-glass/"+url.PathEscape(id)+"/review", jsonBody(map[string]string{"note": note}))
	if s.handled(w, r, u, a) {
		return
	}
	if a.OK() {
		http.Redirect(w, r, Prefix+"security/break-glass?done=reviewed", http.StatusSeeOther)
		return
	}
	p, ok := s.btgPage(w, r, u, false)
	if !ok {
		return
	}
	p.Data.(*btgData).NoteFor[id] = note
	p.Error = a.Message()
	s.render(w, r, errStatus(a), "security_btg", p)
}

// ---- audit search -----------------------------------------------------------

// auditRow is one AuditEvent for the page.
type auditRow struct {
	ID, Time, User, Action, Client, Purpose, Subject string
	Outcome                                          string // ok, refused, failed
	Patients                                         []string
}

type auditData struct {
	Nav                              []navLink
	Agent, Patient, Action, From, To string
	Count                            int
	Searched                         bool
	Rows                             []auditRow
	Actions                          []string
}

// auditActions are the actions offered in the search form.
var auditActions = []string{"read", "search", "history", "create", "update", "delete", "break-the-glass", "login", "login-failed",
	"export", "export-request", "export-approve", "account-create", "role-request", "role-approve", "incident-scope", "audit-search"}

var auditIDRE = regexp.MustCompile(`^[A-Za-z0-9.\-]{1,64}$`)

// secAudit: GET /app/security/audit, the audit log by user, patient,
// action and period.
func (s *Server) secAudit(w http.ResponseWriter, r *http.Request, u *user) {
	if !s.officerOnly(w, r, u) {
		return
	}
	q := r.URL.Query()
	d := &auditData{Nav: securityNav(Prefix + "security/audit"), Agent: strings.TrimSpace(q.Get("agent")), Patient: strings.TrimSpace(q.Get("patient")),
		Action: strings.TrimSpace(q.Get("action")), From: strings.TrimSpace(q.Get("from")), To: strings.TrimSpace(q.Get("to")), Count: 100, Actions: auditActions}
	if n, err := strconv.Atoi(q.Get("count")); err == nil && n > 0 {
		d.Count = min(n, 1000)
	}
	p := s.newPage(r, u)
	p.Title = p.T("sec.audit.title")
	p.Data = d
	if d.Agent == "" && d.Patient == "" && d.Action == "" && d.From == "" && d.To == "" {
		s.render(w, r, http.StatusOK, "security_audit", p)
		return
	}
	d.Searched = true
	v := url.Values{"_count": {strconv.Itoa(d.Count)}}
	for _, f := range []struct{ k, v string }{{"agent", d.Agent}, {"patient", strings.TrimPrefix(d.Patient, "Patient/")}, {"action", d.Action}} {
		if f.v != "" {
			v.Set(f.k, f.v)
		}
	}
	if !addDateRange(v, d.From, d.To) {
		p.Error = p.T("sec.bad-date")
		s.render(w, r, http.StatusBadRequest, "security_audit", p)
		return
	}
	a := s.call(r, u, http.MethodGet, "/fhir/AuditEvent?"+v.Encode(), nil)
	if s.handled(w, r, u, a) {
		return
	}
	entries, _, err := a.Entries()
	if !a.OK() || err != nil {
		p.Error = a.Message()
		s.render(w, r, errStatus(a), "security_audit", p)
		return
	}
	for _, e := range entries {
		row := auditRow{ID: e.str("id"), Time: p.Date(e.str("recorded")), Subject: e.str("outcomeDesc")}
		if agents := e.list("agent"); len(agents) > 0 {
			ag := agents[0]
			row.User = ag.str("who", "display")
			row.Client = ag.str("network", "address")
			row.Purpose = ag.str("purposeOfUse", "text")
		}
		row.Action = e.str("subtype", "code")
		switch e.str("outcome") {
		case "0":
			row.Outcome = "ok"
		case "4":
			row.Outcome = "refused"
		default:
			row.Outcome = "failed"
		}
		for _, en := range e.list("entity") {
			if id, ok := strings.CutPrefix(en.str("what", "reference"), "Patient/"); ok && auditIDRE.MatchString(id) {
				row.Patients = append(row.Patients, id)
			}
		}
		d.Rows = append(d.Rows, row)
	}
	s.render(w, r, http.StatusOK, "security_audit", p)
}

// ---- incident scope ---------------------------------------------------------

// apiScope is incident.Report as the API encodes it.
type apiScope struct {
	AccountID   string `json:"account_id"`
	Entries     int    `json:"entries"`
	Disclosures int    `json:"disclosures"`
	Records     int    `json:"records"`
	Patients    []struct {
		ID         string    `json:"patient"`
		Categories []string  `json:"categories"`
		Accesses   int       `json:"accesses"`
		First      time.Time `json:"first"`
		Last       time.Time `json:"last"`
	} `json:"patients"`
	Generated time.Time `json:"generated_at"`
}

// scopeCategories are the data categories of a scope, in report order.
var scopeCategories = []string{"identity", "contact", "clinical", "prescriptions", "billing"}

type catCount struct {
	Category string
	Patients int
}

type incidentData struct {
	Nav                   []navLink
	Account, Since, Until string
	Searched              bool
	Report                *apiScope
	ByCategory            []catCount
	CSV, Markdown, Art33  string // download links
}

// incidentQuery is the API query of the page's form.
func incidentQuery(account, since, until, format string) url.Values {
	v := url.Values{"account": {account}}
	for _, f := range []struct{ k, v string }{{"since", since}, {"until", until}} {
		if f.v == "" {
			continue
		}
		if iso, ok := isoDate(f.v); ok {
			v.Set(f.k, iso)
		} else {
			v.Set(f.k, f.v) // a time: the API reads it or says why not
		}
	}
	if format != "" {
		v.Set("format", format)
	}
	return v
}

// secIncident: GET /app/security/incident, which patients an account was
// shown in a period, by data category, with the notification list and
// the report to download.
func (s *Server) secIncident(w http.ResponseWriter, r *http.Request, u *user) {
	if !s.officerOnly(w, r, u) {
		return
	}
	q := r.URL.Query()
	d := &incidentData{Nav: securityNav(Prefix + "security/incident"), Account: strings.TrimSpace(q.Get("account")),
		Since: strings.TrimSpace(q.Get("since")), Until: strings.TrimSpace(q.Get("until"))}
	p := s.newPage(r, u)
	p.Title = p.T("sec.incident.title")
	p.Data = d
	if d.Account == "" {
		if q.Has("account") {
			p.Error = p.T("sec.incident.no-account")
			s.render(w, r, http.StatusBadRequest, "security_incident", p)
			return
		}
		s.render(w, r, http.StatusOK, "security_incident", p)
		return
	}
	d.Searched = true
	v := incidentQuery(d.Account, d.Since, d.Until, "json")
	a := s.call(r, u, http.MethodGet, "/security/incident?"+v.Encode(), nil)
	if s.handled(w, r, u, a) {
		return
	}
	var rep apiScope
	if !a.OK() || a.JSON(&rep) != nil {
		p.Error = a.Message()
		s.render(w, r, errStatus(a), "security_incident", p)
		return
	}
	d.Report = &rep
	counts := map[string]int{}
	for _, pt := range rep.Patients {
		for _, c := range pt.Categories {
			counts[c]++
		}
	}
	for _, c := range scopeCategories {
		d.ByCategory = append(d.ByCategory, catCount{c, counts[c]})
	}
	link := func(format string) string {
		lv := url.Values{"account": {d.Account}, "format": {format}}
		if d.Since != "" {
			lv.Set("since", d.Since)
		}
		if d.Until != "" {
			lv.Set("until", d.Until)
		}
		return Prefix + "security/incident/download?" + lv.Encode()
	}
	d.CSV, d.Markdown, d.Art33 = link("csv"), link("md"), link("art33")
	s.render(w, r, http.StatusOK, "security_incident", p)
}

var fileSafe = regexp.MustCompile(`[^a-z0-9._-]+`)

// secIncidentDownload hands the scope over as a file: the notification
// list (CSV: patient ids, categories, accesses), the report (Markdown) or
// the GDPR article 33 draft (Markdown: counts, no names).
func (s *Server) secIncidentDownload(w http.ResponseWriter, r *http.Request, u *user) {
	if !s.officerOnly(w, r, u) {
		return
	}
	q := r.URL.Query()
	account, format := strings.TrimSpace(q.Get("account")), q.Get("format")
	ext := map[string]string{"csv": "csv", "md": "md", "art33": "md"}[format]
	if account == "" || ext == "" {
		p := s.newPage(r, u)
		p.Title = p.T("sec.incident.title")
		p.Data = &incidentData{Nav: securityNav(Prefix + "security/incident"), Account: account}
		p.Error = p.T("sec.incident.bad-download")
		s.render(w, r, http.StatusBadRequest, "security_incident", p)
		return
	}
	v := incidentQuery(account, strings.TrimSpace(q.Get("since")), strings.TrimSpace(q.Get("until")), format)
	a := s.call(r, u, http.MethodGet, "/security/incident?"+v.Encode(), nil)
	if s.handled(w, r, u, a) {
		return
	}
	if !a.OK() {
		p := s.newPage(r, u)
		p.Title = p.T("sec.incident.title")
		p.Data = &incidentData{Nav: securityNav(Prefix + "security/incident"), Account: account, Since: q.Get("since"), Until: q.Get("until")}
		p.Error = a.Message()
		s.render(w, r, errStatus(a), "security_incident", p)
		return
	}
	kind := "incident"
	if format == "art33" {
		kind = "gdpr-art33"
	}
	name := fmt.Sprintf("%s-%s-%s.%s", kind, strings.Trim(fileSafe.ReplaceAllString(strings.ToLower(account), "-"), "-"), s.opt.Now().UTC().Format("20060102-1504"), ext)
	h := w.Header()
	ctype := "text/csv; charset=utf-8"
	if ext == "md" {
		ctype = "text/markdown; charset=utf-8"
	}
	h.Set("Content-Type", ctype)
	h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	h.Set("Content-Length", strconv.Itoa(len(a.Body)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(a.Body)
}

// ---- the audit log's check --------------------------------------------------

type logData struct {
	Nav        []navLink
	Checkpoint *struct {
		Origin string `json:"origin"`
		Size   int64  `json:"size"`
		Root   string `json:"root"`
		Note   string `json:"note"`
	} `json:"checkpoint"`
	Last *struct {
		At          time.Time `json:"at"`
		By          string    `json:"by"`
		Seconds     float64   `json:"seconds"`
		OK          bool      `json:"ok"`
		Entries     int64     `json:"entries"`
		Checkpoints int       `json:"checkpoints"`
		SignedSize  int64     `json:"signed_size"`
		BadIndex    *int64    `json:"bad_index"`
		Problem     string    `json:"problem"`
	} `json:"last_check"`
	Checking bool `json:"checking"`
}

// secLog: GET /app/security/log, the signed checkpoint and the last check
// of the log against it.
func (s *Server) secLog(w http.ResponseWriter, r *http.Request, u *user) {
	if !s.officerOnly(w, r, u) {
		return
	}
	d := &logData{}
	p := s.newPage(r, u)
	p.Title = p.T("sec.log.title")
	p.Data = d
	done(p, r, "checked", "checking")
	a := s.call(r, u, http.MethodGet, "/security/audit-log", nil)
	if s.handled(w, r, u, a) {
		return
	}
	if !a.OK() || a.JSON(d) != nil {
		p.Error = a.Message()
		d.Nav = securityNav(Prefix + "security/log")
		s.render(w, r, errStatus(a), "security_log", p)
		return
	}
	d.Nav = securityNav(Prefix + "security/log")
	if d.Last != nil && !d.Last.OK {
		p.Error = p.T("sec.log.failed")
	}
	s.render(w, r, http.StatusOK, "security_log", p)
}

// secVerify checks the log now.
func (s *Server) secVerify(w http.ResponseWriter, r *http.Request, u *user) {
	if !s.officerOnly(w, r, u) {
		return
	}
	a := s.call(r, u, http.MethodPost, "/security/audit-log/verify", nil)
	if s.handled(w, r, u, a) {
		return
	}
	switch {
	case a.Status == http.StatusAccepted:
		http.Redirect(w, r, Prefix+"security/log?done=checking", http.StatusSeeOther)
	case a.OK():
		http.Redirect(w, r, Prefix+"security/log?done=checked", http.StatusSeeOther)
	default:
		p := s.newPage(r, u)
		p.Title = p.T("sec.log.title")
		p.Data = &logData{Nav: securityNav(Prefix + "security/log")}
		p.Error = a.Message()
		s.render(w, r, errStatus(a), "security_log", p)
	}
}
