// Package api is the HTTP face of Carnet: the FHIR R4 REST API under /fhir.
//
// Every request takes the same path (DESIGN.md §3): authenticate, authorize,
// guard, store, audit, respond. Handlers compute everything a response will
// disclose before anything is written to the client, and all responses leave
// through the respond* functions, so the later stages have one place to sit.
package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"carnet/internal/auth"
	"carnet/internal/fhir"
	"carnet/internal/guard"
	"carnet/internal/policy"
	"carnet/internal/record"
	"carnet/internal/store"
)

// Options configure a Server.
type Options struct {
	// BaseURL is the public base of the FHIR API ("https://ehr.example/fhir").
	// Empty: derived from each request's Host.
	BaseURL string
	// MaxBody bounds request bodies (bytes). Default 8 MiB.
	MaxBody int64
	Logger  *slog.Logger
	Version string

	// Auth authenticates bearer tokens and serves /auth; Policy decides
	// every access; Admin holds accounts, role requests and break-the-glass
	// grants. All three are required unless InsecureOpen.
	Auth   *auth.Service
	Policy *policy.Decider
	Admin  AdminRepo
	// InsecureOpen serves without authentication or access control: only
	// for tests of the FHIR mechanics and the benchmark's open baseline,
	// never for patient data (carnet serve refuses it off loopback).
	InsecureOpen bool
	// MaxBreakGlass bounds a break-the-glass grant. Default 4 hours.
	MaxBreakGlass time.Duration
	// Audit receives one entry per request before its response leaves
	// (nil: no audit log, only with InsecureOpen).
	Audit Auditor
	// Guard sees every patient a response would disclose before it is
	// disclosed and may refuse it (nil: no guard, only with InsecureOpen
	// or the benchmark's --insecure-no-guard baseline).
	Guard *guard.Guard
	// Alerts is the guard's alert queue, for the security officer.
	Alerts AlertRepo
}

// Server serves the FHIR API.
type Server struct {
	rec     *record.Service
	st      store.Store
	opt     Options
	log     *slog.Logger
	mux     *http.ServeMux
	caps    []byte
	table   []Route
	auth    *auth.Service
	pol     *policy.Decider
	admin   AdminRepo
	auditor Auditor
	guard   *guard.Guard
	grants  grantCache
	closed  bool
	check   logChecker // the security console's audit-log checks
}

// Route is one registered endpoint. Only Public routes answer without a
// valid bearer token; every other one authenticates first.
type Route struct {
	Pattern string
	Public  bool
}

// New returns a Server over st.
func New(st store.Store, opt Options) *Server {
	if opt.MaxBody <= 0 {
		opt.MaxBody = 8 << 20
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.MaxBreakGlass <= 0 {
		opt.MaxBreakGlass = 4 * time.Hour
	}
	s := &Server{rec: record.New(st), st: st, opt: opt, log: opt.Logger, mux: http.NewServeMux(),
		auth: opt.Auth, pol: opt.Policy, admin: opt.Admin, auditor: opt.Audit, guard: opt.Guard}
	// Deny by default: without the security components, nothing but the
	// public routes answers.
	s.closed = !opt.InsecureOpen && (s.auth == nil || s.pol == nil || s.admin == nil || s.auditor == nil)
	s.caps = capabilityStatement(opt.Version)
	s.routes()
	return s
}

// Routes lists the registered endpoints (for tests that walk them all).
func (s *Server) Routes() []Route { return slices.Clone(s.table) }

// handle registers a route that requires authentication.
func (s *Server) handle(pattern string, h http.HandlerFunc) {
	s.table = append(s.table, Route{Pattern: pattern})
	s.mux.Handle(pattern, s.authenticated(s.audited(h)))
}

// public registers a route that answers without authentication.
func (s *Server) public(pattern string, h http.HandlerFunc) {
	s.table = append(s.table, Route{Pattern: pattern, Public: true})
	s.mux.HandleFunc(pattern, h)
}

func (s *Server) routes() {
	s.public("GET /fhir/metadata", s.metadata)
	s.handle("POST /fhir", s.bundle)
	s.handle("GET /fhir", s.systemSearch)
	s.handle("GET /fhir/{$}", s.systemSearch)
	s.handle("POST /fhir/{$}", s.bundle)
	s.handle("GET /fhir/{type}", s.search)
	s.handle("POST /fhir/{type}/_search", s.search)
	s.handle("POST /fhir/{type}", s.create)
	s.handle("GET /fhir/{type}/{id}", s.read)
	s.handle("PUT /fhir/{type}/{id}", s.update)
	s.handle("DELETE /fhir/{type}/{id}", s.delete)
	s.handle("GET /fhir/{type}/{id}/_history", s.history)
	s.handle("GET /fhir/{type}/{id}/_history/{vid}", s.vread)
	s.handle("POST /fhir/Patient/{id}/$break-the-glass", s.breakGlass)
	s.handle("POST /fhir/Patient/{id}/$declare-death", s.declareDeath)
	s.handle("GET /fhir/AuditEvent", s.auditEvents)
	// metadata is read-only: other methods are 405, not "unknown type metadata".
	for _, meth := range []string{"POST", "PUT", "PATCH", "DELETE"} {
		s.public(meth+" /fhir/metadata", s.notAllowed)
	}
	s.handle("/fhir/", s.notFound)
	s.public("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	s.public("POST /auth/token", s.audited(s.token))
	s.public("POST /auth/revoke", s.audited(s.revoke))
	s.handle("GET /auth/me", s.me)
	s.handle("POST /auth/step-up", s.stepUp)
	s.adminRoutes()
	s.guardRoutes()
	s.proofRoutes()
	s.exportRoutes()
	s.consoleRoutes()
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic in handler", "method", r.Method, "path", r.URL.Path, "panic", v)
			s.fail(w, r, &fhir.Error{Status: 500, Code: "exception", Msg: "internal error"})
		}
	}()
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	if !acceptsJSON(r) {
		s.fail(w, r, fhir.Errorf(http.StatusNotAcceptable, "not-supported", "only JSON (application/fhir+json) is supported"))
		return
	}
	s.mux.ServeHTTP(w, r)
}

const fhirJSON = "application/fhir+json; charset=utf-8"

func acceptsJSON(r *http.Request) bool {
	a := r.Header.Get("Accept")
	if a == "" {
		return true
	}
	for part := range strings.SplitSeq(a, ",") {
		mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		switch strings.TrimSpace(mt) {
		case "*/*", "application/*", "application/json", "application/fhir+json", "application/json+fhir", "text/*", "text/plain", "text/html":
			return true
		}
	}
	return false
}

// base returns the absolute base URL of the FHIR API for links.
func (s *Server) base(r *http.Request) string {
	if s.opt.BaseURL != "" {
		return strings.TrimSuffix(s.opt.BaseURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/fhir"
}

// fail answers with an OperationOutcome.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	fe := fhir.AsError(err)
	if fe.Status >= 500 {
		s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	s.respond(w, fe.Status, fe.Outcome().JSON())
}

// respond writes a JSON body with its length.
func (s *Server) respond(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", fhirJSON)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// respondResource writes one stored resource with its ETag and Last-Modified.
func (s *Server) respondResource(w http.ResponseWriter, status int, res *store.Resource) {
	h := w.Header()
	h.Set("ETag", `W/"`+strconv.Itoa(res.Version)+`"`)
	h.Set("Last-Modified", res.Updated.Format(http.TimeFormat))
	s.respond(w, status, res.Data)
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/fhir"), "/"), "/")
	if len(parts) > 0 && parts[0] != "" && !strings.HasPrefix(parts[0], "_") && !strings.HasPrefix(parts[0], "$") {
		if err := fhir.CheckType(parts[0]); err != nil {
			s.fail(w, r, err)
			return
		}
		if len(parts) <= 4 {
			s.fail(w, r, fhir.Errorf(http.StatusMethodNotAllowed, "not-supported", "%s is not allowed on %s", r.Method, r.URL.Path))
			return
		}
	}
	s.fail(w, r, fhir.NotFound("no such endpoint: %s %s", r.Method, r.URL.Path))
}

func (s *Server) systemSearch(w http.ResponseWriter, r *http.Request) {
	s.fail(w, r, fhir.Errorf(http.StatusBadRequest, "not-supported", "whole-system search is not supported: search a resource type, e.g. GET /fhir/Patient?family=..."))
}

func (s *Server) notAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "GET")
	s.fail(w, r, fhir.Errorf(http.StatusMethodNotAllowed, "not-supported", "%s is not allowed on %s", r.Method, r.URL.Path))
}

// typeAndID validates the path's type (and id when present).
func typeAndID(r *http.Request) (typ, id string, err error) {
	typ, id = r.PathValue("type"), r.PathValue("id")
	if e := fhir.CheckType(typ); e != nil {
		return "", "", e
	}
	if r.Pattern != "" && strings.Contains(r.Pattern, "{id}") && !fhir.ValidID(id) {
		return "", "", fhir.Invalid("id", "invalid resource id %q", clip(id))
	}
	return typ, id, nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// readBody reads a JSON request body within the size limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/fhir+json" && mt != "application/json" && mt != "application/json+fhir") {
			return nil, fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "Content-Type must be application/fhir+json, not %q", clip(ct))
		}
	}
	if r.ContentLength > s.opt.MaxBody {
		return nil, fhir.ErrTooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opt.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fhir.ErrTooLarge
		}
		return nil, fhir.Invalid("", "could not read the request body")
	}
	return body, nil
}

func (s *Server) readResource(w http.ResponseWriter, r *http.Request) (fhir.Resource, error) {
	body, err := s.readBody(w, r)
	if err != nil {
		return nil, err
	}
	return fhir.Parse(body)
}

func ifMatch(r *http.Request) (int, error) {
	v := r.Header.Get("If-Match")
	if v == "" {
		return 0, nil
	}
	return record.ParseETag(v)
}

// preferReturn reads Prefer: return=minimal|representation|OperationOutcome.
func preferReturn(r *http.Request) string {
	for _, v := range r.Header.Values("Prefer") {
		for part := range strings.SplitSeq(v, ",") {
			if k, val, ok := strings.Cut(strings.TrimSpace(part), "="); ok && k == "return" {
				return strings.Trim(val, `"`)
			}
		}
	}
	return "representation"
}

func preferStrict(r *http.Request) bool {
	for _, v := range r.Header.Values("Prefer") {
		for part := range strings.SplitSeq(v, ",") {
			if k, val, ok := strings.Cut(strings.TrimSpace(part), "="); ok && k == "handling" && strings.Trim(val, `"`) == "strict" {
				return true
			}
		}
	}
	return false
}

func (s *Server) metadata(w http.ResponseWriter, r *http.Request) {
	s.respond(w, http.StatusOK, s.caps)
}

func (s *Server) read(w http.ResponseWriter, r *http.Request) {
	typ, id, err := typeAndID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.can(r, policy.Read, typ); err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.st.Read(r.Context(), typ, id)
	if err == nil {
		err = s.canRead(r, res)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.fail(w, r, fhir.NotFound("%s/%s does not exist", typ, id))
	case err != nil:
		s.fail(w, r, err)
	case res.Deleted:
		s.fail(w, r, fhir.Errorf(http.StatusGone, "deleted", "%s/%s was deleted", typ, id))
	default:
		disclose(r, res.Type, res.Patient)
		s.respondResource(w, http.StatusOK, res)
	}
}

func (s *Server) vread(w http.ResponseWriter, r *http.Request) {
	typ, id, err := typeAndID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	v, err := strconv.Atoi(r.PathValue("vid"))
	if err != nil || v < 1 {
		s.fail(w, r, fhir.Invalid("vid", "version must be a positive whole number, not %q", clip(r.PathValue("vid"))))
		return
	}
	if err := s.can(r, policy.Read, typ); err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.st.ReadVersion(r.Context(), typ, id, v)
	if err == nil {
		err = s.canReadVersions(r, typ, id, []*store.Resource{res})
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.fail(w, r, fhir.NotFound("%s/%s has no version %d", typ, id, v))
	case err != nil:
		s.fail(w, r, err)
	case res.Deleted:
		s.fail(w, r, fhir.Errorf(http.StatusGone, "deleted", "version %d of %s/%s is a deletion", v, typ, id))
	default:
		disclose(r, typ, patientOfVersion(res))
		s.respondResource(w, http.StatusOK, res)
	}
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	typ, _, err := typeAndID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.readResource(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	delete(res, "id") // FHIR: the server assigns the id of a created resource
	out, err := s.records(r).Create(r.Context(), typ, res)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.written(w, r, out)
}

func (s *Server) update(w http.ResponseWriter, r *http.Request) {
	typ, id, err := typeAndID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	im, err := ifMatch(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.readResource(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out, err := s.records(r).Update(r.Context(), typ, id, res, im)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.written(w, r, out)
}

// written answers a successful create or update.
func (s *Server) written(w http.ResponseWriter, r *http.Request, out *record.Outcome) {
	res := out.Resource
	if !out.NoChange {
		committed(r) // the entry went with the write
	}
	disclose(r, res.Type, res.Patient)
	status := http.StatusOK
	if out.Created {
		status = http.StatusCreated
		w.Header().Set("Location", s.base(r)+"/"+res.Type+"/"+res.ID+"/_history/"+strconv.Itoa(res.Version))
	}
	switch preferReturn(r) {
	case "minimal":
		h := w.Header()
		h.Set("ETag", `W/"`+strconv.Itoa(res.Version)+`"`)
		h.Set("Last-Modified", res.Updated.Format(http.TimeFormat))
		w.WriteHeader(status)
	case "OperationOutcome":
		msg := "updated"
		if out.Created {
			msg = "created"
		} else if out.NoChange {
			msg = "unchanged: identical to the current version"
		}
		w.Header().Set("ETag", `W/"`+strconv.Itoa(res.Version)+`"`)
		s.respond(w, status, fhir.NewOutcome("information", "informational", res.Type+"/"+res.ID+" "+msg).JSON())
	default:
		s.respondResource(w, status, res)
	}
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	typ, id, err := typeAndID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	im, err := ifMatch(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out, err := s.records(r).Delete(r.Context(), typ, id, im)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !out.NoChange {
		committed(r)
	}
	disclose(r, out.Resource.Type, out.Resource.Patient)
	w.Header().Set("ETag", `W/"`+strconv.Itoa(out.Resource.Version)+`"`)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	typ, id, err := typeAndID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	limit := 100
	if c := r.URL.Query().Get("_count"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 {
			s.fail(w, r, fhir.Invalid("_count", "expected a whole number >= 1"))
			return
		}
		limit = min(n, fhir.MaxCount)
	}
	if err := s.can(r, policy.Read, typ); err != nil {
		s.fail(w, r, err)
		return
	}
	versions, err := s.st.History(r.Context(), typ, id, limit)
	if err == nil {
		err = s.canReadVersions(r, typ, id, versions)
	}
	if errors.Is(err, store.ErrNotFound) {
		s.fail(w, r, fhir.NotFound("%s/%s does not exist", typ, id))
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	base := s.base(r)
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"Bundle","type":"history","total":`)
	b.WriteString(strconv.Itoa(versions[0].Version))
	b.WriteString(`,"entry":[`)
	for i, v := range versions {
		disclose(r, typ, patientOfVersion(v))
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"fullUrl":`)
		writeJSONString(&b, base+"/"+typ+"/"+id)
		if !v.Deleted {
			b.WriteString(`,"resource":`)
			b.Write(v.Data)
		}
		method, status := "PUT", "200 OK"
		switch {
		case v.Deleted:
			method, status = "DELETE", "204 No Content"
		case v.Version == 1:
			method, status = "POST", "201 Created"
		}
		b.WriteString(`,"request":{"method":"` + method + `","url":`)
		writeJSONString(&b, typ+"/"+id)
		b.WriteString(`},"response":{"status":"` + status + `","etag":"W/\"` + strconv.Itoa(v.Version) + `\"","lastModified":"` + fhir.FormatInstant(v.Updated) + `"}}`)
	}
	b.WriteString(`]}`)
	s.respond(w, http.StatusOK, b.Bytes())
}

// canReadVersions decides the disclosure of versions of typ/id: the
// current version's patient and each version's own must be reachable.
func (s *Server) canReadVersions(r *http.Request, typ, id string, versions []*store.Resource) error {
	if s.opt.InsecureOpen {
		return nil
	}
	cur, err := s.st.Read(r.Context(), typ, id)
	if err != nil {
		return err
	}
	if err := s.canRead(r, cur); err != nil {
		return err
	}
	for _, v := range versions {
		pat := patientOfVersion(v)
		if pat == cur.Patient {
			continue
		}
		c := *v
		c.Patient = pat
		if err := s.canRead(r, &c); err != nil {
			return err
		}
	}
	return nil
}

// patientOfVersion is a stored version's patient (history rows do not
// keep the column: read it from the JSON).
func patientOfVersion(v *store.Resource) string {
	if v.Patient != "" || v.Data == nil {
		return v.Patient
	}
	if res, err := fhir.Parse(v.Data); err == nil {
		return fhir.PatientOf(res)
	}
	return ""
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc, _ := fhir.Marshal(s)
	b.Write(enc)
}

// withTimeout is used by long operations (transactions).
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 2*time.Minute)
}
