package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"carnet/bench/loadgen"
)

type row struct {
	workload string
	backend  string
	conc     int
	res      *loadgen.Result
	note     string // why there is no result
}

type report struct {
	machine  [][2]string
	command  string
	config   [][2]string
	rows     []row
	authRows []abRow
	authOn   bool // the authentication comparison was asked for
	sealRows []abRow
	sealOn   bool // the encryption at rest comparison was asked for
	// guardRows: the guard cost comparison (guardOn: asked for).
	guardRows []abRow
	guardOn   bool
	// sealSeeds: the seeds of the sealed bench store and of its clear twin.
	sealSeeds []sealSeeds
	auditOn   bool // the audit log section is wanted
	// auditVerify: carnet audit verify after the authentication comparison;
	// auditBench: BenchmarkAppend (nil: not run).
	auditVerify []*auditVerifyResult
	auditBench  *auditBenchResult
	// webBench: BenchmarkChartRender (nil: not run).
	webBench *webBenchResult
	seeds    []seedResult
	notes    []string
}

var backendOrder = map[string]int{"sqlite": 0, "postgres": 1, "peer": 2}

func workloadIndex(name string) int {
	for i, w := range workloads {
		if w.name == name {
			return i
		}
	}
	return len(workloads)
}

// machineInfo describes the host for the report.
func machineInfo(root string) [][2]string {
	var m [][2]string
	add := func(k, v string) { m = append(m, [2]string{k, v}) }
	add("CPUs (nproc)", fmt.Sprint(runtime.NumCPU()))
	add("CPU model", firstField("/proc/cpuinfo", "model name"))
	if mem := firstField("/proc/meminfo", "MemTotal"); mem != "" {
		var kb int64
		fmt.Sscanf(mem, "%d", &kb)
		add("memory", fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20)))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		add("kernel", runtime.GOOS+" "+strings.TrimSpace(string(b)))
	}
	gv, err := output(root, "go", "version")
	if err != nil {
		gv = runtime.Version()
	}
	add("Go", gv)
	add("date", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	commit, err := output(root, "git", "rev-parse", "--short", "HEAD")
	if err != nil {
		commit = "none (no commit yet)"
	} else if st, err := output(root, "git", "status", "--porcelain", "--untracked-files=no"); err == nil && st != "" {
		commit += " (with uncommitted changes)"
	}
	add("git commit", commit)
	if nv, err := output(root, "node", "--version"); err == nil {
		add("node (peer)", nv)
	}
	return m
}

func firstField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func rps(v float64) string {
	if v < 100 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func sizeStr(n int64) string {
	switch {
	case n <= 0:
		return "n/a"
	case n < 1<<20:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
}

func thousands(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "n/a"
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// peerRPS finds the peer's throughput for the same cell.
func (r *report) peerRPS(workload string, conc int) (float64, bool) {
	for _, x := range r.rows {
		if x.backend == "peer" && x.workload == workload && x.conc == conc && x.res != nil && x.res.Throughput > 0 {
			return x.res.Throughput, true
		}
	}
	return 0, false
}

var tableHeader = []string{"workload", "backend", "concurrency", "req/s", "p50 ms", "p99 ms", "errors", "carnet/peer req/s"}

// cells renders one row's columns.
func (r *report) cells(x row) []string {
	c := []string{x.workload, x.backend, fmt.Sprint(x.conc)}
	if x.res == nil {
		return append(c, "-", "-", "-", x.note, "")
	}
	if x.res.Requests == 0 {
		note := "no response in window"
		if x.res.Unfinished > 0 {
			note = fmt.Sprintf("no response in window (%d unfinished)", x.res.Unfinished)
		}
		if x.res.Transport > 0 {
			note += ", " + x.res.ErrorSummary()
		}
		return append(c, "0", "-", "-", note, "")
	}
	ratio := ""
	if x.backend != "peer" {
		if p, ok := r.peerRPS(x.workload, x.conc); ok {
			ratio = fmt.Sprintf("%.2f", x.res.Throughput/p)
		}
	}
	return append(c, rps(x.res.Throughput), ms(x.res.P50), ms(x.res.P99), errSummary(x.res), ratio)
}

// errSummary renders a result's errors with their share of all requests.
func errSummary(res *loadgen.Result) string {
	errs := res.ErrorSummary()
	if res.Requests+res.Transport > 0 && res.Errors > 0 {
		errs = fmt.Sprintf("%s (%.1f%%)", errs, 100*float64(res.Errors)/float64(res.Requests+res.Transport))
	}
	return errs
}

func (r *report) sortedRows() []row {
	rows := slices.Clone(r.rows)
	slices.SortStableFunc(rows, func(a, b row) int {
		if d := workloadIndex(a.workload) - workloadIndex(b.workload); d != 0 {
			return d
		}
		if d := a.conc - b.conc; d != 0 {
			return d
		}
		return backendOrder[a.backend] - backendOrder[b.backend]
	})
	return rows
}

// mdTable renders a markdown table whose first left columns are text
// (left-aligned) and the others numbers (right-aligned).
func mdTable(header []string, rows [][]string, left int) string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(header, " | ") + " |\n|")
	for i := range header {
		if i < left {
			b.WriteString(" --- |")
		} else {
			b.WriteString(" ---: |")
		}
	}
	b.WriteString("\n")
	for _, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}

func (r *report) seedTable() string {
	var rows [][]string
	for _, s := range r.seeds {
		res, secs, rate, size := thousands(s.resources), fmt.Sprintf("%.1f", s.wall.Seconds()), "", sizeStr(s.size)
		if s.wall > 0 {
			rate = fmt.Sprintf("%.0f", float64(s.patients)/s.wall.Seconds())
		}
		if s.err != "" {
			secs, rate, size = "failed", "", s.err
		}
		rows = append(rows, []string{s.phase, s.backend, thousands(int64(s.patients)), res, secs, rate, size})
	}
	return mdTable([]string{"phase", "store", "patients", "resources", "seconds", "patients/s", "size on disk"}, rows, 2)
}

func (r *report) markdown() string {
	var b strings.Builder
	b.WriteString("# Carnet benchmark results\n\n")
	b.WriteString("Generated by `go run ./bench`; see bench/README.md for what each workload does and how to read the numbers.\n\n")
	b.WriteString("## Machine\n\n")
	for _, kv := range r.machine {
		fmt.Fprintf(&b, "- %s: %s\n", kv[0], kv[1])
	}
	b.WriteString("\n## Command\n\n```\n" + r.command + "\n```\n\n")
	for _, kv := range r.config {
		fmt.Fprintf(&b, "- %s: %s\n", kv[0], kv[1])
	}
	b.WriteString("\n## Workloads\n\n")
	b.WriteString("Closed loop: each of `concurrency` keep-alive connections sends one request, waits for the whole response, sends the next. ")
	b.WriteString("req/s counts every response in the measured window (after the warm-up); latencies are per request, client side. ")
	b.WriteString("carnet/peer is Carnet's req/s divided by the peer's for the same workload and concurrency (> 1: Carnet is faster). ")
	b.WriteString("The load generator runs on the same cores as the server.\n\n")
	var rows [][]string
	for _, x := range r.sortedRows() {
		rows = append(rows, r.cells(x))
	}
	b.WriteString(mdTable(tableHeader, rows, 2))
	if r.authOn || len(r.authRows) > 0 {
		b.WriteString("\n## Authentication cost\n\n")
		b.WriteString(r.authMarkdown())
	}
	if r.guardOn || len(r.guardRows) > 0 {
		b.WriteString("\n## Guard cost\n\n")
		b.WriteString(r.guardMarkdown())
	}
	if r.authOn || r.guardOn || len(r.authRows) > 0 || len(r.guardRows) > 0 {
		b.WriteString("\n## Secured read vs the peer\n\n")
		b.WriteString(r.securedPeerMarkdown())
	}
	if r.sealOn || len(r.sealRows) > 0 || len(r.sealSeeds) > 0 {
		b.WriteString("\n## Encryption at rest cost\n\n")
		b.WriteString(r.sealMarkdown())
	}
	if r.auditOn || len(r.auditVerify) > 0 || r.auditBench != nil {
		b.WriteString("\n## Audit log\n\n")
		b.WriteString(r.auditMarkdown())
	}
	if r.webBench != nil {
		b.WriteString("\n## Web pages\n\n")
		b.WriteString(r.webMarkdown())
	}
	b.WriteString("\n## Loading\n\n")
	b.WriteString("Wall time of `carnet seed` into an empty store (bench: the store the workloads ran on, sealed at rest; clear: its twin seeded with `--insecure-clear` for the encryption at rest comparison; load: the big load, sealed), and the store's size on disk afterwards (SQLite: all files in the data folder; PostgreSQL: pg_database_size). The peer row is its HTTP seed (POSTs, 8 connections).\n\n")
	b.WriteString(r.seedTable())
	if len(r.notes) > 0 {
		b.WriteString("\n## Notes\n\n")
		for _, n := range r.notes {
			b.WriteString("- " + n + "\n")
		}
	}
	return b.String()
}

func (r *report) write(path string) error {
	if path == "" {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(r.markdown()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// printRow prints one result line to stdout as the run goes.
var colWidths = []int{20, 11, 5, 9, 8, 8, 18, 8}

func printHeader() {
	printCols([]string{"workload", "backend", "conc", "req/s", "p50 ms", "p99 ms", "errors", "vs peer"})
}

func printCols(c []string) {
	var b strings.Builder
	for i, s := range c {
		w := colWidths[min(i, len(colWidths)-1)]
		if i < 2 || i == 6 {
			fmt.Fprintf(&b, "%-*s ", w, s)
		} else {
			fmt.Fprintf(&b, "%*s ", w, s)
		}
	}
	fmt.Println(strings.TrimRight(b.String(), " "))
}

// ---- A/B comparisons -----------------------------------------------------

// comparison describes an A/B comparison (authentication, encryption at
// rest): the same workloads on the same data in a baseline mode and in the
// mode it measures, alternating, several runs each; the report gives the
// median req/s of each mode and their ratio variant/base.
type comparison struct {
	tag        string                   // console suffix of the workload: "read (phys)"
	base       string                   // baseline mode, e.g. modeOpen
	variant    string                   // measured mode, e.g. modeAuth
	goal       float64                  // the variant/base ratio it should reach
	seedOffset uint64                   // added to -seed for the request sequences
	label      func(name string) string // workload name in the report
	index      func(name string) int    // workload order in the report
}

// abRow is one run of a workload in one mode of a comparison.
type abRow struct {
	workload string
	backend  string
	conc     int
	mode     string // the comparison's base or variant
	rep      int
	res      *loadgen.Result
	note     string // why there is no result
}

// abCells renders one run for the console.
func abCells(c *comparison, x abRow, reps int) []string {
	cols := []string{x.workload + " (" + c.tag + ")", x.backend + "/" + x.mode, fmt.Sprint(x.conc)}
	run := fmt.Sprintf("run %d/%d", x.rep+1, reps)
	if x.res == nil {
		return append(cols, "-", "-", "-", x.note, run)
	}
	return append(cols, rps(x.res.Throughput), ms(x.res.P50), ms(x.res.P99), errSummary(x.res), run)
}

// abSummary gathers the runs of one workload, backend and concurrency of a
// comparison.
type abSummary struct {
	cmp      *comparison
	workload string
	backend  string
	conc     int
	base     []*loadgen.Result // in repetition order
	variant  []*loadgen.Result
	missing  []string // notes of runs without a result
}

func summaries(c *comparison, rows []abRow) []*abSummary {
	type key struct {
		w, b string
		c    int
	}
	idx := map[key]*abSummary{}
	var out []*abSummary
	for _, x := range rows {
		k := key{x.workload, x.backend, x.conc}
		s := idx[k]
		if s == nil {
			s = &abSummary{cmp: c, workload: x.workload, backend: x.backend, conc: x.conc}
			idx[k] = s
			out = append(out, s)
		}
		switch {
		case x.res == nil:
			s.missing = append(s.missing, x.mode+": "+x.note)
		case x.mode == c.base:
			s.base = append(s.base, x.res)
		default:
			s.variant = append(s.variant, x.res)
		}
	}
	slices.SortStableFunc(out, func(a, b *abSummary) int {
		if d := c.index(a.workload) - c.index(b.workload); d != 0 {
			return d
		}
		if d := backendOrder[a.backend] - backendOrder[b.backend]; d != 0 {
			return d
		}
		return a.conc - b.conc
	})
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func medianOf(rs []*loadgen.Result, f func(*loadgen.Result) float64) float64 {
	v := make([]float64, len(rs))
	for i, x := range rs {
		v[i] = f(x)
	}
	return median(v)
}

func throughput(x *loadgen.Result) float64 { return x.Throughput }
func p99ms(x *loadgen.Result) float64      { return float64(x.P99) }

// ratio is the variant's median req/s over the base's.
func (s *abSummary) ratio() (base, variant, ratio float64, ok bool) {
	if len(s.base) == 0 || len(s.variant) == 0 {
		return 0, 0, 0, false
	}
	base, variant = medianOf(s.base, throughput), medianOf(s.variant, throughput)
	if base <= 0 {
		return base, variant, 0, false
	}
	return base, variant, variant / base, true
}

// ratioStr renders a ratio, flagged when under goal.
func ratioStr(v, goal float64) string {
	s := fmt.Sprintf("%.2f", v)
	if v < goal {
		s += " (< " + fmt.Sprintf("%.2f", goal) + ")"
	}
	return s
}

// line is the console summary of s.
func (s *abSummary) line() string {
	c := s.cmp
	base, variant, ratio, ok := s.ratio()
	head := fmt.Sprintf("[%s] %s, %d conn:", s.backend, c.label(s.workload), s.conc)
	if !ok {
		return head + " no ratio (" + strings.Join(s.missing, "; ") + ")"
	}
	return fmt.Sprintf("%s %s %s req/s, %s %s req/s, %s/%s %s (medians of %d and %d runs; goal >= %.2f)",
		head, c.base, rps(base), c.variant, rps(variant), c.variant, c.base, ratioStr(ratio, c.goal), len(s.base), len(s.variant), c.goal)
}

// merged adds up the counts of several runs (for the errors column).
func merged(rs []*loadgen.Result) *loadgen.Result {
	m := &loadgen.Result{ByStatus: map[int]int64{}}
	for _, x := range rs {
		m.Requests += x.Requests
		m.Errors += x.Errors
		m.Transport += x.Transport
		m.BodyBytes += x.BodyBytes
		for c, n := range x.ByStatus {
			m.ByStatus[c] += n
		}
	}
	return m
}

// abHeader is the header of a comparison's table.
func abHeader(c *comparison) []string {
	b, v := c.base, c.variant
	return []string{"workload", "backend", "concurrency", b + " req/s", v + " req/s", v + "/" + b,
		b + " p99 ms", v + " p99 ms", "errors " + b + " / " + v, "bytes/resp " + b + " / " + v, "runs req/s: " + b + "; " + v}
}

// abTable renders a comparison's summaries: medians of each mode, the
// ratio, errors and sizes of all runs, and every run's req/s.
func abTable(c *comparison, sums []*abSummary) string {
	cell := func(rs []*loadgen.Result) string {
		if len(rs) == 0 {
			return "-"
		}
		return rps(medianOf(rs, throughput))
	}
	p99 := func(rs []*loadgen.Result) string {
		if len(rs) == 0 {
			return "-"
		}
		return ms(time.Duration(medianOf(rs, p99ms)))
	}
	errs := func(rs []*loadgen.Result) string {
		if len(rs) == 0 {
			return "-"
		}
		return errSummary(merged(rs))
	}
	size := func(rs []*loadgen.Result) string {
		m := merged(rs)
		if m.Requests == 0 {
			return "-"
		}
		return fmt.Sprint(m.BodyBytes / m.Requests)
	}
	runs := func(rs []*loadgen.Result) string {
		if len(rs) == 0 {
			return "-"
		}
		var p []string
		for _, x := range rs {
			p = append(p, rps(x.Throughput))
		}
		return strings.Join(p, ", ")
	}
	var rows [][]string
	for _, s := range sums {
		ratioCell := "-"
		if _, _, ratio, ok := s.ratio(); ok {
			ratioCell = "**" + ratioStr(ratio, c.goal) + "**"
		}
		runsCell := runs(s.base) + "; " + runs(s.variant)
		if len(s.missing) > 0 {
			runsCell += " (" + strings.Join(s.missing, "; ") + ")"
		}
		rows = append(rows, []string{c.label(s.workload), s.backend, fmt.Sprint(s.conc),
			cell(s.base), cell(s.variant), ratioCell, p99(s.base), p99(s.variant),
			errs(s.base) + " / " + errs(s.variant), size(s.base) + " / " + size(s.variant), runsCell})
	}
	if len(rows) == 0 {
		return "Not measured (see the notes).\n"
	}
	return mdTable(abHeader(c), rows, 2)
}

// ---- authentication comparison --------------------------------------------

func authWorkloadIndex(name string) int {
	for i, w := range authWorkloads {
		if w.name == name {
			return i
		}
	}
	return len(authWorkloads)
}

func authLabel(name string) string {
	if w, ok := authWorkloadByName(name); ok {
		return w.label
	}
	return name
}

func (r *report) authSummaries() []*abSummary { return summaries(authCmp, r.authRows) }

func (r *report) authMarkdown() string {
	var b strings.Builder
	b.WriteString("The physician-scoped workloads, each run against `carnet serve --insecure-open` (**open**: no authentication, no access control) ")
	b.WriteString("and against the normal `carnet serve` with the bearer token of the first demo physician (**auth**: token check, role and care-relationship decisions, searches scoped to his patients, the exfiltration guard, a durable audit entry per request; his session steps up once and the guard is primed before the measured cells, see Guard cost), ")
	b.WriteString("on the same store with the same requests: reads of his patients, family searches of his patients' names, Observation creates for his patients. ")
	b.WriteString("The modes alternate (auth, open, open, auth, ...), one server at a time. ")
	fmt.Fprintf(&b, "req/s and p99 are medians over the runs; **auth/open** is the ratio of the median req/s (goal >= %.2f). ", authCmp.goal)
	b.WriteString("A family search finds every patient of the name when open (up to 20 per page) but only his with the token: see bytes/resp.\n\n")
	b.WriteString(abTable(authCmp, r.authSummaries()))
	return b.String()
}
