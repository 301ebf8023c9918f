package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
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
	srv := startServer(t, data)
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

func TestDemoCreatesThenReuses(t *testing.T) {
	data := filepath.Join(t.TempDir(), "demo")
	var count struct {
		Total int `json:"total"`
	}
	t.Run("first run seeds", func(t *testing.T) {
		base, stderr := startCommand(t, "demo", "--data", data, "--patients", "30", "--addr", "127.0.0.1:0")
		getJSON(t, base+"/Patient?_summary=count", &count)
		if count.Total != 30 || !strings.Contains(stderr.String(), "creating a synthetic demo group") {
			t.Fatalf("patients %d; stderr %s", count.Total, stderr.String())
		}
		var page struct {
			Entry []struct {
				Resource struct {
					Name []struct{ Family string } `json:"name"`
				} `json:"resource"`
			} `json:"entry"`
		}
		getJSON(t, base+"/Patient?_count=1", &page)
		fam := page.Entry[0].Resource.Name[0].Family
		getJSON(t, base+"/Patient?family="+strings.ToLower(fam)+"&_summary=count", &count)
		if count.Total < 1 {
			t.Fatalf("family search for %q found nothing", fam)
		}
	})
	t.Run("second run reuses", func(t *testing.T) {
		base, stderr := startCommand(t, "demo", "--data", data, "--patients", "99", "--addr", "127.0.0.1:0")
		getJSON(t, base+"/Patient?_summary=count", &count)
		if count.Total != 30 || !strings.Contains(stderr.String(), "reusing the existing store") {
			t.Fatalf("patients %d; stderr %s", count.Total, stderr.String())
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
