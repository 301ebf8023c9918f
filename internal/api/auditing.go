package api

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"carnet/internal/audit"
	"carnet/internal/auth"
	"carnet/internal/fhir"
	"carnet/internal/policy"
	"carnet/internal/store"
)

// Auditor appends audit entries durably (audit.Log).
type Auditor interface {
	Append(ctx context.Context, e *audit.Entry) (int64, error)
}

// auditRec collects what one request disclosed or changed; the auditing
// writer turns it into the request's one entry just before the response.
type auditRec struct {
	e        audit.Entry
	patients map[string]bool
	types    map[string]map[string]bool // type -> patients
	// committed: the entry was appended with the request's writes, in the
	// same transaction (the writer must not append it again).
	committed bool
	// guarded: the handler already asked the guard (break-the-glass).
	guarded bool
}

type auditKey struct{}

func recOf(r *http.Request) *auditRec {
	a, _ := r.Context().Value(auditKey{}).(*auditRec)
	return a
}

// disclose records that the response carries (or the request wrote) a
// resource of typ belonging to patient ("" for none).
func disclose(r *http.Request, typ, patient string) {
	a := recOf(r)
	if a == nil {
		return
	}
	if typ != "" {
		if a.types[typ] == nil {
			a.types[typ] = map[string]bool{}
		}
		a.types[typ][patient] = true
	}
	if patient != "" {
		a.patients[patient] = true
	}
}

// auditAs sets the action and subject of the request's entry.
func auditAs(r *http.Request, action, subject string) {
	if a := recOf(r); a != nil {
		if action != "" {
			a.e.Action = action
		}
		if subject != "" {
			a.e.Subject = subject
		}
	}
}

// auditWho fills the caller (for routes that authenticate themselves:
// the token endpoint).
func auditWho(r *http.Request, account, username, session string, roles []string) {
	if a := recOf(r); a != nil {
		a.e.Account, a.e.Username, a.e.Session, a.e.Roles = account, username, session, roles
	}
}

// actions names a route's audit action.
var actions = map[string]string{
	"GET /fhir/{type}/{id}":                     "read",
	"GET /fhir/{type}/{id}/_history/{vid}":      "vread",
	"GET /fhir/{type}/{id}/_history":            "history",
	"GET /fhir/{type}":                          "search",
	"POST /fhir/{type}/_search":                 "search",
	"POST /fhir/{type}":                         "create",
	"PUT /fhir/{type}/{id}":                     "update",
	"DELETE /fhir/{type}/{id}":                  "delete",
	"POST /fhir":                                "bundle",
	"POST /fhir/{$}":                            "bundle",
	"POST /fhir/Patient/{id}/$break-the-glass":  "break-the-glass",
	"POST /fhir/Patient/{id}/$declare-death":    "declare-death",
	"GET /fhir/AuditEvent":                      "audit-search",
	"POST /auth/token":                          "login",
	"POST /auth/revoke":                         "token-revoke",
	"POST /admin/accounts":                      "account-create",
	"POST /admin/accounts/{username}/disable":   "account-disable",
	"POST /admin/accounts/{username}/enable":    "account-enable",
	"POST /admin/accounts/{username}/reset-mfa": "mfa-reset",
	"POST /admin/role-requests":                 "role-request",
	"POST /admin/role-requests/{id}/approve":    "role-approve",
	"POST /admin/role-requests/{id}/reject":     "role-reject",
	"POST /security/break-glass/{id}/review":    "break-the-glass-review",
	"POST /export-requests":                     "export-request",
	"GET /export-requests":                      "export-list",
	"GET /export-requests/{id}":                 "export-show",
	"POST /export-requests/{id}/approve":        "export-approve",
	"POST /export-requests/{id}/reject":         "export-reject",
	"GET /fhir/$export":                         "export",
	"GET /fhir/Patient/$export":                 "export",
	"POST /auth/step-up":                        "step-up",
	"GET /security/alerts":                      "alert-list",
	"POST /security/alerts/{id}/acknowledge":    "alert-acknowledge",
	"GET /security/incident":                    "incident-scope",
	"GET /security/audit-log":                   "audit-log-status",
	"POST /security/audit-log/verify":           "audit-log-check",
}

// audited wraps a handler so that its response leaves only after the
// request's audit entry is durable ("no audit, no data"): if the entry
// cannot be appended, the client gets 503 and nothing else.
func (s *Server) audited(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.auditor == nil {
			h(w, r)
			return
		}
		a := &auditRec{patients: map[string]bool{}, types: map[string]map[string]bool{}}
		a.e.Client = clientAddr(r)
		a.e.Method, a.e.Route = r.Method, r.Pattern
		a.e.Action = actions[r.Pattern]
		if a.e.Action == "" {
			a.e.Action = strings.ToLower(r.Method)
		}
		if p := principal(r); p != nil {
			a.e.Account, a.e.Username, a.e.Session, a.e.Roles = p.AccountID, p.Username, p.Session, p.Roles
			a.e.Purpose = purposeOf(p)
		}
		aw := &auditWriter{ResponseWriter: w, s: s, r: r, rec: a}
		h(aw, r.WithContext(context.WithValue(r.Context(), auditKey{}, a)))
		if !aw.decided {
			aw.WriteHeader(http.StatusOK)
		}
	}
}

// purposeOf says on what ground the caller reaches patients.
func purposeOf(p *auth.Principal) string {
	var ps []string
	for _, r := range p.Roles {
		switch r {
		case policy.Physician, policy.Nurse:
			ps = append(ps, "care-relationship")
		case policy.Pharmacist, policy.AdmissionClerk, policy.BillingClerk:
			ps = append(ps, "facility")
		}
	}
	slices.Sort(ps)
	return strings.Join(slices.Compact(ps), ",")
}

// finish completes the entry with the outcome and what was disclosed.
func (a *auditRec) finish(status int) *audit.Entry {
	e := &a.e
	e.Time = time.Now().UTC()
	e.Outcome = status
	e.Disclosed, e.Patients = nil, nil
	if len(a.types) > 0 {
		e.Disclosed = make(map[string][]string, len(a.types))
		for t, ps := range a.types {
			l := make([]string, 0, len(ps))
			for p := range ps {
				l = append(l, p)
			}
			slices.Sort(l)
			e.Disclosed[t] = l
		}
	}
	for p := range a.patients {
		e.Patients = append(e.Patients, p)
	}
	slices.Sort(e.Patients)
	return e
}

// record is the entry of a commit of ws, appended with the writes (the
// record service's audit hook): the writes are disclosed to the caller
// (the response carries them) and the outcome is the success status.
func (a *auditRec) record(ws []store.Write) *store.AuditRecord {
	status := http.StatusOK
	for i := range ws {
		if ws[i].IfVersion == 0 && !ws[i].Deleted {
			status = http.StatusCreated
		}
	}
	if len(ws) == 1 && ws[0].Deleted {
		status = http.StatusNoContent
	}
	if a.e.Action == "bundle" {
		status = http.StatusOK // a transaction answers 200 with its entries' statuses
	}
	for i := range ws {
		if a.types[ws[i].Type] == nil {
			a.types[ws[i].Type] = map[string]bool{}
		}
		a.types[ws[i].Type][ws[i].Patient] = true
		if ws[i].Patient != "" {
			a.patients[ws[i].Patient] = true
		}
	}
	e := a.finish(status)
	return &store.AuditRecord{At: e.Time, Account: e.Account, Action: e.Action, Client: e.Client, Session: e.Session, Patients: e.Patients, Entry: e.Encode()}
}

// auditWriter appends the entry when the status is decided.
type auditWriter struct {
	http.ResponseWriter
	s       *Server
	r       *http.Request
	rec     *auditRec
	decided bool
	failed  bool
}

func (w *auditWriter) WriteHeader(status int) {
	if w.decided {
		return
	}
	w.decided = true
	if w.rec.committed {
		w.ResponseWriter.WriteHeader(status)
		return
	}
	if refusal := w.s.guardResponse(w.r, w.rec, status); refusal != nil {
		w.refuse(refusal)
		return
	}
	w.s.breakGlassPurpose(w.ResponseWriter, w.r, w.rec, status)
	w.rec.finish(status)
	if _, err := w.s.auditor.Append(context.WithoutCancel(w.r.Context()), &w.rec.e); err != nil {
		w.failed = true
		w.s.log.ErrorContext(w.r.Context(), "audit append failed: request refused", "route", w.rec.e.Route, "err", err)
		h := w.ResponseWriter.Header()
		for _, k := range []string{"Content-Length", "ETag", "Location", "Last-Modified", "Content-Location"} {
			h.Del(k)
		}
		body := fhir.Errorf(http.StatusServiceUnavailable, "transient", "the audit log cannot be written: nothing is disclosed; try again later").Outcome().JSON()
		h.Set("Content-Type", fhirJSON)
		h.Set("Retry-After", "5")
		w.ResponseWriter.WriteHeader(http.StatusServiceUnavailable)
		w.ResponseWriter.Write(body)
		return
	}
	w.ResponseWriter.WriteHeader(status)
}

// refuse replaces the handler's response by the guard's refusal: the
// patients the handler prepared are not disclosed, and the entry says so.
func (w *auditWriter) refuse(f *refusal) {
	w.rec.patients = map[string]bool{}
	w.rec.types = map[string]map[string]bool{}
	w.rec.finish(f.err.Status)
	w.failed = true // the handler's body is swallowed
	h := w.ResponseWriter.Header()
	for _, k := range []string{"Content-Length", "ETag", "Location", "Last-Modified", "Content-Location"} {
		h.Del(k)
	}
	if _, err := w.s.auditor.Append(context.WithoutCancel(w.r.Context()), &w.rec.e); err != nil {
		w.s.log.ErrorContext(w.r.Context(), "audit append failed: request refused", "route", w.rec.e.Route, "err", err)
		body := fhir.Errorf(http.StatusServiceUnavailable, "transient", "the audit log cannot be written: nothing is disclosed; try again later").Outcome().JSON()
		h.Set("Content-Type", fhirJSON)
		h.Set("Retry-After", "5")
		w.ResponseWriter.WriteHeader(http.StatusServiceUnavailable)
		w.ResponseWriter.Write(body)
		return
	}
	for k, v := range f.headers {
		h.Set(k, v)
	}
	body := f.err.Outcome().JSON()
	h.Set("Content-Type", fhirJSON)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.ResponseWriter.WriteHeader(f.err.Status)
	w.ResponseWriter.Write(body)
}

func (w *auditWriter) Write(b []byte) (int, error) {
	if !w.decided {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed {
		return len(b), nil // swallowed: no audit, no data
	}
	return w.ResponseWriter.Write(b)
}
