package audit

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
)

// BenchmarkAppend: concurrent Log.Append calls (512 goroutines per core: a
// busy server has that many requests in flight) on SQLite, one append per
// op; the group-commit writer shares transactions and fsyncs between them.
// The timed part ends when every entry also has its search keys, so the
// rate includes deriving them.
func BenchmarkAppend(b *testing.B) {
	s := openSQLite(b)
	l, err := Open(context.Background(), s.st, b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close(context.Background()) })
	var worker atomic.Int64
	b.SetParallelism(512)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := int(worker.Add(1))
		ctx := context.Background()
		e := mkEntry(w)
		e.Session = "bench-" + strconv.Itoa(w)
		for pb.Next() {
			if _, err := l.Append(ctx, e); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if err := s.st.IndexAudit(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}

// BenchmarkVerify: Verify of a checkpointed log of 200,000 entries (SQLite).
func BenchmarkVerify(b *testing.B) {
	const n = 200_000
	s := openSQLite(b)
	dir := b.TempDir()
	ctx := context.Background()
	l, err := Open(ctx, s.st, dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	appendBulk(b, s.st, n, 5_000)
	if err := l.Close(ctx); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		rep, err := Verify(ctx, s.st, dir, nil)
		if err != nil {
			b.Fatal(err)
		}
		if !rep.OK || rep.Entries != n {
			b.Fatalf("Verify: OK %v, %d entries: %s", rep.OK, rep.Entries, rep.Problem)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}
