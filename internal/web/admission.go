package web

// Admission: register a patient at one of the user's facilities with an
// attending physician, and open a stay (Encounter in progress with the
// physician as participant), in one FHIR transaction. Before creating, the
// page searches the API for the same patient (same INS, or same family
// name and birth date with a similar given name) and asks for a
// confirmation when it finds any.
//
// The policy gives patient registration and stays to admission clerks at
// their facilities; creating the Encounter is what gives the attending
// physician (a participant) a care relationship.

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"carnet/internal/fhir"
	"carnet/internal/policy"
)

// Stay classes (v3 ActCode), as the synthetic group uses.
var stayClasses = []string{"AMB", "IMP", "EMER"}

const sysActCode = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

var genders = []string{"female", "male", "other", "unknown"}

// admissionForm is the form as typed.
type admissionForm struct {
	Family, Given, BirthDate, Sex, INS string
	Line, PostalCode, City, Phone      string
	Facility, Physician, Class         string
	Anyway                             bool
}

type option struct{ Value, Label string }

type physicianGroup struct {
	Facility string
	Options  []option
}

type admissionData struct {
	Form       admissionForm
	Facilities []option
	Physicians []physicianGroup
	Duplicates []*patientView
	Allowed    bool
	Classes    []string
	Genders    []string
}

// physiciansOf lists the physicians working at each facility, from
// PractitionerRole (with the Practitioner included), and the facility
// names, through the API (directory data: no patient).
func (s *Server) directory(r *http.Request, u *user) (orgs, roles *fetch) {
	if len(u.Facilities) == 0 {
		return nil, nil
	}
	var refs []string
	for _, f := range u.Facilities {
		refs = append(refs, "Organization/"+f)
	}
	orgs = &fetch{path: search("Organization", url.Values{"_id": {strings.Join(u.Facilities, ",")}, "_count": {"100"}})}
	roles = &fetch{path: search("PractitionerRole", url.Values{"organization": {strings.Join(refs, ",")}, "role": {policy.Physician},
		"active": {"true"}, "_include": {"PractitionerRole:practitioner"}, "_count": {"500"}})}
	return orgs, roles
}

// fillDirectory fills the facility and physician lists.
func fillDirectory(d *admissionData, u *user, orgs, roles *fetch) {
	names := map[string]string{}
	if orgs != nil && orgs.a.OK() {
		if b, err := readBundle(orgs.a, "Organization"); err == nil {
			for _, o := range b.matches {
				names[o.str("id")] = o.str("name")
			}
		}
	}
	for _, f := range u.Facilities {
		n := names[f]
		if n == "" {
			n = f
		}
		d.Facilities = append(d.Facilities, option{Value: f, Label: n})
	}
	if roles == nil || !roles.a.OK() {
		return
	}
	b, err := readBundle(roles.a, "PractitionerRole")
	if err != nil {
		return
	}
	byFac := map[string][]option{}
	for _, pr := range b.matches {
		fac, prac := pr.refID("organization"), pr.refID("practitioner")
		x, ok := b.included["Practitioner/"+prac]
		if !ok || fac == "" {
			continue
		}
		// The value names the facility too: a physician is chosen at one.
		byFac[fac] = append(byFac[fac], option{Value: fac + "/" + prac, Label: personName(x)})
	}
	for _, f := range d.Facilities {
		opts := byFac[f.Value]
		slices.SortFunc(opts, func(a, b option) int { return strings.Compare(a.Label, b.Label) })
		if len(opts) > 0 {
			d.Physicians = append(d.Physicians, physicianGroup{Facility: f.Label, Options: opts})
		}
	}
}

func (s *Server) admissionPage(r *http.Request, u *user) (*page, *admissionData) {
	p := s.newPage(r, u)
	p.Title = p.T("adm.title")
	d := &admissionData{Allowed: may(u, policy.Create, "Patient") && may(u, policy.Create, "Encounter"),
		Classes: stayClasses, Genders: genders, Form: admissionForm{Class: "IMP"}}
	p.Data = d
	return p, d
}

func (s *Server) admissionForm(w http.ResponseWriter, r *http.Request, u *user) {
	p, d := s.admissionPage(r, u)
	if d.Allowed {
		orgs, roles := s.directory(r, u)
		s.fetchAll(r, u, orgs, roles)
		if s.handledAll(w, r, u, orgs, roles) {
			return
		}
		fillDirectory(d, u, orgs, roles)
		if len(d.Facilities) > 0 {
			d.Form.Facility = d.Facilities[0].Value
		}
	}
	s.render(w, r, http.StatusOK, "admission", p)
}

// Field limits.
const (
	maxName  = 100
	maxLine  = 200
	maxCity  = 100
	maxPhone = 30
)

func (s *Server) admit(w http.ResponseWriter, r *http.Request, u *user) {
	p, d := s.admissionPage(r, u)
	f := &d.Form
	f.Family = strings.TrimSpace(r.PostFormValue("family"))
	f.Given = strings.TrimSpace(r.PostFormValue("given"))
	f.BirthDate = strings.TrimSpace(r.PostFormValue("birthdate"))
	f.Sex = r.PostFormValue("sex")
	f.INS = strings.Map(dropSpace, r.PostFormValue("ins"))
	f.Line = strings.TrimSpace(r.PostFormValue("line"))
	f.PostalCode = strings.TrimSpace(r.PostFormValue("postalcode"))
	f.City = strings.TrimSpace(r.PostFormValue("city"))
	f.Phone = strings.TrimSpace(r.PostFormValue("phone"))
	f.Facility = r.PostFormValue("facility")
	f.Physician = r.PostFormValue("physician")
	f.Class = r.PostFormValue("class")
	f.Anyway = r.PostFormValue("anyway") == "yes"

	// Directory lists (for the form again, and to check the physician
	// works at the facility chosen).
	orgs, roles := s.directory(r, u)
	s.fetchAll(r, u, orgs, roles)
	if s.handledAll(w, r, u, orgs, roles) {
		return
	}
	fillDirectory(d, u, orgs, roles)
	fail := func(status int, msg string) {
		// Never echo a huge value back into the form.
		for _, v := range []*string{&f.Family, &f.Given, &f.BirthDate, &f.INS, &f.Line, &f.PostalCode, &f.City, &f.Phone} {
			if len(*v) > 4*maxLine {
				*v = ""
			}
		}
		p.Error = msg
		s.render(w, r, status, "admission", p)
	}
	if !d.Allowed {
		// The roles do not register patients: say so without asking the
		// API (a refused write would count against the account).
		fail(http.StatusForbidden, p.T("adm.not-allowed"))
		return
	}
	birth, ok := isoDate(f.BirthDate)
	var bt time.Time
	if ok {
		var err error
		bt, err = time.Parse("2006-01-02", birth)
		ok = err == nil
	}
	switch {
	case f.Family == "" || f.Given == "":
		fail(http.StatusBadRequest, p.T("adm.no-name"))
		return
	case !nameOK(f.Family) || !nameOK(f.Given):
		fail(http.StatusBadRequest, p.T("adm.bad-name"))
		return
	case f.BirthDate == "":
		fail(http.StatusBadRequest, p.T("adm.no-birthdate"))
		return
	case !ok || bt.Year() < 1880 || bt.After(s.opt.Now()):
		fail(http.StatusBadRequest, p.T("adm.bad-birthdate"))
		return
	case !slices.Contains(genders, f.Sex):
		fail(http.StatusBadRequest, p.T("adm.bad-sex"))
		return
	case f.INS != "" && !validINS(f.INS):
		fail(http.StatusBadRequest, p.T("adm.bad-ins"))
		return
	case utf8.RuneCountInString(f.Line) > maxLine || !printable(f.Line) || utf8.RuneCountInString(f.City) > maxCity || !printable(f.City):
		fail(http.StatusBadRequest, p.T("adm.bad-address"))
		return
	case f.PostalCode != "" && (len(f.PostalCode) != 5 || !allDigits(f.PostalCode)):
		fail(http.StatusBadRequest, p.T("adm.bad-postalcode"))
		return
	case f.Phone != "" && !phoneOK(f.Phone):
		fail(http.StatusBadRequest, p.T("adm.bad-phone"))
		return
	case !slices.Contains(u.Facilities, f.Facility):
		fail(http.StatusBadRequest, p.T("adm.bad-facility"))
		return
	case !slices.Contains(stayClasses, f.Class):
		fail(http.StatusBadRequest, p.T("adm.bad-class"))
		return
	}
	fac, phys, _ := strings.Cut(f.Physician, "/")
	known := false
	for _, g := range d.Physicians {
		for _, o := range g.Options {
			known = known || o.Value == f.Physician
		}
	}
	if f.Physician == "" || fac != f.Facility || !known || !fhir.ValidID(phys) {
		fail(http.StatusBadRequest, p.T("adm.bad-physician"))
		return
	}

	// Duplicates: the same INS, or the same family name and birth date
	// with a similar given name, among the patients the user may see.
	var byINS, byName *fetch
	if f.INS != "" {
		byINS = &fetch{path: search("Patient", url.Values{"identifier": {SystemINS + "|" + f.INS}, "_count": {"20"}})}
	}
	byName = &fetch{path: search("Patient", url.Values{"family": {f.Family}, "birthdate": {birth}, "_count": {"50"}})}
	s.fetchAll(r, u, byINS, byName)
	if s.handledAll(w, r, u, byINS, byName) {
		return
	}
	seen := map[string]bool{}
	now := s.opt.Now()
	for _, x := range []*fetch{byINS, byName} {
		if x == nil {
			continue
		}
		if !x.a.OK() {
			fail(x.a.Status, x.a.Message())
			return
		}
		b, err := readBundle(x.a, "Patient")
		if err != nil {
			fail(http.StatusBadGateway, p.T("error.unavailable"))
			return
		}
		for _, m := range b.matches {
			v := newPatientView(m, now)
			if seen[v.ID] {
				continue
			}
			same := x == byINS && v.INS == f.INS ||
				x == byName && fhir.NormString(v.Family) == fhir.NormString(f.Family) && v.BirthDate == birth && similarName(v.Given, f.Given)
			if same {
				seen[v.ID] = true
				d.Duplicates = append(d.Duplicates, v)
			}
		}
	}
	if len(d.Duplicates) > 0 && !f.Anyway {
		p.Error = p.T("adm.duplicates", len(d.Duplicates))
		s.render(w, r, http.StatusConflict, "admission", p)
		return
	}

	// One transaction: the patient and its stay, both or neither.
	patURN, encURN := "urn:uuid:"+newUUID(), "urn:uuid:"+newUUID()
	pat := map[string]any{
		"resourceType":         "Patient",
		"active":               true,
		"name":                 []any{map[string]any{"use": "official", "family": f.Family, "given": []any{f.Given}}},
		"gender":               f.Sex,
		"birthDate":            birth,
		"managingOrganization": map[string]any{"reference": "Organization/" + f.Facility},
		"generalPractitioner":  []any{map[string]any{"reference": "Practitioner/" + phys}},
	}
	if f.INS != "" {
		pat["identifier"] = []any{map[string]any{"use": "official", "system": SystemINS, "value": f.INS}}
	}
	if f.Line != "" || f.City != "" || f.PostalCode != "" {
		addr := map[string]any{"use": "home", "country": "FR"}
		if f.Line != "" {
			addr["line"] = []any{f.Line}
		}
		if f.City != "" {
			addr["city"] = f.City
		}
		if f.PostalCode != "" {
			addr["postalCode"] = f.PostalCode
		}
		pat["address"] = []any{addr}
	}
	if f.Phone != "" {
		pat["telecom"] = []any{map[string]any{"system": "phone", "value": f.Phone}}
	}
	enc := map[string]any{
		"resourceType":    "Encounter",
		"status":          "in-progress",
		"class":           map[string]any{"system": sysActCode, "code": f.Class, "display": p.msgs.t("en", "class."+f.Class)},
		"subject":         map[string]any{"reference": patURN},
		"participant":     []any{map[string]any{"individual": map[string]any{"reference": "Practitioner/" + phys}}},
		"period":          map[string]any{"start": now.UTC().Format(time.RFC3339)},
		"serviceProvider": map[string]any{"reference": "Organization/" + f.Facility},
	}
	tx := map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
		map[string]any{"fullUrl": patURN, "resource": pat, "request": map[string]any{"method": "POST", "url": "Patient"}},
		map[string]any{"fullUrl": encURN, "resource": enc, "request": map[string]any{"method": "POST", "url": "Encounter"}},
	}}
	body, _ := json.Marshal(tx)
	a := s.call(r, u, http.MethodPost, "/fhir", body)
	if s.handled(w, r, u, a) {
		return
	}
	if !a.OK() {
		fail(a.Status, a.Message())
		return
	}
	var out struct {
		Entry []struct {
			Response struct {
				Location string `json:"location"`
			} `json:"response"`
		} `json:"entry"`
	}
	if err := a.JSON(&out); err != nil || len(out.Entry) == 0 {
		fail(http.StatusBadGateway, p.T("error.unavailable"))
		return
	}
	_, rest, _ := strings.Cut(out.Entry[0].Response.Location, "Patient/")
	id, _, _ := strings.Cut(rest, "/")
	if !fhir.ValidID(id) {
		fail(http.StatusBadGateway, p.T("error.unavailable"))
		return
	}
	http.Redirect(w, r, Prefix+"patients/"+url.PathEscape(id)+"?done=admitted", http.StatusSeeOther)
}

func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// nameOK: a name of at most maxName characters, no control characters.
func nameOK(s string) bool {
	return utf8.RuneCountInString(s) <= maxName && printable(s) && !strings.ContainsAny(s, "\t\r\n")
}

func phoneOK(s string) bool {
	if len(s) > maxPhone {
		return false
	}
	digits := 0
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '+' || c == ' ' || c == '.' || c == '-' || c == '(' || c == ')':
		default:
			return false
		}
	}
	return digits >= 6
}

// validINS checks a NIR: 15 characters, sex digit, the Corsican 2A/2B
// departments, and the key (97 minus the number modulo 97).
func validINS(s string) bool {
	if len(s) != 15 {
		return false
	}
	s = strings.ToUpper(s)
	num := s[:13]
	switch num[5:7] {
	case "2A":
		num = num[:5] + "19" + num[7:]
	case "2B":
		num = num[:5] + "18" + num[7:]
	}
	if !allDigits(num) || !allDigits(s[13:]) || (num[0] != '1' && num[0] != '2' && num[0] != '7' && num[0] != '8') {
		return false
	}
	var n uint64
	for _, c := range num {
		n = n*10 + uint64(c-'0')
	}
	key := uint64(s[13]-'0')*10 + uint64(s[14]-'0')
	return key == 97-n%97
}

// similarName: the same given name up to accents, case, hyphens and
// spaces, one the start of the other (Marie / Marie-Claire), or at most
// two edits apart.
func similarName(a, b string) bool {
	na, nb := foldName(a), foldName(b)
	if na == "" || nb == "" {
		return false
	}
	if na == nb {
		return true
	}
	if len(na) >= 3 && len(nb) >= 3 && (strings.HasPrefix(na, nb) || strings.HasPrefix(nb, na)) {
		return true
	}
	return min(len(na), len(nb)) >= 4 && editDistance(na, nb) <= 2
}

func foldName(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) {
			return r
		}
		return -1
	}, fhir.NormString(s))
}

func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			c := 1
			if ra[i-1] == rb[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
