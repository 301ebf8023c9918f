package store

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"carnet/internal/fhir"
)

// maxIncluded bounds the resources _include and _revinclude add to a page.
const maxIncluded = 1000

var idxTable = map[fhir.ParamType]string{fhir.String: "idx_str", fhir.Token: "idx_tok", fhir.Date: "idx_date", fhir.Reference: "idx_ref"}

// where builds the WHERE clause of a search (without the type and deleted
// conditions) and its arguments.
func where(q *fhir.Query) (string, []any, error) {
	var conds []string
	var args []any
	for _, f := range q.Filters {
		c, a, err := filterSQL(&f)
		if err != nil {
			return "", nil, err
		}
		conds = append(conds, c)
		args = append(args, a...)
	}
	return strings.Join(conds, " AND "), args, nil
}

func filterSQL(f *fhir.Filter) (string, []any, error) {
	if f.Modifier == "missing" {
		if f.Param == nil {
			return "", nil, fhir.Invalid(f.Name, ":missing is not supported on %s", f.Name)
		}
		not := ""
		if f.Values[0].S == "true" {
			not = "NOT "
		}
		// A set operation, not a correlated EXISTS: token and reference rows
		// have no (pk, p) index.
		pc, pa := pIn(f.Param)
		return "r.pk " + not + "IN (SELECT x.pk FROM " + idxTable[f.Type] + " x WHERE " + pc + ")", pa, nil
	}
	switch f.Name {
	case "_id":
		ph := make([]string, len(f.Values))
		args := make([]any, len(f.Values))
		for i, v := range f.Values {
			ph[i], args[i] = "?", v.S
		}
		return "r.id IN (" + strings.Join(ph, ",") + ")", args, nil
	case "_lastUpdated":
		var ors []string
		var args []any
		for _, v := range f.Values {
			c, a := dateCond(v, "r.updated", "r.updated", 1_000_000)
			ors = append(ors, c)
			args = append(args, a...)
		}
		return "(" + strings.Join(ors, " OR ") + ")", args, nil
	}
	table, cond, args := indexCond(f)
	return "r.pk IN (SELECT x.pk FROM " + table + " x WHERE " + cond + ")", args, nil
}

// indexCond is the condition on index rows (alias x) of a positive filter on
// an indexed parameter.
func indexCond(f *fhir.Filter) (table, cond string, args []any) {
	var ors []string
	pc, args := pIn(f.Param)
	for _, v := range f.Values {
		switch f.Type {
		case fhir.String:
			switch f.Modifier {
			case "exact":
				ors = append(ors, "x.v = ?")
				args = append(args, v.S)
			case "contains":
				ors = append(ors, `x.v LIKE ? ESCAPE '\'`)
				args = append(args, "%"+likeEscape(v.S)+"%")
			case modAllOf:
				// Blind trigrams: the first on the row, the others on rows
				// of the same resource and parameter.
				hs := strings.Fields(v.S)
				c := "(x.v = ?"
				args = append(args, hs[0])
				for _, h := range hs[1:] {
					c += " AND x.pk IN (SELECT y.pk FROM idx_str y WHERE y.p = x.p AND y.v = ?)"
					args = append(args, h)
				}
				ors = append(ors, c+")")
			default:
				ors = append(ors, "(x.v >= ? AND x.v < ?)")
				args = append(args, v.S, prefixEnd(v.S))
			}
		case fhir.Token:
			switch {
			case v.NoCode:
				ors = append(ors, "x.sys = ?")
				args = append(args, v.Sys)
			case v.HasSys:
				ors = append(ors, "(x.code = ? AND x.sys = ?)")
				args = append(args, v.S, v.Sys)
			default:
				ors = append(ors, "x.code = ?")
				args = append(args, v.S)
			}
		case fhir.Date:
			c, a := dateCond(v, "x.lo", "x.hi", 1)
			ors = append(ors, c)
			args = append(args, a...)
		case fhir.Reference:
			ors = append(ors, "x.v = ?")
			args = append(args, v.S)
		}
	}
	return idxTable[f.Type], pc + " AND (" + strings.Join(ors, " OR ") + ")", args
}

// fromIndex plans a search answered from the index rows alone: every filter
// is on an indexed parameter (the first one positive, to drive it) and the
// order is the default. Index rows exist only for live resources and a
// parameter id implies the type, so resources is only read for the page.
// It returns the FROM/WHERE of distinct matching pks over alias x.
func fromIndex(q *fhir.Query) (string, []any, bool) {
	if len(q.Sort) > 0 || len(q.Filters) == 0 {
		return "", nil, false
	}
	var driver *fhir.Filter
	for i := range q.Filters {
		f := &q.Filters[i]
		if f.Param == nil {
			return "", nil, false // _id, _lastUpdated
		}
		if driver == nil && f.Modifier != "missing" {
			driver = f
		}
	}
	if driver == nil {
		return "", nil, false
	}
	table, cond, args := indexCond(driver)
	from := "FROM " + table + " x WHERE " + cond
	for i := range q.Filters {
		f := &q.Filters[i]
		if f == driver {
			continue
		}
		c, a, err := filterSQL(f)
		if err != nil {
			return "", nil, false
		}
		from += " AND " + strings.Replace(c, "r.pk ", "x.pk ", 1)
		args = append(args, a...)
	}
	return from, args, true
}

// indexDriven reports whether the query has a positive index filter that
// should drive it (rather than a scan of the type).
func indexDriven(q *fhir.Query) bool {
	for _, f := range q.Filters {
		if f.Modifier != "missing" && f.Modifier != "contains" && f.Name != "_lastUpdated" {
			for _, v := range f.Values {
				if v.Prefix == "ne" {
					return false
				}
			}
			return true
		}
	}
	return false
}

// pIn is the condition on x.p for a parameter (several ids for a union).
func pIn(p *fhir.Param) (string, []any) {
	ids := p.IndexIDs()
	if len(ids) == 1 {
		return "x.p = ?", []any{ids[0]}
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return "x.p IN (" + placeholders(len(ids)) + ")", args
}

// dateCond compares an indexed range [lo, hi] with a search range; scale
// converts seconds to the column's unit (microseconds for r.updated).
func dateCond(v fhir.Value, lo, hi string, scale int64) (string, []any) {
	slo, shi := v.Lo*scale, v.Hi*scale+scale-1
	switch v.Prefix {
	case "ne":
		return "NOT (" + lo + " >= ? AND " + hi + " <= ?)", []any{slo, shi}
	case "gt":
		return hi + " > ?", []any{shi}
	case "lt":
		return lo + " < ?", []any{slo}
	case "ge":
		return hi + " >= ?", []any{slo}
	case "le":
		return lo + " <= ?", []any{shi}
	case "sa":
		return lo + " > ?", []any{shi}
	case "eb":
		return hi + " < ?", []any{slo}
	}
	return "(" + lo + " >= ? AND " + hi + " <= ?)", []any{slo, shi}
}

// prefixEnd returns the smallest string greater than every string that has
// prefix s.
func prefixEnd(s string) string {
	r := []rune(s)
	for i := len(r) - 1; i >= 0; i-- {
		if r[i] < 0x10FFFF && !(r[i] >= 0xD7FF && r[i] < 0xE000) {
			r[i]++
			return string(r[:i+1])
		}
	}
	return s + "\U0010FFFF"
}

func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

func orderBy(q *fhir.Query) (string, []any) {
	var keys []string
	var args []any
	for _, k := range q.Sort {
		dir := " ASC"
		agg := "MIN"
		if k.Desc {
			dir, agg = " DESC", "MAX"
		}
		switch k.Name {
		case "_id":
			keys = append(keys, "r.id"+dir)
		case "_lastUpdated":
			keys = append(keys, "r.updated"+dir)
		default:
			col := "x.v"
			if k.Param.Type == fhir.Date {
				col = "x.lo"
				if k.Desc {
					col = "x.hi"
				}
			}
			// Resources without the value sort last in both directions, on
			// both back ends.
			pc, pa := pIn(k.Param)
			sub := "(SELECT " + agg + "(" + col + ") FROM " + idxTable[k.Param.Type] + " x WHERE x.pk = r.pk AND " + pc + ")"
			keys = append(keys, sub+" IS NULL", sub+dir)
			args = append(args, pa...)
			args = append(args, pa...)
		}
	}
	keys = append(keys, "r.pk")
	return strings.Join(keys, ", "), args
}

// Search runs a query: total, one page of matches and the included
// resources, all within sc (nil: unrestricted).
func (s *SQL) Search(ctx context.Context, q *fhir.Query, sc *Scope) (*Page, error) {
	q, err := s.blindQuery(q)
	if err != nil {
		return nil, err
	}
	if sortsOnString(q) && !q.SummaryCount && q.Count > 0 {
		return s.searchSortedInMemory(ctx, q, sc)
	}
	return s.search(ctx, q, sc)
}

// search runs a query whose values are already blind.
func (s *SQL) search(ctx context.Context, q *fhir.Query, sc *Scope) (*Page, error) {
	cond, args, err := where(q)
	if err != nil {
		return nil, err
	}
	base := "FROM resources r WHERE r.rtype = ? AND r.deleted = 0"
	if cond != "" {
		if s.d.Unindexed != nil && indexDriven(q) {
			base = "FROM resources r WHERE " + s.d.Unindexed("r.rtype") + " = ? AND r.deleted = 0"
		}
		base += " AND " + cond
	}
	bargs := append([]any{q.Type}, args...)
	sf, sargs, err := s.filter(ctx, sc, q.Type)
	if err != nil {
		return nil, err
	}
	if from, fargs, ok := fromIndex(q); ok {
		if sf != "" {
			// Intersect on indexes only: the (patient, rtype) index gives
			// the pks of the reachable patients' resources.
			from += " AND x.pk IN (SELECT r.pk FROM resources r WHERE r.rtype = ? AND " + sf + ")"
			fargs = append(append(fargs, q.Type), sargs...)
		}
		return s.searchFromIndex(ctx, q, from, fargs, sc)
	}
	if sf != "" {
		base += " AND " + sf
		bargs = append(bargs, sargs...)
	}
	page := &Page{}
	if err := s.queryRow(ctx, "SELECT COUNT(*) "+base, bargs...).Scan(&page.Total); err != nil {
		return nil, fmt.Errorf("store: search count: %w", err)
	}
	if q.SummaryCount || q.Count == 0 || q.Offset >= page.Total {
		return page, nil
	}
	ob, oargs := orderBy(q)
	query := "SELECT r.id, r.ver, r.updated, r.patient, r.data " + base + " ORDER BY " + ob + " LIMIT ? OFFSET ?"
	all := append(append(bargs, oargs...), q.Count, q.Offset)
	rows, err := s.query(ctx, query, all...)
	if err != nil {
		return nil, fmt.Errorf("store: search: %w", err)
	}
	for rows.Next() {
		r := &Resource{Type: q.Type}
		var upd int64
		var patient *string
		if err := rows.Scan(&r.ID, &r.Version, &upd, &patient, &r.Data); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: search: %w", err)
		}
		if patient != nil {
			r.Patient = *patient
		}
		r.Updated = fromMicros(upd)
		if r.Data, err = s.openData(r.Type, r.ID, r.Version, r.Data); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: search: %w", err)
		}
		page.Matches = append(page.Matches, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: search: %w", err)
	}
	if len(page.Matches) > 0 && (len(q.Include) > 0 || len(q.RevInclude) > 0) {
		if page.Included, err = s.included(ctx, q, page.Matches, sc); err != nil {
			return nil, err
		}
	}
	return page, nil
}

// searchFromIndex counts and pages on index rows, then reads the page.
func (s *SQL) searchFromIndex(ctx context.Context, q *fhir.Query, from string, args []any, sc *Scope) (*Page, error) {
	page := &Page{}
	var pks []any
	if sc != nil && !q.SummaryCount && q.Count > 0 {
		// A scoped search (a clinician's patients) usually matches few: one
		// query for the matching pks gives the total and the page.
		all, err := s.pks(ctx, "SELECT DISTINCT x.pk "+from+" ORDER BY x.pk LIMIT "+strconv.Itoa(scopedScan+1), args)
		if err != nil {
			return nil, err
		}
		if len(all) <= scopedScan {
			page.Total = len(all)
			if q.Offset < len(all) {
				pks = all[q.Offset:min(len(all), q.Offset+q.Count)]
			}
			return s.finishFromIndex(ctx, q, page, pks, sc)
		}
	}
	if err := s.queryRow(ctx, "SELECT COUNT(DISTINCT x.pk) "+from, args...).Scan(&page.Total); err != nil {
		return nil, fmt.Errorf("store: search count: %w", err)
	}
	if q.SummaryCount || q.Count == 0 || q.Offset >= page.Total {
		return page, nil
	}
	pks, err := s.pks(ctx, "SELECT DISTINCT x.pk "+from+" ORDER BY x.pk LIMIT ? OFFSET ?", append(args, q.Count, q.Offset))
	if err != nil {
		return nil, err
	}
	return s.finishFromIndex(ctx, q, page, pks, sc)
}

// scopedScan bounds the pks a scoped search reads in one query.
const scopedScan = 2000

// pks runs a query of pks.
func (s *SQL) pks(ctx context.Context, query string, args []any) ([]any, error) {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: search: %w", err)
	}
	var pks []any
	for rows.Next() {
		var pk int64
		if err := rows.Scan(&pk); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: search: %w", err)
		}
		pks = append(pks, pk)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: search: %w", err)
	}
	return pks, nil
}

func (s *SQL) finishFromIndex(ctx context.Context, q *fhir.Query, page *Page, pks []any, sc *Scope) (*Page, error) {
	var err error
	if len(pks) == 0 {
		return page, nil
	}
	page.Matches, err = s.fetch(ctx, "r.pk IN ("+placeholders(len(pks))+")", pks, len(pks))
	if err != nil {
		return nil, err
	}
	if len(q.Include) > 0 || len(q.RevInclude) > 0 {
		if page.Included, err = s.included(ctx, q, page.Matches, sc); err != nil {
			return nil, err
		}
	}
	return page, nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

func (s *SQL) included(ctx context.Context, q *fhir.Query, matches []*Resource, sc *Scope) ([]*Resource, error) {
	seen := map[string]bool{}
	for _, m := range matches {
		seen[m.Type+"/"+m.ID] = true
	}
	var out []*Resource
	// _include: follow the matches' references, read from the matches
	// themselves (reference rows have no (pk, p) index).
	targets := map[string][]string{}
	for _, inc := range q.Include {
		for _, m := range matches {
			r, err := fhir.Parse(m.Data)
			if err != nil {
				return nil, fmt.Errorf("store: include: %w", err)
			}
			for _, ref := range fhir.References(r, inc.Param) {
				t, id, _ := strings.Cut(ref, "/")
				if (inc.Target == "" || inc.Target == t) && !seen[ref] {
					seen[ref] = true
					targets[t] = append(targets[t], id)
				}
			}
		}
	}
	types := make([]string, 0, len(targets))
	for t := range targets {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		ids := targets[t]
		args := []any{t}
		for _, id := range ids {
			args = append(args, id)
		}
		rs, err := s.fetch(ctx, "r.rtype = ? AND r.id IN ("+placeholders(len(ids))+")", args, maxIncluded-len(out))
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	// _revinclude: resources pointing at the matches.
	if len(q.RevInclude) > 0 {
		refArgs := make([]any, len(matches))
		for i, m := range matches {
			refArgs[i] = m.Type + "/" + m.ID
		}
		for _, inc := range q.RevInclude {
			if len(out) >= maxIncluded {
				break
			}
			pc, pa := pIn(inc.Param)
			args := append(append([]any{inc.Source}, pa...), refArgs...)
			rs, err := s.fetch(ctx, "r.rtype = ? AND r.pk IN (SELECT x.pk FROM idx_ref x WHERE "+pc+" AND x.v IN ("+placeholders(len(refArgs))+"))", args, maxIncluded-len(out))
			if err != nil {
				return nil, err
			}
			for _, r := range rs {
				if !seen[r.Type+"/"+r.ID] {
					seen[r.Type+"/"+r.ID] = true
					out = append(out, r)
				}
			}
		}
	}
	return s.scopeIncluded(ctx, sc, out)
}

func (s *SQL) fetch(ctx context.Context, cond string, args []any, limit int) ([]*Resource, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.query(ctx, "SELECT r.rtype, r.id, r.ver, r.updated, r.patient, r.data FROM resources r WHERE r.deleted = 0 AND "+cond+" ORDER BY r.pk LIMIT ?", append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("store: fetch: %w", err)
	}
	defer rows.Close()
	var out []*Resource
	for rows.Next() {
		r := &Resource{}
		var upd int64
		var patient *string
		if err := rows.Scan(&r.Type, &r.ID, &r.Version, &upd, &patient, &r.Data); err != nil {
			return nil, err
		}
		if patient != nil {
			r.Patient = *patient
		}
		r.Updated = fromMicros(upd)
		var err error
		if r.Data, err = s.openData(r.Type, r.ID, r.Version, r.Data); err != nil {
			return nil, fmt.Errorf("store: fetch: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
