package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"carnet/bench/loadgen"
	"carnet/internal/auth"
)

func TestParseResources(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "seed.log")
	os.WriteFile(p, []byte("generating 45% (900/2000, 3000 patients/s)\rgenerating 100%\nloaded 2000 patients, 21863 resources in 1.4s into SQLite in /x\n"), 0o644)
	if got := parseResources(p); got != 21863 {
		t.Fatalf("got %d", got)
	}
	os.WriteFile(p, []byte("nothing here\n"), 0o644)
	if got := parseResources(p); got != -1 {
		t.Fatalf("got %d", got)
	}
}

func TestRunLoggedStall(t *testing.T) {
	if _, err := exec.LookPath("sleep"); err != nil {
		t.Fatal("this test needs the coreutils sleep command")
	}
	p := filepath.Join(t.TempDir(), "x.log")
	t0 := time.Now()
	_, err := runLogged(context.Background(), exec.Command("sleep", "30"), p, time.Second)
	if err == nil || !strings.Contains(err.Error(), "stalled") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Fatalf("took %v", d)
	}
	if _, err := runLogged(context.Background(), exec.Command("true"), p, time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestReportRatioAndOrder(t *testing.T) {
	r := &report{}
	r.rows = []row{
		{workload: "create", backend: "sqlite", conc: 1, res: &loadgen.Result{Requests: 10, Throughput: 300}},
		{workload: "read", backend: "peer", conc: 8, res: &loadgen.Result{Requests: 10, Throughput: 1000}},
		{workload: "read", backend: "sqlite", conc: 8, res: &loadgen.Result{Requests: 10, Throughput: 2500, P50: 1500 * time.Microsecond}},
		{workload: "read", backend: "postgres", conc: 1, note: "seed failed"},
		{workload: "search-family", backend: "peer", conc: 64, res: &loadgen.Result{Unfinished: 64}},
	}
	md := r.markdown()
	for _, want := range []string{
		"| read | sqlite | 8 | 2500 | 1.50 | 0.00 | 0 | 2.50 |",
		"| read | postgres | 1 | - | - | - | seed failed |  |",
		"| search-family | peer | 64 | 0 | - | - | no response in window (64 unfinished) |  |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in\n%s", want, md)
		}
	}
	// read before create; within read, conc 1 before 8, sqlite before peer.
	iPG, iSQ, iPeer, iCreate := strings.Index(md, "| read | postgres"), strings.Index(md, "| read | sqlite"), strings.Index(md, "| read | peer"), strings.Index(md, "| create |")
	if !(iPG < iSQ && iSQ < iPeer && iPeer < iCreate) {
		t.Errorf("row order wrong:\n%s", md)
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 758912: "758,912", 1234567: "1,234,567", -1: "n/a"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestAuthSteps(t *testing.T) {
	var got []string
	for _, s := range abSteps(authCmp, 3) {
		got = append(got, fmt.Sprintf("%s%d", s.mode, s.rep))
	}
	if want := "auth0 open0 open1 auth1 auth2 open2"; strings.Join(got, " ") != want {
		t.Fatalf("got %q, want %q", strings.Join(got, " "), want)
	}
	got = nil
	for _, s := range abSteps(sealCmp, 2) {
		got = append(got, fmt.Sprintf("%s%d", s.mode, s.rep))
	}
	if want := "sealed0 clear0 clear1 sealed1"; strings.Join(got, " ") != want {
		t.Fatalf("got %q, want %q", strings.Join(got, " "), want)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestReportAuthRatio(t *testing.T) {
	res := func(rps float64, p99 time.Duration, status map[int]int64) *loadgen.Result {
		var n int64
		for _, k := range status {
			n += k
		}
		r := &loadgen.Result{Requests: n, Throughput: rps, P99: p99, ByStatus: status, BodyBytes: n * 900}
		for c, k := range status {
			if c >= 400 {
				r.Errors += k
			}
		}
		return r
	}
	ok := map[int]int64{200: 100}
	r := &report{authOn: true}
	r.authRows = []abRow{
		{workload: "create", backend: "sqlite", conc: 64, mode: modeAuth, rep: 0, res: res(500, time.Millisecond, map[int]int64{201: 98, 401: 2})},
		{workload: "create", backend: "sqlite", conc: 64, mode: modeOpen, rep: 0, res: res(1000, time.Millisecond, map[int]int64{201: 100})},
		{workload: "read", backend: "sqlite", conc: 64, mode: modeAuth, rep: 0, res: res(900, 3*time.Millisecond, ok)},
		{workload: "read", backend: "sqlite", conc: 64, mode: modeOpen, rep: 0, res: res(1000, 2*time.Millisecond, ok)},
		{workload: "read", backend: "sqlite", conc: 64, mode: modeOpen, rep: 1, res: res(1200, 4*time.Millisecond, ok)},
		{workload: "read", backend: "sqlite", conc: 64, mode: modeAuth, rep: 1, res: res(1100, 5*time.Millisecond, ok)},
		{workload: "read", backend: "sqlite", conc: 64, mode: modeAuth, rep: 2, res: res(950, 4*time.Millisecond, ok)},
		{workload: "read", backend: "sqlite", conc: 64, mode: modeOpen, rep: 2, res: res(1100, 3*time.Millisecond, ok)},
		{workload: "search-family", backend: "postgres", conc: 8, mode: modeAuth, rep: 0, note: "server died"},
		{workload: "search-family", backend: "postgres", conc: 8, mode: modeOpen, rep: 0, res: res(300, time.Millisecond, ok)},
	}
	md := r.markdown()
	for _, want := range []string{
		"## Authentication cost",
		// medians: open 1100, auth 950; p99 medians 3 and 4 ms.
		"| read (physician's patients) | sqlite | 64 | 1100 | 950 | **0.86** | 3.00 | 4.00 | 0 / 0 | 900 / 900 | 1000, 1200, 1100; 900, 1100, 950 |",
		"| create Observation (physician's patients) | sqlite | 64 | 1000 | 500 | **0.50 (< 0.85)** | 1.00 | 1.00 | 0 / 401:2 (2.0%) |",
		"| search-family (physician's patients) | postgres | 8 | 300 | - | - | 1.00 | - | 0 / - | 900 / - | 300; - (auth: server died) |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in\n%s", want, md)
		}
	}
	// read, search-family, create; within a workload sqlite before postgres.
	if i, j := strings.Index(md, "| read (physician"), strings.Index(md, "| create Observation"); i < 0 || j < 0 || i > j {
		t.Errorf("row order wrong:\n%s", md)
	}
	for _, s := range r.authSummaries() {
		if s.workload == "read" {
			if l := s.line(); !strings.Contains(l, "open 1100 req/s, auth 950 req/s, auth/open 0.86 (medians of 3 and 3 runs") {
				t.Errorf("summary line %q", l)
			}
		}
	}
}

func TestReportSealSection(t *testing.T) {
	ok := func(rps float64, p99 time.Duration) *loadgen.Result {
		return &loadgen.Result{Requests: 100, Throughput: rps, P99: p99, ByStatus: map[int]int64{200: 100}, BodyBytes: 100 * 700}
	}
	r := &report{sealOn: true}
	r.sealSeeds = []sealSeeds{{
		sealed: seedResult{backend: "sqlite", patients: 3000, wall: 3 * time.Second, size: 30 << 20},
		clear:  seedResult{backend: "sqlite", patients: 3000, wall: 2 * time.Second, size: 20 << 20},
	}}
	r.sealRows = []abRow{
		{workload: "search-family", backend: "sqlite", conc: 16, mode: modeSealed, rep: 0, res: ok(700, 5*time.Millisecond)},
		{workload: "search-family", backend: "sqlite", conc: 16, mode: modeClear, rep: 0, res: ok(1000, 4*time.Millisecond)},
		{workload: "read", backend: "sqlite", conc: 16, mode: modeSealed, rep: 0, res: ok(9000, 2*time.Millisecond)},
		{workload: "read", backend: "sqlite", conc: 16, mode: modeClear, rep: 0, res: ok(10000, time.Millisecond)},
	}
	md := r.markdown()
	for _, want := range []string{
		"## Encryption at rest cost",
		"- sqlite: seeding 3,000 patients (one run each): sealed 3.0 s, clear 2.0 s (sealed/clear 1.50); size on disk: sealed 30.0 MiB, clear 20.0 MiB (sealed/clear 1.50)",
		"| workload | backend | concurrency | clear req/s | sealed req/s | sealed/clear | clear p99 ms | sealed p99 ms | errors clear / sealed | bytes/resp clear / sealed | runs req/s: clear; sealed |",
		"| read | sqlite | 16 | 10000 | 9000 | **0.90** | 1.00 | 2.00 | 0 / 0 | 700 / 700 | 10000; 9000 |",
		"| search-family | sqlite | 16 | 1000 | 700 | **0.70 (< 0.85)** | 4.00 | 5.00 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in\n%s", want, md)
		}
	}
	if i, j := strings.Index(md, "| read | sqlite | 16"), strings.Index(md, "| search-family | sqlite | 16"); i < 0 || j < 0 || i > j {
		t.Errorf("row order wrong:\n%s", md)
	}
	if l := r.sealSummaries()[0].line(); !strings.Contains(l, "clear 10000 req/s, sealed 9000 req/s, sealed/clear 0.90 (medians of 1 and 1 runs; goal >= 0.85)") {
		t.Errorf("summary line %q", l)
	}
}

func TestStoreArgs(t *testing.T) {
	sq := store{backend: "sqlite", dir: "/w/store-sqlite"}
	if got := strings.Join(sq.args(), " "); got != "--data /w/store-sqlite" {
		t.Errorf("sealed sqlite: %q", got)
	}
	sq.clear = true
	if got := strings.Join(sq.seedArgs(), " "); got != "--data /w/store-sqlite --insecure-clear" {
		t.Errorf("clear sqlite: %q", got)
	}
	pg := store{backend: "postgres", dir: "/w/store-postgres", db: "b", pg: &pgAdmin{u: &url.URL{Scheme: "postgres", Host: "h:5432"}}}
	if got := strings.Join(pg.seedArgs(), " "); got != "--db postgres://h:5432/b --witness /w/store-postgres-witness --key-file /w/store-postgres.key --data /w/store-postgres" {
		t.Errorf("sealed postgres: %q", got)
	}
}

func TestFirstPhysician(t *testing.T) {
	p := filepath.Join(t.TempDir(), "demo-users.json")
	os.WriteFile(p, []byte(`[{"username":"n.a","password":"x","totp_secret":"S","roles":["nurse"]},
		{"username":"p.b","password":"pw","totp_secret":"T7LHDSKWAUOKMSNUNNBNEOJ2KJACALH6","roles":["physician"],"facilities":["f"]},
		{"username":"p.c","password":"pw","totp_secret":"S","roles":["physician"]}]`), 0o600)
	u, err := firstPhysician(p)
	if err != nil || u.Username != "p.b" || u.Password != "pw" {
		t.Fatalf("got %+v, %v", u, err)
	}
	os.WriteFile(p, []byte(`[{"username":"n.a","password":"x","totp_secret":"S","roles":["nurse"]}]`), 0o600)
	if _, err := firstPhysician(p); err == nil {
		t.Fatal("no physician: want an error")
	}
}

func TestTokenSourceLoginThenRefresh(t *testing.T) {
	const secret = "T7LHDSKWAUOKMSNUNNBNEOJ2KJACALH6"
	var logins, refreshes int
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/auth/token" || r.Method != "POST" || r.ParseForm() != nil {
			http.Error(w, "bad request", 400)
			return
		}
		switch r.PostForm.Get("grant_type") {
		case "":
			code, _ := auth.TOTPCode(secret, time.Now())
			if r.PostForm.Get("username") != "p.b" || r.PostForm.Get("password") != "pw" || r.PostForm.Get("otp") != code {
				http.Error(w, `{"error":"invalid_grant"}`, http.StatusUnauthorized)
				return
			}
			logins++
		case "refresh_token":
			if r.PostForm.Get("refresh_token") != fmt.Sprintf("r%d", logins+refreshes) {
				http.Error(w, `{"error":"invalid_grant"}`, http.StatusUnauthorized)
				return
			}
			refreshes++
		}
		n := logins + refreshes
		fmt.Fprintf(w, `{"access_token":"a%d","token_type":"Bearer","expires_in":900,"refresh_token":"r%d","scope":"user/*.cruds"}`, n, n)
	}))
	defer ts.Close()
	src := newTokenSource(demoUser{Username: "p.b", Password: "pw", TOTPSecret: secret, Roles: []string{"physician"}})
	ctx := context.Background()
	if tok, err := src.token(ctx, ts.URL, time.Minute); err != nil || tok != "a1" {
		t.Fatalf("login: %q, %v", tok, err)
	}
	if tok, err := src.token(ctx, ts.URL, time.Minute); err != nil || tok != "a1" {
		t.Fatalf("still valid: %q, %v", tok, err)
	}
	// Wanting it valid longer than it lives forces a refresh, not a login.
	if tok, err := src.token(ctx, ts.URL, 20*time.Minute); err != nil || tok != "a2" {
		t.Fatalf("refresh: %q, %v", tok, err)
	}
	if logins != 1 || refreshes != 1 || src.logins != 1 || src.refreshes != 1 {
		t.Fatalf("logins %d, refreshes %d", logins, refreshes)
	}
	if got := origin("http://127.0.0.1:8080/fhir"); got != "http://127.0.0.1:8080" {
		t.Fatalf("origin = %q", got)
	}
}

func TestParseVerify(t *testing.T) {
	n, cps, secs, err := parseVerify("intact: 123456 entries, 310 checkpoints verified (witness /x/store-sqlite-witness, latest witnessed size 123456) in 0.12s\n")
	if err != nil || n != 123456 || cps != 310 || secs != 0.12 {
		t.Fatalf("got %d %d %v %v", n, cps, secs, err)
	}
	if _, _, _, err := parseVerify("TAMPERED: first bad entry 17: hash mismatch\n"); err == nil || !strings.HasPrefix(err.Error(), "TAMPERED: first bad entry 17") {
		t.Fatalf("err = %v", err)
	}
	if _, _, _, err := parseVerify("something else\n"); err == nil {
		t.Fatal("no error for output without an intact line")
	}
	v := &auditVerifyResult{backend: "sqlite", entries: 2_000_000, checkpoints: 3, secs: 1.6}
	if got := v.line(); !strings.Contains(got, "2,000,000 entries in 1.60 s = 1,250,000 entries/s (goal >= 1,000,000/s)") || strings.Contains(got, "BELOW") {
		t.Fatalf("line = %q", got)
	}
	v = &auditVerifyResult{backend: "sqlite", entries: 5000, secs: 0}
	if got := v.line(); !strings.Contains(got, ">= 1,000,000 entries/s") {
		t.Fatalf("line = %q", got)
	}
}

func TestParseAppendBench(t *testing.T) {
	out := `goos: linux
goarch: amd64
pkg: carnet/internal/audit
cpu: AMD EPYC 7B13
BenchmarkAppend-2   	  163840	     14203 ns/op	     70408 appends/s	    2104 B/op	      31 allocs/op
PASS
ok  	carnet/internal/audit	4.871s
`
	v, err := parseAppendBench(out)
	if err != nil || v != 70408 {
		t.Fatalf("got %v %v", v, err)
	}
	if v, err := parseAppendBench("BenchmarkAppend-2 \t 1000\t 1.5e+06 ns/op\t 6.667e+05 appends/s\n"); err != nil || v != 666700 {
		t.Fatalf("got %v %v", v, err)
	}
	if _, err := parseAppendBench("FAIL\tcarnet/internal/audit [build failed]\n"); err == nil {
		t.Fatal("no error without a metric")
	}
	b := &auditBenchResult{appends: 40000}
	if got := b.line(); !strings.Contains(got, "40,000 appends/s (goal >= 50,000/s) BELOW GOAL") {
		t.Fatalf("line = %q", got)
	}
}

func TestReportAuditSection(t *testing.T) {
	r := &report{auditOn: true}
	r.authRows = []abRow{
		{workload: "read", backend: "sqlite", conc: 8, mode: modeAuth, res: &loadgen.Result{Requests: 10, Throughput: 1234}},
		{workload: "read", backend: "sqlite", conc: 8, mode: modeOpen, res: &loadgen.Result{Requests: 10, Throughput: 1500}},
	}
	r.auditVerify = []*auditVerifyResult{{backend: "sqlite", err: "TAMPERED: first bad entry 3: x"}}
	md := r.markdown()
	for _, want := range []string{"## Audit log", "audit verify (sqlite): ERROR: TAMPERED", "read 8 conn 1234 appends/s", "BenchmarkAppend: not run (-audit-bench=false)"} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in\n%s", want, md)
		}
	}
}
