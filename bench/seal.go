package main

// The encryption at rest comparison: read and search workloads against the
// sealed bench store (carnet serve --insecure-open) and against a twin
// seeded alike in clear (carnet seed/serve --insecure-clear), with the same
// inputs, in alternating order, several times; the report gives the median
// req/s of each mode and their ratio, and the seeding times and sizes of
// both stores. SQLite only.

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
	modeClear  = "clear"
	modeSealed = "sealed"
)

// sealCmp: clear is the baseline, sealed should reach 0.85 of its req/s.
var sealCmp = &comparison{
	tag:        "seal",
	base:       modeClear,
	variant:    modeSealed,
	goal:       0.85,
	seedOffset: 70000,
	label:      func(name string) string { return name },
	index:      workloadIndex,
}

// sealSeeds are the seeds of a sealed store and of its clear twin.
type sealSeeds struct {
	sealed, clear seedResult
}

// sealConfig notes the comparison in the report's configuration, and why a
// backend is not compared.
func (h *harness) sealConfig() {
	o := h.o
	if len(o.sealWork) == 0 {
		return
	}
	var names []string
	for _, w := range o.sealWork {
		names = append(names, w.name)
	}
	if h.rep.sealOn {
		h.rep.config = append(h.rep.config, [2]string{"encryption at rest comparison",
			fmt.Sprintf("%s on SQLite at concurrency %s, %d runs per mode (sealed: carnet serve --insecure-open on the bench store; clear: carnet serve --insecure-open --insecure-clear on a twin made with carnet seed --insecure-clear)",
				strings.Join(names, ", "), joinInts(o.sealConc), o.sealReps)})
	} else {
		h.note("encryption at rest comparison not run: it runs on SQLite only, and -backends has no sqlite")
	}
	if slices.Contains(o.backends, "postgres") {
		h.note("encryption at rest comparison: SQLite only, the postgres store is not compared (it is sealed, like every store the harness seeds)")
	}
}

// sealCompare seeds the clear twin of sealed (seeded, no server running)
// and runs the -seal-workloads on both, alternating servers. It returns the
// workload inputs, gathered from the sealed store before any request
// changed it (nil when it failed before).
func (h *harness) sealCompare(ctx context.Context, sealed store, sealedSeed seedResult) (*inputs, error) {
	clear := sealed
	clear.dir = filepath.Join(h.work, "store-"+sealed.backend+"-clear")
	clear.clear = true
	fmt.Printf("bench: [%s] seeding %d patients in clear (--insecure-clear) for the encryption at rest comparison\n", sealed.backend, h.o.patients)
	sr, err := h.seedStore(ctx, clear, h.o.patients, "clear", "seed-"+sealed.backend+"-clear.log", 5*time.Minute)
	if !h.o.keep {
		defer clear.remove()
	}
	if err != nil {
		return nil, fmt.Errorf("seeding in clear: %w", err)
	}
	h.rep.sealSeeds = append(h.rep.sealSeeds, sealSeeds{sealed: sealedSeed, clear: sr})
	fmt.Printf("bench: [%s] %s\n", sealed.backend, h.rep.sealSeeds[len(h.rep.sealSeeds)-1].line())
	h.save()

	stores := map[string]store{modeSealed: sealed, modeClear: clear}
	var in *inputs
	checks := map[string]string{} // mode: what its data check found
	hk := abHooks{
		start: func(ctx context.Context, mode string, n int) (*server, error) {
			fmt.Printf("bench: [%s] carnet serve (%s) for the encryption at rest comparison\n", sealed.backend, mode)
			return serveCarnet(ctx, h.bin, stores[mode], true, filepath.Join(h.work, fmt.Sprintf("serve-%s-seal%d-%s.log", sealed.backend, n, mode)))
		},
		ready: func(ctx context.Context, srv *server, mode string) error {
			c := newAPIClient(srv.base)
			if in == nil {
				var err error
				if in, err = collectCarnet(ctx, c); err != nil {
					return fmt.Errorf("gathering inputs (%s): %w", mode, err)
				}
				h.inputsNote(sealed.backend, in)
				n := fmt.Sprintf("%s encryption at rest comparison: inputs gathered once from the %s store, the same ids and family names for both modes", sealed.backend, mode)
				fmt.Println("bench: " + n)
				h.note(n)
			}
			if _, done := checks[mode]; done {
				return nil
			}
			got, err := sameDataCheck(ctx, c, in)
			if err != nil {
				return fmt.Errorf("checking the %s store's data: %w", mode, err)
			}
			checks[mode] = got
			n := fmt.Sprintf("%s %s store: %s", sealed.backend, mode, got)
			fmt.Println("bench: " + n)
			h.note(n)
			if len(checks) == 2 && checks[modeSealed] != checks[modeClear] {
				h.fail(fmt.Sprintf("%s: the clear store does not answer like the sealed one (same seed and patients: it should); its numbers compare unlike data", sealed.backend))
			}
			return nil
		},
		sources: func(name string, t target, seed uint64) (func(int) loadgen.Source, loadgen.Request, error) {
			w, ok := workloadByName(name)
			if !ok {
				return nil, loadgen.Request{}, fmt.Errorf("unknown workload %q", name)
			}
			return w.sources(t, in, h.bodies, seed)
		},
	}
	names := make([]string, len(h.o.sealWork))
	for i, w := range h.o.sealWork {
		names[i] = w.name
	}
	err = h.abCompare(ctx, sealCmp, sealed.backend, names, h.o.sealConc, h.o.sealReps, &h.rep.sealRows, hk)
	return in, err
}

// sameDataCheck summarizes what a store answers to the inputs: the mean
// matches of the family searches and how many of (up to) 200 of the read
// ids it finds. Both stores of the comparison must give the same summary.
func sameDataCheck(ctx context.Context, c *apiClient, in *inputs) (string, error) {
	avg, err := avgTotal(ctx, c, in.families)
	if err != nil {
		return "", err
	}
	n := min(len(in.patientIDs), 200)
	found := 0
	for i := range n {
		id := in.patientIDs[i*len(in.patientIDs)/n]
		status, err := c.get(ctx, "/Patient/"+id, nil)
		switch {
		case err == nil:
			found++
		case status == 0:
			return "", err
		}
	}
	return fmt.Sprintf("a family search of the %d names matches %.1f patients on average; %d of %d sampled read ids found", len(in.families), avg, found, n), nil
}

// line compares the two seeds: wall time and size on disk.
func (s sealSeeds) line() string {
	ratio := func(a, b float64) string {
		if b <= 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	return fmt.Sprintf("seeding %s patients (one run each): sealed %.1f s, clear %.1f s (sealed/clear %s); size on disk: sealed %s, clear %s (sealed/clear %s)",
		thousands(int64(s.sealed.patients)), s.sealed.wall.Seconds(), s.clear.wall.Seconds(), ratio(s.sealed.wall.Seconds(), s.clear.wall.Seconds()),
		sizeStr(s.sealed.size), sizeStr(s.clear.size), ratio(float64(s.sealed.size), float64(s.clear.size)))
}

func (r *report) sealSummaries() []*abSummary { return summaries(sealCmp, r.sealRows) }

// sealMarkdown is the "Encryption at rest cost" section.
func (r *report) sealMarkdown() string {
	var b strings.Builder
	b.WriteString("Workloads of the Workloads table (same requests, same inputs) run against `carnet serve --insecure-open` on the bench store, ")
	b.WriteString("sealed at rest (**sealed**: every stored version AES-256-GCM sealed, searches through HMAC blind indexes), ")
	b.WriteString("and against `carnet serve --insecure-open --insecure-clear` on a twin store made with `carnet seed --insecure-clear` from the same seed and patient count (**clear**), ")
	b.WriteString("before the Workloads runs, so that both stores hold the same data. The inputs are gathered once, from the sealed store. ")
	b.WriteString("The modes alternate (sealed, clear, clear, sealed, ...), one server at a time. ")
	fmt.Fprintf(&b, "req/s and p99 are medians over the runs; **sealed/clear** is the ratio of the median req/s (goal >= %.2f). SQLite only.\n\n", sealCmp.goal)
	for _, s := range r.sealSeeds {
		b.WriteString("- " + s.sealed.backend + ": " + s.line() + "\n")
	}
	if len(r.sealSeeds) > 0 {
		b.WriteString("\n")
	}
	b.WriteString(abTable(sealCmp, r.sealSummaries()))
	return b.String()
}
