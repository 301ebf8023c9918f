package fhir

import (
	"sort"
	"strings"
)

// ParamType is a FHIR search parameter type Carnet indexes.
type ParamType int

// Search parameter types.
const (
	String ParamType = iota + 1
	Token
	Date
	Reference
)

func (t ParamType) String() string {
	switch t {
	case String:
		return "string"
	case Token:
		return "token"
	case Date:
		return "date"
	case Reference:
		return "reference"
	}
	return "unknown"
}

// Param is a search parameter Carnet indexes.
type Param struct {
	// ID identifies the parameter in the index tables. It is part of the
	// storage format: never renumber or reuse one.
	ID       int
	Resource string
	Name     string
	Type     ParamType
	// Paths are alternative element paths: "name.family",
	// "telecom[system=phone]", "effectiveDateTime".
	Paths []string
	// Targets are the resource types a reference parameter may point to.
	Targets []string
	// Norm names a value normalisation for tokens: "phone", "email".
	Norm string
	// Union names parameters of the same resource and type whose index rows
	// this parameter searches instead of storing its own (name = family |
	// given). Such a parameter has no Paths.
	Union []string
	// extract replaces path walking for computed parameters.
	extract func(Resource) []IndexEntry
	Doc     string
	ids     []int // resolved index ids (own ID, or the union's)
}

// IndexIDs returns the parameter ids whose index rows this parameter searches.
func (q *Param) IndexIDs() []int { return q.ids }

func p(id int, res, name string, t ParamType, paths ...string) *Param {
	return &Param{ID: id, Resource: res, Name: name, Type: t, Paths: paths}
}

func (q *Param) to(targets ...string) *Param { q.Targets = targets; return q }
func (q *Param) union(names ...string) *Param {
	q.Union, q.Paths = names, nil
	return q
}
func (q *Param) norm(n string) *Param { q.Norm = n; return q }

// patientParams are the parameters every patient-compartment type gets
// (patient and subject where the element exists).
func compartmentParams(base int, res, elem string) []*Param {
	ps := []*Param{p(base, res, "patient", Reference, elem).to("Patient")}
	if elem == "subject" {
		// subject searches the rows of patient, which index every subject
		// reference (Patient or not): one row instead of two.
		ps = append(ps, p(base+1, res, "subject", Reference).union("patient"))
	}
	return ps
}

var registry = func() []*Param {
	var ps []*Param
	add := func(q ...*Param) { ps = append(ps, q...) }
	// Patient: 1..39
	add(
		p(1, "Patient", "identifier", Token, "identifier"),
		p(2, "Patient", "name", String).union("family", "given"),
		p(3, "Patient", "family", String, "name.family"),
		p(4, "Patient", "given", String, "name.given"),
		p(5, "Patient", "birthdate", Date, "birthDate"),
		p(6, "Patient", "gender", Token, "gender"),
		p(7, "Patient", "general-practitioner", Reference, "generalPractitioner").to("Practitioner", "Organization", "PractitionerRole"),
		p(8, "Patient", "address-postalcode", String, "address.postalCode"),
		p(9, "Patient", "address-city", String, "address.city"),
		p(10, "Patient", "address", String).union("address-city", "address-postalcode"),
		p(11, "Patient", "phone", Token, "telecom[system=phone]").norm("phone"),
		p(12, "Patient", "email", Token, "telecom[system=email]").norm("email"),
		p(13, "Patient", "telecom", Token).union("phone", "email"),
		p(14, "Patient", "organization", Reference, "managingOrganization").to("Organization"),
		p(15, "Patient", "death-date", Date, "deceasedDateTime"),
		p(16, "Patient", "active", Token, "active"),
		&Param{ID: 17, Resource: "Patient", Name: "deceased", Type: Token, extract: deceasedEntries,
			Doc: "true if the patient has a death declaration (deceasedBoolean true or deceasedDateTime)"},
	)
	// Encounter: 40..59
	add(compartmentParams(40, "Encounter", "subject")...)
	add(
		p(42, "Encounter", "date", Date, "period"),
		p(43, "Encounter", "status", Token, "status"),
		p(44, "Encounter", "class", Token, "class"),
		p(45, "Encounter", "service-provider", Reference, "serviceProvider").to("Organization"),
		p(46, "Encounter", "participant", Reference, "participant.individual").to("Practitioner", "PractitionerRole", "RelatedPerson"),
		p(47, "Encounter", "practitioner", Reference).union("participant").to("Practitioner"),
		p(48, "Encounter", "identifier", Token, "identifier"),
		p(49, "Encounter", "type", Token, "type"),
	)
	// MedicationRequest: 60..79
	add(compartmentParams(60, "MedicationRequest", "subject")...)
	add(
		p(62, "MedicationRequest", "authoredon", Date, "authoredOn"),
		p(63, "MedicationRequest", "status", Token, "status"),
		p(64, "MedicationRequest", "requester", Reference, "requester").to("Practitioner", "PractitionerRole", "Organization", "Patient", "RelatedPerson"),
		p(65, "MedicationRequest", "intent", Token, "intent"),
		p(66, "MedicationRequest", "encounter", Reference, "encounter").to("Encounter"),
		p(67, "MedicationRequest", "code", Token, "medicationCodeableConcept"),
		p(68, "MedicationRequest", "identifier", Token, "identifier"),
	)
	// Condition: 80..99
	add(compartmentParams(80, "Condition", "subject")...)
	add(
		p(82, "Condition", "code", Token, "code"),
		p(83, "Condition", "clinical-status", Token, "clinicalStatus"),
		p(84, "Condition", "onset-date", Date, "onsetDateTime", "onsetPeriod"),
		p(85, "Condition", "recorded-date", Date, "recordedDate"),
		p(86, "Condition", "encounter", Reference, "encounter").to("Encounter"),
	)
	// Observation: 100..119
	add(compartmentParams(100, "Observation", "subject")...)
	add(
		p(102, "Observation", "date", Date, "effectiveDateTime", "effectivePeriod", "effectiveInstant"),
		p(103, "Observation", "code", Token, "code"),
		p(104, "Observation", "category", Token, "category"),
		p(105, "Observation", "status", Token, "status"),
		p(106, "Observation", "encounter", Reference, "encounter").to("Encounter"),
		p(107, "Observation", "performer", Reference, "performer"),
	)
	// CareTeam: 120..139
	add(compartmentParams(120, "CareTeam", "subject")...)
	add(
		p(122, "CareTeam", "date", Date, "period"),
		p(123, "CareTeam", "status", Token, "status"),
		p(124, "CareTeam", "participant", Reference, "participant.member"),
		p(125, "CareTeam", "encounter", Reference, "encounter").to("Encounter"),
	)
	// ChargeItem: 140..159
	add(compartmentParams(140, "ChargeItem", "subject")...)
	add(
		p(142, "ChargeItem", "code", Token, "code"),
		p(143, "ChargeItem", "entered-date", Date, "enteredDate"),
		p(144, "ChargeItem", "occurrence", Date, "occurrenceDateTime", "occurrencePeriod"),
		p(145, "ChargeItem", "context", Reference, "context").to("Encounter", "EpisodeOfCare"),
		p(146, "ChargeItem", "performing-organization", Reference, "performingOrganization").to("Organization"),
	)
	// Invoice: 160..179
	add(compartmentParams(160, "Invoice", "subject")...)
	add(
		p(162, "Invoice", "date", Date, "date"),
		p(163, "Invoice", "status", Token, "status"),
		p(164, "Invoice", "issuer", Reference, "issuer").to("Organization"),
		p(165, "Invoice", "identifier", Token, "identifier"),
	)
	// Organization, Practitioner, PractitionerRole, Location, Medication: 180..239
	add(
		p(180, "Organization", "identifier", Token, "identifier"),
		p(181, "Organization", "name", String, "name", "alias"),
		p(182, "Organization", "partof", Reference, "partOf").to("Organization"),
		p(183, "Organization", "type", Token, "type"),
		p(190, "Practitioner", "identifier", Token, "identifier"),
		p(191, "Practitioner", "name", String).union("family", "given"),
		p(192, "Practitioner", "family", String, "name.family"),
		p(193, "Practitioner", "given", String, "name.given"),
		p(200, "PractitionerRole", "practitioner", Reference, "practitioner").to("Practitioner"),
		p(201, "PractitionerRole", "organization", Reference, "organization").to("Organization"),
		p(202, "PractitionerRole", "role", Token, "code"),
		p(203, "PractitionerRole", "active", Token, "active"),
		p(210, "Location", "name", String, "name"),
		p(211, "Location", "organization", Reference, "managingOrganization").to("Organization"),
		p(220, "Medication", "code", Token, "code"),
	)
	// The other patient-compartment types: patient (+subject) and a date: 300..
	others := []struct{ t, date string }{
		{"RelatedPerson", ""}, {"EpisodeOfCare", "period"}, {"DiagnosticReport", "effectiveDateTime|effectivePeriod"},
		{"Procedure", "performedDateTime|performedPeriod"}, {"AllergyIntolerance", "recordedDate"},
		{"Immunization", "occurrenceDateTime"}, {"ServiceRequest", "authoredOn"}, {"DocumentReference", "date"},
		{"Flag", "period"}, {"MedicationAdministration", "effectiveDateTime|effectivePeriod"},
		{"MedicationStatement", "effectiveDateTime|effectivePeriod"}, {"Account", "servicePeriod"}, {"Coverage", "period"},
	}
	for i, o := range others {
		base := 300 + i*10
		ti := LookupType(o.t)
		add(compartmentParams(base, o.t, ti.PatientRef)...)
		if o.date != "" {
			name := "date"
			if o.t == "MedicationAdministration" {
				name = "effective-time"
			}
			add(p(base+2, o.t, name, Date, strings.Split(o.date, "|")...))
		}
		add(p(base+3, o.t, "status", Token, "status"))
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].ID < ps[j].ID })
	return ps
}()

var paramIndex = func() map[string]map[string]*Param {
	m := map[string]map[string]*Param{}
	seen := map[int]bool{}
	for _, q := range registry {
		if seen[q.ID] {
			panic("fhir: duplicate search parameter id")
		}
		seen[q.ID] = true
		if m[q.Resource] == nil {
			m[q.Resource] = map[string]*Param{}
		}
		m[q.Resource][q.Name] = q
	}
	for _, q := range registry {
		if len(q.Union) == 0 {
			q.ids = []int{q.ID}
			continue
		}
		for _, n := range q.Union {
			u := m[q.Resource][n]
			if u == nil || u.Type != q.Type || len(u.Union) > 0 {
				panic("fhir: bad union " + q.Resource + "." + q.Name)
			}
			q.ids = append(q.ids, u.ID)
		}
	}
	return m
}()

// byType lists each type's parameters in ID order.
var byType = func() map[string][]*Param {
	m := map[string][]*Param{}
	for _, q := range registry {
		m[q.Resource] = append(m[q.Resource], q)
	}
	return m
}()

// LookupParam returns the indexed search parameter of a type, or nil.
func LookupParam(resource, name string) *Param { return paramIndex[resource][name] }

// Params lists the indexed parameters of a type, by name.
func Params(resource string) []*Param {
	var out []*Param
	for _, q := range paramIndex[resource] {
		out = append(out, q)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// AllParams lists every indexed parameter, by ID.
func AllParams() []*Param { return registry }

func deceasedEntries(r Resource) []IndexEntry {
	v := "false"
	if b, ok := r["deceasedBoolean"].(bool); ok && b {
		v = "true"
	}
	if _, ok := r["deceasedDateTime"].(string); ok {
		v = "true"
	}
	return []IndexEntry{{Param: 17, Type: Token, S: v}}
}
