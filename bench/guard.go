package main

// The guard cost comparison: the physician's workloads, authenticated, on
// the normal carnet serve (token, policy, exfiltration guard, audit) and on
// carnet serve --insecure-no-guard (the same without the guard), on the same
// store, in alternating order, several times; the report gives the median
// req/s of each mode and their ratio. And the fully secured Patient read
// beside the peer's read at the same concurrency.

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"carnet/bench/loadgen"
)

const (
	modeGuard   = "guard"
	modeNoGuard = "no-guard"
)

// guardCmp: no-guard is the baseline, guard (the normal server) should
// reach 0.90 of its req/s.
var guardCmp = &comparison{
	tag:        "guard",
	base:       modeNoGuard,
	variant:    modeGuard,
	goal:       0.90,
	seedOffset: 90000,
	label:      authLabel,
	index:      authWorkloadIndex,
}

// parseGuardFlags turns the -guard-* flags into options.
func parseGuardFlags(o *options, wls, conc string) {
	for _, s := range splitList(wls) {
		w, ok := authWorkloadByName(s)
		if !ok {
			fatalf("-guard-workloads: unknown workload %q (want read, search-family, create)", s)
		}
		o.guardWork = append(o.guardWork, w)
	}
	o.guardConc = parseConc("-guard-conc", conc)
	if conc == "" {
		o.guardConc = []int{slices.Max(o.conc)}
	}
	if o.guardReps < 1 {
		fatalf("-guard-reps must be > 0")
	}
}

// guardConfig notes the comparison in the report's configuration.
func (h *harness) guardConfig() {
	o := h.o
	h.rep.guardOn = len(o.guardWork) > 0
	if !h.rep.guardOn {
		return
	}
	var names []string
	for _, w := range o.guardWork {
		names = append(names, w.name)
	}
	h.rep.config = append(h.rep.config, [2]string{"guard cost comparison",
		fmt.Sprintf("%s at concurrency %s, %d runs per mode (guard: carnet serve, the physician's bearer token, session stepped up; no-guard: the same with --insecure-no-guard)",
			strings.Join(names, ", "), joinInts(o.guardConc), o.guardReps)})
}

// guardCompare runs the -guard-workloads authenticated on st (seeded, no
// server running) with and without the guard, alternating servers (guard
// first).
func (h *harness) guardCompare(ctx context.Context, st store) error {
	ps, err := h.physSession(st)
	if err != nil {
		return err
	}
	hk := abHooks{
		start: func(ctx context.Context, mode string, n int) (*server, error) {
			fmt.Printf("bench: [%s] carnet serve (%s) for the guard cost comparison\n", st.backend, mode)
			var extra []string
			if mode == modeNoGuard {
				extra = []string{"--insecure-no-guard"}
			}
			return serveCarnet(ctx, h.bin, st, false, filepath.Join(h.work, fmt.Sprintf("serve-%s-guard%d-%s.log", st.backend, n, mode)), extra...)
		},
		ready: func(ctx context.Context, srv *server, mode string) error {
			_, err := ps.ready(ctx, h, srv, st.backend+" guard comparison", false, mode == modeGuard)
			return err
		},
		header: func(ctx context.Context, srv *server, mode string) ([]string, error) {
			return ps.cellHeader(ctx, h, srv, mode == modeGuard)
		},
		sources: ps.sources,
	}
	names := make([]string, len(h.o.guardWork))
	for i, w := range h.o.guardWork {
		names[i] = w.name
	}
	err = h.abCompare(ctx, guardCmp, st.backend, names, h.o.guardConc, h.o.guardReps, &h.rep.guardRows, hk)
	h.sessionNote(st.backend, "guard comparison", ps, h.rep.guardRows)
	return err
}

func (r *report) guardSummaries() []*abSummary { return summaries(guardCmp, r.guardRows) }

// guardMarkdown is the "Guard cost" section.
func (r *report) guardMarkdown() string {
	var b strings.Builder
	b.WriteString("The physician-scoped workloads, authenticated with the bearer token of the first demo physician in both modes, ")
	b.WriteString("against the normal `carnet serve` (**guard**: token, policy, exfiltration guard, durable audit) ")
	b.WriteString("and against `carnet serve --insecure-no-guard` (**no-guard**: the same without the guard), on the same store with the same requests. ")
	b.WriteString("His session logs in once and steps up once (`POST /auth/step-up` with a fresh TOTP code: his patients are more than a physician's 20 new patients in ten minutes), ")
	b.WriteString("and on each start of a server with the guard the harness reads each of his patients once before any measured cell, ")
	b.WriteString("waiting out the guard's throttle the first time (more than 30 new patients in a minute): the measured cells see the guard's fast path ")
	b.WriteString("(patients it already counted for him), and a 401 or 429 in them would be an error. ")
	b.WriteString("The modes alternate (guard, no-guard, no-guard, guard, ...), one server at a time. ")
	fmt.Fprintf(&b, "req/s and p99 are medians over the runs; **guard/no-guard** is the ratio of the median req/s (goal >= %.2f: the guard costs at most 10%% of the throughput).\n\n", guardCmp.goal)
	b.WriteString(abTable(guardCmp, r.guardSummaries()))
	return b.String()
}

// securedRead is one measurement of the fully secured Patient read.
type securedRead struct {
	source  string // where it comes from
	backend string
	conc    int
	rps     float64 // median req/s
	p99     time.Duration
	runs    int
}

// securedReads are the fully secured reads of the physician (sealed store,
// token, policy, guard, durable audit): the auth mode of the authentication
// comparison and the guard mode of the guard comparison.
func (r *report) securedReads() []securedRead {
	var out []securedRead
	add := func(source string, sums []*abSummary) {
		for _, s := range sums {
			if s.workload != "read" || len(s.variant) == 0 {
				continue
			}
			out = append(out, securedRead{source: source, backend: s.backend, conc: s.conc,
				rps: medianOf(s.variant, throughput), p99: time.Duration(medianOf(s.variant, p99ms)), runs: len(s.variant)})
		}
	}
	add("authentication comparison, auth", r.authSummaries())
	add("guard cost comparison, guard", r.guardSummaries())
	return out
}

// peerRow finds the peer's result for workload at conc.
func (r *report) peerRow(workload string, conc int) *loadgen.Result {
	for _, x := range r.rows {
		if x.backend == "peer" && x.workload == workload && x.conc == conc && x.res != nil && x.res.Requests > 0 {
			return x.res
		}
	}
	return nil
}

// securedPeerGoal: the fully secured read should stay ahead of the peer.
const securedPeerGoal = 1.0

// securedPeerMarkdown is the "Secured read vs the peer" section.
func (r *report) securedPeerMarkdown() string {
	var b strings.Builder
	b.WriteString("Carnet's fully secured Patient read — sealed store (AES-256-GCM at rest), bearer token, role and care-relationship policy, exfiltration guard (session stepped up), durable audit entry per request — ")
	b.WriteString("beside the peer's Patient read (the Workloads table: Medplum's FHIR router over its in-memory repository, no authentication, no persistence) at the same concurrency, in the same run. ")
	b.WriteString("Carnet's req/s and p99 are the medians of the secured mode's runs (`GET [base]/Patient/{id}` of the demo physician's patients); ")
	b.WriteString("the peer's are its single read cell (`GET [base]/Patient/{id}` of 5,000 of its patients). ")
	fmt.Fprintf(&b, "**secured/peer** > %.2f: Carnet, fully secured, serves more reads per second than the unsecured peer.\n\n", securedPeerGoal)
	var rows [][]string
	for _, s := range r.securedReads() {
		row := []string{s.source, s.backend, fmt.Sprint(s.conc), rps(s.rps), ms(s.p99), fmt.Sprint(s.runs)}
		if p := r.peerRow("read", s.conc); p != nil {
			ratio := "-"
			if p.Throughput > 0 {
				ratio = "**" + ratioStr(s.rps/p.Throughput, securedPeerGoal) + "**"
			}
			row = append(row, rps(p.Throughput), ms(p.P99), ratio)
		} else {
			row = append(row, "not measured", "-", "-")
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		b.WriteString("Not measured: no secured read ran (`-auth-workloads` or `-guard-workloads` with read).\n")
		return b.String()
	}
	b.WriteString(mdTable([]string{"Carnet measurement", "backend", "concurrency", "secured req/s", "secured p99 ms", "runs", "peer req/s", "peer p99 ms", "secured/peer"}, rows, 2))
	for _, s := range r.securedReads() {
		if r.peerRow("read", s.conc) == nil {
			fmt.Fprintf(&b, "\nThe peer's read was not measured at concurrency %d: it needs `-peer`, `read` in `-workloads` and %d in `-conc`.\n", s.conc, s.conc)
			break
		}
	}
	return b.String()
}
