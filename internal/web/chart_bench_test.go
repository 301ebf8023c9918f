package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"carnet/internal/fhir"
	"carnet/internal/policy"
	"carnet/internal/record"
	"carnet/internal/sim"
)

// bigPatient writes, out of band, a patient of m with n stays and what
// a long record holds: two or three vital signs a stay, a condition every
// third stay, a prescription every other stay (the last ones active) and a
// billing item per stay.
func bigPatient(tb testing.TB, a *app, m *sim.Member, n int) string {
	tb.Helper()
	ctx := context.Background()
	rec := record.New(a.W.Store)
	fac := "Organization/" + m.Facilities[0]
	prac := map[string]any{"reference": "Practitioner/" + m.PractitionerID}
	create := func(typ string, r fhir.Resource) string {
		tb.Helper()
		r["resourceType"] = typ
		out, err := rec.Create(ctx, typ, r)
		if err != nil {
			tb.Fatalf("creating %s: %v", typ, err)
		}
		return out.Resource.ID
	}
	pid := create("Patient", fhir.Resource{"name": []any{map[string]any{"family": "Longdossier", "given": []any{"Benoît"}}},
		"birthDate": "1948-06-12", "gender": "male", "managingOrganization": map[string]any{"reference": fac},
		"generalPractitioner": []any{prac},
		"identifier":          []any{map[string]any{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "148067512345678"}}})
	subject := map[string]any{"reference": "Patient/" + pid}
	classes := []string{"AMB", "AMB", "IMP", "EMER"}
	vitals := []struct {
		code, unit string
		base       float64
	}{{"8867-4", "/min", 72}, {"8480-6", "mm[Hg]", 135}, {"8462-4", "mm[Hg]", 82}, {"8310-5", "°C", 36.8}, {"59408-5", "%", 96}, {"29463-7", "kg", 78}}
	meds := []string{"C09AA05", "C08CA01", "A10BA02", "C10AA05", "N02BE01", "B01AF01"}
	start := a.W.Epoch.Add(-time.Duration(n) * 7 * 24 * time.Hour)
	for k := range n {
		t0 := start.Add(time.Duration(k) * 7 * 24 * time.Hour)
		enc := fhir.Resource{"status": "finished", "class": map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": classes[k%len(classes)]},
			"subject": subject, "participant": []any{map[string]any{"individual": prac}}, "serviceProvider": map[string]any{"reference": fac},
			"period": map[string]any{"start": t0.Format(time.RFC3339), "end": t0.Add(40 * time.Minute).Format(time.RFC3339)}}
		if k == n-1 {
			enc["status"] = "in-progress"
			delete(enc["period"].(map[string]any), "end")
		}
		eid := create("Encounter", enc)
		eref := map[string]any{"reference": "Encounter/" + eid}
		for j := range 2 + k%2 {
			v := vitals[(k+j*2)%len(vitals)]
			create("Observation", fhir.Resource{"status": "final", "code": map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": v.code}}},
				"subject": subject, "encounter": eref, "effectiveDateTime": t0.Add(10 * time.Minute).Format(time.RFC3339),
				"valueQuantity": map[string]any{"value": v.base + float64((k*7+j*3)%11) - 5, "unit": v.unit}})
		}
		if k%3 == 0 {
			create("Condition", fhir.Resource{"subject": subject, "encounter": eref, "code": map[string]any{"coding": []any{map[string]any{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10", "display": "Hypertension essentielle"}}},
				"clinicalStatus": map[string]any{"coding": []any{map[string]any{"code": "active"}}}, "recordedDate": t0.Format(time.RFC3339)})
		}
		if k%2 == 0 {
			status := "completed"
			if k > n-30 {
				status = "active"
			}
			create("MedicationRequest", fhir.Resource{"status": status, "intent": "order", "subject": subject, "encounter": eref, "requester": prac,
				"medicationCodeableConcept": map[string]any{"coding": []any{map[string]any{"system": "http://www.whocc.no/atc", "code": meds[k%len(meds)]}}, "text": "Médicament " + meds[k%len(meds)]},
				"authoredOn":                t0.Format(time.RFC3339), "dosageInstruction": []any{map[string]any{"text": "1 comprimé le matin"}}})
		}
		create("ChargeItem", fhir.Resource{"status": "billed", "subject": subject, "context": eref, "occurrenceDateTime": t0.Format(time.RFC3339),
			"code":          map[string]any{"coding": []any{map[string]any{"system": "https://carnet.example/ccam", "code": "YYYY001", "display": "Consultation"}}},
			"priceOverride": map[string]any{"value": 30, "currency": "EUR"}})
	}
	return pid
}

var (
	benchOnce    sync.Once
	benchID      string
	benchCookies []*http.Cookie
	benchHandler http.Handler
)

// BenchmarkChartRender: a full chart GET of a patient with 200 stays,
// through the web handler in process (session, API calls with policy,
// guard and durable audit, rendering). Reports the median and the 95th
// percentile of the per-request durations.
func BenchmarkChartRender(b *testing.B) {
	benchOnce.Do(func() {
		// Once per binary (-count runs the benchmark again): the
		// patient is written once, and a second login in the same
		// 30-second step would reuse a one-time code.
		a := newApp(b)
		m := a.member(b, policy.Physician, 28)
		benchID = bigPatient(b, a, m, 200)
		br := a.browser(b)
		br.login(m)
		base, _ := url.Parse(a.URL + "/app/")
		benchCookies = br.c.Jar.Cookies(base)
		benchHandler = a.srv.Config.Handler // served in process: the listener may close
	})
	if benchHandler == nil {
		b.Fatal("setup failed")
	}
	id, cookies, h := benchID, benchCookies, benchHandler
	get := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/app/patients/"+id, nil)
		req.RemoteAddr = "127.0.0.1:40000"
		for _, c := range cookies {
			req.AddCookie(c)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	first := get()
	body := first.Body.String()
	if first.Code != http.StatusOK || !strings.Contains(body, "LONGDOSSIER") || !strings.Contains(body, "(200 au total)") || !strings.Contains(body, `<svg class="trend"`) {
		b.Fatalf("chart: %d\n%s", first.Code, body)
	}
	durs := make([]time.Duration, 0, 1024)
	cpu0 := cpuTime()
	for b.Loop() {
		t0 := time.Now()
		if rec := get(); rec.Code != http.StatusOK {
			b.Fatalf("chart: %d", rec.Code)
		}
		durs = append(durs, time.Since(t0))
	}
	cpu := cpuTime() - cpu0
	slices.Sort(durs)
	ms := func(q float64) float64 {
		return float64(durs[min(len(durs)-1, int(q*float64(len(durs))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(ms(0.5), "p50-ms")
	b.ReportMetric(ms(0.95), "p95-ms")
	// Process CPU time per chart (every goroutine: pages, API, store):
	// what the wall-clock percentiles measure less the waiting on a busy
	// machine.
	b.ReportMetric(float64(cpu)/float64(time.Millisecond)/float64(len(durs)), "cpu-ms/op")
	b.ReportMetric(float64(len(body))/1024, "page-KiB")
	if testing.Verbose() {
		fmt.Printf("chart of a 200-stay patient: %d requests, median %.1f ms, p95 %.1f ms, %d KiB\n", len(durs), ms(0.5), ms(0.95), len(body)/1024)
	}
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
