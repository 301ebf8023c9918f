package main

// The authentication comparison: the same physician-scoped workloads against
// carnet serve --insecure-open (open) and against the normal server with the
// bearer token of a demo physician (auth), on the same seeded store, in
// alternating order, several times; the report gives the median req/s of
// each mode and their ratio.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"carnet/bench/loadgen"
	"carnet/internal/auth"
)

const (
	modeOpen = "open"
	modeAuth = "auth"
)

// authCmp: open is the baseline, auth (the authenticated server) should
// reach 0.85 of its req/s.
var authCmp = &comparison{
	tag:        "phys",
	base:       modeOpen,
	variant:    modeAuth,
	goal:       0.85,
	seedOffset: 50000,
	label:      authLabel,
	index:      authWorkloadIndex,
}

// demoUser is one entry of the demo-users.json that carnet seed writes.
type demoUser struct {
	Username   string   `json:"username"`
	Password   string   `json:"password"`
	TOTPSecret string   `json:"totp_secret"`
	Roles      []string `json:"roles"`
	Facilities []string `json:"facilities"`
}

// firstPhysician reads demo-users.json and returns its first physician, the
// one carnet seed gives care relationships.
func firstPhysician(path string) (demoUser, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return demoUser{}, fmt.Errorf("demo users: %w (carnet seed writes them)", err)
	}
	var users []demoUser
	if err := json.Unmarshal(b, &users); err != nil {
		return demoUser{}, fmt.Errorf("%s: %w", path, err)
	}
	for _, u := range users {
		if slices.Contains(u.Roles, "physician") {
			if u.Username == "" || u.Password == "" || u.TOTPSecret == "" {
				return demoUser{}, fmt.Errorf("%s: physician %q has no password or TOTP secret", path, u.Username)
			}
			return u, nil
		}
	}
	return demoUser{}, fmt.Errorf("%s: no user with the physician role among %d", path, len(users))
}

// tokenSource holds one session of a demo user: it logs in once (password +
// TOTP) and then refreshes, so that all workers share one access token and
// no TOTP time step is needed twice. The store keeps the session, so the
// token outlives a restart of the server. On a server with the access guard
// the session steps up (POST /auth/step-up with a fresh TOTP code) once,
// right after login and before any measured cell: the demo physician's
// patients are more than a physician's soft limit of new patients in ten
// minutes, and a step-up lifts it for the session (8 hours).
type tokenSource struct {
	user       demoUser
	hc         *http.Client
	access     string
	refresh    string
	expires    time.Time
	lastStep   int64 // TOTP time step of the last code used (login or step-up)
	retryAfter time.Duration
	logins     int
	refreshes  int
	// steppedUp: the current session stepped up (a login starts a new
	// session, which has not).
	steppedUp bool
	stepUps   int // successful POST /auth/step-up
	// asked: 401 insufficient_user_authentication answers outside the
	// measured cells (gathering, priming), each followed by a step-up.
	asked int
	// throttled, throttledFor: 429 answers of the guard outside the
	// measured cells, and the time spent waiting their Retry-After.
	throttled    int
	throttledFor time.Duration
}

func newTokenSource(u demoUser) *tokenSource {
	return &tokenSource{user: u, hc: &http.Client{Timeout: time.Minute}}
}

// origin turns a FHIR base (http://127.0.0.1:PORT/fhir) into the server's
// origin, where /auth/token lives.
func origin(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	return u.Scheme + "://" + u.Host
}

// token returns an access token still valid for at least d, refreshing the
// session or logging in against origin when needed.
func (ts *tokenSource) token(ctx context.Context, origin string, d time.Duration) (string, error) {
	if ts.access != "" && time.Until(ts.expires) > d {
		return ts.access, nil
	}
	if ts.refresh != "" {
		err := ts.grant(ctx, origin, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {ts.refresh}})
		if err == nil {
			ts.refreshes++
			return ts.access, nil
		}
		fmt.Printf("  token refresh failed (%s); logging in again\n", shortErr(err))
	}
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		code, err := ts.freshCode(ctx, "log in", attempt > 0)
		if err != nil {
			return "", err
		}
		last = ts.grant(ctx, origin, url.Values{"username": {ts.user.Username}, "password": {ts.user.Password}, "otp": {code}})
		if last == nil {
			ts.logins++
			ts.steppedUp = false // a new session
			return ts.access, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
	}
	return "", fmt.Errorf("login as %s: %w", ts.user.Username, last)
}

// freshCode returns a TOTP code of a time step not used yet: a step is
// accepted once per account (login and step-up alike), so it waits for the
// next step when the current one was used, and after a failure (again).
func (ts *tokenSource) freshCode(ctx context.Context, what string, again bool) (string, error) {
	step := time.Now().Unix() / auth.TOTPPeriod
	if step <= ts.lastStep || again {
		wait := time.Until(time.Unix((max(step, ts.lastStep)+1)*auth.TOTPPeriod, 0)) + 200*time.Millisecond
		wait = max(wait, ts.retryAfter)
		fmt.Printf("  waiting %.0fs for a fresh TOTP step to %s as %s\n", wait.Seconds(), what, ts.user.Username)
		if err := sleepCtx(ctx, wait); err != nil {
			return "", err
		}
	}
	now := time.Now()
	code, err := auth.TOTPCode(ts.user.TOTPSecret, now)
	if err != nil {
		return "", fmt.Errorf("TOTP code for %s: %w", ts.user.Username, err)
	}
	ts.lastStep = now.Unix() / auth.TOTPPeriod
	ts.retryAfter = 0
	return code, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// ensureSteppedUp steps the session up unless it already did. Only on a
// server with the guard: without it, /auth/step-up answers 404.
func (ts *tokenSource) ensureSteppedUp(ctx context.Context, origin string) error {
	if _, err := ts.token(ctx, origin, time.Minute); err != nil {
		return err
	}
	if ts.steppedUp {
		return nil
	}
	return ts.stepUp(ctx, origin)
}

// stepUp posts a fresh TOTP code to /auth/step-up with the session's token.
func (ts *tokenSource) stepUp(ctx context.Context, origin string) error {
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		tok, err := ts.token(ctx, origin, time.Minute)
		if err != nil {
			return err
		}
		code, err := ts.freshCode(ctx, "step up", attempt > 0)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, "POST", origin+"/auth/step-up", strings.NewReader(url.Values{"otp": {code}}.Encode()))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := ts.hc.Do(req)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			ts.steppedUp = true
			ts.stepUps++
			fmt.Printf("  %s stepped up (POST /auth/step-up: %.120s)\n", ts.user.Username, bytes.TrimSpace(b))
			return nil
		case resp.StatusCode == http.StatusNotFound:
			return fmt.Errorf("POST /auth/step-up: %s (a server without the guard): %.200s", resp.Status, b)
		case resp.StatusCode == http.StatusForbidden:
			return fmt.Errorf("POST /auth/step-up: %s (account suspended?): %.300s", resp.Status, b)
		}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			ts.retryAfter = time.Duration(s) * time.Second
		}
		last = fmt.Errorf("POST /auth/step-up: %s: %.300s", resp.Status, b)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("step-up as %s: %w", ts.user.Username, last)
}

// maxThrottleWait bounds one wait on a 429 of the guard.
const maxThrottleWait = 3 * time.Minute

// refusedHandler is an apiClient.refused for c, the client of a server at
// origin with the guard: a 401 asking for a step-up (RFC 9470's
// insufficient_user_authentication) steps the session up; a 429 (the guard
// throttles a burst of new patients) waits its Retry-After. Both then retry.
// Other 401s (a bad token) and 429s without Retry-After are not retried.
func (ts *tokenSource) refusedHandler(c *apiClient, origin string) func(ctx context.Context, status int, h http.Header) bool {
	return func(ctx context.Context, status int, h http.Header) bool {
		switch status {
		case http.StatusUnauthorized:
			if !strings.Contains(h.Get("WWW-Authenticate"), "insufficient_user_authentication") {
				return false
			}
			ts.asked++
			fmt.Printf("  the guard asks %s for a step-up (401 insufficient_user_authentication)\n", ts.user.Username)
			ts.steppedUp = false
			if err := ts.stepUp(ctx, origin); err != nil {
				fmt.Printf("  step-up failed: %s\n", shortErr(err))
				return false
			}
			c.token = ts.access
			return true
		case http.StatusTooManyRequests:
			secs, err := strconv.Atoi(h.Get("Retry-After"))
			if err != nil || secs < 0 {
				return false
			}
			// One second more: the guard's windows include their start.
			wait := min(time.Duration(secs)*time.Second+time.Second, maxThrottleWait)
			ts.throttled++
			ts.throttledFor += wait
			fmt.Printf("  the guard throttles %s (429, Retry-After %ds): waiting %.0fs\n", ts.user.Username, secs, wait.Seconds())
			return sleepCtx(ctx, wait) == nil
		}
		return false
	}
}

// counts summarizes the session's logins and guard interactions.
func (ts *tokenSource) counts() string {
	s := fmt.Sprintf("logins %d, token refreshes %d, step-ups %d", ts.logins, ts.refreshes, ts.stepUps)
	if ts.asked > 0 {
		s += fmt.Sprintf(" (%d asked by a 401)", ts.asked)
	}
	return s + fmt.Sprintf(", guard throttles waited out %d (%.0f s)", ts.throttled, ts.throttledFor.Seconds())
}

// grant posts one token request and keeps the new pair.
func (ts *tokenSource) grant(ctx context.Context, origin string, form url.Values) error {
	req, err := http.NewRequestWithContext(ctx, "POST", origin+"/auth/token", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	t0 := time.Now()
	resp, err := ts.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			ts.retryAfter = time.Duration(s) * time.Second
		}
		return fmt.Errorf("POST /auth/token (%s): %s: %.300s", form.Get("grant_type"), resp.Status, b)
	}
	var tr struct {
		AccessToken  string `json:"access_token"`
		TokenType    string `json:"token_type"`
		ExpiresIn    int    `json:"expires_in"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(b, &tr); err != nil {
		return fmt.Errorf("POST /auth/token: %w", err)
	}
	if tr.AccessToken == "" || !strings.EqualFold(tr.TokenType, "Bearer") || tr.ExpiresIn <= 0 {
		return fmt.Errorf("POST /auth/token: unexpected answer %.300s", b)
	}
	ts.access, ts.refresh = tr.AccessToken, tr.RefreshToken
	ts.expires = t0.Add(time.Duration(tr.ExpiresIn) * time.Second)
	return nil
}

// physInputs are the physician's reachable patients, gathered with his token.
type physInputs struct {
	user     string
	ids      []string // read targets
	families []string // his patients' family names, distinct: search targets
	obs      [][]byte // Observation bodies for his patients: create bodies
	capped   bool     // he reaches more than physMaxPatients
}

var obsCodes = []string{"Heart rate", "Body weight", "Body temperature", "Systolic blood pressure", "Respiratory rate", "Oxygen saturation", "Pain severity", "Blood glucose"}

// physMaxPatients caps the physician's gathered patients: the guard
// suspends a physician given more than 80 new patients in ten minutes (150
// in an hour), and the comparisons read all of them. The demo physician of
// the default 20,000 patients reaches 57; with more patients he may reach
// more, and the workloads then use the first physMaxPatients.
const physMaxPatients = 60

// collectPhysician lists the patients the server lets the physician see
// (GET /Patient?_count=25 and its next links, filtered by the server). On a
// server with the guard, c must step up and wait out throttles
// (apiClient.refused): 57 new patients are over a physician's limits of 30
// a minute (throttled) and 20 in ten minutes (step-up).
func collectPhysician(ctx context.Context, c *apiClient, user string, seed uint64) (*physInputs, error) {
	in := &physInputs{user: user}
	seenID, seenFam := map[string]bool{}, map[string]bool{}
	_, err := c.pageResources(ctx, "/Patient?_count=25", 40, func(r miniResource) bool {
		if r.ID != "" && !seenID[r.ID] {
			seenID[r.ID] = true
			in.ids = append(in.ids, r.ID)
			for _, n := range r.Name {
				if n.Family != "" {
					if !seenFam[n.Family] {
						seenFam[n.Family] = true
						in.families = append(in.families, n.Family)
					}
					break
				}
			}
		}
		if len(in.ids) >= physMaxPatients {
			in.capped = true
			return false
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("listing %s's patients: %w", user, err)
	}
	if len(in.ids) == 0 {
		return nil, fmt.Errorf("GET /Patient?_count=25 as %s returned no patient (no care relationship?)", user)
	}
	rng := rand.New(rand.NewPCG(seed, 0x0b5))
	for i := range 1024 {
		b, _ := json.Marshal(map[string]any{
			"resourceType": "Observation",
			"status":       "final",
			"code":         map[string]any{"text": obsCodes[rng.IntN(len(obsCodes))]},
			"subject":      map[string]any{"reference": "Patient/" + in.ids[i%len(in.ids)]},
		})
		in.obs = append(in.obs, b)
	}
	return in, nil
}

// physSession is the demo physician of one store: his session (shared by
// the authentication and guard comparisons, so he logs in and steps up once
// per store) and his inputs (gathered once).
type physSession struct {
	user demoUser
	ts   *tokenSource
	in   *physInputs
}

// physSessions are the sessions per store (data folder).
var physSessions = map[string]*physSession{}

func (h *harness) physSession(st store) (*physSession, error) {
	if ps := physSessions[st.dir]; ps != nil {
		return ps, nil
	}
	u, err := firstPhysician(st.usersPath())
	if err != nil {
		return nil, err
	}
	ps := &physSession{user: u, ts: newTokenSource(u)}
	physSessions[st.dir] = ps
	return ps, nil
}

// ready prepares a server just started for the physician's workloads:
// with a token unless open; with the guard (guarded), stepped up, and the
// guard primed. It gathers the inputs on the first call (what is noted in
// the report is prefixed with what).
func (ps *physSession) ready(ctx context.Context, h *harness, srv *server, what string, open, guarded bool) (*apiClient, error) {
	c := newAPIClient(srv.base)
	o := origin(srv.base)
	if !open {
		var err error
		if c.token, err = ps.ts.token(ctx, o, time.Minute); err != nil {
			return nil, err
		}
		if guarded {
			if err := ps.ts.ensureSteppedUp(ctx, o); err != nil {
				return nil, err
			}
			c.token = ps.ts.access
			c.refused = ps.ts.refusedHandler(c, o)
		}
	}
	if ps.in == nil {
		if open {
			return nil, fmt.Errorf("the physician's inputs are gathered with his token, not on an open server")
		}
		t0 := time.Now()
		in, err := collectPhysician(ctx, c, ps.user.Username, uint64(h.o.seed))
		if err != nil {
			return nil, err
		}
		ps.in = in
		n := fmt.Sprintf("%s: demo physician %s (first physician of demo-users.json) reaches %d patients with %d distinct family names (gathered in %.0f s); the baselines use the same ids, names and Observation bodies",
			what, ps.user.Username, len(in.ids), len(in.families), time.Since(t0).Seconds())
		if in.capped {
			n += fmt.Sprintf(" (capped at %d: the guard suspends a physician given more than 80 new patients in ten minutes)", physMaxPatients)
		}
		fmt.Println("bench: " + n)
		h.note(n)
	}
	if guarded {
		if err := primeGuard(ctx, c, ps.in); err != nil {
			return nil, fmt.Errorf("priming the guard: %w", err)
		}
	}
	return c, nil
}

// primeGuard reads each of the physician's patients once, sequentially,
// before any measured cell on a server with the guard: the guard counts
// the patients an account is given for the first time (in the store, and
// in the memory of each server process), and asks for a step-up or
// throttles past its limits. Once primed, the measured cells only meet
// patients this server already counted for him: the guard's fast path, no
// 401 or 429 (any would count as an error).
func primeGuard(ctx context.Context, c *apiClient, in *physInputs) error {
	t0 := time.Now()
	for _, id := range in.ids {
		if _, err := c.get(ctx, "/Patient/"+id, nil); err != nil {
			return err
		}
	}
	fmt.Printf("  primed the guard with %d patients in %.1fs\n", len(in.ids), time.Since(t0).Seconds())
	return nil
}

// authWorkload is a physician-scoped workload, run both open and auth.
type authWorkload struct {
	name  string // as in -auth-workloads: the open workload it mirrors
	label string // in the report
	desc  string
	// sources builds the per-worker requests and one sample request.
	sources func(t target, in *physInputs, seed uint64) (func(int) loadgen.Source, loadgen.Request)
}

var authWorkloads = []authWorkload{
	{
		name:  "read",
		label: "read (physician's patients)",
		desc:  "GET [base]/Patient/{id}, id drawn from the physician's reachable patients",
		sources: func(t target, in *physInputs, seed uint64) (func(int) loadgen.Source, loadgen.Request) {
			paths := mapStr(in.ids, func(id string) string { return t.prefix + "/Patient/" + id })
			return getSources(paths, seed), loadgen.Request{Path: paths[0]}
		},
	},
	{
		name:  "search-family",
		label: "search-family (physician's patients)",
		desc:  "GET [base]/Patient?family={name}&_count=20, name drawn from the family names of the physician's patients (open: every patient of that name, up to 20; auth: only his)",
		sources: func(t target, in *physInputs, seed uint64) (func(int) loadgen.Source, loadgen.Request) {
			paths := mapStr(in.families, func(f string) string {
				return t.prefix + "/Patient?family=" + url.QueryEscape(f) + "&_count=20"
			})
			return getSources(paths, seed), loadgen.Request{Path: paths[0]}
		},
	},
	{
		name:  "create",
		label: "create Observation (physician's patients)",
		desc:  "POST [base]/Observation (status final, code.text, subject one of the physician's patients; ~150 bytes), expecting 201 (the physician may not create a Patient)",
		sources: func(t target, in *physInputs, seed uint64) (func(int) loadgen.Source, loadgen.Request) {
			path := t.prefix + "/Observation"
			return postSources(path, in.obs, seed), postRequest(path, in.obs[0])
		},
	},
}

func authWorkloadByName(name string) (authWorkload, bool) {
	for _, w := range authWorkloads {
		if w.name == name {
			return w, true
		}
	}
	return authWorkload{}, false
}

// authCompare runs the physician workloads open and auth on st (seeded, no
// server running), alternating servers (auth first, since the physician's
// inputs are gathered with his token). The auth server is the normal
// carnet serve: token, policy, guard, audit; its session steps up once.
func (h *harness) authCompare(ctx context.Context, st store) error {
	ps, err := h.physSession(st)
	if err != nil {
		return err
	}
	probed := map[string]bool{}
	hk := abHooks{
		start: func(ctx context.Context, mode string, n int) (*server, error) {
			fmt.Printf("bench: [%s] carnet serve (%s) for the authentication comparison\n", st.backend, mode)
			return serveCarnet(ctx, h.bin, st, mode == modeOpen, filepath.Join(h.work, fmt.Sprintf("serve-%s-%d-%s.log", st.backend, n, mode)))
		},
		ready: func(ctx context.Context, srv *server, mode string) error {
			c, err := ps.ready(ctx, h, srv, st.backend+" auth comparison", mode == modeOpen, mode == modeAuth)
			if err != nil {
				return err
			}
			if !probed[mode] {
				probed[mode] = true
				if avg, err := avgTotal(ctx, c, ps.in.families); err == nil {
					n := fmt.Sprintf("%s %s: a family search of the physician's names matches %.1f patients on average", st.backend, mode, avg)
					fmt.Println("bench: " + n)
					h.note(n)
				}
			}
			return nil
		},
		header: func(ctx context.Context, srv *server, mode string) ([]string, error) {
			if mode != modeAuth {
				return nil, nil
			}
			return ps.cellHeader(ctx, h, srv, true)
		},
		sources: ps.sources,
	}
	names := make([]string, len(h.o.authWork))
	for i, w := range h.o.authWork {
		names[i] = w.name
	}
	err = h.abCompare(ctx, authCmp, st.backend, names, h.o.authConc, h.o.authReps, &h.rep.authRows, hk)
	h.sessionNote(st.backend, "authentication comparison", ps, h.rep.authRows)
	return err
}

// cellHeader is the Authorization header of a measured cell: a token valid
// for the whole cell, of a session stepped up on a server with the guard.
func (ps *physSession) cellHeader(ctx context.Context, h *harness, srv *server, guarded bool) ([]string, error) {
	o := origin(srv.base)
	tok, err := ps.ts.token(ctx, o, h.o.warmup+h.o.duration+cellGrace+time.Minute)
	if err != nil {
		return nil, err
	}
	if guarded && !ps.ts.steppedUp {
		// A new login (the refresh failed) is a new session.
		if err := ps.ts.ensureSteppedUp(ctx, o); err != nil {
			return nil, err
		}
		tok = ps.ts.access
	}
	return []string{"Authorization: Bearer " + tok}, nil
}

// sources are the abHooks.sources of the physician's workloads.
func (ps *physSession) sources(name string, t target, seed uint64) (func(int) loadgen.Source, loadgen.Request, error) {
	w, ok := authWorkloadByName(name)
	if !ok {
		return nil, loadgen.Request{}, fmt.Errorf("unknown physician workload %q", name)
	}
	if ps.in == nil {
		return nil, loadgen.Request{}, fmt.Errorf("no physician inputs")
	}
	src, sample := w.sources(t, ps.in, seed)
	return src, sample, nil
}

// sessionNote prints and notes the physician session's counts after a
// comparison, and the 401 and 429 answers its measured cells got (errors).
func (h *harness) sessionNote(backend, what string, ps *physSession, rows []abRow) {
	var n401, n429 int64
	for _, x := range rows {
		if x.backend == backend && x.res != nil {
			n401 += x.res.ByStatus[http.StatusUnauthorized]
			n429 += x.res.ByStatus[http.StatusTooManyRequests]
		}
	}
	n := fmt.Sprintf("%s %s: physician session so far: %s outside the measured cells; the measured cells got %d answers 401 and %d answers 429 (counted as errors)",
		backend, what, ps.ts.counts(), n401, n429)
	fmt.Println("bench: " + n)
	h.note(n)
}

// avgTotal is the mean number of patients a family search finds.
func avgTotal(ctx context.Context, c *apiClient, families []string) (float64, error) {
	sum := 0
	for _, f := range families {
		n, err := c.searchTotal(ctx, "/Patient?family="+url.QueryEscape(f)+"&_count=20")
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return float64(sum) / float64(max(len(families), 1)), nil
}
