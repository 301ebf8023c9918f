package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"carnet/internal/sim"
)

// runSim is carnet sim: the attack replay (issue 6).
func runSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("sim", "[--patients N] [--scenarios S1,S1b,...] [--days 30] [--staff N] [--db URL] [--out bench/ATTACKS.md]", stderr)
	patients := fs.Int("patients", 758912, "synthetic patients (the seed breach: 758912)")
	seed := fs.Int64("seed", 1, "random seed: the same seed gives the same group and the same choices")
	scenarios := fs.String("scenarios", "", "comma-separated scenarios to run, among "+strings.Join(sim.IDs(), ",")+" (default: all)")
	days := fs.Int("days", 30, "measured days of normal work")
	warmup := fs.Int("warmup", 7, "days of normal work before the measured ones (not counted)")
	staff := fs.Int("staff", 0, "staff members taking part in normal work, the same share of each facility and role (0: all, about 2,000)")
	db := fs.String("db", "", "PostgreSQL URL of an EMPTY database to build the world in (default: SQLite in a temporary folder)")
	dir := fs.String("work-dir", "", "folder for the SQLite store, its key file and the audit witness (default: a temporary folder, removed afterwards)")
	out := fs.String("out", "bench/ATTACKS.md", "Markdown report to write (\"\": none)")
	noGuard := fs.Bool("insecure-no-guard", false, "serve WITHOUT the exfiltration guard: the baseline that shows what the guard stops")
	arrivals := fs.Float64("arrivals", 10, "normal work: arrivals per working admission clerk and weekday")
	onCall := fs.Float64("on-call", 3, "normal work: mean calls per on-call night about other physicians' inpatients, each a break-the-glass (0: no on-call)")
	mass := fs.Int("mass-casualties", 80, "normal work: casualties arriving at the biggest clinic on one afternoon (0: none)")
	conc := fs.Int("concurrency", 16, "normal work: requests in flight at most")
	logFile := fs.String("log", "", "write the server's structured log (guard alerts, suspensions) to this file")
	appendOut := fs.Bool("append", false, "append the report to --out instead of replacing it (e.g. normal work on a smaller world after the attacks at full size)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *patients < 100 || *days < 1 || *warmup < 0 || *staff < 0 {
		return fmt.Errorf("--patients must be >= 100, --days >= 1, --warmup and --staff >= 0")
	}
	var ids []string
	for _, s := range strings.Split(*scenarios, ",") {
		if s = strings.TrimSpace(s); s != "" {
			ids = append(ids, s)
		}
	}
	for _, id := range ids {
		if !containsFold(sim.IDs(), id) {
			return fmt.Errorf("unknown scenario %q (want %s)", id, strings.Join(sim.IDs(), ", "))
		}
	}
	for i, id := range ids {
		for _, known := range sim.IDs() {
			if strings.EqualFold(id, known) {
				ids[i] = known
			}
		}
	}
	logger := slog.New(slog.DiscardHandler)
	if *logFile != "" {
		f, err := os.Create(*logFile)
		if err != nil {
			return err
		}
		defer f.Close()
		logger = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if *onCall == 0 {
		*onCall = -1
	}
	if *mass == 0 {
		*mass = -1
	}
	started := time.Now()
	w, err := sim.Build(ctx, sim.WorldConfig{Patients: *patients, Seed: *seed, Staff: *staff, DB: *db, Dir: *dir, Logger: logger, Progress: stderr})
	if err != nil {
		return err
	}
	defer w.Close()
	r := sim.NewRunner(w, sim.Options{Scenarios: ids, NoGuard: *noGuard, Progress: stderr,
		Work: sim.WorkOptions{Days: *days, Warmup: *warmup, Arrivals: *arrivals, OnCallCalls: *onCall, MassCasualties: *mass, Concurrency: *conc}})
	rep, err := r.Run(ctx)
	if err != nil {
		return err
	}
	working := 0
	for _, m := range w.Staff {
		if m.Works {
			working++
		}
	}
	meta := sim.Meta{Command: "carnet sim " + quoteArgs(args), Machine: machine(), Date: started, Version: versionString() + dirty(),
		Patients: *patients, Staff: len(w.Staff), Working: working, Backend: w.Store.Backend(), LoadTime: w.LoadTime, Seed: *seed}
	fmt.Fprintf(stdout, "carnet sim: %d patients, %d staff; %s\n", *patients, len(w.Staff), strings.TrimSpace(meta.Machine))
	rep.Summary(stdout)
	if *out != "" {
		if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
			return err
		}
		mode := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
		if *appendOut {
			mode = os.O_CREATE | os.O_WRONLY | os.O_APPEND
		}
		f, err := os.OpenFile(*out, mode, 0o644)
		if err != nil {
			return err
		}
		bw := bufio.NewWriter(f)
		if *appendOut {
			if st, err := f.Stat(); err == nil && st.Size() > 0 {
				fmt.Fprint(bw, "\n---\n\n")
			}
		}
		rep.Markdown(bw, meta)
		if err := bw.Flush(); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "report: %s\n", *out)
	}
	return nil
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func quoteArgs(args []string) string {
	var parts []string
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'$\\*?;&|<>()") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// dirty says when the binary was built from a working tree with
// uncommitted changes.
func dirty() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.modified" && s.Value == "true" {
				return " + uncommitted changes"
			}
		}
	}
	return ""
}

// machine describes the CPU, cores, memory and Go of this machine.
func machine() string {
	cpu := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "MemTotal:") {
				if kb, err := strconv.Atoi(strings.Fields(line)[1]); err == nil {
					mem = fmt.Sprintf(", %.0f GiB RAM", float64(kb)/(1<<20))
				}
			}
		}
	}
	if cpu == "" {
		cpu = runtime.GOARCH
	}
	return fmt.Sprintf("%s, %d cores%s, %s %s/%s", cpu, runtime.NumCPU(), mem, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
