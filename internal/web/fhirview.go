package web

import (
	"strconv"
	"strings"
	"time"
)

// res is a FHIR resource as decoded JSON.
type res map[string]any

// str follows keys (and first elements of arrays) to a string.
func (m res) str(path ...string) string {
	var v any = map[string]any(m)
	for _, k := range path {
		if a, ok := v.([]any); ok {
			if len(a) == 0 {
				return ""
			}
			v = a[0]
		}
		o, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = o[k]
	}
	if a, ok := v.([]any); ok && len(a) > 0 {
		v = a[0]
	}
	switch t := v.(type) {
	case string:
		return t
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(t)
	}
	return ""
}

// list returns the array at key as resources.
func (m res) list(key string) []res {
	a, _ := m[key].([]any)
	out := make([]res, 0, len(a))
	for _, v := range a {
		if o, ok := v.(map[string]any); ok {
			out = append(out, o)
		}
	}
	return out
}

// obj returns the object at key.
func (m res) obj(key string) res {
	o, _ := m[key].(map[string]any)
	return o
}

// refID returns the id of a reference "Type/id" at key (first element if
// an array).
func (m res) refID(key string) string {
	r := m.str(key, "reference")
	_, id, _ := strings.Cut(r, "/")
	return id
}

// concept is a CodeableConcept's text, else its first coding's display,
// else its code.
func concept(c res) string {
	if c == nil {
		return ""
	}
	if t := c.str("text"); t != "" {
		return t
	}
	for _, cd := range c.list("coding") {
		if d := cd.str("display"); d != "" {
			return d
		}
		if d := cd.str("code"); d != "" {
			return d
		}
	}
	return ""
}

// SystemINS is the INS (NIR) identifier system.
const SystemINS = "urn:oid:1.2.250.1.213.1.4.8"

// insStatusURL is where an INS's identity status is recorded (France's
// référentiel INS: provisional, retrieved, validated, qualified).
const insStatusURL = "https://carnet.example/fhir/StructureDefinition/ins-status"

// patientView is the patient banner.
type patientView struct {
	ID, Family, Given, Gender, BirthDate string
	Age                                  int
	INS, INSStatus, IPP                  string
	GP, GPID, Facility, FacilityID       string
	Deceased                             bool
	DeceasedDate                         string
	Phone, Email, Address                string
}

func newPatientView(p res, now time.Time) *patientView {
	v := &patientView{ID: p.str("id"), Family: p.str("name", "family"), Given: p.str("name", "given"),
		Gender: p.str("gender"), BirthDate: p.str("birthDate"), GPID: p.refID("generalPractitioner"),
		FacilityID: p.refID("managingOrganization"), GP: p.str("generalPractitioner", "display"),
		Facility: p.str("managingOrganization", "display")}
	for _, id := range p.list("identifier") {
		sys := id.str("system")
		switch {
		case sys == SystemINS:
			v.INS = id.str("value")
			v.INSStatus = "retrieved"
			for _, ext := range id.list("extension") {
				if ext.str("url") == insStatusURL && ext.str("valueCode") != "" {
					v.INSStatus = ext.str("valueCode")
				}
			}
		case strings.HasSuffix(sys, "/ipp") && v.IPP == "":
			v.IPP = id.str("value")
		}
	}
	if d := p.str("deceasedDateTime"); d != "" {
		v.Deceased, v.DeceasedDate = true, d
	} else if p.str("deceasedBoolean") == "true" {
		v.Deceased = true
	}
	for _, t := range p.list("telecom") {
		switch t.str("system") {
		case "phone":
			if v.Phone == "" {
				v.Phone = t.str("value")
			}
		case "email":
			if v.Email == "" {
				v.Email = t.str("value")
			}
		}
	}
	if a := p.list("address"); len(a) > 0 {
		v.Address = strings.TrimSpace(strings.Join([]string{a[0].str("line"), a[0].str("postalCode"), a[0].str("city")}, " "))
	}
	if b, err := time.Parse("2006-01-02", v.BirthDate); err == nil {
		end := now
		if v.DeceasedDate != "" {
			if d, err := time.Parse(time.RFC3339, v.DeceasedDate); err == nil {
				end = d
			}
		}
		v.Age = end.Year() - b.Year()
		if end.Month() < b.Month() || (end.Month() == b.Month() && end.Day() < b.Day()) {
			v.Age--
		}
	}
	return v
}

// Name is the name as a French record shows it: FAMILY Given.
func (v *patientView) Name() string {
	return strings.TrimSpace(strings.ToUpper(v.Family) + " " + v.Given)
}

// personName is a Practitioner's display name.
func personName(p res) string {
	n := strings.TrimSpace(p.str("name", "prefix") + " " + p.str("name", "given") + " " + p.str("name", "family"))
	if n == "" {
		n = p.str("name", "text")
	}
	return n
}
