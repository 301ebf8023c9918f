package web

// The patient chart (issue 7): the banner, then stays, conditions,
// observations with trend charts, prescriptions, billing items and the
// death declaration, each section read through the API with the user's
// token. Sections the user's roles do not read are not asked for at all
// (a refused request for patient data counts against the account in the
// guard); the API decides anyway.

import (
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"carnet/internal/fhir"
	"carnet/internal/policy"
)

// chartRoutes registers the chart and the pages reached from it.
func (s *Server) chartRoutes() {
	s.patientPage("GET "+Prefix+"patients/{id}", s.chart)
	s.patientPage("GET "+Prefix+"patients/{id}/encounters", s.sectionPage(secEncounters))
	s.patientPage("GET "+Prefix+"patients/{id}/conditions", s.sectionPage(secConditions))
	s.patientPage("GET "+Prefix+"patients/{id}/observations", s.sectionPage(secObservations))
	s.patientPage("GET "+Prefix+"patients/{id}/billing", s.sectionPage(secBilling))
	s.patientPage("GET "+Prefix+"patients/{id}/prescriptions", s.prescriptions)
	s.patientPage("POST "+Prefix+"patients/{id}/prescriptions", s.prescribe)
	s.patientPage("POST "+Prefix+"patients/{id}/prescriptions/{rx}/stop", s.stopPrescription)
	s.patientPage("GET "+Prefix+"patients/{id}/death", s.deathForm)
	s.patientPage("POST "+Prefix+"patients/{id}/death", s.declareDeath)
	s.patientPage("GET "+Prefix+"patients/{id}/break-the-glass", s.breakGlassForm)
	s.patientPage("POST "+Prefix+"patients/{id}/break-the-glass", s.breakGlass)
	s.patientPage("GET "+Prefix+"patients/{id}/access", s.accessHistory)
	s.page("GET "+Prefix+"admission", s.admissionForm)
	s.page("POST "+Prefix+"admission", s.admit)
}

// patientPage registers a page under patients/{id}: a path id that cannot
// be a FHIR id ({id}, and {rx} where the pattern has it) gets the not-found
// page before h runs, so h asks the API only for well-formed ids.
func (s *Server) patientPage(pattern string, h func(w http.ResponseWriter, r *http.Request, u *user)) {
	var names []string
	for _, n := range []string{"id", "rx"} {
		if strings.Contains(pattern, "{"+n+"}") {
			names = append(names, n)
		}
	}
	s.page(pattern, func(w http.ResponseWriter, r *http.Request, u *user) {
		for _, n := range names {
			if s.badPatientID(w, r, u, r.PathValue(n)) {
				return
			}
		}
		h(w, r, u)
	})
}

// may reports whether the user's roles (narrowed by the token's scopes)
// allow act on typ at all, as policy.Rules say. It only decides what the
// pages offer and which sections they ask for: the API decides every
// request.
func may(u *user, act policy.Action, typ string) bool {
	if u == nil || u.Principal == nil || !policy.ScopesAllow(u.Scopes, act, typ) {
		return false
	}
	for _, role := range u.Roles {
		rs := policy.Rules[role]
		r, ok := rs[typ]
		if !ok {
			if ti := fhir.LookupType(typ); ti != nil {
				r, ok = rs[string(ti.Category)]
			}
		}
		if !ok || !strings.ContainsRune(r.Actions, rune(act)) {
			continue
		}
		if r.Reach == policy.Care && u.Practitioner == "" {
			continue
		}
		return true
	}
	return false
}

// badPatientID answers a malformed id in the URL without calling the API.
func (s *Server) badPatientID(w http.ResponseWriter, r *http.Request, u *user, id string) bool {
	if fhir.ValidID(id) {
		return false
	}
	p := s.newPage(r, u)
	p.Title = p.T("patient.title")
	p.Error = p.T("chart.bad-id")
	s.render(w, r, http.StatusNotFound, "error", p)
	return true
}

// ---- view models ------------------------------------------------------------

// section is one list of the chart: its rows, the total the API counted,
// and whether the user's roles read it at all.
type section[T any] struct {
	Rows    []T
	Total   int
	Allowed bool
	Error   string
}

// More reports rows beyond those shown.
func (s section[T]) More() bool { return s.Total > len(s.Rows) }

type encounterRow struct {
	ID, Class, Status, Start, End, Facility string
	People                                  []string
	InProgress                              bool
}

type conditionRow struct {
	Code, Text, Clinical, Verification, Onset, Recorded string
}

type obsRow struct {
	Code, Text, Value, Unit, When string
}

type rxRow struct {
	ID, Version, Medication, Code, Dose, Route, Status, Authored, Requester string
	Active                                                                  bool
}

type chargeRow struct {
	Code, Text, Status, When, Amount, Currency string
}

// chartData is the chart page.
type chartData struct {
	ID         string
	Encounters section[encounterRow]
	Conditions section[conditionRow]
	Latest     section[obsRow] // the latest value of each observation code
	Trends     []*trend
	Active     section[rxRow]
	Other      section[rxRow]
	Charges    section[chargeRow]
	Links      *chartLinks
	// CanStop: the user may stop prescriptions; CanDeclare: may edit the
	// patient (the death declaration).
	CanStop, CanDeclare bool
}

// chartLinks is the link bar of a patient's pages.
type chartLinks struct {
	ID, Here                                                 string
	Encounters, Clinical, Prescriptions, Billing, Death, BTG bool
	BTGUntil                                                 string
	Prescribe                                                bool
}

func (s *Server) linksFor(w http.ResponseWriter, r *http.Request, u *user, id, here string) *chartLinks {
	l := &chartLinks{ID: id, Here: here,
		Encounters:    may(u, policy.Search, "Encounter"),
		Clinical:      may(u, policy.Search, "Observation"),
		Prescriptions: may(u, policy.Search, "MedicationRequest"),
		Prescribe:     may(u, policy.Create, "MedicationRequest"),
		Billing:       may(u, policy.Search, "ChargeItem"),
		Death:         may(u, policy.Read, "Patient"),
	}
	if until, ok := s.btgUntil(r, u, id); ok {
		l.BTG, l.BTGUntil = true, until.In(time.Local).Format("15:04")
	}
	return l
}

// ---- reading a FHIR search ----------------------------------------------------

// fetch is one API request of a page, made concurrently with the others.
type fetch struct {
	path string
	a    *apiResponse
}

// fetchAll makes the requests concurrently (they are independent reads) and
// returns when all have answered.
func (s *Server) fetchAll(r *http.Request, u *user, fs ...*fetch) {
	var wg sync.WaitGroup
	for _, f := range fs {
		if f == nil {
			continue
		}
		wg.Go(func() { f.a = s.call(r, u, http.MethodGet, f.path, nil) })
	}
	wg.Wait()
}

// handledAll answers the page when any response is one every page treats
// alike (step-up, suspension, ended session, throttling, outage).
func (s *Server) handledAll(w http.ResponseWriter, r *http.Request, u *user, fs ...*fetch) bool {
	for _, f := range fs {
		if f != nil && s.handled(w, r, u, f.a) {
			return true
		}
	}
	return false
}

// bundle is a searchset as the pages use it: matches of the searched type,
// included resources by "Type/id", and the total.
type bundle struct {
	matches  []res
	included map[string]res
	total    int
}

func readBundle(a *apiResponse, typ string) (*bundle, error) {
	entries, total, err := a.Entries()
	if err != nil {
		return nil, err
	}
	b := &bundle{included: map[string]res{}, total: total}
	for _, e := range entries {
		t := e.str("resourceType")
		switch t {
		case typ:
			b.matches = append(b.matches, e)
		case "OperationOutcome":
		default:
			b.included[t+"/"+e.str("id")] = e
		}
	}
	if b.total < 0 {
		b.total = len(b.matches)
	}
	return b, nil
}

// name of a referenced Practitioner or Organization, from the includes or
// the reference's display.
func (b *bundle) name(ref res) string {
	if ref == nil {
		return ""
	}
	if t := ref.str("display"); t != "" {
		return t
	}
	if x, ok := b.included[ref.str("reference")]; ok {
		if x.str("resourceType") == "Organization" {
			return x.str("name")
		}
		return personName(x)
	}
	return ""
}

// fill decodes a section's response (or records why it has none).
func fill[T any](p *page, sec *section[T], f *fetch, typ string, row func(*bundle, res) T) {
	if f == nil {
		return
	}
	if !f.a.OK() {
		sec.Error = f.a.Message()
		return
	}
	b, err := readBundle(f.a, typ)
	if err != nil {
		sec.Error = p.T("error.unavailable")
		return
	}
	for _, m := range b.matches {
		sec.Rows = append(sec.Rows, row(b, m))
	}
	sec.Total = b.total
}

func search(typ string, v url.Values) string { return "/fhir/" + typ + "?" + v.Encode() }

// patientSearch is the API search of count resources of typ of patient
// id from offset, in sort's order, with more parameters.
func patientSearch(typ, id, sort string, count, offset int, more url.Values) string {
	v := url.Values{"patient": {id}, "_sort": {sort}, "_count": {strconv.Itoa(count)}}
	for k, vs := range more {
		v[k] = vs
	}
	if offset > 0 {
		v.Set("_offset", strconv.Itoa(offset))
	}
	return search(typ, v)
}

func encounterQuery(id string, count, offset int) string {
	return patientSearch("Encounter", id, "-date", count, offset,
		url.Values{"_include": {"Encounter:service-provider", "Encounter:participant"}})
}

func encounterRowOf(b *bundle, e res) encounterRow {
	row := encounterRow{ID: e.str("id"), Class: e.str("class", "code"), Status: e.str("status"),
		Start: e.str("period", "start"), End: e.str("period", "end"), Facility: b.name(e.obj("serviceProvider"))}
	row.InProgress = row.Status == "in-progress"
	for _, part := range e.list("participant") {
		if n := b.name(part.obj("individual")); n != "" && !slices.Contains(row.People, n) {
			row.People = append(row.People, n)
		}
	}
	return row
}

func conditionQuery(id string, count, offset int) string {
	return patientSearch("Condition", id, "-recorded-date", count, offset, nil)
}

func conditionRowOf(_ *bundle, c res) conditionRow {
	onset := c.str("onsetDateTime")
	if onset == "" {
		onset = c.str("onsetPeriod", "start")
	}
	return conditionRow{Code: c.str("code", "coding", "code"), Text: concept(c.obj("code")),
		Clinical: c.str("clinicalStatus", "coding", "code"), Verification: c.str("verificationStatus", "coding", "code"),
		Onset: onset, Recorded: c.str("recordedDate")}
}

func observationQuery(id string, count, offset int) string {
	return patientSearch("Observation", id, "-date", count, offset, nil)
}

func obsRowOf(_ *bundle, o res) obsRow {
	row := obsRow{Code: o.str("code", "coding", "code"), Text: concept(o.obj("code")), When: obsWhen(o)}
	if q := o.obj("valueQuantity"); q != nil {
		row.Value, row.Unit = q.str("value"), q.str("unit")
	} else if v := o.str("valueString"); v != "" {
		row.Value = v
	} else if c := o.obj("valueCodeableConcept"); c != nil {
		row.Value = concept(c)
	}
	return row
}

func obsWhen(o res) string {
	if t := o.str("effectiveDateTime"); t != "" {
		return t
	}
	if t := o.str("effectiveInstant"); t != "" {
		return t
	}
	return o.str("effectivePeriod", "start")
}

func prescriptionQuery(id string, active bool, count, offset int) string {
	status := "on-hold,cancelled,completed,entered-in-error,stopped,draft,unknown"
	if active {
		status = "active"
	}
	return patientSearch("MedicationRequest", id, "-authoredon", count, offset,
		url.Values{"_include": {"MedicationRequest:requester"}, "status": {status}})
}

func rxRowOf(b *bundle, m res) rxRow {
	med := concept(m.obj("medicationCodeableConcept"))
	if med == "" {
		med = m.str("medicationReference", "display")
	}
	row := rxRow{ID: m.str("id"), Version: m.str("meta", "versionId"), Medication: med,
		Code: m.str("medicationCodeableConcept", "coding", "code"), Status: m.str("status"),
		Authored: m.str("authoredOn"), Requester: b.name(m.obj("requester"))}
	if di := m.list("dosageInstruction"); len(di) > 0 {
		row.Dose = di[0].str("text")
		row.Route = concept(di[0].obj("route"))
	}
	row.Active = row.Status == "active"
	return row
}

func chargeQuery(id string, count, offset int) string {
	return patientSearch("ChargeItem", id, "-occurrence", count, offset, nil)
}

func chargeRowOf(_ *bundle, c res) chargeRow {
	row := chargeRow{Code: c.str("code", "coding", "code"), Text: concept(c.obj("code")), Status: c.str("status"),
		When: c.str("occurrenceDateTime")}
	if row.When == "" {
		row.When = c.str("occurrencePeriod", "start")
	}
	if row.When == "" {
		row.When = c.str("enteredDate")
	}
	row.Amount, row.Currency = c.str("priceOverride", "value"), c.str("priceOverride", "currency")
	return row
}

// ---- the chart ------------------------------------------------------------------

// Chart list sizes: the chart shows the newest few of each list and links
// to the whole list (paged).
const (
	chartEncounters   = 8
	chartConditions   = 15
	chartObservations = 120 // read for the trends; the table shows the latest per code
	chartActive       = 50
	chartOther        = 8
	chartCharges      = 8
)

func (s *Server) chart(w http.ResponseWriter, r *http.Request, u *user) {
	id := r.PathValue("id")
	pv, names, ok := s.readPatient(w, r, u, id)
	if !ok {
		return
	}
	p := s.newPage(r, u)
	p.Title = pv.Name()
	p.Patient = pv
	d := &chartData{ID: id, Links: s.linksFor(w, r, u, id, "chart"),
		CanStop: may(u, policy.Update, "MedicationRequest"), CanDeclare: u.HasRole(policy.Physician)}
	p.Data = d
	p.Notice = doneNotice(p, r.URL.Query().Get("done"))

	var enc, cond, obs, act, oth, chg *fetch
	if d.Encounters.Allowed = may(u, policy.Search, "Encounter"); d.Encounters.Allowed {
		enc = &fetch{path: encounterQuery(id, chartEncounters, 0)}
	}
	if d.Conditions.Allowed = may(u, policy.Search, "Condition"); d.Conditions.Allowed {
		cond = &fetch{path: conditionQuery(id, chartConditions, 0)}
	}
	if d.Latest.Allowed = may(u, policy.Search, "Observation"); d.Latest.Allowed {
		obs = &fetch{path: observationQuery(id, chartObservations, 0)}
	}
	if d.Active.Allowed = may(u, policy.Search, "MedicationRequest"); d.Active.Allowed {
		d.Other.Allowed = true
		act = &fetch{path: prescriptionQuery(id, true, chartActive, 0)}
		oth = &fetch{path: prescriptionQuery(id, false, chartOther, 0)}
	}
	if d.Charges.Allowed = may(u, policy.Search, "ChargeItem"); d.Charges.Allowed {
		chg = &fetch{path: chargeQuery(id, chartCharges, 0)}
	}
	all := append([]*fetch{enc, cond, obs, act, oth, chg}, names...)
	s.fetchAll(r, u, all...)
	if s.handledAll(w, r, u, all...) {
		return
	}
	bannerNames(pv, names)
	fill(p, &d.Encounters, enc, "Encounter", encounterRowOf)
	fill(p, &d.Conditions, cond, "Condition", conditionRowOf)
	var observations section[obsRow]
	fill(p, &observations, obs, "Observation", obsRowOf)
	d.Latest.Error = observations.Error
	d.Latest.Rows, d.Trends = latestAndTrends(p, observations.Rows)
	d.Latest.Total = len(d.Latest.Rows)
	fill(p, &d.Active, act, "MedicationRequest", rxRowOf)
	fill(p, &d.Other, oth, "MedicationRequest", rxRowOf)
	fill(p, &d.Charges, chg, "ChargeItem", chargeRowOf)
	s.render(w, r, http.StatusOK, "chart", p)
}

// readPatient is loadPatient for the chart: the Patient read (the access
// decision: a refusal answers the page), then the names of the attending
// physician and the facility as requests the caller makes along with its
// own (one round trip less before the sections start).
func (s *Server) readPatient(w http.ResponseWriter, r *http.Request, u *user, id string) (*patientView, []*fetch, bool) {
	pr, ok := s.readPatientResource(w, r, u, id)
	if !ok {
		return nil, nil, false
	}
	v := newPatientView(pr, s.opt.Now())
	var names []*fetch
	if v.GP == "" && fhir.ValidID(v.GPID) {
		names = append(names, &fetch{path: "/fhir/Practitioner/" + url.PathEscape(v.GPID)})
	}
	if v.Facility == "" && fhir.ValidID(v.FacilityID) {
		names = append(names, &fetch{path: "/fhir/Organization/" + url.PathEscape(v.FacilityID)})
	}
	return v, names, true
}

// bannerNames fills the banner's names from readPatient's requests.
func bannerNames(v *patientView, names []*fetch) {
	for _, f := range names {
		if f.a == nil || !f.a.OK() {
			continue
		}
		x, err := f.a.Resource()
		if err != nil {
			continue
		}
		switch x.str("resourceType") {
		case "Practitioner":
			v.GP = personName(x)
		case "Organization":
			v.Facility = x.str("name")
		}
	}
}

// doneNotice is the notice after a redirect (?done=...), from the catalog
// only: nothing of the URL is reflected.
func doneNotice(p *page, done string) string {
	switch done {
	case "prescribed", "stopped", "death", "admitted", "btg":
		return p.T("done." + done)
	}
	return ""
}

// ---- section pages ----------------------------------------------------------------

const (
	secEncounters   = "encounters"
	secConditions   = "conditions"
	secObservations = "observations"
	secBilling      = "billing"
	pageSize        = 50
	maxOffset       = 100000
)

// listData is a section's own page: one list, paged.
type listData struct {
	ID, Section  string
	Encounters   section[encounterRow]
	Conditions   section[conditionRow]
	Observations section[obsRow]
	Charges      section[chargeRow]
	Offset       int
	Prev, Next   string
	Links        *chartLinks
}

// offsetOf reads ?offset= (a whole number, bounded).
func offsetOf(r *http.Request) (int, bool) {
	v := r.URL.Query().Get("offset")
	if v == "" {
		return 0, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > maxOffset {
		return 0, false
	}
	return n, true
}

func (s *Server) sectionPage(sec string) func(w http.ResponseWriter, r *http.Request, u *user) {
	return func(w http.ResponseWriter, r *http.Request, u *user) {
		id := r.PathValue("id")
		off, ok := offsetOf(r)
		if !ok {
			p := s.newPage(r, u)
			p.Title = p.T("patient.title")
			p.Error = p.T("chart.bad-offset")
			s.render(w, r, http.StatusBadRequest, "error", p)
			return
		}
		pv, _, ok := s.loadPatient(w, r, u, id)
		if !ok {
			return
		}
		p := s.newPage(r, u)
		p.Patient = pv
		p.Title = p.T("section."+sec) + " · " + pv.Name()
		d := &listData{ID: id, Section: sec, Offset: off, Links: s.linksFor(w, r, u, id, sec)}
		p.Data = d
		var f *fetch
		switch sec {
		case secEncounters:
			if d.Encounters.Allowed = may(u, policy.Search, "Encounter"); d.Encounters.Allowed {
				f = &fetch{path: encounterQuery(id, pageSize, off)}
			}
		case secConditions:
			if d.Conditions.Allowed = may(u, policy.Search, "Condition"); d.Conditions.Allowed {
				f = &fetch{path: conditionQuery(id, pageSize, off)}
			}
		case secObservations:
			if d.Observations.Allowed = may(u, policy.Search, "Observation"); d.Observations.Allowed {
				f = &fetch{path: observationQuery(id, pageSize, off)}
			}
		case secBilling:
			if d.Charges.Allowed = may(u, policy.Search, "ChargeItem"); d.Charges.Allowed {
				f = &fetch{path: chargeQuery(id, pageSize, off)}
			}
		}
		s.fetchAll(r, u, f)
		if s.handledAll(w, r, u, f) {
			return
		}
		var total int
		switch sec {
		case secEncounters:
			fill(p, &d.Encounters, f, "Encounter", encounterRowOf)
			total = d.Encounters.Total
		case secConditions:
			fill(p, &d.Conditions, f, "Condition", conditionRowOf)
			total = d.Conditions.Total
		case secObservations:
			fill(p, &d.Observations, f, "Observation", obsRowOf)
			total = d.Observations.Total
		case secBilling:
			fill(p, &d.Charges, f, "ChargeItem", chargeRowOf)
			total = d.Charges.Total
		}
		base := Prefix + "patients/" + id + "/" + sec
		if off > 0 {
			d.Prev = base + "?offset=" + strconv.Itoa(max(0, off-pageSize))
		}
		if off+pageSize < total {
			d.Next = base + "?offset=" + strconv.Itoa(off+pageSize)
		}
		s.render(w, r, http.StatusOK, "section", p)
	}
}

// ---- labels --------------------------------------------------------------------

// Label translates a code under a prefix ("class.", "rx.", ...) when the
// catalog knows it, else shows the code as it is.
func (p *page) Label(prefix, code string) string {
	if code == "" {
		return "—"
	}
	if _, ok := p.msgs[prefix+code]; ok {
		return p.T(prefix + code)
	}
	return code
}

// Num formats a decimal number for the page's language (36,8 in French),
// with at most two decimals; anything else shows as it is.
func (p *page) Num(v string) string {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return v
	}
	return fmtNum(p.Lang, f)
}

// Money formats an amount and its currency.
func (p *page) Money(v, cur string) string {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return strings.TrimSpace(v + " " + cur)
	}
	s := strconv.FormatFloat(f, 'f', 2, 64)
	if p.Lang == "fr" {
		s = strings.Replace(s, ".", ",", 1)
	}
	if cur == "" || cur == "EUR" {
		cur = "€"
	}
	return s + "\u00a0" + cur
}

// DateOr is Date, or "—" for no date.
func (p *page) DateOr(v string) string {
	if v == "" {
		return "—"
	}
	return p.Date(v)
}

// Dash shows "—" for an empty value.
func (p *page) Dash(v string) string {
	if v == "" {
		return "—"
	}
	return v
}

// ---- observations and trends ------------------------------------------------------

// vital is a vital sign the chart draws (LOINC, as the synthetic data and
// most French EPRs code them).
type vitalSign struct {
	codes []string // one line per code (blood pressure has two)
	key   string   // catalog key of the chart's title
}

var vitalSigns = []vitalSign{
	{[]string{"8867-4"}, "vital.hr"},
	{[]string{"8480-6", "8462-4"}, "vital.bp"},
	{[]string{"8310-5"}, "vital.temp"},
	{[]string{"59408-5", "2708-6"}, "vital.spo2"},
	{[]string{"9279-1"}, "vital.rr"},
	{[]string{"29463-7"}, "vital.weight"},
}

// trend is one small inline SVG chart (drawn on the server: no script).
type trend struct {
	Title, Unit, Desc string
	W, H              int
	Series            []trendSeries
	YTop, YBottom     string // axis labels (values)
	XFirst, XLast     string // axis labels (dates)
	PlotL, PlotR      int
	PlotT, PlotB      int
}

type trendSeries struct {
	Class, Label, Points string
	Dots                 []trendDot
}

type trendDot struct {
	X, Y  string
	Title string
}

type point struct {
	t time.Time
	v float64
}

func parseWhen(s string) (time.Time, bool) {
	for _, l := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// latestAndTrends returns the latest value of each code (newest first, as
// given) and a trend for each vital sign with at least two values.
func latestAndTrends(p *page, rows []obsRow) ([]obsRow, []*trend) {
	var latest []obsRow
	seen := map[string]bool{}
	series := map[string][]point{}
	units := map[string]string{}
	for _, o := range rows {
		key := o.Code // one measurement however its text is worded
		if key == "" {
			key = "|" + o.Text
		}
		if !seen[key] {
			seen[key] = true
			latest = append(latest, o)
		}
		v, err := strconv.ParseFloat(o.Value, 64)
		t, ok := parseWhen(o.When)
		if err != nil || !ok || math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		series[o.Code] = append(series[o.Code], point{t, v})
		if units[o.Code] == "" {
			units[o.Code] = o.Unit
		}
	}
	var trends []*trend
	for _, vs := range vitalSigns {
		var lines [][]point
		var labels []string
		n := 0
		for _, c := range vs.codes {
			pts := series[c]
			slices.SortFunc(pts, func(a, b point) int { return a.t.Compare(b.t) })
			pts = recent(pts)
			if len(pts) > 0 {
				lines = append(lines, pts)
				labels = append(labels, p.Label("loinc.", c))
				n = max(n, len(pts))
			}
		}
		if n < 2 {
			continue
		}
		unit := units[vs.codes[0]]
		if unit == "" && len(vs.codes) > 1 {
			unit = units[vs.codes[1]]
		}
		trends = append(trends, drawTrend(p, p.T(vs.key), unit, labels, lines))
	}
	return latest, trends
}

// trendWindow is the time a trend shows back from its latest value: the
// current stay, not a value from years ago squeezing it to the right edge.
const trendWindow = 30 * 24 * time.Hour

// recent keeps the points (sorted by time) of the trend window, at most
// 40; when fewer than two are that recent, the last two (or one).
func recent(pts []point) []point {
	if len(pts) == 0 {
		return pts
	}
	cut := pts[len(pts)-1].t.Add(-trendWindow)
	i := len(pts) - 1
	for i > 0 && !pts[i-1].t.Before(cut) {
		i--
	}
	if len(pts)-i < 2 {
		i = max(0, len(pts)-2)
	}
	if len(pts)-i > 40 {
		i = len(pts) - 40
	}
	return pts[i:]
}

// drawTrend lays out the lines in a 320x120 box with margins for labels.
func drawTrend(p *page, title, unit string, labels []string, lines [][]point) *trend {
	tr := &trend{Title: title, Unit: unit, W: 360, H: 140, PlotL: 44, PlotR: 350, PlotT: 10, PlotB: 112}
	t0, t1 := lines[0][0].t, lines[0][0].t
	lo, hi := lines[0][0].v, lines[0][0].v
	for _, l := range lines {
		for _, pt := range l {
			if pt.t.Before(t0) {
				t0 = pt.t
			}
			if pt.t.After(t1) {
				t1 = pt.t
			}
			lo, hi = math.Min(lo, pt.v), math.Max(hi, pt.v)
		}
	}
	if hi-lo < 1e-9 {
		lo, hi = lo-1, hi+1
	}
	pad := (hi - lo) * 0.1
	lo, hi = lo-pad, hi+pad
	span := t1.Sub(t0).Seconds()
	x := func(t time.Time) float64 {
		if span <= 0 {
			return float64(tr.PlotL+tr.PlotR) / 2
		}
		return float64(tr.PlotL) + t.Sub(t0).Seconds()/span*float64(tr.PlotR-tr.PlotL)
	}
	y := func(v float64) float64 {
		return float64(tr.PlotB) - (v-lo)/(hi-lo)*float64(tr.PlotB-tr.PlotT)
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
	var desc []string
	for i, l := range lines {
		sr := trendSeries{Class: "s" + strconv.Itoa(i), Label: labels[i]}
		var pts []string
		for _, pt := range l {
			px, py := f(x(pt.t)), f(y(pt.v))
			pts = append(pts, px+","+py)
			sr.Dots = append(sr.Dots, trendDot{X: px, Y: py, Title: p.Date(pt.t.Format(time.RFC3339)) + " : " + fmtNum(p.Lang, pt.v) + " " + unit})
		}
		sr.Points = strings.Join(pts, " ")
		tr.Series = append(tr.Series, sr)
		last := l[len(l)-1]
		desc = append(desc, p.T("trend.desc", labels[i], len(l), fmtNum(p.Lang, minOf(l)), fmtNum(p.Lang, maxOf(l)), fmtNum(p.Lang, last.v)+" "+unit, p.Date(last.t.Format(time.RFC3339))))
	}
	tr.Desc = strings.Join(desc, " ")
	tr.YTop, tr.YBottom = fmtNum(p.Lang, hi), fmtNum(p.Lang, lo)
	tr.XFirst, tr.XLast = p.Date(t0.Format("2006-01-02")), p.Date(t1.Format("2006-01-02"))
	return tr
}

func fmtNum(lang string, v float64) string {
	s := strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
	if lang == "fr" {
		s = strings.Replace(s, ".", ",", 1)
	}
	return s
}

func minOf(l []point) float64 {
	m := l[0].v
	for _, p := range l {
		m = math.Min(m, p.v)
	}
	return m
}

func maxOf(l []point) float64 {
	m := l[0].v
	for _, p := range l {
		m = math.Max(m, p.v)
	}
	return m
}
