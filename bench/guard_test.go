package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"carnet/bench/loadgen"
	"carnet/internal/auth"
)

// A server with the guard: a 401 insufficient_user_authentication makes the
// client step up with a fresh TOTP code and retry; a 429 waits Retry-After
// and retries; ensureSteppedUp steps up once per session.
func TestTokenSourceStepUpAndThrottle(t *testing.T) {
	const secret = "T7LHDSKWAUOKMSNUNNBNEOJ2KJACALH6"
	var mu sync.Mutex
	stepped, stepUps, throttled := false, 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer a1" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/auth/step-up":
			r.ParseForm()
			if _, ok := auth.CheckTOTP(secret, r.PostForm.Get("otp"), time.Now()); !ok {
				http.Error(w, `{"error":"invalid_grant"}`, http.StatusUnauthorized)
				return
			}
			stepped = true
			stepUps++
			w.Write([]byte(`{"session":"s"}`))
		case "/fhir/Patient/walk":
			if !stepped {
				w.Header().Set("WWW-Authenticate", `Bearer realm="carnet", error="insufficient_user_authentication"`)
				http.Error(w, "step up", http.StatusUnauthorized)
				return
			}
			w.Write([]byte(`{"resourceType":"Patient","id":"walk"}`))
		case "/fhir/Patient/burst":
			if throttled == 0 {
				throttled++
				w.Header().Set("Retry-After", "0")
				http.Error(w, "throttled", http.StatusTooManyRequests)
				return
			}
			w.Write([]byte(`{"resourceType":"Patient","id":"burst"}`))
		case "/fhir/Patient/bad":
			http.Error(w, "bad token", http.StatusUnauthorized) // no step-up asked: not retried
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ts := newTokenSource(demoUser{Username: "p.b", Password: "pw", TOTPSecret: secret, Roles: []string{"physician"}})
	ts.access, ts.expires = "a1", time.Now().Add(time.Hour) // logged in, no TOTP step used yet
	c := newAPIClient(srv.URL + "/fhir")
	c.token = ts.access
	c.refused = ts.refusedHandler(c, srv.URL)
	ctx := context.Background()
	if _, err := c.get(ctx, "/Patient/walk", nil); err != nil {
		t.Fatalf("walk after a step-up: %v", err)
	}
	if !ts.steppedUp || ts.stepUps != 1 || ts.asked != 1 || stepUps != 1 {
		t.Fatalf("stepped %v, step-ups %d, asked %d, server step-ups %d", ts.steppedUp, ts.stepUps, ts.asked, stepUps)
	}
	if err := ts.ensureSteppedUp(ctx, srv.URL); err != nil || ts.stepUps != 1 {
		t.Fatalf("already stepped up: %v, %d step-ups", err, ts.stepUps)
	}
	if _, err := c.get(ctx, "/Patient/burst", nil); err != nil {
		t.Fatalf("burst after the throttle: %v", err)
	}
	if ts.throttled != 1 {
		t.Fatalf("throttled %d", ts.throttled)
	}
	if status, err := c.get(ctx, "/Patient/bad", nil); err == nil || status != http.StatusUnauthorized {
		t.Fatalf("bad token: %d, %v", status, err)
	}
	if got := ts.counts(); !strings.Contains(got, "step-ups 1 (1 asked by a 401)") || !strings.Contains(got, "guard throttles waited out 1") {
		t.Fatalf("counts %q", got)
	}
}

func TestReportGuardAndPeerSections(t *testing.T) {
	ok := func(rps float64, p99 time.Duration) *loadgen.Result {
		return &loadgen.Result{Requests: 100, Throughput: rps, P99: p99, ByStatus: map[int]int64{200: 100}, BodyBytes: 100 * 900}
	}
	r := &report{guardOn: true, authOn: true}
	r.rows = []row{{workload: "read", backend: "peer", conc: 64, res: &loadgen.Result{Requests: 10, Throughput: 10000, P99: 8 * time.Millisecond}}}
	r.guardRows = []abRow{
		{workload: "read", backend: "sqlite", conc: 64, mode: modeGuard, rep: 0, res: ok(19000, 9*time.Millisecond)},
		{workload: "read", backend: "sqlite", conc: 64, mode: modeNoGuard, rep: 0, res: ok(20000, 8*time.Millisecond)},
		{workload: "search-family", backend: "sqlite", conc: 64, mode: modeGuard, rep: 0, res: ok(3000, 9*time.Millisecond)},
		{workload: "search-family", backend: "sqlite", conc: 64, mode: modeNoGuard, rep: 0, res: ok(4000, 8*time.Millisecond)},
		{workload: "read", backend: "sqlite", conc: 8, mode: modeGuard, rep: 0, res: ok(9000, time.Millisecond)},
		{workload: "read", backend: "sqlite", conc: 8, mode: modeNoGuard, rep: 0, res: ok(9000, time.Millisecond)},
	}
	r.authRows = []abRow{
		{workload: "read", backend: "sqlite", conc: 64, mode: modeAuth, rep: 0, res: ok(8000, 20*time.Millisecond)},
		{workload: "read", backend: "sqlite", conc: 64, mode: modeOpen, rep: 0, res: ok(30000, 5*time.Millisecond)},
	}
	md := r.markdown()
	for _, want := range []string{
		"## Guard cost",
		"| workload | backend | concurrency | no-guard req/s | guard req/s | guard/no-guard |",
		"| read (physician's patients) | sqlite | 64 | 20000 | 19000 | **0.95** | 8.00 | 9.00 | 0 / 0 |",
		"| search-family (physician's patients) | sqlite | 64 | 4000 | 3000 | **0.75 (< 0.90)** |",
		"## Secured read vs the peer",
		"| guard cost comparison, guard | sqlite | 64 | 19000 | 9.00 | 1 | 10000 | 8.00 | **1.90** |",
		"| authentication comparison, auth | sqlite | 64 | 8000 | 20.0 | 1 | 10000 | 8.00 | **0.80 (< 1.00)** |",
		"| guard cost comparison, guard | sqlite | 8 | 9000 | 1.00 | 1 | not measured | - | - |",
		"The peer's read was not measured at concurrency 8",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in\n%s", want, md)
		}
	}
	if i, j, k := strings.Index(md, "## Authentication cost"), strings.Index(md, "## Guard cost"), strings.Index(md, "## Secured read vs the peer"); !(i < j && j < k) {
		t.Errorf("section order wrong:\n%s", md)
	}
}
