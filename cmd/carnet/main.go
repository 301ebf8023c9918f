// Command carnet is the Carnet patient-record server and its tools.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"demo", "create a demo group in a data directory if empty, then serve it", runDemo},
		{"serve", "serve an existing store over HTTP", runServe},
		{"seed", "load a synthetic group into an empty store and exit", runSeed},
		{"import", "load FHIR Bundle (JSON) or NDJSON files into a store", runImport},
		{"user", "manage staff accounts: add, list, show, disable, enable, reset-mfa, grant, revoke", runUser},
		{"keys", "encryption keys: keys init, status, rotate, reseal", runKeys},
		{"audit", "verify the audit log against its signed checkpoints and witness: audit verify", runAudit},
		{"incident", "after an incident: which patients an account was shown (scope), which export a leaked sample came from (trace)", runIncident},
		{"sim", "the attack replay: stolen accounts against the guard, and 30 days of normal work", runSim},
		{"otp", "print the current one-time code of a TOTP secret (demo users, scripts)", runOTP},
		{"version", "print the version", runVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Carnet %s: a patient-record server (FHIR R4).\n\nUsage: carnet <command> [flags]\n\nCommands:\n", versionString())
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'carnet <command> --help' for a command's flags.\n")
}

// errUsage marks errors already explained by a usage message (exit 2).
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(ctx, args[1:], stdout, stderr)
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.Is(err, errUsage):
				return 2
			default:
				fmt.Fprintf(stderr, "carnet %s: %v\n", c.name, err)
				return 1
			}
		}
	}
	fmt.Fprintf(stderr, "carnet: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// flags returns a FlagSet whose usage lists the command's flags.
func flags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: carnet %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
	}
	return v
}

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("version", "", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "carnet %s\n", versionString())
	return nil
}
