package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"

	"carnet/internal/incident"
)

const traceSynopsis = "[--data DIR | --db URL] [--format text|json] FILE"

// maxSampleBytes bounds the sample read (a leaked sample is a few rows; a
// whole leaked file can be cut down to a few thousand first).
const maxSampleBytes = 64 << 20

// runTrace: carnet incident trace FILE. It names the export a leaked
// sample came from (facility, export, requester, approver, time,
// recipient) with a confidence, or says it matches none. It reads export
// requests and the audit log, never patient records: no key is needed.
func runTrace(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("incident trace", traceSynopsis, stderr)
	var sf storeFlags
	sf.register(fs, "./carnet-data")
	format := fs.String("format", "text", "text or json")
	// Flags may come after FILE too.
	var files []string
	rest := args
	for {
		if err := parse(fs, rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(files) != 1 {
		fmt.Fprintf(stderr, "carnet incident trace: give exactly one sample FILE (CSV, JSON or NDJSON; - for standard input)\n")
		fs.Usage()
		return errUsage
	}
	if *format != "text" && *format != "json" {
		return fmt.Errorf("--format must be text or json")
	}
	data, err := readSample(files[0])
	if err != nil {
		return err
	}
	sample, err := incident.ParseSample(data)
	if err != nil {
		return fmt.Errorf("%s: %w", files[0], err)
	}
	sf.noKeys = true // export requests and the audit log hold no patient data
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	var bar *progressbar.ProgressBar
	progress := func(done, total int) {
		if total < 500 {
			return
		}
		if bar == nil {
			bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription("weighing exports"),
				progressbar.OptionShowCount(), progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionOnCompletion(func() { fmt.Fprintln(stderr) }))
		}
		bar.Set(done)
	}
	rep, err := incident.Trace(ctx, st, sample, progress)
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		return err
	}
	return rep.Write(stdout, *format)
}

func readSample(name string) ([]byte, error) {
	var r io.Reader
	if name == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxSampleBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSampleBytes {
		return nil, fmt.Errorf("%s: more than %d MiB: cut the leaked file down to a sample of rows first", name, maxSampleBytes>>20)
	}
	return data, nil
}
