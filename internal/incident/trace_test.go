package incident

import (
	"bytes"
	"encoding/csv"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"carnet/internal/fhir"
	"carnet/internal/store"
)

// exportLines is what an export of patients under w writes (Patient rows
// with the canaries among them).
func exportLines(t testing.TB, w *Watermark, patients [][]byte) [][]byte {
	t.Helper()
	var out [][]byte
	mk := w.NewMarker("fac-1", len(patients))
	emit := func(l []byte) error { out = append(out, l); return nil }
	for _, p := range patients {
		r, err := fhir.Parse(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := mk.Row(r, emit); err != nil {
			t.Fatal(err)
		}
	}
	if err := mk.Close(emit); err != nil {
		t.Fatal(err)
	}
	return out
}

// world is K exports of the same patients.
type world struct {
	patients [][]byte
	cands    []Candidate
	lines    [][][]byte // per export
	canary   []map[string]bool
}

func newWorld(t testing.TB, k, n int) *world {
	t.Helper()
	patients, _ := stored(t, n)
	wd := &world{patients: patients}
	for i := range k {
		key := newKey(t)
		w, _ := NewWatermark(key)
		e := &store.ExportRequest{ID: "export-" + string(rune('A'+i)), Requester: "acct-" + string(rune('a'+i%3)), Facility: "fac-1", Types: []string{"Patient"},
			Status: store.ExportDownloaded, WatermarkKey: key, Created: time.Now(), Recipient: "recipient " + string(rune('A'+i))}
		wd.cands = append(wd.cands, Candidate{Export: e, Requester: "user-" + string(rune('a'+i%3)), Approver: "so"})
		wd.lines = append(wd.lines, exportLines(t, w, patients))
		cs := map[string]bool{}
		for _, c := range w.Canaries() {
			cs[c.ID] = true
		}
		wd.canary = append(wd.canary, cs)
	}
	return wd
}

// pick returns m real (non-canary) lines of export i.
func (wd *world) pick(rng *rand.Rand, i, m int) [][]byte {
	var real [][]byte
	for _, l := range wd.lines[i] {
		r, _ := rowFromJSON(l, 0)
		if !wd.canary[i][r.ID] {
			real = append(real, l)
		}
	}
	rng.Shuffle(len(real), func(a, b int) { real[a], real[b] = real[b], real[a] })
	return real[:m]
}

// toCSV converts resource lines to CSV with the given columns (in that
// order), as a leaker's spreadsheet would.
func toCSV(t testing.TB, lines [][]byte, cols []string) []byte {
	t.Helper()
	var b bytes.Buffer
	cw := csv.NewWriter(&b)
	cw.Comma = ';'
	cw.Write(cols)
	for _, l := range lines {
		r, ok := rowFromJSON(l, 0)
		if !ok {
			t.Fatal("unreadable line")
		}
		var rec []string
		for _, c := range cols {
			v := ""
			switch c {
			case "id":
				v = r.ID
			case "Nom", "family":
				v = r.Family
			case "Prénom", "given":
				v = r.Given
			case "Date de naissance", "birthDate":
				v = r.BirthDate
			case "Téléphone", "phone":
				v = strings.Join(r.Phones, " | ")
			case "email", "Courriel":
				v = strings.Join(r.Emails, " | ")
			case "Adresse", "address":
				v = r.Line
			case "Ville", "city":
				v = r.City
			case "CP", "postalCode":
				v = r.PostalCode
			}
			rec = append(rec, v)
		}
		cw.Write(rec)
	}
	cw.Flush()
	return b.Bytes()
}

func weigh(t testing.TB, data []byte, cands []Candidate) *TraceReport {
	t.Helper()
	s, err := ParseSample(data)
	if err != nil {
		t.Fatalf("ParseSample: %v\n%s", err, data)
	}
	return Weigh(s, cands, nil)
}

var csvColumns1 = []string{"Ville", "Date de naissance", "Nom", "Téléphone", "Adresse", "Prénom"} // no id, no email, no postal code
var csvColumns2 = []string{"phone", "family", "given", "city", "postalCode", "address", "birthDate"}

// Five rows of one export, as CSV with reordered and dropped columns, name
// that export among twelve of the same patients, with high confidence.
func TestTraceNamesTheExportFromCSV(t *testing.T) {
	wd := newWorld(t, 12, 300)
	rng := rand.New(rand.NewPCG(1, 2))
	var minBits = 1e9
	for trial := range 24 {
		src := trial % len(wd.cands)
		cols := slices.Clone(csvColumns1)
		if trial%2 == 1 {
			cols = slices.Clone(csvColumns2)
		}
		rng.Shuffle(len(cols), func(a, b int) { cols[a], cols[b] = cols[b], cols[a] })
		sample := toCSV(t, wd.pick(rng, src, 5), cols)
		rep := weigh(t, sample, wd.cands)
		best := rep.Best[0]
		if !rep.Matched || best.Export != wd.cands[src].Export.ID || best.Certainty != "high" || best.Confidence < 0.99 {
			t.Fatalf("trial %d: source %s, got %s (%s, %.4g, %.1f bits); verdict %s\n%s", trial, wd.cands[src].Export.ID, best.Export, best.Certainty, best.Confidence, best.Bits, rep.Verdict, sample)
		}
		if len(rep.Best) > 1 && rep.Best[1].Confidence > 0.001 {
			t.Errorf("trial %d: runner-up at confidence %.3g", trial, rep.Best[1].Confidence)
		}
		minBits = min(minBits, best.Bits)
	}
	t.Logf("5-row CSV samples: 24/24 traced to the right export among %d; weakest %.1f bits", len(wd.cands), minBits)

	// Three rows: report how often they suffice.
	right, wrong := 0, 0
	for trial := range 48 {
		src := trial % len(wd.cands)
		rep := weigh(t, toCSV(t, wd.pick(rng, src, 3), csvColumns1), wd.cands)
		switch {
		case rep.Matched && rep.Best[0].Export == wd.cands[src].Export.ID:
			right++
		case rep.Matched:
			wrong++
		}
	}
	if wrong > 0 {
		t.Errorf("3-row samples: %d matched the wrong export", wrong)
	}
	t.Logf("3-row CSV samples (no id, email or postal code): %d/48 matched (right export), %d wrong, the rest no match", right, wrong)
}

// NDJSON lines of an export, tag stripped and re-serialised by a tool that
// sorts keys (so the key order is gone too), still name the export.
func TestTraceSurvivesStrippedTags(t *testing.T) {
	wd := newWorld(t, 10, 200)
	rng := rand.New(rand.NewPCG(3, 4))
	for src := range wd.cands {
		var b bytes.Buffer
		for _, l := range wd.pick(rng, src, 4) {
			r, _ := fhir.Parse(l)
			delete(r["meta"].(map[string]any), "tag")
			out, _ := fhir.Marshal(r)
			b.Write(out)
			b.WriteByte('\n')
		}
		rep := weigh(t, b.Bytes(), wd.cands)
		if !rep.Matched || rep.Best[0].Export != wd.cands[src].Export.ID || rep.Best[0].Tag || len(rep.Tags) != 0 {
			t.Fatalf("source %s: %s", wd.cands[src].Export.ID, rep.Verdict)
		}
	}
	// With the tag, one row is enough and certain.
	rep := weigh(t, wd.pick(rng, 5, 1)[0], wd.cands)
	if !rep.Matched || rep.Best[0].Export != wd.cands[5].Export.ID || rep.Best[0].Certainty != "certain" || !rep.Best[0].Tag {
		t.Fatalf("tagged row: %s", rep.Verdict)
	}
}

// Rows straight from the store (never exported, whatever their format)
// match no export: neither as NDJSON nor as CSV.
func TestTraceUnexportedRowsMatchNone(t *testing.T) {
	wd := newWorld(t, 12, 300)
	rng := rand.New(rand.NewPCG(5, 6))
	for trial := range 40 {
		ps := slices.Clone(wd.patients)
		rng.Shuffle(len(ps), func(a, b int) { ps[a], ps[b] = ps[b], ps[a] })
		rows := ps[:3+trial%8]
		var sample []byte
		if trial%2 == 0 {
			sample = bytes.Join(rows, []byte("\n"))
		} else {
			sample = toCSV(t, rows, csvColumns2)
		}
		rep := weigh(t, sample, wd.cands)
		if rep.Matched {
			t.Fatalf("trial %d: unexported rows matched %s (%s)", trial, rep.Best[0].Export, rep.Verdict)
		}
		if !strings.HasPrefix(rep.Verdict, "matches no export") {
			t.Errorf("verdict %q", rep.Verdict)
		}
	}
}

// A canary row in the sample is certain, even as CSV without its id, and
// even mixed with rows from elsewhere.
func TestTraceCanaryIsCertain(t *testing.T) {
	wd := newWorld(t, 12, 100)
	src := 7
	var canary []byte
	for _, l := range wd.lines[src] {
		if r, _ := rowFromJSON(l, 0); wd.canary[src][r.ID] {
			canary = l
		}
	}
	sample := toCSV(t, [][]byte{wd.patients[3], canary, wd.patients[9]}, []string{"Nom", "Prénom", "Date de naissance", "Courriel"})
	rep := weigh(t, sample, wd.cands)
	b := rep.Best[0]
	if !rep.Matched || b.Export != wd.cands[src].Export.ID || b.Certainty != "certain" || b.Confidence != 1 || len(b.Canaries) != 1 || b.Canaries[0].Row != 2 {
		t.Fatalf("canary sample: %s %+v", rep.Verdict, b)
	}
	var out bytes.Buffer
	if err := rep.Write(&out, "text"); err != nil || !strings.Contains(out.String(), "canary") || !strings.Contains(out.String(), "MATCH") {
		t.Errorf("text report: %v\n%s", err, out.String())
	}
	if err := rep.Write(&out, "json"); err != nil {
		t.Error(err)
	}
}

// A leaker who rewrote every phone in one format removes one dimension,
// not the others: a few more rows (8) make up for it.
func TestTraceSurvivesNormalisedPhones(t *testing.T) {
	wd := newWorld(t, 12, 300)
	rng := rand.New(rand.NewPCG(7, 8))
	for src := range 6 {
		lines := wd.pick(rng, src, 8)
		var norm [][]byte
		for _, l := range lines {
			r, _ := fhir.Parse(l)
			for _, tc := range asList(r["telecom"]) {
				if v, ok := tc["value"].(string); ok && tc["system"] == "phone" {
					if nat, _, ok := parsePhone(v); ok {
						tc["value"] = nat
					}
				}
			}
			b, _ := fhir.Marshal(r)
			norm = append(norm, b)
		}
		rep := weigh(t, toCSV(t, norm, csvColumns2), wd.cands)
		if !rep.Matched || rep.Best[0].Export != wd.cands[src].Export.ID {
			t.Fatalf("source %s: %s", wd.cands[src].Export.ID, rep.Verdict)
		}
	}
}

func TestParseSampleForms(t *testing.T) {
	wd := newWorld(t, 1, 5)
	lines := wd.lines[0]
	arr := append([]byte("["), bytes.Join(lines, []byte(","))...)
	arr = append(arr, ']')
	bundle := []byte(`{"resourceType":"Bundle","type":"collection","entry":[{"resource":` + string(bytes.Join(lines, []byte(`},{"resource":`))) + `}]}`)
	for name, c := range map[string]struct {
		data   []byte
		format string
		rows   int
	}{
		"ndjson":   {bytes.Join(lines, []byte("\r\n")), "ndjson", len(lines)},
		"array":    {arr, "json", len(lines)},
		"bundle":   {bundle, "json", len(lines)},
		"resource": {lines[0], "json", 1},
		"csv":      {[]byte("\ufeffPrénom,NOM,Tél. portable,ville\nJean,MARTIN,06 12 34 56 78,Paris\n,,,\n"), "csv", 1},
		"tsv":      {[]byte("family\tgiven\tphone\nMartin\tJean\t0612345678\n"), "csv", 1},
	} {
		s, err := ParseSample(c.data)
		if err != nil || s.Format != c.format || len(s.Rows) != c.rows {
			t.Errorf("%s: %v %+v", name, err, s)
		}
	}
	s, _ := ParseSample([]byte("Prénom,NOM,Tél. portable,ville\nJean,MARTIN,06 12 34 56 78,Paris\n"))
	if r := s.Rows[0]; r.Given != "Jean" || r.Family != "MARTIN" || len(r.Phones) != 1 || r.City != "Paris" {
		t.Errorf("csv row %+v", r)
	}
	for _, bad := range []string{"", "   ", "a,b,c\n1,2,3\n", "{not json", "[1,2,3]"} {
		if _, err := ParseSample([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// FuzzTraceParse: whatever the sample, parsing and weighing never panic.
func FuzzTraceParse(f *testing.F) {
	for _, s := range []string{
		"family,given,birthDate,phone\nMartin,Jean,1970-01-01,+33 6 12 34 56 78\n",
		"Nom;Prénom;Adresse\nDURAND;Anne;12 r. de Vaugirard, 75015 Paris\n",
		`{"resourceType":"Patient","id":"x","name":[{"family":"X"}],"telecom":[{"system":"email","value":"a@b"},{"system":"phone","value":"0612345678"}]}`,
		`[{"resourceType":"Patient"},{"resourceType":"Observation","subject":{"reference":"Patient/1"}}]`,
		`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","address":[{"line":["3 bis bd X"],"city":"PARIS"}]}}]}`,
		"{\"resourceType\":\"Patient\"}\n{broken\n{\"meta\":{\"tag\":[{\"system\":\"urn:carnet:export\",\"code\":\"abc\"}]}}\n",
		"\"unterminated,quote\nx\n", "phone\n+33\n0\n+33 (0)\n", "address\n12\n12 bis\nrue\n", "\xff\xfe\x00",
	} {
		f.Add([]byte(s))
	}
	key := make([]byte, 32)
	cands := []Candidate{{Export: &store.ExportRequest{ID: "e", WatermarkKey: key, Types: []string{"Patient"}}}}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSample(data)
		if err != nil {
			return
		}
		rep := Weigh(s, cands, nil)
		var b bytes.Buffer
		if err := rep.Write(&b, "text"); err != nil {
			t.Fatal(err)
		}
	})
}

// BenchmarkTraceWeigh: five CSV rows weighed against 10,000 exports (the
// part of a trace that grows with the number of exports).
func BenchmarkTraceWeigh(b *testing.B) {
	wd := newWorld(b, 1, 50)
	s, err := ParseSample(toCSV(b, wd.pick(rand.New(rand.NewPCG(1, 1)), 0, 5), csvColumns1))
	if err != nil {
		b.Fatal(err)
	}
	cands := make([]Candidate, 10_000)
	for i := range cands {
		cands[i] = Candidate{Export: &store.ExportRequest{ID: "e", WatermarkKey: newKey(b), Types: []string{"Patient"}}}
	}
	cands[4321] = wd.cands[0]
	b.ResetTimer()
	for b.Loop() {
		rep := Weigh(s, cands, nil)
		if rep.Best[0].Export != wd.cands[0].Export.ID || !rep.Matched {
			b.Fatalf("%s", rep.Verdict)
		}
	}
}
