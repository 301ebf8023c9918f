package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/schollz/progressbar/v3"

	"carnet/internal/audit"
	"carnet/internal/incident"
)

// subcommand checks that args name the command's one subcommand, and
// prints its usage otherwise.
func subcommand(args []string, cmd, sub, synopsis string, stderr io.Writer) error {
	if len(args) > 0 && args[0] == sub {
		return nil
	}
	fmt.Fprintf(stderr, "Usage: carnet %s %s %s\n", cmd, sub, synopsis)
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
		return flag.ErrHelp
	}
	return errUsage
}

const (
	verifySynopsis = "[--data DIR | --db URL] [--witness DIR]"
	scopeSynopsis  = "(--account U | --session S | --client ADDR) [--since T] [--until T] [--format csv|json|md] [--notify DIR]"
)

func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if err := subcommand(args, "audit", "verify", verifySynopsis, stderr); err != nil {
		return err
	}
	fs := flags("audit verify", verifySynopsis, stderr)
	var sf storeFlags
	sf.register(fs, "./carnet-data")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	sf.noKeys = true // the log holds ids only: verifying it needs no key
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	total, err := st.AuditSize(ctx)
	if err != nil {
		return err
	}
	bar := progressbar.NewOptions64(total, progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription("verifying the audit log"),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("entries"),
		progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionOnCompletion(func() { fmt.Fprintln(stderr) }))
	start := time.Now()
	var last int64
	rep, err := audit.Verify(ctx, st, sf.witnessDir(), func(done int64) { bar.Add64(done - last); last = done })
	bar.Finish()
	if err != nil {
		return err
	}
	el := time.Since(start)
	if !rep.OK {
		if rep.BadIndex >= 0 {
			fmt.Fprintf(stdout, "TAMPERED: first bad entry %d: %s\n", rep.BadIndex, rep.Problem)
		} else {
			fmt.Fprintf(stdout, "TAMPERED: %s\n", rep.Problem)
		}
		return errTampered
	}
	fmt.Fprintf(stdout, "intact: %d entries, %d checkpoints verified (witness %s, latest witnessed size %d) in %.2fs\n",
		rep.Entries, rep.Checkpoints, sf.witnessDir(), rep.Witnessed, el.Seconds())
	return nil
}

var errTampered = fmt.Errorf("the audit log does not verify")

func runIncident(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "trace" {
		return runTrace(ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "scope" {
		fmt.Fprintf(stderr, "Usage: carnet incident trace %s\n", traceSynopsis)
	}
	if err := subcommand(args, "incident", "scope", scopeSynopsis, stderr); err != nil {
		return err
	}
	fs := flags("incident scope", scopeSynopsis, stderr)
	var sf storeFlags
	sf.register(fs, "./carnet-data")
	account := fs.String("account", "", "username or account id")
	session := fs.String("session", "", "token session id")
	client := fs.String("client", "", "client address")
	since := fs.String("since", "", "start of the window (RFC 3339 or YYYY-MM-DD)")
	until := fs.String("until", "", "end of the window (RFC 3339 or YYYY-MM-DD), exclusive")
	format := fs.String("format", "md", "csv, json or md")
	notify := fs.String("notify", "", "write the notification list (with names and contacts) and a GDPR art. 33 report draft into this directory")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	n := 0
	for _, v := range []string{*account, *session, *client} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		fmt.Fprintln(stderr, "carnet incident scope: give exactly one of --account, --session, --client")
		return errUsage
	}
	q := incident.Query{Account: *account, Session: *session, Client: *client}
	var err error
	if q.Since, err = parseWhen(*since); err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	if q.Until, err = parseWhen(*until); err != nil {
		return fmt.Errorf("--until: %w", err)
	}
	if *format != "csv" && *format != "json" && *format != "md" {
		return fmt.Errorf("--format must be csv, json or md")
	}
	// Patients' names and contacts (--notify) need the keys; the scope
	// itself comes from the log alone.
	sf.noKeys = *notify == ""
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	sc, err := incident.Scope(ctx, st, q)
	if err != nil {
		return err
	}
	if err := sc.Write(stdout, *format); err != nil {
		return err
	}
	if *notify != "" {
		alog, err := audit.Open(ctx, st, sf.witnessDir(), nil)
		if err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
		defer alog.Close(context.Background())
		files, err := incident.Notify(ctx, st, alog, sc, *notify)
		if err != nil {
			return err
		}
		for _, f := range files {
			fmt.Fprintf(stderr, "wrote %s\n", filepath.Clean(f))
		}
	}
	return nil
}

func parseWhen(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time (use RFC 3339, e.g. 2026-11-24T08:00:00Z, or 2026-11-24)", s)
}
