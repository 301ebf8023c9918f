package fhir

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
)

// rule checks one element of a modelled type.
type rule struct {
	path     string   // top-level element or "a.b" (arrays flattened)
	kind     string   // code, date, dateTime, instant, bool, object, string, period, reference
	codes    []string // for code
	required bool
}

var (
	adminGender     = []string{"male", "female", "other", "unknown"}
	encounterStatus = []string{"planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled", "entered-in-error", "unknown"}
	medReqStatus    = []string{"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"}
	medReqIntent    = []string{"proposal", "plan", "order", "original-order", "reflex-order", "filler-order", "instance-order", "option"}
	obsStatus       = []string{"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"}
	careTeamStatus  = []string{"proposed", "active", "suspended", "inactive", "entered-in-error"}
	chargeStatus    = []string{"planned", "billable", "not-billable", "aborted", "billed", "entered-in-error", "unknown"}
	invoiceStatus   = []string{"draft", "issued", "balanced", "cancelled", "entered-in-error"}
	telecomSystem   = []string{"phone", "fax", "email", "pager", "url", "sms", "other"}
	nameUse         = []string{"usual", "official", "temp", "nickname", "anonymous", "old", "maiden"}
)

var rules = map[string][]rule{
	"Patient": {
		{path: "gender", kind: "code", codes: adminGender},
		{path: "birthDate", kind: "date"},
		{path: "deceasedDateTime", kind: "dateTime"},
		{path: "deceasedBoolean", kind: "bool"},
		{path: "active", kind: "bool"},
		{path: "name", kind: "object"},
		{path: "name.use", kind: "code", codes: nameUse},
		{path: "name.family", kind: "string"},
		{path: "name.given", kind: "string"},
		{path: "telecom", kind: "object"},
		{path: "telecom.system", kind: "code", codes: telecomSystem},
		{path: "address", kind: "object"},
		{path: "identifier", kind: "object"},
		{path: "generalPractitioner", kind: "reference"},
		{path: "managingOrganization", kind: "reference"},
	},
	"Practitioner": {
		{path: "gender", kind: "code", codes: adminGender},
		{path: "birthDate", kind: "date"},
		{path: "active", kind: "bool"},
		{path: "name", kind: "object"},
	},
	"Encounter": {
		{path: "status", kind: "code", codes: encounterStatus, required: true},
		{path: "class", kind: "object", required: true},
		{path: "period", kind: "period"},
		{path: "subject", kind: "reference"},
		{path: "serviceProvider", kind: "reference"},
		{path: "participant.individual", kind: "reference"},
	},
	"MedicationRequest": {
		{path: "status", kind: "code", codes: medReqStatus, required: true},
		{path: "intent", kind: "code", codes: medReqIntent, required: true},
		{path: "subject", kind: "reference", required: true},
		{path: "authoredOn", kind: "dateTime"},
		{path: "requester", kind: "reference"},
	},
	"Observation": {
		{path: "status", kind: "code", codes: obsStatus, required: true},
		{path: "code", kind: "object", required: true},
		{path: "effectiveDateTime", kind: "dateTime"},
		{path: "effectivePeriod", kind: "period"},
		{path: "effectiveInstant", kind: "instant"},
		{path: "issued", kind: "instant"},
	},
	"Condition": {
		{path: "subject", kind: "reference", required: true},
		{path: "onsetDateTime", kind: "dateTime"},
		{path: "recordedDate", kind: "dateTime"},
	},
	"CareTeam": {
		{path: "status", kind: "code", codes: careTeamStatus},
		{path: "period", kind: "period"},
	},
	"ChargeItem": {
		{path: "status", kind: "code", codes: chargeStatus, required: true},
		{path: "code", kind: "object", required: true},
		{path: "subject", kind: "reference", required: true},
		{path: "occurrenceDateTime", kind: "dateTime"},
		{path: "enteredDate", kind: "dateTime"},
	},
	"Invoice": {
		{path: "status", kind: "code", codes: invoiceStatus, required: true},
		{path: "date", kind: "dateTime"},
	},
}

// Validate checks a resource received from a client for the type the URL
// names (wantType; "" accepts any stored type). It checks the structure
// Carnet relies on and leaves every other element untouched.
func Validate(r Resource, wantType string) error {
	rt, ok := r["resourceType"].(string)
	if !ok || rt == "" {
		return Invalid("resourceType", "resourceType is missing")
	}
	if wantType != "" && rt != wantType {
		return Invalid("resourceType", "resourceType %q does not match the URL's type %q", rt, wantType)
	}
	if err := CheckType(rt); err != nil {
		if err.Status == http.StatusNotFound {
			err = &Error{Status: http.StatusBadRequest, Code: err.Code, Msg: err.Msg, Expr: "resourceType"}
		}
		return err
	}
	if v, ok := r["id"]; ok {
		s, isStr := v.(string)
		if !isStr || !ValidID(s) {
			return Invalid("id", "id must be 1 to 64 characters of A-Z a-z 0-9 - .")
		}
	}
	if v, ok := r["meta"]; ok {
		if _, isObj := v.(map[string]any); !isObj {
			return Invalid("meta", "meta must be an object")
		}
	}
	for _, ru := range rules[rt] {
		if err := ru.check(r, rt); err != nil {
			return err
		}
	}
	return checkReferences(r, rt)
}

func (ru rule) check(r Resource, rt string) error {
	expr := rt + "." + ru.path
	var nodes []any
	if strings.Contains(ru.path, ".") {
		nodes = walk(r, ru.path)
	} else if v, ok := r[ru.path]; ok {
		nodes = flatten(v)
	}
	if len(nodes) == 0 {
		if ru.required {
			return Invalid(expr, "%s is required", expr)
		}
		return nil
	}
	for _, n := range nodes {
		switch ru.kind {
		case "code":
			s, ok := n.(string)
			if !ok || !slices.Contains(ru.codes, s) {
				return Invalid(expr, "invalid code %s: expected one of %s", short(n), strings.Join(ru.codes, ", "))
			}
		case "date":
			if s, ok := n.(string); !ok || !ValidDate(s) {
				return Invalid(expr, "invalid date %s: expected YYYY, YYYY-MM or YYYY-MM-DD", short(n))
			}
		case "dateTime":
			if s, ok := n.(string); !ok || !ValidDateTime(s) {
				return Invalid(expr, "invalid dateTime %s", short(n))
			}
		case "instant":
			if s, ok := n.(string); !ok || !ValidInstant(s) {
				return Invalid(expr, "invalid instant %s", short(n))
			}
		case "bool":
			if _, ok := n.(bool); !ok {
				return Invalid(expr, "expected true or false, got %s", short(n))
			}
		case "string":
			if s, ok := n.(string); !ok || strings.TrimSpace(s) == "" {
				return Invalid(expr, "expected a non-empty string, got %s", short(n))
			}
		case "object", "reference":
			if _, ok := n.(map[string]any); !ok {
				return Invalid(expr, "expected an object, got %s", short(n))
			}
		case "period":
			m, ok := n.(map[string]any)
			if !ok {
				return Invalid(expr, "expected a Period object")
			}
			var lo, hi int64
			for _, k := range []string{"start", "end"} {
				if v, has := m[k]; has {
					s, isStr := v.(string)
					if !isStr || !ValidDateTime(s) {
						return Invalid(expr+"."+k, "invalid dateTime %s", short(v))
					}
				}
			}
			s, hasS := m["start"].(string)
			e, hasE := m["end"].(string)
			if hasS && hasE {
				lo, _, _ = DateRange(s, true)
				_, hi, _ = DateRange(e, true)
				if hi < lo {
					return Invalid(expr, "period ends before it starts")
				}
			}
		}
	}
	return nil
}

// checkReferences checks every "reference" string in the resource: a
// relative "Type/id" of a FHIR type, an absolute URL, a contained "#id" or a
// urn:uuid / urn:oid.
func checkReferences(v any, path string) error {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			if k == "reference" {
				s, ok := c.(string)
				if !ok {
					return Invalid(path+".reference", "reference must be a string")
				}
				if !validReference(s) {
					return Invalid(path+".reference", "malformed reference %s: expected Type/id", short(s))
				}
				continue
			}
			if k == "contained" {
				continue // contained resources are checked as part of their own structure only
			}
			if err := checkReferences(c, path+"."+k); err != nil {
				return err
			}
		}
	case []any:
		for _, c := range t {
			if err := checkReferences(c, path); err != nil {
				return err
			}
		}
	}
	return nil
}

func validReference(s string) bool {
	switch {
	case s == "":
		return false
	case s[0] == '#':
		return true
	case strings.HasPrefix(s, "urn:uuid:"), strings.HasPrefix(s, "urn:oid:"):
		return len(s) > 9
	case strings.HasPrefix(s, "http://"), strings.HasPrefix(s, "https://"):
		return !strings.ContainsAny(s, " \t\n")
	}
	_, _, ok := SplitReference(s)
	return ok && strings.Count(s, "/") == 1 || ok && strings.Contains(s, "/_history/")
}

// LocalReferences returns the distinct relative "Type/id" references of r
// (not absolute, contained or urn references).
func LocalReferences(r Resource) []string {
	seen := map[string]bool{}
	var out []string
	var rec func(v any)
	rec = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, c := range t {
				if k == "contained" {
					continue
				}
				if s, ok := c.(string); ok && k == "reference" && !strings.Contains(s, "://") {
					if typ, id, ok := SplitReference(s); ok && !seen[typ+"/"+id] {
						seen[typ+"/"+id] = true
						out = append(out, typ+"/"+id)
					}
					continue
				}
				rec(c)
			}
		case []any:
			for _, c := range t {
				rec(c)
			}
		}
	}
	rec(r)
	slices.Sort(out)
	return out
}

func short(v any) string {
	var s string
	switch t := v.(type) {
	case string:
		s = `"` + t + `"`
	case json.Number:
		s = t.String()
	case bool:
		s = "true"
		if !t {
			s = "false"
		}
	case map[string]any:
		s = "an object"
	case []any:
		s = "an array"
	default:
		s = "a value"
	}
	if len(s) > 60 {
		s = s[:57] + `..."`
	}
	return s
}

// RewriteReferences replaces, anywhere in v, every "reference" whose value is
// a key of m (a Bundle fullUrl such as urn:uuid:...) by its value ("Type/id").
func RewriteReferences(v any, m map[string]string) {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			if s, ok := c.(string); ok && k == "reference" {
				if to, ok := m[s]; ok {
					t[k] = to
				}
				continue
			}
			RewriteReferences(c, m)
		}
	case []any:
		for _, c := range t {
			RewriteReferences(c, m)
		}
	}
}
