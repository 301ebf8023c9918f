package api

// The security officer's incident scope and audit-log check (DESIGN.md §4,
// §6), for the security console of the web application:
//
//	GET  /security/incident?account=U|session=S|client=ADDR[&since=T][&until=T][&format=json|csv|md|art33]
//	GET  /security/audit-log          the signed checkpoint and this instance's last check
//	POST /security/audit-log/verify   check the log now
//
// The scope is incident.Scope, the same as `carnet incident scope`: patient
// ids, data categories and access counts, from the audit log alone. The
// notification list with names and contacts (--notify) stays on the
// command line: over HTTP it would turn the security officer's account into
// a contact export of every patient a busy account ever saw.

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"carnet/internal/audit"
	"carnet/internal/auth"
	"carnet/internal/fhir"
	"carnet/internal/incident"
	"carnet/internal/policy"
	"carnet/internal/store"
)

func (s *Server) consoleRoutes() {
	officer := func(h http.HandlerFunc) http.HandlerFunc {
		return s.only(func(p *auth.Principal) bool { return p.HasRole(policy.SecurityOfficer) },
			"incident scopes and the audit log's checks are for the security officer", h)
	}
	s.handle("GET /security/incident", officer(s.incidentScope))
	s.handle("GET /security/audit-log", officer(s.auditLogStatus))
	s.handle("POST /security/audit-log/verify", officer(s.verifyAuditLog))
}

// parseInstant reads a time as RFC 3339, 2006-01-02T15:04 (UTC, what an
// HTML datetime-local field sends) or a day (its start, UTC).
func parseInstant(field, v string) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fhir.Invalid(field, "%s must be a date (2026-03-02), a time (2026-03-02T08:00, UTC) or an instant (2026-03-02T08:00:00Z), not %q", field, clip(v))
}

// incidentScope: which patients an account, a session or a client address
// was shown in a window, from the audit log.
func (s *Server) incidentScope(w http.ResponseWriter, r *http.Request) {
	st, ok := s.admin.(incident.Store)
	if !ok {
		s.fail(w, r, fhir.Errorf(http.StatusNotImplemented, "not-supported", "this server keeps no audit log"))
		return
	}
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "account", "session", "client", "since", "until", "format":
		default:
			s.fail(w, r, fhir.Invalid(k, "unknown parameter %q (account, session, client, since, until, format)", clip(k)))
			return
		}
	}
	iq := incident.Query{Account: strings.ToLower(strings.TrimSpace(q.Get("account"))), Session: strings.TrimSpace(q.Get("session")), Client: strings.TrimSpace(q.Get("client"))}
	n, subject := 0, ""
	for _, c := range []struct{ name, v string }{{"account", iq.Account}, {"session", iq.Session}, {"client", iq.Client}} {
		if c.v != "" {
			n++
			subject = "incident:" + c.name + ":" + clip(c.v)
		}
	}
	if n != 1 {
		s.fail(w, r, fhir.Invalid("account", "give exactly one of account (username), session or client (address)"))
		return
	}
	var err error
	if iq.Since, err = parseInstant("since", q.Get("since")); err != nil {
		s.fail(w, r, err)
		return
	}
	if iq.Until, err = parseInstant("until", q.Get("until")); err != nil {
		s.fail(w, r, err)
		return
	}
	if !iq.Since.IsZero() && !iq.Until.IsZero() && !iq.Until.After(iq.Since) {
		s.fail(w, r, fhir.Invalid("until", "until must be after since"))
		return
	}
	format := q.Get("format")
	if format == "" {
		format = "json"
	}
	if format != "json" && format != "csv" && format != "md" && format != "art33" {
		s.fail(w, r, fhir.Invalid("format", "format is json, csv, md or art33 (the GDPR article 33 draft: counts, no names)"))
		return
	}
	auditAs(r, "", subject)
	rep, err := incident.Scope(r.Context(), st, iq)
	if errors.Is(err, incident.ErrNoAccount) {
		s.fail(w, r, fhir.NotFound("no account %q", clip(iq.Account)))
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// The ids are recorded in the officer's entry (each patient's access
	// history shows the scope); like an audit search they are ids from the
	// log, not records, and the guard does not count them (unguarded).
	for _, p := range rep.Patients {
		disclose(r, "AuditEvent", p.ID)
	}
	var b bytes.Buffer
	if format == "art33" {
		// Counts and categories only: the names and contacts of the
		// notification list stay with carnet incident scope --notify on
		// the server (an officer's stolen session must not export them).
		b.WriteString(rep.Art33(r.Context(), s.st))
	} else if err := rep.Write(&b, format); err != nil {
		s.fail(w, r, err)
		return
	}
	ctype := map[string]string{"csv": "text/csv; charset=utf-8", "md": "text/markdown; charset=utf-8", "art33": "text/markdown; charset=utf-8", "json": "application/json; charset=utf-8"}[format]
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(http.StatusOK)
	w.Write(b.Bytes())
}

// logStore is what the log check reads (store.SQL).
type logStore interface {
	AuditSize(ctx context.Context) (int64, error)
	AuditEntries(ctx context.Context, from, to int64, fn func(idx int64, entry []byte) error) error
	Checkpoints(ctx context.Context) ([]store.Checkpoint, error)
}

// logCheck is the outcome of one check of the audit log.
type logCheck struct {
	At          time.Time `json:"at"`
	By          string    `json:"by"`
	Seconds     float64   `json:"seconds"`
	OK          bool      `json:"ok"`
	Entries     int64     `json:"entries"`     // entries hashed
	Checkpoints int       `json:"checkpoints"` // checkpoints whose root was compared
	SignedSize  int64     `json:"signed_size"` // the signed checkpoint this instance holds (-1: none)
	BadIndex    *int64    `json:"bad_index,omitempty"`
	Problem     string    `json:"problem,omitempty"`
}

// logChecker remembers this instance's last check and runs one at a time.
type logChecker struct {
	mu      sync.Mutex
	running chan struct{} // closed when the running check ends; nil if none
	last    *logCheck
}

var errCheckStop = errors.New("stop")

// checkLog recomputes the RFC 6962 tree of the database's entries and
// compares it with every checkpoint: the signed one this instance holds
// (from its witness, out of reach of whoever edits the database) and those
// stored in the database. Any entry changed, removed, inserted or moved
// below a checkpoint changes its root. It does not check signatures nor
// the witness's copy of each leaf hash: `carnet audit verify` does, with
// the witness directory.
func checkLog(ctx context.Context, st logStore, signedSize int64, signedRoot []byte) (*logCheck, error) {
	c := &logCheck{OK: true, SignedSize: signedSize}
	bad := func(idx int64, msg string) {
		c.OK, c.Problem = false, msg
		if idx >= 0 {
			c.BadIndex = &idx
		}
	}
	cps, err := st.Checkpoints(ctx)
	if err != nil {
		return nil, err
	}
	roots := map[int64][]byte{}
	for _, cp := range cps {
		roots[cp.Size] = cp.Root
	}
	if signedSize > 0 {
		if r, ok := roots[signedSize]; ok && !bytes.Equal(r, signedRoot) {
			bad(-1, "the database's checkpoint of "+itoa(signedSize)+" entries differs from the signed checkpoint of the witness")
			return c, nil
		}
		roots[signedSize] = signedRoot
	}
	delete(roots, 0)
	rng := (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewEmptyRange(0)
	var next, lastCP int64
	err = st.AuditEntries(ctx, 0, -1, func(idx int64, entry []byte) error {
		if idx != next {
			bad(next, "entry "+itoa(next)+" is missing (deleted, or the log was renumbered)")
			return errCheckStop
		}
		if err := rng.Append(audit.LeafHash(entry), nil); err != nil {
			return err
		}
		next++
		if root, ok := roots[next]; ok {
			got, err := rng.GetRootHash(nil)
			if err != nil {
				return err
			}
			c.Checkpoints++
			if !bytes.Equal(got, root) {
				bad(lastCP, "the tree of the first "+itoa(next)+" entries does not match its checkpoint: one of entries "+itoa(lastCP)+" to "+itoa(next-1)+" was changed")
				return errCheckStop
			}
			lastCP = next
		}
		return nil
	})
	c.Entries = next
	if errors.Is(err, errCheckStop) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	for size := range roots {
		if size > next {
			bad(next, "the log ends at entry "+itoa(next)+" but a checkpoint covers "+itoa(size)+" entries: entries were removed")
			break
		}
	}
	return c, nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// checkpointJSON is the signed checkpoint this instance holds, or nil.
func (s *Server) checkpointJSON() (map[string]any, int64, []byte) {
	p, ok := s.auditor.(Prover)
	if !ok {
		return nil, -1, nil
	}
	size, root, note, err := p.Latest()
	if err != nil {
		return nil, -1, nil
	}
	return map[string]any{"origin": audit.Origin, "size": size, "root": base64.StdEncoding.EncodeToString(root), "note": note}, size, root
}

func (s *Server) logState() map[string]any {
	cp, _, _ := s.checkpointJSON()
	s.check.mu.Lock()
	defer s.check.mu.Unlock()
	out := map[string]any{"checkpoint": cp, "last_check": s.check.last, "checking": s.check.running != nil}
	if cp == nil {
		out["checkpoint"] = nil
	}
	if s.check.last == nil {
		out["last_check"] = nil
	}
	return out
}

// auditLogStatus: GET /security/audit-log.
func (s *Server) auditLogStatus(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.admin.(logStore); !ok {
		s.fail(w, r, fhir.Errorf(http.StatusNotImplemented, "not-supported", "this server keeps no audit log"))
		return
	}
	writeJSON(w, http.StatusOK, s.logState())
}

// checkWait is how long POST /security/audit-log/verify waits for the
// check before answering 202 (it goes on; GET shows its result).
const checkWait = 20 * time.Second

// verifyAuditLog: POST /security/audit-log/verify. One check at a time;
// a second request joins the running one.
func (s *Server) verifyAuditLog(w http.ResponseWriter, r *http.Request) {
	st, ok := s.admin.(logStore)
	if !ok {
		s.fail(w, r, fhir.Errorf(http.StatusNotImplemented, "not-supported", "this server keeps no audit log"))
		return
	}
	auditAs(r, "", "audit-log-check")
	by := principal(r).Username
	s.check.mu.Lock()
	done := s.check.running
	if done == nil {
		done = make(chan struct{})
		s.check.running = done
		_, size, root := s.checkpointJSON()
		go func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Hour)
			defer cancel()
			start := time.Now()
			c, err := checkLog(ctx, st, size, root)
			if err != nil {
				s.log.ErrorContext(ctx, "audit log check failed", "err", err)
				c = &logCheck{SignedSize: size, Problem: "the check could not run: " + err.Error()}
			}
			c.At, c.By, c.Seconds = start.UTC(), by, time.Since(start).Seconds()
			if !c.OK {
				s.log.ErrorContext(ctx, "AUDIT LOG CHECK FAILED", "by", by, "problem", c.Problem)
			}
			s.check.mu.Lock()
			s.check.last, s.check.running = c, nil
			s.check.mu.Unlock()
			close(done)
		}()
	}
	s.check.mu.Unlock()
	status := http.StatusOK
	select {
	case <-done:
	case <-time.After(checkWait):
		status = http.StatusAccepted
	case <-r.Context().Done():
		status = http.StatusAccepted
	}
	writeJSON(w, status, s.logState())
}
