package fhir

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"
)

// Resource is a FHIR resource as a generic JSON object.
type Resource = map[string]any

// ValidID reports whether s is a valid FHIR logical id: 1 to 64 characters
// of A-Z a-z 0-9 - and . .
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// NewID returns a random, non-sequential resource id (UUID v4 format).
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("fhir: crypto/rand failed: " + err.Error())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

// Parse decodes one JSON object into a Resource, keeping numbers exact.
// It refuses anything but a single JSON object, and JSON nulls outside arrays.
func Parse(body []byte) (Resource, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, Invalid("", "empty body: a FHIR resource (JSON object) is required")
	}
	if body[0] != '{' {
		return nil, Invalid("", "the body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var r Resource
	if err := dec.Decode(&r); err != nil {
		return nil, Invalid("", "malformed JSON: %s", jsonErrText(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, Invalid("", "malformed JSON: unexpected data after the resource")
	}
	if err := checkNulls(r, ""); err != nil {
		return nil, err
	}
	return r, nil
}

func jsonErrText(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return se.Error() + " (at byte " + itoa(int(se.Offset)) + ")"
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "unexpected " + te.Value
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of input"
	}
	return "invalid JSON"
}

func checkNulls(v any, path string) error {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			if c == nil {
				return Invalid(joinPath(path, k), "null is not allowed in FHIR JSON; omit the element")
			}
			if err := checkNulls(c, joinPath(path, k)); err != nil {
				return err
			}
		}
	case []any:
		if len(t) == 0 {
			return Invalid(path, "empty arrays are not allowed in FHIR JSON; omit the element")
		}
		for _, c := range t {
			if err := checkNulls(c, path); err != nil {
				return err
			}
		}
	}
	return nil
}

func joinPath(p, k string) string {
	if p == "" {
		return k
	}
	return p + "." + k
}

// Type returns the resourceType of r, or "".
func Type(r Resource) string { s, _ := r["resourceType"].(string); return s }

// ID returns the id of r, or "".
func ID(r Resource) string { s, _ := r["id"].(string); return s }

// SetMeta sets id, meta.versionId and meta.lastUpdated, keeping other meta
// elements (profile, tag, security) the client sent.
func SetMeta(r Resource, id string, version int, updated time.Time) {
	r["id"] = id
	meta, _ := r["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["versionId"] = itoa(version)
	meta["lastUpdated"] = FormatInstant(updated)
	r["meta"] = meta
}

// FormatInstant formats t as a FHIR instant with millisecond precision, UTC.
func FormatInstant(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	neg := i < 0
	if neg {
		i = -i
	}
	var b [20]byte
	n := len(b)
	for i > 0 {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
	}
	if neg {
		n--
		b[n] = '-'
	}
	return string(b[n:])
}

// ErrTooLarge is returned when a request body exceeds the server's limit.
var ErrTooLarge = &Error{Status: http.StatusRequestEntityTooLarge, Code: "too-costly", Msg: "request body too large"}
