package fhir

import (
	"bytes"
	"encoding/json"
	"testing"
)

func stdMarshal(t testing.TB, v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// TestMarshalMatchesEncodingJSON: the fast encoder must produce exactly what
// encoding/json does, since stored bytes are compared for no-op updates.
func TestMarshalMatchesEncodingJSON(t *testing.T) {
	cases := []string{
		`{"resourceType":"Patient","name":[{"family":"Lefèvre","given":["Hélène","Jean-Pierre"]}],"b":true,"n":null}`,
		`{"x":"quote \" backslash \\ slash / tab \t nl \n cr \r bs \b ff \f ctl \u0001 \u001f <>& \u2028 \u2029 😀"}`,
		`{"dec":1.50,"int":42,"neg":-0.0001,"exp":1e400,"big":123456789012345678901234567890}`,
		`{"z":{"b":[1,{"d":2,"c":[]}],"a":{}}}`,
	}
	for _, c := range cases {
		r, err := decodeLoose(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if want := stdMarshal(t, r); !bytes.Equal(got, want) {
			t.Errorf("Marshal mismatch\n got %s\nwant %s", got, want)
		}
	}
	// Go-typed values the generator uses.
	v := map[string]any{"f": 98.6, "g": 1e-7, "h": 3e21, "i": 7, "s": "a\xffb", "l": []any{0.1, int64(5)}}
	got, _ := Marshal(v)
	if want := stdMarshal(t, v); !bytes.Equal(got, want) {
		t.Errorf("Marshal mismatch\n got %s\nwant %s", got, want)
	}
}

func decodeLoose(s string) (any, error) {
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.UseNumber()
	var v any
	return v, dec.Decode(&v)
}

func BenchmarkMarshal(b *testing.B) {
	r, _ := decodeLoose(`{"resourceType":"Patient","id":"x","meta":{"versionId":"1","lastUpdated":"2026-01-01T00:00:00.000Z"},"name":[{"family":"Lefèvre","given":["Hélène"]}],"gender":"female","birthDate":"1970-01-01","telecom":[{"system":"phone","value":"+33 6 12 34 56 78"}],"address":[{"line":["1 rue X"],"city":"Paris","postalCode":"75001"}]}`)
	for b.Loop() {
		Marshal(r)
	}
}
