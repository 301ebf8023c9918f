package api_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"carnet/internal/api"
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

// BenchmarkReadPatient measures GET /fhir/Patient/{id} server-side.
func BenchmarkReadPatient(b *testing.B) {
	st, err := sqlite.Open(context.Background(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	h := api.New(st, api.Options{InsecureOpen: true})
	var ids []string
	for i := range 200 {
		req := httptest.NewRequest("POST", "/fhir/Patient", bytes.NewReader([]byte(`{"resourceType":"Patient","name":[{"family":"R`+strconv.Itoa(i)+`"}]}`)))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusCreated {
			b.Fatalf("status %d", w.Code)
		}
		loc := w.Header().Get("Location")
		ids = append(ids, loc[len("http://example.com/fhir/Patient/"):len("http://example.com/fhir/Patient/")+36])
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			req := httptest.NewRequest("GET", "/fhir/Patient/"+ids[i%len(ids)], nil)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}
