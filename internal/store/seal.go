package store

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"carnet/internal/fhir"
)

// Sealer encrypts resources at rest and makes blind-index values
// (seal.Keyring). A store without one keeps resources in clear (tests
// and the benchmark's clear baseline only).
type Sealer interface {
	Seal(ctx context.Context, typ, id string, ver int, scope, field string, plain []byte) ([]byte, error)
	Open(typ, id string, ver int, field string, sealed []byte) ([]byte, error)
	Current(sealed []byte) bool
	Blind(kind, v string) string
	// Has reports whether scope has a data key (Seal makes one otherwise).
	Has(scope string) bool
}

// fieldResource is the sealed field holding a whole resource.
const fieldResource = "resource"

// SealKey is a wrapped data key.
type SealKey struct {
	Num     uint32
	Scope   string // facility id, "" (group) or "#index"
	KEK     string // id of the key-encryption key that wrapped it
	Wrapped []byte
	Created time.Time
	Retired bool // no longer used for new data
}

// SealKeys lists the wrapped data keys.
func (s *SQL) SealKeys(ctx context.Context) ([]SealKey, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT num, scope, kek, wrapped, created, retired FROM seal_keys ORDER BY num`)
	if err != nil {
		return nil, fmt.Errorf("store: seal keys: %w", err)
	}
	defer rows.Close()
	var out []SealKey
	for rows.Next() {
		var k SealKey
		var num, created int64
		var retired int
		if err := rows.Scan(&num, &k.Scope, &k.KEK, &k.Wrapped, &created, &retired); err != nil {
			return nil, fmt.Errorf("store: seal keys: %w", err)
		}
		k.Num, k.Created, k.Retired = uint32(num), fromMicros(created), retired != 0
		out = append(out, k)
	}
	return out, rows.Err()
}

// PutSealKeys inserts new wrapped data keys and updates known ones (a key
// is known by its number, scope and creation time), all or none. A number
// another key holds fails with ErrExists: instances sharing a database
// number their keys from the table, and retry.
func (s *SQL) PutSealKeys(ctx context.Context, keys []SealKey) error {
	return s.execAuth(ctx, func(tx wtx) error {
		for _, k := range keys {
			n, err := tx.ExecN(`INSERT INTO seal_keys (num, scope, kek, wrapped, created, retired) VALUES (?, ?, ?, ?, ?, ?)
				ON CONFLICT (num) DO UPDATE SET kek = excluded.kek, wrapped = excluded.wrapped, retired = excluded.retired
				WHERE seal_keys.scope = excluded.scope AND seal_keys.created = excluded.created`,
				int64(k.Num), k.Scope, k.KEK, k.Wrapped, micros(k.Created), bool01(k.Retired))
			if err != nil {
				return fmt.Errorf("store: seal keys: %w", err)
			}
			if n == 0 {
				return fmt.Errorf("store: seal key %d: %w", k.Num, ErrExists)
			}
		}
		return nil
	})
}

// Sealed reports whether the store holds data keys (its resources are
// sealed, and it cannot be used without its key file).
func (s *SQL) Sealed(ctx context.Context) (bool, error) {
	var n int
	err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM seal_keys`).Scan(&n)
	return n > 0, err
}

// UseSealer makes the store seal what it writes and open what it reads.
// Call it once, before any read or write.
func (s *SQL) UseSealer(sl Sealer) { s.sealer = sl }

// Blind-index kinds (seal.Keyring.Blind).
const (
	blindWhole   = "="
	blindPrefix  = "^"
	blindTrigram = "3"
	blindToken   = "t"
	// maxPrefix: prefixes of a string value are indexed up to this many
	// characters; a longer prefix search matches whole values only.
	maxPrefix = 32
)

// trigramParams are the string parameters (by index id) whose values are
// also indexed by 3-character pieces, for :contains: names. Addresses
// (city, postal code) are searched by prefix and whole value only, which
// saves a fifth of the index rows of a patient.
var trigramParams = func() map[int]bool {
	m := map[int]bool{}
	for _, p := range fhir.AllParams() {
		if p.Type == fhir.String && len(p.Union) == 0 && (p.Name == "family" || p.Name == "given" || p.Name == "name") {
			m[p.ID] = true
		}
	}
	return m
}()

// blindEntries replaces index entries by blind ones: a string value by its
// whole value, each prefix (up to maxPrefix characters) and, for names,
// each trigram, deduplicated per parameter; a token's code by its hash
// (systems stay in clear). Dates and references are unchanged.
func (s *SQL) blindEntries(es []fhir.IndexEntry) []fhir.IndexEntry {
	out := make([]fhir.IndexEntry, 0, len(es)*2)
	seen := map[fhir.IndexEntry]bool{}
	add := func(e fhir.IndexEntry) {
		if !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	for _, e := range es {
		switch e.Type {
		case fhir.String:
			rs := []rune(e.S)
			b := e
			b.S = s.sealer.Blind(blindWhole, e.S)
			add(b)
			for n := 1; n <= min(len(rs), maxPrefix); n++ {
				b.S = s.sealer.Blind(blindPrefix, string(rs[:n]))
				add(b)
			}
			for i := 0; trigramParams[e.Param] && i+3 <= len(rs); i++ {
				b.S = s.sealer.Blind(blindTrigram, string(rs[i:i+3]))
				add(b)
			}
		case fhir.Token:
			e.S = s.sealer.Blind(blindToken, e.S)
			add(e)
		default:
			out = append(out, e)
		}
	}
	return out
}

// modAllOf is an internal string modifier: every value's S is a
// space-separated list of blind values that must all be present.
const modAllOf = "allof"

// blindQuery rewrites a query's string and token filters to blind values.
func (s *SQL) blindQuery(q *fhir.Query) (*fhir.Query, error) {
	if s.sealer == nil {
		return q, nil
	}
	bq := *q
	bq.Filters = make([]fhir.Filter, len(q.Filters))
	for i, f := range q.Filters {
		bq.Filters[i] = f
		if f.Modifier == "missing" || (f.Type != fhir.String && f.Type != fhir.Token) || f.Param == nil {
			continue
		}
		vs := make([]fhir.Value, len(f.Values))
		copy(vs, f.Values)
		bf := &bq.Filters[i]
		bf.Values = vs
		for j := range vs {
			v := &vs[j]
			if f.Type == fhir.Token {
				if !v.NoCode {
					v.S = s.sealer.Blind(blindToken, v.S)
				}
				continue
			}
			rs := []rune(v.S)
			switch f.Modifier {
			case "exact":
				v.S = s.sealer.Blind(blindWhole, v.S)
			case "contains":
				for _, id := range f.Param.IndexIDs() {
					if !trigramParams[id] {
						return nil, fhir.Invalid(f.Name, "%s:contains is not supported: addresses are sealed and searched by their beginning or whole value only", f.Name)
					}
				}
				if len(rs) < 3 {
					return nil, fhir.Invalid(f.Name, "%s:contains needs at least 3 characters: names and addresses are sealed, and searched through hashes of 3-character pieces", f.Name)
				}
				var hs []string
				for k := 0; k+3 <= len(rs); k++ {
					hs = append(hs, s.sealer.Blind(blindTrigram, string(rs[k:k+3])))
				}
				v.S = strings.Join(hs, " ")
			default:
				if len(rs) > maxPrefix {
					v.S = s.sealer.Blind(blindWhole, v.S)
				} else {
					v.S = s.sealer.Blind(blindPrefix, v.S)
				}
			}
		}
		switch f.Modifier {
		case "contains":
			bf.Modifier = modAllOf
		default:
			bf.Modifier = "exact"
		}
	}
	return &bq, nil
}

// sealWrites seals the resources of ws and blinds their index entries, on
// the caller's goroutine before the writer sees them. A write is sealed
// once (a retried Commit reuses it).
func (s *SQL) sealWrites(ctx context.Context, ws []Write) error {
	return s.seal(ctx, ws, true)
}

// seal seals ws; without newKeys, a facility without a data key yet gets
// the group key (a bulk load holds the writer, which storing a new key
// needs).
func (s *SQL) seal(ctx context.Context, ws []Write, newKeys bool) error {
	if s.sealer == nil {
		return nil
	}
	for i := range ws {
		w := &ws[i]
		if w.sealed {
			continue
		}
		if w.Data != nil { // a deletion has no body: NULL, as in clear
			scope := KeyScope(w.Links)
			if !newKeys && !s.sealer.Has(scope) {
				scope = ""
			}
			b, err := s.sealer.Seal(ctx, w.Type, w.ID, w.Version, scope, fieldResource, w.Data)
			if err != nil {
				return err
			}
			w.stored = b
		}
		w.Index = s.blindEntries(w.Index)
		w.sealed = true
	}
	return nil
}

// storedData is what goes into the data column for w.
func (s *SQL) storedData(w *Write) []byte {
	if s.sealer != nil {
		return w.stored
	}
	return w.Data
}

// openData opens a data column value read for typ/id version ver.
func (s *SQL) openData(typ, id string, ver int, b []byte) ([]byte, error) {
	if s.sealer == nil || b == nil {
		return b, nil
	}
	return s.sealer.Open(typ, id, ver, fieldResource, b)
}

// sealStage seals a bulk load's batches on every core, before the single
// loading goroutine writes them (batch order does not matter to a load).
// errFn reports a sealing error once the returned channel is closed.
func (s *SQL) sealStage(ctx context.Context, in <-chan []Write) (out <-chan []Write, errFn func() error) {
	if s.sealer == nil {
		return in, func() error { return nil }
	}
	ch := make(chan []Write, 2*runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for ws := range in {
				mu.Lock()
				failed := first != nil
				mu.Unlock()
				if failed {
					continue // drain, so the producer finishes
				}
				if err := s.seal(ctx, ws, false); err != nil {
					mu.Lock()
					first = cmp.Or(first, err)
					mu.Unlock()
					continue
				}
				select {
				case ch <- ws:
				case <-ctx.Done():
				}
			}
		})
	}
	go func() {
		wg.Wait()
		close(ch)
	}()
	return ch, func() error {
		mu.Lock()
		defer mu.Unlock()
		return first
	}
}

// KeyScope is the data-key scope of a resource with these care links: the
// facility of its first facility link (a Patient's managing organisation,
// an Encounter's service provider), else the group ("").
func KeyScope(links []fhir.CareLink) string {
	for _, l := range links {
		if l.Facility != "" {
			return l.Facility
		}
	}
	return ""
}

// maxSealedSort is how many matches a search sorted by a sealed string may
// have: they are decrypted and sorted in memory (the index holds hashes,
// which have no order).
const maxSealedSort = 10_000

func sortsOnString(q *fhir.Query) bool {
	for _, k := range q.Sort {
		if k.Param != nil && k.Param.Type == fhir.String {
			return true
		}
	}
	return false
}

// searchSortedInMemory answers a search sorted by a sealed string: every
// match (at most maxSealedSort) is read, opened and sorted as the SQL
// order would (a resource's smallest value ascending, largest descending,
// resources without a value last, then storage order).
func (s *SQL) searchSortedInMemory(ctx context.Context, q *fhir.Query, sc *Scope) (*Page, error) {
	all := *q
	all.Sort, all.Offset, all.Count = nil, 0, maxSealedSort+1
	all.Include, all.RevInclude = nil, nil
	p, err := s.search(ctx, &all, sc)
	if err != nil {
		return nil, err
	}
	if p.Total > maxSealedSort {
		return nil, fhir.Invalid("_sort", "sorting by %s decrypts every match, and this search has %d (at most %d): narrow it", q.Sort[0].Name, p.Total, maxSealedSort)
	}
	type keyed struct {
		r    *Resource
		keys []sortVal
	}
	ms := make([]keyed, len(p.Matches))
	for i, m := range p.Matches {
		r, err := fhir.Parse(m.Data)
		if err != nil {
			return nil, fmt.Errorf("store: sort: %w", err)
		}
		es := fhir.Extract(r)
		ms[i] = keyed{r: m, keys: make([]sortVal, len(q.Sort))}
		for j, k := range q.Sort {
			ms[i].keys[j] = sortValue(k, m, es)
		}
	}
	slices.SortStableFunc(ms, func(a, b keyed) int {
		for j, k := range q.Sort {
			if c := a.keys[j].compare(b.keys[j], k.Desc); c != 0 {
				return c
			}
		}
		return 0
	})
	page := &Page{Total: p.Total}
	for i := q.Offset; i < len(ms) && i < q.Offset+q.Count; i++ {
		page.Matches = append(page.Matches, ms[i].r)
	}
	if len(page.Matches) > 0 && (len(q.Include) > 0 || len(q.RevInclude) > 0) {
		if page.Included, err = s.included(ctx, q, page.Matches, sc); err != nil {
			return nil, err
		}
	}
	return page, nil
}

// sortVal is one resource's value for one sort key.
type sortVal struct {
	ok bool
	s  string
	n  int64
}

// compare orders values as the SQL sort does: missing last either way.
func (a sortVal) compare(b sortVal, desc bool) int {
	switch {
	case !a.ok && !b.ok:
		return 0
	case !a.ok:
		return 1
	case !b.ok:
		return -1
	}
	c := cmp.Or(strings.Compare(a.s, b.s), cmp.Compare(a.n, b.n))
	if desc {
		return -c
	}
	return c
}

func sortValue(k fhir.SortKey, m *Resource, es []fhir.IndexEntry) sortVal {
	switch k.Name {
	case "_id":
		return sortVal{ok: true, s: m.ID}
	case "_lastUpdated":
		return sortVal{ok: true, n: m.Updated.UnixMicro()}
	}
	var v sortVal
	for _, e := range es {
		if !slices.Contains(k.Param.IndexIDs(), e.Param) {
			continue
		}
		var c sortVal
		switch k.Param.Type {
		case fhir.Date:
			c = sortVal{ok: true, n: e.Lo}
			if k.Desc {
				c.n = e.Hi
			}
		default:
			c = sortVal{ok: true, s: e.S}
		}
		// MIN ascending, MAX descending.
		if !v.ok || (c.compare(v, false) < 0) != k.Desc && c.compare(v, false) != 0 {
			v = c
		}
	}
	return v
}

// resealChunk is how many stored versions Reseal reads at a time.
const resealChunk = 500

// Reseal re-encrypts with the current data keys every stored version
// (current and history) sealed with a retired key, chunk by chunk, while
// the store serves: a version changed meanwhile is left to its writer,
// which sealed it with a current key. A restarted reseal reads everything
// again but rewrites only what is left. progress gets (versions checked,
// versions in all); the result is how many were re-encrypted.
func (s *SQL) Reseal(ctx context.Context, progress func(done, total int64)) (int64, error) {
	if s.sealer == nil {
		return 0, fmt.Errorf("store: reseal: the store has no keys")
	}
	var total, nr, nh int64
	if err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM resources`).Scan(&nr); err != nil {
		return 0, fmt.Errorf("store: reseal: %w", err)
	}
	if err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM history`).Scan(&nh); err != nil {
		return 0, fmt.Errorf("store: reseal: %w", err)
	}
	total = nr + nh
	var done, changed int64
	type row struct {
		pk       int64
		ver      int
		typ, id  string
		data     []byte
		resealed []byte
	}
	for _, t := range []struct{ read, update string }{
		{`SELECT r.pk, r.ver, r.rtype, r.id, r.data FROM resources r WHERE r.pk > ? OR (r.pk = ? AND r.ver > ?) ORDER BY r.pk LIMIT ?`,
			`UPDATE resources SET data = ? WHERE pk = ? AND ver = ?`},
		{`SELECT h.pk, h.ver, r.rtype, r.id, h.data FROM history h JOIN resources r ON r.pk = h.pk WHERE h.pk > ? OR (h.pk = ? AND h.ver > ?) ORDER BY h.pk, h.ver LIMIT ?`,
			`UPDATE history SET data = ? WHERE pk = ? AND ver = ?`},
	} {
		var lastPK int64 = -1
		lastVer := 0
		for {
			if err := ctx.Err(); err != nil {
				return changed, err
			}
			rows, err := s.rdb.QueryContext(ctx, s.q(t.read), lastPK, lastPK, lastVer, resealChunk)
			if err != nil {
				return changed, fmt.Errorf("store: reseal: %w", err)
			}
			var chunk []row
			for rows.Next() {
				var r row
				if err := rows.Scan(&r.pk, &r.ver, &r.typ, &r.id, &r.data); err != nil {
					rows.Close()
					return changed, fmt.Errorf("store: reseal: %w", err)
				}
				chunk = append(chunk, r)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return changed, fmt.Errorf("store: reseal: %w", err)
			}
			if len(chunk) == 0 {
				break
			}
			var todo []row
			for _, r := range chunk {
				if r.data == nil || s.sealer.Current(r.data) {
					continue // a deletion has no body
				}
				plain, err := s.sealer.Open(r.typ, r.id, r.ver, fieldResource, r.data)
				if err != nil {
					return changed, fmt.Errorf("store: reseal: %w", err)
				}
				scope := ""
				if res, err := fhir.Parse(plain); err == nil {
					scope = KeyScope(fhir.CareLinks(res))
				}
				if r.resealed, err = s.sealer.Seal(ctx, r.typ, r.id, r.ver, scope, fieldResource, plain); err != nil {
					return changed, fmt.Errorf("store: reseal: %w", err)
				}
				todo = append(todo, r)
			}
			if len(todo) > 0 {
				err := func() error {
					s.wmu.Lock()
					defer s.wmu.Unlock()
					return s.inTx(func(tx wtx) error {
						for _, r := range todo {
							n, err := tx.ExecN(t.update, r.resealed, r.pk, r.ver)
							if err != nil {
								return err
							}
							changed += n
						}
						return nil
					})
				}()
				if err != nil {
					return changed, fmt.Errorf("store: reseal: %w", err)
				}
			}
			last := chunk[len(chunk)-1]
			lastPK, lastVer = last.pk, last.ver
			done += int64(len(chunk))
			if progress != nil {
				progress(min(done, total), total)
			}
		}
	}
	return changed, nil
}
