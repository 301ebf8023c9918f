// Package policy decides who may do what to which patient's data. It is the
// one decision point every API handler (and every later page) calls; what it
// does not allow is denied.
//
// Access is the intersection of three things:
//   - the role's rights on the resource's data category (Rules);
//   - the token's SMART scopes, which can only narrow the role;
//   - the patient: a care relationship at one of the account's facilities
//     (clinicians), any patient linked to one of its facilities (admission,
//     billing, pharmacy), or an active break-the-glass grant.
//
// Administrators manage accounts and the directory (organisations, staff)
// and reach no patient at all.
package policy

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"carnet/internal/auth"
	"carnet/internal/fhir"
	"carnet/internal/store"
)

// Role identifiers.
const (
	Physician       = "physician"
	Nurse           = "nurse"
	Pharmacist      = "pharmacist"
	AdmissionClerk  = "admission-clerk"
	BillingClerk    = "billing-clerk"
	FacilityAdmin   = "facility-admin"
	GroupAdmin      = "group-admin"
	SecurityOfficer = "security-officer"
)

// Roles lists every role.
var Roles = []string{Physician, Nurse, Pharmacist, AdmissionClerk, BillingClerk, FacilityAdmin, GroupAdmin, SecurityOfficer}

// ValidRole reports whether r is a role identifier.
func ValidRole(r string) bool { return slices.Contains(Roles, r) }

// Action is a SMART v2 interaction letter: c, r, u, d, s.
type Action byte

// Actions.
const (
	Create Action = 'c'
	Read   Action = 'r'
	Update Action = 'u'
	Delete Action = 'd'
	Search Action = 's'
)

func (a Action) String() string {
	switch a {
	case Create:
		return "create"
	case Read:
		return "read"
	case Update:
		return "update"
	case Delete:
		return "delete"
	case Search:
		return "search"
	}
	return "?"
}

// Reach says which patients a right applies to.
type Reach int

// Reaches.
const (
	Care     Reach = iota + 1 // patients the practitioner has a care relationship with
	Facility                  // patients linked to one of the account's facilities
	Anyone                    // not patient data (directory types)
)

// Right is what a role may do on a data category or a type.
type Right struct {
	Actions string // SMART letters
	Reach   Reach
}

// Rules: role -> data category (or a type name, which takes precedence)
// -> right. Anything absent is denied.
var Rules = map[string]map[string]Right{
	Physician: {
		string(fhir.CatIdentity):     {"rs", Care},
		string(fhir.CatClinical):     {"cruds", Care},
		string(fhir.CatPrescription): {"cruds", Care},
		string(fhir.CatBilling):      {"rs", Care},
		string(fhir.CatAdmin):        {"rs", Anyone},
	},
	Nurse: {
		string(fhir.CatIdentity):     {"rs", Care},
		string(fhir.CatClinical):     {"crus", Care},
		string(fhir.CatPrescription): {"rs", Care},
		string(fhir.CatAdmin):        {"rs", Anyone},
	},
	// Hospital pharmacists validate and dispense the facility's
	// prescriptions: identity and prescriptions, facility-wide, no other
	// clinical content.
	Pharmacist: {
		string(fhir.CatIdentity):     {"rs", Facility},
		string(fhir.CatPrescription): {"rus", Facility},
		string(fhir.CatAdmin):        {"rs", Anyone},
	},
	// Admission registers patients and opens stays (Encounter), nothing
	// clinical beyond that.
	AdmissionClerk: {
		string(fhir.CatIdentity): {"crus", Facility},
		"Encounter":              {"crus", Facility},
		string(fhir.CatAdmin):    {"rs", Anyone},
	},
	BillingClerk: {
		string(fhir.CatIdentity): {"rs", Facility},
		string(fhir.CatBilling):  {"cruds", Facility},
		string(fhir.CatAdmin):    {"rs", Anyone},
	},
	FacilityAdmin: {
		string(fhir.CatAdmin): {"cruds", Anyone},
	},
	GroupAdmin: {
		string(fhir.CatAdmin): {"cruds", Anyone},
	},
	SecurityOfficer: {
		string(fhir.CatAdmin): {"rs", Anyone},
	},
}

// WidensPatientAccess reports whether granting role gives access to patient
// data (such grants need a second administrator).
func WidensPatientAccess(role string) bool {
	for k, r := range Rules[role] {
		if k != string(fhir.CatAdmin) && r.Reach != Anyone {
			return true
		}
	}
	return role == SecurityOfficer // audit trails name patients
}

// IsAdmin reports whether p administers accounts.
func IsAdmin(p *auth.Principal) bool { return p.HasRole(FacilityAdmin) || p.HasRole(GroupAdmin) }

// rightOf returns a role's right on typ.
func rightOf(role, typ string) (Right, bool) {
	rs := Rules[role]
	if r, ok := rs[typ]; ok {
		return r, true
	}
	ti := fhir.LookupType(typ)
	if ti == nil {
		return Right{}, false
	}
	r, ok := rs[string(ti.Category)]
	return r, ok
}

// Reacher answers which patients a scope reaches (the store).
type Reacher interface {
	Reach(ctx context.Context, sc *store.Scope, patients []string) (map[string]bool, error)
}

// Decider is the decision point.
type Decider struct {
	st Reacher
	// CareWindow: how long after an encounter ends its participants keep
	// their care relationship. Default 30 days.
	CareWindow time.Duration
	Now        func() time.Time
}

// New returns a Decider over the store's care relationships.
func New(st Reacher) *Decider {
	return &Decider{st: st, CareWindow: 30 * 24 * time.Hour, Now: time.Now}
}

// Forbidden builds the 403 answer.
func Forbidden(format string, args ...any) *fhir.Error {
	return fhir.Errorf(http.StatusForbidden, "forbidden", format, args...)
}

// grant is what the principal's roles, narrowed by its scopes, allow for
// one action on one type.
type grant struct {
	care, facility, anyone bool
}

func (g grant) ok() bool { return g.care || g.facility || g.anyone }

func (d *Decider) grantFor(p *auth.Principal, act Action, typ string) grant {
	var g grant
	if !ScopesAllow(p.Scopes, act, typ) {
		return g
	}
	for _, role := range p.Roles {
		r, ok := rightOf(role, typ)
		if !ok || !strings.ContainsRune(r.Actions, rune(act)) {
			continue
		}
		switch r.Reach {
		case Care:
			g.care = g.care || p.Practitioner != ""
		case Facility:
			g.facility = true
		case Anyone:
			g.anyone = true
		}
	}
	return g
}

// Can checks that p may perform act on resources of typ at all (role and
// scope), before any patient is considered.
func (d *Decider) Can(p *auth.Principal, act Action, typ string) error {
	if !d.grantFor(p, act, typ).ok() {
		return Forbidden("your roles (%s) and token scopes do not allow %s on %s", strings.Join(p.Roles, ", "), act, typ)
	}
	return nil
}

// Scope returns the store scope of act on typ for p: which patients it
// reaches, and which types it may read (for includes). Call after Can.
func (d *Decider) Scope(p *auth.Principal, act Action, typ string) *store.Scope {
	now := d.Now()
	g := d.grantFor(p, act, typ)
	sc := &store.Scope{Facilities: p.Facilities, Now: now, Since: now.Add(-d.CareWindow)}
	if act == Search {
		// _include and _revinclude: each included type under its own read
		// right (only types the caller reads at all pass).
		sc.Include = func(t string) *store.Scope {
			if !d.grantFor(p, Read, t).ok() {
				return nil
			}
			return d.Scope(p, Read, t)
		}
	}
	if g.care {
		sc.Practitioner = p.Practitioner
		sc.Account = p.AccountID // break-the-glass is for clinicians
	}
	sc.FacilityWide = g.facility
	return sc
}

// PatientBound reports whether resources of typ are a patient's data.
func PatientBound(typ string) bool {
	if typ == "Patient" {
		return true
	}
	ti := fhir.LookupType(typ)
	return ti != nil && ti.PatientRef != ""
}

// CheckRead decides a read (or vread, or history) of a stored resource.
func (d *Decider) CheckRead(ctx context.Context, p *auth.Principal, res *store.Resource) error {
	if err := d.Can(p, Read, res.Type); err != nil {
		return err
	}
	return d.checkPatient(ctx, p, Read, res.Type, res.Patient)
}

func (d *Decider) checkPatient(ctx context.Context, p *auth.Principal, act Action, typ, patient string) error {
	if !PatientBound(typ) {
		return nil
	}
	if patient == "" {
		return Forbidden("%s is not linked to a patient you care for", typ)
	}
	ok, err := d.st.Reach(ctx, d.Scope(p, act, typ), []string{patient})
	if err != nil {
		return err
	}
	if !ok[patient] {
		return Forbidden("%s denied: this %s belongs to a patient with whom you have no care relationship at your facilities (physicians and nurses may break the glass)", act, typ)
	}
	return nil
}

// CheckWrite decides one write of a transaction, create, update or delete.
// prev is the current version (nil if none); next the new version (nil in
// the check made before the write is prepared); batch all writes of the
// same commit (a transaction may create a patient and its first stay).
func (d *Decider) CheckWrite(ctx context.Context, p *auth.Principal, typ string, prev *store.Resource, next *store.Write, batch []store.Write) error {
	act := Update
	switch {
	case prev == nil || prev.Deleted:
		act = Create
	case next != nil && next.Deleted:
		act = Delete
	}
	if err := d.Can(p, act, typ); err != nil {
		return err
	}
	if !PatientBound(typ) {
		return nil
	}
	if prev != nil && !prev.Deleted {
		if err := d.checkPatient(ctx, p, act, typ, prev.Patient); err != nil {
			return err
		}
	}
	if next == nil || next.Deleted {
		return nil
	}
	g := d.grantFor(p, act, typ)
	if typ == "Patient" {
		// A patient is registered at a facility: one of the writer's.
		for _, l := range next.Links {
			if l.Practitioner == "" && slices.Contains(p.Facilities, l.Facility) && g.facility {
				return nil
			}
		}
		if prev != nil && !prev.Deleted && sameFacilityLinks(prev, next) {
			return nil // an edit that does not move the patient
		}
		return Forbidden("a patient you register or edit must be managed by one of your facilities (managingOrganization)")
	}
	if next.Patient == "" {
		return Forbidden("%s must reference a patient (%s)", typ, fhir.LookupType(typ).PatientRef)
	}
	if f := foreignFacility(p, prev, next); f != "" {
		// A stay (or care team) links its patient to its facility for good
		// and gives that facility's staff access: only at one's own.
		return Forbidden("%s links the patient to facility %s, which is not one of yours: a stay or care team is opened at one of your facilities", typ, f)
	}
	if prev != nil && !prev.Deleted && prev.Patient == next.Patient {
		return nil // checked above
	}
	if g.facility {
		for _, w := range batch {
			if w.Type == "Patient" && w.ID == next.Patient && !w.Deleted {
				return nil // registered by this same commit, checked on its own
			}
		}
	}
	return d.checkPatient(ctx, p, act, typ, next.Patient)
}

// foreignFacility returns a facility the new version links its patient to
// that the current version did not and that is not one of the writer's
// ("" if none).
func foreignFacility(p *auth.Principal, prev *store.Resource, next *store.Write) string {
	var had []string
	if prev != nil && !prev.Deleted {
		if r, err := fhir.Parse(prev.Data); err == nil {
			for _, l := range fhir.CareLinks(r) {
				had = append(had, l.Facility)
			}
		}
	}
	for _, l := range next.Links {
		if l.Facility != "" && !slices.Contains(p.Facilities, l.Facility) && !slices.Contains(had, l.Facility) {
			return l.Facility
		}
	}
	return ""
}

// sameFacilityLinks: the new version keeps the facility of the current one.
func sameFacilityLinks(prev *store.Resource, next *store.Write) bool {
	r, err := fhir.Parse(prev.Data)
	if err != nil {
		return false
	}
	var a, b []string
	for _, l := range fhir.CareLinks(r) {
		if l.Practitioner == "" {
			a = append(a, l.Facility)
		}
	}
	for _, l := range next.Links {
		if l.Practitioner == "" {
			b = append(b, l.Facility)
		}
	}
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// ---- SMART on FHIR v2 scopes ----------------------------------------------

// DefaultScope is what a token carries when the client asks for none: all
// the role allows.
const DefaultScope = "user/*.cruds"

// ParseScopes validates a space-separated scope request and returns it
// normalised. Accepted: user/<Type|*>.<cruds subset in order> (SMART v2),
// user/<Type|*>.read|write|* (SMART v1, mapped to v2), and openid, fhirUser,
// offline_access (accepted, no effect). patient/ and system/ scopes need a
// launch context or a backend client, which Carnet does not offer.
func ParseScopes(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return DefaultScope, nil
	}
	var out []string
	for _, sc := range strings.Fields(s) {
		switch sc {
		case "openid", "fhirUser", "offline_access":
			continue
		}
		ctx, rest, ok := strings.Cut(sc, "/")
		if !ok || ctx != "user" {
			return "", fmt.Errorf("unsupported scope %q: only user/ scopes are offered (e.g. user/Patient.rs)", sc)
		}
		typ, acts, ok := strings.Cut(rest, ".")
		if !ok || (typ != "*" && fhir.LookupType(typ) == nil) {
			return "", fmt.Errorf("invalid scope %q: expected user/<ResourceType or *>.<cruds>", sc)
		}
		switch acts {
		case "read":
			acts = "rs"
		case "write":
			acts = "cud"
		case "*":
			acts = "cruds"
		}
		if !validLetters(acts) {
			return "", fmt.Errorf("invalid scope %q: permissions must be a subset of c, r, u, d, s in that order", sc)
		}
		out = append(out, "user/"+typ+"."+acts)
	}
	if len(out) == 0 {
		return DefaultScope, nil
	}
	return strings.Join(out, " "), nil
}

func validLetters(a string) bool {
	if a == "" {
		return false
	}
	last := -1
	for _, c := range a {
		i := strings.IndexRune("cruds", c)
		if i <= last {
			return false
		}
		last = i
	}
	return true
}

// ScopesAllow reports whether normalised scopes allow act on typ.
func ScopesAllow(scopes string, act Action, typ string) bool {
	for sc := range strings.FieldsSeq(scopes) {
		rest, ok := strings.CutPrefix(sc, "user/")
		if !ok {
			continue
		}
		t, acts, _ := strings.Cut(rest, ".")
		if (t == "*" || t == typ) && strings.IndexByte(acts, byte(act)) >= 0 {
			return true
		}
	}
	return false
}
