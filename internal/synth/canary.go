package synth

import (
	"encoding/binary"
	"fmt"
)

// FakePerson is an invented person, drawn from the same name, street and
// city lists as the synthetic group, for the canary rows that watermark a
// bulk export (internal/incident): it must look like the patients around
// it, and exist nowhere else.
type FakePerson struct {
	Family, Given string
	Gender        string // "male" or "female"
	BirthDate     string // YYYY-MM-DD
	Phone         string // mobile, international form "+33 6 12 34 56 78"
	Email         string
	Line          string // "12 rue de Vaugirard"
	City          string
	PostalCode    string
}

// NewFakePerson derives a person from seed alone (for instance an HMAC of a
// secret key): the same seed gives the same person. The phone number has
// eight seed-derived digits and the e-mail address a seed-derived suffix,
// so that a canary is not mistaken for a real patient who happens to share
// its name.
func NewFakePerson(seed []byte) FakePerson {
	var s uint64 = 0x6A09E667F3BCC908
	for len(seed) > 0 {
		var b [8]byte
		n := copy(b[:], seed)
		seed = seed[n:]
		s = mix64(s ^ binary.LittleEndian.Uint64(b[:]))
	}
	r := newRNG(s)
	var p FakePerson
	female := r.intn(2) == 0
	p.Gender = "male"
	if female {
		p.Gender = "female"
	}
	year := r.rangeInt(1938, 2006)
	month := r.rangeInt(1, 12)
	day := r.rangeInt(1, 28)
	p.BirthDate = fmt.Sprintf("%04d-%02d-%02d", year, month, day)
	fam := pickFamily(&r)
	giv := pickGiven(&r, female, birthEra(year))
	p.Family, p.Given = fam.name, giv.name

	mobile := "6"
	if r.intn(3) == 0 {
		mobile = "7"
	}
	p.Phone = fmt.Sprintf("+33 %s %02d %02d %02d %02d", mobile, r.intn(100), r.intn(100), r.intn(100), r.intn(100))
	p.Email = fmt.Sprintf("%s.%s%d@%s", giv.email, fam.user, 10+r.intn(90), emailDomains[r.intn(emailDoms)])

	c := &cities[r.pickCum(cityCum)]
	streets := suburbStreets
	if c.dept == "75" {
		streets = parisStreets
	}
	p.Line = fmt.Sprintf("%d %s", 1+r.intn(180), streets[r.intn(len(streets))])
	p.City, p.PostalCode = c.name, c.postal
	return p
}
