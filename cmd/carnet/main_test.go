package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"carnet/internal/auth"
	"carnet/internal/policy"
)

// syncBuf is a goroutine-safe buffer for a running command's output.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestEveryCommandHasHelp(t *testing.T) {
	for _, c := range commands() {
		code, _, stderr := runCmd(t, c.name, "--help")
		if code != 0 || !strings.Contains(stderr, "Usage: carnet "+c.name) {
			t.Errorf("%s --help: exit %d, output %q", c.name, code, stderr)
		}
	}
	if code, _, stderr := runCmd(t, "nonsense"); code != 2 || !strings.Contains(stderr, "unknown command") {
		t.Errorf("unknown command: exit %d, %q", code, stderr)
	}
	if code, _, _ := runCmd(t, "seed", "--patients", "x"); code != 2 {
		t.Errorf("bad flag value: exit %d, want 2", code)
	}
}

func TestServeWithoutStoreIsAClearError(t *testing.T) {
	code, _, stderr := runCmd(t, "serve", "--data", t.TempDir())
	if code != 1 || !strings.Contains(stderr, "no Carnet store") {
		t.Fatalf("exit %d, %q", code, stderr)
	}
}

const txBundle = `{"resourceType":"Bundle","type":"transaction","entry":[
 {"fullUrl":"urn:uuid:1c0a5f8e-3b7e-4f55-9d0e-8f1f2a3b4c5d","resource":{"resourceType":"Patient","name":[{"family":"Importée","given":["Zoé"]}],"gender":"female","birthDate":"1990-02-03"},
  "request":{"method":"POST","url":"Patient"}},
 {"resource":{"resourceType":"Encounter","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},
   "subject":{"reference":"urn:uuid:1c0a5f8e-3b7e-4f55-9d0e-8f1f2a3b4c5d"},"period":{"start":"2025-01-02T10:00:00+01:00"}},
  "request":{"method":"POST","url":"Encounter"}}]}`

const ndjson = `{"resourceType":"Patient","id":"nd-1","name":[{"family":"Ligne"}],"birthDate":"1950"}
{"resourceType":"Observation","id":"nd-obs","status":"final","code":{"text":"poids"},"subject":{"reference":"Patient/nd-1"},"valueQuantity":{"value":72.50,"unit":"kg"}}
`

func TestImportIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "store")
	bundle := filepath.Join(dir, "bundle.json")
	nd := filepath.Join(dir, "data.ndjson")
	os.WriteFile(bundle, []byte(txBundle), 0o600)
	os.WriteFile(nd, []byte(ndjson), 0o600)

	code, out, stderr := runCmd(t, "import", "--data", data, bundle, nd)
	if code != 0 || !strings.Contains(out, "4 created, 0 updated, 0 unchanged") {
		t.Fatalf("first import: exit %d\n%s\n%s", code, out, stderr)
	}
	code, out, stderr = runCmd(t, "import", "--data", data, bundle, nd)
	if code != 0 || !strings.Contains(out, "0 created, 0 updated, 4 unchanged") {
		t.Fatalf("second import must change nothing: exit %d\n%s\n%s", code, out, stderr)
	}
	// A changed file updates only what changed.
	os.WriteFile(nd, []byte(strings.Replace(ndjson, "72.50", "73.00", 1)), 0o600)
	code, out, _ = runCmd(t, "import", "--data", data, nd)
	if code != 0 || !strings.Contains(out, "0 created, 1 updated, 1 unchanged") {
		t.Fatalf("changed import: exit %d\n%s", code, out)
	}
	// The data is there, references resolved, decimals exact.
	srv, _ := startCommand(t, "serve", "--data", data, "--addr", "127.0.0.1:0", "--insecure-open")
	var b struct {
		Total int `json:"total"`
		Entry []struct {
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	getJSON(t, srv+"/Encounter?_include=Encounter:patient", &b)
	if b.Total != 1 || len(b.Entry) != 2 {
		t.Fatalf("Encounter with its patient: total %d, %d entries", b.Total, len(b.Entry))
	}
	var obs map[string]any
	raw := getJSON(t, srv+"/Observation/nd-obs", &obs)
	if !strings.Contains(raw, `"value":73.00`) {
		t.Fatalf("decimal not kept exactly: %s", raw)
	}
}

func TestImportRefusesBadFilesCleanly(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"resourceType":"Patient","gender":"M"}`), 0o600)
	code, _, stderr := runCmd(t, "import", "--data", filepath.Join(dir, "s"), bad)
	if code != 1 || !strings.Contains(stderr, "gender") {
		t.Fatalf("exit %d, %q", code, stderr)
	}
	code, _, stderr = runCmd(t, "import", "--data", filepath.Join(dir, "s"), filepath.Join(dir, "missing.json"))
	if code != 1 || !strings.Contains(stderr, "no such file") {
		t.Fatalf("exit %d, %q", code, stderr)
	}
}

var urlRe = regexp.MustCompile(`http://127\.0\.0\.1:\d+/fhir`)

// startCommand runs a serving command until the test ends; it returns the
// base URL it printed.
func startCommand(t *testing.T, args ...string) (base string, stderr *syncBuf) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errb := &syncBuf{}, &syncBuf{}
	done := make(chan int)
	go func() { done <- run(ctx, args, out, errb) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("server did not stop")
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if m := urlRe.FindString(out.String()); m != "" {
			return m, errb
		}
		select {
		case code := <-done:
			t.Fatalf("%v exited %d: %s", args, code, errb.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no URL printed: %s", errb.String())
	return "", nil
}

func startServer(t *testing.T, data string) string {
	base, _ := startCommand(t, "serve", "--data", data, "--addr", "127.0.0.1:0")
	return base
}

func getJSON(t *testing.T, url string, v any) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return string(body)
}

// demoLogin logs in as the demo user u (password and TOTP code at t) and
// returns an access token.
func demoLogin(t *testing.T, base string, u demoUser, at time.Time) string {
	t.Helper()
	code, err := auth.TOTPCode(u.TOTPSecret, at)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.PostForm(strings.TrimSuffix(base, "/fhir")+"/auth/token", url.Values{"username": {u.Username}, "password": {u.Password}, "otp": {code}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
	}
	body, _ := io.ReadAll(resp.Body)
	json.Unmarshal(body, &tok)
	if resp.StatusCode != 200 || tok.AccessToken == "" || tok.TokenType != "Bearer" || tok.ExpiresIn <= 0 || tok.ExpiresIn > 900 {
		t.Fatalf("login %s: %d %s", u.Username, resp.StatusCode, body)
	}
	return tok.AccessToken
}

func getAuthJSON(t *testing.T, url, token string, v any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	return resp.StatusCode
}

func TestDemoCreatesThenReuses(t *testing.T) {
	data := filepath.Join(t.TempDir(), "demo")
	var count struct {
		Total int `json:"total"`
	}
	var users []demoUser
	reach := 0
	t.Run("first run seeds", func(t *testing.T) {
		base, stderr := startCommand(t, "demo", "--data", data, "--patients", "300", "--addr", "127.0.0.1:0")
		if !strings.Contains(stderr.String(), "creating a synthetic demo group") {
			t.Fatalf("stderr %s", stderr.String())
		}
		raw, err := os.ReadFile(filepath.Join(data, "demo-users.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &users); err != nil {
			t.Fatal(err)
		}
		roles := map[string]bool{}
		for _, u := range users {
			for _, r := range u.Roles {
				roles[r] = true
			}
			if u.Username == "" || u.Password == "" || len(u.Facilities) == 0 {
				t.Errorf("incomplete demo user %+v", u)
			}
		}
		for _, r := range policy.Roles {
			if !roles[r] {
				t.Errorf("no demo user with role %s", r)
			}
		}
		// Without a token: 401.
		if st := getAuthJSON(t, base+"/Patient?_summary=count", "", &count); st != 401 {
			t.Fatalf("no token: %d", st)
		}
		// The first physician listed logs in and sees their own patients.
		var doc demoUser
		for _, u := range users {
			if slices.Contains(u.Roles, policy.Physician) {
				doc = u
				break
			}
		}
		tok := demoLogin(t, base, doc, time.Now())
		if st := getAuthJSON(t, base+"/Patient?_summary=count", tok, &count); st != 200 || count.Total < 3 || count.Total >= 300 {
			t.Fatalf("physician %s sees %d patients (status %d): want a few, not everyone", doc.Username, count.Total, st)
		}
		reach = count.Total
		var page struct {
			Entry []struct {
				Resource struct {
					Name []struct{ Family string } `json:"name"`
				} `json:"resource"`
			} `json:"entry"`
		}
		getAuthJSON(t, base+"/Patient?_count=1", tok, &page)
		fam := page.Entry[0].Resource.Name[0].Family
		getAuthJSON(t, base+"/Patient?family="+url.QueryEscape(strings.ToLower(fam))+"&_summary=count", tok, &count)
		if count.Total < 1 {
			t.Fatalf("family search for %q found nothing", fam)
		}
		// The group administrator logs in too, and reads no patient.
		for _, u := range users {
			if slices.Contains(u.Roles, policy.GroupAdmin) {
				atok := demoLogin(t, base, u, time.Now())
				if st := getAuthJSON(t, base+"/Patient?_summary=count", atok, &count); st != 403 {
					t.Errorf("group admin searching patients: %d, want 403", st)
				}
				break
			}
		}
	})
	t.Run("second run reuses", func(t *testing.T) {
		base, stderr := startCommand(t, "demo", "--data", data, "--patients", "99", "--addr", "127.0.0.1:0")
		if !strings.Contains(stderr.String(), "reusing the existing store") {
			t.Fatalf("stderr %s", stderr.String())
		}
		var doc demoUser
		for _, u := range users {
			if slices.Contains(u.Roles, policy.Physician) {
				doc = u
				break
			}
		}
		// The next time step: the code of the first login cannot be replayed.
		tok := demoLogin(t, base, doc, time.Now().Add(30*time.Second))
		if st := getAuthJSON(t, base+"/Patient?_summary=count", tok, &count); st != 200 || count.Total != reach {
			t.Fatalf("patients %d (status %d), want %d", count.Total, st, reach)
		}
	})
}

func TestSecondServerOnSameDataIsRefused(t *testing.T) {
	data := filepath.Join(t.TempDir(), "d")
	if code, _, stderr := runCmd(t, "seed", "--data", data, "--patients", "5"); code != 0 {
		t.Fatalf("seed: %s", stderr)
	}
	startServer(t, data)
	code, _, stderr := runCmd(t, "serve", "--data", data, "--addr", "127.0.0.1:0")
	if code != 1 || !strings.Contains(stderr, "in use by another Carnet process") {
		t.Fatalf("exit %d, %q", code, stderr)
	}
}
