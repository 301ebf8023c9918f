package incident

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"carnet/internal/fhir"
	"carnet/internal/synth"
)

// stored returns n synthetic patients' resources as the store holds them
// (canonical JSON with id and meta), Patients first.
func stored(t testing.TB, n int) (patients, others [][]byte) {
	t.Helper()
	g := synth.New(synth.Config{Seed: 7, Patients: n})
	at := time.Date(2026, 10, 1, 8, 0, 0, 0, time.UTC)
	for i := range n {
		err := g.Patient(i, func(m map[string]any) error {
			b, err := fhir.Marshal(m)
			if err != nil {
				return err
			}
			r, err := fhir.Parse(b)
			if err != nil {
				return err
			}
			fhir.SetMeta(r, fhir.ID(r), 1, at.Add(time.Duration(i)*time.Second))
			if b, err = fhir.Marshal(r); err != nil {
				return err
			}
			if fhir.Type(r) == "Patient" {
				patients = append(patients, b)
			} else {
				others = append(others, b)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return patients, others
}

func newKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func mark(t testing.TB, w *Watermark, data []byte) []byte {
	t.Helper()
	r, err := fhir.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	line, err := w.Mark(r)
	if err != nil {
		t.Fatal(err)
	}
	return line
}

// clinical strips what the watermark may change (forms of names, cities,
// address lines and phones, telecom order, the export tag) to a canonical
// form, so that a marked resource and its stored original compare equal
// if and only if nothing else changed.
func clinical(t testing.TB, data []byte) map[string]any {
	t.Helper()
	r, err := fhir.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if meta, ok := r["meta"].(map[string]any); ok {
		var keep []any
		for _, tg := range asList(meta["tag"]) {
			if tg["system"] != TagSystem {
				keep = append(keep, tg)
			}
		}
		delete(meta, "tag")
		if len(keep) > 0 {
			meta["tag"] = keep
		}
	}
	for _, n := range asList(r["name"]) {
		if f, ok := n["family"].(string); ok {
			n["family"] = fold(f)
		}
		if gs, ok := n["given"].([]any); ok {
			for i, g := range gs {
				gs[i] = fold(g.(string))
			}
		}
	}
	for _, a := range asList(r["address"]) {
		if c, ok := a["city"].(string); ok {
			a["city"] = fold(c)
		}
		if ls, ok := a["line"].([]any); ok {
			for i, l := range ls {
				if st, ok := parseStreet(l.(string)); ok {
					ls[i] = st.norm
				}
			}
		}
	}
	if tel, ok := r["telecom"].([]any); ok {
		for _, x := range asList(tel) {
			if v, ok := x["value"].(string); ok && x["system"] == "phone" {
				if nat, _, ok := parsePhone(v); ok {
					x["value"] = nat
				}
			}
		}
		slices.SortStableFunc(tel, func(a, b any) int {
			return strings.Compare(fmt.Sprint(a.(map[string]any)["system"]), fmt.Sprint(b.(map[string]any)["system"]))
		})
	}
	return r
}

// Two exports of the same records differ, and only in forms: every
// identifier, date, code and clinical value is the stored one.
func TestWatermarkChangesFormsNotMeaning(t *testing.T) {
	patients, others := stored(t, 60)
	w1, _ := NewWatermark(newKey(t))
	w2, _ := NewWatermark(newKey(t))
	differ, changed := 0, 0
	for _, data := range append(slices.Clone(patients), others...) {
		a, b := mark(t, w1, data), mark(t, w2, data)
		if !bytes.Equal(a, b) {
			differ++
		}
		if !bytes.Equal(a, data) {
			changed++
		}
		orig := clinical(t, data)
		for _, m := range [][]byte{a, b} {
			if got := clinical(t, m); !reflect.DeepEqual(got, orig) {
				t.Fatalf("a watermark changed more than forms:\nstored %s\nmarked %s", data, m)
			}
		}
		// Untouched exactly: identifiers, dates, codes, values.
		ro, _ := fhir.Parse(data)
		rm, _ := fhir.Parse(a)
		for _, k := range []string{"id", "identifier", "birthDate", "gender", "deceasedDateTime", "code", "valueQuantity", "subject",
			"medicationCodeableConcept", "dosageInstruction", "period", "effectiveDateTime", "generalPractitioner", "managingOrganization", "status"} {
			if !reflect.DeepEqual(ro[k], rm[k]) {
				t.Errorf("%s changed: %v -> %v", k, ro[k], rm[k])
			}
		}
		if !json.Valid(a) || bytes.ContainsRune(a, '\n') {
			t.Fatalf("not one NDJSON line: %s", a)
		}
	}
	total := len(patients) + len(others)
	if differ < total*9/10 || changed != total {
		t.Errorf("of %d resources, %d differ between two exports and %d from the store", total, differ, changed)
	}
}

// What Mark writes, the trace reads back: every form observed in a marked
// row is the one the key chose, and another key agrees only by chance.
func TestWatermarkFormsAreObservable(t *testing.T) {
	patients, _ := stored(t, 200)
	w, _ := NewWatermark(newKey(t))
	other, _ := NewWatermark(newKey(t))
	var rows []Row
	for i, data := range patients {
		r, ok := rowFromJSON(mark(t, w, data), i+1)
		if !ok {
			t.Fatal("unreadable marked row")
		}
		rows = append(rows, r)
	}
	ev := gather(rows)
	agree, total, agreeOther := 0, 0, 0
	for dim, os := range ev.byDim {
		for _, o := range os {
			total++
			if w.choice(dim, o.seed) == o.form {
				agree++
			}
			if other.choice(dim, o.seed) == o.form {
				agreeOther++
			}
		}
	}
	for _, d := range []string{dimPhone, dimFamily, dimGiven, dimCity, dimStreet, dimTelecom, dimKeys} {
		if len(ev.byDim[d]) == 0 {
			t.Errorf("no %s observations in 200 marked patients", d)
		}
	}
	if agree != total || total < 500 {
		t.Errorf("%d of %d observations agree with the marking key", agree, total)
	}
	if frac := float64(agreeOther) / float64(total); frac > 0.6 || frac < 0.25 {
		t.Errorf("another key agrees with %.2f of the observations (chance is about 0.4)", frac)
	}
	llr, _ := ev.score(w)
	llrOther, _ := ev.score(other)
	if llr < 100 || llrOther > 0 {
		t.Errorf("log likelihood ratios: marking key %.1f, other key %.1f", llr, llrOther)
	}
}

func TestPhoneForms(t *testing.T) {
	for _, in := range []string{"+33 6 39 98 12 34", "06 39 98 12 34", "0639981234", "06.39.98.12.34", "+33639981234", "06-39-98-12-34"} {
		nat, form, ok := parsePhone(in)
		if !ok || nat != "0639981234" || form < 0 || formatPhone(nat, form) != in {
			t.Errorf("%q: %q %d %v", in, nat, form, ok)
		}
	}
	for _, in := range []string{"0033 6 39 98 12 34", "+33 (0)6 39 98 12 34", "06 39 98 1234", "+33 6.39.98.12.34"} {
		if nat, form, ok := parsePhone(in); !ok || nat != "0639981234" || form != -1 {
			t.Errorf("%q: %q %d %v (a French number in an unmarked form)", in, nat, form, ok)
		}
	}
	for _, in := range []string{"", "12", "+1 415 555 0100", "0039981234x", "00 00 00 00 00", "06 39 98 12 34 56"} {
		if _, _, ok := parsePhone(in); ok {
			t.Errorf("%q read as a French number", in)
		}
	}
}

func TestStreetForms(t *testing.T) {
	for in, want := range map[string][2]string{
		"12 rue de Vaugirard":         {"12 rue de Vaugirard", "12 r. de Vaugirard"},
		"3 bis avenue d'Italie":       {"3 bis avenue d'Italie", "3 bis av. d'Italie"},
		"allée des Tilleuls":          {"allée des Tilleuls", "all. des Tilleuls"},
		"7 Boulevard Raspail":         {"7 Boulevard Raspail", "7 Bd Raspail"},
		"140 résidence du Parc":       {"140 résidence du Parc", "140 rés. du Parc"},
		"12 R. de Vaugirard":          {"12 Rue de Vaugirard", "12 R. de Vaugirard"},
		"9 av Jean-Jaurès (bât. B)":   {"9 avenue Jean-Jaurès (bât. B)", "9 av. Jean-Jaurès (bât. B)"},
		"chemin des Vignes, 2e étage": {"chemin des Vignes, 2e étage", "ch. des Vignes, 2e étage"},
	} {
		st, ok := parseStreet(in)
		if !ok {
			t.Errorf("%q: no street type", in)
			continue
		}
		if st.render(0) != want[0] || st.render(1) != want[1] {
			t.Errorf("%q: %q / %q, want %q", in, st.render(0), st.render(1), want)
		}
		for f := range 2 {
			back, _ := parseStreet(st.render(f))
			if back.norm != st.norm || back.form != f {
				t.Errorf("%q form %d: norm %q form %d, want %q", in, f, back.norm, back.form, st.norm)
			}
		}
	}
	for _, in := range []string{"", "12", "Les Jardins de Sèvres", "12 the street"} {
		if _, ok := parseStreet(in); ok {
			t.Errorf("%q has a street type?", in)
		}
	}
}

func TestCaseForms(t *testing.T) {
	for _, s := range []string{"Martin", "Le Gall", "Lefèvre", "L'Haÿ-les-Roses", "DE LA TOUR", "Châtenay-Malabry"} {
		for f := range 2 {
			got := withCase(s, f)
			if cf, ok := caseForm(got); !ok || cf != f || fold(got) != fold(s) {
				t.Errorf("withCase(%q, %d) = %q: form %d, fold %q vs %q", s, f, got, cf, fold(got), fold(s))
			}
		}
	}
	if _, ok := caseForm("X"); ok {
		t.Error("one letter has a case form")
	}
}

func TestCanaries(t *testing.T) {
	k := newKey(t)
	w, _ := NewWatermark(k)
	w2, _ := NewWatermark(k)
	cs := w.Canaries()
	if len(cs) < 2 || len(cs) > 3 || !reflect.DeepEqual(cs, w2.Canaries()) {
		t.Fatalf("canaries %v", cs)
	}
	other, _ := NewWatermark(newKey(t))
	ids := map[string]bool{}
	for _, c := range append(slices.Clone(cs), other.Canaries()...) {
		if ids[c.ID] || !fhir.ValidID(c.ID) {
			t.Errorf("canary id %q repeated or invalid", c.ID)
		}
		ids[c.ID] = true
		if _, err := time.Parse("2006-01-02", c.BirthDate); err != nil {
			t.Errorf("birth date %q", c.BirthDate)
		}
		if _, form, ok := parsePhone(c.Phone); !ok || form != 0 {
			t.Errorf("phone %q", c.Phone)
		}
		if !strings.Contains(c.Email, "@") || c.Family == "" || c.Given == "" || c.City == "" || len(c.PostalCode) != 5 {
			t.Errorf("canary %+v", c)
		}
		if _, ok := parseStreet(c.Line); !ok && !strings.Contains(c.Line, " ") {
			t.Errorf("line %q", c.Line)
		}
	}
	patients, _ := stored(t, 3)
	tmpl, _ := fhir.Parse(patients[0])
	res := w.CanaryResource(cs[0], tmpl, "org-1")
	b, err := w.Mark(res)
	if err != nil {
		t.Fatal(err)
	}
	back, err := fhir.Parse(b)
	if err != nil || fhir.ID(back) != cs[0].ID || back["managingOrganization"].(map[string]any)["reference"] != "Organization/org-1" {
		t.Fatalf("canary resource %s: %v", b, err)
	}
	for _, id := range asList(back["identifier"]) {
		if id["use"] != "usual" {
			t.Errorf("a canary carries a national identifier: %v", id)
		}
	}
	for n := range 50 {
		pos := w.CanaryPositions(n)
		if n == 0 && pos != nil || n > 0 && (len(pos) != len(cs) || !slices.IsSorted(pos) || pos[len(pos)-1] > n) {
			t.Errorf("positions among %d: %v", n, pos)
		}
	}
}
