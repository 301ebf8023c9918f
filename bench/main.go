// Command bench is Carnet's benchmark harness: it builds the server, seeds
// each storage backend, measures read, search and create workloads at
// several concurrencies against Carnet (on carnet serve --insecure-open) and
// against a peer FHIR engine, compares physician-scoped workloads with and
// without authentication on the same store, and with and without the
// exfiltration guard, sets the fully secured read beside the peer's, compares
// read and search on the sealed store (encryption at rest) with a twin store
// seeded in clear,
// verifies the audit log the authenticated requests wrote (carnet audit
// verify) and benchmarks its appends, times a big load, and writes
// bench/RESULTS.md.
//
//	go run ./bench                                               # full run
//	go run ./bench -patients 5000 -duration 3s -load-patients 0  # quick
//
// See bench/README.md.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"carnet/bench/loadgen"
)

type options struct {
	backends     []string
	patients     int
	seed         int64
	conc         []int
	duration     time.Duration
	warmup       time.Duration
	workloads    []workload
	peer         bool
	peerDir      string
	peerPatients int
	loadPatients int
	loadPostgres bool
	authWork     []authWorkload
	authConc     []int
	authReps     int
	sealWork     []workload
	sealConc     []int
	sealReps     int
	guardWork    []authWorkload
	guardConc    []int
	guardReps    int
	auditBench   bool
	webBench     bool
	out          string
	pg           string
	pgDB         string
	carnetBin    string
	workdir      string
	keep         bool
}

func main() {
	var o options
	var backends, conc, wls, authWls, authConc, sealWls, sealConc string
	var guardWls, guardConc string
	flag.StringVar(&backends, "backends", "sqlite,postgres", "Carnet storage backends to measure, comma-separated (sqlite, postgres)")
	flag.IntVar(&o.patients, "patients", 20000, "patients seeded for the workloads (each with ~6-8 clinical resources)")
	flag.Int64Var(&o.seed, "seed", 1, "random seed for carnet seed and the workloads' picks")
	flag.StringVar(&conc, "conc", "1,8,64", "concurrencies (keep-alive connections), comma-separated")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measured time per cell (workload x backend x concurrency)")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warm-up before each cell")
	flag.StringVar(&wls, "workloads", "read,search-family,search-encounter,create", "workloads to run, comma-separated")
	flag.BoolVar(&o.peer, "peer", true, "also measure the peer FHIR engine (skipped with a note when node/npm are missing, unless CI=true)")
	flag.StringVar(&o.peerDir, "peer-dir", "", "peer sources (default: ../shared/peer beside the repository, else /work/shared/peer)")
	flag.IntVar(&o.peerPatients, "peer-patients", 0, "patients seeded into the peer over HTTP (0: same as -patients)")
	flag.IntVar(&o.loadPatients, "load-patients", 758912, "patients for the timed big load on SQLite (0: skip)")
	flag.BoolVar(&o.loadPostgres, "load-postgres", false, "also time the big load on PostgreSQL")
	flag.StringVar(&authWls, "auth-workloads", "read,search-family,create", "physician-scoped workloads run both open and with a bearer token, comma-separated (read, search-family, create); empty: no authentication comparison")
	flag.StringVar(&authConc, "auth-conc", "", "concurrencies of the authentication comparison (default: those of -conc)")
	flag.IntVar(&o.authReps, "auth-reps", 3, "runs of each mode per cell of the authentication comparison (the report gives medians)")
	flag.StringVar(&sealWls, "seal-workloads", "read,search-family", "workloads run on the sealed SQLite bench store and on a twin seeded in clear (carnet seed --insecure-clear), comma-separated (read, search-family, search-encounter); empty: no encryption at rest comparison")
	flag.StringVar(&sealConc, "seal-conc", "", "concurrencies of the encryption at rest comparison (default: the highest of -conc)")
	flag.IntVar(&o.sealReps, "seal-reps", 3, "runs of each mode per cell of the encryption at rest comparison (the report gives medians)")
	flag.StringVar(&guardWls, "guard-workloads", "read,search-family", "physician-scoped workloads run authenticated with and without the exfiltration guard (carnet serve vs --insecure-no-guard), comma-separated (read, search-family, create); empty: no guard cost comparison")
	flag.StringVar(&guardConc, "guard-conc", "", "concurrencies of the guard cost comparison (default: the highest of -conc)")
	flag.IntVar(&o.guardReps, "guard-reps", 3, "runs of each mode per cell of the guard cost comparison (the report gives medians)")
	flag.BoolVar(&o.webBench, "web-bench", true, "also run go test ./internal/web/ -bench BenchmarkChartRender (server-side render of a 200-stay chart: median and p95, goal p95 <= 50 ms)")
	flag.BoolVar(&o.auditBench, "audit-bench", true, "also run go test ./internal/audit/ -bench BenchmarkAppend (appends/s of the audit log on SQLite; skipped with a note when go is missing, unless CI=true)")
	flag.StringVar(&o.out, "out", "", "results file (default bench/RESULTS.md in the module)")
	flag.StringVar(&o.pg, "pg", "postgres://postgres@127.0.0.1:5432", "PostgreSQL server for the postgres backend (no database in the URL)")
	flag.StringVar(&o.pgDB, "pg-db", "carnet_bench", "PostgreSQL database the harness drops and recreates")
	flag.StringVar(&o.carnetBin, "carnet", "", "use this carnet binary instead of building ./cmd/carnet")
	flag.StringVar(&o.workdir, "workdir", "", "folder for the binary, stores and logs (default: a new temporary folder)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work folder, stores and benchmark database afterwards")
	attacks := flag.Bool("attacks", false, "run only the attack replay (carnet sim, 758,912 patients by default) and write bench/ATTACKS.md")
	attacksArgs := flag.String("attacks-args", "", "more carnet sim flags for -attacks, e.g. \"--patients 100000 --scenarios S2,S6\"")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./bench [flags]\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		fatalf("unexpected arguments %q", flag.Args())
	}
	if *attacks {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := runAttacks(ctx, o.carnetBin, *attacksArgs); err != nil {
			fatalf("%v", err)
		}
		return
	}

	for _, b := range splitList(backends) {
		if b != "sqlite" && b != "postgres" {
			fatalf("-backends: unknown backend %q (want sqlite, postgres)", b)
		}
		o.backends = append(o.backends, b)
	}
	o.conc = parseConc("-conc", conc)
	if len(o.conc) == 0 {
		fatalf("-conc: no concurrency")
	}
	for _, s := range splitList(wls) {
		w, ok := workloadByName(s)
		if !ok {
			fatalf("-workloads: unknown workload %q", s)
		}
		o.workloads = append(o.workloads, w)
	}
	for _, s := range splitList(authWls) {
		w, ok := authWorkloadByName(s)
		if !ok {
			fatalf("-auth-workloads: unknown workload %q (want read, search-family, create)", s)
		}
		o.authWork = append(o.authWork, w)
	}
	o.authConc = parseConc("-auth-conc", authConc)
	if authConc == "" {
		o.authConc = o.conc
	}
	for _, s := range splitList(sealWls) {
		w, ok := workloadByName(s)
		if !ok || w.paths == nil {
			fatalf("-seal-workloads: unknown or unfit workload %q (want read, search-family, search-encounter: a create would make the two stores differ)", s)
		}
		o.sealWork = append(o.sealWork, w)
	}
	o.sealConc = parseConc("-seal-conc", sealConc)
	if sealConc == "" {
		o.sealConc = []int{slices.Max(o.conc)}
	}
	parseGuardFlags(&o, guardWls, guardConc)
	if o.patients < 1 || o.duration <= 0 || o.warmup < 0 || o.loadPatients < 0 || o.authReps < 1 || o.sealReps < 1 {
		fatalf("-patients, -duration, -auth-reps, -seal-reps must be > 0; -warmup, -load-patients >= 0")
	}
	if len(o.authWork)+len(o.guardWork) > 0 && o.warmup+o.duration > 10*time.Minute {
		fatalf("-warmup + -duration over 10m: an access token lives 15 minutes and one token serves a whole cell; shorten them or pass -auth-workloads '' -guard-workloads ''")
	}
	if o.peerPatients == 0 {
		o.peerPatients = o.patients
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		if errors.Is(err, context.Canceled) {
			fatalf("interrupted")
		}
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(1)
}

// parseConc parses a comma-separated list of concurrencies (flag name for
// the error).
func parseConc(name, list string) []int {
	var out []int
	for _, s := range splitList(list) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			fatalf("%s: bad concurrency %q", name, s)
		}
		out = append(out, n)
	}
	return out
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// commandLine is the invocation as a user would type it.
func commandLine() string {
	parts := []string{"go", "run", "./bench"}
	for _, a := range os.Args[1:] {
		if a == "" || strings.ContainsAny(a, " \t\"'$\\*?;&|<>()") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func moduleRoot() (string, error) {
	gomod, err := output("", "go", "env", "GOMOD")
	if err != nil {
		return "", err
	}
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the carnet module: run go run ./bench from the repository")
	}
	return filepath.Dir(gomod), nil
}

func inCI() bool { return os.Getenv("CI") == "true" }

type harness struct {
	o       options
	root    string
	work    string
	bin     string
	rep     *report
	out     string
	bodies  [][]byte
	started time.Time
	failed  bool // something failed: keep the work folder for its logs
}

func run(ctx context.Context, o options) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	h := &harness{o: o, root: root, started: time.Now()}
	h.out = o.out
	if h.out == "" {
		h.out = filepath.Join(root, "bench", "RESULTS.md")
	}
	if o.workdir != "" {
		h.work = o.workdir
		if err := os.MkdirAll(h.work, 0o755); err != nil {
			return err
		}
	} else {
		if h.work, err = os.MkdirTemp("", "carnet-bench-"); err != nil {
			return err
		}
		defer func() {
			if o.keep {
				return
			}
			if h.failed {
				fmt.Printf("bench: kept %s (logs of what failed)\n", h.work)
				return
			}
			os.RemoveAll(h.work)
		}()
	}
	fmt.Printf("bench: work folder %s\n", h.work)

	h.rep = &report{machine: machineInfo(root), command: commandLine(), authOn: len(o.authWork) > 0,
		sealOn: len(o.sealWork) > 0 && slices.Contains(o.backends, "sqlite")}
	h.rep.auditOn = o.auditBench || (h.rep.authOn && slices.Contains(o.backends, "sqlite"))
	h.rep.config = [][2]string{
		{"patients seeded for the workloads", thousands(int64(o.patients))},
		{"measured time per cell", fmt.Sprintf("%v after %v warm-up", o.duration, o.warmup)},
		{"Carnet server for the workloads", "carnet serve --insecure-open (no authentication, no access control) on a store sealed at rest (key file STORE.key beside it)"},
	}
	if h.rep.authOn {
		var names []string
		for _, w := range o.authWork {
			names = append(names, w.name)
		}
		h.rep.config = append(h.rep.config, [2]string{"authentication comparison",
			fmt.Sprintf("%s at concurrency %s, %d runs per mode (open: carnet serve --insecure-open; auth: carnet serve, guard on, with a physician's bearer token, session stepped up)",
				strings.Join(names, ", "), joinInts(o.authConc), o.authReps)})
	}
	h.guardConfig()
	h.sealConfig()
	h.bodies = createBodies(uint64(o.seed), 4096)

	if o.carnetBin != "" {
		h.bin = o.carnetBin
	} else {
		fmt.Println("bench: go build ./cmd/carnet")
		if h.bin, err = buildCarnet(ctx, root, h.work); err != nil {
			return err
		}
	}

	var pg *pgAdmin
	needPG := o.loadPostgres
	for _, b := range o.backends {
		needPG = needPG || b == "postgres"
	}
	if needPG {
		if pg, err = newPGAdmin(o.pg); err != nil {
			return err
		}
		if _, err := pg.admin("SELECT 1"); err != nil {
			if inCI() {
				return fmt.Errorf("PostgreSQL unavailable: %w", err)
			}
			h.note(fmt.Sprintf("PostgreSQL skipped: %s", shortErr(err)))
			pg = nil
		}
	}

	printHeader()
	for _, b := range o.backends {
		if b == "postgres" && pg == nil {
			h.skipAll(b, "no PostgreSQL")
			continue
		}
		st := store{backend: b, dir: filepath.Join(h.work, "store-"+b), db: o.pgDB, pg: pg}
		if err := h.carnetBackend(ctx, st); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Printf("bench: %s failed: %v\n", b, err)
			h.fail(fmt.Sprintf("%s: %s", b, shortErr(err)))
		}
		h.save()
	}

	if o.auditBench {
		if err := h.auditBench(ctx); err != nil {
			return err
		}
	}
	if o.webBench {
		if err := h.webBench(ctx); err != nil {
			return err
		}
	}

	if o.peer {
		if err := h.peerBackend(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if inCI() {
				return fmt.Errorf("peer: %w", err)
			}
			fmt.Printf("bench: peer skipped: %v\n", err)
			h.fail("peer skipped: " + shortErr(err))
			h.skipAll("peer", "skipped")
		}
		h.save()
	} else {
		h.note("peer not measured (-peer=false)")
	}

	if o.loadPatients > 0 {
		loads := []store{{backend: "sqlite", dir: filepath.Join(h.work, "load-sqlite")}}
		if o.loadPostgres {
			if pg != nil {
				loads = append(loads, store{backend: "postgres", dir: filepath.Join(h.work, "load-postgres"), db: o.pgDB, pg: pg})
			} else {
				h.note("big load on PostgreSQL skipped: no PostgreSQL")
			}
		}
		for _, st := range loads {
			if err := h.bigLoad(ctx, st); err != nil && ctx.Err() != nil {
				return ctx.Err()
			}
			h.save()
		}
	}

	h.rep.config = append(h.rep.config, [2]string{"total harness time", time.Since(h.started).Round(time.Second).String()})
	h.save()
	fmt.Println()
	fmt.Println(h.rep.markdown())
	fmt.Printf("bench: wrote %s\n", h.out)
	return nil
}

func (h *harness) note(s string) { h.rep.notes = append(h.rep.notes, s) }

// fail records a failure in the notes and keeps the work folder.
func (h *harness) fail(s string) {
	h.failed = true
	h.note(s)
}

func (h *harness) save() {
	if err := h.rep.write(h.out); err != nil {
		fmt.Fprintf(os.Stderr, "bench: writing %s: %v\n", h.out, err)
	}
}

func (h *harness) skipAll(backend, why string) {
	for _, w := range h.o.workloads {
		for _, c := range h.o.conc {
			h.rep.rows = append(h.rep.rows, row{workload: w.name, backend: backend, conc: c, note: why})
		}
	}
}

func (h *harness) carnetBackend(ctx context.Context, st store) error {
	fmt.Printf("bench: [%s] seeding %d patients\n", st.backend, h.o.patients)
	sr, err := h.seedStore(ctx, st, h.o.patients, "bench", "seed-"+st.backend+".log", 5*time.Minute)
	if err != nil {
		h.skipAll(st.backend, "seed failed")
		return err
	}
	fmt.Printf("bench: [%s] seeded in %.1fs, %s, %s resources\n", st.backend, sr.wall.Seconds(), sizeStr(sr.size), thousands(sr.resources))
	if !h.o.keep {
		defer st.remove()
	}

	// The encryption at rest comparison runs first, while the store still
	// holds exactly what was seeded (the workloads' creates add patients):
	// the clear twin then holds the same data. Its inputs serve below.
	var in *inputs
	if st.backend == "sqlite" && len(h.o.sealWork) > 0 {
		in, err = h.sealCompare(ctx, st, sr)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			fmt.Printf("bench: [%s] encryption at rest comparison failed: %v\n", st.backend, err)
			h.fail(fmt.Sprintf("%s: encryption at rest comparison: %s", st.backend, shortErr(err)))
		}
	}

	srv, err := serveCarnet(ctx, h.bin, st, true, filepath.Join(h.work, "serve-"+st.backend+"-open.log"))
	if err != nil {
		h.skipAll(st.backend, "serve failed")
		return err
	}
	defer srv.stop()
	fmt.Printf("bench: [%s] serving %s (--insecure-open)\n", st.backend, srv.base)

	if in == nil {
		if in, err = collectCarnet(ctx, newAPIClient(srv.base)); err != nil {
			h.skipAll(st.backend, "no inputs")
			return err
		}
		h.inputsNote(st.backend, in)
	}
	t, err := newTarget(st.backend, srv.base, false)
	if err != nil {
		return err
	}
	if err := h.measure(ctx, t, in, srv); err != nil {
		return err
	}
	// One server at a time: the SQLite store is locked to one process.
	srv.stop()
	if len(h.o.authWork) == 0 && len(h.o.guardWork) == 0 {
		return nil
	}
	var errs []error
	if len(h.o.authWork) > 0 {
		if err := h.authCompare(ctx, st); err != nil {
			errs = append(errs, fmt.Errorf("authentication comparison: %w", err))
		}
	}
	if len(h.o.guardWork) > 0 && ctx.Err() == nil {
		if err := h.guardCompare(ctx, st); err != nil {
			errs = append(errs, fmt.Errorf("guard cost comparison: %w", err))
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// The comparisons stopped their last server: the store is free to verify.
	if st.backend == "sqlite" {
		h.auditVerify(ctx, st)
	}
	return errors.Join(errs...)
}

// seedStore runs carnet seed of patients into st (emptied first), logging
// to the work folder's logName, and records it in the Loading table under
// phase (bench, clear, load).
func (h *harness) seedStore(ctx context.Context, st store, patients int, phase, logName string, stall time.Duration) (seedResult, error) {
	sr, err := seed(ctx, h.bin, st, patients, h.o.seed, filepath.Join(h.work, logName), stall)
	sr.phase = phase
	if err != nil {
		sr.err = "see notes"
	}
	h.rep.seeds = append(h.rep.seeds, sr)
	return sr, err
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func (h *harness) inputsNote(backend string, in *inputs) {
	s := fmt.Sprintf("%s inputs: %d patient ids, %d family names (each >= %d matches), %d patients with encounters",
		backend, len(in.patientIDs), len(in.families), in.familyMinHit, len(in.encPatients))
	fmt.Println("bench: " + s)
	h.note(s)
	for _, n := range in.notes {
		h.note(backend + ": " + n)
	}
}

// measure runs every workload at every concurrency against t. Before a
// workload, one probe request checks that it answers and how long one
// request takes: a workload whose single request takes longer than the
// measured window is not run (the peer's in-memory searches can take tens of
// seconds). After each cell the harness waits until the server answers again,
// so that requests still queued from a cell do not weigh on the next one.
func (h *harness) measure(ctx context.Context, t target, in *inputs, srv *server) error {
	hc := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	for wi, w := range h.o.workloads {
		src, sample, err := w.sources(t, in, h.bodies, uint64(h.o.seed)+uint64(wi)*1000)
		skip := ""
		if err != nil {
			skip = "no inputs"
		} else {
			d, status, perr := probe(ctx, hc, t.addr, sample, nil, max(2*h.o.duration, 10*time.Second))
			switch {
			case errors.Is(perr, errProbeTimeout):
				skip = fmt.Sprintf("1 request > %.0fs", d.Seconds())
				h.note(fmt.Sprintf("%s on %s skipped: one request (%s) got no answer in %.0fs", w.name, t.name, sample.Path, d.Seconds()))
			case perr != nil:
				skip = "probe failed"
				h.note(fmt.Sprintf("%s on %s skipped: probe request %s failed: %s", w.name, t.name, sample.Path, shortErr(perr)))
			case d > h.o.duration:
				skip = fmt.Sprintf("1 request: %.1fs", d.Seconds())
				h.note(fmt.Sprintf("%s on %s skipped: one request (%s) took %.1fs, longer than the %v window", w.name, t.name, sample.Path, d.Seconds(), h.o.duration))
			case status/100 != 2:
				fmt.Printf("  warning: probe %s answered %d\n", sample.Path, status)
			}
			if perr != nil || d > h.o.duration {
				fmt.Printf("  %s on %s skipped (%s)\n", w.name, t.name, skip)
				h.drain(ctx, hc, t)
			}
		}
		for _, c := range h.o.conc {
			if skip != "" {
				h.rep.rows = append(h.rep.rows, row{workload: w.name, backend: t.name, conc: c, note: skip})
				continue
			}
			if !srv.alive() {
				h.rep.rows = append(h.rep.rows, row{workload: w.name, backend: t.name, conc: c, note: "server died"})
				continue
			}
			fmt.Printf("  running %s on %s, %d conn, %v + %v warm-up (e.g. %s %s)\n", w.name, t.name, c, h.o.duration, h.o.warmup, reqMethod(sample), sample.Path)
			res, err := h.runCell(ctx, hc, t, c, src, nil, func(res *loadgen.Result) []string {
				x := row{workload: w.name, backend: t.name, conc: c, res: res}
				h.rep.rows = append(h.rep.rows, x)
				return h.rep.cells(x)
			})
			if err != nil {
				return err
			}
			if res.Requests == 0 {
				// Nothing completed: higher concurrencies would only queue more.
				skip = "none at lower conc."
			}
		}
	}
	return srv.exited()
}

// cellGrace is how long a cell waits for the answers still due after its
// measured window.
const cellGrace = time.Second

// runCell measures one cell: conns connections on t sending src's requests
// with the Accept header and the extra header lines. record keeps the
// result in the report and gives its console columns; then the results file
// is saved and the harness waits until the server answers again.
func (h *harness) runCell(ctx context.Context, hc *http.Client, t target, conns int, src func(int) loadgen.Source, header []string, record func(*loadgen.Result) []string) (*loadgen.Result, error) {
	res, err := loadgen.Run(ctx, loadgen.Config{
		Addr:            t.addr,
		Conns:           conns,
		Warmup:          h.o.warmup,
		Duration:        h.o.duration,
		Grace:           cellGrace,
		NewSource:       src,
		Header:          append([]string{"Accept: application/fhir+json"}, header...),
		ExpectLatencies: int(h.o.duration.Seconds() * 30000),
	})
	if err != nil {
		return nil, err
	}
	printCols(record(res))
	if res.FirstError != "" {
		fmt.Printf("    first transport error: %s\n", res.FirstError)
	}
	h.save()
	h.drain(ctx, hc, t)
	return res, nil
}

// abStep is one repetition of a comparison's workloads in one mode.
type abStep struct {
	mode string
	rep  int
}

// abSteps orders the repetitions A B, B A, A B, ... with the variant first,
// so that a drift of the machine (or a store growing with creates) weighs
// on both modes alike. Consecutive steps of the same mode share one server.
func abSteps(c *comparison, reps int) []abStep {
	var out []abStep
	for r := range reps {
		if r%2 == 0 {
			out = append(out, abStep{c.variant, r}, abStep{c.base, r})
		} else {
			out = append(out, abStep{c.base, r}, abStep{c.variant, r})
		}
	}
	return out
}

// abHooks are what the modes of a comparison differ in.
type abHooks struct {
	// start starts the server of mode; n counts the starts (for log names).
	start func(ctx context.Context, mode string, n int) (*server, error)
	// ready runs after each start (log in, gather inputs, check the data).
	ready func(ctx context.Context, srv *server, mode string) error
	// header gives the extra request header lines of a cell in mode (nil:
	// none).
	header func(ctx context.Context, srv *server, mode string) ([]string, error)
	// sources gives the per-worker requests of workload name against t and
	// one sample request.
	sources func(name string, t target, seed uint64) (func(int) loadgen.Source, loadgen.Request, error)
}

// abCompare runs the workloads named in works in both modes of c, reps
// times each at every concurrency of concs, one server at a time (none may
// be running on the store), appending the runs to rows; it ends with no
// server running and prints the summaries.
func (h *harness) abCompare(ctx context.Context, c *comparison, backend string, works []string, concs []int, reps int, rows *[]abRow, hk abHooks) error {
	var (
		srv    *server
		t      target
		mode   string
		starts int
		probed = map[string]bool{}
	)
	defer func() { srv.stop() }()
	hc := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	header := func(mode string) ([]string, error) {
		if hk.header == nil {
			return nil, nil
		}
		return hk.header(ctx, srv, mode)
	}
	for _, s := range abSteps(c, reps) {
		if srv == nil || s.mode != mode {
			srv.stop()
			starts++
			var err error
			if srv, err = hk.start(ctx, s.mode, starts); err != nil {
				return err
			}
			mode = s.mode
			if t, err = newTarget(backend, srv.base, false); err != nil {
				return err
			}
			if hk.ready != nil {
				if err := hk.ready(ctx, srv, mode); err != nil {
					return err
				}
			}
		}
		for wi, name := range works {
			// Same seed for both modes of a repetition: the same request sequences.
			src, sample, err := hk.sources(name, t, uint64(h.o.seed)+c.seedOffset+uint64(wi)*1000+uint64(s.rep)*100)
			if err != nil {
				return err
			}
			if key := name + "-" + s.mode; !probed[key] {
				probed[key] = true
				hdr, err := header(s.mode)
				if err != nil {
					return err
				}
				_, status, err := probe(ctx, hc, t.addr, sample, hdr, 2*time.Minute)
				switch {
				case err != nil:
					return fmt.Errorf("%s (%s) probe %s %s: %w", c.label(name), s.mode, reqMethod(sample), sample.Path, err)
				case status/100 != 2:
					n := fmt.Sprintf("%s %s: probe %s %s answered %d", t.name, s.mode, reqMethod(sample), sample.Path, status)
					fmt.Println("  warning: " + n)
					h.note(n)
				}
			}
			for _, conc := range concs {
				x := abRow{workload: name, backend: t.name, conc: conc, mode: s.mode, rep: s.rep}
				if !srv.alive() {
					x.note = "server died"
					*rows = append(*rows, x)
					continue
				}
				hdr, err := header(s.mode)
				if err != nil {
					return err
				}
				if _, err := h.runCell(ctx, hc, t, conc, src, hdr, func(res *loadgen.Result) []string {
					x.res = res
					*rows = append(*rows, x)
					return abCells(c, x, reps)
				}); err != nil {
					return err
				}
			}
		}
		if err := srv.exited(); err != nil {
			return err
		}
	}
	srv.stop()
	for _, s := range summaries(c, *rows) {
		if s.backend == backend {
			fmt.Println("bench: " + s.line())
		}
	}
	return nil
}

var errProbeTimeout = errors.New("no answer in time")

// probe sends one request (with the extra header lines) and times it.
func probe(ctx context.Context, hc *http.Client, addr string, r loadgen.Request, header []string, timeout time.Duration) (time.Duration, int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if r.Body != nil {
		rd = bytes.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(ctx, reqMethod(r), "http://"+addr+r.Path, rd)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	if r.ContentType != "" {
		req.Header.Set("Content-Type", r.ContentType)
	}
	for _, l := range header {
		if k, v, ok := strings.Cut(l, ":"); ok {
			req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
	t0 := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return time.Since(t0), 0, errProbeTimeout
		}
		return time.Since(t0), 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return time.Since(t0), resp.StatusCode, err
}

func reqMethod(r loadgen.Request) string {
	if r.Method == "" {
		return "GET"
	}
	return r.Method
}

// drain waits (up to 10 minutes) until the server answers GET metadata, i.e.
// until a single-threaded server has worked through requests queued by
// connections the load generator already closed.
func (h *harness) drain(ctx context.Context, hc *http.Client, t target) {
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+t.addr+t.prefix+"/metadata", nil)
	if err != nil {
		return
	}
	resp, err := hc.Do(req)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if d := time.Since(t0); d > 2*time.Second {
		fmt.Printf("    waited %.0fs for %s to work through queued requests\n", d.Seconds(), t.name)
	}
}

func (h *harness) peerBackend(ctx context.Context) error {
	src, err := findPeerDir(h.o.peerDir, h.root)
	if err != nil {
		return err
	}
	dir, err := installPeer(ctx, src, filepath.Join(h.work, "peer-npm.log"))
	if err != nil {
		return err
	}
	srv, err := startPeer(ctx, dir, filepath.Join(h.work, "peer.log"))
	if err != nil {
		return err
	}
	defer srv.stop()
	fmt.Printf("bench: [peer] serving %s; seeding %d patients over HTTP\n", srv.base, h.o.peerPatients)
	c := newAPIClient(srv.base)
	in, wall, n, err := seedPeer(ctx, c, h.o.peerPatients, h.o.seed)
	h.rep.seeds = append(h.rep.seeds, seedResult{phase: "bench", backend: "peer", patients: h.o.peerPatients, resources: n, wall: wall})
	if err != nil {
		return fmt.Errorf("seeding the peer: %w", err)
	}
	h.inputsNote("peer", in)
	h.note(fmt.Sprintf("peer: Medplum FHIR router over its in-memory repository (%s), seeded over HTTP with %d patients and their encounters only (%d resources)", src, h.o.peerPatients, n))
	t, err := newTarget("peer", srv.base, true)
	if err != nil {
		return err
	}
	return h.measure(ctx, t, in, srv)
}

func (h *harness) bigLoad(ctx context.Context, st store) error {
	if st.backend == "sqlite" {
		var fs syscall.Statfs_t
		if syscall.Statfs(h.work, &fs) == nil {
			free := int64(fs.Bavail) * int64(fs.Bsize)
			fmt.Printf("bench: %s free in %s\n", sizeStr(free), h.work)
		}
	}
	fmt.Printf("bench: [%s] big load: carnet seed of %d patients\n", st.backend, h.o.loadPatients)
	sr, err := h.seedStore(ctx, st, h.o.loadPatients, "load", "load-"+st.backend+".log", 30*time.Minute)
	if !h.o.keep {
		defer st.remove()
	}
	if err != nil {
		h.fail(fmt.Sprintf("big load on %s failed: %s", st.backend, shortErr(err)))
		fmt.Printf("bench: big load on %s failed: %v\n", st.backend, err)
		return err
	}
	fmt.Printf("bench: [%s] loaded %d patients in %.1fs (%.0f patients/s), %s resources, %s on disk\n",
		st.backend, sr.patients, sr.wall.Seconds(), float64(sr.patients)/sr.wall.Seconds(), thousands(sr.resources), sizeStr(sr.size))
	return nil
}
