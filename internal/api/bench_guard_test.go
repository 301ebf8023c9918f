package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"carnet/internal/audit"
	"carnet/internal/auth"
	"carnet/internal/fhir"
	"carnet/internal/guard"
	"carnet/internal/policy"
	"carnet/internal/record"
	"carnet/internal/store"
	"carnet/internal/store/sqlite"
)

// The per-request cost of the exfiltration guard's fast path: a physician
// reads his own patients (bearer token, role, scope and care relationship
// checked, one audit entry per request), with the guard and without it.
// Every patient was read once before the timer starts, so the guard has
// already counted them for him: what remains is what it does on every
// request (canary lookup, the account's known patients). Run both:
//
//	go test -run XXX -bench 'GuardedRead|UnguardedRead' ./internal/api/
//
// (-bench Guard matches BenchmarkGuardedRead only: the pattern is case
// sensitive.) Each has two sub-benchmarks: audit=durable appends every
// entry to a real audit log (group-committed, fsync'd), the server as it
// runs; audit=discard drops the entries, so that the guard's share is not
// lost in the audit log's.

func BenchmarkGuardedRead(b *testing.B)   { benchGuardRead(b, true) }
func BenchmarkUnguardedRead(b *testing.B) { benchGuardRead(b, false) }

func benchGuardRead(b *testing.B, guarded bool) {
	for _, durable := range []bool{true, false} {
		name := "audit=discard"
		if durable {
			name = "audit=durable"
		}
		b.Run(name, func(b *testing.B) {
			h, tok, ids := newGuardBench(b, guarded, durable)
			var bad atomic.Int64
			var badStatus atomic.Int64
			b.SetParallelism(16)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					req := httptest.NewRequest("GET", "/fhir/Patient/"+ids[i%len(ids)], nil)
					req.Header.Set("Authorization", "Bearer "+tok)
					w := httptest.NewRecorder()
					h.ServeHTTP(w, req)
					if w.Code != http.StatusOK {
						bad.Add(1)
						badStatus.Store(int64(w.Code))
					}
				}
			})
			b.StopTimer()
			if n := bad.Load(); n > 0 {
				b.Fatalf("%d reads did not answer 200 (last status %d)", n, badStatus.Load())
			}
		})
	}
}

// discardAuditor accepts every entry and keeps none.
type discardAuditor struct{ n atomic.Int64 }

func (d *discardAuditor) Append(context.Context, *audit.Entry) (int64, error) {
	return d.n.Add(1), nil
}

// newGuardBench returns a server (with the guard or not, with a durable
// audit log or not) over a store holding a physician's patients, his access
// token and the patients' ids, each already read once through the server.
func newGuardBench(b *testing.B, guarded, durable bool) (http.Handler, string, []string) {
	b.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	rec := record.New(st)
	mk := func(typ, js string) string {
		r, err := fhir.Parse([]byte(js))
		if err != nil {
			b.Fatal(err)
		}
		out, err := rec.Create(ctx, typ, r)
		if err != nil {
			b.Fatal(err)
		}
		return out.Resource.ID
	}
	fac := mk("Organization", `{"resourceType":"Organization","name":"F"}`)
	doc := mk("Practitioner", `{"resourceType":"Practitioner","name":[{"family":"D"}]}`)
	// As many patients as a physician may be given in ten minutes without a
	// step-up: priming them stays under every limit.
	n := guard.DefaultLimits[policy.Physician].Soft[guard.TenMinutes]
	var ids []string
	for i := range n {
		ids = append(ids, mk("Patient", `{"resourceType":"Patient","name":[{"family":"R`+strconv.Itoa(i)+`"}],"managingOrganization":{"reference":"Organization/`+fac+`"},"generalPractitioner":[{"reference":"Practitioner/`+doc+`"}]}`))
	}
	svc := auth.NewService(st, auth.Options{})
	if _, err := svc.CreateAccount(ctx, auth.NewAccount{Username: "doc", Practitioner: doc, Roles: []string{policy.Physician}, Facilities: []string{fac}}); err != nil {
		b.Fatal(err)
	}
	a, err := st.AccountByUsername(ctx, "doc")
	if err != nil {
		b.Fatal(err)
	}
	tok, hash, err := auth.NewToken(auth.AccessTokenPrefix)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	if err := st.InsertTokens(ctx, &store.Token{Hash: hash, Kind: "access", Account: a.ID, Session: "bench", Scopes: policy.DefaultScope, Created: now, Expires: now.Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	var al Auditor = &discardAuditor{}
	if durable {
		al = auditLog(b, st)
	}
	o := Options{Auth: svc, Policy: policy.New(st), Admin: st, Audit: al}
	if guarded {
		o.Guard = guard.New(st, guard.Options{})
		o.Alerts = st
	}
	h := New(st, o)
	for _, id := range ids {
		req := httptest.NewRequest("GET", "/fhir/Patient/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("priming read of %s: status %d: %s", id, w.Code, w.Body)
		}
	}
	return h, tok, ids
}
