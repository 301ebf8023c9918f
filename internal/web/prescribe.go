package web

// Prescriptions (MedicationRequest: list, prescribe, stop) and the death
// declaration (Patient.deceasedDateTime), written through the API, which
// decides who may (physicians prescribe; the policy says who edits a
// patient's identity).

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"carnet/internal/policy"
)

// SystemATC codes medications (WHO ATC), as the synthetic group does.
const SystemATC = "http://www.whocc.no/atc"

// formularyItem is a medication of the prescription form's list: the
// medications the synthetic group prescribes (internal/synth).
type formularyItem struct{ Code, Name string }

var formulary = []formularyItem{
	{"N02BE01", "Paracétamol 1 g, comprimé"},
	{"M01AE01", "Ibuprofène 400 mg, comprimé"},
	{"J01CA04", "Amoxicilline 1 g, comprimé dispersible"},
	{"J01CR02", "Amoxicilline/acide clavulanique 1 g/125 mg, sachet"},
	{"C09AA05", "Ramipril 5 mg, comprimé"},
	{"C08CA01", "Amlodipine 5 mg, gélule"},
	{"C07AB07", "Bisoprolol 2,5 mg, comprimé"},
	{"A10BA02", "Metformine 850 mg, comprimé"},
	{"C10AA05", "Atorvastatine 20 mg, comprimé"},
	{"R03AC02", "Salbutamol 100 µg/dose, suspension pour inhalation"},
	{"B01AF01", "Rivaroxaban 20 mg, comprimé"},
	{"C03CA01", "Furosémide 40 mg, comprimé"},
	{"H03AA01", "Lévothyroxine sodique 75 µg, comprimé"},
	{"N06AB10", "Escitalopram 10 mg, comprimé"},
	{"N05BA12", "Alprazolam 0,25 mg, comprimé"},
	{"N06DA02", "Donépézil 5 mg, comprimé"},
	{"A02BC01", "Oméprazole 20 mg, gélule"},
	{"N05CF01", "Zopiclone 7,5 mg, comprimé"},
	{"N02AX02", "Tramadol 50 mg, gélule"},
	{"B01AB05", "Énoxaparine 4000 UI/0,4 mL, solution injectable"},
	{"B01AC06", "Acide acétylsalicylique 75 mg, sachet"},
	{"J01XX01", "Fosfomycine trométamol 3 g, granulés"},
	{"A03AX12", "Phloroglucinol 80 mg, comprimé orodispersible"},
	{"A07XA04", "Racécadotril 100 mg, gélule"},
	{"R06AX27", "Desloratadine 5 mg, comprimé"},
	{"B03AA07", "Sulfate ferreux 80 mg, comprimé"},
	{"A11CC05", "Colécalciférol 100 000 UI, solution buvable"},
}

// routes of administration (SNOMED CT, as FHIR's example value set).
var adminRoutes = []string{"26643006", "47625008", "34206005", "78421000", "447694001", "6064005", "37161004", "37839007"}

const sysSNOMED = "http://snomed.info/sct"

// Form limits.
const (
	maxDose    = 500
	maxMedText = 200
)

// rxForm is the prescription form as typed.
type rxForm struct {
	Med, MedText, Dose, Route string
}

type rxData struct {
	ID            string
	Active, Other section[rxRow]
	Offset        int
	Prev, Next    string
	Form          rxForm
	Formulary     []formularyItem
	Routes        []string
	CanPrescribe  bool
	CanStop       bool
	Links         *chartLinks
}

// prescriptions lists a patient's prescriptions (active first, the others
// paged) with the form for those who prescribe.
func (s *Server) prescriptions(w http.ResponseWriter, r *http.Request, u *user) {
	id := r.PathValue("id")
	pv, _, ok := s.loadPatient(w, r, u, id)
	if !ok {
		return
	}
	p := s.newPage(r, u)
	p.Notice = doneNotice(p, r.URL.Query().Get("done"))
	s.renderPrescriptions(w, r, u, p, pv, rxForm{Route: adminRoutes[0]}, http.StatusOK)
}

func (s *Server) renderPrescriptions(w http.ResponseWriter, r *http.Request, u *user, p *page, pv *patientView, form rxForm, status int) {
	id := pv.ID
	p.Patient = pv
	p.Title = p.T("rx.title") + " · " + pv.Name()
	off, ok := offsetOf(r)
	if !ok {
		off = 0
	}
	d := &rxData{ID: id, Form: form, Formulary: formulary, Routes: adminRoutes, Offset: off,
		CanPrescribe: may(u, policy.Create, "MedicationRequest"), CanStop: may(u, policy.Update, "MedicationRequest"),
		Links: s.linksFor(w, r, u, id, "prescriptions")}
	p.Data = d
	var act, oth *fetch
	if d.Active.Allowed = may(u, policy.Search, "MedicationRequest"); d.Active.Allowed {
		d.Other.Allowed = true
		act = &fetch{path: prescriptionQuery(id, true, 100, 0)}
		oth = &fetch{path: prescriptionQuery(id, false, pageSize, off)}
	}
	s.fetchAll(r, u, act, oth)
	if s.handledAll(w, r, u, act, oth) {
		return
	}
	fill(p, &d.Active, act, "MedicationRequest", rxRowOf)
	fill(p, &d.Other, oth, "MedicationRequest", rxRowOf)
	base := Prefix + "patients/" + id + "/prescriptions"
	if off > 0 {
		d.Prev = base + "?offset=" + strconv.Itoa(max(0, off-pageSize))
	}
	if off+pageSize < d.Other.Total {
		d.Next = base + "?offset=" + strconv.Itoa(off+pageSize)
	}
	s.render(w, r, status, "prescriptions", p)
}

// prescribe creates a MedicationRequest: status active, intent order, the
// user's Practitioner as requester, the stay in progress (if any) as
// encounter.
func (s *Server) prescribe(w http.ResponseWriter, r *http.Request, u *user) {
	id := r.PathValue("id")
	form := rxForm{Med: strings.TrimSpace(r.PostFormValue("med")), MedText: strings.TrimSpace(r.PostFormValue("med_text")),
		Dose: strings.TrimSpace(r.PostFormValue("dose")), Route: r.PostFormValue("route")}
	pv, _, ok := s.loadPatient(w, r, u, id)
	if !ok {
		return
	}
	p := s.newPage(r, u)
	fail := func(status int, msg string) {
		p.Error = msg
		s.renderPrescriptions(w, r, u, p, pv, form, status)
	}
	var med map[string]any
	switch {
	case form.Med != "":
		i := slices.IndexFunc(formulary, func(f formularyItem) bool { return f.Code == form.Med })
		if i < 0 {
			fail(http.StatusBadRequest, p.T("rx.bad-med"))
			return
		}
		med = map[string]any{"coding": []any{map[string]any{"system": SystemATC, "code": formulary[i].Code, "display": formulary[i].Name}}, "text": formulary[i].Name}
	case form.MedText != "":
		if utf8.RuneCountInString(form.MedText) > maxMedText || !printable(form.MedText) {
			form.MedText = clipRunes(form.MedText, maxMedText)
			fail(http.StatusBadRequest, p.T("rx.bad-med-text"))
			return
		}
		med = map[string]any{"text": form.MedText}
	default:
		fail(http.StatusBadRequest, p.T("rx.no-med"))
		return
	}
	switch {
	case form.Dose == "":
		fail(http.StatusBadRequest, p.T("rx.no-dose"))
		return
	case utf8.RuneCountInString(form.Dose) > maxDose || !printable(form.Dose):
		form.Dose = clipRunes(form.Dose, 4*maxDose)
		fail(http.StatusBadRequest, p.T("rx.bad-dose"))
		return
	case !slices.Contains(adminRoutes, form.Route):
		fail(http.StatusBadRequest, p.T("rx.bad-route"))
		return
	}
	if u.Practitioner == "" {
		fail(http.StatusForbidden, p.T("rx.no-practitioner"))
		return
	}
	dosage := map[string]any{"text": form.Dose,
		"route": map[string]any{"coding": []any{map[string]any{"system": sysSNOMED, "code": form.Route, "display": p.msgs.t("en", "route."+form.Route)}},
			"text": p.T("route." + form.Route)}}
	mr := map[string]any{
		"resourceType":              "MedicationRequest",
		"status":                    "active",
		"intent":                    "order",
		"medicationCodeableConcept": med,
		"subject":                   map[string]any{"reference": "Patient/" + id},
		"authoredOn":                s.opt.Now().UTC().Format(time.RFC3339),
		"requester":                 map[string]any{"reference": "Practitioner/" + u.Practitioner},
		"dosageInstruction":         []any{dosage},
	}
	// The stay in progress, if the user reads stays.
	if may(u, policy.Search, "Encounter") {
		a := s.call(r, u, http.MethodGet, search("Encounter", url.Values{"patient": {id}, "status": {"in-progress"}, "_sort": {"-date"}, "_count": {"1"}}), nil)
		if s.handled(w, r, u, a) {
			return
		}
		if b, err := readBundle(a, "Encounter"); a.OK() && err == nil && len(b.matches) > 0 {
			mr["encounter"] = map[string]any{"reference": "Encounter/" + b.matches[0].str("id")}
		}
	}
	body, _ := json.Marshal(mr)
	a := s.call(r, u, http.MethodPost, "/fhir/MedicationRequest", body)
	if s.handled(w, r, u, a) {
		return
	}
	if !a.OK() {
		fail(a.Status, a.Message())
		return
	}
	http.Redirect(w, r, Prefix+"patients/"+url.PathEscape(id)+"/prescriptions?done=prescribed", http.StatusSeeOther)
}

// stopPrescription sets a prescription's status to stopped: the version
// the user saw, read again, written back with If-Match (a change made
// meanwhile is refused, not overwritten).
func (s *Server) stopPrescription(w http.ResponseWriter, r *http.Request, u *user) {
	id, rx := r.PathValue("id"), r.PathValue("rx")
	pv, _, ok := s.loadPatient(w, r, u, id)
	if !ok {
		return
	}
	p := s.newPage(r, u)
	fail := func(status int, msg string) {
		p.Error = msg
		s.renderPrescriptions(w, r, u, p, pv, rxForm{Route: adminRoutes[0]}, status)
	}
	a := s.call(r, u, http.MethodGet, "/fhir/MedicationRequest/"+url.PathEscape(rx), nil)
	if s.handled(w, r, u, a) {
		return
	}
	if !a.OK() {
		fail(a.Status, a.Message())
		return
	}
	mr, err := a.Resource()
	if err != nil || mr.str("resourceType") != "MedicationRequest" || mr.refID("subject") != id {
		fail(http.StatusNotFound, p.T("rx.not-found"))
		return
	}
	ver := mr.str("meta", "versionId")
	if seen := r.PostFormValue("version"); seen != "" && seen != ver {
		fail(http.StatusConflict, p.T("rx.changed"))
		return
	}
	if mr.str("status") != "active" && mr.str("status") != "on-hold" {
		fail(http.StatusConflict, p.T("rx.not-active"))
		return
	}
	mr["status"] = "stopped"
	body, _ := json.Marshal(mr)
	a = s.callIfMatch(r, u, http.MethodPut, "/fhir/MedicationRequest/"+url.PathEscape(rx), body, ver)
	if s.handled(w, r, u, a) {
		return
	}
	if !a.OK() {
		msg := a.Message()
		if a.Status == http.StatusPreconditionFailed || a.Status == http.StatusConflict {
			msg = p.T("rx.changed")
		}
		fail(a.Status, msg)
		return
	}
	http.Redirect(w, r, Prefix+"patients/"+url.PathEscape(id)+"/prescriptions?done=stopped", http.StatusSeeOther)
}

// callIfMatch is call for a write with a version precondition (If-Match),
// through the same pipeline.
func (s *Server) callIfMatch(r *http.Request, u *user, method, path string, body []byte, version string) *apiResponse {
	var hdr map[string]string
	if version != "" {
		hdr = map[string]string{"If-Match": `W/"` + version + `"`}
	}
	return s.callWith(r, u, method, path, body, hdr)
}

// printable: no control characters but tab and newlines.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
			return false
		}
	}
	return true
}

// ---- death declaration -------------------------------------------------------------

type deathData struct {
	ID, When string
	Confirm  bool
	Allowed  bool
	Max      string
	Links    *chartLinks
}

// The input's format (datetime-local).
const localMinute = "2006-01-02T15:04"

func (s *Server) deathPage(w http.ResponseWriter, r *http.Request, u *user, pv *patientView) (*page, *deathData) {
	p := s.newPage(r, u)
	p.Patient = pv
	p.Title = p.T("death.title") + " · " + pv.Name()
	d := &deathData{ID: pv.ID, Allowed: u.HasRole(policy.Physician), Max: s.opt.Now().In(time.Local).Format(localMinute),
		Links: s.linksFor(w, r, u, pv.ID, "death")}
	p.Data = d
	return p, d
}

func (s *Server) deathForm(w http.ResponseWriter, r *http.Request, u *user) {
	id := r.PathValue("id")
	pv, _, ok := s.loadPatient(w, r, u, id)
	if !ok {
		return
	}
	p, _ := s.deathPage(w, r, u, pv)
	s.render(w, r, http.StatusOK, "death", p)
}

// declareDeath declares the death through the API's $declare-death on the
// version read (If-Match). The API decides who may: a physician who cares
// for the patient.
func (s *Server) declareDeath(w http.ResponseWriter, r *http.Request, u *user) {
	id := r.PathValue("id")
	pv, pr, ok := s.loadPatient(w, r, u, id)
	if !ok {
		return
	}
	p, d := s.deathPage(w, r, u, pv)
	d.When = strings.TrimSpace(r.PostFormValue("when"))
	d.Confirm = r.PostFormValue("confirm") == "yes"
	fail := func(status int, msg string) {
		if len(d.When) > 40 {
			d.When = ""
		}
		p.Error = msg
		s.render(w, r, status, "death", p)
	}
	t, err := time.ParseInLocation(localMinute, d.When, time.Local)
	if err != nil {
		t, err = time.ParseInLocation("2006-01-02T15:04:05", d.When, time.Local)
	}
	switch {
	case d.When == "":
		fail(http.StatusBadRequest, p.T("death.no-date"))
		return
	case err != nil:
		fail(http.StatusBadRequest, p.T("death.bad-date"))
		return
	case t.After(s.opt.Now().Add(5 * time.Minute)):
		fail(http.StatusBadRequest, p.T("death.future"))
		return
	case pv.BirthDate != "" && t.Format("2006-01-02") < pv.BirthDate:
		fail(http.StatusBadRequest, p.T("death.before-birth"))
		return
	case !d.Confirm:
		fail(http.StatusBadRequest, p.T("death.no-confirm"))
		return
	case pv.Deceased:
		fail(http.StatusConflict, p.T("death.already"))
		return
	}
	// The API's $declare-death: the physician's care relationship, one field.
	ver := pr.str("meta", "versionId")
	body, _ := json.Marshal(map[string]string{"deceasedDateTime": t.Format(time.RFC3339)})
	a := s.callIfMatch(r, u, http.MethodPost, "/fhir/Patient/"+url.PathEscape(id)+"/$declare-death", body, ver)
	if s.handled(w, r, u, a) {
		return
	}
	if !a.OK() {
		msg := a.Message()
		if a.Status == http.StatusPreconditionFailed {
			msg = p.T("death.changed")
		}
		fail(a.Status, msg)
		return
	}
	http.Redirect(w, r, Prefix+"patients/"+url.PathEscape(id)+"?done=death", http.StatusSeeOther)
}
