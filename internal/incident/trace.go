package incident

// Trace: given a leaked sample of a few rows, name the export it came from
// (DESIGN.md §6). Every downloaded export is weighed: its canary rows and
// tag (certain when they are there), then the likelihood of the sample's
// value forms under the export's key against their likelihood under no
// export at all (see watermark.go for the forms).

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"carnet/internal/audit"
	"carnet/internal/store"
)

// ExportSubject is the audit subject of an export's download entry.
func ExportSubject(id string) string { return "export/" + id }

// Row is one record of a leaked sample, as far as it can be read.
type Row struct {
	N                              int    // 1-based record number in the sample
	Type, ID                       string // resourceType and id (JSON), or an id column
	Patient                        string // the patient a non-Patient resource belongs to
	Family, Given, Name, BirthDate string
	Phones, Emails                 []string
	Line, City, PostalCode         string
	Tags                           []string // meta.tag codes of system TagSystem
	Telecom                        int      // telecom order form, -1 unknown
	Keys                           int      // JSON key order form, -1 unknown
}

// Sample is a parsed leaked sample.
type Sample struct {
	Format  string // csv, json, ndjson
	Rows    []Row
	Skipped int // records that could not be read
}

// MaxSampleRows bounds the rows read from a sample (a sample is a few rows;
// a whole leaked file can be cut down first).
const MaxSampleRows = 100_000

// ParseSample reads a leaked sample: CSV with a header row (columns in any
// order, any subset, common names in English or French), a JSON resource,
// array of resources or Bundle, or NDJSON.
func ParseSample(data []byte) (*Sample, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	t := bytes.TrimSpace(data)
	if len(t) == 0 {
		return nil, errors.New("the sample is empty")
	}
	var s *Sample
	if t[0] == '{' || t[0] == '[' {
		s = parseJSONSample(t)
	} else {
		var err error
		if s, err = parseCSVSample(t); err != nil {
			return nil, err
		}
	}
	if len(s.Rows) == 0 {
		return nil, fmt.Errorf("no record could be read from the sample (%s, %d unreadable)", s.Format, s.Skipped)
	}
	return s, nil
}

func parseJSONSample(t []byte) *Sample {
	s := &Sample{Format: "json"}
	add := func(raw []byte) {
		if len(s.Rows) >= MaxSampleRows {
			return
		}
		if r, ok := rowFromJSON(raw, len(s.Rows)+s.Skipped+1); ok {
			s.Rows = append(s.Rows, r)
		} else {
			s.Skipped++
		}
	}
	if json.Valid(t) {
		if t[0] == '[' {
			var arr []json.RawMessage
			if json.Unmarshal(t, &arr) == nil {
				for _, raw := range arr {
					add(raw)
				}
			}
			return s
		}
		var b struct {
			ResourceType string `json:"resourceType"`
			Entry        []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if json.Unmarshal(t, &b) == nil && b.ResourceType == "Bundle" {
			for _, e := range b.Entry {
				if len(e.Resource) > 0 {
					add(e.Resource)
				}
			}
			return s
		}
		add(t)
		return s
	}
	s.Format = "ndjson"
	for line := range bytes.SplitSeq(t, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		add(line)
	}
	return s
}

// rowFromJSON reads one resource.
func rowFromJSON(raw []byte, n int) (Row, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return Row{}, false
	}
	r := Row{N: n, Telecom: -1, Keys: keyOrder(raw)}
	r.Type, _ = m["resourceType"].(string)
	r.ID, _ = m["id"].(string)
	if r.Type != "Patient" && r.Type != "RelatedPerson" && r.Type != "" {
		r.Patient = refPatient(m)
	}
	names := asList(m["name"])
	for i, nm := range names {
		if nm["use"] == "official" {
			names[0], names[i] = names[i], names[0]
			break
		}
	}
	if len(names) > 0 {
		r.Family, _ = names[0]["family"].(string)
		if g, ok := names[0]["given"].([]any); ok && len(g) > 0 {
			r.Given, _ = g[0].(string)
		}
		r.Name, _ = names[0]["text"].(string)
	}
	r.BirthDate, _ = m["birthDate"].(string)
	first := ""
	for _, tc := range asList(m["telecom"]) {
		v, _ := tc["value"].(string)
		switch tc["system"] {
		case "phone":
			r.Phones = append(r.Phones, v)
		case "email":
			r.Emails = append(r.Emails, v)
		default:
			continue
		}
		if first == "" {
			first, _ = tc["system"].(string)
		}
	}
	if len(r.Phones) > 0 && len(r.Emails) > 0 {
		r.Telecom = 0
		if first == "email" {
			r.Telecom = 1
		}
	}
	if as := asList(m["address"]); len(as) > 0 {
		if ls, ok := as[0]["line"].([]any); ok && len(ls) > 0 {
			r.Line, _ = ls[0].(string)
		}
		r.City, _ = as[0]["city"].(string)
		r.PostalCode, _ = as[0]["postalCode"].(string)
	}
	if meta, ok := m["meta"].(map[string]any); ok {
		for _, tg := range asList(meta["tag"]) {
			if tg["system"] == TagSystem {
				if c, ok := tg["code"].(string); ok {
					r.Tags = append(r.Tags, c)
				}
			}
		}
	}
	return r, true
}

// refPatient is the patient a resource refers to (subject, patient or
// beneficiary), "" if none.
func refPatient(m map[string]any) string {
	for _, k := range []string{"subject", "patient", "beneficiary"} {
		for _, ref := range asList(m[k]) {
			if s, ok := ref["reference"].(string); ok {
				if id, ok := strings.CutPrefix(s, "Patient/"); ok && id != "" {
					return id
				}
			}
		}
	}
	return ""
}

// keyOrder is the form of an object's key order: 0 "resourceType" first,
// 1 sorted, -1 anything else.
func keyOrder(raw []byte) int {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return -1
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return -1
		}
		k, ok := tok.(string)
		if !ok {
			return -1
		}
		keys = append(keys, k)
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return -1
		}
	}
	switch {
	case len(keys) < 2:
		return -1
	case keys[0] == "resourceType":
		return 0
	case slices.IsSorted(keys):
		return 1
	}
	return -1
}

// CSV columns, by normalised header (lower case, letters and digits only).
var csvColumns = map[string]string{
	"id": "id", "patientid": "id", "resourceid": "id", "logicalid": "id", "fhirid": "id", "patient": "id", "identifiant": "id",
	"family": "family", "familyname": "family", "lastname": "family", "surname": "family", "nom": "family", "nomdefamille": "family",
	"nomdenaissance": "family", "namefamily": "family", "nomdusage": "family",
	"given": "given", "givenname": "given", "firstname": "given", "forename": "given", "prenom": "given", "namegiven": "given", "prenoms": "given",
	"name": "name", "fullname": "name", "nomcomplet": "name", "patientname": "name",
	"birthdate": "birthDate", "dob": "birthDate", "dateofbirth": "birthDate", "datenaissance": "birthDate", "datedenaissance": "birthDate",
	"naissance": "birthDate", "birthday": "birthDate", "ddn": "birthDate",
	"email": "email", "mail": "email", "courriel": "email", "emailaddress": "email", "adressemail": "email",
	"address": "address", "addressline": "address", "line": "address", "street": "address", "adresse": "address", "addressline1": "address",
	"streetaddress": "address", "rue": "address", "voie": "address",
	"city": "city", "town": "city", "ville": "city", "commune": "city", "addresscity": "city", "localite": "city",
	"postalcode": "postalCode", "zip": "postalCode", "zipcode": "postalCode", "postcode": "postalCode", "cp": "postalCode",
	"codepostal": "postalCode", "addresspostalcode": "postalCode",
	"tag": "tag", "metatag": "tag", "resourcetype": "type", "type": "type",
}

func normHeader(h string) string {
	var b strings.Builder
	for _, r := range fold(h) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// columnOf maps a header to a field: known names, then anything naming a
// phone.
func columnOf(h string) string {
	n := normHeader(h)
	if c, ok := csvColumns[n]; ok {
		return c
	}
	for _, p := range []string{"phone", "tel", "mobile", "portable", "telecom", "fixe", "gsm"} {
		if strings.Contains(n, p) {
			return "telecom"
		}
	}
	if strings.Contains(n, "mail") {
		return "email"
	}
	return ""
}

var postalCity = regexp.MustCompile(`(\d{5})\s+(.+)`)

func parseCSVSample(t []byte) (*Sample, error) {
	s := &Sample{Format: "csv"}
	head, _, _ := bytes.Cut(t, []byte("\n"))
	delim, best := ',', -1
	for _, d := range []rune{',', ';', '\t', '|'} {
		if n := bytes.Count(head, []byte(string(d))); n > best {
			delim, best = d, n
		}
	}
	cr := csv.NewReader(bytes.NewReader(t))
	cr.Comma = delim
	cr.FieldsPerRecord = -1
	cr.LazyQuotes = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("the sample is not JSON, NDJSON or CSV with a header row: %v", err)
	}
	cols := make([]string, len(header))
	known := 0
	for i, h := range header {
		if cols[i] = columnOf(h); cols[i] != "" {
			known++
		}
	}
	if known == 0 {
		return nil, fmt.Errorf("no column of the CSV header is one trace knows (id, family, given, birthDate, phone, email, address, city, postalCode...): %q", clip(strings.Join(header, string(delim))))
	}
	for len(s.Rows) < MaxSampleRows {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			s.Skipped++
			var pe *csv.ParseError
			if errors.As(err, &pe) && pe.Err != csv.ErrFieldCount {
				continue
			}
			continue
		}
		r := Row{N: len(s.Rows) + s.Skipped + 1, Telecom: -1, Keys: -1}
		empty := true
		for i, v := range rec {
			v = strings.TrimSpace(v)
			if i >= len(cols) || v == "" {
				continue
			}
			empty = false
			switch cols[i] {
			case "id":
				if typ, id, ok := strings.Cut(v, "/"); ok {
					r.Type, v = typ, id
				}
				r.ID = v
			case "type":
				r.Type = v
			case "family":
				r.Family = v
			case "given":
				r.Given = v
			case "name":
				r.Name = v
			case "birthDate":
				r.BirthDate = v
			case "email":
				r.Emails = append(r.Emails, splitMulti(v)...)
			case "telecom":
				for _, x := range splitMulti(v) {
					if strings.Contains(x, "@") {
						r.Emails = append(r.Emails, x)
					} else {
						r.Phones = append(r.Phones, x)
					}
				}
			case "address":
				line, rest, _ := strings.Cut(v, ",")
				r.Line = strings.TrimSpace(line)
				if m := postalCity.FindStringSubmatch(rest); m != nil {
					if r.PostalCode == "" {
						r.PostalCode = m[1]
					}
					if r.City == "" {
						r.City = strings.TrimSpace(m[2])
					}
				}
			case "city":
				r.City = v
			case "postalCode":
				r.PostalCode = v
			case "tag":
				r.Tags = append(r.Tags, splitMulti(v)...)
			}
		}
		if !empty {
			s.Rows = append(s.Rows, r)
		}
	}
	return s, nil
}

func splitMulti(v string) []string {
	var out []string
	for _, x := range strings.FieldsFunc(v, func(r rune) bool { return r == ';' || r == '|' || r == ',' }) {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}

// ---- evidence ---------------------------------------------------------------

// The likelihood model. Under "this export", a value shows the form the
// export's key chose, except with probability epsilon (edited by hand). A
// whole dimension may also have been normalised by whoever handled the
// file (all phones reformatted, say): with probability delta it carries no
// information, so one dimension can lower an export's score by at most
// log(delta). Under "no export", a dimension's forms follow the sample's
// own frequencies (Laplace-smoothed): data straight from a database, in
// one form, then gives no evidence for any export.
const (
	epsilon = 0.02
	delta   = 0.1
)

type obs struct {
	dim, seed string
	form      int
}

// evidence is what a sample shows: per dimension, one observation per
// distinct value (a value seen in two forms is dropped), and the log
// probability of each form under no export.
type evidence struct {
	byDim map[string][]obs
	null  map[string][]float64
	total int
}

func observe(r *Row) []obs {
	var out []obs
	for _, p := range r.Phones {
		if nat, form, ok := parsePhone(p); ok && form >= 0 {
			out = append(out, obs{dimPhone, nat, form})
		}
	}
	if f, ok := caseForm(r.Family); ok {
		out = append(out, obs{dimFamily, fold(r.Family), f})
	}
	if f, ok := caseForm(r.Given); ok {
		out = append(out, obs{dimGiven, fold(r.Given), f})
	}
	if f, ok := caseForm(r.City); ok {
		out = append(out, obs{dimCity, fold(r.City), f})
	}
	if st, ok := parseStreet(r.Line); ok {
		out = append(out, obs{dimStreet, st.norm, st.form})
	}
	if r.ID != "" && r.Telecom >= 0 {
		out = append(out, obs{dimTelecom, r.ID, r.Telecom})
	}
	if r.ID != "" && r.Type != "" && r.Keys >= 0 {
		out = append(out, obs{dimKeys, r.Type + "/" + r.ID, r.Keys})
	}
	return out
}

func gather(rows []Row) *evidence {
	seen := map[[2]string]int{}
	var order [][2]string
	for i := range rows {
		for _, o := range observe(&rows[i]) {
			k := [2]string{o.dim, o.seed}
			if f, ok := seen[k]; ok {
				if f != o.form {
					seen[k] = -1 // two forms of one value: no evidence
				}
				continue
			}
			seen[k] = o.form
			order = append(order, k)
		}
	}
	ev := &evidence{byDim: map[string][]obs{}, null: map[string][]float64{}}
	for _, k := range order {
		if f := seen[k]; f >= 0 {
			ev.byDim[k[0]] = append(ev.byDim[k[0]], obs{k[0], k[1], f})
			ev.total++
		}
	}
	for dim, os := range ev.byDim {
		n := dimForms[dim]
		counts := make([]float64, n)
		for _, o := range os {
			counts[o.form]++
		}
		lp := make([]float64, n)
		for f := range lp {
			lp[f] = math.Log((counts[f] + 1) / float64(len(os)+n))
		}
		ev.null[dim] = lp
	}
	return ev
}

// score is the log likelihood ratio (natural log) of the sample under w's
// export against no export, and how many observations agree with w.
func (ev *evidence) score(w *Watermark) (llr float64, agree int) {
	for dim, os := range ev.byDim {
		n := float64(dimForms[dim])
		var l float64
		for _, o := range os {
			if w.choice(dim, o.seed) == o.form {
				l += math.Log(1 - epsilon)
				agree++
			} else {
				l += math.Log(epsilon / (n - 1))
			}
			l -= ev.null[dim][o.form]
		}
		llr += logAdd(math.Log(delta), math.Log(1-delta)+l)
	}
	return llr, agree
}

func logAdd(a, b float64) float64 {
	if a < b {
		a, b = b, a
	}
	return a + math.Log1p(math.Exp(b-a))
}

// CanaryHit is a sample row that is one of an export's canaries.
type CanaryHit struct {
	Row    int      `json:"row"`
	Canary string   `json:"canary"`
	Fields []string `json:"fields"` // what matched: id, phone, email, name+birthDate, address
}

// rowKeys are a row's identifying values in form-free shape, computed
// once per sample for the canary comparisons.
type rowKeys struct {
	n                       int
	id                      string
	phones, emails          []string // national numbers, lower-case addresses
	family, given, name     string   // folded
	birthDate, line, postal string   // line: street key ("" if none)
	city                    string   // folded
}

func keysOf(rows []Row) []rowKeys {
	out := make([]rowKeys, len(rows))
	for i := range rows {
		r := &rows[i]
		k := rowKeys{n: r.N, id: r.ID, family: fold(r.Family), given: fold(r.Given), name: fold(r.Name), birthDate: r.BirthDate,
			postal: r.PostalCode, city: fold(r.City)}
		for _, p := range r.Phones {
			if nat, _, ok := parsePhone(p); ok {
				k.phones = append(k.phones, nat)
			}
		}
		for _, e := range r.Emails {
			k.emails = append(k.emails, strings.ToLower(strings.TrimSpace(e)))
		}
		if st, ok := parseStreet(r.Line); ok {
			k.line = st.norm
		}
		out[i] = k
	}
	return out
}

// canaryHits matches rows against canaries on each identifying field
// (forms ignored: the canaries are watermarked like every row). A hit
// needs the id, the phone, the e-mail or the name with the birth date;
// the address only adds to one.
func canaryHits(rows []rowKeys, cs []Canary) []CanaryHit {
	var out []CanaryHit
	for _, c := range cs {
		cnat, _, _ := parsePhone(c.Phone)
		cemail := strings.ToLower(c.Email)
		cfam, cgiv := fold(c.Family), fold(c.Given)
		cline := ""
		if st, ok := parseStreet(c.Line); ok {
			cline = st.norm
		}
		for i := range rows {
			r := &rows[i]
			var f []string
			if r.id != "" && r.id == c.ID {
				f = append(f, "id")
			}
			if slices.Contains(r.phones, cnat) {
				f = append(f, "phone")
			}
			if slices.Contains(r.emails, cemail) {
				f = append(f, "email")
			}
			if r.birthDate == c.BirthDate && (r.family == cfam && r.given == cgiv || r.name != "" && (r.name == cgiv+" "+cfam || r.name == cfam+" "+cgiv)) {
				f = append(f, "name+birthDate")
			}
			if len(f) == 0 {
				// An address alone is no evidence: invented from the same
				// streets as real ones, it may be a neighbour's.
				continue
			}
			if r.line != "" && r.line == cline && (r.postal == c.PostalCode || r.city == fold(c.City)) {
				f = append(f, "address")
			}
			out = append(out, CanaryHit{Row: r.n, Canary: c.ID, Fields: f})
		}
	}
	slices.SortFunc(out, func(a, b CanaryHit) int { return a.Row - b.Row })
	return out
}

// ---- the trace --------------------------------------------------------------

// Candidate is one export to weigh, with the usernames of its requester
// and approver.
type Candidate struct {
	Export              *store.ExportRequest
	Requester, Approver string
}

// Match is how well the sample fits one export.
type Match struct {
	Export       string      `json:"export"`
	Facility     string      `json:"facility"`
	FacilityName string      `json:"facility_name,omitempty"`
	Requester    string      `json:"requester"`
	RequesterID  string      `json:"requester_id"`
	Approver     string      `json:"approver"`
	Requested    time.Time   `json:"requested"`
	Approved     time.Time   `json:"approved"`
	Downloaded   time.Time   `json:"downloaded"`
	Recipient    string      `json:"recipient"`
	Reason       string      `json:"reason"`
	Types        []string    `json:"types"`
	Patients     int         `json:"patients"`
	Certainty    string      `json:"certainty"`  // certain, near-certain, high, probable, weak
	Confidence   float64     `json:"confidence"` // probability that the sample comes from this export
	Bits         float64     `json:"log2_likelihood_ratio"`
	Observations int         `json:"observations"` // watermark observations weighed
	Agreeing     int         `json:"agreeing"`     // of which the export's key predicts
	Canaries     []CanaryHit `json:"canary_rows,omitempty"`
	Tag          bool        `json:"tag_matched,omitempty"`
	Audit        *AuditCheck `json:"audit,omitempty"`
}

// AuditCheck says whether the sample's patients are in the export's audit
// entry (rows that carry a patient id only).
type AuditCheck struct {
	Entry       int64    `json:"entry"` // index of the export's audit entry, -1 if none was found
	RowsWithIDs int      `json:"rows_with_ids"`
	InExport    int      `json:"rows_in_export"`
	NotInExport []string `json:"not_in_export,omitempty"`
}

// TraceReport is a trace's answer.
type TraceReport struct {
	Format       string         `json:"format"`
	Rows         int            `json:"rows"`
	Skipped      int            `json:"skipped,omitempty"`
	Observations int            `json:"observations"`
	Dimensions   map[string]int `json:"dimensions"`
	Tags         []string       `json:"tags,omitempty"` // export tags seen in the sample
	Exports      int            `json:"exports_weighed"`
	Matched      bool           `json:"matched"`
	Verdict      string         `json:"verdict"`
	Best         []Match        `json:"best"` // best first, at most 3
	// ExportedIn lists, when nothing matched, the exports whose audit
	// entries hold patients of the sample: the leak is not one of their
	// files (or its watermark was removed), but these exports had them.
	ExportedIn []string `json:"exported_in,omitempty"`
	// FacilityCanaries are sample rows that are one of a facility's
	// stored canary patients (the guard's): no legitimate workflow
	// reaches them, so the rows come from that facility's records.
	FacilityCanaries []FacilityCanary `json:"facility_canaries,omitempty"`
	Generated        time.Time        `json:"generated_at"`
}

// FacilityCanary is a sample row that is a facility's canary patient.
type FacilityCanary struct {
	Row      int    `json:"row"`
	Patient  string `json:"patient"`
	Facility string `json:"facility"`
}

// canaryLister is the store's register of facility canaries (optional).
type canaryLister interface {
	Canaries(ctx context.Context) (map[string]string, error)
}

// Weigh scores the sample against every candidate (pure: no store).
// progress, if not nil, is called with the number of candidates done.
func Weigh(s *Sample, cands []Candidate, progress func(done int)) *TraceReport {
	ev := gather(s.Rows)
	keys := keysOf(s.Rows)
	rep := &TraceReport{Format: s.Format, Rows: len(s.Rows), Skipped: s.Skipped, Observations: ev.total, Dimensions: map[string]int{},
		Exports: len(cands), Generated: time.Now().UTC()}
	for d, os := range ev.byDim {
		rep.Dimensions[d] = len(os)
	}
	tags := map[string]bool{}
	for _, r := range s.Rows {
		for _, t := range r.Tags {
			tags[t] = true
		}
	}
	for t := range tags {
		rep.Tags = append(rep.Tags, t)
	}
	slices.Sort(rep.Tags)

	ms := make([]Match, 0, len(cands))
	for i, c := range cands {
		e := c.Export
		m := Match{Export: e.ID, Facility: e.Facility, FacilityName: e.FacilityName, Requester: c.Requester, RequesterID: e.Requester,
			Approver: c.Approver, Requested: e.Created, Approved: e.Decided, Downloaded: e.Downloaded, Recipient: e.Recipient,
			Reason: e.Reason, Types: e.Types, Patients: e.Patients, Observations: ev.total}
		w, err := NewWatermark(e.WatermarkKey)
		if err != nil {
			m.Bits = math.Inf(-1)
			ms = append(ms, m)
			continue
		}
		m.Tag = tags[w.Tag()]
		m.Canaries = canaryHits(keys, w.Canaries())
		llr, agree := ev.score(w)
		m.Bits, m.Agreeing = llr/math.Ln2, agree
		ms = append(ms, m)
		if progress != nil && (i+1)%64 == 0 {
			progress(i + 1)
		}
	}
	if progress != nil {
		progress(len(cands))
	}

	// Certain evidence first: a canary or the tag names its export.
	strong := func(m *Match) int {
		n := 0
		if m.Tag {
			n += 2
		}
		for _, h := range m.Canaries {
			n += len(h.Fields)
			if slices.Contains(h.Fields, "id") {
				n++
			}
		}
		return n
	}
	// Posterior with prior 1/2 on "no export" and 1/(2K) on each export:
	// P(e | sample) = LR_e / (K + sum LR).
	logZ := math.Log(float64(max(1, len(ms))))
	for i := range ms {
		logZ = logAdd(logZ, ms[i].Bits*math.Ln2)
	}
	for i := range ms {
		m := &ms[i]
		m.Confidence = math.Exp(m.Bits*math.Ln2 - logZ)
		switch {
		case strong(m) >= 2:
			m.Certainty, m.Confidence = "certain", 1
		case strong(m) == 1:
			m.Certainty, m.Confidence = "near-certain", max(m.Confidence, 0.999)
		case m.Confidence >= 0.99:
			m.Certainty = "high"
		case m.Confidence >= 0.9:
			m.Certainty = "probable"
		default:
			m.Certainty = "weak"
		}
	}
	slices.SortStableFunc(ms, func(a, b Match) int {
		if sa, sb := strong(&a), strong(&b); sa != sb {
			return sb - sa
		}
		switch {
		case a.Bits > b.Bits:
			return -1
		case a.Bits < b.Bits:
			return 1
		}
		return 0
	})
	if len(ms) > 3 {
		ms = ms[:3]
	}
	rep.Best = ms
	switch {
	case len(ms) == 0:
		rep.Verdict = "matches no export: no export has been downloaded from this store"
	case ms[0].Certainty == "weak":
		why := "its value forms are no likelier under any export's key than by chance"
		if ev.total == 0 {
			why = "it carries no watermark the trace can read (no phone, name, city or address line in a recognised form)"
		} else if ev.total < 8 {
			why += fmt.Sprintf(" (only %d watermark observations: a larger sample may decide)", ev.total)
		}
		rep.Verdict = fmt.Sprintf("matches no export: no canary row, no export tag, and %s; best candidate %s at confidence %.2g", why, ms[0].Export, ms[0].Confidence)
		if len(rep.Tags) > 0 {
			rep.Verdict += fmt.Sprintf("; the sample carries export tags %s that no export of this store made", strings.Join(rep.Tags, ", "))
		}
	default:
		rep.Matched = true
		m := ms[0]
		rep.Verdict = fmt.Sprintf("export %s (%s): %s", m.Export, m.Certainty, m.evidenceText())
	}
	return rep
}

// evidenceText says why the match holds.
func (m *Match) evidenceText() string {
	var parts []string
	if len(m.Canaries) > 0 {
		var fs []string
		for _, h := range m.Canaries {
			fs = append(fs, fmt.Sprintf("row %d on %s", h.Row, strings.Join(h.Fields, ", ")))
		}
		parts = append(parts, "canary row matched: "+strings.Join(fs, "; "))
	}
	if m.Tag {
		parts = append(parts, "export tag matched")
	}
	parts = append(parts, fmt.Sprintf("value forms: %d of %d observations agree with this export's key, log2 likelihood ratio %.1f bits, confidence %s",
		m.Agreeing, m.Observations, m.Bits, confidenceText(m.Confidence)))
	return strings.Join(parts, "; ")
}

func confidenceText(p float64) string {
	switch {
	case p >= 1:
		return "1"
	case 1-p < 0.001:
		return fmt.Sprintf("1 - %.1g", 1-p)
	}
	return fmt.Sprintf("%.4g", p)
}

// TraceStore is what Trace reads: the exports, the accounts that asked and
// approved, and the audit log.
type TraceStore interface {
	ExportRequests(ctx context.Context, requester string) ([]*store.ExportRequest, error)
	AccountByID(ctx context.Context, id string) (*store.Account, error)
	FindAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditRow, error)
}

// Trace weighs the sample against every export downloaded from st, then
// checks the best matches against their audit entries. progress (may be
// nil) gets the number of exports weighed and their total.
func Trace(ctx context.Context, st TraceStore, s *Sample, progress func(done, total int)) (*TraceReport, error) {
	all, err := st.ExportRequests(ctx, "")
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	name := func(id string) string {
		if id == "" {
			return ""
		}
		if n, ok := names[id]; ok {
			return n
		}
		n := id
		if a, err := st.AccountByID(ctx, id); err == nil {
			n = a.Username
		}
		names[id] = n
		return n
	}
	var cands []Candidate
	for _, e := range all {
		if e.Status == store.ExportDownloaded {
			cands = append(cands, Candidate{Export: e, Requester: name(e.Requester), Approver: name(e.DecidedBy)})
		}
	}
	var pf func(int)
	if progress != nil {
		pf = func(done int) { progress(done, len(cands)) }
	}
	rep := Weigh(s, cands, pf)
	for i := range rep.Best {
		m := &rep.Best[i]
		if m.Certainty == "weak" && i > 0 {
			continue
		}
		ac, err := auditCheck(ctx, st, m, s.Rows)
		if err != nil {
			return nil, err
		}
		m.Audit = ac
	}
	if !rep.Matched {
		if rep.ExportedIn, err = exportedIn(ctx, st, s.Rows); err != nil {
			return nil, err
		}
	}
	if cl, ok := st.(canaryLister); ok {
		fc, err := cl.Canaries(ctx)
		if err != nil {
			return nil, err
		}
		for _, r := range s.Rows {
			if pid, _ := samplePatient(&r); fc[pid] != "" {
				rep.FacilityCanaries = append(rep.FacilityCanaries, FacilityCanary{Row: r.N, Patient: pid, Facility: fc[pid]})
			}
		}
	}
	return rep, nil
}

// exportEntry finds the audit entry of an export's download.
func exportEntry(ctx context.Context, st TraceStore, requester, id string) (int64, *audit.Entry, error) {
	rows, err := st.FindAudit(ctx, store.AuditFilter{Account: requester, Action: "export"})
	if err != nil {
		return -1, nil, err
	}
	for _, row := range rows {
		e, err := audit.Decode(row.Entry)
		if err != nil {
			return -1, nil, fmt.Errorf("audit entry %d unreadable: %w", row.Index, err)
		}
		if e.Subject == ExportSubject(id) && e.Outcome < 400 {
			return row.Index, e, nil
		}
	}
	return -1, nil, nil
}

func auditCheck(ctx context.Context, st TraceStore, m *Match, rows []Row) (*AuditCheck, error) {
	idx, e, err := exportEntry(ctx, st, m.RequesterID, m.Export)
	if err != nil {
		return nil, err
	}
	ac := &AuditCheck{Entry: idx}
	canary := map[string]bool{}
	for _, h := range m.Canaries {
		canary[h.Canary] = true
	}
	for _, r := range rows {
		pid, typ := samplePatient(&r)
		if pid == "" || canary[r.ID] {
			continue
		}
		ac.RowsWithIDs++
		if e != nil && (slices.Contains(e.Disclosed[typ], pid) || typ == "" && slices.Contains(e.Patients, pid)) {
			ac.InExport++
		} else {
			ac.NotInExport = append(ac.NotInExport, pid)
		}
	}
	return ac, nil
}

// samplePatient is the patient id a row carries and the type under which
// the export's audit entry would list it ("" when the type is unknown).
func samplePatient(r *Row) (string, string) {
	switch {
	case r.Type == "Patient":
		return r.ID, "Patient"
	case r.Type == "" && r.ID != "":
		return r.ID, ""
	case r.Patient != "":
		return r.Patient, r.Type
	}
	return "", ""
}

// exportedIn lists the exports whose audit entries hold the sample's
// patients (up to 50 patients looked up).
func exportedIn(ctx context.Context, st TraceStore, rows []Row) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	n := 0
	for _, r := range rows {
		pid, _ := samplePatient(&r)
		if pid == "" || n >= 50 {
			continue
		}
		n++
		hits, err := st.FindAudit(ctx, store.AuditFilter{Patient: pid, Action: "export"})
		if err != nil {
			return nil, err
		}
		for _, h := range hits {
			e, err := audit.Decode(h.Entry)
			if err != nil || e.Outcome >= 400 {
				continue
			}
			if id, ok := strings.CutPrefix(e.Subject, "export/"); ok && !seen[id] {
				seen[id] = true
				out = append(out, id)
			}
		}
	}
	return out, nil
}

// Write renders the report as text or json.
func (r *TraceReport) Write(w io.Writer, format string) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	if format != "text" {
		return fmt.Errorf("unknown format %q", format)
	}
	dims := make([]string, 0, len(r.Dimensions))
	for d, n := range r.Dimensions {
		dims = append(dims, fmt.Sprintf("%s %d", d, n))
	}
	slices.Sort(dims)
	fmt.Fprintf(w, "Sample: %s, %d rows", r.Format, r.Rows)
	if r.Skipped > 0 {
		fmt.Fprintf(w, " (%d unreadable)", r.Skipped)
	}
	fmt.Fprintf(w, "; %d watermark observations (%s); %d exports weighed.\n\n", r.Observations, strings.Join(dims, ", "), r.Exports)
	if r.Matched {
		fmt.Fprintf(w, "MATCH: %s\n", r.Verdict)
	} else {
		fmt.Fprintf(w, "NO MATCH: %s\n", r.Verdict)
		if len(r.ExportedIn) > 0 {
			fmt.Fprintf(w, "The sample's patients were exported in: %s (by the audit log); the sample is not watermarked as any of them.\n", strings.Join(r.ExportedIn, ", "))
		}
	}
	for _, c := range r.FacilityCanaries {
		fmt.Fprintf(w, "Sample row %d is canary patient %s of Organization/%s: these rows come from that facility's records (carnet incident scope lists who was shown it).\n", c.Row, c.Patient, c.Facility)
	}
	for i, m := range r.Best {
		label := "Best match"
		if !r.Matched {
			label = "Closest export"
		}
		if i > 0 {
			fmt.Fprintf(w, "Runner-up: export %s (%s, for %q), certainty %s, confidence %s, %.1f bits (%d of %d observations agree)\n",
				m.Export, m.Requester, m.Recipient, m.Certainty, confidenceText(m.Confidence), m.Bits, m.Agreeing, m.Observations)
			continue
		}
		fmt.Fprintf(w, "\n%s: export %s, certainty %s, confidence %s, %.1f bits (%d of %d observations agree)\n",
			label, m.Export, m.Certainty, confidenceText(m.Confidence), m.Bits, m.Agreeing, m.Observations)
		fac := m.Facility
		if m.FacilityName != "" {
			fac = m.FacilityName + " (Organization/" + m.Facility + ")"
		}
		fmt.Fprintf(w, "  facility:   %s\n  requested:  %s by %s; types %s; reason %q\n  approved:   %s by %s\n  downloaded: %s, %d patients\n  recipient:  %s\n",
			fac, m.Requested.Format(time.RFC3339), m.Requester, strings.Join(m.Types, " "), m.Reason,
			m.Approved.Format(time.RFC3339), m.Approver, m.Downloaded.Format(time.RFC3339), m.Patients, m.Recipient)
		for _, h := range m.Canaries {
			fmt.Fprintf(w, "  canary:     sample row %d is canary Patient/%s (matched on %s)\n", h.Row, h.Canary, strings.Join(h.Fields, ", "))
		}
		if m.Tag {
			fmt.Fprintf(w, "  tag:        the sample carries this export's tag\n")
		}
		if a := m.Audit; a != nil {
			switch {
			case a.Entry < 0:
				fmt.Fprintf(w, "  audit:      no audit entry found for this export's download\n")
			case a.RowsWithIDs == 0:
				fmt.Fprintf(w, "  audit:      entry %d; the sample carries no patient ids to check against it\n", a.Entry)
			default:
				fmt.Fprintf(w, "  audit:      entry %d lists %d of the %d patients the sample names", a.Entry, a.InExport, a.RowsWithIDs)
				if len(a.NotInExport) > 0 {
					fmt.Fprintf(w, " (not: %s)", strings.Join(a.NotInExport, ", "))
				}
				fmt.Fprintln(w)
			}
		}
		fmt.Fprintln(w)
	}
	return nil
}
