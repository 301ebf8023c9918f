package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// runAttacks runs the attack replay, carnet sim, with extra flags args (a
// space-separated list, e.g. "--patients 100000 --scenarios S2,S6"), and
// writes bench/ATTACKS.md: go run ./bench -attacks [-attacks-args "..."].
func runAttacks(ctx context.Context, bin, args string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if bin == "" {
		work, err := os.MkdirTemp("", "carnet-attacks-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(work)
		fmt.Println("bench: go build ./cmd/carnet")
		if bin, err = buildCarnet(ctx, root, work); err != nil {
			return err
		}
	}
	argv := append([]string{"sim", "--out", filepath.Join(root, "bench", "ATTACKS.md")}, strings.Fields(args)...)
	fmt.Printf("bench: carnet %s\n", strings.Join(argv, " "))
	cmd := exec.CommandContext(ctx, bin, argv...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("carnet sim: %w", err)
	}
	return nil
}
