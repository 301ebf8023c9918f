package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Goals of the audit log: verifying it, and appending to it under load.
const (
	auditVerifyGoal = 1_000_000 // entries/s of carnet audit verify
	auditAppendGoal = 50_000    // appends/s of BenchmarkAppend
)

// auditVerifyResult is one carnet audit verify of a store.
type auditVerifyResult struct {
	backend     string
	entries     int64
	checkpoints int64
	secs        float64 // as printed by carnet audit verify (2 decimals)
	err         string  // non-zero exit, TAMPERED, unreadable output
}

// rate is entries per second; secs is printed rounded to 0.01s, so a
// verify that printed 0.00s counts as 0.005s (and the rate as a lower bound).
func (v *auditVerifyResult) rate() (float64, bool) {
	if v.secs < 0.005 {
		return float64(v.entries) / 0.005, false
	}
	return float64(v.entries) / v.secs, true
}

func (v *auditVerifyResult) line() string {
	if v.err != "" {
		return fmt.Sprintf("audit verify (%s): ERROR: %s", v.backend, v.err)
	}
	r, exact := v.rate()
	rs := thousands(int64(r))
	if !exact {
		rs = ">= " + rs
	}
	s := fmt.Sprintf("audit verify (%s): %s entries in %.2f s = %s entries/s (goal >= %s/s)",
		v.backend, thousands(v.entries), v.secs, rs, thousands(auditVerifyGoal))
	if exact && r < auditVerifyGoal {
		s += " BELOW GOAL"
	}
	return s + fmt.Sprintf("; %s checkpoints verified", thousands(v.checkpoints))
}

// auditBenchResult is the go test BenchmarkAppend run.
type auditBenchResult struct {
	appends float64 // appends/s
	err     string
	skipped string // why it did not run
}

func (b *auditBenchResult) line() string {
	switch {
	case b.skipped != "":
		return "BenchmarkAppend: not run (" + b.skipped + ")"
	case b.err != "":
		return "BenchmarkAppend: ERROR: " + b.err
	}
	s := fmt.Sprintf("BenchmarkAppend (1,024 concurrent appends on SQLite): %s appends/s (goal >= %s/s)", thousands(int64(b.appends)), thousands(auditAppendGoal))
	if b.appends < auditAppendGoal {
		s += " BELOW GOAL"
	}
	return s
}

var (
	verifyIntactRE = regexp.MustCompile(`(?m)^intact: ([0-9]+) entries, ([0-9]+) checkpoints verified\b.* in ([0-9]+(?:\.[0-9]+)?)s\s*$`)
	verifyBadRE    = regexp.MustCompile(`(?m)^TAMPERED:.*$`)
	appendsRE      = regexp.MustCompile(`(?m)^BenchmarkAppend\S*\s.*?\s([0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?) appends/s\b`)
)

// parseVerify reads the stdout of carnet audit verify: entries, checkpoints
// and the seconds it printed; a TAMPERED line or no intact line is an error.
func parseVerify(out string) (entries, checkpoints int64, secs float64, err error) {
	if m := verifyBadRE.FindString(out); m != "" {
		return 0, 0, 0, errors.New(strings.TrimSpace(m))
	}
	m := verifyIntactRE.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, 0, fmt.Errorf("no intact line in the output %q", strings.TrimSpace(out))
	}
	entries, _ = strconv.ParseInt(m[1], 10, 64)
	checkpoints, _ = strconv.ParseInt(m[2], 10, 64)
	secs, _ = strconv.ParseFloat(m[3], 64)
	return entries, checkpoints, secs, nil
}

// parseAppendBench finds the appends/s metric of BenchmarkAppend in go test
// -bench output (the last one when -count repeats it).
func parseAppendBench(out string) (float64, error) {
	ms := appendsRE.FindAllStringSubmatch(out, -1)
	if len(ms) == 0 {
		return 0, errors.New("no BenchmarkAppend line with appends/s in the output")
	}
	return strconv.ParseFloat(ms[len(ms)-1][1], 64)
}

// auditVerify runs carnet audit verify on st (no server running) and records
// the result; a failure is an error in the report, not of the run.
func (h *harness) auditVerify(ctx context.Context, st store) {
	fmt.Printf("bench: [%s] carnet audit verify --data %s\n", st.backend, st.dir)
	v := &auditVerifyResult{backend: st.backend}
	h.rep.auditVerify = append(h.rep.auditVerify, v)
	logPath := filepath.Join(h.work, "audit-verify-"+st.backend+".log")
	vctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(vctx, h.bin, "audit", "verify", "--data", st.dir)
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if logf, err := os.Create(logPath); err == nil {
		defer logf.Close()
		cmd.Stderr = logf // the progress bar
	}
	runErr := cmd.Run()
	out := stdout.String()
	os.WriteFile(logPath+".stdout", []byte(out), 0o644)
	entries, cps, secs, perr := parseVerify(out)
	switch {
	case perr != nil && strings.HasPrefix(perr.Error(), "TAMPERED"):
		v.err = perr.Error()
	case runErr != nil:
		v.err = oneLine(fmt.Sprintf("exit: %v; %s %s (log %s)", runErr, out, tailFile(logPath, 3), logPath))
	case perr != nil:
		v.err = perr.Error()
	default:
		v.entries, v.checkpoints, v.secs = entries, cps, secs
	}
	if v.err != "" {
		h.failed = true
	}
	fmt.Println("bench: " + v.line())
	h.save()
}

// goBench runs one Go benchmark from the module root (go test PKG -run XXX
// -bench ^NAME$ -benchtime T), its output logged to WORK/LOG, and returns
// the output. Without go on the PATH it says so in skipped (an error with
// CI=true). runErr is the benchmark's own failure, for the report; err
// stops the harness.
func (h *harness) goBench(ctx context.Context, what, pkg, name, benchtime, log string) (out, skipped, runErr string, err error) {
	if _, lerr := exec.LookPath("go"); lerr != nil {
		if inCI() {
			return "", "", "go not on PATH", fmt.Errorf("%s: go not on PATH", what)
		}
		return "", "go not on PATH", "", nil
	}
	fmt.Printf("bench: go test %s -run XXX -bench '^%s$' -benchtime %s\n", pkg, name, benchtime)
	logPath := filepath.Join(h.work, log)
	bctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	cmd := exec.Command("go", "test", pkg, "-run", "XXX", "-bench", "^"+name+"$", "-benchtime", benchtime)
	cmd.Dir = h.root
	_, rerr := runLogged(bctx, cmd, logPath, 0)
	if ctx.Err() != nil {
		return "", "", "", ctx.Err()
	}
	if rerr != nil {
		h.failed = true
		return "", "", shortErr(rerr), nil
	}
	b, rerr := os.ReadFile(logPath)
	if rerr != nil {
		return "", "", rerr.Error(), nil
	}
	return string(b), "", "", nil
}

// auditBench runs BenchmarkAppend of internal/audit from the module root.
func (h *harness) auditBench(ctx context.Context) error {
	b := &auditBenchResult{}
	h.rep.auditBench = b
	defer h.save()
	out, skipped, runErr, err := h.goBench(ctx, "audit benchmark", "./internal/audit/", "BenchmarkAppend", "2s", "audit-bench.log")
	b.skipped, b.err = skipped, runErr
	if err != nil || skipped != "" || runErr != "" {
		fmt.Println("bench: " + b.line())
		return err
	}
	if b.appends, err = parseAppendBench(out); err != nil {
		b.err = fmt.Sprintf("%v (log %s)", err, filepath.Join(h.work, "audit-bench.log"))
		h.failed = true
	}
	fmt.Println("bench: " + b.line())
	return nil
}

// oneLine squeezes s onto one line of at most 300 characters.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// auditMarkdown is the "Audit log" section.
func (r *report) auditMarkdown() string {
	var b strings.Builder
	b.WriteString("Every authenticated request appends one entry to the audit log (hash-chained, with signed checkpoints kept in the witness directory `DATA-witness`). ")
	fmt.Fprintf(&b, "**audit verify** is `carnet audit verify --data STORE` on the SQLite store after the authentication and guard comparisons (their last server stopped): the entries it checked over the seconds it printed (goal >= %s entries/s). ", thousands(auditVerifyGoal))
	fmt.Fprintf(&b, "**BenchmarkAppend** is `go test ./internal/audit/ -run XXX -bench '^BenchmarkAppend$' -benchtime 2s` (1,024 concurrent appends on SQLite; goal >= %s appends/s).\n\n", thousands(auditAppendGoal))
	for _, v := range r.auditVerify {
		b.WriteString("- " + v.line() + "\n")
	}
	if len(r.auditVerify) == 0 {
		b.WriteString("- audit verify: not run (it runs after the authentication or guard comparison on SQLite)\n")
	}
	for _, l := range r.auditAppendLines() {
		b.WriteString("- " + l + "\n")
	}
	if r.auditBench != nil {
		b.WriteString("- " + r.auditBench.line() + "\n")
	} else {
		b.WriteString("- BenchmarkAppend: not run (-audit-bench=false)\n")
	}
	return b.String()
}

// auditAppendLines give the audited request throughput during the auth runs:
// each authenticated request appends exactly one entry, so the auth median
// req/s of the Authentication cost table is the rate of appends.
func (r *report) auditAppendLines() []string {
	per := map[string][]string{}
	var order []string
	for _, s := range r.authSummaries() {
		if len(s.variant) == 0 {
			continue
		}
		if per[s.backend] == nil {
			order = append(order, s.backend)
		}
		per[s.backend] = append(per[s.backend], fmt.Sprintf("%s %d conn %s", s.workload, s.conc, rps(medianOf(s.variant, throughput))))
	}
	var out []string
	for _, be := range order {
		out = append(out, fmt.Sprintf("audited request throughput (%s, auth runs): appends/s = auth req/s of the Authentication cost table (one entry per authenticated request): %s appends/s (medians)",
			be, strings.Join(per[be], ", ")))
	}
	return out
}
