package api

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"carnet/internal/audit"
	"carnet/internal/fhir"
	"carnet/internal/policy"
	"carnet/internal/store"
)

// AuditReader searches the audit log.
type AuditReader interface {
	FindAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditRow, error)
	AccountByUsername(ctx context.Context, username string) (*store.Account, error)
}

// auditEvents: GET /fhir/AuditEvent?agent=&patient=&date=&action=&_count=.
// The security officer searches the whole log. Anyone else may ask for the
// access history of one patient they may read (patient=ID): who opened the
// record, when, why.
func (s *Server) auditEvents(w http.ResponseWriter, r *http.Request) {
	ar, ok := s.admin.(AuditReader)
	if !ok || s.opt.InsecureOpen {
		s.fail(w, r, fhir.Errorf(http.StatusNotImplemented, "not-supported", "this server keeps no audit log"))
		return
	}
	q := r.URL.Query()
	f := store.AuditFilter{Patient: q.Get("patient"), Action: q.Get("action"), Limit: 100}
	for k := range q {
		switch k {
		case "agent", "patient", "date", "action", "_count":
		default:
			s.fail(w, r, fhir.Invalid(k, "unknown AuditEvent search parameter %q (agent, patient, date, action, _count)", clip(k)))
			return
		}
	}
	if c := q.Get("_count"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 {
			s.fail(w, r, fhir.Invalid("_count", "expected a whole number >= 1"))
			return
		}
		f.Limit = min(n, 1000)
	}
	for _, d := range q["date"] {
		prefix, v := "eq", d
		if len(d) > 2 && strings.Contains("gelegtlteq", d[:2]) && d[0] >= 'a' {
			prefix, v = d[:2], d[2:]
		}
		lo, hi, ok := fhir.DateRange(v, true)
		if !ok {
			s.fail(w, r, fhir.Invalid("date", "invalid date %q", clip(d)))
			return
		}
		switch prefix {
		case "ge", "gt":
			f.Since = time.Unix(lo, 0)
		case "le", "lt":
			f.Until = time.Unix(hi+1, 0)
		default:
			f.Since, f.Until = time.Unix(lo, 0), time.Unix(hi+1, 0)
		}
	}
	p := principal(r)
	if agent := q.Get("agent"); agent != "" {
		f.Account = agent
		if a, err := ar.AccountByUsername(r.Context(), strings.ToLower(agent)); err == nil {
			f.Account = a.ID
		}
	}
	officer := p.HasRole(policy.SecurityOfficer)
	if !officer {
		// A patient's access history, for someone who may read the patient.
		if f.Patient == "" || f.Account != "" {
			s.fail(w, r, policy.Forbidden("the audit log is for the security officer; others may ask for the access history of a patient they care for (AuditEvent?patient=ID)"))
			return
		}
		pat, err := s.st.Read(r.Context(), "Patient", f.Patient)
		if err != nil {
			s.fail(w, r, policy.Forbidden("no such patient in your care"))
			return
		}
		if err := s.canRead(r, pat); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	rows, err := ar.FindAudit(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	base := s.base(r)
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"Bundle","type":"searchset","total":`)
	b.WriteString(strconv.Itoa(len(rows)))
	b.WriteString(`,"entry":[`)
	for i, row := range rows {
		e, err := audit.Decode(row.Entry)
		if err != nil {
			continue
		}
		if !officer {
			// One patient's history names that patient only: the other
			// patients of the same request (a colleague's search results)
			// and what the request was about are not theirs to see.
			e.Patients, e.Subject = []string{f.Patient}, ""
		}
		for _, pid := range e.Patients {
			disclose(r, "AuditEvent", pid) // ids only: the history is about them
		}
		if i > 0 {
			b.WriteByte(',')
		}
		ev := auditEventJSON(row.Index, e)
		b.WriteString(`{"fullUrl":`)
		writeJSONString(&b, base+"/AuditEvent/"+strconv.FormatInt(row.Index, 10))
		b.WriteString(`,"resource":`)
		b.Write(ev)
		b.WriteString(`,"search":{"mode":"match"}}`)
	}
	b.WriteString(`]}`)
	s.respond(w, http.StatusOK, b.Bytes())
}

// auditEventJSON maps an entry to a FHIR R4 AuditEvent.
func auditEventJSON(idx int64, e *audit.Entry) []byte {
	code := map[string]string{"read": "R", "vread": "R", "history": "R", "search": "E", "create": "C", "update": "U", "delete": "D"}[e.Action]
	if code == "" {
		code = "E"
	}
	outcome := "0"
	switch {
	case e.Outcome >= 500:
		outcome = "8"
	case e.Outcome >= 400:
		outcome = "4"
	}
	agent := map[string]any{"requestor": true, "who": map[string]any{"identifier": map[string]any{"system": "https://carnet.example/account", "value": e.Account}, "display": e.Username},
		"network": map[string]any{"address": e.Client, "type": "2"}}
	if len(e.Roles) > 0 {
		var roles []any
		for _, r := range e.Roles {
			roles = append(roles, map[string]any{"coding": []any{map[string]any{"system": "https://carnet.example/role", "code": r}}})
		}
		agent["role"] = roles
	}
	if e.Purpose != "" {
		agent["purposeOfUse"] = []any{map[string]any{"text": e.Purpose}}
	}
	var entities []any
	for _, p := range e.Patients {
		entities = append(entities, map[string]any{"what": map[string]any{"reference": "Patient/" + p}, "type": map[string]any{"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"}})
	}
	ev := map[string]any{
		"resourceType": "AuditEvent",
		"id":           strconv.FormatInt(idx, 10),
		"type":         map[string]any{"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
		"subtype":      []any{map[string]any{"system": "https://carnet.example/audit-action", "code": e.Action}},
		"action":       code,
		"recorded":     fhir.FormatInstant(e.Time),
		"outcome":      outcome,
		"agent":        []any{agent},
		"source":       map[string]any{"observer": map[string]any{"display": "Carnet"}},
	}
	if e.Subject != "" {
		ev["outcomeDesc"] = e.Subject
	}
	if entities != nil {
		ev["entity"] = entities
	}
	b, _ := fhir.Marshal(ev)
	return b
}
