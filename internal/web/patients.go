package web

import (
	"net/http"
	"net/url"
	"strings"
	"unicode"
)

// moreRoutes registers the pages beyond sign-in and search, one line per
// group of pages.
func (s *Server) moreRoutes() {
	s.adminPages()
	s.securityPages()
	s.chartRoutes()
}

func (s *Server) home(w http.ResponseWriter, r *http.Request, u *user) {
	p := s.newPage(r, u)
	p.Title = p.T("home.title")
	s.render(w, r, http.StatusOK, "home", p)
}

// searchData is the patient search page's state.
type searchData struct {
	Name, BirthDate, INS, IPP string
	Searched                  bool
	Results                   []*patientView
	Total                     int
	More                      bool
}

// patientSearch searches by name, birth date, INS or IPP. With no
// criterion it lists nobody: there is no "every patient" page.
func (s *Server) patientSearch(w http.ResponseWriter, r *http.Request, u *user) {
	q := r.URL.Query()
	d := &searchData{Name: strings.TrimSpace(q.Get("name")), BirthDate: strings.TrimSpace(q.Get("birthdate")),
		INS: strings.Map(dropSpace, q.Get("ins")), IPP: strings.TrimSpace(q.Get("ipp"))}
	p := s.newPage(r, u)
	p.Title = p.T("search.title")
	p.Data = d
	if d.Name == "" && d.BirthDate == "" && d.INS == "" && d.IPP == "" {
		s.render(w, r, http.StatusOK, "patients", p)
		return
	}
	d.Searched = true
	v := url.Values{"_count": {"50"}, "_sort": {"family"}}
	if d.Name != "" {
		v.Set("name", d.Name)
	}
	if d.BirthDate != "" {
		bd, ok := isoDate(d.BirthDate)
		if !ok {
			p.Error = p.T("search.bad-date")
			s.render(w, r, http.StatusBadRequest, "patients", p)
			return
		}
		v.Set("birthdate", bd)
	}
	if d.INS != "" {
		v.Add("identifier", SystemINS+"|"+d.INS)
	}
	if d.IPP != "" {
		v.Add("identifier", d.IPP)
	}
	a := s.call(r, u, http.MethodGet, "/fhir/Patient?"+v.Encode(), nil)
	if s.handled(w, r, u, a) {
		return
	}
	if !a.OK() {
		p.Error = a.Message()
		s.render(w, r, a.Status, "patients", p)
		return
	}
	entries, total, err := a.Entries()
	if err != nil {
		p.Error = p.T("error.unavailable")
		s.render(w, r, http.StatusBadGateway, "patients", p)
		return
	}
	now := s.opt.Now()
	for _, e := range entries {
		if e.str("resourceType") == "Patient" {
			d.Results = append(d.Results, newPatientView(e, now))
		}
	}
	d.Total = total
	d.More = total > len(d.Results)
	s.render(w, r, http.StatusOK, "patients", p)
}

func dropSpace(r rune) rune {
	if unicode.IsSpace(r) {
		return -1
	}
	return r
}

// isoDate accepts 31/12/1950, 31-12-1950 or 1950-12-31.
func isoDate(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if len(s) == 10 && s[4] == '-' && s[7] == '-' {
		return s, allDigits(s[:4] + s[5:7] + s[8:])
	}
	if len(s) == 10 && (s[2] == '/' || s[2] == '-' || s[2] == '.') && s[5] == s[2] {
		iso := s[6:] + "-" + s[3:5] + "-" + s[:2]
		return iso, allDigits(s[6:] + s[3:5] + s[:2])
	}
	return "", false
}

// addDateRange adds an AuditEvent date range (from and to as the user
// typed them, either may be empty) to v; false if one is unreadable.
func addDateRange(v url.Values, from, to string) bool {
	for _, f := range []struct{ prefix, val string }{{"ge", from}, {"le", to}} {
		if f.val == "" {
			continue
		}
		iso, ok := isoDate(f.val)
		if !ok {
			return false
		}
		v.Add("date", f.prefix+iso)
	}
	return true
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// loadPatient reads a patient for its banner, with the names of its
// attending physician and facility. It answers the page itself (and
// reports false) when the API refuses.
func (s *Server) loadPatient(w http.ResponseWriter, r *http.Request, u *user, id string) (*patientView, res, bool) {
	pr, ok := s.readPatientResource(w, r, u, id)
	if !ok {
		return nil, nil, false
	}
	v := newPatientView(pr, s.opt.Now())
	if v.GP == "" && v.GPID != "" {
		if g := s.call(r, u, http.MethodGet, "/fhir/Practitioner/"+url.PathEscape(v.GPID), nil); g.OK() {
			if gr, err := g.Resource(); err == nil {
				v.GP = personName(gr)
			}
		}
	}
	if v.Facility == "" && v.FacilityID != "" {
		if o := s.call(r, u, http.MethodGet, "/fhir/Organization/"+url.PathEscape(v.FacilityID), nil); o.OK() {
			if or, err := o.Resource(); err == nil {
				v.Facility = or.str("name")
			}
		}
	}
	return v, pr, true
}

// patientRefused answers a refused Patient read: the no-access page (with
// break-the-glass) for a 403 or 404, showing nothing of the patient; the
// API's message otherwise.
func (s *Server) patientRefused(w http.ResponseWriter, r *http.Request, u *user, id string, a *apiResponse) {
	p := s.newPage(r, u)
	p.Title = p.T("patient.title")
	p.Error = a.Message()
	if a.Status == http.StatusForbidden || a.Status == http.StatusNotFound {
		p.Error = p.T("patient.no-access")
		p.Data = id
		s.render(w, r, a.Status, "noaccess", p)
		return
	}
	s.render(w, r, a.Status, "error", p)
}

// readPatientResource reads a Patient through the API: the access decision.
// A refusal (or an unreadable answer) answers the page itself and reports
// false; a read under a break-the-glass grant is noted for the banner.
func (s *Server) readPatientResource(w http.ResponseWriter, r *http.Request, u *user, id string) (res, bool) {
	a := s.call(r, u, http.MethodGet, "/fhir/Patient/"+url.PathEscape(id), nil)
	if s.handled(w, r, u, a) {
		return nil, false
	}
	if !a.OK() {
		s.patientRefused(w, r, u, id, a)
		return nil, false
	}
	u.noteBreakGlass(id, a)
	pr, err := a.Resource()
	if err != nil {
		s.render(w, r, http.StatusBadGateway, "error", s.newPage(r, u).withError(s.t(r, "error.unavailable")))
		return nil, false
	}
	return pr, true
}
