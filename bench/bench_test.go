package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"carnet/bench/loadgen"
)

func TestParseResources(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "seed.log")
	os.WriteFile(p, []byte("generating 45% (900/2000, 3000 patients/s)\rgenerating 100%\nloaded 2000 patients, 21863 resources in 1.4s into SQLite in /x\n"), 0o644)
	if got := parseResources(p); got != 21863 {
		t.Fatalf("got %d", got)
	}
	os.WriteFile(p, []byte("nothing here\n"), 0o644)
	if got := parseResources(p); got != -1 {
		t.Fatalf("got %d", got)
	}
}

func TestRunLoggedStall(t *testing.T) {
	if _, err := exec.LookPath("sleep"); err != nil {
		t.Fatal("this test needs the coreutils sleep command")
	}
	p := filepath.Join(t.TempDir(), "x.log")
	t0 := time.Now()
	_, err := runLogged(context.Background(), exec.Command("sleep", "30"), p, time.Second)
	if err == nil || !strings.Contains(err.Error(), "stalled") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Fatalf("took %v", d)
	}
	if _, err := runLogged(context.Background(), exec.Command("true"), p, time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestReportRatioAndOrder(t *testing.T) {
	r := &report{}
	r.rows = []row{
		{workload: "create", backend: "sqlite", conc: 1, res: &loadgen.Result{Requests: 10, Throughput: 300}},
		{workload: "read", backend: "peer", conc: 8, res: &loadgen.Result{Requests: 10, Throughput: 1000}},
		{workload: "read", backend: "sqlite", conc: 8, res: &loadgen.Result{Requests: 10, Throughput: 2500, P50: 1500 * time.Microsecond}},
		{workload: "read", backend: "postgres", conc: 1, note: "seed failed"},
		{workload: "search-family", backend: "peer", conc: 64, res: &loadgen.Result{Unfinished: 64}},
	}
	md := r.markdown()
	for _, want := range []string{
		"| read | sqlite | 8 | 2500 | 1.50 | 0.00 | 0 | 2.50 |",
		"| read | postgres | 1 | - | - | - | seed failed |  |",
		"| search-family | peer | 64 | 0 | - | - | no response in window (64 unfinished) |  |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in\n%s", want, md)
		}
	}
	// read before create; within read, conc 1 before 8, sqlite before peer.
	iPG, iSQ, iPeer, iCreate := strings.Index(md, "| read | postgres"), strings.Index(md, "| read | sqlite"), strings.Index(md, "| read | peer"), strings.Index(md, "| create |")
	if !(iPG < iSQ && iSQ < iPeer && iPeer < iCreate) {
		t.Errorf("row order wrong:\n%s", md)
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 758912: "758,912", 1234567: "1,234,567", -1: "n/a"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
