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
	machine [][2]string
	command string
	config  [][2]string
	rows    []row
	seeds   []seedResult
	notes   []string
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
	errs := x.res.ErrorSummary()
	if x.res.Requests+x.res.Transport > 0 && x.res.Errors > 0 {
		errs = fmt.Sprintf("%s (%.1f%%)", errs, 100*float64(x.res.Errors)/float64(x.res.Requests+x.res.Transport))
	}
	return append(c, rps(x.res.Throughput), ms(x.res.P50), ms(x.res.P99), errs, ratio)
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
	b.WriteString("\n## Loading\n\n")
	b.WriteString("Wall time of `carnet seed` into an empty store (bench: the store the workloads ran on; load: the big load), and the store's size on disk afterwards (SQLite: all files in the data folder; PostgreSQL: pg_database_size). The peer row is its HTTP seed (POSTs, 8 connections).\n\n")
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
var colWidths = []int{17, 9, 5, 9, 8, 8, 18, 8}

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
