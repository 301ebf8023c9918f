// Package incident answers the questions that follow a breach (DESIGN.md
// §6): exactly which patients were disclosed to an account, a session or a
// client address in a time window, with the data categories per patient, and
// the notification list and GDPR article 33 report draft that follow.
//
// Everything comes from the audit log, which holds patient ids only; names
// and contacts are read from the records for the notification list alone,
// and that lookup is audited too.
package incident

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"carnet/internal/audit"
	"carnet/internal/fhir"
	"carnet/internal/store"
)

// Store is what scoping reads.
type Store interface {
	AccountByUsername(ctx context.Context, username string) (*store.Account, error)
	AccountByID(ctx context.Context, id string) (*store.Account, error)
	FindAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditRow, error)
}

// Query selects the entries of one account (username or id), session or
// client address in [Since, Until).
type Query struct {
	Account, Session, Client string
	Since, Until             time.Time
}

// Patient is one patient disclosed.
type Patient struct {
	ID         string    `json:"patient"`
	Categories []string  `json:"categories"`
	Accesses   int       `json:"accesses"` // entries that disclosed this patient
	First      time.Time `json:"first"`
	Last       time.Time `json:"last"`
}

// Report is the scope of an incident.
type Report struct {
	Query       Query     `json:"query"`
	AccountID   string    `json:"account_id,omitempty"`
	Entries     int       `json:"entries"`      // audit entries in the window
	Disclosures int       `json:"disclosures"`  // entries that disclosed at least one patient
	Records     int       `json:"records"`      // (entry, type, patient) disclosures
	Patients    []Patient `json:"patients"`     // sorted by id
	Generated   time.Time `json:"generated_at"` //
}

// Category names, as the GDPR notice asks for them.
const (
	CatIdentity     = "identity"
	CatContact      = "contact"
	CatClinical     = "clinical"
	CatPrescription = "prescriptions"
	CatBilling      = "billing"
)

// categoriesOf maps a resource type to the data categories it discloses.
func categoriesOf(typ string) []string {
	ti := fhir.LookupType(typ)
	if ti == nil {
		return nil
	}
	switch ti.Category {
	case fhir.CatIdentity:
		return []string{CatIdentity, CatContact} // names, birth date, address, phone, email
	case fhir.CatClinical:
		return []string{CatClinical}
	case fhir.CatPrescription:
		return []string{CatPrescription}
	case fhir.CatBilling:
		return []string{CatBilling}
	}
	return nil
}

// ErrNoAccount: the query names an account that does not exist.
var ErrNoAccount = errors.New("no such account")

// noAccount is ErrNoAccount for one name.
type noAccount string

func (n noAccount) Error() string {
	return fmt.Sprintf("no account %q (give a username or an account id)", string(n))
}
func (noAccount) Is(target error) bool { return target == ErrNoAccount }

// Scope reads the audit log for q. An account that is neither a username
// nor an account id is an error that is ErrNoAccount.
func Scope(ctx context.Context, st Store, q Query) (*Report, error) {
	f := store.AuditFilter{Session: q.Session, Client: q.Client, Since: q.Since, Until: q.Until}
	rep := &Report{Query: q, Generated: time.Now().UTC()}
	if q.Account != "" {
		f.Account = q.Account
		a, err := st.AccountByUsername(ctx, strings.ToLower(q.Account))
		if errors.Is(err, store.ErrNotFound) {
			a, err = st.AccountByID(ctx, q.Account)
		}
		if errors.Is(err, store.ErrNotFound) {
			// A mistyped username must not read as "no patient was touched".
			return nil, noAccount(q.Account)
		}
		if err != nil {
			return nil, err
		}
		f.Account = a.ID
		rep.AccountID = f.Account
	}
	rows, err := st.FindAudit(ctx, f)
	if err != nil {
		return nil, err
	}
	byID := map[string]*Patient{}
	cats := map[string]map[string]bool{}
	for _, row := range rows {
		e, err := audit.Decode(row.Entry)
		if err != nil {
			return nil, fmt.Errorf("audit entry %d unreadable: %w", row.Index, err)
		}
		rep.Entries++
		if e.Outcome >= 400 || len(e.Patients) == 0 {
			continue // nothing left the server
		}
		rep.Disclosures++
		seen := map[string]bool{}
		for typ, ps := range e.Disclosed {
			for _, pid := range ps {
				if pid == "" {
					continue
				}
				rep.Records++
				p := byID[pid]
				if p == nil {
					p = &Patient{ID: pid, First: e.Time}
					byID[pid] = p
					cats[pid] = map[string]bool{}
				}
				if !seen[pid] {
					seen[pid] = true
					p.Accesses++
					p.Last = e.Time
				}
				for _, c := range categoriesOf(typ) {
					cats[pid][c] = true
				}
			}
		}
	}
	for id, p := range byID {
		for _, c := range []string{CatIdentity, CatContact, CatClinical, CatPrescription, CatBilling} {
			if cats[id][c] {
				p.Categories = append(p.Categories, c)
			}
		}
		rep.Patients = append(rep.Patients, *p)
	}
	slices.SortFunc(rep.Patients, func(a, b Patient) int { return strings.Compare(a.ID, b.ID) })
	if rep.Patients == nil {
		rep.Patients = []Patient{}
	}
	return rep, nil
}

// Write renders the report as csv, json or md.
func (r *Report) Write(w io.Writer, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case "csv":
		cw := csv.NewWriter(w)
		cw.Write([]string{"patient", "categories", "accesses", "first", "last"})
		for _, p := range r.Patients {
			cw.Write([]string{p.ID, strings.Join(p.Categories, " "), strconv.Itoa(p.Accesses), p.First.Format(time.RFC3339), p.Last.Format(time.RFC3339)})
		}
		cw.Flush()
		return cw.Error()
	case "md":
		fmt.Fprintf(w, "# Incident scope\n\n%s\n\n", r.who())
		fmt.Fprintf(w, "- audit entries in the window: %d (%d disclosed patient data)\n- patients disclosed: **%d**\n- records disclosed: %d\n\n", r.Entries, r.Disclosures, len(r.Patients), r.Records)
		byCat := map[string]int{}
		for _, p := range r.Patients {
			for _, c := range p.Categories {
				byCat[c]++
			}
		}
		fmt.Fprintf(w, "| category | patients |\n| --- | ---: |\n")
		for _, c := range []string{CatIdentity, CatContact, CatClinical, CatPrescription, CatBilling} {
			fmt.Fprintf(w, "| %s | %d |\n", c, byCat[c])
		}
		fmt.Fprintf(w, "\n| patient | categories | accesses | first | last |\n| --- | --- | ---: | --- | --- |\n")
		for _, p := range r.Patients {
			fmt.Fprintf(w, "| %s | %s | %d | %s | %s |\n", p.ID, strings.Join(p.Categories, ", "), p.Accesses, p.First.Format(time.RFC3339), p.Last.Format(time.RFC3339))
		}
		return nil
	}
	return fmt.Errorf("unknown format %q", format)
}

func (r *Report) who() string {
	var s string
	switch {
	case r.Query.Account != "":
		s = "Account " + r.Query.Account
	case r.Query.Session != "":
		s = "Session " + r.Query.Session
	default:
		s = "Client address " + r.Query.Client
	}
	from, to := "the beginning of the log", "now"
	if !r.Query.Since.IsZero() {
		from = r.Query.Since.Format(time.RFC3339)
	}
	if !r.Query.Until.IsZero() {
		to = r.Query.Until.Format(time.RFC3339)
	}
	return s + ", from " + from + " to " + to + "."
}
