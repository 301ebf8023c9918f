package incident

// Watermarks: every bulk export carries a fingerprint derived from a random
// key of its own (store.ExportRequest.WatermarkKey), so that a leaked
// sample of a few rows names the export it came from (Trace).
//
// Three signals, from the cheapest to strip to the hardest:
//
//   - a meta.tag (system TagSystem) whose code is derived from the key:
//     one look identifies the export, and one line of sed removes it;
//   - two or three canary rows: invented patients (synth.NewFakePerson of
//     an HMAC of the key) at key-derived positions among the real Patient
//     rows. They exist in no database and in no other export: a leaked
//     canary names its export with certainty;
//   - value variations on the real rows that change no clinical meaning,
//     each chosen by HMAC-SHA-256(key, dimension, value): the format of
//     every French phone number (6 forms, 2.6 bits), family names, given
//     names and cities as stored or in capitals (1 bit each), the street type of an address
//     line written out or abbreviated ("rue"/"r.", "avenue"/"av.", 1 bit),
//     phones before e-mails or after (1 bit, JSON only), and the JSON key
//     order of every resource (1 bit, JSON only). A few rows carry tens of
//     bits: enough to tell an export from thousands of others with the
//     same patients, and they survive conversion to CSV, reordering and
//     dropped columns.
//
// The choice for a value depends on the key and on the value itself (the
// digits of a phone, the family name folded to lower case, the address
// line with its street type written out), never on its form: the trace
// recomputes it from the leaked value alone, without the database.
// Identifiers, dates, codes, quantities and every clinical element are
// left exactly as stored.

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash"
	"math"
	"slices"
	"strings"
	"time"
	"unicode"

	"carnet/internal/fhir"
	"carnet/internal/synth"
)

// TagSystem is the meta.tag system of an export's tag.
const TagSystem = "urn:carnet:export"

// Variation dimensions and how many forms each has.
const (
	dimPhone   = "phone"   // "+33 1 23 45 67 89", "01 23 45 67 89", "0123456789", "01.23.45.67.89", "+33123456789", "01-23-45-67-89"
	dimFamily  = "family"  // as stored, or in capitals
	dimGiven   = "given"   // as stored, or in capitals
	dimCity    = "city"    // as stored, or in capitals
	dimStreet  = "street"  // street type written out, or abbreviated
	dimTelecom = "telecom" // phones first, or e-mails first
	dimKeys    = "keys"    // "resourceType" first, or keys sorted
)

var dimForms = map[string]int{dimPhone: 6, dimFamily: 2, dimGiven: 2, dimCity: 2, dimStreet: 2, dimTelecom: 2, dimKeys: 2}

// Watermark is one export's fingerprint. It is not safe for concurrent
// use (one per export stream or per trace candidate).
type Watermark struct {
	mac     hash.Hash // HMAC-SHA-256 under the export key
	in, buf []byte
}

// NewWatermark returns the watermark of an export key (at least 16 bytes).
func NewWatermark(key []byte) (*Watermark, error) {
	if len(key) < 16 {
		return nil, errors.New("incident: a watermark key has at least 16 bytes")
	}
	return &Watermark{mac: hmac.New(sha256.New, bytes.Clone(key))}, nil
}

// sum is HMAC-SHA-256(key, parts joined by NUL), in a buffer that the next
// call reuses.
func (w *Watermark) sum(parts ...string) []byte {
	w.in = w.in[:0]
	for i, p := range parts {
		if i > 0 {
			w.in = append(w.in, 0)
		}
		w.in = append(w.in, p...)
	}
	w.mac.Reset()
	w.mac.Write(w.in)
	w.buf = w.mac.Sum(w.buf[:0])
	return w.buf
}

// choice is the form this export gives to value seed in dimension dim.
func (w *Watermark) choice(dim, seed string) int {
	h := w.sum("variation", dim, seed)
	return int(binary.BigEndian.Uint64(h) % uint64(dimForms[dim]))
}

// Tag is the export's meta.tag code (48 bits).
func (w *Watermark) Tag() string {
	return hex.EncodeToString(w.sum("tag")[:6])
}

// Mark watermarks one resource of the export, changing res (a parsed copy
// of the stored JSON), and returns its JSON (one NDJSON line, without the
// newline).
func (w *Watermark) Mark(res fhir.Resource) ([]byte, error) {
	w.markPerson(res)
	meta, _ := res["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		res["meta"] = meta
	}
	tags, _ := meta["tag"].([]any)
	meta["tag"] = append(tags, map[string]any{"system": TagSystem, "code": w.Tag()})
	typ, id := fhir.Type(res), fhir.ID(res)
	if w.choice(dimKeys, typ+"/"+id) == 1 || typ == "" {
		return fhir.Marshal(res)
	}
	// "resourceType" first, then the other keys in order.
	b := append(make([]byte, 0, 1024), `{"resourceType":`...)
	v, err := fhir.Marshal(typ)
	if err != nil {
		return nil, err
	}
	b = append(b, v...)
	keys := make([]string, 0, len(res))
	for k := range res {
		if k != "resourceType" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		kb, err := fhir.Marshal(k)
		if err != nil {
			return nil, err
		}
		vb, err := fhir.Marshal(res[k])
		if err != nil {
			return nil, err
		}
		b = append(append(append(append(b, ','), kb...), ':'), vb...)
	}
	return append(b, '}'), nil
}

// markPerson varies names, addresses and telecom of any resource that has
// them (Patient, RelatedPerson).
func (w *Watermark) markPerson(res fhir.Resource) {
	for _, n := range asList(res["name"]) {
		if fam, ok := n["family"].(string); ok {
			if seed := fold(fam); seed != "" {
				n["family"] = withCase(fam, w.choice(dimFamily, seed))
			}
		}
		if gs, ok := n["given"].([]any); ok {
			for i, g := range gs {
				if s, ok := g.(string); ok && fold(s) != "" {
					gs[i] = withCase(s, w.choice(dimGiven, fold(s)))
				}
			}
		}
	}
	for _, a := range asList(res["address"]) {
		if lines, ok := a["line"].([]any); ok {
			for i, l := range lines {
				if s, ok := l.(string); ok {
					if st, ok := parseStreet(s); ok {
						lines[i] = st.render(w.choice(dimStreet, st.norm))
					}
				}
			}
		}
		if city, ok := a["city"].(string); ok {
			if seed := fold(city); seed != "" {
				a["city"] = withCase(city, w.choice(dimCity, seed))
			}
		}
	}
	tel := asList(res["telecom"])
	hasPhone, hasEmail := false, false
	for _, t := range tel {
		switch t["system"] {
		case "phone":
			hasPhone = true
			if v, ok := t["value"].(string); ok {
				if nat, _, ok := parsePhone(v); ok {
					t["value"] = formatPhone(nat, w.choice(dimPhone, nat))
				}
			}
		case "email":
			hasEmail = true
		}
	}
	if hasPhone && hasEmail && fhir.ID(res) != "" {
		emailsFirst := w.choice(dimTelecom, fhir.ID(res)) == 1
		raw := res["telecom"].([]any)
		rank := func(v any) int {
			m, _ := v.(map[string]any)
			switch m["system"] {
			case "phone":
				if emailsFirst {
					return 1
				}
				return 0
			case "email":
				if emailsFirst {
					return 0
				}
				return 1
			}
			return 2
		}
		slices.SortStableFunc(raw, func(a, b any) int { return rank(a) - rank(b) })
	}
}

// asList returns the objects of a JSON array (or of a single object).
func asList(v any) []map[string]any {
	var out []map[string]any
	switch t := v.(type) {
	case []any:
		for _, e := range t {
			if m, ok := e.(map[string]any); ok {
				out = append(out, m)
			}
		}
	case map[string]any:
		out = append(out, t)
	}
	return out
}

// ---- forms of values --------------------------------------------------------

// fold is the form-independent key of a name: lower case, French accents
// removed, runs of spaces collapsed.
func fold(s string) string {
	var b strings.Builder
	space := false
	for _, r := range strings.ToLower(strings.TrimSpace(s)) {
		if unicode.IsSpace(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteString(unaccent(r))
	}
	return b.String()
}

func unaccent(r rune) string {
	switch r {
	case 'à', 'á', 'â', 'ä', 'ã', 'å':
		return "a"
	case 'ç':
		return "c"
	case 'é', 'è', 'ê', 'ë':
		return "e"
	case 'î', 'ï', 'í', 'ì':
		return "i"
	case 'ô', 'ö', 'ó', 'ò', 'õ':
		return "o"
	case 'ù', 'û', 'ü', 'ú':
		return "u"
	case 'ÿ':
		return "y"
	case 'ñ':
		return "n"
	case 'œ':
		return "oe"
	case 'æ':
		return "ae"
	}
	return string(r)
}

// caseForm is 1 if every letter of s is a capital (and s has at least two
// letters), 0 if some letter is lower case; ok is false with fewer than two
// letters.
func caseForm(s string) (form int, ok bool) {
	letters, lower := 0, false
	for _, r := range s {
		if unicode.IsLetter(r) {
			letters++
			if unicode.IsLower(r) {
				lower = true
			}
		}
	}
	if letters < 2 {
		return 0, false
	}
	if lower {
		return 0, true
	}
	return 1, true
}

// withCase gives s form 1 (capitals) or 0 (as stored; a name stored in
// capitals gets capitals at the start of each word).
func withCase(s string, form int) string {
	if form == 1 {
		return strings.ToUpper(s)
	}
	if f, ok := caseForm(s); ok && f == 1 {
		return titleCase(s)
	}
	return s
}

func titleCase(s string) string {
	var b strings.Builder
	start := true
	for _, r := range s {
		if start {
			b.WriteRune(unicode.ToUpper(r))
		} else {
			b.WriteRune(unicode.ToLower(r))
		}
		start = r == ' ' || r == '-' || r == '\''
	}
	return b.String()
}

// parsePhone reads a French number in any of the usual forms; nat is its
// national form (10 digits, leading 0) and form its presentation (0 to 3,
// formatPhone), or -1 for another presentation.
func parsePhone(s string) (nat string, form int, ok bool) {
	s = strings.TrimSpace(s)
	t := strings.ReplaceAll(strings.ReplaceAll(s, "(0)", ""), "\u00a0", " ")
	var digits []byte
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c >= '0' && c <= '9':
			digits = append(digits, c)
		case c == '+' && len(digits) == 0, c == ' ', c == '.', c == '-':
		default:
			return "", 0, false
		}
	}
	d := string(digits)
	switch {
	case strings.HasPrefix(t, "+33") && len(d) == 11:
		nat = "0" + d[2:]
	case strings.HasPrefix(t, "0033") && len(d) == 13:
		nat = "0" + d[4:]
	case strings.HasPrefix(t, "0") && len(d) == 10 && d[1] != '0':
		nat = d
	default:
		return "", 0, false
	}
	if nat[1] == '0' {
		return "", 0, false
	}
	form = -1
	for f := range dimForms[dimPhone] {
		if formatPhone(nat, f) == s {
			form = f
		}
	}
	return nat, form, true
}

// formatPhone renders a national number (10 digits) in form 0 to 5.
func formatPhone(nat string, form int) string {
	pairs := []string{nat[0:2], nat[2:4], nat[4:6], nat[6:8], nat[8:10]}
	switch form {
	case 0:
		return "+33 " + nat[1:2] + " " + strings.Join(pairs[1:], " ")
	case 1:
		return strings.Join(pairs, " ")
	case 2:
		return nat
	case 3:
		return strings.Join(pairs, ".")
	case 4:
		return "+33" + nat[1:]
	}
	return strings.Join(pairs, "-")
}

// Street types: written out, and the abbreviation the watermark uses.
var streetTypes = []struct{ full, abbr string }{
	{"rue", "r."}, {"avenue", "av."}, {"boulevard", "bd"}, {"place", "pl."}, {"allée", "all."},
	{"impasse", "imp."}, {"chemin", "ch."}, {"square", "sq."}, {"route", "rte"}, {"quai", "qu."},
	{"cours", "crs"}, {"passage", "pass."}, {"faubourg", "fg"}, {"sentier", "sent."}, {"résidence", "rés."},
}

// street is an address line split around its street type.
type street struct {
	before, after string // "12 bis", "de Vaugirard"
	kind          int    // index in streetTypes
	form          int    // 0 written out, 1 abbreviated
	capital       bool   // the street type starts with a capital
	norm          string // the form-independent key
}

// parseStreet finds the street type of an address line: the word after
// the house number (and bis, ter...), or the first word.
func parseStreet(line string) (street, bool) {
	words := strings.Fields(line)
	i := 0
	if i < len(words) && words[i][0] >= '0' && words[i][0] <= '9' {
		i++
		if i < len(words) && slices.Contains([]string{"bis", "ter", "quater", "b", "t"}, strings.ToLower(words[i])) {
			i++
		}
	}
	if i >= len(words) {
		return street{}, false
	}
	w := strings.ToLower(words[i])
	st := street{before: strings.Join(words[:i], " "), after: strings.Join(words[i+1:], " "), kind: -1}
	for k, t := range streetTypes {
		switch w {
		case t.full:
			st.kind, st.form = k, 0
		case t.abbr, strings.TrimSuffix(t.abbr, "."):
			st.kind, st.form = k, 1
		}
	}
	if st.kind < 0 {
		return street{}, false
	}
	st.capital = unicode.IsUpper([]rune(words[i])[0])
	st.norm = fold(strings.TrimSpace(st.before + " " + streetTypes[st.kind].full + " " + st.after))
	return st, true
}

// render writes the line with its street type in form (0 out, 1 abbreviated).
func (st street) render(form int) string {
	t := streetTypes[st.kind].full
	if form == 1 {
		t = streetTypes[st.kind].abbr
	}
	if st.capital {
		r := []rune(t)
		r[0] = unicode.ToUpper(r[0])
		t = string(r)
	}
	out := t
	if st.before != "" {
		out = st.before + " " + out
	}
	if st.after != "" {
		out += " " + st.after
	}
	return out
}

// ---- canaries ---------------------------------------------------------------

// Canary is one invented patient of an export.
type Canary struct {
	ID string
	synth.FakePerson
}

// Canaries returns the export's two or three canary patients.
func (w *Watermark) Canaries() []Canary {
	n := 2 + int(w.sum("canaries")[0]&1)
	out := make([]Canary, n)
	for i := range out {
		h := w.sum("canary", string(rune('0'+i)))
		id := h[:16]
		id[6] = id[6]&0x0f | 0x40
		id[8] = id[8]&0x3f | 0x80
		x := hex.EncodeToString(id)
		out[i] = Canary{ID: x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32], FakePerson: synth.NewFakePerson(h[16:])}
	}
	return out
}

// CanaryPositions returns where the canaries go among n real Patient rows:
// canary i is written before real row pos[i] (pos[i] == n: after the last).
// Sorted; no canaries for an export without patients.
func (w *Watermark) CanaryPositions(n int) []int {
	if n <= 0 {
		return nil
	}
	cs := w.Canaries()
	pos := make([]int, len(cs))
	for i := range cs {
		pos[i] = int(binary.BigEndian.Uint64(w.sum("canary-position", string(rune('0'+i)))) % uint64(n+1))
	}
	slices.Sort(pos)
	return pos
}

// CanaryResource builds canary c as a Patient of facility shaped like
// template (a real Patient of the same export, or nil): its local
// identifiers' systems, its attending physician and its lastUpdated (moved
// by a few key-derived milliseconds). The result still has to be Marked.
func (w *Watermark) CanaryResource(c Canary, template fhir.Resource, facility string) fhir.Resource {
	h := w.sum("canary-shape", c.ID)
	res := fhir.Resource{
		"resourceType": "Patient",
		"id":           c.ID,
		"active":       true,
		"name":         []any{map[string]any{"use": "official", "family": c.Family, "given": []any{c.Given}}},
		"gender":       c.Gender,
		"birthDate":    c.BirthDate,
		"telecom": []any{
			map[string]any{"system": "phone", "value": c.Phone, "use": "mobile"},
			map[string]any{"system": "email", "value": c.Email, "use": "home"},
		},
		"address": []any{map[string]any{"use": "home", "type": "physical", "line": []any{c.Line}, "city": c.City, "postalCode": c.PostalCode, "country": "FR"}},
	}
	if facility != "" {
		res["managingOrganization"] = map[string]any{"reference": "Organization/" + facility}
	}
	updated := time.Now().UTC().Add(-time.Duration(binary.BigEndian.Uint32(h[0:4])%(90*24*3600)) * time.Second)
	if template != nil {
		if meta, ok := template["meta"].(map[string]any); ok {
			if s, ok := meta["lastUpdated"].(string); ok {
				if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
					updated = t.Add(time.Duration(1+int(h[4])%250) * time.Millisecond)
				}
			}
		}
		if gp, ok := template["generalPractitioner"]; ok {
			res["generalPractitioner"] = gp
		}
		var ids []any
		k := 5
		for _, id := range asList(template["identifier"]) {
			v, _ := id["value"].(string)
			if id["use"] != "usual" || v == "" {
				continue // national identifiers (INS) are never invented
			}
			nv := []byte(v)
			for i := min(3, len(nv)-1); i < len(nv); i++ {
				if nv[i] >= '0' && nv[i] <= '9' {
					nv[i] = '0' + h[k%len(h)]%10
					k++
				}
			}
			ids = append(ids, map[string]any{"use": "usual", "system": id["system"], "value": string(nv)})
		}
		if len(ids) > 0 {
			res["identifier"] = ids
		}
	}
	res["meta"] = map[string]any{"versionId": "1", "lastUpdated": fhir.FormatInstant(updated)}
	return res
}

// ---- one export's stream ------------------------------------------------------

// Marker watermarks the rows of one export as they stream out, and puts
// the canaries among its Patient rows.
type Marker struct {
	w        *Watermark
	facility string
	canaries []Canary
	pos      []int
	written  int
	template fhir.Resource
}

// NewMarker returns the marker of an export of facility whose Patient rows
// number patients (the canaries' positions depend on it; 0 for a stream
// without Patient rows: no canaries).
func (w *Watermark) NewMarker(facility string, patients int) *Marker {
	return &Marker{w: w, facility: facility, canaries: w.Canaries(), pos: w.CanaryPositions(patients)}
}

// Row emits the canaries due before this row, then the row watermarked.
// res (a parsed copy of the stored JSON) is changed.
func (m *Marker) Row(res fhir.Resource, emit func(line []byte) error) error {
	if fhir.Type(res) == "Patient" {
		if m.template == nil {
			// A copy: Mark changes res.
			b, err := fhir.Marshal(res)
			if err != nil {
				return err
			}
			if m.template, err = fhir.Parse(b); err != nil {
				return err
			}
		}
		if err := m.canariesUpTo(m.written, emit); err != nil {
			return err
		}
		m.written++
	}
	line, err := m.w.Mark(res)
	if err != nil {
		return err
	}
	return emit(line)
}

// Close emits the canaries still due (when fewer Patient rows came than
// announced, or at the very end).
func (m *Marker) Close(emit func(line []byte) error) error {
	return m.canariesUpTo(math.MaxInt, emit)
}

func (m *Marker) canariesUpTo(k int, emit func(line []byte) error) error {
	for len(m.pos) > 0 && m.pos[0] <= k {
		c := m.canaries[len(m.canaries)-len(m.pos)]
		m.pos = m.pos[1:]
		line, err := m.w.Mark(m.w.CanaryResource(c, m.template, m.facility))
		if err != nil {
			return err
		}
		if err := emit(line); err != nil {
			return err
		}
	}
	return nil
}
