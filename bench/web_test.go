package main

import "testing"

func TestParseChartBench(t *testing.T) {
	out := "goos: linux\nBenchmarkChartRender-2   \t     200\t  16776519 ns/op\t        11.30 cpu-ms/op\t        15.51 p50-ms\t        27.75 p95-ms\t        40.02 page-KiB\nPASS\n"
	r, err := parseChartBench(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.n != 200 || r.cpu != 11.30 || r.p50 != 15.51 || r.p95 != 27.75 {
		t.Fatalf("parsed %+v", r)
	}
	if _, err := parseChartBench("PASS\n"); err == nil {
		t.Fatal("no benchmark line parsed as a result")
	}
	r.p95 = 60
	if l := r.line(); l[len(l)-len("ABOVE GOAL"):] != "ABOVE GOAL" {
		t.Fatalf("a p95 over the goal is not flagged: %s", l)
	}
}
