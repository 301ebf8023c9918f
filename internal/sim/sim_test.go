package sim

import (
	"context"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// knownMisses are the targets the guard does not meet yet in the small
// world (see bench/ATTACKS.md for why). A scenario listed here that meets
// its target fails the test: take it off the list.
var knownMisses = []string{}

func progress(t *testing.T) io.Writer {
	if testing.Verbose() {
		return os.Stderr
	}
	return io.Discard
}

func smallWorld(t *testing.T) *World {
	t.Helper()
	w, err := Build(context.Background(), WorldConfig{Patients: 2000, Seed: 1, Staff: 300, Dir: t.TempDir(), Progress: progress(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// TestReplay runs every attack scenario and a few days of normal work on a
// small world and holds them to issue 6's targets.
func TestReplay(t *testing.T) {
	w := smallWorld(t)
	r := NewRunner(w, Options{Progress: progress(t), Work: WorkOptions{Warmup: 1, Days: 2, OnCallCalls: -1}})
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*Result{}
	for _, res := range rep.Results {
		got[res.ID] = res
		t.Logf("%s: %d patients, %d requests, %s; %s: met %v (%s)", res.ID, res.Disclosed, res.Requests, res.Stopped, res.Target, res.Met, res.Why)
	}
	for _, sc := range Scenarios() {
		res := got[sc.ID]
		if res == nil {
			t.Fatalf("%s did not run", sc.ID)
		}
		if sc.ID == "S3w" {
			continue // informative
		}
		known := slices.Contains(knownMisses, sc.ID)
		switch {
		case !res.Met && !known:
			t.Errorf("%s: target %s not met: %s", sc.ID, sc.Target, res.Why)
		case res.Met && known:
			t.Errorf("%s now meets its target (%s): take it off knownMisses", sc.ID, res.Why)
		}
	}
	// The stops the targets rest on.
	if res := got["S1"]; res.Requests < 100 || res.Status[200] != 0 {
		t.Errorf("S1: %d requests, %d answered 200: want >= 100 attempts and no success", res.Requests, res.Status[200])
	}
	for _, id := range []string{"S1b", "S2", "S6"} {
		if res := got[id]; res.Suspended == 0 || res.Critical == 0 || res.AfterStop != 0 {
			t.Errorf("%s: %d suspended, %d critical alerts, %d answers after the stop: want a suspension with its alert and nothing after", id, res.Suspended, res.Critical, res.AfterStop)
		}
		if res := got[id]; res.Scope != nil && !res.Scope.Exact() {
			t.Errorf("%s: incident scope missed %d, extra %d", id, res.Scope.Missed, res.Scope.Extra)
		}
	}
	if res := got["S1b"]; res.Scope == nil {
		t.Error("S1b: no incident scope check")
	}
	if res := got["S3"]; res.Alerts == 0 {
		t.Error("S3: not detected")
	}
	wr := rep.Work
	if wr == nil {
		t.Fatal("normal work did not run")
	}
	t.Logf("normal work: %d user-days, %d requests, %d suspensions, %d step-ups, %d errors, %d refused", wr.UserDays, wr.Requests, wr.Suspensions, wr.StepUps, wr.Errors, wr.Denied)
	if wr.UserDays < 300 || wr.Requests < 20*wr.UserDays/2 {
		t.Errorf("normal work: %d user-days, %d requests: too little work simulated", wr.UserDays, wr.Requests)
	}
	if wr.Errors > 0 || wr.Denied > 0 {
		t.Errorf("normal work: %d server errors, %d refused requests: the simulated care must be allowed", wr.Errors, wr.Denied)
	}
	if wr.Suspensions > 0 || wr.StepUpsPerUserDay() > 0.05 {
		t.Errorf("normal work: %d false suspensions (%v), %.3f step-ups per user-day", wr.Suspensions, wr.SuspensionsByWhy, wr.StepUpsPerUserDay())
	}
	var b strings.Builder
	rep.Markdown(&b, Meta{Command: "test", Date: time.Now(), Patients: 2000})
	for _, want := range []string{"## S1:", "## S6:", "## Normal work", "## Limits in force", "| physician |"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the report lacks %q", want)
		}
	}
}

// TestWithoutGuard shows the replay measures the guard: without it, the
// clerk's walk (S6) and the ten accounts (S4) take far more than their
// targets.
func TestWithoutGuard(t *testing.T) {
	w := smallWorld(t)
	r := NewRunner(w, Options{Scenarios: []string{"S6", "S4"}, NoGuard: true, Progress: progress(t)})
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range rep.Results {
		t.Logf("%s without the guard: %d patients, %s", res.ID, res.Disclosed, res.Stopped)
		if res.Met || res.Suspended > 0 {
			t.Errorf("%s without the guard: %d patients, %d suspended: the scenario does not exercise the guard", res.ID, res.Disclosed, res.Suspended)
		}
	}
}

func TestDisclosed(t *testing.T) {
	b := []byte(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"p1"}},
		{"resource":{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p2"}}},
		{"resource":{"resourceType":"Practitioner","id":"d1"}},{"resource":{"resourceType":"OperationOutcome"}}]}`)
	if got := Disclosed(b); !slices.Equal(got, []string{"p1", "p2"}) {
		t.Errorf("Disclosed(bundle) = %v", got)
	}
	if got := Disclosed([]byte(`{"id":"g1","patient":"p3","reason":"emergency"}`)); !slices.Equal(got, []string{"p3"}) {
		t.Errorf("Disclosed(grant) = %v", got)
	}
	if got := Disclosed([]byte(`{"resourceType":"OperationOutcome"}`)); len(got) != 0 {
		t.Errorf("Disclosed(outcome) = %v", got)
	}
}

func TestSched(t *testing.T) {
	c := NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s := NewSched(c, time.Second, c.Now().Add(time.Hour))
	ctx := context.Background()
	var order []string
	var mu = make(chan struct{}, 1)
	log := func(x string) { mu <- struct{}{}; order = append(order, x); <-mu }
	s.Go(func() {
		s.Sleep(ctx, 10*time.Minute)
		log("a10")
		s.Sleep(ctx, 20*time.Minute)
		log("a30")
		if s.Sleep(ctx, time.Hour) {
			log("past the end")
		}
	})
	s.Go(func() {
		s.Sleep(ctx, 20*time.Minute)
		log("b20")
	})
	s.Wait()
	if want := []string{"a10", "b20", "a30"}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
	if got := c.Now().Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); got != 30*time.Minute {
		t.Errorf("clock at +%v, want +30m", got)
	}
}
