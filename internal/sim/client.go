package sim

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"carnet/internal/auth"
	"carnet/internal/fhir"
)

// Resp is one HTTP answer as a simulated client saw it.
type Resp struct {
	Status int
	Header http.Header
	Body   []byte
	// Patients are the patients the body disclosed (2xx, when the client
	// parses bodies).
	Patients []string
	// StepUp: the guard asked for a fresh one-time code (401
	// insufficient_user_authentication).
	StepUp bool
	// RetryAfter: throttled (429).
	RetryAfter time.Duration
	// Suspended: the guard suspended the account (403, issue code
	// suspended).
	Suspended bool
}

// OK reports a 2xx answer.
func (r *Resp) OK() bool { return r.Status >= 200 && r.Status < 300 }

// JSON decodes the body into v.
func (r *Resp) JSON(v any) error { return json.Unmarshal(r.Body, v) }

// Tally counts what one actor (or a group of actors) did and got.
type Tally struct {
	mu          sync.Mutex
	Requests    int
	Status      map[int]int
	Disclosed   map[string]bool // every patient in a 2xx body
	StepUps     int             // step-ups asked
	Answered    int             // step-ups answered with a fresh code
	Throttled   int
	SuspendedAt time.Time // simulated time of the first "suspended" answer
	RealAt      time.Time // wall time of it
	AfterStop   int       // 2xx answers after the suspension
	AfterStopPt int       // patients disclosed after the suspension
	FirstAt     time.Time // simulated time of the first request
	RealStart   time.Time
	LastAt      time.Time
}

// NewTally returns an empty tally.
func NewTally() *Tally {
	return &Tally{Status: map[int]int{}, Disclosed: map[string]bool{}}
}

func (t *Tally) add(r *Resp, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.Requests == 0 {
		t.FirstAt, t.RealStart = now, time.Now()
	}
	t.LastAt = now
	t.Requests++
	t.Status[r.Status]++
	stopped := !t.SuspendedAt.IsZero()
	if r.OK() && stopped {
		t.AfterStop++
	}
	for _, p := range r.Patients {
		if !t.Disclosed[p] {
			t.Disclosed[p] = true
			if stopped {
				t.AfterStopPt++
			}
		}
	}
	if r.StepUp {
		t.StepUps++
	}
	if r.RetryAfter > 0 {
		t.Throttled++
	}
	if r.Suspended && t.SuspendedAt.IsZero() {
		t.SuspendedAt, t.RealAt = now, time.Now()
	}
}

// Merge adds o's counts to t (distinct patients united).
func (t *Tally) Merge(o *Tally) {
	o.mu.Lock()
	defer o.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.Requests += o.Requests
	for k, v := range o.Status {
		t.Status[k] += v
	}
	for p := range o.Disclosed {
		t.Disclosed[p] = true
	}
	t.StepUps += o.StepUps
	t.Answered += o.Answered
	t.Throttled += o.Throttled
	t.AfterStop += o.AfterStop
	t.AfterStopPt += o.AfterStopPt
	if !o.SuspendedAt.IsZero() && (t.SuspendedAt.IsZero() || o.SuspendedAt.Before(t.SuspendedAt)) {
		t.SuspendedAt, t.RealAt = o.SuspendedAt, o.RealAt
	}
	if t.FirstAt.IsZero() || (!o.FirstAt.IsZero() && o.FirstAt.Before(t.FirstAt)) {
		t.FirstAt, t.RealStart = o.FirstAt, o.RealStart
	}
	if o.LastAt.After(t.LastAt) {
		t.LastAt = o.LastAt
	}
}

// Count returns the number of distinct patients disclosed.
func (t *Tally) Count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.Disclosed)
}

// Client is one simulated user agent: a person at a workstation, or an
// attacker's script, with a bearer token.
type Client struct {
	Name  string
	base  string
	hc    *http.Client
	clock *Clock
	// Access is the bearer token; Refresh the refresh token (a stolen
	// session has both; in-process sessions have none).
	Access, Refresh string
	Expires         time.Time // of the access token
	RefreshBy       time.Time // when the refresh token expires (8 hours after it was issued)
	// TOTP is the authenticator's secret: a legitimate user answers a
	// step-up with it; an attacker without the authenticator has "".
	TOTP     string
	lastStep int64
	// Parse makes the client extract the disclosed patients of every 2xx
	// body (attackers: what they got).
	Parse bool
	T     *Tally
}

// NewClient returns a client of the stack whose connections come from ip.
func (s *Stack) NewClient(name string, tr http.RoundTripper) *Client {
	return &Client{Name: name, base: s.URL, hc: &http.Client{Transport: tr, Timeout: 2 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		clock: s.Clock, T: NewTally()}
}

// Get sends a GET.
func (c *Client) Get(ctx context.Context, path string) *Resp { return c.Do(ctx, "GET", path, nil, "") }

// PostJSON sends a POST of a JSON body (FHIR JSON for /fhir paths).
func (c *Client) PostJSON(ctx context.Context, path string, v any) *Resp {
	b, _ := json.Marshal(v)
	ct := "application/json"
	if strings.HasPrefix(path, "/fhir") {
		ct = "application/fhir+json"
	}
	return c.Do(ctx, "POST", path, b, ct)
}

// PostForm sends a form POST.
func (c *Client) PostForm(ctx context.Context, path string, f url.Values) *Resp {
	return c.Do(ctx, "POST", path, []byte(f.Encode()), "application/x-www-form-urlencoded")
}

// Do sends one request (refreshing the access token first if it expired
// and a refresh token is at hand) and tallies the answer.
func (c *Client) Do(ctx context.Context, method, path string, body []byte, ctype string, hdr ...string) *Resp {
	if c.Refresh != "" && !c.Expires.IsZero() && !c.clock.Now().Before(c.Expires.Add(-time.Minute)) && path != "/auth/token" {
		c.refresh(ctx)
	}
	r := c.send(ctx, method, path, body, ctype, hdr...)
	c.T.add(r, c.clock.Now())
	return r
}

func (c *Client) send(ctx context.Context, method, path string, body []byte, ctype string, hdr ...string) *Resp {
	u := path
	if !strings.HasPrefix(path, "http") {
		u = c.base + path
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return &Resp{Status: 0, Body: []byte(err.Error())}
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if c.Access != "" {
		req.Header.Set("Authorization", "Bearer "+c.Access)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return &Resp{Status: 0, Body: []byte(err.Error())}
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := &Resp{Status: res.StatusCode, Header: res.Header, Body: b}
	switch {
	case res.StatusCode == http.StatusUnauthorized && strings.Contains(res.Header.Get("WWW-Authenticate"), "insufficient_user_authentication") && !strings.HasSuffix(path, "/auth/step-up"):
		r.StepUp = true
	case res.StatusCode == http.StatusTooManyRequests:
		secs, _ := strconv.Atoi(res.Header.Get("Retry-After"))
		r.RetryAfter = time.Duration(max(secs, 1)) * time.Second
	case res.StatusCode == http.StatusForbidden && bytes.Contains(b, []byte(`"code":"suspended"`)):
		r.Suspended = true
	}
	if c.Parse && r.OK() {
		r.Patients = Disclosed(b)
	}
	return r
}

// refresh exchanges the refresh token (a stolen session is kept alive this
// way).
func (c *Client) refresh(ctx context.Context) {
	r := c.send(ctx, "POST", "/auth/token", []byte(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {c.Refresh}}.Encode()), "application/x-www-form-urlencoded")
	c.T.add(r, c.clock.Now())
	if !r.OK() {
		c.Refresh = ""
		return
	}
	c.takeGrant(r)
}

func (c *Client) takeGrant(r *Resp) {
	var g struct {
		Access  string `json:"access_token"`
		Refresh string `json:"refresh_token"`
		Expires int    `json:"expires_in"`
	}
	if r.JSON(&g) == nil && g.Access != "" {
		c.Access, c.Refresh = g.Access, g.Refresh
		c.Expires = c.clock.Now().Add(time.Duration(g.Expires) * time.Second)
		c.RefreshBy = c.clock.Now().Add(8 * time.Hour)
	}
}

// Login logs in over HTTP (POST /auth/token) and keeps the tokens.
func (c *Client) Login(ctx context.Context, username, password, otp string) *Resp {
	c.Access = ""
	r := c.PostForm(ctx, "/auth/token", url.Values{"username": {username}, "password": {password}, "otp": {otp}})
	if r.OK() {
		c.takeGrant(r)
	}
	return r
}

// Code returns a fresh TOTP code of the client's authenticator at the
// simulated time: the next time step if the current one was used already
// (a person waits for the next code; one step of skew is accepted).
func (c *Client) Code() string {
	now := c.clock.Now()
	step := auth.TOTPStep(now)
	if step <= c.lastStep {
		step = c.lastStep + 1
	}
	c.lastStep = step
	code, _ := auth.TOTPCode(c.TOTP, time.Unix(step*auth.TOTPPeriod, 0))
	return code
}

// StepUp answers a step-up with a fresh code; it reports success.
func (c *Client) StepUp(ctx context.Context) bool {
	if c.TOTP == "" {
		return false
	}
	r := c.PostForm(ctx, "/auth/step-up", url.Values{"otp": {c.Code()}})
	if r.OK() {
		c.T.mu.Lock()
		c.T.Answered++
		c.T.mu.Unlock()
	}
	return r.OK()
}

// DoAnswering sends a request; if the guard asks for a step-up and the
// client holds the authenticator, it answers and retries once.
func (c *Client) DoAnswering(ctx context.Context, method, path string, body []byte, ctype string) *Resp {
	r := c.Do(ctx, method, path, body, ctype)
	if r.StepUp && c.StepUp(ctx) {
		r = c.Do(ctx, method, path, body, ctype)
	}
	return r
}

// Disclosed returns the patients a response body discloses: the Patient
// resources' ids and the patient (subject) of every other resource, in a
// resource or a Bundle's entries; and the patient of a break-the-glass
// grant.
func Disclosed(body []byte) []string {
	var v map[string]any
	if json.Unmarshal(body, &v) != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		if p != "" && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	var walk func(r map[string]any)
	walk = func(r map[string]any) {
		if fhir.Type(r) == "Bundle" {
			es, _ := r["entry"].([]any)
			for _, e := range es {
				if em, ok := e.(map[string]any); ok {
					if res, ok := em["resource"].(map[string]any); ok {
						walk(res)
					}
				}
			}
			return
		}
		if fhir.Type(r) == "" {
			if p, ok := r["patient"].(string); ok {
				add(p) // a break-the-glass grant
			}
			return
		}
		add(fhir.PatientOf(r))
	}
	walk(v)
	return out
}

// NextLink returns the Bundle's next link ("" if none), as a path.
func NextLink(body []byte) string {
	var b struct {
		Link []struct{ Relation, URL string } `json:"link"`
	}
	if json.Unmarshal(body, &b) != nil {
		return ""
	}
	for _, l := range b.Link {
		if l.Relation == "next" {
			if u, err := url.Parse(l.URL); err == nil {
				return u.RequestURI()
			}
			return l.URL
		}
	}
	return ""
}

// Total returns a searchset Bundle's total (-1 if absent).
func Total(body []byte) int {
	var b struct {
		Total *int `json:"total"`
	}
	if json.Unmarshal(body, &b) != nil || b.Total == nil {
		return -1
	}
	return *b.Total
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ipFor returns a loopback address for a numbered client: attackers and
// workstations get distinct ones.
func ipFor(kind, n int) string {
	return fmt.Sprintf("127.%d.%d.%d", kind, (n>>8)&255, n&255+1)
}
