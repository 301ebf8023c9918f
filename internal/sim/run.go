package sim

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"carnet/internal/guard"
)

// Normal is the id of the normal-work scenario.
const Normal = "normal"

// Options choose what a run does.
type Options struct {
	// Scenarios to run, by id (S1, S1b, S2, S3, S3w, S4, S5, S6, normal);
	// empty: all.
	Scenarios []string
	Work      WorkOptions
	// NoGuard runs without the exfiltration guard (the baseline: what the
	// attackers get without it).
	NoGuard bool
	// Limits replace guard.DefaultLimits.
	Limits map[string]guard.Limits
	// Progress receives a line per step (stderr).
	Progress io.Writer
}

// IDs lists every scenario id, in order.
func IDs() []string {
	var out []string
	for _, s := range Scenarios() {
		out = append(out, s.ID)
	}
	return append(out, Normal)
}

// Report is a run's outcome.
type Report struct {
	Results []*Result
	Work    *WorkResult
	NoGuard bool
	Limits  map[string]guard.Limits
	Started time.Time
	Real    time.Duration
	workOpt WorkOptions
}

// Runner runs scenarios over one world, each against a fresh start: a new
// server with a fresh guard (its tables emptied), the clock back at the
// scenario's start, and accounts no earlier scenario used.
type Runner struct {
	World *World
	opt   Options

	mu   sync.Mutex
	used map[int]bool // staff indexes used by a scenario
	ips  int
}

// NewRunner returns a runner over w.
func NewRunner(w *World, opt Options) *Runner {
	if opt.Progress == nil {
		opt.Progress = io.Discard
	}
	if opt.Limits == nil {
		opt.Limits = guard.DefaultLimits
	}
	return &Runner{World: w, opt: opt, used: map[int]bool{}}
}

func (r *Runner) isUsed(i int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.used[i]
}

func (r *Runner) use(i int) {
	r.mu.Lock()
	r.used[i] = true
	r.mu.Unlock()
}

func (r *Runner) printf(format string, args ...any) {
	fmt.Fprintf(r.opt.Progress, format+"\n", args...)
}

// Run runs the chosen scenarios, attacks first (on the world as loaded),
// then normal work (which changes the world: admissions, prescriptions).
func (r *Runner) Run(ctx context.Context) (*Report, error) {
	want := r.opt.Scenarios
	if len(want) == 0 {
		want = IDs()
	}
	for _, id := range want {
		if !slices.Contains(IDs(), id) {
			return nil, fmt.Errorf("sim: unknown scenario %q (want %s)", id, strings.Join(IDs(), ", "))
		}
	}
	rep := &Report{NoGuard: r.opt.NoGuard, Limits: r.opt.Limits, Started: time.Now(), workOpt: r.opt.Work}
	rep.workOpt.defaults()
	for i, sc := range Scenarios() {
		if !slices.Contains(want, sc.ID) {
			continue
		}
		res, err := r.RunScenario(ctx, sc, int64(i))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sc.ID, err)
		}
		rep.Results = append(rep.Results, res)
	}
	if slices.Contains(want, Normal) {
		wr, err := r.RunWork(ctx)
		if err != nil {
			return nil, fmt.Errorf("normal work: %w", err)
		}
		rep.Work = wr
	}
	rep.Real = time.Since(rep.Started)
	return rep, nil
}

func (r *Runner) env(ctx context.Context, start, until time.Time, slot time.Duration, seed int64) (*Env, error) {
	st, err := NewStack(ctx, r.World, StackOptions{NoGuard: r.opt.NoGuard, Limits: r.opt.Limits, Start: start})
	if err != nil {
		return nil, err
	}
	return &Env{World: r.World, Stack: st, Sched: NewSched(st.Clock, slot, until),
		Rand: rand.New(rand.NewPCG(uint64(r.World.Config.Seed), uint64(seed))), r: r, transports: map[string]*http.Transport{}}, nil
}

func (e *Env) close() {
	e.Stack.Close()
	for _, t := range e.transports {
		t.CloseIdleConnections()
	}
}

// RunScenario runs one attack scenario against a fresh start.
func (r *Runner) RunScenario(ctx context.Context, sc Scenario, seed int64) (*Result, error) {
	start := r.World.Epoch.Add(9 * time.Hour)
	e, err := r.env(ctx, start, start.Add(time.Duration(sc.Hours)*time.Hour), time.Second, seed)
	if err != nil {
		return nil, err
	}
	defer e.close()
	r.printf("%s: %s ...", sc.ID, sc.Title)
	res := &Result{ID: sc.ID, Title: sc.Title, Target: sc.Target}
	t0 := time.Now()
	var runErr error
	e.Sched.Go(func() { runErr = sc.Run(ctx, e, res) })
	e.Sched.Wait()
	if runErr != nil {
		return nil, runErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.Real = time.Since(t0)
	if res.Stopped == "" {
		res.Stopped = "not stopped (got all it reached)"
	}
	met := "MET"
	if !res.Met {
		met = "NOT MET"
	}
	r.printf("%s: %d patients disclosed, %d requests, %d step-ups, %d alerts, stopped: %s; target %s: %s (%s) [%.1f s]",
		sc.ID, res.Disclosed, res.Requests, res.StepUps, res.Alerts, res.Stopped, sc.Target, met, res.Why, res.Real.Seconds())
	return res, nil
}

// RunWork runs the staff's normal work.
func (r *Runner) RunWork(ctx context.Context) (*WorkResult, error) {
	opt := r.opt.Work
	opt.defaults()
	start := r.World.Epoch
	until := start.Add(time.Duration(opt.Warmup+opt.Days) * 24 * time.Hour)
	e, err := r.env(ctx, start, until, 2*time.Minute, 99)
	if err != nil {
		return nil, err
	}
	defer e.close()
	r.printf("normal work: %d staff, %d warm-up + %d measured days ...", r.World.workers(), opt.Warmup, opt.Days)
	res, err := runWork(ctx, e, opt, func(s string) { r.printf("%s", s) })
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.printf("normal work: %d user-days, %d requests (%.0f req/s), %d false suspensions (%.2f per 10,000 user-days), %d step-ups (%.4f per user-day) [%.0f s]",
		res.UserDays, res.Requests, res.ReqPerSec, res.Suspensions, res.PerTenThousand(), res.StepUps, res.StepUpsPerUserDay(), res.Real.Seconds())
	return res, nil
}

// WorkMet reports whether normal work met its targets.
func (w *WorkResult) Met() bool {
	return w.PerTenThousand() <= 1 && w.StepUpsPerUserDay() <= 0.05
}
