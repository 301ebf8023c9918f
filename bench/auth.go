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

// authCompare runs the physician workloads open and auth on st (seeded, no
// server running), alternating servers (auth first, since the physician's
// inputs are gathered with his token).
func (h *harness) authCompare(ctx context.Context, st store) error {
	phys, err := firstPhysician(st.usersPath())
	if err != nil {
		return err
	}
	ts := newTokenSource(phys)
	var in *physInputs
	probed := map[string]bool{}
	hk := abHooks{
		start: func(ctx context.Context, mode string, n int) (*server, error) {
			fmt.Printf("bench: [%s] carnet serve (%s) for the authentication comparison\n", st.backend, mode)
			return serveCarnet(ctx, h.bin, st, mode == modeOpen, filepath.Join(h.work, fmt.Sprintf("serve-%s-%d-%s.log", st.backend, n, mode)))
		},
		ready: func(ctx context.Context, srv *server, mode string) error {
			c := newAPIClient(srv.base)
			if mode == modeAuth {
				var err error
				if c.token, err = ts.token(ctx, origin(srv.base), time.Minute); err != nil {
					return err
				}
			}
			if in == nil {
				var err error
				if in, err = collectPhysician(ctx, c, phys.Username, uint64(h.o.seed)); err != nil {
					return err
				}
				n := fmt.Sprintf("%s auth comparison: demo physician %s (first physician of demo-users.json) reaches %d patients with %d distinct family names; the open baselines use the same ids, names and Observation bodies",
					st.backend, phys.Username, len(in.ids), len(in.families))
				fmt.Println("bench: " + n)
				h.note(n)
			}
			if !probed[mode] {
				probed[mode] = true
				if avg, err := avgTotal(ctx, c, in.families); err == nil {
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
			// Valid for the whole cell.
			tok, err := ts.token(ctx, origin(srv.base), h.o.warmup+h.o.duration+cellGrace+time.Minute)
			if err != nil {
				return nil, err
			}
			return []string{"Authorization: Bearer " + tok}, nil
		},
		sources: func(name string, t target, seed uint64) (func(int) loadgen.Source, loadgen.Request, error) {
			w, ok := authWorkloadByName(name)
			if !ok {
				return nil, loadgen.Request{}, fmt.Errorf("unknown physician workload %q", name)
			}
			src, sample := w.sources(t, in, seed)
			return src, sample, nil
		},
	}
	names := make([]string, len(h.o.authWork))
	for i, w := range h.o.authWork {
		names[i] = w.name
	}
	if err := h.abCompare(ctx, authCmp, st.backend, names, h.o.authConc, h.o.authReps, &h.rep.authRows, hk); err != nil {
		return err
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
