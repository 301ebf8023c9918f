package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"time"

	"github.com/schollz/progressbar/v3"

	"carnet/internal/api"
	"carnet/internal/audit"
	"carnet/internal/auth"
	"carnet/internal/guard"
	"carnet/internal/load"
	"carnet/internal/policy"
	"carnet/internal/record"
	"carnet/internal/seal"
	"carnet/internal/store"
	"carnet/internal/store/postgres"
	"carnet/internal/store/sqlite"
	"carnet/internal/synth"
	"carnet/internal/web"
)

// storeFlags are the flags that choose a store and its keys.
type storeFlags struct {
	data, db, witness string
	keyFile           string
	clear             bool // --insecure-clear: benchmark baseline, no sealing
	createKey         bool // demo, seed, import: make the key file for a new store
	noKeys            bool // audit verify: the log needs no keys
	kr                *seal.Keyring
	stderr            io.Writer // where a new key file is announced
}

func (sf *storeFlags) register(fs *flag.FlagSet, defData string) {
	fs.StringVar(&sf.data, "data", defData, "data directory of the embedded SQLite store")
	fs.StringVar(&sf.db, "db", os.Getenv("CARNET_DB"), "PostgreSQL URL (postgres://...); overrides --data (env CARNET_DB)")
	fs.StringVar(&sf.keyFile, "key-file", os.Getenv("CARNET_KEY_FILE"), "key-encryption key file, outside the data directory (default: DATA.key beside the data directory, ./carnet.key with --db; env CARNET_KEY_FILE); made by 'carnet keys init', or by demo/seed/import for a new store")
	fs.StringVar(&sf.witness, "witness", os.Getenv("CARNET_WITNESS"), "audit witness directory, outside the database: signing key, checkpoints, leaf hashes (default: DATA-witness beside the data directory, ./carnet-witness with --db; env CARNET_WITNESS). With several instances on one PostgreSQL database, exactly one checkpoints: give the others --witness none")
}

// witnessDir is the audit witness directory.
func (sf *storeFlags) witnessDir() string {
	if sf.witness != "" {
		return sf.witness
	}
	if sf.data != "" && sf.db == "" {
		return filepath.Clean(sf.data) + "-witness"
	}
	return "carnet-witness"
}

// keyPath is the key file.
func (sf *storeFlags) keyPath() string {
	if sf.keyFile != "" {
		return sf.keyFile
	}
	if sf.data != "" && sf.db == "" {
		return filepath.Clean(sf.data) + ".key"
	}
	return "carnet.key"
}

func (sf *storeFlags) openRaw(ctx context.Context) (*store.SQL, error) {
	if sf.db != "" {
		return postgres.Open(ctx, sf.db)
	}
	if sf.data == "" {
		return nil, errors.New("give --data DIR or --db postgres://…")
	}
	return sqlite.Open(ctx, sf.data)
}

// open opens the store with its keys: a sealed store needs the key file it
// was sealed with; a new store gets one when createKey is set.
func (sf *storeFlags) open(ctx context.Context) (*store.SQL, error) {
	st, err := sf.openRaw(ctx)
	if err != nil || sf.noKeys {
		return st, err
	}
	if err := sf.unseal(ctx, st); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

func (sf *storeFlags) unseal(ctx context.Context, st *store.SQL) error {
	sealed, err := st.Sealed(ctx)
	if err != nil {
		return err
	}
	stats, err := st.Stats(ctx)
	if err != nil {
		return err
	}
	if sf.clear {
		if sealed {
			return fmt.Errorf("the store in %s is sealed: --insecure-clear is only for a store created in clear", sf.describe())
		}
		return nil
	}
	if !sealed && len(stats) > 0 {
		return fmt.Errorf("the store in %s holds resources in clear (made with --insecure-clear, or by a Carnet without encryption at rest): serve it with --insecure-clear, or make a new one", sf.describe())
	}
	path := sf.keyPath()
	kek, err := seal.LoadKeyFile(path)
	if errors.Is(err, seal.ErrNoKeyFile) && !sealed && sf.createKey {
		if kek, err = seal.InitKeyFile(path); err == nil {
			fmt.Fprintf(cmp.Or[io.Writer](sf.stderr, io.Discard), "created the key-encryption key %s (keep it outside the data and its backups: without it the data cannot be read)\n", path)
		}
	}
	if errors.Is(err, seal.ErrNoKeyFile) && sealed {
		return fmt.Errorf("the store in %s is sealed and needs the key file it was sealed with: there is none at %s (give --key-file or CARNET_KEY_FILE)", sf.describe(), path)
	}
	if err != nil {
		return err
	}
	kr, err := seal.Open(ctx, st, kek)
	if err != nil {
		return fmt.Errorf("%w (key file %s)", err, path)
	}
	kr.ReloadWithAny(seal.KeyFileCandidates(path))
	st.UseSealer(kr)
	sf.kr = kr
	return nil
}

func (sf *storeFlags) describe() string {
	if sf.db != "" {
		return "PostgreSQL"
	}
	return "SQLite in " + sf.data
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("serve", "--data DIR | --db postgres://... [--addr HOST:PORT]", stderr)
	var sf storeFlags
	sf.register(fs, "")
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on")
	var so serveOptions
	so.register(fs)
	fs.BoolVar(&sf.clear, "insecure-clear", false, "benchmark baseline only: serve a store made with 'seed --insecure-clear' (resources in clear)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if sf.data != "" && sf.db == "" {
		if _, err := os.Stat(sqlite.Path(sf.data)); err != nil {
			return fmt.Errorf("no Carnet store in %s (create one with 'carnet demo' or 'carnet seed')", sf.data)
		}
	}
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	so.witness = sf.witnessDir()
	return serve(ctx, st, *addr, so, stdout, stderr)
}

// serveOptions are the security settings of a server.
type serveOptions struct {
	careWindow, breakGlass time.Duration
	insecureOpen           bool
	witness                string
	webhook                string
	noGuard                bool
	secureCookies          bool
}

func (o *serveOptions) register(fs *flag.FlagSet) {
	fs.DurationVar(&o.careWindow, "care-window", 30*24*time.Hour, "how long after an encounter ends its participants keep access to the patient")
	fs.DurationVar(&o.breakGlass, "break-glass-max", 4*time.Hour, "longest break-the-glass grant")
	fs.BoolVar(&o.insecureOpen, "insecure-open", false, "serve WITHOUT authentication or access control (benchmark baseline and tests; refused unless --addr is loopback)")
	fs.StringVar(&o.webhook, "alert-webhook", os.Getenv("CARNET_ALERT_WEBHOOK"), "URL the guard POSTs every alert to as JSON (env CARNET_ALERT_WEBHOOK)")
	fs.BoolVar(&o.secureCookies, "secure-cookies", os.Getenv("CARNET_SECURE_COOKIES") == "1", "mark the web application's cookies Secure (behind an HTTPS proxy; requests over TLS get them anyway) (env CARNET_SECURE_COOKIES=1)")
	fs.BoolVar(&o.noGuard, "insecure-no-guard", false, "serve WITHOUT the exfiltration guard (benchmark baseline only; refused unless --addr is loopback)")
}

func serve(ctx context.Context, st *store.SQL, addr string, so serveOptions, stdout, stderr io.Writer) error {
	if os.Getenv("GOGC") == "" {
		// A server's heap is small and short-lived garbage dominates: trade
		// some memory for less GC work on the request path.
		debug.SetGCPercent(400)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if path := os.Getenv("CARNET_CPUPROFILE"); path != "" {
		// Profiling a server under a benchmark's load: one file per
		// process (PATH.PID), written when the server stops.
		pf, err := os.Create(fmt.Sprintf("%s.%d", path, os.Getpid()))
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	loopback := func() bool {
		host, _, err := net.SplitHostPort(addr)
		ip := net.ParseIP(host)
		return err == nil && (host == "localhost" || (ip != nil && ip.IsLoopback()))
	}
	if so.insecureOpen {
		if !loopback() {
			return fmt.Errorf("--insecure-open serves patient data to anyone: only on a loopback --addr (127.0.0.1:PORT)")
		}
		logger.Warn("SERVING WITHOUT AUTHENTICATION OR ACCESS CONTROL (--insecure-open): benchmark and test use only")
	}
	var grd *guard.Guard
	if !so.insecureOpen {
		if so.noGuard {
			if !loopback() {
				return fmt.Errorf("--insecure-no-guard lets a stolen account walk every patient it reaches: only on a loopback --addr (127.0.0.1:PORT)")
			}
			logger.Warn("SERVING WITHOUT THE EXFILTRATION GUARD (--insecure-no-guard): benchmark baseline only")
		} else {
			gopt := guard.Options{Logger: logger}
			if so.webhook != "" {
				wh := guard.NewWebhook(so.webhook, nil, logger)
				defer wh.Close()
				gopt.Alerts = append(gopt.Alerts, wh)
			}
			grd = guard.New(st, gopt)
			gctx, stop := context.WithCancel(ctx)
			defer stop()
			go guard.Housekeep(gctx, st, logger)
		}
	}
	pol := policy.New(st)
	if so.careWindow > 0 {
		pol.CareWindow = so.careWindow
	}
	var auditor api.Auditor
	if !so.insecureOpen && so.witness == "none" {
		// Another instance sharing this PostgreSQL database checkpoints.
		auditor = audit.NewAppender(st)
		fmt.Fprintln(stderr, "audit log: appending only (--witness none): another instance must checkpoint")
	} else if !so.insecureOpen {
		alog, err := audit.Open(ctx, st, so.witness, logger)
		if err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
		defer alog.Close(context.Background())
		actx, stop := context.WithCancel(ctx)
		defer stop()
		go alog.Run(actx, time.Second)
		auditor = alog
		fmt.Fprintf(stderr, "audit log: %d entries checkpointed, witness in %s\n", alog.Size(), so.witness)
	}
	authn := auth.NewService(st, auth.Options{Logger: logger})
	apiSrv := api.New(st, api.Options{Logger: logger, Version: version,
		Auth: authn, Policy: pol, Admin: st,
		InsecureOpen: so.insecureOpen, MaxBreakGlass: so.breakGlass, Audit: auditor, Guard: grd, Alerts: st})
	handler := http.Handler(apiSrv)
	if !so.insecureOpen {
		app, err := web.New(web.Options{API: apiSrv, Auth: authn, SecureCookies: so.secureCookies, Logger: logger})
		if err != nil {
			return fmt.Errorf("web application: %w", err)
		}
		handler = web.Mount(apiSrv, app)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Carnet %s serving %s at http://%s/fhir (web application: http://%s/app/)\n", version, st.Backend(), ln.Addr(), ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	fmt.Fprintln(stderr, "shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// seedFlags choose the synthetic group.
type seedFlags struct {
	patients int
	seed     int64
}

func (f *seedFlags) register(fs *flag.FlagSet, defPatients int) {
	fs.IntVar(&f.patients, "patients", defPatients, "number of synthetic patients (the seed breach: 758912)")
	fs.Int64Var(&f.seed, "seed", 1, "random seed: the same seed gives the same group")
}

func seedStore(ctx context.Context, st store.Store, kr *seal.Keyring, f seedFlags, stderr io.Writer) (*load.SyntheticResult, error) {
	if f.patients < 0 {
		return nil, fmt.Errorf("--patients must be >= 0")
	}
	if kr != nil {
		// A data key per facility, made before the load (which holds the
		// writer and seals with the group key where a facility has none).
		var ids []string
		for _, fac := range synth.New(synth.Config{Seed: f.seed, Patients: f.patients}).Facilities {
			ids = append(ids, fac.ID)
		}
		if err := kr.Ensure(ctx, ids...); err != nil {
			return nil, err
		}
	}
	newBar := func(total int, what, unit string) *progressbar.ProgressBar {
		return progressbar.NewOptions(total,
			progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription(what),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString(unit),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(stderr) }),
		)
	}
	bar := newBar(f.patients, "generating and loading patients", "patients")
	res, err := load.Synthetic(ctx, st, synth.Config{Seed: f.seed, Patients: f.patients},
		func(n int) { bar.Add(n) },
		func(name string, total int) {
			bar.Finish()
			if total > 0 {
				bar = newBar(total, name, "rows")
			} else {
				bar = newBar(-1, name, "")
			}
		})
	bar.Finish()
	if err != nil {
		return res, err
	}
	if cs, ok := st.(load.CanaryStore); ok {
		n, err := load.Canaries(ctx, cs, synth.New(synth.Config{Seed: f.seed, Patients: f.patients}), load.CanariesPerFacility)
		if err != nil {
			return res, err
		}
		fmt.Fprintf(stderr, "%d canary patients planted (%d per facility): opening one suspends the account\n", n, load.CanariesPerFacility)
	}
	return res, nil
}

func runSeed(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("seed", "--data DIR | --db postgres://... [--patients N] [--seed S]", stderr)
	var sf storeFlags
	sf.register(fs, "")
	var f seedFlags
	f.register(fs, 5000)
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the load to this file")
	fs.BoolVar(&sf.clear, "insecure-clear", false, "benchmark baseline only: keep the resources in clear (no key file, no sealing)")
	if err := parse(fs, args); err != nil {
		return err
	}
	sf.createKey, sf.stderr = true, stderr
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if *cpuprofile != "" {
		pf, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	res, err := seedStore(ctx, st, sf.kr, f, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "loaded %d patients, %d resources in %.1fs into %s\n", res.Patients, res.Resources, res.Elapsed.Seconds(), sf.describe())
	return seedAccounts(ctx, st, synth.Config{Seed: f.seed, Patients: f.patients}, sf.usersPath(), stderr)
}

// usersPath is where demo-users.json goes: in the data directory (also
// with --db, so a PostgreSQL demo has one place for it); "" when there is
// none (seed --db without --data): no demo credentials are issued then.
func (sf *storeFlags) usersPath() string {
	if sf.data == "" {
		return ""
	}
	return filepath.Join(sf.data, demoUsersFile)
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("demo", "[--data DIR] [--addr HOST:PORT] [--patients N] [--seed S]", stderr)
	var sf storeFlags
	sf.register(fs, "./carnet-data")
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on")
	var f seedFlags
	f.register(fs, 5000)
	var so serveOptions
	so.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	sf.createKey, sf.stderr = true, stderr
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	stats, err := st.Stats(ctx)
	if err != nil {
		return err
	}
	if len(stats) == 0 {
		fmt.Fprintf(stderr, "creating a synthetic demo group of %d patients in %s\n", f.patients, sf.describe())
		res, err := seedStore(ctx, st, sf.kr, f, stderr)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "loaded %d resources in %.1fs\n", res.Resources, res.Elapsed.Seconds())
		if err := seedAccounts(ctx, st, synth.Config{Seed: f.seed, Patients: f.patients}, sf.usersPath(), stderr); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stderr, "reusing the existing store in %s (%d patients)\n", sf.describe(), stats["Patient"])
		if as, err := st.Accounts(ctx); err != nil {
			return err
		} else if len(as) == 0 {
			return fmt.Errorf("the store in %s has no accounts (made by an older Carnet): remove it and run carnet demo again", sf.describe())
		}
	}
	fmt.Fprintf(stderr, "log in as a demo user: see %s and the README\n", sf.usersPath())
	so.witness = sf.witnessDir()
	return serve(ctx, st, *addr, so, stdout, stderr)
}

func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("import", "[--data DIR | --db postgres://...] FILE...", stderr)
	var sf storeFlags
	sf.register(fs, "./carnet-data")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "carnet import: give at least one FILE (a FHIR Bundle JSON or an NDJSON file)")
		fs.Usage()
		return errUsage
	}
	sf.createKey, sf.stderr = true, stderr
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	var bar *progressbar.ProgressBar
	res, err := load.Import(ctx, record.New(st), fs.Args(), func(n int) {
		bar = progressbar.NewOptions(n, progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription("importing entries"),
			progressbar.OptionShowCount(), progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(stderr) }))
	}, func(n int) { bar.Add(n) })
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported %d entries from %d files: %d created, %d updated, %d unchanged, %d deleted\n",
		res.Entries, res.Files, res.Created, res.Updated, res.Unchanged, res.Deleted)
	return nil
}
