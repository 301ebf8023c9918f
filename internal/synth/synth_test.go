package synth

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func collectStatic(t testing.TB, g *Group) []map[string]any {
	t.Helper()
	var out []map[string]any
	if err := g.Static(func(m map[string]any) error { out = append(out, m); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func collectPatient(t testing.TB, g *Group, i int) []map[string]any {
	t.Helper()
	var out []map[string]any
	if err := g.Patient(i, func(m map[string]any) error { out = append(out, m); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func digest(t testing.TB, res []map[string]any) string {
	h := sha256.New()
	for _, m := range res {
		h.Write(mustJSON(t, m))
		h.Write([]byte{'\n'})
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func str(m map[string]any, path ...string) string {
	var v any = m
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			n, err := strconv.Atoi(p)
			if err != nil || n >= len(x) {
				return ""
			}
			v = x[n]
		default:
			return ""
		}
	}
	s, _ := v.(string)
	return s
}

func parseDT(t testing.TB, s string) time.Time {
	t.Helper()
	if len(s) == 10 {
		d, err := time.Parse("2006-01-02", s)
		if err != nil {
			t.Fatalf("bad date %q: %v", s, err)
		}
		return d
	}
	d, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatalf("bad dateTime %q: %v", s, err)
	}
	return d
}

// ---------------------------------------------------------------------------

func TestDeterminism(t *testing.T) {
	cfg := Config{Seed: 7, Patients: 5000}
	a, b := New(cfg), New(cfg)
	if !reflect.DeepEqual(a.Facilities, b.Facilities) || !reflect.DeepEqual(a.Staff, b.Staff) {
		t.Fatal("facilities/staff differ for the same seed")
	}
	if digest(t, collectStatic(t, a)) != digest(t, collectStatic(t, b)) {
		t.Fatal("Static output differs for the same seed")
	}
	for _, i := range []int{0, 1, 2, 31, 32, 199, 1234, 4999} {
		da, db := digest(t, collectPatient(t, a, i)), digest(t, collectPatient(t, b, i))
		if da != db {
			t.Fatalf("patient %d differs for the same seed", i)
		}
		// repeated calls on the same group are identical too
		if digest(t, collectPatient(t, a, i)) != da {
			t.Fatalf("patient %d differs between calls", i)
		}
	}

	c := New(Config{Seed: 8, Patients: 5000})
	if digest(t, collectStatic(t, a)) == digest(t, collectStatic(t, c)) {
		t.Fatal("Static output identical for different seeds")
	}
	for _, i := range []int{0, 1, 2, 1234} {
		if digest(t, collectPatient(t, a, i)) == digest(t, collectPatient(t, c, i)) {
			t.Fatalf("patient %d identical for different seeds", i)
		}
		if a.PatientID(i) == c.PatientID(i) {
			t.Fatalf("patient id %d identical for different seeds", i)
		}
	}
	// A different patient count does not change patient i.
	d := New(Config{Seed: 7, Patients: 100})
	if digest(t, collectPatient(t, a, 42)) != digest(t, collectPatient(t, d, 42)) {
		t.Fatal("patient depends on the patient count")
	}
	// Now is honoured: a later Now shifts dates.
	e := New(Config{Seed: 7, Patients: 5000, Now: defaultNow.AddDate(1, 0, 0)})
	if digest(t, collectPatient(t, a, 3)) == digest(t, collectPatient(t, e, 3)) {
		t.Fatal("Now has no effect")
	}
	z := New(Config{Seed: 7, Patients: 5000, Now: defaultNow})
	if digest(t, collectPatient(t, a, 3)) != digest(t, collectPatient(t, z, 3)) {
		t.Fatal("zero Now is not the default reference date")
	}
}

func TestParallelMatchesSequential(t *testing.T) {
	g := New(Config{Seed: 3, Patients: 400})
	want := make([]string, 400)
	for i := range want {
		want[i] = digest(t, collectPatient(t, g, i))
	}
	got := make([]string, 400)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < 400; i += 4 {
				var out []map[string]any
				_ = g.Patient(i, func(m map[string]any) error { out = append(out, m); return nil })
				got[i] = digest(t, out)
			}
		}(w)
	}
	wg.Wait()
	for i := range want {
		if want[i] != got[i] {
			t.Fatalf("patient %d differs when generated in parallel", i)
		}
	}
}

func TestPatientRangeAndEmitError(t *testing.T) {
	g := New(Config{Seed: 1, Patients: 10})
	noop := func(map[string]any) error { return nil }
	if err := g.Patient(10, noop); err == nil {
		t.Fatal("expected error for i == Patients")
	}
	if err := g.Patient(-1, noop); err == nil {
		t.Fatal("expected error for i < 0")
	}
	boom := fmt.Errorf("boom")
	n := 0
	err := g.Patient(3, func(map[string]any) error { n++; return boom })
	if err != boom || n != 1 {
		t.Fatalf("emit error not propagated: %v after %d calls", err, n)
	}
	n = 0
	err = g.Static(func(map[string]any) error {
		n++
		if n == 5 {
			return boom
		}
		return nil
	})
	if err != boom || n != 5 {
		t.Fatalf("Static emit error not propagated: %v after %d calls", err, n)
	}
}

// checkValue verifies that only the allowed Go types occur.
func checkValue(t *testing.T, path string, v any) {
	switch x := v.(type) {
	case string, bool, int, float64:
	case []any:
		if len(x) == 0 {
			t.Errorf("%s: empty array", path)
		}
		for i, e := range x {
			checkValue(t, fmt.Sprintf("%s[%d]", path, i), e)
		}
	case map[string]any:
		for k, e := range x {
			checkValue(t, path+"."+k, e)
		}
	default:
		t.Errorf("%s: disallowed type %T", path, v)
	}
}

func walkRefs(v any, f func(string)) {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			walkRefs(e, f)
		}
	case map[string]any:
		for k, e := range x {
			if k == "reference" {
				if s, ok := e.(string); ok {
					f(s)
				}
				continue
			}
			walkRefs(e, f)
		}
	}
}

func TestResourcesShapeIDsAndReferences(t *testing.T) {
	g := New(Config{Seed: 11, Patients: 2000})
	static := collectStatic(t, g)
	known := map[string]bool{}
	for _, m := range static {
		rt, id := str(m, "resourceType"), str(m, "id")
		if rt == "" || !uuidRE.MatchString(id) {
			t.Fatalf("bad static resource header %q/%q", rt, id)
		}
		key := rt + "/" + id
		if known[key] {
			t.Fatalf("duplicate static resource %s", key)
		}
		known[key] = true
		checkValue(t, key, m)
	}
	for _, m := range static { // static references resolve within Static
		walkRefs(m, func(r string) {
			if !known[r] {
				t.Fatalf("static reference %s does not resolve", r)
			}
		})
	}
	allIDs := map[string]bool{}
	for k := range known {
		allIDs[k[strings.IndexByte(k, '/')+1:]] = true
	}
	for i := 0; i < 2000; i++ {
		res := collectPatient(t, g, i)
		if str(res[0], "resourceType") != "Patient" || str(res[0], "id") != g.PatientID(i) {
			t.Fatalf("patient %d: first resource is %s/%s", i, str(res[0], "resourceType"), str(res[0], "id"))
		}
		local := map[string]bool{}
		for _, m := range res {
			rt, id := str(m, "resourceType"), str(m, "id")
			if !uuidRE.MatchString(id) {
				t.Fatalf("patient %d: bad id %q", i, id)
			}
			if allIDs[id] {
				t.Fatalf("patient %d: duplicate id %s", i, id)
			}
			allIDs[id] = true
			if i < 300 {
				checkValue(t, rt+"/"+id, m)
			}
			// every reference resolves to Static or to a resource emitted earlier
			walkRefs(m, func(r string) {
				if !known[r] && !local[r] {
					t.Fatalf("patient %d: %s/%s references %s which was not emitted before", i, rt, id, r)
				}
			})
			if rt != "Patient" && str(m, "subject", "reference") != "Patient/"+g.PatientID(i) {
				t.Fatalf("patient %d: %s without subject", i, rt)
			}
			local[rt+"/"+id] = true
		}
		if i < 50 { // JSON round trip
			for _, m := range res {
				var back map[string]any
				if err := json.Unmarshal(mustJSON(t, m), &back); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

func TestCountsAndRoles(t *testing.T) {
	g := New(Config{Seed: 5, Patients: 10})
	if len(g.Facilities) != 17 {
		t.Fatalf("%d facilities", len(g.Facilities))
	}
	kinds := map[string]int{}
	codes := map[string]bool{}
	for _, f := range g.Facilities {
		kinds[f.Kind]++
		if codes[f.Code] || !regexp.MustCompile(`^[a-z0-9-]+$`).MatchString(f.Code) {
			t.Fatalf("bad or duplicate facility code %q", f.Code)
		}
		codes[f.Code] = true
	}
	if kinds["clinic"]+kinds["health-centre"] != 14 || kinds["retirement-home"] != 3 || kinds["clinic"] == 0 || kinds["health-centre"] == 0 {
		t.Fatalf("facility kinds: %v", kinds)
	}
	n := len(g.Staff)
	if n < 1800 || n > 2200 {
		t.Fatalf("%d staff", n)
	}
	roles := map[string]int{}
	users := map[string]bool{}
	multi, clinicians := 0, 0
	facIDs := map[string]bool{g.GroupID(): true}
	for _, f := range g.Facilities {
		facIDs[f.ID] = true
	}
	userRE := regexp.MustCompile(`^[a-z]\.[a-z]+[0-9]*$`)
	roleCount := 0
	for _, s := range g.Staff {
		if !userRE.MatchString(s.Username) || users[s.Username] {
			t.Fatalf("bad or duplicate username %q", s.Username)
		}
		users[s.Username] = true
		if len(s.Roles) == 0 || len(s.Facilities) == 0 || s.GivenName == "" || s.FamilyName == "" {
			t.Fatalf("incomplete staff %+v", s)
		}
		for _, r := range s.Roles {
			roles[r]++
		}
		for _, f := range s.Facilities {
			if !facIDs[f] {
				t.Fatalf("staff %s: unknown facility %s", s.Username, f)
			}
		}
		roleCount += len(s.Facilities)
		if s.Roles[0] == RolePhysician || s.Roles[0] == RoleNurse {
			clinicians++
			if len(s.Facilities) == 2 {
				multi++
			}
		}
	}
	for _, r := range AllRoles {
		if roles[r] == 0 {
			t.Fatalf("role %s missing", r)
		}
	}
	share := func(r string) float64 { return float64(roles[r]) / float64(n) }
	if s := share(RolePhysician); s < 0.18 || s > 0.26 {
		t.Errorf("physician share %.3f", s)
	}
	if s := share(RoleNurse); s < 0.40 || s > 0.56 {
		t.Errorf("nurse share %.3f", s)
	}
	if s := share(RolePharmacist); s < 0.02 || s > 0.045 {
		t.Errorf("pharmacist share %.3f", s)
	}
	if s := share(RoleAdmissionClerk); s < 0.08 || s > 0.16 {
		t.Errorf("admission share %.3f", s)
	}
	if s := share(RoleBillingClerk); s < 0.06 || s > 0.11 {
		t.Errorf("billing share %.3f", s)
	}
	if roles[RoleFacilityAdmin] != 17 || roles[RoleGroupAdmin] != 2 || roles[RoleSecurityOfficer] != 1 {
		t.Errorf("admin roles: %v", roles)
	}
	if f := float64(multi) / float64(clinicians); f < 0.06 || f > 0.14 {
		t.Errorf("clinicians in 2 facilities: %.3f", f)
	}
	static := collectStatic(t, g)
	byType := map[string]int{}
	for _, m := range static {
		byType[str(m, "resourceType")]++
	}
	if byType["Organization"] != 18 || byType["Practitioner"] != n || byType["PractitionerRole"] != roleCount {
		t.Fatalf("static counts: %v (staff %d, roles %d)", byType, n, roleCount)
	}
	if g.Expected().StaticResources != len(static) {
		t.Fatalf("Expected().StaticResources = %d, Static emitted %d", g.Expected().StaticResources, len(static))
	}
	// PractitionerRole content
	for _, m := range static {
		switch str(m, "resourceType") {
		case "PractitionerRole":
			if m["active"] != true || str(m, "code", "0", "coding", "0", "system") != sysRole {
				t.Fatalf("bad PractitionerRole %v", m)
			}
			if c := str(m, "code", "0", "coding", "0", "code"); roles[c] == 0 {
				t.Fatalf("unknown role code %q", c)
			}
		case "Organization":
			if str(m, "id") == g.GroupID() {
				if str(m, "type", "0", "coding", "0", "code") != "prov" || !strings.Contains(str(m, "name"), "synthétique") {
					t.Fatalf("bad group organization %v", m)
				}
			} else if str(m, "partOf", "reference") != "Organization/"+g.GroupID() {
				t.Fatalf("facility without partOf: %v", m)
			}
			v := str(m, "identifier", "0", "value")
			if str(m, "identifier", "0", "system") != sysFINESS || !regexp.MustCompile(`^[0-9]{9}$`).MatchString(v) {
				t.Fatalf("bad FINESS %q", v)
			}
		}
	}
}

func TestRPPSLuhn(t *testing.T) {
	if !luhnValid("79927398713") || luhnValid("79927398710") {
		t.Fatal("luhn implementation")
	}
	g := New(Config{Seed: 9})
	seen := map[string]bool{}
	byID := map[string]Staff{}
	for _, s := range g.Staff {
		byID[s.PractitionerID] = s
	}
	nRPPS := 0
	for _, m := range collectStatic(t, g) {
		if str(m, "resourceType") != "Practitioner" {
			continue
		}
		s := byID[str(m, "id")]
		sys, v := str(m, "identifier", "0", "system"), str(m, "identifier", "0", "value")
		clinical := s.Roles[0] == RolePhysician || s.Roles[0] == RoleNurse || s.Roles[0] == RolePharmacist
		if clinical {
			if sys != sysRPPS || len(v) != 11 || !luhnValid(v) {
				t.Fatalf("bad RPPS %q (%s) for %s", v, sys, s.Username)
			}
			nRPPS++
		} else if sys != sysStaff || v == "" {
			t.Fatalf("non-clinical %s has identifier %s|%s", s.Username, sys, v)
		}
		if seen[sys+v] {
			t.Fatalf("duplicate identifier %s", v)
		}
		seen[sys+v] = true
		gender := str(m, "gender")
		if gender != "male" && gender != "female" {
			t.Fatalf("practitioner gender %q", gender)
		}
	}
	if nRPPS < 1000 {
		t.Fatalf("only %d RPPS", nRPPS)
	}
}

// Reference postal codes, independent of the generator tables.
var knownPostal = map[string]string{
	"92160": "Antony", "92140": "Clamart", "94000": "Créteil", "94800": "Villejuif", "91000": "Évry-Courcouronnes",
	"91300": "Massy", "91260": "Juvisy-sur-Orge", "92120": "Montrouge", "94200": "Ivry-sur-Seine", "91120": "Palaiseau",
	"92330": "Sceaux", "94100": "Saint-Maur-des-Fossés", "91600": "Savigny-sur-Orge", "92100": "Boulogne-Billancourt",
	"94400": "Vitry-sur-Seine", "92000": "Nanterre", "91100": "Corbeil-Essonnes", "94300": "Vincennes",
}

func checkPostal(t *testing.T, what, postal, city string) {
	t.Helper()
	if !regexp.MustCompile(`^(75|91|92|94)[0-9]{3}$`).MatchString(postal) {
		t.Fatalf("%s: postal code %q outside Paris/91/92/94", what, postal)
	}
	if (postal[:2] == "75") != (city == "Paris") {
		t.Fatalf("%s: %s %s", what, postal, city)
	}
	if postal[:2] == "75" {
		arr, _ := strconv.Atoi(postal[2:])
		if arr < 1 || arr > 20 {
			t.Fatalf("%s: bad Paris postal code %s", what, postal)
		}
	}
	if want, ok := knownPostal[postal]; ok && want != city {
		t.Fatalf("%s: %s should be %s, got %s", what, postal, want, city)
	}
	found := false
	for _, c := range cities {
		if c.postal == postal && c.name == city {
			found = true
		}
	}
	if !found {
		t.Fatalf("%s: %s %s not in the commune table", what, postal, city)
	}
}

func TestPostalCodes(t *testing.T) {
	seen := map[string]string{}
	for _, c := range cities {
		if prev, ok := seen[c.postal]; ok && prev != c.name {
			t.Fatalf("postal %s maps to %s and %s", c.postal, prev, c.name)
		}
		seen[c.postal] = c.name
		if c.dept != c.postal[:2] {
			t.Fatalf("%s: dept %s", c.postal, c.dept)
		}
	}
	g := New(Config{Seed: 2, Patients: 1500})
	for _, f := range g.Facilities {
		checkPostal(t, f.Name, f.PostalCode, f.City)
	}
	for _, m := range collectStatic(t, g) {
		if str(m, "resourceType") == "Organization" {
			checkPostal(t, str(m, "name"), str(m, "address", "0", "postalCode"), str(m, "address", "0", "city"))
		}
	}
	for i := 0; i < 1500; i++ {
		p := collectPatient(t, g, i)[0]
		if str(p, "address", "0", "country") != "FR" || str(p, "address", "0", "line", "0") == "" {
			t.Fatalf("bad address %v", p["address"])
		}
		checkPostal(t, "patient", str(p, "address", "0", "postalCode"), str(p, "address", "0", "city"))
	}
}

type patientInfo struct {
	res       []map[string]any
	p         map[string]any
	birth     time.Time
	gender    string
	home      string
	ins       string
	deceased  bool
	deathTime time.Time
}

func patients(t *testing.T, g *Group, n int) []patientInfo {
	out := make([]patientInfo, n)
	for i := 0; i < n; i++ {
		res := collectPatient(t, g, i)
		p := res[0]
		pi := patientInfo{res: res, p: p, gender: str(p, "gender"), home: str(p, "managingOrganization", "reference")}
		pi.birth = parseDT(t, str(p, "birthDate"))
		for _, id := range p["identifier"].([]any) {
			m := id.(map[string]any)
			if m["system"] == sysINSNIR {
				pi.ins = m["value"].(string)
			}
		}
		if s := str(p, "deceasedDateTime"); s != "" {
			pi.deceased = true
			pi.deathTime = parseDT(t, s)
		}
		out[i] = pi
	}
	return out
}

func TestNIR(t *testing.T) {
	g := New(Config{Seed: 4, Patients: 3000})
	seen := map[string]bool{}
	for i, p := range patients(t, g, 3000) {
		v := p.ins
		if len(v) != 15 || !regexp.MustCompile(`^[12][0-9]{14}$`).MatchString(v) {
			t.Fatalf("patient %d: bad INS %q", i, v)
		}
		nir, _ := strconv.ParseUint(v[:13], 10, 64)
		key, _ := strconv.Atoi(v[13:])
		if key != int(97-nir%97) {
			t.Fatalf("patient %d: bad NIR key in %s", i, v)
		}
		switch p.gender {
		case "male":
			if v[0] != '1' {
				t.Fatalf("male with NIR %s", v)
			}
		case "female":
			if v[0] != '2' {
				t.Fatalf("female with NIR %s", v)
			}
		}
		if v[1:3] != fmt.Sprintf("%02d", p.birth.Year()%100) || v[3:5] != fmt.Sprintf("%02d", int(p.birth.Month())) {
			t.Fatalf("NIR %s inconsistent with birth date %s", v, p.birth.Format("2006-01-02"))
		}
		dept := v[5:7]
		if dept == "20" || dept == "00" || dept == "96" || dept == "97" || dept == "98" {
			t.Fatalf("NIR %s: bad département %s", v, dept)
		}
		if seen[v] {
			t.Fatalf("duplicate INS %s", v)
		}
		seen[v] = true
	}
}

func TestPatientContent(t *testing.T) {
	const N = 2000
	g := New(Config{Seed: 21, Patients: N})
	now := defaultNow
	ehpad := map[string]bool{}
	facOf := map[string]string{}
	for _, f := range g.Facilities {
		if f.Kind == "retirement-home" {
			ehpad["Organization/"+f.ID] = true
		}
	}
	staffFacs := map[string]map[string]bool{}
	staffRole := map[string]string{}
	for _, s := range g.Staff {
		m := map[string]bool{}
		for _, f := range s.Facilities {
			m["Organization/"+f] = true
		}
		staffFacs["Practitioner/"+s.PractitionerID] = m
		staffRole["Practitioner/"+s.PractitionerID] = s.Roles[0]
	}
	_ = facOf
	emailRE := regexp.MustCompile(`^[a-z0-9.-]+@(example\.fr|exemple\.org|example\.org|example\.net|example\.com|mail\.example\.fr)$`)
	phoneRE := regexp.MustCompile(`^(\+33 [67]( [0-9]{2}){4}|0[1-5]( [0-9]{2}){4})$`)
	var deceased, male, female, residents, oldResidents, inProgress, encs, careTeams int
	types := map[string]int{}
	classes := map[string]int{}
	secondFac := 0
	ippSeen := map[string]bool{}
	given := map[string]bool{}
	for i, p := range patients(t, g, N) {
		age := now.Sub(p.birth).Hours() / 24 / 365.2425
		if age < 0 || age >= 101.5 {
			t.Fatalf("patient %d: age %.1f", i, age)
		}
		switch p.gender {
		case "male":
			male++
		case "female":
			female++
		case "other", "unknown":
		default:
			t.Fatalf("gender %q", p.gender)
		}
		if ehpad[p.home] {
			residents++
			if age >= 75 {
				oldResidents++
			}
		}
		if p.deceased {
			deceased++
			if p.deathTime.After(now) || p.deathTime.Before(p.birth) {
				t.Fatalf("patient %d: death %v", i, p.deathTime)
			}
		}
		given[str(p.p, "name", "0", "given", "0")] = true
		if str(p.p, "name", "0", "family") == "" {
			t.Fatal("no family name")
		}
		gp := str(p.p, "generalPractitioner", "0", "reference")
		if staffRole[gp] != RolePhysician || !staffFacs[gp][p.home] {
			t.Fatalf("patient %d: GP %s is not a physician of %s", i, gp, p.home)
		}
		telecoms, _ := p.p["telecom"].([]any)
		for _, tc := range telecoms {
			m := tc.(map[string]any)
			v := m["value"].(string)
			switch m["system"] {
			case "email":
				if !emailRE.MatchString(v) {
					t.Fatalf("bad email %q", v)
				}
			case "phone":
				if !phoneRE.MatchString(v) {
					t.Fatalf("bad phone %q", v)
				}
			}
		}
		ipps := map[string]bool{}
		for _, id := range p.p["identifier"].([]any) {
			m := id.(map[string]any)
			sys, v := m["system"].(string), m["value"].(string)
			if strings.HasPrefix(sys, "https://carnet.example/fac/") {
				if !regexp.MustCompile(`^[0-9]{8,10}$`).MatchString(v) || !strings.HasSuffix(sys, "/ipp") {
					t.Fatalf("bad IPP %s|%s", sys, v)
				}
				if ippSeen[sys+"|"+v] {
					t.Fatalf("duplicate IPP %s|%s", sys, v)
				}
				ippSeen[sys+"|"+v] = true
				ipps[strings.TrimSuffix(strings.TrimPrefix(sys, "https://carnet.example/fac/"), "/ipp")] = true
			}
		}
		encFac := map[string]string{}
		encStart := map[string]time.Time{}
		encEnd := map[string]time.Time{}
		chargeEnc := map[string]string{}
		facsVisited := map[string]bool{}
		var invoices int
		for _, m := range p.res[1:] {
			rt := str(m, "resourceType")
			types[rt]++
			key := rt + "/" + str(m, "id")
			switch rt {
			case "Encounter":
				encs++
				classes[str(m, "class", "code")]++
				if str(m, "class", "system") != sysActCode {
					t.Fatal("class system")
				}
				fac := str(m, "serviceProvider", "reference")
				encFac[key] = fac
				facsVisited[fac] = true
				start := parseDT(t, str(m, "period", "start"))
				encStart[key] = start
				if start.Before(now.AddDate(-5, 0, -1)) || start.After(now) || start.Before(p.birth.Add(-2*time.Hour)) {
					t.Fatalf("encounter start %v (birth %v)", start, p.birth)
				}
				switch str(m, "status") {
				case "finished":
					end := parseDT(t, str(m, "period", "end"))
					if end.Before(start) || end.After(now) {
						t.Fatalf("encounter %v-%v", start, end)
					}
					encEnd[key] = end
					if p.deceased && end.After(p.deathTime) {
						t.Fatalf("encounter after death")
					}
				case "in-progress":
					inProgress++
					if str(m, "period", "end") != "" || now.Sub(start) > 8*24*time.Hour || p.deceased {
						t.Fatalf("bad in-progress encounter %v", m)
					}
				default:
					t.Fatalf("encounter status %q", str(m, "status"))
				}
				parts := m["participant"].([]any)
				phys := str(m, "participant", "0", "individual", "reference")
				if staffRole[phys] != RolePhysician {
					t.Fatal("first participant is not a physician")
				}
				for k := range parts {
					ind := str(m, "participant", strconv.Itoa(k), "individual", "reference")
					if !staffFacs[ind][fac] {
						t.Fatalf("participant %s does not work at %s", ind, fac)
					}
				}
			case "ChargeItem":
				ctx := str(m, "context", "reference")
				chargeEnc[key] = ctx
				if str(m, "performingOrganization", "reference") != encFac[ctx] {
					t.Fatal("charge item organisation differs from encounter")
				}
				if str(m, "code", "coding", "0", "system") != sysCCAM || !regexp.MustCompile(`^[A-Z]{4}[0-9]{3}$`).MatchString(str(m, "code", "coding", "0", "code")) {
					t.Fatalf("bad CCAM code %v", m["code"])
				}
				pr := m["priceOverride"].(map[string]any)
				if pr["currency"] != "EUR" || pr["value"].(float64) <= 0 {
					t.Fatalf("bad price %v", pr)
				}
				if s := str(m, "status"); s != "billable" && s != "billed" {
					t.Fatalf("charge status %q", s)
				}
			case "CareTeam":
				careTeams++
				for k := range m["participant"].([]any) {
					mem := str(m, "participant", strconv.Itoa(k), "member", "reference")
					if !staffFacs[mem][p.home] {
						t.Fatalf("care team member %s not at home facility", mem)
					}
				}
				if str(m, "managingOrganization", "0", "reference") != p.home {
					t.Fatal("care team organisation")
				}
			case "Condition":
				if str(m, "code", "coding", "0", "system") != sysICD10 || str(m, "code", "coding", "0", "display") == "" {
					t.Fatalf("bad condition code %v", m["code"])
				}
				onset, rec := parseDT(t, str(m, "onsetDateTime")), parseDT(t, str(m, "recordedDate"))
				if onset.After(rec) || rec.After(now) || onset.Before(p.birth.Add(-2*time.Hour)) {
					t.Fatalf("condition dates %v %v", onset, rec)
				}
			case "Observation":
				if str(m, "category", "0", "coding", "0", "code") != "vital-signs" || str(m, "code", "coding", "0", "system") != sysLOINC || str(m, "status") != "final" {
					t.Fatalf("bad observation %v", m)
				}
				vq := m["valueQuantity"].(map[string]any)
				if vq["system"] != sysUCUM || vq["value"].(float64) <= 0 {
					t.Fatalf("bad valueQuantity %v", vq)
				}
				enc := str(m, "encounter", "reference")
				eff := parseDT(t, str(m, "effectiveDateTime"))
				if eff.Before(encStart[enc]) || (!encEnd[enc].IsZero() && eff.After(encEnd[enc])) {
					t.Fatalf("observation outside encounter")
				}
				if !staffFacs[str(m, "performer", "0", "reference")][encFac[enc]] {
					t.Fatalf("observation performer not at encounter facility")
				}
			case "MedicationRequest":
				if str(m, "intent") != "order" || str(m, "medicationCodeableConcept", "coding", "0", "system") != sysATC || str(m, "dosageInstruction", "0", "text") == "" {
					t.Fatalf("bad medication request %v", m)
				}
				if staffRole[str(m, "requester", "reference")] != RolePhysician {
					t.Fatal("requester is not a physician")
				}
				switch str(m, "status") {
				case "active", "completed", "stopped":
				default:
					t.Fatalf("medication status %q", str(m, "status"))
				}
			case "Invoice":
				invoices++
				var sum float64
				for k, li := range m["lineItem"].([]any) {
					l := li.(map[string]any)
					if l["sequence"] != k+1 {
						t.Fatal("line item sequence")
					}
					ch := str(l, "chargeItemReference", "reference")
					if chargeEnc[ch] == "" {
						t.Fatalf("invoice line %s", ch)
					}
					if encFac[chargeEnc[ch]] != str(m, "issuer", "reference") {
						t.Fatal("invoice issuer differs from charge item facility")
					}
					sum += chargeAmount(p.res, ch)
				}
				tn := m["totalNet"].(map[string]any)["value"].(float64)
				if math.Abs(tn-sum) > 0.011 || m["totalGross"].(map[string]any)["currency"] != "EUR" {
					t.Fatalf("invoice total %v != %v", tn, sum)
				}
				if s := str(m, "status"); s != "issued" && s != "balanced" {
					t.Fatalf("invoice status %q", s)
				}
			}
		}
		if invoices > 1 {
			t.Fatal("more than one invoice")
		}
		if len(facsVisited) > 1 {
			secondFac++
		}
		// an IPP for every facility visited (and the home facility)
		for fac := range facsVisited {
			code := ""
			for _, f := range g.Facilities {
				if "Organization/"+f.ID == fac {
					code = f.Code
				}
			}
			if !ipps[code] {
				t.Fatalf("patient %d: no IPP for visited facility %s", i, code)
			}
		}
	}
	if r := float64(deceased) / N; r < 0.015 || r > 0.04 {
		t.Errorf("deceased share %.3f", r)
	}
	if r := float64(male) / N; r < 0.45 || r > 0.53 {
		t.Errorf("male share %.3f", r)
	}
	if r := float64(female) / N; r < 0.45 || r > 0.53 {
		t.Errorf("female share %.3f", r)
	}
	if residents < 20 || float64(oldResidents)/float64(residents) < 0.8 {
		t.Errorf("residents %d, of which 75+: %d", residents, oldResidents)
	}
	if inProgress == 0 || float64(inProgress)/float64(encs) > 0.05 {
		t.Errorf("in-progress encounters: %d of %d", inProgress, encs)
	}
	for _, c := range []string{"AMB", "IMP", "EMER"} {
		if classes[c] == 0 {
			t.Errorf("no %s encounters", c)
		}
	}
	if r := float64(careTeams) / N; r < 0.25 || r > 0.35 {
		t.Errorf("care team share %.3f", r)
	}
	if secondFac < N/20 {
		t.Errorf("only %d patients visited a second facility", secondFac)
	}
	if types["ChargeItem"] != types["Encounter"] {
		t.Errorf("charge items %d != encounters %d", types["ChargeItem"], types["Encounter"])
	}
	for _, rt := range []string{"Encounter", "CareTeam", "Condition", "Observation", "MedicationRequest", "ChargeItem", "Invoice"} {
		if types[rt] == 0 {
			t.Errorf("no %s", rt)
		}
	}
	per := func(rt string) float64 { return float64(types[rt]) / N }
	if e := per("Encounter"); e < 1 || e > 3 {
		t.Errorf("encounters per patient %.2f", e)
	}
	if o := per("Observation"); o < 1 || o > 3 {
		t.Errorf("observations per patient %.2f", o)
	}
	if c := per("Condition"); c > 2 {
		t.Errorf("conditions per patient %.2f", c)
	}
	if m := per("MedicationRequest"); m > 3 {
		t.Errorf("medication requests per patient %.2f", m)
	}
	if i := per("Invoice"); i > 1 {
		t.Errorf("invoices per patient %.2f", i)
	}
	if len(given) < 150 {
		t.Errorf("only %d distinct given names in %d patients", len(given), N)
	}
}

func chargeAmount(res []map[string]any, ref string) float64 {
	for _, m := range res {
		if "ChargeItem/"+str(m, "id") == ref {
			return m["priceOverride"].(map[string]any)["value"].(float64)
		}
	}
	return math.NaN()
}

func TestFirstPhysicianRule(t *testing.T) {
	for _, seed := range []int64{1, 2, 3} {
		g := New(Config{Seed: seed, Patients: 200})
		first := ""
		for _, s := range g.Staff {
			if s.Roles[0] == RolePhysician {
				first = s.PractitionerID
				break
			}
		}
		n := 0
		for i := 0; i < 200; i++ {
			p := collectPatient(t, g, i)[0]
			if str(p, "generalPractitioner", "0", "reference") == "Practitioner/"+first {
				n++
			}
		}
		if n < 5 {
			t.Fatalf("seed %d: first physician is GP of %d patients", seed, n)
		}
	}
}

func TestExpected(t *testing.T) {
	const N = 2000
	g := New(Config{Seed: 13, Patients: N})
	total := 0
	for i := 0; i < N; i++ {
		_ = g.Patient(i, func(map[string]any) error { total++; return nil })
	}
	measured := float64(total) / N
	exp := g.Expected()
	if exp.Patients != N {
		t.Fatalf("Expected().Patients = %d", exp.Patients)
	}
	if math.Abs(exp.ResourcesPerPatient-measured)/measured > 0.10 {
		t.Fatalf("Expected %.3f vs measured %.3f", exp.ResourcesPerPatient, measured)
	}
	if measured > 9.0 || measured-1 < 6 {
		t.Fatalf("resources per patient %.3f (further resources must average 6-8, total <= 9)", measured)
	}
	// a large group samples across its range
	big := New(Config{Seed: 13, Patients: 758912})
	if e := big.Expected(); math.Abs(e.ResourcesPerPatient-measured)/measured > 0.10 || e.StaticResources != exp.StaticResources {
		t.Fatalf("big group expected %+v", e)
	}
}

func TestNameLists(t *testing.T) {
	uniq := func(l []string) map[string]bool {
		m := map[string]bool{}
		for _, s := range l {
			m[s] = true
		}
		return m
	}
	fam := uniq(familyNames)
	if len(fam) < 300 || len(fam) != len(familyNames) {
		t.Fatalf("%d family names (%d unique)", len(familyNames), len(fam))
	}
	var males, females []string
	for e := 0; e < 3; e++ {
		males = append(males, maleGiven[e]...)
		females = append(females, femaleGiven[e]...)
	}
	m, f := uniq(males), uniq(females)
	if len(m) < 150 || len(f) < 150 {
		t.Fatalf("%d male / %d female given names", len(m), len(f))
	}
	for _, want := range []string{"Lefèvre", "Guérin"} {
		if !fam[want] {
			t.Errorf("missing family name %s", want)
		}
	}
	if !f["Hélène"] || !m["Jean-Pierre"] || !f["Marie-Claude"] {
		t.Error("missing accented/compound given names")
	}
	// frequency skew: the most frequent family name is drawn far more often
	r := newRNG(1)
	counts := map[string]int{}
	for i := 0; i < 200000; i++ {
		counts[pickFamily(&r).name]++
	}
	last := familyNames[len(familyNames)-1]
	if counts["Martin"] < 8*counts[last] {
		t.Errorf("no frequency skew: Martin %d, %s %d", counts["Martin"], last, counts[last])
	}
	for _, e := range familyEntries {
		if !regexp.MustCompile(`^[a-z]+$`).MatchString(e.user) {
			t.Errorf("bad folded name %q -> %q", e.name, e.user)
		}
	}
	if asciiFold("Lefèvre-Hélène Œ L'Haÿ", "-") != "lefevre-heleneoelhay" {
		t.Errorf("asciiFold: %q", asciiFold("Lefèvre-Hélène Œ L'Haÿ", "-"))
	}
}

func TestDateHelpers(t *testing.T) {
	for d := int64(-40000); d < 40000; d += 17 {
		y, m, dd := civilFromDays(d)
		want := time.Unix(d*daySec, 0).UTC()
		if y != want.Year() || m != int(want.Month()) || dd != want.Day() {
			t.Fatalf("civilFromDays(%d) = %d-%d-%d, want %v", d, y, m, dd, want)
		}
		if daysFromCivil(y, m, dd) != d {
			t.Fatalf("daysFromCivil roundtrip %d", d)
		}
		if fmtDate(d) != want.Format("2006-01-02") {
			t.Fatalf("fmtDate %s", fmtDate(d))
		}
	}
	// Paris summer time 2025: 30 March 01:00 UTC to 26 October 01:00 UTC.
	cases := map[string]string{
		"2025-03-30T00:59:59Z": "2025-03-30T01:59:59+01:00",
		"2025-03-30T01:00:00Z": "2025-03-30T03:00:00+02:00",
		"2025-10-26T00:59:59Z": "2025-10-26T02:59:59+02:00",
		"2025-10-26T01:00:00Z": "2025-10-26T02:00:00+01:00",
		"2026-01-15T12:00:00Z": "2026-01-15T13:00:00+01:00",
	}
	for in, want := range cases {
		tt, _ := time.Parse(time.RFC3339, in)
		if got := fmtDateTime(tt.Unix()); got != want {
			t.Errorf("fmtDateTime(%s) = %s, want %s", in, got, want)
		}
	}
	if loc, err := time.LoadLocation("Europe/Paris"); err == nil {
		for ts := int64(1500000000); ts < 1800000000; ts += 3599 * 7 {
			want := time.Unix(ts, 0).In(loc).Format(time.RFC3339)
			if got := fmtDateTime(ts); got != want {
				t.Fatalf("fmtDateTime(%d) = %s, want %s", ts, got, want)
			}
		}
	}
	if got := string(appendUint(nil, 42, 5)); got != "00042" {
		t.Fatal(got)
	}
	if got := string(appendUint(nil, 1234567, 3)); got != "1234567" {
		t.Fatal(got)
	}
}

func TestPermIsBijection(t *testing.T) {
	g := New(Config{Seed: 1})
	const n = 200000
	seen := make([]bool, n)
	for i := uint64(0); i < n; i++ {
		v := g.perm(i, n, 77)
		if v >= n || seen[v] {
			t.Fatalf("perm not a bijection at %d -> %d", i, v)
		}
		seen[v] = true
	}
}

func TestIDsNotSequential(t *testing.T) {
	g := New(Config{Seed: 1, Patients: 3})
	a, b := g.PatientID(0), g.PatientID(1)
	if a[:8] == b[:8] || bytes.Equal([]byte(a[24:]), []byte(b[24:])) {
		t.Fatalf("ids look sequential: %s %s", a, b)
	}
}
