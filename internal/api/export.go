package api

// Bulk export (FHIR $export to NDJSON), only with a second person's
// approval (docs/export.md):
//
//	POST /export-requests                 an account asks: facility, types, period, reason, recipient
//	GET  /export-requests[/{id}]          the security officer sees all, others their own
//	POST /export-requests/{id}/approve    a security officer who is not the requester
//	POST /export-requests/{id}/reject
//	GET  /fhir/$export?_exportRequest=ID  the requester downloads once, before it expires
//
// The download is synchronous: the NDJSON comes back in the kick-off
// response (a simplification of the asynchronous Bulk Data protocol). Its
// patients are decided, audited and guarded before the status line; every
// resource is watermarked for this export (incident.Watermark) and the
// Patient rows carry two or three canaries.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"carnet/internal/auth"
	"carnet/internal/fhir"
	"carnet/internal/incident"
	"carnet/internal/policy"
	"carnet/internal/store"
)

// ExportRepo is the store state behind bulk exports (store.SQL).
type ExportRepo interface {
	CreateExportRequest(ctx context.Context, e *store.ExportRequest) error
	ExportRequest(ctx context.Context, id string) (*store.ExportRequest, error)
	ExportRequests(ctx context.Context, requester string) ([]*store.ExportRequest, error)
	DecideExportRequest(ctx context.Context, id string, approve bool, by, note string, now, expires time.Time) error
	ExpireExportRequest(ctx context.Context, id string, now time.Time) (bool, error)
	ClaimExport(ctx context.Context, id string, now time.Time) error
	FinishExport(ctx context.Context, id string, patients, rows int) error
	ExportPatients(ctx context.Context, typ string, sc *store.Scope, since, until time.Time, limit int) ([]string, error)
	ExportScan(ctx context.Context, typ string, sc *store.Scope, since, until time.Time, fn func(*store.Resource) error) error
}

// Limits of an export request.
const (
	// MaxExportPatients bounds the patients of one export (and is the
	// default): a larger scope is refused, not truncated.
	MaxExportPatients = 50_000
	// defaultExportValid is how long an approved export may be downloaded;
	// maxExportValid caps what a requester may ask.
	defaultExportValid = 24 * time.Hour
	maxExportValid     = 72 * time.Hour
	// exportApprovalWindow: a request not approved within it expires.
	exportApprovalWindow = 7 * 24 * time.Hour
	// exportWriteTimeout replaces the server's write timeout for a download.
	exportWriteTimeout = 30 * time.Minute
)

func (s *Server) exportRoutes() {
	officer := func(h http.HandlerFunc) http.HandlerFunc {
		return s.only(func(p *auth.Principal) bool { return p.HasRole(policy.SecurityOfficer) },
			"export requests are approved or rejected by a security officer", h)
	}
	s.handle("POST /export-requests", s.requestExport)
	s.handle("GET /export-requests", s.listExports)
	s.handle("GET /export-requests/{id}", s.showExport)
	s.handle("POST /export-requests/{id}/approve", officer(s.decideExport(true)))
	s.handle("POST /export-requests/{id}/reject", officer(s.decideExport(false)))
	s.handle("GET /fhir/$export", s.bulkExport)
	s.handle("GET /fhir/Patient/$export", s.bulkExport)
}

// exports is the export store: the admin store or the resource store,
// whichever implements it (store.SQL does both).
func (s *Server) exports() ExportRepo {
	if r, ok := s.admin.(ExportRepo); ok {
		return r
	}
	if r, ok := s.st.(ExportRepo); ok {
		return r
	}
	return nil
}

// now is the decision clock (the policy's, which tests set).
func (s *Server) now() time.Time {
	if s.pol != nil && s.pol.Now != nil {
		return s.pol.Now().UTC()
	}
	return time.Now().UTC()
}

// exportCaller returns the caller and the export store, or the error to
// answer.
func (s *Server) exportCaller() (ExportRepo, error) {
	repo := s.exports()
	if repo == nil || s.pol == nil {
		return nil, fhir.Errorf(http.StatusNotImplemented, "not-supported", "bulk export is not available on this server")
	}
	return repo, nil
}

// ExportView is an export request as the API shows it (never its key);
// the web application decodes the same shape.
type ExportView struct {
	ID           string     `json:"id"`
	Status       string     `json:"status"`
	Requester    string     `json:"requester"`
	Facility     string     `json:"facility"`
	FacilityName string     `json:"facility_name,omitempty"`
	Types        []string   `json:"types"`
	Since        *time.Time `json:"since,omitempty"`
	Until        *time.Time `json:"until,omitempty"`
	Reason       string     `json:"reason"`
	Recipient    string     `json:"recipient"`
	MaxPatients  int        `json:"max_patients"`
	ValidHours   float64    `json:"valid_hours"`
	Created      time.Time  `json:"created"`
	DecidedBy    string     `json:"decided_by,omitempty"`
	Decided      *time.Time `json:"decided,omitempty"`
	Note         string     `json:"decision_note,omitempty"`
	Expires      time.Time  `json:"expires"`
	Downloaded   *time.Time `json:"downloaded,omitempty"`
	Patients     int        `json:"patients,omitempty"`
	Rows         int        `json:"rows,omitempty"`
	Download     string     `json:"download,omitempty"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// username is an account's username (its id if it is gone).
func (s *Server) username(ctx context.Context, id string, cache map[string]string) string {
	if id == "" {
		return ""
	}
	if n, ok := cache[id]; ok {
		return n
	}
	n := id
	if a, err := s.admin.AccountByID(ctx, id); err == nil {
		n = a.Username
	}
	cache[id] = n
	return n
}

func (s *Server) viewExport(r *http.Request, e *store.ExportRequest, names map[string]string) ExportView {
	status := e.Status
	if (status == store.ExportPending || status == store.ExportApproved) && !s.now().Before(e.Expires) {
		status = store.ExportExpired
	}
	v := ExportView{ID: e.ID, Status: status, Requester: s.username(r.Context(), e.Requester, names), Facility: e.Facility, FacilityName: e.FacilityName,
		Types: nonNil(e.Types), Since: optTime(e.Since), Until: optTime(e.Until), Reason: e.Reason, Recipient: e.Recipient, MaxPatients: e.MaxPatients,
		ValidHours: e.Valid.Hours(), Created: e.Created, DecidedBy: s.username(r.Context(), e.DecidedBy, names), Decided: optTime(e.Decided),
		Note: e.DecisionNote, Expires: e.Expires, Downloaded: optTime(e.Downloaded), Patients: e.Patients, Rows: e.Rows}
	if status == store.ExportApproved {
		v.Download = s.base(r) + "/$export?_exportRequest=" + url.QueryEscape(e.ID)
	}
	return v
}

// readStrictJSON decodes a small JSON object body, refusing unknown fields
// (a misspelt "facilty" must not become an export of nothing in particular).
// An empty body is allowed when optional.
func readStrictJSON(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		return fhir.Invalid("", "could not read the request body (at most 64 KiB)")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return nil
		}
		return fhir.Invalid("", "a JSON object is required")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fhir.Invalid("", "the body must be a JSON object of the documented fields: %v", err)
	}
	if dec.More() {
		return fhir.Invalid("", "unexpected data after the JSON object")
	}
	return nil
}

// typeList reads "types": an array of type names or one space- or
// comma-separated string.
type typeList []string

func (t *typeList) UnmarshalJSON(b []byte) error {
	var arr []string
	if err := json.Unmarshal(b, &arr); err == nil {
		*t = arr
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`"types" is an array of resource types or a string of them`)
	}
	*t = strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' })
	return nil
}

func parseDay(field, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fhir.Invalid(field, "%s must be a date (2026-01-31) or an instant (2026-01-31T08:00:00Z), not %q", field, clip(v))
}

// requestExport: POST /export-requests.
func (s *Server) requestExport(w http.ResponseWriter, r *http.Request) {
	repo, err := s.exportCaller()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := principal(r)
	if p == nil {
		s.fail(w, r, policy.Forbidden("bulk export needs an authenticated requester and a security officer's approval; this server runs without authentication"))
		return
	}
	var in struct {
		Facility    string   `json:"facility"`
		Types       typeList `json:"types"`
		Since       string   `json:"since"`
		Until       string   `json:"until"`
		Reason      string   `json:"reason"`
		Recipient   string   `json:"recipient"`
		MaxPatients int      `json:"max_patients"`
		ValidHours  float64  `json:"valid_hours"`
	}
	if err := readStrictJSON(w, r, &in, false); err != nil {
		s.fail(w, r, err)
		return
	}
	e, err := s.newExport(r, p, in.Facility, in.Types, in.Since, in.Until, in.Reason, in.Recipient, in.MaxPatients, in.ValidHours)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	auditAs(r, "", incident.ExportSubject(e.ID))
	if err := repo.CreateExportRequest(r.Context(), e); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.InfoContext(r.Context(), "export requested", "export", e.ID, "account", p.Username, "facility", e.Facility, "types", strings.Join(e.Types, " "))
	w.Header().Set("Location", "/export-requests/"+e.ID)
	writeJSON(w, http.StatusCreated, s.viewExport(r, e, map[string]string{}))
}

// newExport validates a request against the caller's rights.
func (s *Server) newExport(r *http.Request, p *auth.Principal, facility string, types []string, since, until, reason, recipient string, maxPatients int, validHours float64) (*store.ExportRequest, error) {
	facility = strings.TrimPrefix(strings.TrimSpace(facility), "Organization/")
	if facility == "" {
		return nil, fhir.Invalid("facility", "facility (the Organization id of one of your facilities) is required")
	}
	if !fhir.ValidID(facility) {
		return nil, fhir.Invalid("facility", "invalid Organization id %q", clip(facility))
	}
	if !slices.Contains(p.Facilities, facility) {
		return nil, policy.Forbidden("you may export only from your own facilities (%s), not Organization/%s", strings.Join(p.Facilities, ", "), facility)
	}
	org, err := s.st.Read(r.Context(), "Organization", facility)
	if errors.Is(err, store.ErrNotFound) || err == nil && org.Deleted {
		return nil, fhir.Invalid("facility", "Organization/%s does not exist", facility)
	}
	if err != nil {
		return nil, err
	}
	name := ""
	if res, err := fhir.Parse(org.Data); err == nil {
		name, _ = res["name"].(string)
	}
	if len(types) == 0 {
		types = []string{"Patient"}
	}
	var ts []string
	for _, t := range types {
		t = strings.TrimSpace(t)
		if e := fhir.CheckType(t); e != nil {
			return nil, fhir.Invalid("types", "%s", e.Msg)
		}
		if !policy.PatientBound(t) {
			return nil, fhir.Invalid("types", "%s is not patient data: bulk export is for patient records (read the directory with a search)", t)
		}
		for _, act := range []policy.Action{policy.Search, policy.Read} {
			if err := s.pol.Can(p, act, t); err != nil {
				return nil, policy.Forbidden("you may not export %s: %s", t, fhir.AsError(err).Msg)
			}
		}
		if !slices.Contains(ts, t) {
			ts = append(ts, t)
		}
	}
	e := &store.ExportRequest{ID: fhir.NewID(), Requester: p.AccountID, Facility: facility, FacilityName: name, Types: ts, Status: store.ExportPending}
	if e.Since, err = parseDay("since", since); err != nil {
		return nil, err
	}
	if e.Until, err = parseDay("until", until); err != nil {
		return nil, err
	}
	if !e.Since.IsZero() && !e.Until.IsZero() && !e.Until.After(e.Since) {
		return nil, fhir.Invalid("until", "until must be after since")
	}
	e.Reason, e.Recipient = strings.TrimSpace(reason), strings.TrimSpace(recipient)
	switch {
	case len(e.Reason) < 10 || len(e.Reason) > 1000:
		return nil, fhir.Invalid("reason", "reason (why this export, 10 to 1000 characters) is required: the approver and the audit log read it")
	case len(e.Recipient) < 3 || len(e.Recipient) > 300:
		return nil, fhir.Invalid("recipient", "recipient (who receives the file, 3 to 300 characters) is required: the watermark is traced back to it")
	}
	switch {
	case maxPatients == 0:
		e.MaxPatients = MaxExportPatients
	case maxPatients < 0 || maxPatients > MaxExportPatients:
		return nil, fhir.Invalid("max_patients", "max_patients is between 1 and %d", MaxExportPatients)
	default:
		e.MaxPatients = maxPatients
	}
	switch {
	case validHours == 0:
		e.Valid = defaultExportValid
	case validHours < 0 || time.Duration(validHours*float64(time.Hour)) > maxExportValid:
		return nil, fhir.Invalid("valid_hours", "valid_hours (how long after approval the export may be downloaded) is at most %d", int(maxExportValid.Hours()))
	default:
		e.Valid = time.Duration(validHours * float64(time.Hour)).Round(time.Second)
		if e.Valid < time.Minute {
			return nil, fhir.Invalid("valid_hours", "valid_hours is at least one minute")
		}
	}
	e.Created = s.now()
	e.Expires = e.Created.Add(exportApprovalWindow)
	e.WatermarkKey = make([]byte, 32)
	if _, err := rand.Read(e.WatermarkKey); err != nil {
		return nil, err
	}
	return e, nil
}

// listExports: GET /export-requests (?status=...).
func (s *Server) listExports(w http.ResponseWriter, r *http.Request) {
	repo, err := s.exportCaller()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := principal(r)
	if p == nil {
		s.fail(w, r, policy.Forbidden("export requests belong to authenticated accounts"))
		return
	}
	status := r.URL.Query().Get("status")
	if status != "" && !slices.Contains([]string{store.ExportPending, store.ExportApproved, store.ExportRejected, store.ExportDownloaded, store.ExportExpired}, status) {
		s.fail(w, r, fhir.Invalid("status", "status is pending, approved, rejected, downloaded or expired"))
		return
	}
	who := p.AccountID
	if p.HasRole(policy.SecurityOfficer) {
		who = ""
	}
	es, err := repo.ExportRequests(r.Context(), who)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	names := map[string]string{}
	out := []ExportView{}
	for _, e := range es {
		v := s.viewExport(r, e, names)
		if status == "" || v.Status == status {
			out = append(out, v)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// visibleExport loads the path's request if the caller may see it (the
// security officer, or its requester).
func (s *Server) visibleExport(r *http.Request, repo ExportRepo) (*store.ExportRequest, error) {
	id := r.PathValue("id")
	if !fhir.ValidID(id) {
		return nil, fhir.Invalid("id", "invalid export request id %q", clip(id))
	}
	p := principal(r)
	e, err := repo.ExportRequest(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) || err == nil && (p == nil || e.Requester != p.AccountID && !p.HasRole(policy.SecurityOfficer)) {
		return nil, fhir.NotFound("no export request %s of yours", id)
	}
	return e, err
}

// showExport: GET /export-requests/{id}.
func (s *Server) showExport(w http.ResponseWriter, r *http.Request) {
	repo, err := s.exportCaller()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	e, err := s.visibleExport(r, repo)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.viewExport(r, e, map[string]string{}))
}

// decideExport: POST /export-requests/{id}/approve|reject, by a security
// officer who is not the requester. Body (optional): {"note": "..."}.
func (s *Server) decideExport(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		repo, err := s.exportCaller()
		if err != nil {
			s.fail(w, r, err)
			return
		}
		var in struct {
			Note string `json:"note"`
		}
		if err := readStrictJSON(w, r, &in, true); err != nil {
			s.fail(w, r, err)
			return
		}
		if len(in.Note) > 1000 {
			s.fail(w, r, fhir.Invalid("note", "note is at most 1000 characters"))
			return
		}
		e, err := s.visibleExport(r, repo)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		auditAs(r, "", incident.ExportSubject(e.ID))
		p := principal(r)
		if e.Requester == p.AccountID {
			s.fail(w, r, policy.Forbidden("you requested export %s yourself: a second person (another security officer) must approve or reject it", e.ID))
			return
		}
		now := s.now()
		if e.Status == store.ExportPending && !now.Before(e.Expires) {
			if _, err := repo.ExpireExportRequest(r.Context(), e.ID, now); err != nil {
				s.fail(w, r, err)
				return
			}
			s.fail(w, r, fhir.Errorf(http.StatusGone, "expired", "export request %s was not approved within %d days and has expired: the requester must ask again", e.ID, int(exportApprovalWindow.Hours()/24)))
			return
		}
		if e.Status != store.ExportPending {
			s.fail(w, r, fhir.Errorf(http.StatusConflict, "conflict", "export request %s is %s, not pending: it was already decided", e.ID, e.Status))
			return
		}
		err = repo.DecideExportRequest(r.Context(), e.ID, approve, p.AccountID, strings.TrimSpace(in.Note), now, now.Add(e.Valid))
		if errors.Is(err, store.ErrConflict) {
			s.fail(w, r, fhir.Errorf(http.StatusConflict, "conflict", "export request %s was decided or expired meanwhile", e.ID))
			return
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		e, err = repo.ExportRequest(r.Context(), e.ID)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.log.InfoContext(r.Context(), "export decided", "export", e.ID, "status", e.Status, "by", p.Username)
		writeJSON(w, http.StatusOK, s.viewExport(r, e, map[string]string{}))
	}
}

// ndjsonFormats are the _outputFormat values of Bulk Data's NDJSON.
var ndjsonFormats = []string{"application/fhir+ndjson", "application/ndjson", "ndjson"}

// bulkExport: GET /fhir/$export?_exportRequest=ID (also Patient/$export):
// the approved export, once, as NDJSON, by its requester.
func (s *Server) bulkExport(w http.ResponseWriter, r *http.Request) {
	repo, err := s.exportCaller()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p := principal(r)
	if p == nil {
		s.fail(w, r, policy.Forbidden("bulk export needs an authenticated requester and a security officer's approval; this server runs without authentication"))
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		s.fail(w, r, fhir.Invalid("", "malformed query string"))
		return
	}
	var only []string
	for k, vs := range q {
		switch k {
		case "_exportRequest":
		case "_outputFormat":
			for _, v := range vs {
				if !slices.Contains(ndjsonFormats, v) {
					s.fail(w, r, fhir.Invalid("_outputFormat", "only NDJSON (application/fhir+ndjson) is produced, not %q", clip(v)))
					return
				}
			}
		case "_type":
			for _, v := range vs {
				only = append(only, strings.Split(v, ",")...)
			}
		default:
			s.fail(w, r, fhir.Invalid(k, "%s is not supported here: an export's scope (types, period, facility) is the one its approval covers; only _exportRequest, _type (a subset of its types) and _outputFormat are accepted", clip(k)))
			return
		}
	}
	id := q.Get("_exportRequest")
	if id == "" {
		s.fail(w, r, fhir.Invalid("_exportRequest", "bulk export needs an approved export request: POST /export-requests, have a security officer approve it, then GET /fhir/$export?_exportRequest=ID"))
		return
	}
	if !fhir.ValidID(id) {
		s.fail(w, r, fhir.Invalid("_exportRequest", "invalid export request id %q", clip(id)))
		return
	}
	auditAs(r, "", incident.ExportSubject(id))
	e, err := repo.ExportRequest(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		s.fail(w, r, fhir.NotFound("no export request %s", id))
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if e.Requester != p.AccountID {
		s.fail(w, r, policy.Forbidden("only the account that requested export %s may download it", id))
		return
	}
	now := s.now()
	if err := s.downloadable(r.Context(), repo, e, now); err != nil {
		s.fail(w, r, err)
		return
	}
	types, err := exportTypes(e, only)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	plan, err := s.planExport(r, repo, p, e, types)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// Once: of two concurrent downloads, on any instance, one gets here.
	if err := repo.ClaimExport(r.Context(), e.ID, now); err != nil {
		if errors.Is(err, store.ErrConflict) {
			if cur, rerr := repo.ExportRequest(r.Context(), e.ID); rerr == nil {
				if derr := s.downloadable(r.Context(), repo, cur, now); derr != nil {
					s.fail(w, r, derr)
					return
				}
			}
			s.fail(w, r, fhir.Errorf(http.StatusConflict, "conflict", "export %s is being downloaded by another request", e.ID))
			return
		}
		s.fail(w, r, err)
		return
	}
	s.streamExport(w, r, repo, e, plan, now)
}

// downloadable says why e cannot be downloaded at now (nil: it can),
// marking it expired when its time has passed.
func (s *Server) downloadable(ctx context.Context, repo ExportRepo, e *store.ExportRequest, now time.Time) error {
	if (e.Status == store.ExportPending || e.Status == store.ExportApproved) && !now.Before(e.Expires) {
		if _, err := repo.ExpireExportRequest(ctx, e.ID, now); err != nil {
			return err
		}
		e.Status = store.ExportExpired
	}
	switch e.Status {
	case store.ExportApproved:
		return nil
	case store.ExportPending:
		return policy.Forbidden("export %s is waiting for a security officer's approval", e.ID)
	case store.ExportRejected:
		return policy.Forbidden("export %s was rejected: nothing can be downloaded", e.ID)
	case store.ExportDownloaded:
		return fhir.Errorf(http.StatusGone, "deleted", "export %s was already downloaded (%s): an export is downloaded once; ask for a new one", e.ID, e.Downloaded.Format(time.RFC3339))
	case store.ExportExpired:
		return fhir.Errorf(http.StatusGone, "expired", "export %s has expired (%s): ask for a new one", e.ID, e.Expires.Format(time.RFC3339))
	}
	return fhir.Errorf(http.StatusConflict, "conflict", "export %s is %s", e.ID, e.Status)
}

// exportTypes orders the approved types (Patient first), narrowed to only
// if given.
func exportTypes(e *store.ExportRequest, only []string) ([]string, error) {
	types := slices.Clone(e.Types)
	if len(only) > 0 {
		types = nil
		for _, t := range only {
			t = strings.TrimSpace(t)
			if !slices.Contains(e.Types, t) {
				return nil, fhir.Invalid("_type", "%q is not among the approved types of this export (%s)", clip(t), strings.Join(e.Types, ", "))
			}
			if !slices.Contains(types, t) {
				types = append(types, t)
			}
		}
	}
	slices.SortStableFunc(types, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == "Patient":
			return -1
		case b == "Patient":
			return 1
		}
		return 0
	})
	return types, nil
}

// exportPlan is what a download will disclose, decided before it starts.
type exportPlan struct {
	types    []string
	scopes   map[string]*store.Scope
	patients map[string]map[string]bool // type -> patients
	all      map[string]bool
}

// planExport computes the patients of each type within the requester's
// current reach at the approved facility (no break-the-glass grant: those
// are for one emergency, not for files), the approved types and period.
func (s *Server) planExport(r *http.Request, repo ExportRepo, p *auth.Principal, e *store.ExportRequest, types []string) (*exportPlan, error) {
	if !slices.Contains(p.Facilities, e.Facility) {
		return nil, policy.Forbidden("you no longer work at Organization/%s: this export cannot be downloaded", e.Facility)
	}
	plan := &exportPlan{types: types, scopes: map[string]*store.Scope{}, patients: map[string]map[string]bool{}, all: map[string]bool{}}
	for _, t := range types {
		for _, act := range []policy.Action{policy.Search, policy.Read} {
			if err := s.pol.Can(p, act, t); err != nil {
				return nil, policy.Forbidden("your current roles no longer allow exporting %s: %s", t, fhir.AsError(err).Msg)
			}
		}
		sc := s.pol.Scope(p, policy.Search, t)
		sc.Facilities = []string{e.Facility}
		sc.Account = "" // no break-the-glass grants
		sc.Include = nil
		plan.scopes[t] = sc
		ps, err := repo.ExportPatients(r.Context(), t, sc, e.Since, e.Until, e.MaxPatients+1)
		if err != nil {
			return nil, err
		}
		set := make(map[string]bool, len(ps))
		for _, id := range ps {
			set[id] = true
			plan.all[id] = true
		}
		plan.patients[t] = set
		if len(plan.all) > e.MaxPatients {
			return nil, fhir.Errorf(http.StatusUnprocessableEntity, "too-costly",
				"export %s reaches more than %d patients: ask for a narrower one (fewer types, a shorter period) or a higher max_patients (at most %d)", e.ID, e.MaxPatients, MaxExportPatients)
		}
	}
	return plan, nil
}

// streamExport writes the NDJSON. Everything it may disclose is in the
// audit entry before the status line leaves; a resource of a patient that
// came into scope since is left out.
func (s *Server) streamExport(w http.ResponseWriter, r *http.Request, repo ExportRepo, e *store.ExportRequest, plan *exportPlan, now time.Time) {
	start := time.Now()
	ctx := r.Context()
	wm, err := incident.NewWatermark(e.WatermarkKey)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for t, ps := range plan.patients {
		for pid := range ps {
			disclose(r, t, pid)
		}
	}
	if a := recOf(r); a != nil {
		a.e.Purpose = "approval:" + e.DecidedBy
	}
	under := w
	aw, _ := w.(*auditWriter)
	if aw != nil {
		under = aw.ResponseWriter
	}
	// A large export takes longer than the server's write timeout.
	_ = http.NewResponseController(under).SetWriteDeadline(time.Now().Add(exportWriteTimeout))
	h := w.Header()
	h.Set("Content-Type", "application/fhir+ndjson")
	h.Set("Content-Disposition", `attachment; filename="export-`+e.ID+`.ndjson"`)
	w.WriteHeader(http.StatusOK)
	if aw != nil && aw.failed {
		return // refused by the guard, or not audited: nothing leaves
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	emit := func(line []byte) error {
		if _, err := bw.Write(line); err != nil {
			return err
		}
		return bw.WriteByte('\n')
	}
	rows := 0
	for _, t := range plan.types {
		allowed := plan.patients[t]
		canaryAmong := 0 // canaries go among the Patient rows only
		if t == "Patient" {
			canaryAmong = len(allowed)
		}
		mk := wm.NewMarker(e.Facility, canaryAmong)
		err := repo.ExportScan(ctx, t, plan.scopes[t], e.Since, e.Until, func(res *store.Resource) error {
			if !allowed[res.Patient] {
				return nil // came into scope after the entry was written
			}
			parsed, err := fhir.Parse(res.Data)
			if err != nil {
				return err
			}
			rows++
			return mk.Row(parsed, emit)
		})
		if err == nil {
			err = mk.Close(emit)
		}
		if err != nil {
			s.log.ErrorContext(ctx, "export interrupted", "export", e.ID, "type", t, "rows", rows, "err", err)
			break
		}
	}
	if err := bw.Flush(); err != nil {
		s.log.WarnContext(ctx, "export: client went away", "export", e.ID, "err", err)
	}
	if err := repo.FinishExport(context.WithoutCancel(ctx), e.ID, len(plan.all), rows); err != nil {
		s.log.ErrorContext(ctx, "export: counts not recorded", "export", e.ID, "err", err)
	}
	s.log.InfoContext(ctx, "export downloaded", "export", e.ID, "patients", len(plan.all), "rows", rows, "seconds", time.Since(start).Seconds(), "approved_at", now)
}
