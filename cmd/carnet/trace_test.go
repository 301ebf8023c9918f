package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"carnet/internal/policy"
)

// call sends an authenticated request to the demo server (base ends in
// /fhir) and returns the status and body.
func call(t *testing.T, method, url, token, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// A demo group, ten approved exports of one clinic's patients by its
// admission clerk; five rows of one of them, as a French spreadsheet
// without ids: carnet incident trace names that export, its clerk, its
// approver and recipient. Rows read straight from the API match none.
func TestIncidentTraceCommand(t *testing.T) {
	data := filepath.Join(t.TempDir(), "demo")
	dir := t.TempDir()
	var ids []string
	var clerk, officer demoUser
	t.Run("session", func(t *testing.T) {
		base, _ := startCommand(t, "demo", "--data", data, "--patients", "400", "--addr", "127.0.0.1:0")
		root := strings.TrimSuffix(base, "/fhir")
		raw, _ := os.ReadFile(filepath.Join(data, "demo-users.json"))
		var users []demoUser
		json.Unmarshal(raw, &users)
		for _, u := range users {
			if slices.Contains(u.Roles, policy.AdmissionClerk) && clerk.Username == "" && len(u.Facilities) > 0 {
				clerk = u
			}
			if slices.Contains(u.Roles, policy.SecurityOfficer) && officer.Username == "" {
				officer = u
			}
		}
		ctok, stok := demoLogin(t, base, clerk, time.Now()), demoLogin(t, base, officer, time.Now())
		var exports [][]map[string]any
		seen := map[string]int{}
		for i := range 10 {
			st, b := call(t, "POST", root+"/export-requests", ctok, `{"facility":"`+clerk.Facilities[0]+`","types":"Patient",`+
				`"reason":"yearly vaccination recall campaign","recipient":"Mutuelle `+string(rune('A'+i))+`"}`)
			var req struct{ ID string }
			json.Unmarshal(b, &req)
			if st != 201 || req.ID == "" {
				t.Fatalf("request: %d %s", st, b)
			}
			if st, b := call(t, "POST", root+"/export-requests/"+req.ID+"/approve", stok, ""); st != 200 {
				t.Fatalf("approve: %d %s", st, b)
			}
			st, b = call(t, "GET", base+"/$export?_exportRequest="+req.ID, ctok, "")
			if st != 200 {
				t.Fatalf("export: %d %s", st, b)
			}
			var rows []map[string]any
			for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
				var m map[string]any
				if err := json.Unmarshal(line, &m); err != nil {
					t.Fatal(err)
				}
				rows = append(rows, m)
				seen[m["id"].(string)]++
			}
			ids, exports = append(ids, req.ID), append(exports, rows)
		}
		// Five real rows of export 6 (canaries are in one export only), to
		// a spreadsheet: French headers, no id, no e-mail, columns moved.
		var b bytes.Buffer
		cw := csv.NewWriter(&b)
		cw.Comma = ';'
		cw.Write([]string{"Ville", "Nom", "Téléphone", "Date de naissance", "Adresse", "Prénom"})
		n := 0
		var plain [][]byte
		for _, r := range exports[6] {
			if seen[r["id"].(string)] != 10 || n == 5 {
				continue
			}
			n++
			name := r["name"].([]any)[0].(map[string]any)
			addr := r["address"].([]any)[0].(map[string]any)
			var phones []string
			tel, _ := r["telecom"].([]any)
			for _, x := range tel {
				if m := x.(map[string]any); m["system"] == "phone" {
					phones = append(phones, m["value"].(string))
				}
			}
			cw.Write([]string{addr["city"].(string), name["family"].(string), strings.Join(phones, " / "), r["birthDate"].(string),
				addr["line"].([]any)[0].(string), name["given"].([]any)[0].(string)})
			// The same patient as the API shows it, for the sample from no export.
			st, body := call(t, "GET", base+"/Patient/"+r["id"].(string), ctok, "")
			if st != 200 {
				t.Fatalf("read: %d %s", st, body)
			}
			plain = append(plain, body)
		}
		cw.Flush()
		if n != 5 {
			t.Fatalf("only %d real rows in the export", n)
		}
		os.WriteFile(filepath.Join(dir, "leak.csv"), b.Bytes(), 0o600)
		os.WriteFile(filepath.Join(dir, "plain.ndjson"), bytes.Join(plain, []byte("\n")), 0o600)
	})

	start := time.Now()
	code, out, errs := runCmd(t, "incident", "trace", "--data", data, filepath.Join(dir, "leak.csv"))
	el := time.Since(start)
	if code != 0 || !strings.Contains(out, "MATCH: export "+ids[6]+" (high)") || !strings.Contains(out, "by "+clerk.Username) ||
		!strings.Contains(out, "by "+officer.Username) || !strings.Contains(out, "Mutuelle G") || !strings.Contains(out, "10 exports weighed") {
		t.Fatalf("trace: exit %d\n%s\n%s", code, out, errs)
	}
	t.Logf("carnet incident trace, 5 CSV rows among 10 exports: %v\n%s", el.Round(time.Millisecond), out)

	code, out, errs = runCmd(t, "incident", "trace", filepath.Join(dir, "leak.csv"), "--data", data, "--format", "json")
	var rep struct {
		Matched bool
		Best    []struct {
			Export     string
			Requester  string
			Confidence float64
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil || !rep.Matched || rep.Best[0].Export != ids[6] ||
		rep.Best[0].Requester != clerk.Username || rep.Best[0].Confidence < 0.99 {
		t.Fatalf("trace --format json: exit %d %v\n%s\n%s", code, err, out, errs)
	}

	code, out, _ = runCmd(t, "incident", "trace", "--data", data, filepath.Join(dir, "plain.ndjson"))
	if code != 0 || !strings.Contains(out, "NO MATCH") || !strings.Contains(out, ids[0]) {
		t.Fatalf("rows from the API: exit %d\n%s", code, out)
	}
	if code, _, errs := runCmd(t, "incident", "trace", "--data", data); code != 2 || !strings.Contains(errs, "exactly one sample") {
		t.Errorf("no file: %d %s", code, errs)
	}
	os.WriteFile(filepath.Join(dir, "junk.txt"), []byte("nothing,to,see\n1,2,3\n"), 0o600)
	if code, _, errs := runCmd(t, "incident", "trace", "--data", data, filepath.Join(dir, "junk.txt")); code != 1 || !strings.Contains(errs, "no column") {
		t.Errorf("junk sample: %d %s", code, errs)
	}
}
