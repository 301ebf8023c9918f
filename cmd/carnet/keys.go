package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"

	"carnet/internal/seal"
)

const keysSynopsis = "init|status|rotate|reseal [--data DIR | --db URL] [--key-file FILE]"

// runKeys manages the key-encryption key and the data keys.
func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	switch sub {
	case "init", "status", "rotate", "reseal":
	default:
		fmt.Fprintf(stderr, "Usage: carnet keys %s\n\n"+
			"  init    create the key-encryption key file (0600), outside the data directory\n"+
			"  status  the key file in use and the data keys (scope, state)\n"+
			"  rotate  new key file (the old one is kept as FILE.retired-TIME), every data key rewrapped\n"+
			"          with it, new data keys for new data (the server stopped, on SQLite)\n"+
			"  reseal  re-encrypt what retired data keys sealed, with progress; resumable\n", keysSynopsis)
		if sub == "-h" || sub == "--help" {
			return flag.ErrHelp
		}
		return errUsage
	}
	fs := flags("keys "+sub, keysSynopsis, stderr)
	var sf storeFlags
	sf.register(fs, "./carnet-data")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	path := sf.keyPath()
	if sub == "init" {
		kek, err := seal.InitKeyFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created %s (key %s). Keep it outside the data directory and its backups, and back it up apart: without it the data cannot be read.\n", path, kek.ID())
		return nil
	}
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if sf.kr == nil {
		return fmt.Errorf("the store in %s is not sealed", sf.describe())
	}
	switch sub {
	case "status":
		kek, keys := sf.kr.Status()
		fmt.Fprintf(stdout, "key file %s (key %s)\n", path, kek)
		for _, k := range keys {
			scope, state := k.Scope, "current"
			if scope == "" {
				scope = "(group)"
			}
			if k.Retired {
				state = "retired"
			}
			fmt.Fprintf(stdout, "data key %d\t%s\t%s\tcreated %s\n", k.Num, scope, state, k.Created.Format(time.RFC3339))
		}
		return nil
	case "rotate":
		next := path + ".next"
		nk, err := seal.InitKeyFile(next)
		if err != nil {
			return fmt.Errorf("%w (a rotation that stopped halfway leaves %s: if the store's keys are wrapped by it, it is the key; otherwise remove it)", err, next)
		}
		if err := sf.kr.Rotate(ctx, nk); err != nil {
			os.Remove(next)
			return err
		}
		retired := path + ".retired-" + time.Now().UTC().Format("20060102T150405Z")
		if err := os.Rename(path, retired); err != nil && !errors.Is(err, iofs.ErrNotExist) {
			return fmt.Errorf("the keys are rewrapped with %s, but %s could not be moved aside: %w", next, path, err)
		}
		if err := os.Rename(next, path); err != nil {
			return fmt.Errorf("the keys are rewrapped with %s, but it could not be renamed to %s: %w", next, path, err)
		}
		fmt.Fprintf(stdout, "rotated: data keys rewrapped with the new key %s in %s (the old key file is %s: destroy it once backups made with it have expired); new data keys are in use. Run 'carnet keys reseal' to re-encrypt older records.\n", nk.ID(), path, retired)
		return nil
	default: // reseal
		var bar *progressbar.ProgressBar
		n, err := st.Reseal(ctx, func(done, total int64) {
			if bar == nil {
				bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription("resealing"),
					progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("versions"),
					progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionOnCompletion(func() { fmt.Fprintln(stderr) }))
			}
			bar.Set64(done)
		})
		if bar != nil {
			bar.Finish()
		}
		if err != nil {
			return fmt.Errorf("%w (run it again to resume: what is resealed stays resealed)", err)
		}
		fmt.Fprintf(stdout, "resealed %d record versions with the current data keys\n", n)
		return nil
	}
}
