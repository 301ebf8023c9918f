package fhir

import (
	"encoding/json"
	"math"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// IndexEntry is one value of a search parameter in a resource.
// String: S is the normalised string. Token: S is the code, Sys the system.
// Date: [Lo, Hi] in Unix seconds. Reference: S is "Type/id".
type IndexEntry struct {
	Param  int
	Type   ParamType
	S, Sys string
	Lo, Hi int64
}

// Extract returns the deduplicated index entries of r for every parameter
// registered on its type.
func Extract(r Resource) []IndexEntry {
	var out []IndexEntry
	for _, q := range byType[Type(r)] { // ID order: deterministic output
		if len(q.Union) > 0 {
			continue
		}
		if q.extract != nil {
			out = append(out, q.extract(r)...)
			continue
		}
		for _, path := range q.Paths {
			for _, node := range walk(r, path) {
				out = appendValues(out, q, node)
			}
		}
	}
	return dedup(out)
}

func dedup(es []IndexEntry) []IndexEntry {
	if len(es) < 2 {
		return es
	}
	seen := make(map[IndexEntry]struct{}, len(es))
	out := es[:0]
	for _, e := range es {
		if _, ok := seen[e]; ok {
			continue
		}
		seen[e] = struct{}{}
		out = append(out, e)
	}
	return out
}

// walk returns the nodes at a dotted path; arrays are flattened and a
// segment "key[field=value]" keeps only objects whose field equals value.
func walk(root any, path string) []any {
	nodes := []any{root}
	for seg := range strings.SplitSeq(path, ".") {
		key, fk, fv := seg, "", ""
		if i := strings.IndexByte(seg, '['); i > 0 && strings.HasSuffix(seg, "]") {
			key = seg[:i]
			fk, fv, _ = strings.Cut(seg[i+1:len(seg)-1], "=")
		}
		var next []any
		for _, n := range nodes {
			m, ok := n.(map[string]any)
			if !ok {
				continue
			}
			v, ok := m[key]
			if !ok {
				continue
			}
			for _, c := range flatten(v) {
				if fk != "" {
					cm, _ := c.(map[string]any)
					if s, _ := cm[fk].(string); s != fv {
						continue
					}
				}
				next = append(next, c)
			}
		}
		nodes = next
		if len(nodes) == 0 {
			return nil
		}
	}
	return nodes
}

func flatten(v any) []any {
	if a, ok := v.([]any); ok {
		return a
	}
	return []any{v}
}

func appendValues(out []IndexEntry, q *Param, node any) []IndexEntry {
	switch q.Type {
	case String:
		for _, s := range stringsOf(node) {
			if n := NormString(s); n != "" {
				out = append(out, IndexEntry{Param: q.ID, Type: String, S: n})
			}
		}
	case Token:
		for _, t := range tokensOf(node) {
			t.Param, t.Type = q.ID, Token
			t.S = NormToken(q.Norm, t.S)
			if t.S != "" || t.Sys != "" {
				out = append(out, t)
			}
		}
	case Date:
		if lo, hi, ok := dateOf(node); ok {
			out = append(out, IndexEntry{Param: q.ID, Type: Date, Lo: lo, Hi: hi})
		}
	case Reference:
		m, _ := node.(map[string]any)
		ref, _ := m["reference"].(string)
		if t, id, ok := SplitReference(ref); ok {
			out = append(out, IndexEntry{Param: q.ID, Type: Reference, S: t + "/" + id})
		}
	}
	return out
}

// stringsOf returns the searchable strings of a string, HumanName or Address.
func stringsOf(node any) []string {
	switch v := node.(type) {
	case string:
		return []string{v}
	case map[string]any:
		var out []string
		for _, k := range []string{"text", "family", "given", "prefix", "suffix", "line", "city", "district", "state", "postalCode", "country"} {
			for _, c := range flatten(v[k]) {
				if s, ok := c.(string); ok {
					out = append(out, s)
				}
			}
		}
		return out
	}
	return nil
}

func tokensOf(node any) []IndexEntry {
	switch v := node.(type) {
	case string:
		return []IndexEntry{{S: v}}
	case bool:
		if v {
			return []IndexEntry{{S: "true"}}
		}
		return []IndexEntry{{S: "false"}}
	case map[string]any:
		if codings, ok := v["coding"].([]any); ok { // CodeableConcept
			var out []IndexEntry
			for _, c := range codings {
				out = append(out, tokensOf(c)...)
			}
			return out
		}
		sys, _ := v["system"].(string)
		if val, ok := v["value"].(string); ok { // Identifier, ContactPoint
			return []IndexEntry{{S: val, Sys: sys}}
		}
		if code, ok := v["code"].(string); ok { // Coding
			return []IndexEntry{{S: code, Sys: sys}}
		}
	}
	return nil
}

func dateOf(node any) (lo, hi int64, ok bool) {
	switch v := node.(type) {
	case string:
		return DateRange(v, true)
	case map[string]any: // Period
		lo, hi = math.MinInt64/2, math.MaxInt64/2
		s, hasS := v["start"].(string)
		e, hasE := v["end"].(string)
		if !hasS && !hasE {
			return 0, 0, false
		}
		if hasS {
			l, _, ok := DateRange(s, true)
			if !ok {
				return 0, 0, false
			}
			lo = l
		}
		if hasE {
			_, h, ok := DateRange(e, true)
			if !ok {
				return 0, 0, false
			}
			hi = h
		}
		return lo, hi, true
	case json.Number:
		return 0, 0, false
	}
	return 0, 0, false
}

// References returns the "Type/id" values of reference parameter q (or of
// its union's parts) in r.
func References(r Resource, q *Param) []string {
	var out []string
	for _, id := range q.IndexIDs() {
		for _, p := range byType[Type(r)] {
			if p.ID != id {
				continue
			}
			for _, path := range p.Paths {
				for _, node := range walk(r, path) {
					for _, e := range appendValues(nil, p, node) {
						out = append(out, e.S)
					}
				}
			}
		}
	}
	return out
}

// NormString normalises a string for search: accents removed, lower case,
// white space collapsed. "  Hélène  LEFÈVRE " -> "helene lefevre".
func NormString(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range norm.NFKD.String(s) {
		switch {
		case unicode.Is(unicode.Mn, r):
			continue
		case unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		switch r {
		case 'ß', 'ẞ':
			b.WriteString("ss")
		case 'ø', 'Ø':
			b.WriteByte('o')
		case 'ł', 'Ł':
			b.WriteByte('l')
		case 'đ', 'Đ':
			b.WriteByte('d')
		case 'æ', 'Æ':
			b.WriteString("ae")
		case 'œ', 'Œ':
			b.WriteString("oe")
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// NormToken normalises a token code by the parameter's normalisation:
// phone numbers to digits in national form ("+33 6 12.." -> "0612.."),
// e-mail addresses to lower case.
func NormToken(kind, s string) string {
	switch kind {
	case "phone":
		s = strings.Replace(s, "(0)", "", 1) // "+33 (0)6 ..." is "+33 6 ..."
		var b strings.Builder
		for _, r := range s {
			if r >= '0' && r <= '9' {
				b.WriteRune(r)
			}
		}
		d := b.String()
		if strings.HasPrefix(strings.TrimSpace(s), "+33") && len(d) > 2 {
			d = "0" + d[2:]
		} else if strings.HasPrefix(d, "0033") {
			d = "0" + d[4:]
		}
		return d
	case "email":
		return strings.ToLower(strings.TrimSpace(s))
	}
	return s
}

// SplitReference splits a relative literal reference "Type/id" or
// "Type/id/_history/v" into type and id. Absolute URLs (possibly another
// server's), contained ("#x"), urn: and logical references return ok=false:
// they are never taken for resources of this server (index, compartment,
// reference checks).
func SplitReference(ref string) (typ, id string, ok bool) {
	if strings.Contains(ref, "://") {
		return "", "", false
	}
	return splitRef(ref)
}

// splitSearchReference also accepts an absolute URL in a search value and
// keeps its last Type/id.
func splitSearchReference(ref string) (typ, id string, ok bool) { return splitRef(ref) }

func splitRef(ref string) (typ, id string, ok bool) {
	if ref == "" || ref[0] == '#' || strings.HasPrefix(ref, "urn:") {
		return "", "", false
	}
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	j := strings.LastIndexByte(ref, '/')
	if j <= 0 {
		return "", "", false
	}
	id = ref[j+1:]
	rest := ref[:j]
	typ = rest[strings.LastIndexByte(rest, '/')+1:]
	if !IsR4Type(typ) || !ValidID(id) {
		return "", "", false
	}
	return typ, id, true
}
