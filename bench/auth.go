package main

// The authentication comparison: the same physician-scoped workloads against
// carnet serve --insecure-open (open) and against the normal server with the
// bearer token of a demo physician (auth), on the same seeded store, in
// alternating order, several times; the report gives the median req/s of
// each mode and their ratio.

import (
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

// authGoal is the auth/open req/s ratio the authenticated server should reach.
const authGoal = 0.85

const (
	modeOpen = "open"
	modeAuth = "auth"
)

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
// token outlives a restart of the server.
type tokenSource struct {
	user       demoUser
	hc         *http.Client
	access     string
	refresh    string
	expires    time.Time
	lastStep   int64 // TOTP time step of the last login
	retryAfter time.Duration
	logins     int
	refreshes  int
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
		// A TOTP time step is accepted once per account: never reuse one,
		// and after a failure wait for the next.
		step := time.Now().Unix() / auth.TOTPPeriod
		if step <= ts.lastStep || attempt > 0 {
			wait := time.Until(time.Unix((max(step, ts.lastStep)+1)*auth.TOTPPeriod, 0)) + 200*time.Millisecond
			wait = max(wait, ts.retryAfter)
			fmt.Printf("  waiting %.0fs for a fresh TOTP step to log in as %s\n", wait.Seconds(), ts.user.Username)
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(wait):
			}
		}
		now := time.Now()
		code, err := auth.TOTPCode(ts.user.TOTPSecret, now)
		if err != nil {
			return "", fmt.Errorf("TOTP code for %s: %w", ts.user.Username, err)
		}
		ts.lastStep = now.Unix() / auth.TOTPPeriod
		ts.retryAfter = 0
		last = ts.grant(ctx, origin, url.Values{"username": {ts.user.Username}, "password": {ts.user.Password}, "otp": {code}})
		if last == nil {
			ts.logins++
			return ts.access, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
	}
	return "", fmt.Errorf("login as %s: %w", ts.user.Username, last)
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
}

var obsCodes = []string{"Heart rate", "Body weight", "Body temperature", "Systolic blood pressure", "Respiratory rate", "Oxygen saturation", "Pain severity", "Blood glucose"}

// collectPhysician lists the patients the server lets the physician see
// (GET /Patient?_count=500 and its next links, filtered by the server).
func collectPhysician(ctx context.Context, c *apiClient, user string, seed uint64) (*physInputs, error) {
	in := &physInputs{user: user}
	seenID, seenFam := map[string]bool{}, map[string]bool{}
	_, err := c.pageResources(ctx, "/Patient?_count=500", 20, func(r miniResource) bool {
		if r.ID != "" && !seenID[r.ID] {
			seenID[r.ID] = true
			in.ids = append(in.ids, r.ID)
		}
		for _, n := range r.Name {
			if n.Family != "" {
				if !seenFam[n.Family] {
					seenFam[n.Family] = true
					in.families = append(in.families, n.Family)
				}
				break
			}
		}
		return len(in.ids) < wantPatientIDs
	})
	if err != nil {
		return nil, fmt.Errorf("listing %s's patients: %w", user, err)
	}
	if len(in.ids) == 0 {
		return nil, fmt.Errorf("GET /Patient?_count=500 as %s returned no patient (no care relationship?)", user)
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

// authStep is one repetition of the physician workloads in one mode.
type authStep struct {
	mode string
	rep  int
}

// authSteps orders the repetitions A B, B A, A B, ... (auth first, since
// the physician's inputs are gathered with his token), so that a drift of
// the machine or a store growing with the creates weighs on both modes alike.
// Consecutive steps of the same mode share one server.
func authSteps(reps int) []authStep {
	var out []authStep
	for r := range reps {
		if r%2 == 0 {
			out = append(out, authStep{modeAuth, r}, authStep{modeOpen, r})
		} else {
			out = append(out, authStep{modeOpen, r}, authStep{modeAuth, r})
		}
	}
	return out
}

// authCompare runs the physician workloads open and auth on st (seeded, no
// server running), alternating servers.
func (h *harness) authCompare(ctx context.Context, st store) error {
	phys, err := firstPhysician(st.usersPath())
	if err != nil {
		return err
	}
	ts := newTokenSource(phys)
	var (
		srv    *server
		t      target
		in     *physInputs
		mode   string
		starts int
		probed = map[string]bool{}
	)
	defer func() { srv.stop() }()
	for _, s := range authSteps(h.o.authReps) {
		if srv == nil || s.mode != mode {
			srv.stop()
			starts++
			fmt.Printf("bench: [%s] carnet serve (%s) for the authentication comparison\n", st.backend, s.mode)
			srv, err = serveCarnet(ctx, h.bin, st, s.mode == modeOpen, filepath.Join(h.work, fmt.Sprintf("serve-%s-%d-%s.log", st.backend, starts, s.mode)))
			if err != nil {
				return err
			}
			mode = s.mode
			if t, err = newTarget(st.backend, srv.base, false); err != nil {
				return err
			}
			c := newAPIClient(srv.base)
			if mode == modeAuth {
				if c.token, err = ts.token(ctx, origin(srv.base), time.Minute); err != nil {
					return err
				}
			}
			if in == nil {
				if in, err = collectPhysician(ctx, c, phys.Username, uint64(h.o.seed)); err != nil {
					return err
				}
				n := fmt.Sprintf("%s auth comparison: demo physician %s (first physician of demo-users.json) reaches %d patients with %d distinct family names; the open baselines use the same ids, names and Observation bodies",
					st.backend, phys.Username, len(in.ids), len(in.families))
				fmt.Println("bench: " + n)
				h.note(n)
			}
			if !probed["families-"+mode] {
				probed["families-"+mode] = true
				if avg, err := avgTotal(ctx, c, in.families); err == nil {
					n := fmt.Sprintf("%s %s: a family search of the physician's names matches %.1f patients on average", st.backend, mode, avg)
					fmt.Println("bench: " + n)
					h.note(n)
				}
			}
		}
		if err := h.authStep(ctx, srv, t, s, in, ts, probed); err != nil {
			return err
		}
	}
	srv.stop()
	for _, s := range h.rep.authSummaries() {
		if s.backend == st.backend {
			fmt.Println("bench: " + s.line())
		}
	}
	fmt.Printf("bench: [%s] physician logins %d, token refreshes %d\n", st.backend, ts.logins, ts.refreshes)
	return nil
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

// authStep runs every physician workload at every -auth-conc once.
func (h *harness) authStep(ctx context.Context, srv *server, t target, s authStep, in *physInputs, ts *tokenSource, probed map[string]bool) error {
	hc := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	grace := time.Second
	for wi, w := range h.o.authWork {
		// Same seed for both modes of a repetition: the same request sequences.
		src, sample := w.sources(t, in, uint64(h.o.seed)+50000+uint64(wi)*1000+uint64(s.rep)*100)
		header := []string{"Accept: application/fhir+json"}
		if s.mode == modeAuth {
			tok, err := ts.token(ctx, origin(srv.base), h.o.warmup+h.o.duration+grace+time.Minute)
			if err != nil {
				return err
			}
			header = append(header, "Authorization: Bearer "+tok)
		}
		key := w.name + "-" + s.mode
		if !probed[key] {
			probed[key] = true
			_, status, err := probe(ctx, hc, t.addr, sample, header[1:], 2*time.Minute)
			switch {
			case err != nil:
				return fmt.Errorf("%s (%s) probe %s %s: %w", w.label, s.mode, reqMethod(sample), sample.Path, err)
			case status/100 != 2:
				n := fmt.Sprintf("%s %s: probe %s %s answered %d", t.name, s.mode, reqMethod(sample), sample.Path, status)
				fmt.Println("  warning: " + n)
				h.note(n)
			}
		}
		for _, c := range h.o.authConc {
			if !srv.alive() {
				h.rep.authRows = append(h.rep.authRows, authRow{workload: w.name, backend: t.name, conc: c, mode: s.mode, rep: s.rep, note: "server died"})
				continue
			}
			res, err := loadgen.Run(ctx, loadgen.Config{
				Addr:            t.addr,
				Conns:           c,
				Warmup:          h.o.warmup,
				Duration:        h.o.duration,
				Grace:           grace,
				NewSource:       src,
				Header:          header,
				ExpectLatencies: int(h.o.duration.Seconds() * 30000),
			})
			if err != nil {
				return err
			}
			x := authRow{workload: w.name, backend: t.name, conc: c, mode: s.mode, rep: s.rep, res: res}
			h.rep.authRows = append(h.rep.authRows, x)
			printCols(h.rep.authCells(x, h.o.authReps))
			if res.FirstError != "" {
				fmt.Printf("    first transport error: %s\n", res.FirstError)
			}
			h.save()
			h.drain(ctx, hc, t)
		}
	}
	if !srv.alive() {
		return fmt.Errorf("%s exited during the run: %v; log %s:\n%s", srv.name, srv.err, srv.logPath, tailFile(srv.logPath, 20))
	}
	return nil
}
