package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"carnet/internal/fhir"
)

// Commit applies ws atomically and durably, through the group-commit writer.
func (s *SQL) Commit(ctx context.Context, ws []Write) error {
	if len(ws) == 0 {
		return nil
	}
	if err := s.sealWrites(ctx, ws); err != nil {
		return err
	}
	return s.enqueue(ctx, &commitReq{ws: ws, done: make(chan error, 1)})
}

// CommitAudited applies ws and appends their audit records in the same
// transaction: the write and its entry are durable together, or neither.
func (s *SQL) CommitAudited(ctx context.Context, ws []Write, recs []*AuditRecord) error {
	if len(recs) == 0 {
		return s.Commit(ctx, ws)
	}
	if s.auditFault != nil {
		if err := s.auditFault(); err != nil {
			return err
		}
	}
	if err := s.sealWrites(ctx, ws); err != nil {
		return err
	}
	return s.enqueue(ctx, &commitReq{ws: ws, audit: recs, done: make(chan error, 1)})
}

// enqueue hands a request to the group-commit writer and waits for it.
func (s *SQL) enqueue(ctx context.Context, req *commitReq) error {
	select {
	case s.queue <- req:
	case <-s.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued the request may commit: wait for the outcome whatever the
	// caller's context says, so that an answer never lies.
	return <-req.done
}

func (s *SQL) writer() {
	defer s.wg.Done()
	batch := make([]*commitReq, 0, maxBatch)
	keys := time.NewTicker(auditKeyEvery)
	defer keys.Stop()
	keying := false // audit entries wait for their search keys
	for {
		if keying {
			// One chunk, then at most one batch of requests, until the
			// keys have caught up: neither starves the other. An error is
			// retried on the next tick, and FindAudit reports it.
			s.wmu.Lock()
			more, err := s.indexAuditChunk(auditKeyChunk)
			s.wmu.Unlock()
			keying = more && err == nil
		}
		var first *commitReq
		if keying {
			select {
			case first = <-s.queue:
			case <-s.stop:
				s.drain()
				return
			default:
				continue
			}
		} else {
			select {
			case <-keys.C:
				keying = true
				continue
			case first = <-s.queue:
			case <-s.stop:
				s.drain()
				return
			}
		}
		batch = append(batch[:0], first)
	fill:
		for len(batch) < maxBatch {
			select {
			case r := <-s.queue:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.commitBatch(batch)
	}
}

// drain commits what is queued when the store closes.
func (s *SQL) drain() {
	for {
		select {
		case r := <-s.queue:
			s.commitBatch([]*commitReq{r})
		default:
			return
		}
	}
}

// wtx is the writer's open transaction on its dedicated connection.
type wtx struct {
	s *SQL
}

// prep returns the writer's prepared statement for query (kept across
// transactions).
func (t wtx) prep(query string) (*sql.Stmt, error) {
	s := t.s
	if st, ok := s.wst[query]; ok {
		return st, nil
	}
	st, err := s.wconn.PrepareContext(context.Background(), s.q(query))
	if err != nil {
		return nil, err
	}
	s.wst[query] = st
	return st, nil
}

func (t wtx) Exec(query string, args ...any) error {
	st, err := t.prep(query)
	if err != nil {
		return err
	}
	_, err = st.Exec(args...)
	return err
}

// ExecN runs a statement and returns how many rows it changed.
func (t wtx) ExecN(query string, args ...any) (int64, error) {
	st, err := t.prep(query)
	if err != nil {
		return 0, err
	}
	res, err := st.Exec(args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t wtx) QueryRow(query string, args ...any) *sql.Row {
	st, err := t.prep(query)
	if err != nil {
		// Surface the error through a failing row.
		return t.s.wconn.QueryRowContext(context.Background(), "SELECT error_in_prepare", args...)
	}
	return st.QueryRow(args...)
}

func (t wtx) Query(query string, args ...any) (*sql.Rows, error) {
	st, err := t.prep(query)
	if err != nil {
		return nil, err
	}
	return st.Query(args...)
}

// raw runs a statement that is not worth preparing (BEGIN, SAVEPOINT...).
func (t wtx) raw(query string) error {
	_, err := t.s.wconn.ExecContext(context.Background(), query)
	return err
}

// resetWriter drops the writer connection and its statements; the next
// transaction opens a fresh one. Call with wmu held.
func (s *SQL) resetWriter() {
	for _, st := range s.wst {
		st.Close()
	}
	s.wst = nil
	if s.wconn != nil {
		s.wconn.Close()
		s.wconn = nil
	}
}

// writerConn opens the writer's dedicated connection if it is not open.
// Call with wmu held.
func (s *SQL) writerConn(ctx context.Context) error {
	if s.wconn != nil {
		return nil
	}
	c, err := s.wdb.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: writer connection: %w", err)
	}
	s.wconn, s.wst = c, map[string]*sql.Stmt{}
	return nil
}

// inTx runs fn in a transaction on the writer connection. Call with wmu held.
func (s *SQL) inTx(fn func(tx wtx) error) error {
	if err := s.writerConn(context.Background()); err != nil {
		return err
	}
	tx := wtx{s: s}
	begin := s.d.Begin
	if begin == "" {
		begin = "BEGIN"
	}
	if err := tx.raw(begin); err != nil {
		s.resetWriter()
		return fmt.Errorf("store: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		if rerr := tx.raw("ROLLBACK"); rerr != nil {
			s.resetWriter()
		}
		return err
	}
	if err := tx.raw("COMMIT"); err != nil {
		if rerr := tx.raw("ROLLBACK"); rerr != nil {
			s.resetWriter()
		}
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// pending index rows of a batch, inserted together after the requests'
// resource rows (or before an update, see commitBatch).
type indexRows struct{ str, tok, date, ref, link [][]any }

func (ir *indexRows) add(pk int64, es []fhir.IndexEntry, ls []fhir.CareLink) {
	for _, l := range ls {
		ir.link = append(ir.link, []any{l.Practitioner, l.Patient, pk, l.Facility, l.Until})
	}
	for _, e := range es {
		switch e.Type {
		case fhir.String:
			ir.str = append(ir.str, []any{e.Param, e.S, pk})
		case fhir.Token:
			ir.tok = append(ir.tok, []any{e.Param, e.S, e.Sys, pk})
		case fhir.Date:
			ir.date = append(ir.date, []any{e.Param, e.Lo, e.Hi, pk})
		case fhir.Reference:
			ir.ref = append(ir.ref, []any{e.Param, e.S, pk})
		}
	}
}

// counts and truncate undo what a failed request queued.
func (ir *indexRows) counts() [5]int {
	return [5]int{len(ir.str), len(ir.tok), len(ir.date), len(ir.ref), len(ir.link)}
}
func (ir *indexRows) truncate(n [5]int) {
	ir.str, ir.tok, ir.date, ir.ref, ir.link = ir.str[:n[0]], ir.tok[:n[1]], ir.date[:n[2]], ir.ref[:n[3]], ir.link[:n[4]]
}

func (s *SQL) flushIndex(tx wtx, ir *indexRows) error {
	for _, t := range []struct {
		table, cols string
		rows        [][]any
	}{
		{"idx_str", "p, v, pk", ir.str},
		{"idx_tok", "p, code, sys, pk", ir.tok},
		{"idx_date", "p, lo, hi, pk", ir.date},
		{"idx_ref", "p, v, pk", ir.ref},
		{"care_link", "prac, patient, src, facility, until", ir.link},
	} {
		if err := s.insertRows(tx, t.table, t.cols, t.rows); err != nil {
			return fmt.Errorf("store: index: %w", err)
		}
	}
	ir.truncate([5]int{})
	return nil
}

func allNew(ws []Write) bool {
	for i := range ws {
		if !ws[i].New {
			return false
		}
	}
	return true
}

// needsSavepoint: can a failure of this request leave rows behind that must
// be undone without undoing the other requests of the batch?
func (s *SQL) needsSavepoint(batchLen int, ws []Write) bool {
	if batchLen == 1 || len(ws) == 0 {
		return false // a failure rolls the whole transaction back; audit-only requests have no rows to undo
	}
	if !s.d.StatementAtomic || len(ws) > 1 {
		return true
	}
	return !ws[0].New // an update runs several statements
}

// commitBatch runs a batch of requests in one transaction. A request that
// fails is undone alone (savepoint) and gets its error; the others commit.
// If the transaction itself fails, every request gets the error.
func (s *SQL) commitBatch(batch []*commitReq) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	errs := make([]error, len(batch))
	var ir indexRows
	err := s.inTx(func(tx wtx) error {
		for i, r := range batch {
			if !allNew(r.ws) {
				// An update deletes its resource's index rows from the table,
				// so none may still wait in the queue: write what earlier
				// requests queued now, outside this request's savepoint.
				if err := s.flushIndex(tx, &ir); err != nil {
					return err
				}
			}
			sp := s.needsSavepoint(len(batch), r.ws)
			if sp {
				if err := tx.raw("SAVEPOINT w"); err != nil {
					return err
				}
			}
			mark := ir.counts()
			errs[i] = s.apply(tx, r.ws, &ir)
			if errs[i] != nil {
				ir.truncate(mark)
				if len(batch) == 1 {
					return errs[i]
				}
				if sp {
					if err := tx.raw("ROLLBACK TO SAVEPOINT w"); err != nil {
						return err
					}
				}
			}
			if sp {
				if err := tx.raw("RELEASE SAVEPOINT w"); err != nil {
					return err
				}
			}
		}
		if err := s.flushIndex(tx, &ir); err != nil {
			return err
		}
		return s.appendAudit(tx, batch)
	})
	if s.reach != nil && touchesRelationships(batch) {
		// Before anyone is told the write is done (and also on failure:
		// invalidating too much is harmless).
		s.relationshipsChanged()
	}
	if err == nil && s.cache != nil {
		for i, r := range batch {
			if errs[i] == nil {
				for j := range r.ws {
					w := r.ws[j].Resource
					s.cache.putWrite(&w)
				}
			}
		}
	}
	for i, r := range batch {
		switch {
		case err != nil && len(batch) == 1:
			r.done <- err
		case err != nil:
			r.done <- fmt.Errorf("store: commit: %w", err)
		default:
			r.done <- errs[i]
		}
	}
}

// touchesRelationships: does the batch write a type care links come from?
func touchesRelationships(batch []*commitReq) bool {
	for _, r := range batch {
		for i := range r.ws {
			switch r.ws[i].Type {
			case "Patient", "Encounter", "CareTeam":
				return true
			}
		}
	}
	return false
}

func (s *SQL) apply(tx wtx, ws []Write, ir *indexRows) error {
	for i := range ws {
		if err := s.applyOne(tx, &ws[i], ir); err != nil {
			return err
		}
	}
	return nil
}

func bool01(b bool) int {
	if b {
		return 1
	}
	return 0
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (s *SQL) applyOne(tx wtx, w *Write, ir *indexRows) error {
	var pk int64
	var old []byte
	if !w.New {
		var cur int
		err := tx.QueryRow(`SELECT pk, ver, data FROM resources WHERE rtype = ? AND id = ?`+s.d.ForUpdate, w.Type, w.ID).Scan(&pk, &cur, &old)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if w.IfVersion != 0 {
				return ErrConflict
			}
		case err != nil:
			return fmt.Errorf("store: version check: %w", err)
		case cur != w.IfVersion:
			return ErrConflict
		}
		if old != nil {
			var err error
			if old, err = s.openData(w.Type, w.ID, cur, old); err != nil {
				return fmt.Errorf("store: %w", err)
			}
		}
	}
	if pk == 0 {
		err := tx.QueryRow(`INSERT INTO resources (rtype, id, ver, updated, deleted, patient, data) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING pk`,
			w.Type, w.ID, w.Version, micros(w.Updated), bool01(w.Deleted), nullStr(w.Patient), s.storedData(w)).Scan(&pk)
		if err != nil {
			if s.d.IsUnique(err) {
				return ErrConflict
			}
			return fmt.Errorf("store: insert: %w", err)
		}
	} else {
		if err := tx.Exec(`INSERT INTO history (pk, ver, updated, deleted, data) SELECT pk, ver, updated, deleted, data FROM resources WHERE pk = ?`, pk); err != nil {
			return fmt.Errorf("store: history: %w", err)
		}
		if err := tx.Exec(`UPDATE resources SET ver = ?, updated = ?, deleted = ?, patient = ?, data = ? WHERE pk = ?`,
			w.Version, micros(w.Updated), bool01(w.Deleted), nullStr(w.Patient), s.storedData(w), pk); err != nil {
			return fmt.Errorf("store: update: %w", err)
		}
		// This request may have queued rows of the same resource (written
		// twice in one Commit): write them first so unindex removes them.
		if err := s.flushIndex(tx, ir); err != nil {
			return err
		}
		if err := s.unindex(tx, pk, old); err != nil {
			return err
		}
		if err := tx.Exec(`DELETE FROM care_link WHERE src = ?`, pk); err != nil {
			return fmt.Errorf("store: unlink: %w", err)
		}
	}
	if !w.Deleted {
		ir.add(pk, w.Index, w.Links)
	}
	return nil
}

// unindex removes the index rows of pk. Date rows go by pk (they have a
// (pk, p) index); string, token and reference rows, the bulk of the index,
// have none, so they are deleted by exact key, re-extracted (and blinded)
// from the current version's JSON (old, nil for a deleted resource, which
// has no rows).
func (s *SQL) unindex(tx wtx, pk int64, old []byte) error {
	if err := tx.Exec(`DELETE FROM idx_date WHERE pk = ?`, pk); err != nil {
		return fmt.Errorf("store: unindex: %w", err)
	}
	if old == nil {
		return nil
	}
	r, err := fhir.Parse(old)
	if err != nil {
		return fmt.Errorf("store: unindex: stored resource unreadable: %w", err)
	}
	es := fhir.Extract(r)
	if s.sealer != nil {
		es = s.blindEntries(es)
	}
	for _, e := range es {
		switch e.Type {
		case fhir.Token:
			err = tx.Exec(`DELETE FROM idx_tok WHERE p = ? AND code = ? AND sys = ? AND pk = ?`, e.Param, e.S, e.Sys, pk)
		case fhir.String:
			err = tx.Exec(`DELETE FROM idx_str WHERE p = ? AND v = ? AND pk = ?`, e.Param, e.S, pk)
		case fhir.Reference:
			err = tx.Exec(`DELETE FROM idx_ref WHERE p = ? AND v = ? AND pk = ?`, e.Param, e.S, pk)
		}
		if err != nil {
			return fmt.Errorf("store: unindex: %w", err)
		}
	}
	return nil
}

const rowsPerInsert = 100

// insertRows writes rows with multi-row INSERTs of up to rowsPerInsert rows.
func (s *SQL) insertRows(tx wtx, table, cols string, rows [][]any) error {
	if s.d.RowInserts && len(rows) > 0 {
		st, err := tx.prep("INSERT INTO " + table + " (" + cols + ") VALUES (" + placeholders(len(rows[0])) + ")")
		if err != nil {
			return err
		}
		for _, r := range rows {
			if _, err := st.Exec(r...); err != nil {
				return err
			}
		}
		return nil
	}
	for len(rows) > 0 {
		n := min(len(rows), rowsPerInsert)
		chunk := rows[:n]
		rows = rows[n:]
		var b strings.Builder
		b.WriteString("INSERT INTO " + table + " (" + cols + ") VALUES ")
		args := make([]any, 0, n*len(chunk[0]))
		for i, r := range chunk {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('(')
			b.WriteString(placeholders(len(r)))
			b.WriteByte(')')
			args = append(args, r...)
		}
		if err := tx.Exec(b.String(), args...); err != nil {
			return err
		}
	}
	return nil
}

// loadTxResources is how many resources a bulk-load transaction holds.
const loadTxResources = 20_000

// loadIndexTx is how many index rows a bulk-load transaction holds.
const loadIndexTx = 400_000

// Compact index rows kept in memory during a bulk load, sorted by key before
// they are written so that every index B-tree is appended to in order.
type (
	strRow struct {
		p  int32
		pk int64
		v  string
	}
	tokRow struct {
		p         int32
		pk        int64
		code, sys string
	}
	dateRow struct {
		p          int32
		pk, lo, hi int64
	}

	linkRow struct {
		prac, patient, facility string
		src, until              int64
	}
)

type bulkIndex struct {
	str, ref []strRow
	tok      []tokRow
	date     []dateRow
	link     []linkRow
}

func (b *bulkIndex) add(pk int64, es []fhir.IndexEntry, ls []fhir.CareLink) {
	for _, l := range ls {
		b.link = append(b.link, linkRow{l.Practitioner, l.Patient, l.Facility, pk, l.Until})
	}
	for _, e := range es {
		p := int32(e.Param)
		switch e.Type {
		case fhir.String:
			b.str = append(b.str, strRow{p, pk, e.S})
		case fhir.Token:
			b.tok = append(b.tok, tokRow{p, pk, e.S, e.Sys})
		case fhir.Date:
			b.date = append(b.date, dateRow{p, pk, e.Lo, e.Hi})
		case fhir.Reference:
			b.ref = append(b.ref, strRow{p, pk, e.S})
		}
	}
}

func (b *bulkIndex) rows() int {
	return len(b.str) + len(b.ref) + len(b.tok) + len(b.date) + len(b.link)
}

func cmpStr(a, b strRow) int {
	if a.p != b.p {
		return cmp.Compare(a.p, b.p)
	}
	if c := strings.Compare(a.v, b.v); c != 0 {
		return c
	}
	return cmp.Compare(a.pk, b.pk)
}

func (b *bulkIndex) sort() {
	var wg sync.WaitGroup
	run := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	run(func() { slices.SortFunc(b.str, cmpStr) })
	run(func() { slices.SortFunc(b.ref, cmpStr) })
	run(func() {
		slices.SortFunc(b.link, func(a, c linkRow) int {
			if x := strings.Compare(a.prac, c.prac); x != 0 {
				return x
			}
			if x := strings.Compare(a.patient, c.patient); x != 0 {
				return x
			}
			if a.src != c.src {
				return cmp.Compare(a.src, c.src)
			}
			return strings.Compare(a.facility, c.facility)
		})
	})
	run(func() {
		slices.SortFunc(b.tok, func(a, c tokRow) int {
			if a.p != c.p {
				return cmp.Compare(a.p, c.p)
			}
			if x := strings.Compare(a.code, c.code); x != 0 {
				return x
			}
			if x := strings.Compare(a.sys, c.sys); x != 0 {
				return x
			}
			return cmp.Compare(a.pk, c.pk)
		})
	})
	run(func() {
		slices.SortFunc(b.date, func(a, c dateRow) int {
			if a.p != c.p {
				return cmp.Compare(a.p, c.p)
			}
			if a.lo != c.lo {
				return cmp.Compare(a.lo, c.lo)
			}
			if a.hi != c.hi {
				return cmp.Compare(a.hi, c.hi)
			}
			return cmp.Compare(a.pk, c.pk)
		})
	})
	wg.Wait()
}

// Load bulk-inserts new resources into an empty store. Resource rows are
// appended as batches arrive; index rows are kept in memory, sorted once and
// appended in key order; the secondary and unique indexes are built at the
// end. It holds the writer for its whole duration.
func (s *SQL) Load(ctx context.Context, batches <-chan []Write, progress func(int), phase LoadPhase) (err error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.resetWriter() // give the connection back: the statements below use the pool
	for _, p := range s.d.BulkStart {
		if _, err := s.wdb.ExecContext(ctx, p); err != nil {
			return fmt.Errorf("store: load: %w", err)
		}
	}
	for _, ix := range append(slices.Clone(secondary), unique...) {
		if _, err := s.wdb.ExecContext(ctx, "DROP INDEX IF EXISTS "+ix.name); err != nil {
			return fmt.Errorf("store: load: %w", err)
		}
	}
	defer s.relationshipsChanged()
	defer func() {
		s.resetWriter()
		if phase != nil {
			phase("building indexes", 0)
		}
		if e := ensureIndexes(context.Background(), s.wdb); e != nil && err == nil {
			err = fmt.Errorf("store: load: %w", e)
		}
		for _, p := range s.d.BulkEnd {
			if _, e := s.wdb.Exec(p); e != nil && err == nil {
				err = fmt.Errorf("store: load: %w", e)
			}
		}
	}()
	batches, sealErr := s.sealStage(ctx, batches)
	defer func() {
		if e := sealErr(); e != nil && err == nil {
			err = e
		}
	}()
	var bi bulkIndex
	for done := false; !done; {
		n := 0
		err := s.inTx(func(tx wtx) error {
			if s.d.BulkTx != "" {
				if err := tx.raw(s.d.BulkTx); err != nil {
					return err
				}
			}
			for n < loadTxResources {
				var ws []Write
				var ok bool
				select {
				case ws, ok = <-batches:
				case <-ctx.Done():
					return ctx.Err()
				}
				if !ok {
					done = true
					return nil
				}
				pks, err := s.insertResources(tx, ws)
				if err != nil {
					return err
				}
				for i := range ws {
					bi.add(pks[i], ws[i].Index, ws[i].Links)
				}
				n += len(ws)
				if progress != nil {
					progress(len(ws))
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("store: load: %w", err)
		}
	}
	total := bi.rows()
	if phase != nil {
		phase("sorting the search index", 0)
	}
	bi.sort()
	if phase != nil {
		phase("writing the search index", total)
	}
	return s.writeBulkIndex(ctx, &bi, progress)
}

// writeBulkIndex appends the sorted index rows, loadIndexTx per transaction.
func (s *SQL) writeBulkIndex(ctx context.Context, bi *bulkIndex, progress func(int)) error {
	type part struct {
		table, cols string
		n           int
		row         func(i int) []any
	}
	parts := []part{
		{"idx_str", "p, v, pk", len(bi.str), func(i int) []any { r := bi.str[i]; return []any{r.p, r.v, r.pk} }},
		{"idx_ref", "p, v, pk", len(bi.ref), func(i int) []any { r := bi.ref[i]; return []any{r.p, r.v, r.pk} }},
		{"idx_tok", "p, code, sys, pk", len(bi.tok), func(i int) []any { r := bi.tok[i]; return []any{r.p, r.code, r.sys, r.pk} }},
		{"idx_date", "p, lo, hi, pk", len(bi.date), func(i int) []any { r := bi.date[i]; return []any{r.p, r.lo, r.hi, r.pk} }},
		{"care_link", "prac, patient, src, facility, until", len(bi.link), func(i int) []any {
			r := bi.link[i]
			return []any{r.prac, r.patient, r.src, r.facility, r.until}
		}},
	}
	for _, pt := range parts {
		for start := 0; start < pt.n; start += loadIndexTx {
			if err := ctx.Err(); err != nil {
				return err
			}
			end := min(start+loadIndexTx, pt.n)
			err := s.inTx(func(tx wtx) error {
				if s.d.BulkTx != "" {
					if err := tx.raw(s.d.BulkTx); err != nil {
						return err
					}
				}
				rows := make([][]any, 0, rowsPerInsert)
				for i := start; i < end; i++ {
					rows = append(rows, pt.row(i))
					if len(rows) == rowsPerInsert || i == end-1 {
						if err := s.insertRows(tx, pt.table, pt.cols, rows); err != nil {
							return err
						}
						rows = rows[:0]
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("store: load: index: %w", err)
			}
			if progress != nil {
				progress(end - start)
			}
		}
	}
	return nil
}

func (s *SQL) insertResources(tx wtx, ws []Write) ([]int64, error) {
	pks := make([]int64, len(ws))
	pos := make(map[string]int, len(ws))
	for start := 0; start < len(ws); start += rowsPerInsert {
		chunk := ws[start:min(start+rowsPerInsert, len(ws))]
		var b strings.Builder
		b.WriteString("INSERT INTO resources (rtype, id, ver, updated, deleted, patient, data) VALUES ")
		args := make([]any, 0, len(chunk)*7)
		for i := range chunk {
			w := &chunk[i]
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("(?,?,?,?,?,?,?)")
			args = append(args, w.Type, w.ID, w.Version, micros(w.Updated), bool01(w.Deleted), nullStr(w.Patient), s.storedData(w))
			pos[w.Type+"/"+w.ID] = start + i
		}
		b.WriteString(" RETURNING pk, rtype, id")
		rows, err := tx.Query(b.String(), args...)
		if err != nil {
			if s.d.IsUnique(err) {
				return nil, fmt.Errorf("a resource already exists: %w", ErrConflict)
			}
			return nil, err
		}
		for rows.Next() {
			var pk int64
			var t, id string
			if err := rows.Scan(&pk, &t, &id); err != nil {
				rows.Close()
				return nil, err
			}
			pks[pos[t+"/"+id]] = pk
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			if s.d.IsUnique(err) {
				return nil, fmt.Errorf("a resource already exists: %w", ErrConflict)
			}
			return nil, err
		}
	}
	return pks, nil
}

// WriterSetting runs a read-only statement (such as a PRAGMA) on the
// writer's connection, where the settings that make commits durable are,
// and scans its row into dest. For checks of those settings.
func (s *SQL) WriterSetting(ctx context.Context, query string, dest ...any) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.writerConn(ctx); err != nil {
		return err
	}
	return s.wconn.QueryRowContext(ctx, query).Scan(dest...)
}
