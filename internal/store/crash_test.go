package store_test

// Crash test: a real `carnet serve` process under concurrent POST load is
// SIGKILLed, restarted on the same store, and every write it acknowledged
// must be there, whole, with nothing half-written.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"carnet/internal/fhir"
	"carnet/internal/load"
	"carnet/internal/store"
	"carnet/internal/store/postgres"
	"carnet/internal/store/sqlite"
	"carnet/internal/store/storetest"
	"carnet/internal/synth"
)

const (
	crashSeeded  = 50
	crashClients = 32
	crashLoad    = 1500 * time.Millisecond
)

// buildCarnet builds cmd/carnet into dir.
func buildCarnet(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "carnet")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "carnet/cmd/carnet")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build carnet/cmd/carnet: %v\n%s", err, out)
	}
	return bin
}

// crashEnv is the environment of the carnet processes: CARNET_DB would
// override --data.
func crashEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CARNET_DB=") {
			env = append(env, kv)
		}
	}
	return env
}

func runCarnet(t *testing.T, bin string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = crashEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("carnet %s: %v\n%s", strings.Join(args, " "), err, tail(out))
	}
}

func tail(b []byte) string {
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// server is a running `carnet serve`.
type server struct {
	t    *testing.T
	cmd  *exec.Cmd
	base string // http://127.0.0.1:port/fhir
	log  string // stderr file
	done chan struct{}
}

var servingRE = regexp.MustCompile(`at (http://\S+/fhir)`)

// startServer runs `carnet serve` on a free port over the store named by
// storeArgs and waits until it listens.
func startServer(t *testing.T, bin, logPath string, storeArgs ...string) *server {
	t.Helper()
	args := append([]string{"serve", "--insecure-open"}, storeArgs...)
	args = append(args, "--addr", "127.0.0.1:0")
	cmd := exec.Command(bin, args...)
	cmd.Env = crashEnv()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start carnet serve: %v", err)
	}
	s := &server{t: t, cmd: cmd, log: logPath, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	go func() { cmd.Wait(); close(s.done) }()
	t.Cleanup(func() { s.kill() })
	select {
	case s.base = <-addr:
	case <-s.done:
		t.Fatalf("carnet serve exited at start: %v\n%s", cmd.ProcessState, s.stderr())
	case <-time.After(30 * time.Second):
		t.Fatalf("carnet serve did not start in 30s\n%s", s.stderr())
	}
	return s
}

func (s *server) stderr() string {
	b, _ := os.ReadFile(s.log)
	return tail(b)
}

// kill SIGKILLs the server and waits until it is gone.
func (s *server) kill() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Kill()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.t.Errorf("carnet serve survived SIGKILL for 10s")
	}
}

// stop asks the server to shut down (SIGTERM) and waits.
func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		s.t.Errorf("carnet serve did not stop in 15s on SIGTERM")
		s.kill()
	}
}

type attempt struct {
	family, given string
	start, end    time.Time
	status        int    // 0: no answer (transport error)
	id            string // from a 201
	err           error
}

func crashPatient(family, given string) []byte {
	return []byte(`{"resourceType":"Patient","name":[{"family":"` + family + `","given":["` + given + `"]}],"gender":"female","birthDate":"1985-04-12",` +
		`"telecom":[{"system":"phone","value":"+33 6 11 22 33 44"},{"system":"email","value":"` + strings.ToLower(family) + `@example.fr"}],` +
		`"address":[{"line":["1 rue de la Paix"],"city":"Paris","postalCode":"75002"}],"identifier":[{"system":"urn:example:crash","value":"` + family + `"}]}`)
}

var locationRE = regexp.MustCompile(`/Patient/([A-Za-z0-9\-.]{1,64})/_history/1$`)

// hammer POSTs Patients from crashClients goroutines until ctx ends.
func hammer(ctx context.Context, client *http.Client, base string) [][]attempt {
	out := make([][]attempt, crashClients)
	var wg sync.WaitGroup
	for c := range crashClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; ctx.Err() == nil; seq++ {
				a := attempt{family: fmt.Sprintf("Crash%02dx%05d", c, seq), given: fmt.Sprintf("G%d", seq)}
				req, _ := http.NewRequestWithContext(ctx, "POST", base+"/Patient", bytes.NewReader(crashPatient(a.family, a.given)))
				req.Header.Set("Content-Type", "application/fhir+json")
				a.start = time.Now()
				resp, err := client.Do(req)
				if err == nil {
					var body []byte
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					a.status = resp.StatusCode
					if err == nil && resp.StatusCode == http.StatusCreated {
						a.id, a.err = createdID(resp.Header.Get("Location"), body)
					} else if err == nil {
						a.err = fmt.Errorf("status %d: %s", resp.StatusCode, tail(body))
					}
				}
				if err != nil {
					a.status, a.err = 0, err
				}
				a.end = time.Now()
				out[c] = append(out[c], a)
			}
		}()
	}
	wg.Wait()
	return out
}

// createdID is the id of a 201: from Location, checked against the body.
func createdID(location string, body []byte) (string, error) {
	m := locationRE.FindStringSubmatch(location)
	if m == nil {
		return "", fmt.Errorf("201 with Location %q", location)
	}
	var r struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.ID != m[1] {
		return "", fmt.Errorf("201 body id %q (%v) differs from Location %q", r.ID, err, location)
	}
	return m[1], nil
}

// checkPatient checks a Patient's JSON is whole: it parses, is a Patient
// with an id, meta.versionId and meta.lastUpdated, and a family name.
func checkPatient(data []byte) (id, family string, err error) {
	r, err := fhir.Parse(data)
	if err != nil {
		return "", "", err
	}
	if fhir.Type(r) != "Patient" || !fhir.ValidID(fhir.ID(r)) {
		return "", "", fmt.Errorf("not a Patient with an id: %.200s", data)
	}
	meta, _ := r["meta"].(map[string]any)
	v, _ := meta["versionId"].(string)
	lu, _ := meta["lastUpdated"].(string)
	if v == "" || !fhir.ValidInstant(lu) {
		return "", "", fmt.Errorf("Patient/%s: bad meta %v", fhir.ID(r), r["meta"])
	}
	names, _ := r["name"].([]any)
	if len(names) == 0 {
		return "", "", fmt.Errorf("Patient/%s: no name", fhir.ID(r))
	}
	n, _ := names[0].(map[string]any)
	family, _ = n["family"].(string)
	if family == "" {
		return "", "", fmt.Errorf("Patient/%s: no family", fhir.ID(r))
	}
	return fhir.ID(r), family, nil
}

func getJSON(ctx context.Context, client *http.Client, u string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// allPatients pages through Patient?_sort=_id following next links.
func allPatients(t *testing.T, ctx context.Context, client *http.Client, base string) (total int, byID map[string]string) {
	t.Helper()
	byID = map[string]string{}
	next := base + "/Patient?_count=500&_sort=_id"
	for pages := 0; next != ""; pages++ {
		if pages > 1000 {
			t.Fatal("paging does not end")
		}
		status, body, err := getJSON(ctx, client, next)
		if err != nil || status != 200 {
			t.Fatalf("GET %s: %d %v %s", next, status, err, tail(body))
		}
		var b struct {
			Total int `json:"total"`
			Link  []struct{ Relation, URL string }
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(body, &b); err != nil {
			t.Fatalf("search bundle: %v", err)
		}
		total = b.Total
		for _, e := range b.Entry {
			id, family, err := checkPatient(e.Resource)
			if err != nil {
				t.Errorf("half-written Patient in search results: %v", err)
				continue
			}
			if _, dup := byID[id]; dup {
				t.Errorf("Patient/%s twice in the paged search", id)
			}
			byID[id] = family
		}
		next = ""
		for _, l := range b.Link {
			if l.Relation == "next" {
				next = l.URL
			}
		}
	}
	if len(byID) != total {
		t.Errorf("paged search returned %d Patients, total says %d", len(byID), total)
	}
	return total, byID
}

func TestCrashRecovery(t *testing.T) {
	bin := buildCarnet(t, t.TempDir())
	backends := []struct {
		name  string
		store func(t *testing.T) []string // --data DIR | --db URL
		open  func(ctx context.Context, args []string) (store.Store, error)
	}{
		{"sqlite", func(t *testing.T) []string { return []string{"--data", t.TempDir()} },
			func(ctx context.Context, a []string) (store.Store, error) { return sqlite.Open(ctx, a[1]) }},
		{"postgres", func(t *testing.T) []string { return []string{"--db", storetest.PostgresURL(t)} },
			func(ctx context.Context, a []string) (store.Store, error) { return postgres.Open(ctx, a[1]) }},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
			defer cancel()
			storeArgs := b.store(t)
			runCarnet(t, bin, append([]string{"seed", "--patients", fmt.Sprint(crashSeeded)}, storeArgs...)...)
			logDir := t.TempDir()
			srv := startServer(t, bin, filepath.Join(logDir, "serve1.log"), storeArgs...)
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2 * crashClients, DisableCompression: true}}
			defer client.CloseIdleConnections()

			// load, then SIGKILL mid-load
			loadCtx, stopLoad := context.WithCancel(ctx)
			results := make(chan [][]attempt, 1)
			go func() { results <- hammer(loadCtx, client, srv.base) }()
			time.Sleep(crashLoad)
			killCall := time.Now()
			srv.kill()
			killed := time.Now() // the process is reaped: nothing started after this was written
			stopLoad()
			var all [][]attempt
			select {
			case all = <-results:
			case <-time.After(20 * time.Second):
				t.Fatal("clients did not stop after the kill")
			}
			client.CloseIdleConnections()

			acked := map[string]string{} // id -> family
			sent := map[string]bool{}    // families of requests that may have been written
			inFlight, atKill, attempts := 0, 0, 0
			for _, as := range all {
				for _, a := range as {
					attempts++
					switch {
					case a.status == http.StatusCreated && a.err == nil:
						acked[a.id] = a.family
					case a.status == 0 && a.start.Before(killed):
						// no answer, started before the process died: may or may not be written
						inFlight++
						sent[a.family] = true
						if a.start.Before(killCall) {
							atKill++
						}
					case a.status == 0:
						// started after the kill: cannot have been written
					default:
						t.Errorf("POST before the kill answered %d: %v", a.status, a.err)
					}
					if a.status == 0 && a.end.Before(killCall) {
						t.Errorf("POST failed while the server was up: %v", a.err)
					}
				}
			}
			t.Logf("%s: %d POSTs, %d acknowledged (201), %d in flight at SIGKILL, %d more sent before the process was gone",
				b.name, attempts, len(acked), atKill, inFlight-atKill)
			if len(acked) < 20 {
				t.Fatalf("only %d writes acknowledged in %v: the load did not run\n%s", len(acked), crashLoad, srv.stderr())
			}
			if atKill > crashClients {
				t.Errorf("%d requests in flight at the kill, more than %d clients", atKill, crashClients)
			}

			// restart on the same store
			srv2 := startServer(t, bin, filepath.Join(logDir, "serve2.log"), storeArgs...)

			// every acknowledged write is there, whole, as written
			ids := make(chan string)
			var wg sync.WaitGroup
			var bad atomic.Int64
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for id := range ids {
						status, body, err := getJSON(ctx, client, srv2.base+"/Patient/"+id)
						if err != nil || status != 200 {
							if bad.Add(1) <= 10 {
								t.Errorf("acknowledged Patient/%s lost after the crash: %d %v", id, status, err)
							}
							continue
						}
						gid, family, err := checkPatient(body)
						if err != nil || gid != id || family != acked[id] {
							if bad.Add(1) <= 10 {
								t.Errorf("acknowledged Patient/%s read back as %s family %q (want %q): %v", id, gid, family, acked[id], err)
							}
						}
					}
				}()
			}
			for id := range acked {
				ids <- id
			}
			close(ids)
			wg.Wait()
			if n := bad.Load(); n > 0 {
				t.Errorf("%d of %d acknowledged writes lost or altered", n, len(acked))
			}

			// nothing half-written; the count is bounded by what was sent
			// carnet seed also plants the canary patients.
			seededAll := crashSeeded + len(synth.New(synth.Config{Seed: 1, Patients: crashSeeded}).Facilities)*load.CanariesPerFacility
			total, byID := allPatients(t, ctx, client, srv2.base)
			if total < seededAll+len(acked) || total > seededAll+len(acked)+inFlight {
				t.Errorf("%d Patients after recovery, want %d seeded + %d acknowledged + at most %d in flight",
					total, seededAll, len(acked), inFlight)
			}
			extra, seeded := 0, 0
			for id, family := range byID {
				if !strings.HasPrefix(family, "Crash") {
					seeded++
					continue
				}
				if want, ok := acked[id]; ok {
					if family != want {
						t.Errorf("Patient/%s: family %q, want %q", id, family, want)
					}
					continue
				}
				extra++ // written but never acknowledged: must be one in flight
				if !sent[family] {
					t.Errorf("Patient/%s (%s) exists but was neither acknowledged nor in flight", id, family)
				}
			}
			t.Logf("%s: %d written but unacknowledged (in flight)", b.name, extra)
			if seeded != seededAll {
				t.Errorf("%d seeded Patients (canaries included) after recovery, want %d", seeded, seededAll)
			}
			if status, body, err := getJSON(ctx, client, srv2.base+"/Patient?_summary=count"); err != nil || status != 200 ||
				!bytes.Contains(body, []byte(fmt.Sprintf(`"total":%d`, total))) {
				t.Errorf("_summary=count after recovery: %d %v %s, want total %d", status, err, tail(body), total)
			}
			// the recovered server takes writes
			req, _ := http.NewRequestWithContext(ctx, "POST", srv2.base+"/Patient", bytes.NewReader(crashPatient("Aftercrash", "A")))
			req.Header.Set("Content-Type", "application/fhir+json")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("POST after recovery: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("POST after recovery: %d", resp.StatusCode)
			}
			srv2.stop()
			client.CloseIdleConnections()

			// the store itself agrees, and reopens after a clean stop
			st, err := b.open(ctx, storeArgs)
			if err != nil {
				t.Fatalf("reopen the store: %v", err)
			}
			defer st.Close()
			stats, err := st.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if stats["Patient"] != total+1 {
				t.Errorf("Stats: %d Patients, want %d", stats["Patient"], total+1)
			}
		})
	}
}
