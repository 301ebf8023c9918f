// Package load fills a store: the synthetic demo group (Synthetic) and FHIR
// files (Import). Both report progress through a callback so the CLI can
// draw a progress bar.
package load

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"carnet/internal/fhir"
	"carnet/internal/store"
	"carnet/internal/synth"
)

// Progress receives how many units (patients, entries) were just done.
type Progress func(n int)

// batchResources is the number of resources per load transaction.
const batchResources = 4000

// NewWrite prepares a trusted resource (generated, not received) as version
// 1 stamped with now.
func NewWrite(r fhir.Resource, now time.Time) (store.Write, error) {
	id := fhir.ID(r)
	fhir.SetMeta(r, id, 1, now)
	data, err := fhir.Marshal(r)
	if err != nil {
		return store.Write{}, err
	}
	return store.Write{
		Resource: store.Resource{Type: fhir.Type(r), ID: id, Version: 1, Updated: now, Patient: fhir.PatientOf(r), Data: data},
		New:      true,
		Index:    fhir.Extract(r),
		Links:    fhir.CareLinks(r),
	}, nil
}

// SyntheticResult summarises a synthetic load.
type SyntheticResult struct {
	Patients  int
	Resources int
	Elapsed   time.Duration
}

// ErrNotEmpty is returned when seeding a store that already holds data.
var ErrNotEmpty = errors.New("the store already holds resources")

// Synthetic generates the synthetic group of cfg and bulk-loads it into an
// empty store. progress counts patients, then the units of each later phase
// announced through phase (which may be nil).
func Synthetic(ctx context.Context, st store.Store, cfg synth.Config, progress Progress, phase store.LoadPhase) (*SyntheticResult, error) {
	stats, err := st.Stats(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range stats {
		if n > 0 {
			return nil, ErrNotEmpty
		}
	}
	start := time.Now()
	now := start.UTC().Truncate(time.Millisecond)
	g := synth.New(cfg)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	batches := make(chan []store.Write, 4)
	var mu sync.Mutex
	var genErr error
	fail := func(err error) {
		mu.Lock()
		if genErr == nil {
			genErr = err
		}
		mu.Unlock()
		cancel()
	}
	total := 0
	send := func(ws []store.Write) bool {
		select {
		case batches <- ws:
			return true
		case <-ctx.Done():
			return false
		}
	}
	// Static resources (organisations, staff) first, then patients from
	// several generator goroutines; the store loads batches as they come.
	var static []store.Write
	if err := g.Static(func(r map[string]any) error {
		w, err := NewWrite(r, now)
		static = append(static, w)
		return err
	}); err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	total += len(static)

	const chunk = 256 // patients a worker takes at a time
	var next int
	var nextMu sync.Mutex
	take := func() (int, int) {
		nextMu.Lock()
		defer nextMu.Unlock()
		from := next
		to := min(from+chunk, cfg.Patients)
		next = to
		return from, to
	}
	var counted sync.Mutex
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]store.Write, 0, batchResources+64)
			pending := 0
			flush := func() bool {
				if len(buf) == 0 {
					return true
				}
				if !send(buf) {
					return false
				}
				counted.Lock()
				total += len(buf)
				counted.Unlock()
				if progress != nil {
					progress(pending)
				}
				buf, pending = make([]store.Write, 0, batchResources+64), 0
				return true
			}
			for {
				from, to := take()
				if from >= to {
					flush()
					return
				}
				for i := from; i < to; i++ {
					err := g.Patient(i, func(r map[string]any) error {
						w, err := NewWrite(r, now)
						buf = append(buf, w)
						return err
					})
					if err != nil {
						fail(fmt.Errorf("generate patient %d: %w", i, err))
						return
					}
					pending++
					if len(buf) >= batchResources && !flush() {
						return
					}
				}
			}
		}()
	}
	go func() {
		if send(static) {
			wg.Wait()
		}
		close(batches)
	}()
	inPhase := false
	loadErr := st.Load(ctx, batches, func(n int) {
		if inPhase && progress != nil {
			progress(n)
		}
	}, func(name string, total int) {
		inPhase = true
		if phase != nil {
			phase(name, total)
		}
	})
	if loadErr != nil {
		cancel()
		for range batches { // let the generators stop
		}
	}
	wg.Wait()
	if genErr != nil {
		return nil, genErr
	}
	if loadErr != nil {
		return nil, loadErr
	}
	return &SyntheticResult{Patients: cfg.Patients, Resources: total, Elapsed: time.Since(start)}, nil
}
