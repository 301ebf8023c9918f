package web

// Administration (issue 7): accounts, four-eyes role changes, facilities,
// and the bulk export requests. Every action is an API call with the
// administrator's own token: the API decides who manages which account,
// refuses a requester's own approval, and audits everything. The pages
// show its refusals as they are, with the form kept.
//
// Administrators manage accounts, not charts: nothing here reads patient
// data (the API gives them none).

import (
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"carnet/internal/api"
	"carnet/internal/policy"
)

func (s *Server) adminPages() {
	s.page("GET "+Prefix+"admin", s.adminAccounts)
	s.page("GET "+Prefix+"admin/new-account", s.adminNewAccount)
	s.page("POST "+Prefix+"admin/new-account", s.adminCreateAccount)
	s.page("GET "+Prefix+"admin/accounts/{username}", s.adminAccount)
	s.page("POST "+Prefix+"admin/accounts/{username}/status", s.adminSetStatus)
	s.page("POST "+Prefix+"admin/accounts/{username}/reset-mfa", s.adminResetMFA)
	s.page("POST "+Prefix+"admin/accounts/{username}/roles", s.adminRequestRole)
	s.page("GET "+Prefix+"admin/roles", s.adminRoleRequests)
	s.page("POST "+Prefix+"admin/roles/{id}", s.adminDecideRole)
	s.page("GET "+Prefix+"admin/facilities", s.adminFacilities)
	s.page("GET "+Prefix+"exports", s.exportRequests)
	s.page("POST "+Prefix+"exports", s.exportRequest)
	s.page("POST "+Prefix+"exports/{id}", s.exportDecide)
}

// ---- shared ---------------------------------------------------------------

// navLink is one link of a page group's own navigation.
type navLink struct {
	Href, Key string
	Current   bool
}

func subnav(current string, links ...navLink) []navLink {
	for i := range links {
		links[i].Current = links[i].Href == current
	}
	return links
}

func adminNav(current string) []navLink {
	return subnav(current,
		navLink{Href: Prefix + "admin", Key: "admin.nav.accounts"},
		navLink{Href: Prefix + "admin/new-account", Key: "admin.nav.new"},
		navLink{Href: Prefix + "admin/roles", Key: "admin.nav.roles"},
		navLink{Href: Prefix + "admin/facilities", Key: "admin.nav.facilities"},
		navLink{Href: Prefix + "exports", Key: "admin.nav.exports"})
}

// deny answers 403 with a page saying why.
func (s *Server) deny(w http.ResponseWriter, r *http.Request, u *user, key string) {
	p := s.newPage(r, u)
	p.Title = p.T("admin.forbidden-title")
	p.Error = p.T(key)
	s.render(w, r, http.StatusForbidden, "error", p)
}

// adminOnly reports whether u administers accounts, else answers 403.
func (s *Server) adminOnly(w http.ResponseWriter, r *http.Request, u *user) bool {
	if u.HasRole(policy.GroupAdmin) || u.HasRole(policy.FacilityAdmin) {
		return true
	}
	s.deny(w, r, u, "admin.forbidden")
	return false
}

// errStatus is the status a page answers with when the API refused: its
// 4xx, or 502 when the API answered something unexpected.
func errStatus(a *apiResponse) int {
	if a.Status >= 400 && a.Status < 500 {
		return a.Status
	}
	return http.StatusBadGateway
}

// jsonBody encodes an API request body.
func jsonBody(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// done maps the ?done= of a redirect after a successful action to its
// notice (a fixed set: nothing of the URL reaches the page).
func done(p *page, r *http.Request, keys ...string) {
	d := r.URL.Query().Get("done")
	for _, k := range keys {
		if d == k {
			p.Notice = p.T("admin.done." + k)
		}
	}
}

// facility is an Organization of the directory.
type facility struct {
	ID, Name, Type, City, Phone, PartOf string
	Active                              bool
}

func facilityOf(o res) facility {
	f := facility{ID: o.str("id"), Name: o.str("name"), Type: concept(resList(o.list("type")).first()),
		City: o.str("address", "city"), PartOf: o.refID("partOf"), Active: o.str("active") != "false"}
	for _, t := range o.list("telecom") {
		if t.str("system") == "phone" {
			f.Phone = t.str("value")
			break
		}
	}
	return f
}

// first is the first resource of a list, or nil.
type resList []res

func (l resList) first() res {
	if len(l) == 0 {
		return nil
	}
	return l[0]
}

// facilities reads the directory's Organizations (up to 500), by id.
func (s *Server) facilities(r *http.Request, u *user) (map[string]facility, []facility) {
	byID := map[string]facility{}
	var list []facility
	a := s.call(r, u, http.MethodGet, "/fhir/Organization?_count=500&_sort=name", nil)
	if !a.OK() {
		return byID, nil
	}
	entries, _, err := a.Entries()
	if err != nil {
		return byID, nil
	}
	for _, e := range entries {
		if e.str("resourceType") != "Organization" {
			continue
		}
		f := facilityOf(e)
		byID[f.ID] = f
		list = append(list, f)
	}
	return byID, list
}

// facilityName is a facility's name, else its id.
func facilityName(byID map[string]facility, id string) string {
	if f, ok := byID[id]; ok && f.Name != "" {
		return f.Name
	}
	return id
}

// ---- accounts -------------------------------------------------------------

// apiAccount is an account as GET /admin/accounts shows it.
type apiAccount struct {
	Username     string    `json:"username"`
	Practitioner string    `json:"practitioner"`
	Display      string    `json:"display"`
	Roles        []string  `json:"roles"`
	Facilities   []string  `json:"facilities"`
	Status       string    `json:"status"`
	StatusReason string    `json:"status_reason"`
	HasPassword  bool      `json:"has_password"`
	Created      time.Time `json:"created"`
	// FacilityNames: the facilities by name, for the page.
	FacilityNames []string `json:"-"`
}

const accountsPerPage = 50

var accountStatuses = []string{"active", "disabled", "suspended"}

type accountsData struct {
	Nav                       []navLink
	Q, Role, Status, Facility string
	Roles, Statuses           []string
	Facilities                []facility
	Accounts                  []apiAccount
	Total, Page, Pages        int
	Prev, Next                string
	Pending                   int // role requests waiting for a decision
}

// adminAccounts: GET /app/admin, the accounts the user manages, filtered
// and paged here (the API lists them all).
func (s *Server) adminAccounts(w http.ResponseWriter, r *http.Request, u *user) {
	if !s.adminOnly(w, r, u) {
		return
	}
	q := r.URL.Query()
	d := &accountsData{Nav: adminNav(Prefix + "admin"), Q: strings.TrimSpace(q.Get("q")), Role: q.Get("role"), Status: q.Get("status"),
		Facility: q.Get("facility"), Roles: policy.Roles, Statuses: accountStatuses, Page: 1}
	if n, err := strconv.Atoi(q.Get("page")); err == nil && n > 1 {
		d.Page = n
	}
	p := s.newPage(r, u)
	p.Title = p.T("admin.title")
	p.Data = d
	done(p, r, "created")
	a := s.call(r, u, http.MethodGet, "/admin/accounts", nil)
	if s.handled(w, r, u, a) {
		return
	}
	var all []apiAccount
	if !a.OK() || a.JSON(&all) != nil {
		p.Error = a.Message()
		s.render(w, r, errStatus(a), "admin", p)
		return
	}
	byID, list := s.facilities(r, u)
	d.Facilities = list
	needle := strings.ToLower(d.Q)
	var match []apiAccount
	for _, acc := range all {
		if needle != "" && !strings.Contains(strings.ToLower(acc.Username+" "+acc.Display+" "+acc.Practitioner), needle) {
			continue
		}
		if d.Role != "" && !slices.Contains(acc.Roles, d.Role) || d.Status != "" && acc.Status != d.Status ||
			d.Facility != "" && !slices.Contains(acc.Facilities, d.Facility) {
			continue
		}
		match = append(match, acc)
	}
	slices.SortFunc(match, func(x, y apiAccount) int { return strings.Compare(x.Username, y.Username) })
	d.Total = len(match)
	d.Pages = max(1, (d.Total+accountsPerPage-1)/accountsPerPage)
	d.Page = min(d.Page, d.Pages)
	from := (d.Page - 1) * accountsPerPage
	d.Accounts = match[from:min(from+accountsPerPage, d.Total)]
	for i := range d.Accounts {
		for _, f := range d.Accounts[i].Facilities {
			d.Accounts[i].FacilityNames = append(d.Accounts[i].FacilityNames, facilityName(byID, f))
		}
	}
	page := func(n int) string {
		v := url.Values{"page": {strconv.Itoa(n)}}
		for k, x := range map[string]string{"q": d.Q, "role": d.Role, "status": d.Status, "facility": d.Facility} {
			if x != "" {
				v.Set(k, x)
			}
		}
		return Prefix + "admin?" + v.Encode()
	}
	if d.Page > 1 {
		d.Prev = page(d.Page - 1)
	}
	if d.Page < d.Pages {
		d.Next = page(d.Page + 1)
	}
	var reqs []apiRoleRequest
	if rr := s.call(r, u, http.MethodGet, "/admin/role-requests?status=pending", nil); rr.OK() && rr.JSON(&reqs) == nil {
		d.Pending = len(reqs)
	}
	s.render(w, r, http.StatusOK, "admin", p)
}

// newAccountData is the account creation form, then its one-time result.
type newAccountData struct {
	Nav                             []navLink
	Username, Display, Practitioner string
	Facilities                      []facility
	Chosen                          map[string]bool // facility ids
	Roles                           []string
	ChosenRoles                     map[string]bool
	Enrol                           string // "first-login" or "now"
}

// enrolmentView is what an account's owner gets, shown once: the initial
// password, and the authenticator when it was made now.
type enrolmentView struct {
	Nav           []navLink
	Username      string
	Password      string
	Secret        string
	QR            template.URL // a data: URL made here
	RecoveryCodes []string
	FirstLogin    bool
	Requests      []apiRoleRequest
	Reset         bool // an MFA reset, not a new account
}

// apiEnrolment is auth.Enrolment as the API encodes it.
type apiEnrolment struct {
	Username      string
	Password      string
	TOTPSecret    string
	TOTPURI       string
	RecoveryCodes []string
}

func (s *Server) enrolmentView(r *http.Request, en apiEnrolment) *enrolmentView {
	v := &enrolmentView{Nav: adminNav(""), Username: en.Username, Password: en.Password, RecoveryCodes: en.RecoveryCodes, FirstLogin: en.TOTPSecret == ""}
	if en.TOTPSecret != "" {
		v.Secret = spaced(en.TOTPSecret)
		if qr, err := qrDataURL(en.TOTPURI); err == nil {
			v.QR = template.URL(qr)
		} else {
			s.log.ErrorContext(r.Context(), "QR code", "err", err)
		}
	}
	return v
}

// manageable lists the facilities u may create accounts at: all for a
// group administrator, else u's own.
func manageable(u *user, list []facility) []facility {
	if u.HasRole(policy.GroupAdmin) {
		return list
	}
	var out []facility
	for _, f := range list {
		if slices.Contains(u.Facilities, f.ID) {
			out = append(out, f)
		}
	}
	return out
}

func (s *Server) newAccountPage(r *http.Request, u *user) (*page, *newAccountData) {
	_, list := s.facilities(r, u)
	roles := slices.Clone(policy.Roles)
	if !u.HasRole(policy.GroupAdmin) {
		roles = slices.DeleteFunc(roles, func(x string) bool { return x == policy.GroupAdmin })
	}
	d := &newAccountData{Nav: adminNav(Prefix + "admin/new-account"), Facilities: manageable(u, list), Chosen: map[string]bool{},
		Roles: roles, ChosenRoles: map[string]bool{}, Enrol: "first-login"}
	p := s.newPage(r, u)
	p.Title = p.T("admin.new.title")
	p.Data = d
	return p, d
}

func (s *Server) adminNewAccount(w http.ResponseWriter, r *http.Request, u *user) {
	if !s.adminOnly(w, r, u) {
		return
	}
	p, _ := s.newAccountPage(r, u)
	s.render(w, r, http.StatusOK, "admin_new", p)
}

// adminCreateAccount creates the account (no role yet: each role chosen is
// a request another administrator approves) and shows its initial
// password once.
func (s *Server) adminCreateAccount(w http.ResponseWriter, r *http.Request, u *user) {
	if !s.adminOnly(w, r, u) {
		return
	}
	p, d := s.newAccountPage(r, u)
	f := r.PostForm
	d.Username, d.Display, d.Practitioner = strings.TrimSpace(f.Get("username")), strings.TrimSpace(f.Get("display")), strings.TrimSpace(f.Get("practitioner"))
	d.Enrol = f.Get("enrol")
	facs, roles := f["facility"], f["role"]
	for _, x := range facs {
		d.Chosen[x] = true
	}
	for _, x := range roles {
		d.ChosenRoles[x] = true
	}
	in := map[string]any{"username": d.Username, "display": d.Display, "practitioner": strings.TrimPrefix(d.Practitioner, "Practitioner/"),
		"facilities": nonNilStrings(facs), "roles": nonNilStrings(roles)}
	switch d.Enrol {
	case "first-login":
		in["enrol"] = "first-login"
	case "now":
	default:
		p.Error = p.T("admin.new.bad-enrol")
		d.Enrol = "first-login"
		s.render(w, r, http.StatusBadRequest, "admin_new", p)
		return
	}
	a := s.call(r, u, http.MethodPost, "/admin/accounts", jsonBody(in))
	if s.handled(w, r, u, a) {
		return
	}
	var out struct {
		Enrolment    apiEnrolment     `json:"enrolment"`
		RoleRequests []apiRoleRequest `json:"role_requests"`
	}
	if !a.OK() || a.JSON(&out) != nil {
		p.Error = a.Message()
		s.render(w, r, errStatus(a), "admin_new", p)
		return
	}
	v := s.enrolmentView(r, out.Enrolment)
	v.Requests = out.RoleRequests
	p.Title = p.T("admin.enrol.title")
	p.Notice = p.T("admin.enrol.created", v.Username)
	p.Data = v
	s.render(w, r, http.StatusCreated, "admin_enrolment", p)
}

func nonNilStrings(v []string) []string {
	out := []string{}
	for _, x := range v {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// apiRoleRequest is a role request as the API shows it.
type apiRoleRequest struct {
	ID          string    `json:"id"`
	Username    string    `json:"username"`
	Op          string    `json:"op"`
	Role        string    `json:"role"`
	Facility    string    `json:"facility"`
	RequestedBy string    `json:"requested_by"`
	Created     time.Time `json:"created"`
	Status      string    `json:"status"`
	DecidedBy   string    `json:"decided_by"`
	// FacilityName, Mine: for the page.
	FacilityName string `json:"-"`
	Mine         bool   `json:"-"`
}

type accountData struct {
	Nav          []navLink
	Account      apiAccount
	Requests     []apiRoleRequest
	Roles        []string
	Facilities   []facility // for a role request's facility
	Op, Role     string     // the role request form
	FacilityPick string
	Self         bool
}

// accountPage loads one account for its page; it answers the request
// itself (and returns nil) when the API refuses.
func (s *Server) accountPage(w http.ResponseWriter, r *http.Request, u *user, username string) (*page, *accountData) {
	p := s.newPage(r, u)
	p.Title = p.T("admin.account.title")
	a := s.call(r, u, http.MethodGet, "/admin/accounts/"+url.PathEscape(username), nil)
	if s.handled(w, r, u, a) {
		return nil, nil
	}
	d := &accountData{Nav: adminNav(""), Roles: policy.Roles, Op: "grant"}
	if !a.OK() || a.JSON(&d.Account) != nil {
		p.Error = a.Message()
		s.render(w, r, errStatus(a), "error", p)
		return nil, nil
	}
	if !u.HasRole(policy.GroupAdmin) {
		d.Roles = slices.DeleteFunc(slices.Clone(d.Roles), func(x string) bool { return x == policy.GroupAdmin })
	}
	d.Self = d.Account.Username == u.Username
	byID, list := s.facilities(r, u)
	d.Facilities = manageable(u, list)
	for _, f := range d.Account.Facilities {
		d.Account.FacilityNames = append(d.Account.FacilityNames, facilityName(byID, f))
	}
	var reqs []apiRoleRequest
	if rr := s.call(r, u, http.MethodGet, "/admin/role-requests", nil); rr.OK() && rr.JSON(&reqs) == nil {
		for _, q := range reqs {
			if q.Username == d.Account.Username {
				q.FacilityName = facilityName(byID, q.Facility)
				q.Mine = q.RequestedBy == u.Username
				d.Requests = append(d.Requests, q)
			}
		}
	}
	slices.SortFunc(d.Requests, func(x, y apiRoleRequest) int { return y.Created.Compare(x.Created) })
	p.Title = p.T("admin.account.title") + " " + d.Account.Username
	p.Data = d
	return p, d
}

func (s *Server) adminAccount(w http.ResponseWriter, r *http.Request, u *user) {
	if !s.adminOnly(w, r, u) {
		return
	}
	p, _ := s.accountPage(w, r, u, r.PathValue("username"))
	if p == nil {
		return
	}
	done(p, r, "disabled", "enabled", "requested", "revoked")
	s.render(w, r, http.StatusOK, "admin_account", p)
}

func accountURL(username, done string) string {
	return Prefix + "admin/accounts/" + url.PathEscape(username) + "?done=" + done
}

// adminSetStatus disables or enables an account (action=disable|enable).
func (s *Server) adminSetStatus(w http.ResponseWriter, r *http.Request, u *user) {
	if !s.adminOnly(w, r, u) {
		return
	}
	username := r.PathValue("username")
	act := r.PostFormValue("action")
	if act != "disable" && act != "enable" {
		p, _ := s.accountPage(w, r, u, username)
		if p != nil {
			p.Error = p.T("admin.account.bad-action")
			s.render(w, r, http.StatusBadRequest, "admin_account", p)
		}
		return
	}
	a := s.call(r, u, http.MethodPost, "/admin/accounts/"+url.PathEscape(username)+"/"+act, nil)
	if s.handled(w, r, u, a) {
		return
	}
	if a.OK() {
		http.Redirect(w, r, accountURL(username, act+"d"), http.StatusSeeOther)
		return
	}
	s.accountError(w, r, u, username, a, nil)
}

// accountError shows the account page with the API's refusal.
func (s *Server) accountError(w http.ResponseWriter, r *http.Request, u *user, username string, a *apiResponse, keep func(*accountData)) {
	p, d := s.accountPage(w, r, u, username)
	if p == nil {
		return
	}
	if keep != nil {
		keep(d)
	}
	p.Error = a.Message()
	s.render(w, r, errStatus(a), "admin_account", p)
}

// adminResetMFA replaces the account's authenticator and shows the new one
// once, to hand to its owner.
func (s *Server) adminResetMFA(w http.ResponseWriter, r *http.Request, u *user) {
	if !s.adminOnly(w, r, u) {
		return
	}
	username := r.PathValue("username")
	a := s.call(r, u, http.MethodPost, "/admin/accounts/"+url.PathEscape(username)+"/reset-mfa", nil)
	if s.handled(w, r, u, a) {
		return
	}
	var out struct {
		Enrolment apiEnrolment `json:"enrolment"`
	}
	if !a.OK() || a.JSON(&out) != nil {
		s.accountError(w, r, u, username, a, nil)
		return
	}
	p := s.newPage(r, u)
	p.Title = p.T("admin.enrol.reset-title")
	p.Notice = p.T("admin.enrol.reset", out.Enrolment.Username)
	v := s.enrolmentView(r, out.Enrolment)
	v.Reset = true
	p.Data = v
	s.render(w, r, http.StatusOK, "admin_enrolment", p)
}

// adminRequestRole asks for a role change: a grant waits for a second
// administrator, a revocation applies at once.
func (s *Server) adminRequestRole(w http.ResponseWriter, r *http.Request, u *user) {
	if !s.adminOnly(w, r, u) {
		return
	}
	username := r.PathValue("username")
	op, role, fac := r.PostFormValue("op"), r.PostFormValue("role"), r.PostFormValue("facility")
	a := s.call(r, u, http.MethodPost, "/admin/role-requests", jsonBody(map[string]string{"username": username, "op": op, "role": role, "facility": fac}))
	if s.handled(w, r, u, a) {
		return
	}
	if a.OK() {
		d := "requested"
		if a.Status == http.StatusOK {
			d = "revoked"
		}
		http.Redirect(w, r, accountURL(username, d), http.StatusSeeOther)
		return
	}
	s.accountError(w, r, u, username, a, func(d *accountData) { d.Op, d.Role, d.FacilityPick = op, role, fac })
}

// ---- four-eyes ------------------------------------------------------------

type rolesData struct {
	Nav      []navLink
	Status   string
	Statuses []string
	Requests []apiRoleRequest
}

func (s *Server) rolesPage(w http.ResponseWriter, r *http.Request, u *user, status string) (*page, bool) {
	p := s.newPage(r, u)
	p.Title = p.T("admin.roles.title")
	if status != "pending" && status != "approved" && status != "rejected" && status != "all" {
		status = "pending"
	}
	d := &rolesData{Nav: adminNav(Prefix + "admin/roles"), Status: status, Statuses: []string{"pending", "approved", "rejected", "all"}}
	p.Data = d
	path := "/admin/role-requests"
	if status != "all" {
		path += "?status=" + status
	}
	a := s.call(r, u, http.MethodGet, path, nil)
	if s.handled(w, r, u, a) {
		return nil, false
	}
	if !a.OK() || a.JSON(&d.Requests) != nil {
		p.Error = a.Message()
		return p, true
	}
	byID, _ := s.facilities(r, u)
	for i := range d.Requests {
		d.Requests[i].FacilityName = facilityName(byID, d.Requests[i].Facility)
		d.Requests[i].Mine = d.Requests[i].RequestedBy == u.Username
	}
	slices.SortFunc(d.Requests, func(x, y apiRoleRequest) int { return y.Created.Compare(x.Created) })
	return p, true
}

// adminRoleRequests: GET /app/admin/roles, the role requests waiting for a
// second administrator (or decided).
func (s *Server) adminRoleRequests(w http.ResponseWriter, r *http.Request, u *user) {
	if !s.adminOnly(w, r, u) {
		return
	}
	p, ok := s.rolesPage(w, r, u, r.URL.Query().Get("status"))
	if !ok {
		return
	}
	done(p, r, "approved", "rejected")
	status := http.StatusOK
	if p.Error != "" {
		status = http.StatusBadGateway
	}
	s.render(w, r, status, "admin_roles", p)
}

// adminDecideRole approves or rejects (decision=approve|reject). The API
// refuses the requester, and the account concerned.
func (s *Server) adminDecideRole(w http.ResponseWriter, r *http.Request, u *user) {
	if !s.adminOnly(w, r, u) {
		return
	}
	dec := r.PostFormValue("decision")
	var a *apiResponse
	if dec == "approve" || dec == "reject" {
		a = s.call(r, u, http.MethodPost, "/admin/role-requests/"+url.PathEscape(r.PathValue("id"))+"/"+dec, []byte("{}"))
		if s.handled(w, r, u, a) {
			return
		}
		if a.OK() {
			http.Redirect(w, r, Prefix+"admin/roles?done="+dec+"d", http.StatusSeeOther)
			return
		}
	}
	p, ok := s.rolesPage(w, r, u, "pending")
	if !ok {
		return
	}
	status := http.StatusBadRequest
	if a == nil {
		p.Error = p.T("admin.roles.bad-decision")
	} else {
		p.Error, status = a.Message(), errStatus(a)
	}
	s.render(w, r, status, "admin_roles", p)
}

// ---- facilities -----------------------------------------------------------

const facilitiesPerPage = 50

type facilitiesData struct {
	Nav        []navLink
	Name       string
	Facilities []facility
	Total      int
	Prev, Next string
}

// adminFacilities: GET /app/admin/facilities, the directory's
// Organizations by name.
func (s *Server) adminFacilities(w http.ResponseWriter, r *http.Request, u *user) {
	if !s.adminOnly(w, r, u) {
		return
	}
	q := r.URL.Query()
	d := &facilitiesData{Nav: adminNav(Prefix + "admin/facilities"), Name: strings.TrimSpace(q.Get("name"))}
	p := s.newPage(r, u)
	p.Title = p.T("admin.facilities.title")
	p.Data = d
	offset, _ := strconv.Atoi(q.Get("offset"))
	offset = max(0, offset)
	v := url.Values{"_count": {strconv.Itoa(facilitiesPerPage)}, "_sort": {"name"}, "_offset": {strconv.Itoa(offset)}}
	if d.Name != "" {
		v.Set("name", d.Name)
	}
	a := s.call(r, u, http.MethodGet, "/fhir/Organization?"+v.Encode(), nil)
	if s.handled(w, r, u, a) {
		return
	}
	entries, total, err := a.Entries()
	if !a.OK() || err != nil {
		p.Error = a.Message()
		s.render(w, r, errStatus(a), "admin_facilities", p)
		return
	}
	for _, e := range entries {
		if e.str("resourceType") == "Organization" {
			d.Facilities = append(d.Facilities, facilityOf(e))
		}
	}
	d.Total = total
	link := func(off int) string {
		lv := url.Values{"offset": {strconv.Itoa(off)}}
		if d.Name != "" {
			lv.Set("name", d.Name)
		}
		return Prefix + "admin/facilities?" + lv.Encode()
	}
	if offset > 0 {
		d.Prev = link(max(0, offset-facilitiesPerPage))
	}
	if offset+len(d.Facilities) < total {
		d.Next = link(offset + facilitiesPerPage)
	}
	s.render(w, r, http.StatusOK, "admin_facilities", p)
}

// ---- bulk exports ---------------------------------------------------------

// exportTypes are the types an export may carry (patient data).
var exportTypes = []string{"Patient", "Encounter", "Condition", "Observation", "MedicationRequest", "CareTeam", "ChargeItem", "Invoice"}

// apiExport is an export request as the API shows it, and whether the
// user asked for it.
type apiExport struct {
	api.ExportView
	Mine bool `json:"-"`
}

// exportForm is the request form's input (kept on a refusal).
type exportForm struct {
	Facility, Since, Until, Reason, Recipient, MaxPatients, ValidHours string
	Types                                                              map[string]bool
}

type exportsData struct {
	Nav        []navLink
	Status     string
	Exports    []apiExport
	Facilities []facility // the user's own, for the form
	Types      []string
	Form       exportForm
	Officer    bool
	NoteFor    map[string]string // decision notes kept on a refusal
}

func (s *Server) exportsPage(w http.ResponseWriter, r *http.Request, u *user, status string) (*page, *exportsData, bool) {
	p := s.newPage(r, u)
	p.Title = p.T("admin.exports.title")
	switch status {
	case "pending", "approved", "rejected", "downloaded", "expired":
	default:
		status = ""
	}
	d := &exportsData{Status: status, Types: exportTypes, Form: exportForm{Types: map[string]bool{"Patient": true}, ValidHours: "24"},
		Officer: u.HasRole(policy.SecurityOfficer), NoteFor: map[string]string{}}
	if u.HasRole(policy.GroupAdmin) || u.HasRole(policy.FacilityAdmin) {
		d.Nav = adminNav(Prefix + "exports")
	} else if d.Officer {
		d.Nav = securityNav(Prefix + "exports")
	}
	p.Data = d
	path := "/export-requests"
	if status != "" {
		path += "?status=" + status
	}
	a := s.call(r, u, http.MethodGet, path, nil)
	if s.handled(w, r, u, a) {
		return nil, nil, false
	}
	if !a.OK() || a.JSON(&d.Exports) != nil {
		p.Error = a.Message()
	}
	for i := range d.Exports {
		d.Exports[i].Mine = d.Exports[i].Requester == u.Username
	}
	slices.SortFunc(d.Exports, func(x, y apiExport) int { return y.Created.Compare(x.Created) })
	byID, _ := s.facilities(r, u)
	for _, f := range u.Facilities {
		if x, ok := byID[f]; ok {
			d.Facilities = append(d.Facilities, x)
		} else {
			d.Facilities = append(d.Facilities, facility{ID: f, Name: f})
		}
	}
	return p, d, true
}

// exportRequests: GET /app/exports. Anyone may ask for an export of their
// facility (the API decides what they may export); the security officer
// sees every request and approves or rejects those of others.
func (s *Server) exportRequests(w http.ResponseWriter, r *http.Request, u *user) {
	p, _, ok := s.exportsPage(w, r, u, r.URL.Query().Get("status"))
	if !ok {
		return
	}
	done(p, r, "requested", "approved", "rejected")
	s.render(w, r, http.StatusOK, "admin_exports", p)
}

// exportRequest asks for an export.
func (s *Server) exportRequest(w http.ResponseWriter, r *http.Request, u *user) {
	f := r.PostForm
	in := exportForm{Facility: f.Get("facility"), Since: strings.TrimSpace(f.Get("since")), Until: strings.TrimSpace(f.Get("until")),
		Reason: strings.TrimSpace(f.Get("reason")), Recipient: strings.TrimSpace(f.Get("recipient")),
		MaxPatients: strings.TrimSpace(f.Get("max_patients")), ValidHours: strings.TrimSpace(f.Get("valid_hours")), Types: map[string]bool{}}
	for _, t := range f["type"] {
		in.Types[t] = true
	}
	fail := func(status int, msg string) {
		p, d, ok := s.exportsPage(w, r, u, "")
		if !ok {
			return
		}
		d.Form = in
		p.Error = msg
		s.render(w, r, status, "admin_exports", p)
	}
	body := map[string]any{"facility": in.Facility, "types": nonNilStrings(f["type"]), "reason": in.Reason, "recipient": in.Recipient}
	for _, d := range []struct {
		field, v string
	}{{"since", in.Since}, {"until", in.Until}} {
		if d.v == "" {
			continue
		}
		iso, ok := isoDate(d.v)
		if !ok {
			fail(http.StatusBadRequest, s.t(r, "admin.exports.bad-date"))
			return
		}
		body[d.field] = iso
	}
	for _, n := range []struct {
		field, v string
	}{{"max_patients", in.MaxPatients}, {"valid_hours", in.ValidHours}} {
		if n.v == "" {
			continue
		}
		x, err := strconv.ParseFloat(strings.ReplaceAll(n.v, ",", "."), 64)
		if err != nil {
			fail(http.StatusBadRequest, s.t(r, "admin.exports.bad-number"))
			return
		}
		if n.field == "max_patients" {
			body[n.field] = int(x)
		} else {
			body[n.field] = x
		}
	}
	a := s.call(r, u, http.MethodPost, "/export-requests", jsonBody(body))
	if s.handled(w, r, u, a) {
		return
	}
	if a.OK() {
		http.Redirect(w, r, Prefix+"exports?done=requested", http.StatusSeeOther)
		return
	}
	fail(errStatus(a), a.Message())
}

// exportDecide approves or rejects an export (decision=approve|reject,
// note): for a security officer who is not its requester (the API says).
func (s *Server) exportDecide(w http.ResponseWriter, r *http.Request, u *user) {
	id, dec, note := r.PathValue("id"), r.PostFormValue("decision"), strings.TrimSpace(r.PostFormValue("note"))
	var a *apiResponse
	if dec == "approve" || dec == "reject" {
		a = s.call(r, u, http.MethodPost, "/export-requests/"+url.PathEscape(id)+"/"+dec, jsonBody(map[string]string{"note": note}))
		if s.handled(w, r, u, a) {
			return
		}
		if a.OK() {
			http.Redirect(w, r, Prefix+"exports?done="+dec+"d", http.StatusSeeOther)
			return
		}
	}
	p, d, ok := s.exportsPage(w, r, u, "")
	if !ok {
		return
	}
	d.NoteFor[id] = note
	status := http.StatusBadRequest
	if a == nil {
		p.Error = p.T("admin.roles.bad-decision")
	} else {
		p.Error, status = a.Message(), errStatus(a)
	}
	s.render(w, r, status, "admin_exports", p)
}
