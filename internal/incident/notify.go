package incident

import (
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"carnet/internal/audit"
	"carnet/internal/fhir"
	"carnet/internal/store"
)

// Reader reads patient records for the notification list.
type Reader interface {
	Read(ctx context.Context, typ, id string) (*store.Resource, error)
}

// Appender audits the lookup of names and contacts.
type Appender interface {
	Append(ctx context.Context, e *audit.Entry) (int64, error)
}

// Notify writes, into dir, notification.csv (patient id, name, birth
// date, phones, emails, address, categories) and gdpr-art33.md (a report
// draft for the supervisory authority). Reading names and contacts is an
// access to patient data: it is appended to the audit log first.
func Notify(ctx context.Context, st Reader, log Appender, r *Report, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ids := make([]string, len(r.Patients))
	for i, p := range r.Patients {
		ids[i] = p.ID
	}
	host, _ := os.Hostname()
	e := &audit.Entry{Time: time.Now().UTC(), Username: "operator@" + host, Client: "cli", Action: "incident-notify",
		Patients: ids, Disclosed: map[string][]string{"Patient": ids}, Purpose: "breach notification (GDPR art. 33/34)", Subject: r.who(), Outcome: 200}
	if _, err := log.Append(ctx, e); err != nil {
		return nil, fmt.Errorf("the lookup could not be audited, nothing read: %w", err)
	}
	nf := filepath.Join(dir, "notification.csv")
	f, err := os.OpenFile(nf, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	cw := csv.NewWriter(f)
	cw.Write([]string{"patient", "family", "given", "birth_date", "phones", "emails", "address", "deceased", "categories"})
	deceased := 0
	for _, p := range r.Patients {
		row := []string{p.ID, "", "", "", "", "", "", "", strings.Join(p.Categories, " ")}
		if res, err := st.Read(ctx, "Patient", p.ID); err == nil && !res.Deleted {
			if pr, err := fhir.Parse(res.Data); err == nil {
				fillContact(row, pr)
				if row[7] == "yes" {
					deceased++
				}
			}
		}
		cw.Write(row)
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	rf := filepath.Join(dir, "gdpr-art33.md")
	if err := os.WriteFile(rf, []byte(r.art33(deceased)), 0o600); err != nil {
		return nil, err
	}
	return []string{nf, rf}, nil
}

func fillContact(row []string, p fhir.Resource) {
	str := func(v any) string { s, _ := v.(string); return s }
	if names, _ := p["name"].([]any); len(names) > 0 {
		n, _ := names[0].(map[string]any)
		row[1] = str(n["family"])
		var given []string
		for _, g := range asSlice(n["given"]) {
			given = append(given, str(g))
		}
		row[2] = strings.Join(given, " ")
	}
	row[3] = str(p["birthDate"])
	var phones, emails []string
	for _, t := range asSlice(p["telecom"]) {
		m, _ := t.(map[string]any)
		switch str(m["system"]) {
		case "phone", "sms":
			phones = append(phones, str(m["value"]))
		case "email":
			emails = append(emails, str(m["value"]))
		}
	}
	row[4], row[5] = strings.Join(phones, " "), strings.Join(emails, " ")
	if addrs := asSlice(p["address"]); len(addrs) > 0 {
		a, _ := addrs[0].(map[string]any)
		var parts []string
		for _, l := range asSlice(a["line"]) {
			parts = append(parts, str(l))
		}
		parts = append(parts, strings.TrimSpace(str(a["postalCode"])+" "+str(a["city"])))
		row[6] = strings.Join(parts, ", ")
	}
	if _, ok := p["deceasedDateTime"]; ok || p["deceasedBoolean"] == true {
		row[7] = "yes"
	}
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

// art33 drafts the notification to the supervisory authority (GDPR art.
// 33(3)): nature, categories and approximate numbers, likely consequences,
// measures. The controller completes and signs it.
// Art33 is the draft notification to the supervisory authority (GDPR
// article 33) for the report: counts and categories, no patient's name or
// contact. deceased counts the deceased among the patients (their records
// are read for that flag only).
func (r *Report) Art33(ctx context.Context, st Reader) string {
	deceased := 0
	for _, p := range r.Patients {
		if res, err := st.Read(ctx, "Patient", p.ID); err == nil && !res.Deleted {
			if pr, err := fhir.Parse(res.Data); err == nil {
				if d, _ := pr["deceasedDateTime"].(string); d != "" || pr["deceasedBoolean"] == true {
					deceased++
				}
			}
		}
	}
	return r.art33(deceased)
}

func (r *Report) art33(deceased int) string {
	byCat := map[string]int{}
	for _, p := range r.Patients {
		for _, c := range p.Categories {
			byCat[c]++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Personal data breach notification (GDPR article 33) — DRAFT\n\n")
	fmt.Fprintf(&b, "Generated %s by `carnet incident scope --notify` from the audit log. To be completed, checked and signed by the controller, and sent to the supervisory authority (CNIL) within 72 hours of becoming aware of the breach.\n\n", r.Generated.Format(time.RFC3339))
	fmt.Fprintf(&b, "## 1. Nature of the breach\n\nConfidentiality breach: patient records were disclosed to %s\n\n", strings.TrimSuffix(strings.ToLower(r.who()[:1])+r.who()[1:], "."))
	fmt.Fprintf(&b, "The audit log records every disclosure before it happens; its integrity can be checked with `carnet audit verify`.\n\n")
	fmt.Fprintf(&b, "## 2. Categories and approximate number of data subjects and records\n\n")
	fmt.Fprintf(&b, "- data subjects (patients): **%d** (exact, from the audit log), of whom %d deceased\n", len(r.Patients), deceased)
	fmt.Fprintf(&b, "- records disclosed: %d, in %d requests\n", r.Records, r.Disclosures)
	for _, c := range []string{CatIdentity, CatContact, CatClinical, CatPrescription, CatBilling} {
		fmt.Fprintf(&b, "- %s data: %d patients\n", c, byCat[c])
	}
	fmt.Fprintf(&b, "\nHealth data are special-category data (article 9).\n\n")
	fmt.Fprintf(&b, "## 3. Likely consequences\n\n")
	if byCat[CatContact] > 0 {
		fmt.Fprintf(&b, "- Identity and contact data: phishing, impersonation of the care provider, fraud and social-engineering attempts against %d patients.\n", byCat[CatContact])
	}
	if byCat[CatClinical]+byCat[CatPrescription] > 0 {
		fmt.Fprintf(&b, "- Health data (%d patients with clinical data, %d with prescriptions): risk of discrimination, stigma, blackmail; high risk for the persons concerned, so they must be informed (article 34).\n", byCat[CatClinical], byCat[CatPrescription])
	}
	if byCat[CatBilling] > 0 {
		fmt.Fprintf(&b, "- Billing data: targeted fraud.\n")
	}
	fmt.Fprintf(&b, "\n## 4. Measures taken or proposed\n\n- [ ] Account / session / address blocked (tokens revoked): ...\n- [ ] Credentials and second factors reset: ...\n- [ ] Patients informed (list: notification.csv): ...\n- [ ] Complaint filed: ...\n- [ ] Measures to prevent recurrence: ...\n\n")
	fmt.Fprintf(&b, "## 5. Contact\n\nData protection officer: ...\n")
	return b.String()
}
