// Package sim is Carnet's attack replay (issue 6): it builds a synthetic
// healthcare group in a fresh store, serves it with the full security stack
// (authentication, policy, audit log, exfiltration guard, alerts) on
// loopback, and drives it over real HTTP with a simulated clock: the seed
// attack and its variants (S1 to S6) and 30 days of normal work by the
// group's staff. It reports, per scenario, what the attacker got before the
// guard stopped it, and for normal work the false suspensions and step-ups.
//
// Clocks: the guard, the auth service (token lifetimes, TOTP codes, login
// back-off) and the policy (care window) all read one simulated Clock. The
// synthetic group is generated with the same reference date (Epoch), so its
// stays in progress are in progress when a scenario starts. What still reads
// the wall clock: audit entry times, break-the-glass grant times (the
// grants last 4 wall-clock hours, which is longer than any simulated use of
// them since Epoch is in the past) and alert acknowledgements.
package sim

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"carnet/internal/audit"
	"carnet/internal/auth"
	"carnet/internal/load"
	"carnet/internal/seal"
	"carnet/internal/store"
	"carnet/internal/store/postgres"
	"carnet/internal/store/sqlite"
	"carnet/internal/synth"
)

// DefaultEpoch is the simulated "today" of the group: a Monday, in the past
// so that break-the-glass grants (stamped with the wall clock) stay valid
// through a replay.
func DefaultEpoch() time.Time { return time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC) }

// WorldConfig describes the world to build.
type WorldConfig struct {
	Patients int
	Seed     int64
	// Staff: how many of the group's staff work in the simulation (0: all).
	// The accounts of all staff exist either way.
	Staff int
	// DB is a PostgreSQL URL with an empty database; "" makes a SQLite store
	// in Dir.
	DB string
	// Dir holds the SQLite store, its key file and the audit witness ("":
	// a new temporary folder, removed by Close).
	Dir   string
	Epoch time.Time
	// Logger receives the server's structured log (default: discarded).
	Logger *slog.Logger
	// Progress receives progress lines (default: discarded).
	Progress io.Writer
}

// Member is one of the group's staff and their account.
type Member struct {
	synth.Staff
	Index   int
	Account string // account id
	TOTP    string // TOTP secret of the account's authenticator
	Fac     []int  // facility indexes (none for group roles)
	Works   bool   // takes part in the simulated work (WorldConfig.Staff)
}

// Role is the member's first role.
func (m *Member) Role() string { return m.Roles[0] }

// Patient is what the simulation knows of a generated patient, out of band
// (from the generator, not the API).
type Patient struct {
	ID, Family, Birth string
	Home, Second      int // facility indexes; Second -1 if none
	GP                int // staff index of the attending physician
	Resident          bool
	Deceased          bool
}

// OpenStay is a stay in progress at the epoch.
type OpenStay struct {
	ID      string
	Patient int
	Fac     int
	Class   string // AMB, IMP, EMER
	Start   time.Time
	Phys    int // staff index
	Nurse   int // staff index or -1
}

// World is a loaded store with the group's accounts, and what the
// simulation knows of the group.
type World struct {
	Config WorldConfig
	Group  *synth.Group
	Store  *store.SQL
	Audit  *audit.Log
	Epoch  time.Time

	Staff      []*Member
	Patients   []Patient
	ByFacility [][]int // patients of each facility (home or second)
	GPOf       [][]int // per staff index: patients they are the attending physician of
	TeamOf     [][]int // per staff index: patients whose care team they are on
	Open       []OpenStay
	Canaries   map[string]string // canary patient id -> facility id
	Officer    *Member           // the security officer

	LoadTime time.Duration
	dir      string
	ownDir   bool
	log      *slog.Logger
	progress io.Writer
	stop     func()
	auditWG  sync.WaitGroup
	facIdx   map[string]int
	staffIdx map[string]int
	pwMu     sync.Mutex
	pw       map[string]string // username -> password, for the accounts given one
}

func (w *World) printf(format string, args ...any) {
	fmt.Fprintf(w.progress, format, args...)
}

// Build generates and loads the world: a sealed store holding the group,
// its canary patients and an account for every staff member, each with a
// TOTP authenticator.
func Build(ctx context.Context, cfg WorldConfig) (*World, error) {
	if cfg.Patients < 1 {
		return nil, fmt.Errorf("sim: at least one patient")
	}
	if cfg.Epoch.IsZero() {
		cfg.Epoch = DefaultEpoch()
	}
	w := &World{Config: cfg, Epoch: cfg.Epoch.UTC(), log: cfg.Logger, progress: cfg.Progress, pw: map[string]string{}}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.progress == nil {
		w.progress = io.Discard
	}
	w.dir = cfg.Dir
	if w.dir == "" {
		d, err := os.MkdirTemp("", "carnet-sim-")
		if err != nil {
			return nil, err
		}
		w.dir, w.ownDir = d, true
	}
	ok := false
	defer func() {
		if !ok {
			w.Close()
		}
	}()
	scfg := synth.Config{Seed: cfg.Seed, Patients: cfg.Patients, Now: w.Epoch}
	w.Group = synth.New(scfg)
	var err error
	if cfg.DB != "" {
		w.Store, err = postgres.Open(ctx, cfg.DB)
	} else {
		w.Store, err = sqlite.Open(ctx, filepath.Join(w.dir, "data"))
	}
	if err != nil {
		return nil, fmt.Errorf("sim: store: %w", err)
	}
	// Sealed at rest like carnet seed does: a key file outside the data,
	// a data key per facility made before the load.
	kek, err := seal.InitKeyFile(filepath.Join(w.dir, "carnet.key"))
	if err != nil {
		return nil, err
	}
	kr, err := seal.Open(ctx, w.Store, kek)
	if err != nil {
		return nil, err
	}
	w.Store.UseSealer(kr)
	var facs []string
	for _, f := range w.Group.Facilities {
		facs = append(facs, f.ID)
	}
	if err := kr.Ensure(ctx, facs...); err != nil {
		return nil, err
	}
	start := time.Now()
	w.printf("sim: generating and loading %d patients (sealed, %s)\n", cfg.Patients, w.Store.Backend())
	done, last, phase, of := 0, time.Now(), "patients", cfg.Patients
	_, err = load.Synthetic(ctx, w.Store, scfg, func(n int) {
		done += n
		if time.Since(last) > 10*time.Second {
			last = time.Now()
			w.printf("sim: %s %d/%d (%.0f s)\n", phase, done, of, time.Since(start).Seconds())
		}
	}, func(name string, total int) {
		phase, of, done = name, total, 0
		w.printf("sim: %s (%.0f s)\n", name, time.Since(start).Seconds())
	})
	if err != nil {
		return nil, fmt.Errorf("sim: load: %w", err)
	}
	if _, err := load.Canaries(ctx, w.Store, w.Group, load.CanariesPerFacility); err != nil {
		return nil, err
	}
	w.LoadTime = time.Since(start)
	w.printf("sim: loaded in %.0f s; indexing the group out of band\n", w.LoadTime.Seconds())
	if err := w.index(ctx); err != nil {
		return nil, err
	}
	if err := w.accounts(ctx); err != nil {
		return nil, err
	}
	w.Canaries = map[string]string{}
	for _, c := range w.Group.Canaries(load.CanariesPerFacility) {
		w.Canaries[c.Patient["id"].(string)] = c.Facility
	}
	alog, err := audit.Open(ctx, w.Store, filepath.Join(w.dir, "witness"), w.log)
	if err != nil {
		return nil, fmt.Errorf("sim: audit log: %w", err)
	}
	w.Audit = alog
	actx, stop := context.WithCancel(context.WithoutCancel(ctx))
	w.stop = stop
	w.auditWG.Add(1)
	go func() { defer w.auditWG.Done(); alog.Run(actx, time.Second) }()
	ok = true
	return w, nil
}

// Close stops the audit log, closes the store and removes a temporary
// folder.
func (w *World) Close() error {
	if w.stop != nil {
		w.stop()
		w.auditWG.Wait()
	}
	var err error
	if w.Audit != nil {
		err = w.Audit.Close(context.Background())
	}
	if w.Store != nil {
		if cerr := w.Store.Close(); err == nil {
			err = cerr
		}
	}
	if w.ownDir {
		os.RemoveAll(w.dir)
	}
	return err
}

// index reads the generated group (the generator, not the store) for what
// the simulated staff know: who their patients are, the stays in progress.
func (w *World) index(ctx context.Context) error {
	g := w.Group
	w.facIdx = map[string]int{}
	for i, f := range g.Facilities {
		w.facIdx["Organization/"+f.ID] = i
	}
	w.staffIdx = map[string]int{}
	for i, s := range g.Staff {
		w.staffIdx["Practitioner/"+s.PractitionerID] = i
	}
	n := w.Config.Patients
	w.Patients = make([]Patient, n)
	type team struct {
		patient int
		members []int
	}
	workers := max(1, runtime.NumCPU())
	var mu sync.Mutex
	var teams []team
	var open []OpenStay
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for k := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var myTeams []team
			var myOpen []OpenStay
			for i := k; i < n; i += workers {
				if i%4096 == 0 && ctx.Err() != nil {
					errs[k] = ctx.Err()
					return
				}
				p := &w.Patients[i]
				p.Second = -1
				err := g.Patient(i, func(r map[string]any) error {
					switch r["resourceType"] {
					case "Patient":
						p.ID, _ = r["id"].(string)
						if ns, ok := r["name"].([]any); ok && len(ns) > 0 {
							p.Family, _ = ns[0].(map[string]any)["family"].(string)
						}
						p.Birth, _ = r["birthDate"].(string)
						p.Home = w.facIdx[refOf(r["managingOrganization"])]
						if gps, ok := r["generalPractitioner"].([]any); ok && len(gps) > 0 {
							p.GP = w.staffIdx[refOf(gps[0])]
						}
						_, p.Deceased = r["deceasedDateTime"]
						p.Resident = g.Facilities[p.Home].Kind == "retirement-home"
					case "Encounter":
						f := w.facIdx[refOf(r["serviceProvider"])]
						if f != p.Home {
							p.Second = f
						}
						if r["status"] != "in-progress" {
							return nil
						}
						st := OpenStay{ID: r["id"].(string), Patient: i, Fac: f, Phys: -1, Nurse: -1}
						st.Class, _ = r["class"].(map[string]any)["code"].(string)
						if per, ok := r["period"].(map[string]any); ok {
							s, _ := per["start"].(string)
							st.Start, _ = time.Parse(time.RFC3339, s)
						}
						for _, x := range r["participant"].([]any) {
							si, ok := w.staffIdx[refOf(x.(map[string]any)["individual"])]
							if !ok {
								continue
							}
							if g.Staff[si].Roles[0] == synth.RolePhysician && st.Phys < 0 {
								st.Phys = si
							} else if st.Nurse < 0 {
								st.Nurse = si
							}
						}
						myOpen = append(myOpen, st)
					case "CareTeam":
						if r["status"] != "active" {
							return nil
						}
						t := team{patient: i}
						for _, x := range r["participant"].([]any) {
							if si, ok := w.staffIdx[refOf(x.(map[string]any)["member"])]; ok {
								t.members = append(t.members, si)
							}
						}
						myTeams = append(myTeams, t)
					}
					return nil
				})
				if err != nil {
					errs[k] = err
					return
				}
			}
			mu.Lock()
			teams = append(teams, myTeams...)
			open = append(open, myOpen...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	w.ByFacility = make([][]int, len(g.Facilities))
	w.GPOf = make([][]int, len(g.Staff))
	w.TeamOf = make([][]int, len(g.Staff))
	for i := range w.Patients {
		p := &w.Patients[i]
		w.ByFacility[p.Home] = append(w.ByFacility[p.Home], i)
		if p.Second >= 0 {
			w.ByFacility[p.Second] = append(w.ByFacility[p.Second], i)
		}
		if !p.Deceased {
			w.GPOf[p.GP] = append(w.GPOf[p.GP], i)
		}
	}
	slices.SortFunc(teams, func(a, b team) int { return a.patient - b.patient })
	for _, t := range teams {
		for _, m := range t.members {
			w.TeamOf[m] = append(w.TeamOf[m], t.patient)
		}
	}
	slices.SortFunc(open, func(a, b OpenStay) int { return strings.Compare(a.ID, b.ID) })
	w.Open = open
	return nil
}

func refOf(v any) string {
	m, _ := v.(map[string]any)
	s, _ := m["reference"].(string)
	return s
}

// accounts creates an account for every staff member, without a password
// (the scenarios that log in give one with Password), each with a TOTP
// authenticator whose secret the simulated owner keeps.
func (w *World) accounts(ctx context.Context) error {
	g := w.Group
	now := w.Epoch
	var bulk []*store.Account
	for i, s := range g.Staff {
		m := &Member{Staff: s, Index: i, Account: "acct-" + s.PractitionerID}
		for _, f := range s.Facilities {
			if fi, ok := w.facIdx["Organization/"+f]; ok {
				m.Fac = append(m.Fac, fi)
			}
		}
		w.Staff = append(w.Staff, m)
		bulk = append(bulk, &store.Account{ID: m.Account, Username: s.Username, Practitioner: s.PractitionerID,
			Display: s.GivenName + " " + s.FamilyName, Roles: s.Roles, Facilities: s.Facilities, Status: store.StatusActive, Created: now, Updated: now})
		if m.Role() == synth.RoleSecurityOfficer && w.Officer == nil {
			w.Officer = m
		}
	}
	for start := 0; start < len(bulk); start += 500 {
		if err := w.Store.CreateAccounts(ctx, bulk[start:min(start+500, len(bulk))]); err != nil {
			return fmt.Errorf("sim: staff accounts: %w", err)
		}
	}
	svc := auth.NewService(w.Store, auth.Options{Now: func() time.Time { return now }})
	for _, m := range w.Staff {
		en, err := svc.ResetMFA(ctx, m.Username)
		if err != nil {
			return fmt.Errorf("sim: authenticator of %s: %w", m.Username, err)
		}
		m.TOTP = en.TOTPSecret
	}
	w.pickWorkers()
	w.printf("sim: %d staff accounts with authenticators (%d working in the simulation)\n", len(w.Staff), w.workers())
	return nil
}

// pickWorkers marks the staff who take part in the simulated work: all, or
// WorldConfig.Staff of them, the same share of each facility and role (at
// least one of each), plus the security officer.
func (w *World) pickWorkers() {
	total := len(w.Staff)
	want := w.Config.Staff
	if want <= 0 || want >= total {
		for _, m := range w.Staff {
			m.Works = true
		}
		return
	}
	groups := map[string][]*Member{}
	var keys []string
	for _, m := range w.Staff {
		k := m.Role() + "|" + strings.Join(m.Facilities, ",")
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], m)
	}
	for _, k := range keys {
		ms := groups[k]
		n := max(1, (len(ms)*want+total/2)/total)
		for _, m := range ms[:min(n, len(ms))] {
			m.Works = true
		}
	}
}

func (w *World) workers() int {
	n := 0
	for _, m := range w.Staff {
		if m.Works {
			n++
		}
	}
	return n
}

// Password gives the account of m a password (once) and returns it: only
// the accounts a scenario logs in with over HTTP need one (argon2id costs
// tens of milliseconds per login).
func (w *World) Password(ctx context.Context, m *Member) (string, error) {
	w.pwMu.Lock()
	defer w.pwMu.Unlock()
	if pw, ok := w.pw[m.Username]; ok {
		return pw, nil
	}
	pw := auth.GeneratePassword()
	svc := auth.NewService(w.Store, auth.Options{})
	if err := svc.SetPassword(ctx, m.Username, pw); err != nil {
		return "", err
	}
	w.pw[m.Username] = pw
	return pw, nil
}

// FacilityIndex returns the index of a facility id.
func (w *World) FacilityIndex(id string) (int, bool) {
	i, ok := w.facIdx["Organization/"+id]
	return i, ok
}

// StaffByPractitioner returns the staff index of a practitioner id.
func (w *World) StaffByPractitioner(id string) (int, bool) {
	i, ok := w.staffIdx["Practitioner/"+id]
	return i, ok
}
