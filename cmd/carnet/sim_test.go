package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSimCommand(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "bench", "ATTACKS.md")
	code, stdout, stderr := runCmd(t, "sim", "--patients", "600", "--staff", "80", "--scenarios", "S1,s6,normal",
		"--warmup", "0", "--days", "1", "--work-dir", filepath.Join(dir, "work"), "--out", out)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	for _, want := range []string{"S1   MET", "S6   MET", "work", "report: " + out} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	for _, want := range []string{"0 warm-up + 1 measured days", "user-days", "S6: an admission clerk"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr (progress) lacks %q", want)
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	for _, want := range []string{"# Attack replay", "Command: `carnet sim --patients 600", "Machine:", "## S1:", "## S6:", "## Normal work", "## Limits in force"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(md, "## S2:") {
		t.Error("report has S2, which was not asked for")
	}
	if code, _, stderr := runCmd(t, "sim", "--patients", "600", "--scenarios", "S9"); code != 1 || !strings.Contains(stderr, "unknown scenario") {
		t.Errorf("unknown scenario: exit %d, %q", code, stderr)
	}
}
