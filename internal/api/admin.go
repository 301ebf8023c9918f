package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"carnet/internal/auth"
	"carnet/internal/fhir"
	"carnet/internal/policy"
	"carnet/internal/store"
)

// AdminRepo is the store state behind account administration, four-eyes
// role changes and break-the-glass.
type AdminRepo interface {
	Accounts(ctx context.Context) ([]*store.Account, error)
	AccountByUsername(ctx context.Context, username string) (*store.Account, error)
	AccountByID(ctx context.Context, id string) (*store.Account, error)
	UpdateAccount(ctx context.Context, a *store.Account) error
	CreateRoleRequest(ctx context.Context, r *store.RoleRequest) error
	RoleRequests(ctx context.Context, status string) ([]*store.RoleRequest, error)
	RoleRequest(ctx context.Context, id string) (*store.RoleRequest, error)
	DecideRoleRequest(ctx context.Context, id string, approve bool, by string, now time.Time) error
	CreateBreakGlass(ctx context.Context, g *store.BreakGlass) error
	BreakGlasses(ctx context.Context, unreviewedOnly bool, account string) ([]*store.BreakGlass, error)
	ReviewBreakGlass(ctx context.Context, id, by, note string, now time.Time) error
}

func (s *Server) adminRoutes() {
	s.handle("GET /admin/accounts", s.adminOnly(s.listAccounts))
	s.handle("POST /admin/accounts", s.adminOnly(s.createAccount))
	s.handle("GET /admin/accounts/{username}", s.adminOnly(s.showAccount))
	s.handle("POST /admin/accounts/{username}/disable", s.adminOrSecurity(s.setStatus(store.StatusDisabled)))
	s.handle("POST /admin/accounts/{username}/enable", s.adminOrSecurity(s.setStatus(store.StatusActive)))
	s.handle("POST /admin/accounts/{username}/reset-mfa", s.adminOnly(s.resetMFA))
	s.handle("GET /admin/role-requests", s.adminOnly(s.listRoleRequests))
	s.handle("POST /admin/role-requests", s.adminOnly(s.requestRole))
	s.handle("POST /admin/role-requests/{id}/approve", s.adminOnly(s.decideRole(true)))
	s.handle("POST /admin/role-requests/{id}/reject", s.adminOnly(s.decideRole(false)))
	s.handle("GET /security/break-glass", s.securityOnly(s.listBreakGlass))
	s.handle("POST /security/break-glass/{id}/review", s.securityOnly(s.reviewBreakGlass))
}

// only admits callers that allowed accepts; others get 403 with msg.
func (s *Server) only(allowed func(*auth.Principal) bool, msg string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p := principal(r); p == nil || !allowed(p) {
			s.fail(w, r, policy.Forbidden("%s", msg))
			return
		}
		h(w, r)
	}
}

func (s *Server) adminOnly(h http.HandlerFunc) http.HandlerFunc {
	return s.only(policy.IsAdmin, "account administration is for facility and group administrators", h)
}

// adminOrSecurity: account status changes are for administrators, and for
// the security officer when the account is suspended (review).
func (s *Server) adminOrSecurity(h http.HandlerFunc) http.HandlerFunc {
	return s.only(func(p *auth.Principal) bool { return policy.IsAdmin(p) || p.HasRole(policy.SecurityOfficer) },
		"account status is managed by administrators and the security officer", h)
}

func (s *Server) securityOnly(h http.HandlerFunc) http.HandlerFunc {
	return s.only(func(p *auth.Principal) bool { return p.HasRole(policy.SecurityOfficer) },
		"the break-the-glass review queue is for the security officer", h)
}

// manages reports whether p manages account a: a group administrator
// manages everyone, a facility administrator the accounts of their
// facilities (and only those), except group administrators and security
// officers, whom only a group administrator manages. The security officer
// sees every account (to review suspensions).
func manages(p *auth.Principal, a *store.Account) bool {
	if p.HasRole(policy.GroupAdmin) || p.HasRole(policy.SecurityOfficer) && !policy.IsAdmin(p) {
		return true
	}
	if !policy.IsAdmin(p) || len(a.Facilities) == 0 {
		return false
	}
	for _, r := range a.Roles {
		if r == policy.GroupAdmin || r == policy.SecurityOfficer {
			return false
		}
	}
	for _, f := range a.Facilities {
		if !slices.Contains(p.Facilities, f) {
			return false
		}
	}
	return true
}

// accountView is an account as the admin API shows it (no secrets).
type accountView struct {
	Username     string    `json:"username"`
	Practitioner string    `json:"practitioner,omitempty"`
	Display      string    `json:"display,omitempty"`
	Roles        []string  `json:"roles"`
	Facilities   []string  `json:"facilities"`
	Status       string    `json:"status"`
	StatusReason string    `json:"status_reason,omitempty"`
	HasPassword  bool      `json:"has_password"`
	Created      time.Time `json:"created"`
}

func viewOf(a *store.Account) accountView {
	return accountView{Username: a.Username, Practitioner: a.Practitioner, Display: a.Display, Roles: nonNil(a.Roles), Facilities: nonNil(a.Facilities),
		Status: a.Status, StatusReason: a.StatusReason, HasPassword: a.PasswordHash != "", Created: a.Created}
}

func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

func (s *Server) listAccounts(w http.ResponseWriter, r *http.Request) {
	as, err := s.admin.Accounts(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := principal(r)
	out := []accountView{}
	for _, a := range as {
		if manages(p, a) {
			out = append(out, viewOf(a))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// managedAccount loads the path's account if the caller manages it.
func (s *Server) managedAccount(r *http.Request, username string) (*store.Account, error) {
	a, err := s.admin.AccountByUsername(r.Context(), strings.ToLower(username))
	if errors.Is(err, store.ErrNotFound) || (err == nil && !manages(principal(r), a)) {
		return nil, fhir.NotFound("no account %q that you manage", clip(username))
	}
	return a, err
}

// otherAccount loads an account the caller manages and that is not the
// caller's own (selfMsg says why not).
func (s *Server) otherAccount(r *http.Request, username, selfMsg string) (*store.Account, error) {
	a, err := s.managedAccount(r, username)
	if err != nil {
		return nil, err
	}
	if a.ID == principal(r).AccountID {
		return nil, policy.Forbidden("%s", selfMsg)
	}
	return a, nil
}

func (s *Server) showAccount(w http.ResponseWriter, r *http.Request) {
	a, err := s.managedAccount(r, r.PathValue("username"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewOf(a))
}

// readJSON decodes a small JSON object body.
func readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		return fhir.Invalid("", "could not read the request body")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fhir.Invalid("", "the body must be a JSON object: %v", err)
	}
	return nil
}

// createAccount: POST /admin/accounts. The account is created with a
// generated password and a TOTP authenticator (returned once, to hand to
// its owner), or with "enrol": "first-login" the password alone (its owner
// enrols an authenticator at the first login in the web application), and
// no role: each requested role becomes a role request that another
// administrator must approve.
func (s *Server) createAccount(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Username, Practitioner, Display string
		Roles, Facilities               []string
		// Enrol: "" (an authenticator now, returned once) or "first-login"
		// (none: the owner enrols one at the first login in the web
		// application, and cannot log in anywhere else before).
		Enrol string
	}
	if err := readJSON(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	if in.Enrol != "" && in.Enrol != "first-login" {
		s.fail(w, r, fhir.Invalid("enrol", "enrol is \"first-login\" or absent (an authenticator now)"))
		return
	}
	p := principal(r)
	if len(in.Facilities) == 0 {
		s.fail(w, r, fhir.Invalid("facilities", "an account belongs to at least one facility"))
		return
	}
	if !manages(p, &store.Account{Facilities: in.Facilities}) {
		s.fail(w, r, policy.Forbidden("you may only create accounts at your own facilities"))
		return
	}
	for _, role := range in.Roles {
		if !policy.ValidRole(role) {
			s.fail(w, r, fhir.Invalid("roles", "unknown role %q (one of %s)", clip(role), strings.Join(policy.Roles, ", ")))
			return
		}
		if role == policy.GroupAdmin && !p.HasRole(policy.GroupAdmin) {
			s.fail(w, r, policy.Forbidden("only a group administrator may request the group-admin role"))
			return
		}
	}
	en, err := s.auth.CreateAccount(r.Context(), auth.NewAccount{Username: in.Username, Practitioner: in.Practitioner, Display: in.Display, Facilities: in.Facilities,
		EnrolAtFirstLogin: in.Enrol == "first-login"})
	switch {
	case errors.Is(err, store.ErrExists):
		s.fail(w, r, fhir.Errorf(http.StatusConflict, "duplicate", "username %q is taken", clip(in.Username)))
		return
	case err != nil && strings.HasPrefix(err.Error(), "invalid username"):
		s.fail(w, r, fhir.Invalid("username", "%v", err))
		return
	case err != nil:
		s.fail(w, r, err)
		return
	}
	a, err := s.admin.AccountByUsername(r.Context(), en.Username)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var reqs []*store.RoleRequest
	for _, role := range in.Roles {
		rr := &store.RoleRequest{ID: fhir.NewID(), Account: a.ID, Op: "grant", Role: role, RequestedBy: p.AccountID, Created: time.Now().UTC(), Status: "pending"}
		if err := s.admin.CreateRoleRequest(r.Context(), rr); err != nil {
			s.fail(w, r, err)
			return
		}
		reqs = append(reqs, rr)
	}
	auditAs(r, "", en.Username)
	s.log.InfoContext(r.Context(), "account created", "by", p.Username, "username", en.Username)
	writeJSON(w, http.StatusCreated, map[string]any{"enrolment": en, "role_requests": s.requestViews(r.Context(), reqs)})
}

func (s *Server) setStatus(status string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a, err := s.otherAccount(r, r.PathValue("username"), "you cannot change the status of your own account")
		if err != nil {
			s.fail(w, r, err)
			return
		}
		p := principal(r)
		officer := p.HasRole(policy.SecurityOfficer)
		// A security officer's account is changed by another security
		// officer only: an administrator's stolen session must not silence
		// the one who reads the guard's alerts (the replay's S1b did).
		targetOfficer := slices.Contains(a.Roles, policy.SecurityOfficer)
		switch {
		case a.Status == store.StatusSuspended && !officer:
			s.fail(w, r, policy.Forbidden("a suspended account is reviewed by the security officer, who alone changes its status"))
			return
		case targetOfficer && !officer:
			s.fail(w, r, policy.Forbidden("a security officer's account is disabled or enabled by another security officer, not by an administrator"))
			return
		case a.Status != store.StatusSuspended && !targetOfficer && !policy.IsAdmin(p):
			s.fail(w, r, policy.Forbidden("the security officer changes the status of suspended accounts only; administrators manage the others"))
			return
		}
		auditAs(r, "", a.Username)
		a.Status, a.StatusReason, a.Updated = status, "by "+p.Username, time.Now().UTC()
		if err := s.admin.UpdateAccount(r.Context(), a); err != nil {
			s.fail(w, r, err)
			return
		}
		s.log.InfoContext(r.Context(), "account status", "by", p.Username, "username", a.Username, "status", status)
		writeJSON(w, http.StatusOK, viewOf(a))
	}
}

func (s *Server) resetMFA(w http.ResponseWriter, r *http.Request) {
	a, err := s.otherAccount(r, r.PathValue("username"), "another administrator must reset your own authenticator")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	auditAs(r, "", a.Username)
	en, err := s.auth.ResetMFA(r.Context(), a.Username)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"enrolment": en})
}

type requestView struct {
	ID          string    `json:"id"`
	Username    string    `json:"username"`
	Op          string    `json:"op"`
	Role        string    `json:"role"`
	Facility    string    `json:"facility,omitempty"`
	RequestedBy string    `json:"requested_by"`
	Created     time.Time `json:"created"`
	Status      string    `json:"status"`
	DecidedBy   string    `json:"decided_by,omitempty"`
}

func (s *Server) requestViews(ctx context.Context, rs []*store.RoleRequest) []requestView {
	names := map[string]string{}
	name := func(id string) string {
		if id == "" {
			return ""
		}
		if n, ok := names[id]; ok {
			return n
		}
		n := id
		if a, err := s.admin.AccountByID(ctx, id); err == nil {
			n = a.Username
		}
		names[id] = n
		return n
	}
	out := []requestView{}
	for _, r := range rs {
		out = append(out, requestView{ID: r.ID, Username: name(r.Account), Op: r.Op, Role: r.Role, Facility: r.Facility,
			RequestedBy: name(r.RequestedBy), Created: r.Created, Status: r.Status, DecidedBy: name(r.DecidedBy)})
	}
	return out
}

func (s *Server) listRoleRequests(w http.ResponseWriter, r *http.Request) {
	status := r.URL.Query().Get("status")
	if status != "" && status != "pending" && status != "approved" && status != "rejected" {
		s.fail(w, r, fhir.Invalid("status", "status must be pending, approved or rejected"))
		return
	}
	rs, err := s.admin.RoleRequests(r.Context(), status)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := principal(r)
	var mine []*store.RoleRequest
	for _, rr := range rs {
		if a, err := s.admin.AccountByID(r.Context(), rr.Account); err == nil && manages(p, a) {
			mine = append(mine, rr)
		}
	}
	writeJSON(w, http.StatusOK, s.requestViews(r.Context(), mine))
}

// requestRole: POST /admin/role-requests {username, op, role, facility}.
// Grants wait for a second administrator; revocations (narrowing) apply at
// once. Nobody requests a change to their own account.
func (s *Server) requestRole(w http.ResponseWriter, r *http.Request) {
	var in struct{ Username, Op, Role, Facility string }
	if err := readJSON(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	if in.Op == "" {
		in.Op = "grant"
	}
	if in.Op != "grant" && in.Op != "revoke" {
		s.fail(w, r, fhir.Invalid("op", "op must be grant or revoke"))
		return
	}
	if !policy.ValidRole(in.Role) {
		s.fail(w, r, fhir.Invalid("role", "unknown role %q (one of %s)", clip(in.Role), strings.Join(policy.Roles, ", ")))
		return
	}
	a, err := s.otherAccount(r, in.Username, "you cannot change your own roles")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := principal(r)
	if in.Role == policy.GroupAdmin && !p.HasRole(policy.GroupAdmin) {
		s.fail(w, r, policy.Forbidden("only a group administrator may grant or revoke group-admin"))
		return
	}
	if in.Facility != "" && !p.HasRole(policy.GroupAdmin) && !slices.Contains(p.Facilities, in.Facility) {
		s.fail(w, r, policy.Forbidden("you may only add accounts to your own facilities"))
		return
	}
	auditAs(r, "", a.Username+" "+in.Op+" "+in.Role)
	now := time.Now().UTC()
	rr := &store.RoleRequest{ID: fhir.NewID(), Account: a.ID, Op: in.Op, Role: in.Role, Facility: in.Facility, RequestedBy: p.AccountID, Created: now, Status: "pending"}
	if err := s.admin.CreateRoleRequest(r.Context(), rr); err != nil {
		s.fail(w, r, err)
		return
	}
	status := http.StatusAccepted
	if in.Op == "revoke" {
		// Narrowing needs no second person.
		if err := s.admin.DecideRoleRequest(r.Context(), rr.ID, true, p.AccountID, now); err != nil {
			s.fail(w, r, err)
			return
		}
		rr, _ = s.admin.RoleRequest(r.Context(), rr.ID)
		status = http.StatusOK
	}
	s.log.InfoContext(r.Context(), "role request", "by", p.Username, "username", a.Username, "op", in.Op, "role", in.Role, "id", rr.ID)
	writeJSON(w, status, s.requestViews(r.Context(), []*store.RoleRequest{rr})[0])
}

// decideRole: approve or reject a pending request. The approver is neither
// the requester nor the account concerned, and manages that account.
func (s *Server) decideRole(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rr, err := s.admin.RoleRequest(r.Context(), r.PathValue("id"))
		if errors.Is(err, store.ErrNotFound) {
			s.fail(w, r, fhir.NotFound("no role request %q", clip(r.PathValue("id"))))
			return
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		p := principal(r)
		auditAs(r, "", "approval:"+rr.ID)
		a, err := s.admin.AccountByID(r.Context(), rr.Account)
		if err != nil || !manages(p, a) {
			s.fail(w, r, fhir.NotFound("no role request %q that you manage", clip(rr.ID)))
			return
		}
		switch {
		case rr.RequestedBy == p.AccountID:
			s.fail(w, r, policy.Forbidden("four-eyes: another administrator must decide on your own request"))
			return
		case rr.Account == p.AccountID:
			s.fail(w, r, policy.Forbidden("you cannot decide on a change to your own roles"))
			return
		case rr.Role == policy.GroupAdmin && !p.HasRole(policy.GroupAdmin):
			s.fail(w, r, policy.Forbidden("only a group administrator may approve group-admin"))
			return
		case rr.Status != "pending":
			s.fail(w, r, fhir.Errorf(http.StatusConflict, "conflict", "request %s is already %s", rr.ID, rr.Status))
			return
		}
		if err := s.admin.DecideRoleRequest(r.Context(), rr.ID, approve, p.AccountID, time.Now().UTC()); err != nil {
			if errors.Is(err, store.ErrConflict) {
				s.fail(w, r, fhir.Errorf(http.StatusConflict, "conflict", "request %s was decided meanwhile", rr.ID))
				return
			}
			s.fail(w, r, err)
			return
		}
		rr, _ = s.admin.RoleRequest(r.Context(), rr.ID)
		s.log.InfoContext(r.Context(), "role request decided", "by", p.Username, "id", rr.ID, "status", rr.Status)
		writeJSON(w, http.StatusOK, s.requestViews(r.Context(), []*store.RoleRequest{rr})[0])
	}
}

// Break-the-glass reasons.
var breakGlassReasons = []string{"emergency", "continuity-of-care", "on-call", "patient-request", "other"}

// breakGlass: POST /fhir/Patient/{id}/$break-the-glass {reason, detail,
// minutes}. A clinician without a care relationship opens one patient's
// record for a limited time; the grant waits in the security officer's
// review queue.
func (s *Server) breakGlass(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	if p == nil {
		s.fail(w, r, fhir.Errorf(http.StatusBadRequest, "not-supported", "break-the-glass needs an authenticated clinician"))
		return
	}
	if !(p.HasRole(policy.Physician) || p.HasRole(policy.Nurse)) || p.Practitioner == "" {
		s.fail(w, r, policy.Forbidden("break-the-glass is for physicians and nurses"))
		return
	}
	var in struct {
		Reason, Detail string
		Minutes        int
	}
	if err := readJSON(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	if !slices.Contains(breakGlassReasons, in.Reason) {
		s.fail(w, r, fhir.Invalid("reason", "reason must be one of %s", strings.Join(breakGlassReasons, ", ")))
		return
	}
	if len(strings.TrimSpace(in.Detail)) < 10 {
		s.fail(w, r, fhir.Invalid("detail", "say in a sentence why you need this record (at least 10 characters)"))
		return
	}
	if len(in.Detail) > 1000 {
		s.fail(w, r, fhir.Invalid("detail", "detail is limited to 1000 characters"))
		return
	}
	dur := s.opt.MaxBreakGlass
	if in.Minutes < 0 {
		s.fail(w, r, fhir.Invalid("minutes", "minutes must be positive"))
		return
	}
	if in.Minutes > 0 {
		dur = min(dur, time.Duration(in.Minutes)*time.Minute)
	}
	id := r.PathValue("id")
	if !fhir.ValidID(id) {
		s.fail(w, r, fhir.Invalid("id", "invalid patient id"))
		return
	}
	if pat, err := s.st.Read(r.Context(), "Patient", id); err != nil || pat.Deleted {
		s.fail(w, r, fhir.NotFound("Patient/%s does not exist", id))
		return
	}
	if !s.breakGlassGuard(w, r, id) {
		return
	}
	now := time.Now().UTC()
	g := &store.BreakGlass{ID: fhir.NewID(), Account: p.AccountID, Patient: id, Reason: in.Reason, Detail: strings.TrimSpace(in.Detail), Created: now, Expires: now.Add(dur)}
	if err := s.admin.CreateBreakGlass(r.Context(), g); err != nil {
		s.fail(w, r, err)
		return
	}
	s.grants.forget(p.AccountID)
	disclose(r, "Patient", id)
	auditAs(r, "", "grant:"+g.ID)
	if a := recOf(r); a != nil {
		a.e.Purpose = "break-the-glass:" + g.Reason
	}
	s.log.WarnContext(r.Context(), "break-the-glass", "account", p.Username, "patient", id, "reason", in.Reason, "expires", g.Expires, "grant", g.ID)
	writeJSON(w, http.StatusCreated, breakGlassView(g, p.Username))
}

func breakGlassView(g *store.BreakGlass, username string) map[string]any {
	v := map[string]any{"id": g.ID, "username": username, "patient": g.Patient, "reason": g.Reason, "detail": g.Detail,
		"created": g.Created, "expires": g.Expires, "reviewed": !g.Reviewed.IsZero()}
	if !g.Reviewed.IsZero() {
		v["reviewed_at"], v["review_note"] = g.Reviewed, g.ReviewNote
	}
	return v
}

// listBreakGlass: GET /security/break-glass[?status=unreviewed|all].
func (s *Server) listBreakGlass(w http.ResponseWriter, r *http.Request) {
	st := r.URL.Query().Get("status")
	if st != "" && st != "unreviewed" && st != "all" {
		s.fail(w, r, fhir.Invalid("status", "status must be unreviewed (default) or all"))
		return
	}
	gs, err := s.admin.BreakGlasses(r.Context(), st != "all", "")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := []map[string]any{}
	names := map[string]string{}
	for _, g := range gs {
		n, ok := names[g.Account]
		if !ok {
			n = g.Account
			if a, err := s.admin.AccountByID(r.Context(), g.Account); err == nil {
				n = a.Username
			}
			names[g.Account] = n
		}
		out = append(out, breakGlassView(g, n))
	}
	writeJSON(w, http.StatusOK, out)
}

// reviewBreakGlass: POST /security/break-glass/{id}/review {note}.
func (s *Server) reviewBreakGlass(w http.ResponseWriter, r *http.Request) {
	var in struct{ Note string }
	if err := readJSON(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	if strings.TrimSpace(in.Note) == "" {
		s.fail(w, r, fhir.Invalid("note", "a review needs a note (justified, or what follows up)"))
		return
	}
	auditAs(r, "", "grant:"+r.PathValue("id"))
	err := s.admin.ReviewBreakGlass(r.Context(), r.PathValue("id"), principal(r).AccountID, strings.TrimSpace(in.Note), time.Now().UTC())
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.fail(w, r, fhir.NotFound("no break-the-glass grant %q", clip(r.PathValue("id"))))
	case errors.Is(err, store.ErrConflict):
		s.fail(w, r, fhir.Errorf(http.StatusConflict, "conflict", "already reviewed"))
	case err != nil:
		s.fail(w, r, err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
