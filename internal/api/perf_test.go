package api_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"carnet/internal/api"
	"carnet/internal/audit"
	"carnet/internal/auth"
	"carnet/internal/fhir"
	"carnet/internal/policy"
	"carnet/internal/record"
	"carnet/internal/store"
	"carnet/internal/store/sqlite"
)

// BenchmarkCreatePatient measures the server-side cost of POST /fhir/Patient
// (parse, validate, index, group-committed durable write), without HTTP I/O.
func BenchmarkCreatePatient(b *testing.B) {
	st, err := sqlite.Open(context.Background(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	h := api.New(st, api.Options{InsecureOpen: true})
	body := []byte(`{"resourceType":"Patient","name":[{"family":"Benchmark","given":["Anne","Marie"]}],"gender":"female","birthDate":"1970-03-04",` +
		`"telecom":[{"system":"phone","value":"+33 6 12 34 56 78"},{"system":"email","value":"anne@example.fr"}],` +
		`"address":[{"line":["1 rue de la Paix"],"city":"Paris","postalCode":"75002"}],"identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":"270037512345678"}]}`)
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("POST", "/fhir/Patient", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/fhir+json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusCreated {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
}

// BenchmarkReadPatient measures GET /fhir/Patient/{id} server-side, open
// (no authentication) and as a physician reading their own patients (bearer
// token looked up, role, scope and care relationship checked).
func BenchmarkReadPatient(b *testing.B) {
	st, err := sqlite.Open(context.Background(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	rec := record.New(st)
	mk := func(typ, js string) string {
		r, _ := fhir.Parse([]byte(js))
		out, err := rec.Create(ctx, typ, r)
		if err != nil {
			b.Fatal(err)
		}
		return out.Resource.ID
	}
	fac := mk("Organization", `{"resourceType":"Organization","name":"F"}`)
	doc := mk("Practitioner", `{"resourceType":"Practitioner","name":[{"family":"D"}]}`)
	var ids []string
	for i := range 200 {
		ids = append(ids, mk("Patient", `{"resourceType":"Patient","name":[{"family":"R`+strconv.Itoa(i)+`"}],"managingOrganization":{"reference":"Organization/`+fac+`"},"generalPractitioner":[{"reference":"Practitioner/`+doc+`"}]}`))
	}
	svc := auth.NewService(st, auth.Options{})
	if _, err := svc.CreateAccount(ctx, auth.NewAccount{Username: "doc", Practitioner: doc, Roles: []string{"physician"}, Facilities: []string{fac}}); err != nil {
		b.Fatal(err)
	}
	a, _ := st.AccountByUsername(ctx, "doc")
	tok, hash, _ := auth.NewToken(auth.AccessTokenPrefix)
	now := time.Now()
	st.InsertTokens(ctx, &store.Token{Hash: hash, Kind: "access", Account: a.ID, Session: "s", Scopes: policy.DefaultScope, Created: now, Expires: now.Add(time.Hour)})
	alog, err := audit.Open(ctx, st, b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		h    http.Handler
		tok  string
	}{
		{"open", api.New(st, api.Options{InsecureOpen: true}), ""},
		{"physician", api.New(st, api.Options{Auth: svc, Policy: policy.New(st), Admin: st, Audit: alog}), tok},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					req := httptest.NewRequest("GET", "/fhir/Patient/"+ids[i%len(ids)], nil)
					if c.tok != "" {
						req.Header.Set("Authorization", "Bearer "+c.tok)
					}
					w := httptest.NewRecorder()
					c.h.ServeHTTP(w, req)
					if w.Code != http.StatusOK {
						b.Fatalf("status %d: %s", w.Code, w.Body)
					}
				}
			})
		})
	}
}
