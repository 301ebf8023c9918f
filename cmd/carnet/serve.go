package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"time"

	"github.com/schollz/progressbar/v3"

	"carnet/internal/api"
	"carnet/internal/load"
	"carnet/internal/record"
	"carnet/internal/store"
	"carnet/internal/store/postgres"
	"carnet/internal/store/sqlite"
	"carnet/internal/synth"
)

// storeFlags are the flags that choose a store.
type storeFlags struct {
	data, db string
}

func (sf *storeFlags) register(fs *flag.FlagSet, defData string) {
	fs.StringVar(&sf.data, "data", defData, "data directory of the embedded SQLite store")
	fs.StringVar(&sf.db, "db", os.Getenv("CARNET_DB"), "PostgreSQL URL (postgres://...); overrides --data (env CARNET_DB)")
}

func (sf *storeFlags) open(ctx context.Context) (store.Store, error) {
	if sf.db != "" {
		return postgres.Open(ctx, sf.db)
	}
	if sf.data == "" {
		return nil, fmt.Errorf("give --data DIR or --db postgres://...")
	}
	return sqlite.Open(ctx, sf.data)
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
	return serve(ctx, st, *addr, stdout, stderr)
}

func serve(ctx context.Context, st store.Store, addr string, stdout, stderr io.Writer) error {
	if os.Getenv("GOGC") == "" {
		// A server's heap is small and short-lived garbage dominates: trade
		// some memory for less GC work on the request path.
		debug.SetGCPercent(400)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv := &http.Server{
		Handler:           api.New(st, api.Options{Logger: logger, Version: version}),
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
	fmt.Fprintf(stdout, "Carnet %s serving %s at http://%s/fhir\n", version, st.Backend(), ln.Addr())
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

func seedStore(ctx context.Context, st store.Store, f seedFlags, stderr io.Writer) (*load.SyntheticResult, error) {
	if f.patients < 0 {
		return nil, fmt.Errorf("--patients must be >= 0")
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
	return res, err
}

func runSeed(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("seed", "--data DIR | --db postgres://... [--patients N] [--seed S]", stderr)
	var sf storeFlags
	sf.register(fs, "")
	var f seedFlags
	f.register(fs, 5000)
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the load to this file")
	if err := parse(fs, args); err != nil {
		return err
	}
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
	res, err := seedStore(ctx, st, f, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "loaded %d patients, %d resources in %.1fs into %s\n", res.Patients, res.Resources, res.Elapsed.Seconds(), sf.describe())
	return nil
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("demo", "[--data DIR] [--addr HOST:PORT] [--patients N] [--seed S]", stderr)
	var sf storeFlags
	sf.register(fs, "./carnet-data")
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on")
	var f seedFlags
	f.register(fs, 5000)
	if err := parse(fs, args); err != nil {
		return err
	}
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
		res, err := seedStore(ctx, st, f, stderr)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "loaded %d resources in %.1fs\n", res.Resources, res.Elapsed.Seconds())
	} else {
		fmt.Fprintf(stderr, "reusing the existing store in %s (%d patients)\n", sf.describe(), stats["Patient"])
	}
	return serve(ctx, st, *addr, stdout, stderr)
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
