package fhir

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Query is a parsed FHIR search on one resource type.
type Query struct {
	Type         string
	Filters      []Filter // all must match (AND)
	Count        int      // page size
	Offset       int      // position of the page's first match
	Sort         []SortKey
	Include      []Include
	RevInclude   []Include
	SummaryCount bool     // _summary=count: total only
	Ignored      []string // parameters ignored under lenient handling
}

// Filter is one search parameter; its values are alternatives (OR).
type Filter struct {
	Name     string // parameter name as sent ("_id", "_lastUpdated", "family")
	Param    *Param // nil for _id and _lastUpdated
	Type     ParamType
	Modifier string // "", "exact", "contains", "missing"
	Values   []Value
}

// Value is one alternative of a Filter.
type Value struct {
	Prefix string // date prefixes: eq ne gt lt ge le sa eb
	S      string // normalised string, token code, "Type/id" reference or _id
	Sys    string // token system
	HasSys bool   // a "|" was present: Sys is constrained (possibly to "")
	Lo, Hi int64  // date range
	NoCode bool   // token "system|": any code of that system
}

// SortKey is one _sort key.
type SortKey struct {
	Name  string // "_id", "_lastUpdated" or a parameter name
	Param *Param
	Desc  bool
}

// Include is an _include or _revinclude directive.
type Include struct {
	Source string // the type holding the reference
	Param  *Param
	Target string // optional target type restriction
}

// Limits of a search request.
const (
	DefaultCount = 20
	MaxCount     = 500
	maxFilters   = 40
	maxValues    = 100
)

// reserved are result/control parameters handled outside filters.
var reserved = map[string]bool{"_count": true, "_sort": true, "_include": true, "_revinclude": true,
	"_summary": true, "_total": true, "_format": true, "_pretty": true, "_elements": true, "_offset": true}

// ParseQuery parses search parameters for resource type typ. Under strict
// handling, unknown parameters are an error; otherwise they are ignored and
// listed in Query.Ignored.
func ParseQuery(typ string, vals url.Values, strict bool) (*Query, error) {
	q := &Query{Type: typ, Count: DefaultCount}
	names := make([]string, 0, len(vals))
	for k := range vals {
		names = append(names, k)
	}
	slices.Sort(names)
	bad := func(name, format string, args ...any) error {
		e := Invalid(name, format, args...)
		e.Msg = "search parameter " + name + ": " + e.Msg
		return e
	}
	ignore := func(name, why string) error {
		if strict {
			return &Error{Status: http.StatusBadRequest, Code: "not-supported", Msg: "search parameter " + name + ": " + why, Expr: name}
		}
		q.Ignored = append(q.Ignored, name)
		return nil
	}
	for _, raw := range names {
		name, mod, _ := strings.Cut(raw, ":")
		for _, v := range vals[raw] {
			if reserved[name] {
				if err := q.control(name, mod, v, strict, bad, ignore); err != nil {
					return nil, err
				}
				continue
			}
			if strings.Contains(name, ".") {
				if err := ignore(raw, "chained parameters are not supported"); err != nil {
					return nil, err
				}
				continue
			}
			f, err := parseFilter(typ, name, mod, v)
			if err != nil {
				return nil, err
			}
			if f == nil {
				if err := ignore(raw, "unknown parameter for "+typ); err != nil {
					return nil, err
				}
				continue
			}
			q.Filters = append(q.Filters, *f)
		}
	}
	if len(q.Filters) > maxFilters {
		return nil, Errorf(http.StatusBadRequest, "too-costly", "too many search parameters (at most %d)", maxFilters)
	}
	return q, nil
}

func (q *Query) control(name, mod, v string, strict bool, bad func(string, string, ...any) error, ignore func(string, string) error) error {
	switch name {
	case "_count":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return bad(name, "expected a whole number >= 0, got %q", clip(v))
		}
		q.Count = min(n, MaxCount)
	case "_offset":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return bad(name, "invalid offset")
		}
		q.Offset = n
	case "_summary":
		switch v {
		case "count":
			q.SummaryCount = true
		case "false":
		default:
			return ignore("_summary="+clip(v), "only _summary=count is supported")
		}
	case "_total":
		if v != "none" && v != "estimate" && v != "accurate" {
			return bad(name, "expected none, estimate or accurate")
		}
	case "_format":
		if v != "json" && v != "application/json" && v != "application/fhir+json" {
			return &Error{Status: http.StatusNotAcceptable, Code: "not-supported", Msg: "only JSON is supported (_format=json)"}
		}
	case "_pretty":
	case "_elements":
		return ignore(name, "_elements is not supported; whole resources are returned")
	case "_sort":
		for key := range strings.SplitSeq(v, ",") {
			sk := SortKey{Name: key}
			if strings.HasPrefix(key, "-") {
				sk.Desc, sk.Name = true, key[1:]
			}
			switch sk.Name {
			case "_id", "_lastUpdated":
			default:
				sk.Param = LookupParam(q.Type, sk.Name)
				if sk.Param == nil || (sk.Param.Type != String && sk.Param.Type != Date) {
					return bad(name, "cannot sort %s by %q: _sort takes _id, _lastUpdated and string or date parameters", q.Type, clip(sk.Name))
				}
			}
			q.Sort = append(q.Sort, sk)
		}
	case "_include", "_revinclude":
		if mod != "" {
			return ignore(name+":"+mod, "only plain "+name+" is supported")
		}
		parts := strings.Split(v, ":")
		if len(parts) < 2 || len(parts) > 3 {
			return bad(name, "expected Type:parameter[:TargetType], got %q", clip(v))
		}
		inc := Include{Source: parts[0]}
		if len(parts) == 3 {
			inc.Target = parts[2]
		}
		if name == "_include" && inc.Source != q.Type {
			return bad(name, "%q does not start with the searched type %s", clip(v), q.Type)
		}
		if err := CheckType(inc.Source); err != nil {
			return bad(name, "%s", err.Msg)
		}
		inc.Param = LookupParam(inc.Source, parts[1])
		if inc.Param == nil || inc.Param.Type != Reference {
			return bad(name, "%s has no reference parameter %q", inc.Source, clip(parts[1]))
		}
		if inc.Target != "" && CheckType(inc.Target) != nil {
			return bad(name, "unknown target type %q", clip(inc.Target))
		}
		if name == "_include" {
			q.Include = append(q.Include, inc)
		} else {
			if len(inc.Param.Targets) > 0 && !slices.Contains(inc.Param.Targets, q.Type) {
				return bad(name, "%s:%s does not point to %s", inc.Source, inc.Param.Name, q.Type)
			}
			q.RevInclude = append(q.RevInclude, inc)
		}
	}
	return nil
}

func parseFilter(typ, name, mod, raw string) (*Filter, error) {
	f := &Filter{Name: name, Modifier: mod}
	switch name {
	case "_id":
		f.Type = Token
	case "_lastUpdated":
		f.Type = Date
	default:
		f.Param = LookupParam(typ, name)
		if f.Param == nil {
			return nil, nil
		}
		f.Type = f.Param.Type
	}
	expr := name
	if mod != "" {
		expr += ":" + mod
	}
	switch mod {
	case "", "missing":
	case "exact", "contains":
		if f.Type != String {
			return nil, Invalid(expr, "modifier :%s applies to string parameters only", mod)
		}
	default:
		if f.Type == Reference && CheckType(mod) == nil {
			f.Modifier = "type:" + mod
		} else {
			return nil, Invalid(expr, "unsupported modifier :%s", clip(mod))
		}
	}
	if mod == "missing" {
		if raw != "true" && raw != "false" {
			return nil, Invalid(expr, ":missing takes true or false")
		}
		f.Values = []Value{{S: raw}}
		return f, nil
	}
	parts := splitOr(raw)
	if len(parts) > maxValues {
		return nil, Errorf(http.StatusBadRequest, "too-costly", "search parameter %s: too many values (at most %d)", name, maxValues)
	}
	for _, s := range parts {
		if s == "" {
			return nil, Invalid(expr, "search parameter %s: empty value", name)
		}
		vs, err := parseValue(f, s)
		if err != nil {
			return nil, err
		}
		f.Values = append(f.Values, vs...)
	}
	return f, nil
}

func parseValue(f *Filter, s string) ([]Value, error) {
	switch f.Type {
	case String:
		n := NormString(s)
		if n == "" {
			return nil, Invalid(f.Name, "search parameter %s: empty value", f.Name)
		}
		return []Value{{S: n}}, nil
	case Token:
		if f.Name == "_id" {
			if !ValidID(s) {
				return nil, Invalid(f.Name, "search parameter _id: invalid id %q", clip(s))
			}
			return []Value{{S: s}}, nil
		}
		v := Value{S: s}
		if sys, code, ok := strings.Cut(s, "|"); ok {
			v.HasSys, v.Sys, v.S = true, sys, code
			v.NoCode = code == ""
			if v.NoCode && sys == "" {
				return nil, Invalid(f.Name, "search parameter %s: empty token", f.Name)
			}
		}
		v.S = NormToken(f.Param.Norm, v.S)
		return []Value{v}, nil
	case Date:
		v := Value{Prefix: "eq"}
		if len(s) > 2 && s[0] >= 'a' && s[0] <= 'z' {
			v.Prefix, s = s[:2], s[2:]
			if !slices.Contains([]string{"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"}, v.Prefix) {
				return nil, Invalid(f.Name, "search parameter %s: unknown prefix %q", f.Name, v.Prefix)
			}
		}
		lo, hi, ok := DateRange(s, true)
		if !ok {
			return nil, Invalid(f.Name, "search parameter %s: invalid date %q", f.Name, clip(s))
		}
		v.Lo, v.Hi = lo, hi
		return []Value{v}, nil
	case Reference:
		var typ, id string
		if strings.Contains(s, "/") {
			t, i, ok := splitSearchReference(s)
			if !ok {
				return nil, Invalid(f.Name, "search parameter %s: invalid reference %q", f.Name, clip(s))
			}
			typ, id = t, i
		} else {
			if !ValidID(s) {
				return nil, Invalid(f.Name, "search parameter %s: invalid id %q", f.Name, clip(s))
			}
			id = s
		}
		if m, ok := strings.CutPrefix(f.Modifier, "type:"); ok {
			if typ != "" && typ != m {
				return nil, Invalid(f.Name, "search parameter %s: reference type %s contradicts modifier :%s", f.Name, typ, m)
			}
			typ = m
		}
		if typ != "" {
			return []Value{{S: typ + "/" + id}}, nil
		}
		targets := f.Param.Targets
		if len(targets) == 0 {
			return nil, Invalid(f.Name, "search parameter %s: give the reference as Type/id", f.Name)
		}
		out := make([]Value, len(targets))
		for i, t := range targets {
			out[i] = Value{S: t + "/" + id}
		}
		return out, nil
	}
	return nil, Invalid(f.Name, "unsupported parameter type")
}

// splitOr splits a parameter value on commas not escaped with a backslash,
// and unescapes \, \| \$ and \\.
func splitOr(s string) []string {
	var out []string
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			i++
			b.WriteByte(s[i])
			continue
		}
		if c == ',' {
			out = append(out, b.String())
			b.Reset()
			continue
		}
		b.WriteByte(c)
	}
	return append(out, b.String())
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// Encode renders the query's parameters back into canonical URL form (used
// to build paging cursors and self links).
func (q *Query) Encode(vals url.Values) string {
	out := url.Values{}
	for k, vs := range vals {
		if k == "_offset" || k == "_cursor" {
			continue
		}
		out[k] = vs
	}
	return out.Encode()
}
