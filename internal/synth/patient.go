package synth

import "math"

const (
	classAMB = iota
	classIMP
	classEMER
)

var classCodes = [...]string{"AMB", "IMP", "EMER"}
var classDisplays = [...]string{"ambulatory", "inpatient encounter", "emergency"}

const (
	year      = 365.2425 * daySec
	maxEnc    = 3
	maxCond   = 2
	maxMeds   = 3
	maxObs    = 3
	emailDoms = 6
)

var emailDomains = [emailDoms]string{"example.fr", "exemple.org", "example.org", "example.net", "example.com", "mail.example.fr"}

type encPlan struct {
	fac        int
	class      int
	start, end int64
	inProgress bool
	phys       int32
	nurse      int32 // -1 if none
	act        *act
	qty        int
	billed     bool
	id         string
	ref        any
	startStr   any // formatted start, shared by the Encounter and its ChargeItem
	chargeID   string
}

type patientPlan struct {
	i        int
	r        rng
	id       string
	ref      any
	counter  uint64
	home     int
	resident bool
	gp       int32
	female   bool
	gender   string
	age      int
	birthDay int64
	birthT   int64
	deceased bool
	deathT   int64
	given    *nameEntry
	family   *nameEntry
	second   int // -1 if none
	encs     [maxEnc]encPlan
	nEnc     int
	invoice  bool
	invFac   int
}

func (g *Group) nextID(p *patientPlan) string {
	p.counter++
	return uuidFrom(g.key, g.key2, uint64(p.i), p.counter)
}

// patient generates patient i (no range check).
func (g *Group) patient(i int, emit func(map[string]any) error) error {
	p := patientPlan{i: i, second: -1}
	p.r = newRNG(g.key ^ mix64(uint64(i)*golden+0x9A71E27))
	r := &p.r
	p.id = g.PatientID(i)
	p.ref = "Patient/" + p.id

	// Home facility, residency and attending physician.
	forced := i < 256 && i%32 == 0 && g.firstPhys >= 0
	switch {
	case forced:
		p.home = g.firstPhysFac
		p.gp = int32(g.firstPhys)
	case r.chance(0.03):
		p.resident = true
		p.home = g.ehpadIdx[r.intn(len(g.ehpadIdx))]
	default:
		p.home = g.homeIdx[r.pickCum(g.homeCum)]
	}
	hf := &g.fac[p.home]
	if !forced {
		p.gp = hf.physicians[r.intn(len(hf.physicians))]
	}

	// Gender and age.
	switch r.pickSmall(492, 496, 7, 5) {
	case 0:
		p.gender = "male"
	case 1:
		p.gender, p.female = "female", true
	case 2:
		p.gender, p.female = "other", r.chance(0.5)
	default:
		p.gender, p.female = "unknown", r.chance(0.5)
	}
	if p.resident {
		if r.chance(0.9) {
			p.age = 75 + r.intn(26)
		} else {
			p.age = 60 + r.intn(15)
		}
	} else {
		dec := r.pickSmall(10, 8, 9, 11, 12, 13, 13, 12, 9, 3)
		if dec == 9 {
			p.age = 90 + r.intn(11)
		} else {
			p.age = dec*10 + r.intn(10)
		}
	}
	p.birthDay = g.nowDay - int64(float64(p.age)*365.2425) - 1 - int64(r.intn(364))
	p.birthT = p.birthDay * daySec

	// Deceased (older patients more likely).
	var dp float64
	switch {
	case p.age < 40:
		dp = 0.003
	case p.age < 60:
		dp = 0.01
	case p.age < 75:
		dp = 0.03
	case p.age < 85:
		dp = 0.055
	default:
		dp = 0.10
	}
	if p.resident {
		dp *= 1.5
	}
	p.deceased = r.chance(dp)

	// Names.
	by, _, _ := civilFromDays(p.birthDay)
	p.given = pickGiven(r, p.female, birthEra(by))
	p.family = pickFamily(r)

	g.planEncounters(&p)

	// Invoice for the finished encounters at one facility.
	if r.chance(0.6) {
		p.invFac = p.home
		n := 0
		for k := 0; k < p.nEnc; k++ {
			if p.encs[k].fac == p.invFac && !p.encs[k].inProgress {
				n++
			}
		}
		if n == 0 && p.second >= 0 {
			p.invFac = p.second
			for k := 0; k < p.nEnc; k++ {
				if p.encs[k].fac == p.invFac && !p.encs[k].inProgress {
					n++
				}
			}
		}
		if n > 0 {
			p.invoice = true
			for k := 0; k < p.nEnc; k++ {
				e := &p.encs[k]
				if e.fac == p.invFac && !e.inProgress {
					e.billed = true
				}
			}
		}
	}

	if err := emit(g.patientResource(&p)); err != nil {
		return err
	}
	for k := 0; k < p.nEnc; k++ {
		if err := emit(g.encounterResource(&p, k)); err != nil {
			return err
		}
		if err := emit(g.chargeItemResource(&p, k)); err != nil {
			return err
		}
	}
	careTeamP := 0.27
	if p.resident {
		careTeamP = 1
	}
	if r.chance(careTeamP) {
		if err := emit(g.careTeamResource(&p)); err != nil {
			return err
		}
	}
	var conds [maxCond]condRef
	nc := g.pickConditions(&p, conds[:])
	for k := 0; k < nc; k++ {
		if err := emit(g.conditionResource(&p, &conds[k])); err != nil {
			return err
		}
	}
	if err := g.observations(&p, emit); err != nil {
		return err
	}
	if err := g.medications(&p, conds[:nc], emit); err != nil {
		return err
	}
	if p.invoice {
		if err := emit(g.invoiceResource(&p)); err != nil {
			return err
		}
	}
	return nil
}

func (g *Group) pickPhysician(p *patientPlan, f int) int32 {
	if f == p.home && p.r.chance(0.6) {
		return p.gp
	}
	l := g.fac[f].physicians
	return l[p.r.intn(len(l))]
}

func (g *Group) planEncounters(p *patientPlan) {
	r := &p.r
	p.nEnc = 1 + r.pickSmall(55, 30, 15)
	secondP := 0.12
	if p.resident {
		secondP = 0.35
	}
	if r.chance(secondP) {
		if p.resident {
			p.second = g.clinicIdx[r.intn(len(g.clinicIdx))]
		} else {
			p.second = g.secondFacility(r, p.home)
		}
		if p.nEnc < 2 {
			p.nEnc = 2
		}
	}
	earliest := g.now - int64(5*year)
	if p.birthT > earliest {
		earliest = p.birthT
	}
	windowDays := int((g.now - earliest) / daySec)
	for k := 0; k < p.nEnc; k++ {
		e := &p.encs[k]
		e.fac = p.home
		if k == p.nEnc-1 && p.second >= 0 {
			e.fac = p.second
		}
		switch facilitySpecs[e.fac].kind {
		case kindClinic:
			e.class = r.pickSmall(55, 17, 28)
			if p.resident {
				e.class = 1 + r.intn(2)
			}
		default:
			e.class = classAMB
		}
		// duration
		var dur int64
		switch e.class {
		case classAMB:
			dur = int64(15+r.intn(46)) * 60
		case classEMER:
			dur = int64(60+r.intn(8*60)) * 60
		default:
			dur = int64(1+r.intn(10)) * daySec
		}
		minDays := int(dur/daySec) + 1
		if minDays > windowDays && e.class == classIMP {
			e.class = classAMB
			dur = int64(15+r.intn(46)) * 60
			minDays = 1
		}
		// recent encounters are more likely
		u := r.float()
		span := windowDays - minDays
		d := minDays
		if span > 0 {
			d += int(u * u * float64(span+1))
		}
		day := (g.nowDay - int64(d)) * daySec
		mid := localMidnight(day + 12*3600)
		var tod int64
		switch e.class {
		case classAMB:
			tod = int64(8*60+r.intn(10*60+30)) * 60
		case classEMER:
			tod = int64(r.intn(24*60)) * 60
		default:
			tod = int64(7*60+r.intn(11*60)) * 60
		}
		e.start = mid + tod
		if e.start < p.birthT {
			e.start = p.birthT + int64(r.intn(12*60))*60
		}
		e.end = e.start + dur
		if e.class == classIMP {
			// discharge late morning
			e.end = localMidnight(e.end) + int64(10*60+r.intn(4*60))*60
			if e.end <= e.start {
				e.end = e.start + 4*3600
			}
		}
		if e.end > g.now-3600 {
			e.end = g.now - 3600
			if e.start >= e.end {
				e.start = e.end - 30*60
			}
		}
		e.qty = 1
		if e.class == classIMP {
			e.qty = int((e.end-e.start)/daySec) + 1
		}
	}
	// chronological order (at most 3 entries)
	for a := 1; a < p.nEnc; a++ {
		for b := a; b > 0 && p.encs[b].start < p.encs[b-1].start; b-- {
			p.encs[b], p.encs[b-1] = p.encs[b-1], p.encs[b]
		}
	}
	last := &p.encs[p.nEnc-1]
	if !p.deceased && r.chance(0.025) {
		// a recent encounter still in progress
		last.inProgress = true
		switch facilitySpecs[last.fac].kind {
		case kindClinic:
			if r.chance(0.5) {
				last.class = classEMER
				last.start = g.now - int64(20+r.intn(10*60))*60
			} else {
				last.class = classIMP
				last.start = g.now - int64(2*60+r.intn(5*24*60))*60
			}
		default:
			last.class = classAMB
			last.start = g.now - int64(5+r.intn(40))*60
		}
		if last.start < p.birthT {
			last.start = p.birthT
		}
		last.end = 0
		last.qty = 1
		if p.nEnc > 1 && p.encs[p.nEnc-2].end > last.start {
			p.encs[p.nEnc-2].end = last.start - 3600
			if p.encs[p.nEnc-2].end <= p.encs[p.nEnc-2].start {
				p.encs[p.nEnc-2].start = p.encs[p.nEnc-2].end - 30*60
			}
		}
	}
	for k := 0; k < p.nEnc; k++ {
		e := &p.encs[k]
		e.phys = g.pickPhysician(p, e.fac)
		nurseP := 0.7
		switch {
		case e.class != classAMB || facilitySpecs[e.fac].kind == kindRetirement:
			nurseP = 0.95
		case facilitySpecs[e.fac].kind == kindHealthCentre:
			nurseP = 0.4
		}
		e.nurse = -1
		if r.chance(nurseP) {
			l := g.fac[e.fac].nurses
			e.nurse = l[r.intn(len(l))]
		}
		var acts []act
		switch {
		case facilitySpecs[e.fac].kind == kindRetirement:
			acts = ehpadActs
		case e.class == classAMB:
			acts = ambActs
		case e.class == classEMER:
			acts = emerActs
		default:
			acts = impActs
		}
		e.act = &acts[r.intn(len(acts))]
		e.id = g.nextID(p)
		e.ref = "Encounter/" + e.id
		e.chargeID = g.nextID(p)
	}
	if p.deceased {
		lastEnd := last.end
		if lastEnd < p.birthT {
			lastEnd = p.birthT
		}
		span := g.now - lastEnd
		if span > 2*365*daySec {
			span = 2 * 365 * daySec
		}
		p.deathT = lastEnd + int64(r.float()*float64(span))
		if p.deathT >= g.now {
			p.deathT = g.now - 60
		}
	}
}

// ---- Patient --------------------------------------------------------------

func (g *Group) nir(p *patientPlan) string {
	r := &p.r
	sex := uint64(1)
	if p.female {
		sex = 2
	}
	y, m, _ := civilFromDays(p.birthDay)
	dept := nirDepts[r.pickCum(nirDeptCum)].code
	// (commune, order) come from a keyed permutation of the patient index so
	// that INS values are unique for up to 998,001 patients.
	var commune, order uint64
	pi := g.perm(uint64(p.i), 998001, 0x1A5)
	commune = 1 + pi/999
	order = 1 + pi%999
	if dept == "99" {
		c := nirCountries[r.intn(len(nirCountries))]
		commune = uint64(c[0]-'0')*100 + uint64(c[1]-'0')*10 + uint64(c[2]-'0')
	}
	d := uint64(dept[0]-'0')*10 + uint64(dept[1]-'0')
	n := sex
	n = n*100 + uint64(y%100)
	n = n*100 + uint64(m)
	n = n*100 + d
	n = n*1000 + commune
	n = n*1000 + order
	key := 97 - n%97
	var buf [15]byte
	b := appendUint(buf[:0], n, 13)
	b = appendUint(b, key, 2)
	return string(b)
}

// perm is a keyed bijection on [0, n) for n <= 2^24 (cycle-walking over a
// 24-bit permutation). For x >= n it returns x unchanged.
func (g *Group) perm(x, n, tweak uint64) uint64 {
	if x >= n {
		return x
	}
	const mask = 1<<24 - 1
	k := mix64(g.key ^ tweak)
	for {
		for round := 0; round < 3; round++ {
			x = (x ^ (k >> (round * 16))) & mask
			x = (x * 0x9E3779B1) & mask // odd multiplier: bijective mod 2^24
			x ^= x >> 11
			x = (x * 0x2C1B3C6D) & mask
			x ^= x >> 13
		}
		if x < n {
			return x
		}
	}
}

func (g *Group) ipp(p *patientPlan, f int) string {
	fi := &g.fac[f]
	v := g.perm(uint64(p.i), 10000000, 0x1BB0+uint64(f))
	var buf [16]byte
	b := append(buf[:0], fi.ippPrefix...)
	b = appendUint(b, v, 7)
	return string(b)
}

func (g *Group) phone(r *rng, mobile bool) string {
	var buf [17]byte
	var b []byte
	if mobile {
		b = append(buf[:0], "+33 6 39 98 "...)
	} else {
		b = append(buf[:0], "01 99 00 "...)
	}
	b = append2(b, r.intn(100))
	b = append(b, ' ')
	b = append2(b, r.intn(100))
	return string(b)
}

func (g *Group) email(p *patientPlan) string {
	r := &p.r
	gn, fn := p.given.email, p.family.user
	var buf [64]byte
	b := buf[:0]
	switch r.intn(4) {
	case 0:
		b = append(b, gn...)
		b = append(b, '.')
		b = append(b, fn...)
	case 1:
		b = append(b, gn[0], '.')
		b = append(b, fn...)
	case 2:
		b = append(b, fn...)
		b = append(b, '.')
		b = append(b, gn...)
	default:
		b = append(b, gn...)
		b = append(b, fn...)
		b = append2(b, r.intn(100))
	}
	b = append(b, '@')
	b = append(b, emailDomains[r.intn(emailDoms)]...)
	return string(b)
}

func (g *Group) address(p *patientPlan) map[string]any {
	r := &p.r
	if p.resident {
		fi := &g.fac[p.home]
		c := &cities[fi.cityIdx]
		return map[string]any{
			"use": "home", "type": "physical",
			"line": []any{fi.spec.line}, "city": c.name, "postalCode": c.postal, "country": "FR",
		}
	}
	var ci int
	if r.chance(0.65) {
		d := g.fac[p.home].dept
		ci = deptCities[d][r.pickCum(deptCityCum[d])]
	} else {
		ci = r.pickCum(cityCum)
	}
	c := &cities[ci]
	streets := suburbStreets
	if c.dept == "75" {
		streets = parisStreets
	}
	var buf [64]byte
	b := appendUint(buf[:0], uint64(1+r.intn(180)), 1)
	if r.chance(0.06) {
		b = append(b, " bis"...)
	}
	b = append(b, ' ')
	b = append(b, streets[r.intn(len(streets))]...)
	return map[string]any{
		"use": "home", "type": "physical",
		"line": []any{string(b)}, "city": c.name, "postalCode": c.postal, "country": "FR",
	}
}

func (g *Group) patientResource(p *patientPlan) map[string]any {
	r := &p.r
	idents := make([]any, 0, 3)
	idents = append(idents, map[string]any{
		"use":    "official",
		"system": sysINSNIR,
		"value":  g.nir(p),
	})
	// one IPP per facility visited (home facility first)
	var seen [maxEnc + 1]int
	ns := 0
	add := func(f int) {
		for k := 0; k < ns; k++ {
			if seen[k] == f {
				return
			}
		}
		seen[ns] = f
		ns++
		idents = append(idents, map[string]any{
			"use":    "usual",
			"system": g.fac[f].ippSystem,
			"value":  g.ipp(p, f),
		})
	}
	add(p.home)
	for k := 0; k < p.nEnc; k++ {
		add(p.encs[k].fac)
	}

	telecom := make([]any, 0, 3)
	if p.age >= 12 && r.chance(0.92) {
		telecom = append(telecom, map[string]any{"system": "phone", "value": g.phone(r, true), "use": "mobile"})
	}
	if r.chance(0.15 + float64(p.age)/200) {
		telecom = append(telecom, map[string]any{"system": "phone", "value": g.phone(r, false), "use": "home"})
	}
	if p.age >= 15 && r.chance(0.85-float64(p.age)/250) {
		telecom = append(telecom, map[string]any{"system": "email", "value": g.email(p), "use": "home"})
	}
	if len(telecom) == 0 && p.age < 12 {
		// parents' phone
		telecom = append(telecom, map[string]any{"system": "phone", "value": g.phone(r, true), "use": "mobile"})
	}

	res := map[string]any{
		"resourceType": "Patient",
		"id":           p.id,
		"identifier":   idents,
		"active":       true,
		"name": []any{map[string]any{
			"use":    "official",
			"family": p.family.name,
			"given":  []any{p.given.name},
		}},
		"gender":               p.gender,
		"birthDate":            fmtDate(p.birthDay),
		"address":              []any{g.address(p)},
		"generalPractitioner":  []any{ref(g.st[p.gp].ref)},
		"managingOrganization": ref(g.fac[p.home].ref),
	}
	if len(telecom) > 0 {
		res["telecom"] = telecom
	}
	if p.deceased {
		res["deceasedDateTime"] = fmtDateTime(p.deathT)
	}
	return res
}

// ---- Encounter & ChargeItem ---------------------------------------------------

func (g *Group) encounterResource(p *patientPlan, k int) map[string]any {
	e := &p.encs[k]
	parts := make([]any, 0, 2)
	parts = append(parts, map[string]any{"individual": ref(g.st[e.phys].ref)})
	if e.nurse >= 0 {
		parts = append(parts, map[string]any{"individual": ref(g.st[e.nurse].ref)})
	}
	e.startStr = fmtDateTime(e.start)
	period := map[string]any{"start": e.startStr}
	status := "in-progress"
	if !e.inProgress {
		status = "finished"
		period["end"] = fmtDateTime(e.end)
	}
	return map[string]any{
		"resourceType":    "Encounter",
		"id":              e.id,
		"status":          status,
		"class":           coding(sysActCode, classCodes[e.class], classDisplays[e.class]),
		"subject":         ref(p.ref),
		"participant":     parts,
		"period":          period,
		"serviceProvider": ref(g.fac[e.fac].ref),
	}
}

func money(v float64) map[string]any {
	return map[string]any{"value": math.Round(v*100) / 100, "currency": "EUR"}
}

func (g *Group) price(e *encPlan) float64 {
	return math.Round(e.act.price*float64(e.qty)*100) / 100
}

func (g *Group) chargeItemResource(p *patientPlan, k int) map[string]any {
	e := &p.encs[k]
	status := "billable"
	if e.billed {
		status = "billed"
	}
	return map[string]any{
		"resourceType":           "ChargeItem",
		"id":                     e.chargeID,
		"status":                 status,
		"code":                   concept(sysCCAM, e.act.code, e.act.display, ""),
		"subject":                ref(p.ref),
		"context":                ref(e.ref),
		"occurrenceDateTime":     e.startStr,
		"performingOrganization": ref(g.fac[e.fac].ref),
		"priceOverride":          money(g.price(e)),
	}
}

func (g *Group) invoiceResource(p *patientPlan) map[string]any {
	r := &p.r
	lines := make([]any, 0, maxEnc)
	var total float64
	var lastEnd int64
	for k := 0; k < p.nEnc; k++ {
		e := &p.encs[k]
		if !e.billed {
			continue
		}
		pr := g.price(e)
		total += pr
		if e.end > lastEnd {
			lastEnd = e.end
		}
		lines = append(lines, map[string]any{
			"sequence":            len(lines) + 1,
			"chargeItemReference": ref("ChargeItem/" + e.chargeID),
		})
	}
	date := lastEnd + int64(1+r.intn(20))*daySec
	if date > g.now-3600 {
		date = g.now - 3600
	}
	status := "issued"
	if g.now-date > 60*daySec && r.chance(0.85) {
		status = "balanced"
	}
	return map[string]any{
		"resourceType": "Invoice",
		"id":           g.nextID(p),
		"status":       status,
		"subject":      ref(p.ref),
		"issuer":       ref(g.fac[p.invFac].ref),
		"date":         fmtDateTime(date),
		"lineItem":     lines,
		"totalNet":     money(total),
		"totalGross":   money(total),
	}
}

// ---- CareTeam -----------------------------------------------------------------

func roleConcept(role string) map[string]any {
	return concept(sysRole, role, roleDisplay[role], "")
}

func (g *Group) careTeamResource(p *patientPlan) map[string]any {
	r := &p.r
	hf := &g.fac[p.home]
	parts := make([]any, 0, 3)
	parts = append(parts, map[string]any{
		"role":   []any{roleConcept(RolePhysician)},
		"member": ref(g.st[p.gp].ref),
	})
	n1 := hf.nurses[r.intn(len(hf.nurses))]
	parts = append(parts, map[string]any{
		"role":   []any{roleConcept(RoleNurse)},
		"member": ref(g.st[n1].ref),
	})
	if r.chance(0.4) {
		n2 := hf.nurses[r.intn(len(hf.nurses))]
		if n2 != n1 {
			parts = append(parts, map[string]any{
				"role":   []any{roleConcept(RoleNurse)},
				"member": ref(g.st[n2].ref),
			})
		}
	}
	status := "active"
	period := map[string]any{"start": fmtDateTime(p.encs[0].start)}
	if p.deceased {
		status = "inactive"
		period["end"] = fmtDateTime(p.deathT)
	}
	var buf [96]byte
	name := append(buf[:0], "Équipe de soins – "...)
	name = append(name, p.given.name...)
	name = append(name, ' ')
	name = append(name, p.family.name...)
	return map[string]any{
		"resourceType":         "CareTeam",
		"id":                   g.nextID(p),
		"status":               status,
		"name":                 string(name),
		"subject":              ref(p.ref),
		"period":               period,
		"participant":          parts,
		"managingOrganization": []any{ref(hf.ref)},
	}
}

// ---- Condition ------------------------------------------------------------------

type condRef struct {
	cond int
	enc  int
	id   string
}

func (g *Group) pickConditions(p *patientPlan, out []condRef) int {
	r := &p.r
	n := r.pickSmall(35, 40, 25)
	if p.resident && n == 0 {
		n = 1
	}
	got := 0
	for k := 0; k < n; k++ {
		c := -1
		for try := 0; try < 8; try++ {
			x := r.pickCum(condCum)
			cd := &conditions[x]
			if p.age < cd.minAge || p.age > cd.maxAge {
				continue
			}
			if (cd.sex == 1 && p.female) || (cd.sex == 2 && !p.female) {
				continue
			}
			if got > 0 && out[0].cond == x {
				continue
			}
			c = x
			break
		}
		if c < 0 {
			continue
		}
		enc := r.intn(p.nEnc)
		if !conditions[c].chronic {
			// acute problems preferably on an emergency or inpatient stay
			for j := 0; j < p.nEnc; j++ {
				if p.encs[j].class != classAMB {
					enc = j
					break
				}
			}
		}
		out[got] = condRef{cond: c, enc: enc, id: g.nextID(p)}
		got++
	}
	return got
}

func (g *Group) conditionResource(p *patientPlan, c *condRef) map[string]any {
	r := &p.r
	cd := &conditions[c.cond]
	e := &p.encs[c.enc]
	recorded := e.start + int64(10+r.intn(30))*60
	if !e.inProgress && recorded > e.end {
		recorded = e.end
	}
	if recorded > g.now {
		recorded = g.now
	}
	var onset int64
	if cd.chronic {
		maxYears := p.age - cd.minAge
		if maxYears > 15 {
			maxYears = 15
		}
		onset = recorded - int64(r.float()*float64(maxYears)*year) - int64(r.intn(60))*daySec
	} else {
		onset = e.start - int64(r.intn(72*60))*60
	}
	if onset < p.birthT {
		onset = p.birthT
	}
	clin := "active"
	var abatement int64
	switch {
	case cd.chronic && (cd.code == "C50.9" || cd.code == "C61") && r.chance(0.3):
		clin = "remission"
	case !cd.chronic && !e.inProgress && g.now-e.end > 45*daySec:
		clin = "resolved"
		abatement = e.end + int64(r.intn(30))*daySec
		if abatement > g.now {
			abatement = g.now - 3600
		}
	}
	ver := "confirmed"
	if r.chance(0.08) {
		ver = "provisional"
	}
	res := map[string]any{
		"resourceType":       "Condition",
		"id":                 c.id,
		"clinicalStatus":     concept(sysCondClin, clin, clinDisplay(clin), ""),
		"verificationStatus": concept(sysCondVer, ver, verDisplay(ver), ""),
		"code":               concept(sysICD10, cd.code, cd.display, ""),
		"subject":            ref(p.ref),
		"encounter":          ref(e.ref),
		"onsetDateTime":      fmtDateTime(onset),
		"recordedDate":       fmtDateTime(recorded),
	}
	if abatement != 0 {
		res["abatementDateTime"] = fmtDateTime(abatement)
	}
	return res
}

func clinDisplay(s string) string {
	switch s {
	case "active":
		return "Active"
	case "remission":
		return "Remission"
	}
	return "Resolved"
}

func verDisplay(s string) string {
	if s == "confirmed" {
		return "Confirmed"
	}
	return "Provisional"
}

// ---- Observation ----------------------------------------------------------

func (g *Group) vitalValue(p *patientPlan, v int) float64 {
	r := &p.r
	a := float64(p.age)
	switch v {
	case vitHeartRate:
		if p.age < 2 {
			return float64(100 + r.intn(50))
		}
		if p.age < 12 {
			return float64(75 + r.intn(45))
		}
		return float64(55 + r.intn(45))
	case vitSystolic:
		if p.age < 12 {
			return float64(90 + r.intn(25))
		}
		return float64(100 + int(a*0.45) + r.intn(35))
	case vitDiastolic:
		if p.age < 12 {
			return float64(50 + r.intn(20))
		}
		return float64(60 + r.intn(30))
	case vitWeight:
		var w float64
		switch {
		case p.age < 1:
			w = 3.3 + r.float()*6
		case p.age < 16:
			w = 8 + a*3.1 + r.float()*8
		case p.female:
			w = 48 + r.float()*40
		default:
			w = 60 + r.float()*45
		}
		return math.Round(w*10) / 10
	case vitHeight:
		var h float64
		switch {
		case p.age < 1:
			h = 50 + r.float()*25
		case p.age < 16:
			h = 75 + a*6 + r.float()*10
		case p.female:
			h = 152 + r.float()*25
		default:
			h = 163 + r.float()*28
		}
		return math.Round(h)
	case vitTemp:
		t := 36.2 + r.float()*1.0
		if r.chance(0.15) {
			t += 1 + r.float()*1.8
		}
		return math.Round(t*10) / 10
	case vitSpO2:
		return float64(93 + r.intn(8))
	default: // respiratory rate
		if p.age < 2 {
			return float64(30 + r.intn(20))
		}
		return float64(12 + r.intn(9))
	}
}

var vitalCum = func() []uint32 {
	w := make([]float64, len(vitals))
	for i, v := range vitals {
		w[i] = float64(v.weight)
	}
	return cumulative(w, 1)
}()

func (g *Group) observations(p *patientPlan, emit func(map[string]any) error) error {
	r := &p.r
	n := 1 + r.pickSmall(50, 35, 15)
	var used [maxObs]int
	for k := 0; k < n; k++ {
		v := r.pickCum(vitalCum)
		dup := false
		for j := 0; j < k; j++ {
			if used[j] == v {
				dup = true
			}
		}
		if dup {
			v = (v + 1) % len(vitals)
			for j := 0; j < k; j++ {
				if used[j] == v {
					v = (v + 1) % len(vitals)
				}
			}
		}
		used[k] = v
		vi := &vitals[v]
		e := &p.encs[r.intn(p.nEnc)]
		eff := e.start + int64(5+r.intn(25))*60
		if !e.inProgress && eff > e.end {
			eff = e.end
		}
		if eff > g.now {
			eff = g.now
		}
		perf := e.nurse
		if perf < 0 {
			perf = e.phys
		}
		if err := emit(map[string]any{
			"resourceType":      "Observation",
			"id":                g.nextID(p),
			"status":            "final",
			"category":          []any{concept(sysObsCat, "vital-signs", "Vital Signs", "")},
			"code":              concept(sysLOINC, vi.loinc, vi.display, vi.text),
			"subject":           ref(p.ref),
			"encounter":         ref(e.ref),
			"effectiveDateTime": fmtDateTime(eff),
			"performer":         []any{ref(g.st[perf].ref)},
			"valueQuantity": map[string]any{
				"value":  g.vitalValue(p, v),
				"unit":   vi.unit,
				"system": sysUCUM,
				"code":   vi.ucum,
			},
		}); err != nil {
			return err
		}
	}
	return nil
}

// ---- MedicationRequest -------------------------------------------------------

func (g *Group) medications(p *patientPlan, conds []condRef, emit func(map[string]any) error) error {
	r := &p.r
	n := r.pickSmall(35, 30, 20, 15)
	var used [maxMeds]int
	got := 0
	for k := 0; k < n; k++ {
		med := -1
		var cref *condRef
		if k < len(conds) && len(condMedIdx[conds[k].cond]) > 0 {
			l := condMedIdx[conds[k].cond]
			med = l[r.intn(len(l))]
			cref = &conds[k]
		} else {
			med = genericMedIdx[r.intn(len(genericMedIdx))]
		}
		med = adaptMed(med, p.age)
		dup := false
		for j := 0; j < got; j++ {
			if used[j] == med {
				dup = true
			}
		}
		if dup {
			continue
		}
		used[got] = med
		got++
		m := &medications[med]
		var e *encPlan
		if cref != nil {
			e = &p.encs[cref.enc]
		} else {
			e = &p.encs[r.intn(p.nEnc)]
		}
		authored := e.start + int64(15+r.intn(40))*60
		if !e.inProgress && authored > e.end {
			authored = e.end
		}
		if authored > g.now {
			authored = g.now
		}
		var status string
		switch {
		case p.deceased:
			if m.course {
				status = "completed"
			} else {
				status = "stopped"
			}
		case m.course:
			if g.now-authored < 30*daySec {
				status = "active"
			} else if r.chance(0.9) {
				status = "completed"
			} else {
				status = "stopped"
			}
		default:
			if r.chance(0.85) {
				status = "active"
			} else {
				status = "stopped"
			}
		}
		res := map[string]any{
			"resourceType":              "MedicationRequest",
			"id":                        g.nextID(p),
			"status":                    status,
			"intent":                    "order",
			"medicationCodeableConcept": concept(sysATC, m.atc, m.name, ""),
			"subject":                   ref(p.ref),
			"encounter":                 ref(e.ref),
			"authoredOn":                fmtDateTime(authored),
			"requester":                 ref(g.st[e.phys].ref),
			"dosageInstruction":         []any{map[string]any{"text": m.dosage}},
		}
		if cref != nil {
			res["reasonReference"] = []any{ref("Condition/" + cref.id)}
		}
		if err := emit(res); err != nil {
			return err
		}
	}
	return nil
}
