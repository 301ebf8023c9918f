package policy

import (
	"strings"
	"testing"

	"carnet/internal/auth"
	"carnet/internal/fhir"
)

func TestParseScopes(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{"", DefaultScope, ""},
		{"openid fhirUser", DefaultScope, ""},
		{"user/Patient.rs", "user/Patient.rs", ""},
		{"user/Patient.read user/Observation.write", "user/Patient.rs user/Observation.cud", ""},
		{"user/*.*", "user/*.cruds", ""},
		{"user/Patient.sr", "", "order"},
		{"user/Patient.rr", "", "order"},
		{"user/Patient.x", "", "order"},
		{"user/Patient.", "", "order"},
		{"user/Banana.rs", "", "invalid scope"},
		{"patient/*.read", "", "only user/"},
		{"system/*.rs", "", "only user/"},
		{"admin", "", "only user/"},
	} {
		got, err := ParseScopes(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseScopes(%q) = %q, %v; want error %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseScopes(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

// Scopes narrow, never widen: whatever the scope, a role gets no right it
// does not have.
func TestScopesOnlyNarrow(t *testing.T) {
	d := &Decider{}
	for _, role := range Roles {
		for _, sc := range []string{"user/*.cruds", "user/Patient.rs", "user/Observation.c"} {
			p := &auth.Principal{Roles: []string{role}, Practitioner: "P", Scopes: sc}
			full := &auth.Principal{Roles: []string{role}, Practitioner: "P", Scopes: DefaultScope}
			for _, ti := range fhir.StoredTypes() {
				for _, act := range []Action{Create, Read, Update, Delete, Search} {
					narrowed, wide := d.Can(p, act, ti.Name) == nil, d.Can(full, act, ti.Name) == nil
					if narrowed && !wide {
						t.Errorf("%s with %s may %s %s, without the scope not", role, sc, act, ti.Name)
					}
					if narrowed && !ScopesAllow(sc, act, ti.Name) {
						t.Errorf("%s with %s may %s %s outside its scope", role, sc, act, ti.Name)
					}
				}
			}
		}
	}
}

func TestAdministratorsReachNoPatientData(t *testing.T) {
	d := &Decider{}
	for _, role := range []string{FacilityAdmin, GroupAdmin, SecurityOfficer} {
		p := &auth.Principal{Roles: []string{role}, Scopes: DefaultScope}
		for _, ti := range fhir.StoredTypes() {
			for _, act := range []Action{Create, Read, Update, Delete, Search} {
				if PatientBound(ti.Name) && d.Can(p, act, ti.Name) == nil {
					t.Errorf("%s may %s %s", role, act, ti.Name)
				}
			}
		}
		if WidensPatientAccess(role) != (role == SecurityOfficer) {
			t.Errorf("WidensPatientAccess(%s) = %v", role, WidensPatientAccess(role))
		}
	}
	for _, role := range []string{Physician, Nurse, Pharmacist, AdmissionClerk, BillingClerk} {
		if !WidensPatientAccess(role) {
			t.Errorf("granting %s must need four eyes", role)
		}
	}
}

func FuzzParseScopes(f *testing.F) {
	for _, s := range []string{"user/Patient.rs", "user/*.cruds openid", "patient/*.read", "user/.r", "user//.", "user/Patient.cruds user/*.r"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseScopes(s)
		if err != nil {
			return
		}
		// A normalised scope parses to itself and grants only letters it names.
		again, err := ParseScopes(got)
		if err != nil || again != got {
			t.Fatalf("ParseScopes(%q) = %q, which re-parses to %q, %v", s, got, again, err)
		}
		for sc := range strings.FieldsSeq(got) {
			if !strings.HasPrefix(sc, "user/") {
				t.Fatalf("non-user scope %q from %q", sc, s)
			}
		}
	})
}
