package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"carnet/internal/auth"
	"carnet/internal/fhir"
	"carnet/internal/guard"
	"carnet/internal/policy"
	"carnet/internal/store"
)

// AlertRepo is the security officer's alert queue (store.SQL).
type AlertRepo interface {
	Alerts(ctx context.Context, status, account string, limit int) ([]*store.Alert, error)
	AcknowledgeAlert(ctx context.Context, id, by, note string, now time.Time) error
}

func (s *Server) guardRoutes() {
	officer := func(h http.HandlerFunc) http.HandlerFunc {
		return s.only(func(p *auth.Principal) bool { return p.HasRole(policy.SecurityOfficer) },
			"the guard's alerts are for the security officer", h)
	}
	s.handle("GET /security/alerts", officer(s.listAlerts))
	s.handle("POST /security/alerts/{id}/acknowledge", officer(s.acknowledgeAlert))
}

// refusal is the guard's answer in place of the handler's.
type refusal struct {
	err     *fhir.Error
	headers map[string]string
}

// guardInput describes the caller of r to the guard.
func guardInput(r *http.Request, action string) guard.Input {
	p := principal(r)
	return guard.Input{Account: p.AccountID, Username: p.Username, Session: p.Session, Client: clientAddr(r), Roles: p.Roles, Action: action}
}

// guardResponse asks the guard about a response that is about to leave with
// status: every patient it discloses (a success), or a refused request for
// patient data (a denial counts). It returns the refusal to send instead,
// or nil. The entry records what the guard decided.
func (s *Server) guardResponse(r *http.Request, a *auditRec, status int) *refusal {
	if s.guard == nil || a.guarded || principal(r) == nil {
		return nil
	}
	in := guardInput(r, a.e.Action)
	var d guard.Decision
	var err error
	switch {
	case status < 300 && len(a.patients) > 0 && !unguarded[a.e.Action]:
		in.Patients = make([]string, 0, len(a.patients))
		for p := range a.patients {
			in.Patients = append(in.Patients, p)
		}
		slices.Sort(in.Patients)
		d, err = s.guard.Check(r.Context(), in)
	case (status == http.StatusForbidden || status == http.StatusNotFound) && guard.IsPatientAction(a.e.Action):
		d, err = s.guard.Denied(r.Context(), in)
	default:
		return nil
	}
	if err != nil {
		s.log.ErrorContext(r.Context(), "guard failed: request refused", "route", a.e.Route, "err", err)
		a.e.Guard = "error: the guard could not decide"
		return &refusal{err: fhir.Errorf(http.StatusServiceUnavailable, "transient", "the access guard cannot decide: nothing is disclosed; try again later"),
			headers: map[string]string{"Retry-After": "5"}}
	}
	a.e.Guard = d.Note()
	return refusalOf(d)
}

// unguarded are the actions whose responses the guard does not count:
// writes answer with what the client sent (the policy decides them), and
// the security officer's audit searches and incident scopes carry patient
// ids, not records. Everything else that discloses a patient is counted.
var unguarded = map[string]bool{"create": true, "update": true, "delete": true, "declare-death": true, "bundle": true, "audit-search": true, "incident-scope": true}

// refusalOf is what the client is told. It never says which limit was
// crossed: the audit entry and the alert do.
func refusalOf(d guard.Decision) *refusal {
	switch d.Verdict {
	case guard.StepUp:
		return &refusal{err: fhir.Errorf(http.StatusUnauthorized, "login",
			"step-up required: this access is unusual for your account; confirm it is you with a fresh one-time code (POST /auth/step-up with otp=...), then retry"),
			headers: map[string]string{"WWW-Authenticate": `Bearer realm="carnet", error="insufficient_user_authentication", error_description="step-up required: POST /auth/step-up"`}}
	case guard.Throttle:
		secs := max(1, int(d.RetryAfter.Round(time.Second)/time.Second))
		return &refusal{err: fhir.Errorf(http.StatusTooManyRequests, "throttled",
			"too many new patient records in a short time: retry in %d seconds", secs),
			headers: map[string]string{"Retry-After": strconv.Itoa(secs)}}
	case guard.Suspend:
		return &refusal{err: fhir.Errorf(http.StatusForbidden, "suspended",
			"this account is suspended pending a security review: nothing more is disclosed; contact your security officer")}
	}
	return nil
}

// breakGlassGuard asks the guard before a break-the-glass grant is made.
// It reports whether the handler may go on (false: the refusal was sent).
func (s *Server) breakGlassGuard(w http.ResponseWriter, r *http.Request, patient string) bool {
	if s.guard == nil {
		return true
	}
	a := recOf(r)
	if a != nil {
		a.guarded = true
	}
	in := guardInput(r, "break-the-glass")
	in.Patients = []string{patient}
	d, err := s.guard.BreakGlass(r.Context(), in)
	if err != nil {
		s.fail(w, r, fhir.Errorf(http.StatusServiceUnavailable, "transient", "the access guard cannot decide: nothing is granted; try again later"))
		return false
	}
	if a != nil {
		a.e.Guard = d.Note()
	}
	if f := refusalOf(d); f != nil {
		for k, v := range f.headers {
			w.Header().Set(k, v)
		}
		s.fail(w, r, f.err)
		return false
	}
	return true
}

// stepUp: POST /auth/step-up (otp=...) with the session's bearer token. A
// fresh TOTP code lifts the guard's soft limits for this session for a
// while; a wrong one counts as a refused request.
func (s *Server) stepUp(w http.ResponseWriter, r *http.Request) {
	if s.guard == nil || s.auth == nil {
		s.fail(w, r, fhir.Errorf(http.StatusNotFound, "not-supported", "step-up is not configured on this server"))
		return
	}
	if err := form(w, r); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	p := principal(r)
	otp := r.PostForm.Get("otp")
	if otp == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "otp (a fresh one-time code from your authenticator) is required")
		return
	}
	err := s.auth.StepUp(r.Context(), p.Username, otp)
	if errors.Is(err, auth.ErrStepUpFailed) || errors.Is(err, auth.ErrUnauthenticated) {
		d, gerr := s.guard.Denied(r.Context(), guardInput(r, "step-up"))
		if a := recOf(r); a != nil && gerr == nil {
			a.e.Guard = d.Note()
		}
		if d.Verdict == guard.Suspend {
			s.fail(w, r, refusalOf(d).err)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="carnet", error="insufficient_user_authentication"`)
		oauthError(w, http.StatusUnauthorized, "invalid_grant", auth.ErrStepUpFailed.Error())
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	until, err := s.guard.RecordStepUp(r.Context(), p.Session, p.AccountID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"session": p.Session, "stepped_up_until": until.Format(time.RFC3339)})
}

func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request) {
	if s.opt.Alerts == nil {
		writeJSON(w, http.StatusOK, map[string]any{"alerts": []any{}})
		return
	}
	q := r.URL.Query()
	status := q.Get("status")
	if status != "" && status != "open" && status != "acknowledged" {
		s.fail(w, r, fhir.Invalid("status", "status is open or acknowledged"))
		return
	}
	limit := 200
	if c := q.Get("_count"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 {
			s.fail(w, r, fhir.Invalid("_count", "expected a whole number >= 1"))
			return
		}
		limit = min(n, 1000)
	}
	account := q.Get("account")
	if u := q.Get("username"); u != "" {
		a, err := s.admin.AccountByUsername(r.Context(), u)
		if err != nil {
			s.fail(w, r, fhir.NotFound("no account %q", clip(u)))
			return
		}
		account = a.ID
	}
	list, err := s.opt.Alerts.Alerts(r.Context(), status, account, limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]guard.AlertJSON, len(list))
	accountStatus := map[string]string{}
	for i, a := range list {
		out[i] = guard.View(a)
		st, ok := accountStatus[a.Account]
		if !ok {
			if acct, err := s.admin.AccountByID(r.Context(), a.Account); err == nil {
				st = acct.Status
			}
			accountStatus[a.Account] = st
		}
		out[i].AccountStatus = st
	}
	writeJSON(w, http.StatusOK, map[string]any{"alerts": out})
}

func (s *Server) acknowledgeAlert(w http.ResponseWriter, r *http.Request) {
	var in struct{ Note string }
	if err := readJSON(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	if len(in.Note) < 5 || len(in.Note) > 2000 {
		s.fail(w, r, fhir.Invalid("note", "say in a sentence what you found (5 to 2000 characters)"))
		return
	}
	if s.opt.Alerts == nil {
		s.fail(w, r, fhir.NotFound("no such alert"))
		return
	}
	id := r.PathValue("id")
	auditAs(r, "", "alert:"+clip(id))
	err := s.opt.Alerts.AcknowledgeAlert(r.Context(), id, principal(r).Username, in.Note, time.Now().UTC())
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.fail(w, r, fhir.NotFound("no alert %q", clip(id)))
	case errors.Is(err, store.ErrExists):
		s.fail(w, r, fhir.Errorf(http.StatusConflict, "conflict", "alert %s was already acknowledged", clip(id)))
	case err != nil:
		s.fail(w, r, err)
	default:
		writeJSON(w, http.StatusOK, map[string]string{"id": id, "status": "acknowledged"})
	}
}
