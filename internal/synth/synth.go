// Package synth generates a deterministic, entirely synthetic healthcare
// group as FHIR R4 resources: a French private clinic group with 17
// facilities in Paris and the south of the Paris region, about 2,000 staff
// and any number of patients with their encounters, care teams, conditions,
// vital signs, prescriptions, charge items and invoices.
//
// No record describes a real person. Names are drawn from embedded lists,
// identifiers are generated (with valid check digits), phone numbers use
// ranges reserved for fiction and e-mail addresses use example domains.
//
// Output depends only on the Config: the same seed and configuration give
// byte-identical resources. Patient(i) depends only on (Seed, i, config), so
// patients can be generated in parallel from several goroutines.
package synth

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// Config parameterises a generated group.
type Config struct {
	Seed     int64     // same seed + same config => byte-identical output
	Patients int       // number of patients; Patient(i) accepts 0 <= i < Patients
	Now      time.Time // reference "today"; zero => 2026-11-01T00:00:00Z. All dates are relative to it.
}

// defaultNow is the reference date used when Config.Now is zero.
var defaultNow = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// Facility is one of the 17 care sites of the group.
type Facility struct {
	ID         string // Organization id
	Name       string
	Kind       string // "clinic", "health-centre" or "retirement-home"
	Code       string // short URL-safe code, used in IPP identifier systems
	PostalCode string
	City       string
}

// Staff is a member of staff (one Practitioner resource).
type Staff struct {
	PractitionerID string
	Username       string // unique, ASCII lower case, e.g. "c.martin3"
	GivenName      string
	FamilyName     string
	Roles          []string // physician, nurse, pharmacist, admission-clerk, billing-clerk, facility-admin, group-admin, security-officer
	Facilities     []string // Organization ids (the group Organization for group-level roles)
}

// Stats are approximate totals, e.g. for progress bars.
type Stats struct {
	Patients            int
	ResourcesPerPatient float64 // average resources emitted by one Patient call, the Patient included
	StaticResources     int     // resources emitted by Static
}

// Role identifiers (codes in https://carnet.example/role).
const (
	RolePhysician       = "physician"
	RoleNurse           = "nurse"
	RolePharmacist      = "pharmacist"
	RoleAdmissionClerk  = "admission-clerk"
	RoleBillingClerk    = "billing-clerk"
	RoleFacilityAdmin   = "facility-admin"
	RoleGroupAdmin      = "group-admin"
	RoleSecurityOfficer = "security-officer"
)

// AllRoles lists every role identifier.
var AllRoles = []string{RolePhysician, RoleNurse, RolePharmacist, RoleAdmissionClerk, RoleBillingClerk, RoleFacilityAdmin, RoleGroupAdmin, RoleSecurityOfficer}

var roleDisplay = map[string]string{
	RolePhysician:       "Médecin",
	RoleNurse:           "Infirmier",
	RolePharmacist:      "Pharmacien",
	RoleAdmissionClerk:  "Agent d'admission",
	RoleBillingClerk:    "Agent de facturation",
	RoleFacilityAdmin:   "Administrateur d'établissement",
	RoleGroupAdmin:      "Administrateur du groupe",
	RoleSecurityOfficer: "Responsable de la sécurité des systèmes d'information",
}

// GroupName is the name of the group Organization.
const GroupName = "Groupe Santé Carnet (synthétique)"

// Group is a generated healthcare group. It is immutable after New and safe
// for concurrent use.
type Group struct {
	Facilities []Facility
	Staff      []Staff

	cfg     Config
	key     uint64
	key2    uint64
	now     int64 // unix seconds
	nowDay  int64
	groupID string
	groupFI string // group FINESS (legal entity)
	fac     []facInfo
	st      []staffInfo
	roles   int // number of PractitionerRole resources

	firstPhys    int // index in Staff of the first physician
	firstPhysFac int // its primary facility

	homeCum   []uint32 // facility choice for non-resident patients
	homeIdx   []int
	ehpadIdx  []int
	clinicIdx []int

	expOnce sync.Once
	exp     Stats
}

type facInfo struct {
	spec       *facilitySpec
	id         string
	ref        any // "Organization/<id>"
	finess     string
	cityIdx    int
	dept       string
	ippSystem  any
	ippPrefix  string
	physicians []int32
	nurses     []int32
}

type staffInfo struct {
	ref    any // "Practitioner/<id>"
	female bool
	rpps   string // clinicians and pharmacists
	local  string // non-clinical staff
}

// id domains (the "a" input of uuidFrom); patients use a = patient index.
const (
	domStatic   = uint64(1) << 43
	domGroupOrg = domStatic
	domFacility = domStatic | 1<<32
	domPract    = domStatic | 2<<32
	domRole     = domStatic | 3<<32
)

// New builds the group, its facilities and its staff.
func New(cfg Config) *Group {
	if cfg.Now.IsZero() {
		cfg.Now = defaultNow
	}
	if cfg.Patients < 0 {
		cfg.Patients = 0
	}
	g := &Group{cfg: cfg}
	g.key = mix64(uint64(cfg.Seed) ^ 0x5EED_CA27_E7_0001)
	g.key2 = mix64(g.key ^ 0x2545F4914F6CDD1D)
	g.now = cfg.Now.Unix()
	g.nowDay = floorDiv(g.now, daySec)
	g.groupID = uuidFrom(g.key, g.key2, domGroupOrg, 0)
	g.buildFacilities()
	g.buildStaff()
	return g
}

func (g *Group) buildFacilities() {
	r := newRNG(g.key ^ 0xFAC1)
	g.groupFI = finess(&r, "75")
	w := make([]float64, 0, len(facilitySpecs))
	for f := range facilitySpecs {
		sp := &facilitySpecs[f]
		ci := cityByPostal(sp.postal)
		id := uuidFrom(g.key, g.key2, domFacility, uint64(f))
		fi := facInfo{
			spec:      sp,
			id:        id,
			ref:       "Organization/" + id,
			finess:    finess(&r, cities[ci].dept),
			cityIdx:   ci,
			dept:      cities[ci].dept,
			ippSystem: "https://carnet.example/fac/" + sp.code + "/ipp",
		}
		// Each facility's IPP has its own fixed length (8 to 10 digits):
		// a 1- to 3-digit prefix followed by 7 digits.
		pl := 1 + f%3
		pre := make([]byte, 0, 3)
		pre = append(pre, byte('1'+r.intn(9)))
		for len(pre) < pl {
			pre = append(pre, byte('0'+r.intn(10)))
		}
		fi.ippPrefix = string(pre)
		g.fac = append(g.fac, fi)
		g.Facilities = append(g.Facilities, Facility{
			ID: id, Name: sp.name, Kind: kindNames[sp.kind], Code: sp.code,
			PostalCode: sp.postal, City: cities[ci].name,
		})
		switch sp.kind {
		case kindRetirement:
			g.ehpadIdx = append(g.ehpadIdx, f)
		default:
			if sp.kind == kindClinic {
				g.clinicIdx = append(g.clinicIdx, f)
			}
			g.homeIdx = append(g.homeIdx, f)
			w = append(w, sp.weight)
		}
	}
	g.homeCum = cumulative(w, 100)
}

// finess returns a FINESS-style number: département, 6 digits, Luhn key.
func finess(r *rng, dept string) string {
	b := make([]byte, 0, 9)
	b = append(b, dept...)
	b = append(b, '0')
	for i := 0; i < 5; i++ {
		b = append(b, byte('0'+r.intn(10)))
	}
	return string(append(b, luhnDigit(b)))
}

// roleShares per facility kind: physician, pharmacist, admission, billing;
// nurses take the remainder, plus one facility-admin per facility.
var roleShares = [3][4]float64{
	kindClinic:       {0.23, 0.035, 0.14, 0.095},
	kindHealthCentre: {0.40, 0.02, 0.22, 0.11},
	kindRetirement:   {0.04, 0.02, 0.08, 0.06},
}

type staffDraft struct {
	role string
	fac  int
}

func (g *Group) buildStaff() {
	r := newRNG(g.key ^ 0x57AFF)
	var drafts []staffDraft
	for f := range facilitySpecs {
		sp := &facilitySpecs[f]
		n := sp.staff - 1
		sh := roleShares[sp.kind]
		counts := [4]int{}
		rest := n
		for k := range sh {
			c := int(sh[k]*float64(n) + 0.5)
			if c < 1 {
				c = 1
			}
			counts[k] = c
			rest -= c
		}
		start := len(drafts)
		drafts = append(drafts, staffDraft{RoleFacilityAdmin, f})
		for k, role := range []string{RolePhysician, RolePharmacist, RoleAdmissionClerk, RoleBillingClerk} {
			for j := 0; j < counts[k]; j++ {
				drafts = append(drafts, staffDraft{role, f})
			}
		}
		for j := 0; j < rest; j++ {
			drafts = append(drafts, staffDraft{RoleNurse, f})
		}
		// shuffle within the facility
		d := drafts[start:]
		for j := len(d) - 1; j > 0; j-- {
			k := r.intn(j + 1)
			d[j], d[k] = d[k], d[j]
		}
	}
	drafts = append(drafts, staffDraft{RoleGroupAdmin, -1}, staffDraft{RoleGroupAdmin, -1}, staffDraft{RoleSecurityOfficer, -1})

	users := map[string]int{}
	rppsSeen := map[string]bool{}
	localSeen := map[string]bool{}
	g.firstPhys = -1
	for idx, d := range drafts {
		var femaleP float64
		switch d.role {
		case RoleNurse:
			femaleP = 0.86
		case RolePhysician:
			femaleP = 0.5
		case RolePharmacist:
			femaleP = 0.67
		case RoleAdmissionClerk, RoleBillingClerk:
			femaleP = 0.75
		default:
			femaleP = 0.45
		}
		female := r.chance(femaleP)
		year := 1961 + r.intn(41)
		gn := pickGiven(&r, female, birthEra(year))
		fn := pickFamily(&r)
		base := gn.user[:1] + "." + fn.user
		users[base]++
		user := base
		if c := users[base]; c > 1 {
			user = fmt.Sprintf("%s%d", base, c)
		}
		id := uuidFrom(g.key, g.key2, domPract, uint64(idx))
		si := staffInfo{ref: "Practitioner/" + id, female: female}
		clinical := d.role == RolePhysician || d.role == RoleNurse || d.role == RolePharmacist
		if clinical {
			for {
				b := make([]byte, 0, 11)
				b = append(b, '1', '0')
				for k := 0; k < 8; k++ {
					b = append(b, byte('0'+r.intn(10)))
				}
				b = append(b, luhnDigit(b))
				s := string(b)
				if !rppsSeen[s] {
					rppsSeen[s] = true
					si.rpps = s
					break
				}
			}
		} else {
			for {
				s := fmt.Sprintf("CRN-%06d", r.intn(1000000))
				if !localSeen[s] {
					localSeen[s] = true
					si.local = s
					break
				}
			}
		}
		var facs []int
		if d.fac >= 0 {
			facs = append(facs, d.fac)
			if (d.role == RolePhysician || d.role == RoleNurse) && r.chance(0.10) {
				facs = append(facs, g.secondFacility(&r, d.fac))
			}
		}
		st := Staff{
			PractitionerID: id,
			Username:       user,
			GivenName:      gn.name,
			FamilyName:     fn.name,
			Roles:          []string{d.role},
		}
		if d.fac < 0 {
			st.Facilities = []string{g.groupID}
			g.roles++
		}
		for _, f := range facs {
			st.Facilities = append(st.Facilities, g.fac[f].id)
			g.roles++
			switch d.role {
			case RolePhysician:
				g.fac[f].physicians = append(g.fac[f].physicians, int32(idx))
			case RoleNurse:
				g.fac[f].nurses = append(g.fac[f].nurses, int32(idx))
			}
		}
		if d.role == RolePhysician && g.firstPhys < 0 {
			g.firstPhys = idx
			g.firstPhysFac = d.fac
		}
		g.Staff = append(g.Staff, st)
		g.st = append(g.st, si)
	}
}

// secondFacility picks another facility of a compatible kind.
func (g *Group) secondFacility(r *rng, f int) int {
	pool := g.homeIdx
	if facilitySpecs[f].kind == kindRetirement {
		pool = g.ehpadIdx
	}
	for {
		o := pool[r.intn(len(pool))]
		if o != f {
			return o
		}
	}
}

// Config returns the configuration (with defaults applied).
func (g *Group) Config() Config { return g.cfg }

// GroupID returns the id of the group Organization.
func (g *Group) GroupID() string { return g.groupID }

// PatientID returns the id of the Patient resource emitted by Patient(i).
func (g *Group) PatientID(i int) string {
	return uuidFrom(g.key, g.key2, uint64(i), 0)
}

// ErrPatientRange is returned by Patient for an index outside [0, Patients).
var ErrPatientRange = errors.New("synth: patient index out of range")

// Patient emits patient i and all its resources: the Patient first, then
// the resources referencing it. It depends only on (Seed, i, config).
func (g *Group) Patient(i int, emit func(map[string]any) error) error {
	if i < 0 || i >= g.cfg.Patients {
		return fmt.Errorf("%w: %d (patients: %d)", ErrPatientRange, i, g.cfg.Patients)
	}
	return g.patient(i, emit)
}

// Expected returns approximate totals. The per-patient average is measured
// on a deterministic sample of patients (computed once).
func (g *Group) Expected() Stats {
	g.expOnce.Do(func() {
		const sample = 1000
		n := g.cfg.Patients
		if n <= 0 {
			n = sample
		}
		step := 1
		if n > sample {
			step = n / sample
		}
		count, total := 0, 0
		emit := func(map[string]any) error { total++; return nil }
		for i := 0; i < n && count < sample; i += step {
			_ = g.patient(i, emit)
			count++
		}
		g.exp = Stats{
			Patients:            g.cfg.Patients,
			ResourcesPerPatient: float64(total) / float64(count),
			StaticResources:     1 + len(g.fac) + len(g.Staff) + g.roles,
		}
	})
	return g.exp
}
