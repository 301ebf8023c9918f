package main

// The web application's page render: BenchmarkChartRender of internal/web
// (the chart of a patient with 200 stays, through the whole page path: the
// session, the in-process API calls with their policy, guard and durable
// audit, the templates), run from the module root; the report gives its
// median and 95th percentile against the goal.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
)

// chartP95Goal is issue 7's goal for the chart's server-side render.
const chartP95Goal = 50.0 // ms

// webBenchResult is the go test BenchmarkChartRender run.
type webBenchResult struct {
	p50, p95, cpu float64 // ms
	n             int
	skipped, err  string
}

var chartRE = regexp.MustCompile(`(?m)^BenchmarkChartRender\S*\s+([0-9]+)\s.*?\s([0-9.]+) cpu-ms/op\s.*?\s([0-9.]+) p50-ms\s+([0-9.]+) p95-ms`)

// parseChartBench finds the metrics of BenchmarkChartRender in go test output.
func parseChartBench(out string) (*webBenchResult, error) {
	m := chartRE.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return nil, errors.New("no BenchmarkChartRender line with cpu-ms/op, p50-ms and p95-ms in the output")
	}
	last := m[len(m)-1]
	r := &webBenchResult{}
	r.n, _ = strconv.Atoi(last[1])
	r.cpu, _ = strconv.ParseFloat(last[2], 64)
	r.p50, _ = strconv.ParseFloat(last[3], 64)
	r.p95, _ = strconv.ParseFloat(last[4], 64)
	return r, nil
}

func (r *webBenchResult) line() string {
	switch {
	case r == nil:
		return "BenchmarkChartRender: not run"
	case r.skipped != "":
		return "BenchmarkChartRender: not run (" + r.skipped + ")"
	case r.err != "":
		return "BenchmarkChartRender: ERROR: " + r.err
	}
	s := fmt.Sprintf("chart of a patient with 200 stays (BenchmarkChartRender, %d renders): median %.1f ms, p95 %.1f ms (goal <= %.0f ms), %.1f ms of CPU per chart", r.n, r.p50, r.p95, chartP95Goal, r.cpu)
	if r.p95 > chartP95Goal {
		s += " ABOVE GOAL"
	}
	return s
}

// webBench runs BenchmarkChartRender of internal/web from the module root.
func (h *harness) webBench(ctx context.Context) error {
	r := &webBenchResult{}
	h.rep.webBench = r
	defer h.save()
	out, skipped, runErr, err := h.goBench(ctx, "web benchmark", "./internal/web/", "BenchmarkChartRender", "1000x", "web-bench.log")
	r.skipped, r.err = skipped, runErr
	if err != nil || skipped != "" || runErr != "" {
		fmt.Println("bench: " + r.line())
		return err
	}
	got, perr := parseChartBench(out)
	if perr != nil {
		r.err = fmt.Sprintf("%v (log %s)", perr, filepath.Join(h.work, "web-bench.log"))
		h.failed = true
	} else {
		*r = *got
	}
	fmt.Println("bench: " + r.line())
	return nil
}

// webMarkdown is the "Web pages" section.
func (r *report) webMarkdown() string {
	return "Server-side render of the clinician web application's chart page for a patient with 200 stays (conditions, observations with their trend charts, prescriptions, billing), through the whole page path: session cookie, in-process API calls with the token check, policy, guard and a durable audit entry each, then the templates; measured by `go test ./internal/web/ -run XXX -bench '^BenchmarkChartRender$' -benchtime 1000x` on the same machine right after the other phases.\n\n- " + r.webBench.line() + "\n"
}
