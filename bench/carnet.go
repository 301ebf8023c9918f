package main

import (
	"context"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// buildCarnet compiles ./cmd/carnet of the module at root into dir.
func buildCarnet(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "carnet")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/carnet")
	cmd.Dir = root
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/carnet: %w", err)
	}
	return bin, nil
}

// pgAdmin administers the benchmark databases with the psql client, so that
// the harness needs no driver of its own.
type pgAdmin struct {
	u *url.URL // server URL without a database, e.g. postgres://postgres@127.0.0.1:5432
}

func newPGAdmin(raw string) (*pgAdmin, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("-pg %q: %w", raw, err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return nil, fmt.Errorf("-pg %q: want postgres://user@host:port", raw)
	}
	return &pgAdmin{u: u}, nil
}

// dbURL is the connection URL of database name, as passed to carnet.
func (p *pgAdmin) dbURL(name string) string {
	u := *p.u
	u.Path = "/" + name
	return u.String()
}

func (p *pgAdmin) psql(db, sql string) (string, error) {
	if _, err := exec.LookPath("psql"); err != nil {
		return "", fmt.Errorf("psql not found: %w", err)
	}
	host := p.u.Hostname()
	port := p.u.Port()
	if port == "" {
		port = "5432"
	}
	user := "postgres"
	if p.u.User != nil && p.u.User.Username() != "" {
		user = p.u.User.Username()
	}
	cmd := exec.Command("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-h", host, "-p", port, "-U", user, "-d", db, "-c", sql)
	cmd.Env = os.Environ()
	if p.u.User != nil {
		if pw, ok := p.u.User.Password(); ok {
			cmd.Env = append(cmd.Env, "PGPASSWORD="+pw)
		}
	}
	cmd.Env = append(cmd.Env, "PGCONNECT_TIMEOUT=5")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql -d %s -c %q: %w: %s", db, sql, err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// admin runs sql on a maintenance database (postgres, else template1).
func (p *pgAdmin) admin(sql string) (string, error) {
	out, err := p.psql("postgres", sql)
	if err != nil && strings.Contains(err.Error(), `database "postgres" does not exist`) {
		return p.psql("template1", sql)
	}
	return out, err
}

// recreate drops database name (closing its sessions) and creates it empty.
func (p *pgAdmin) recreate(name string) error {
	if _, err := p.admin(fmt.Sprintf(`DROP DATABASE IF EXISTS %q WITH (FORCE)`, name)); err != nil {
		return err
	}
	_, err := p.admin(fmt.Sprintf(`CREATE DATABASE %q`, name))
	return err
}

func (p *pgAdmin) drop(name string) error {
	_, err := p.admin(fmt.Sprintf(`DROP DATABASE IF EXISTS %q WITH (FORCE)`, name))
	return err
}

func (p *pgAdmin) size(name string) (int64, error) {
	out, err := p.admin(fmt.Sprintf(`SELECT pg_database_size('%s')`, name))
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(out, 10, 64)
}

// dirSize sums the sizes of the regular files under dir (SQLite file, WAL,
// shared memory, anything else the store keeps there).
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// store is one Carnet backend's data location.
type store struct {
	backend string // sqlite or postgres
	dir     string // sqlite: the data folder; postgres: where carnet seed writes demo-users.json
	db      string // postgres database name
	pg      *pgAdmin
	clear   bool // resources in clear (--insecure-clear): the baseline of the encryption at rest comparison
}

// witness is the audit witness directory: DIR-witness beside the data
// folder (carnet's default with --data; passed explicitly with --db, whose
// default would be ./carnet-witness in the current folder).
func (s store) witness() string { return filepath.Clean(s.dir) + "-witness" }

// keyFile is the key-encryption key file of a sealed store: DIR.key beside
// the data folder (carnet's default with --data; passed explicitly with
// --db, whose default would be ./carnet.key in the current folder).
func (s store) keyFile() string { return filepath.Clean(s.dir) + ".key" }

// args select the store for carnet serve (and seed): in clear, or sealed
// with its key file (carnet seed creates it).
func (s store) args() []string {
	var a []string
	if s.backend == "postgres" {
		a = []string{"--db", s.pg.dbURL(s.db), "--witness", s.witness()}
		if !s.clear {
			a = append(a, "--key-file", s.keyFile())
		}
	} else {
		a = []string{"--data", s.dir}
	}
	if s.clear {
		a = append(a, "--insecure-clear")
	}
	return a
}

// seedArgs select the store for carnet seed; with --db, --data DIR is where
// it writes demo-users.json (else the current folder).
func (s store) seedArgs() []string {
	if s.backend == "postgres" {
		return append(s.args(), "--data", s.dir)
	}
	return s.args()
}

// usersPath is the demo-users.json carnet seed wrote.
func (s store) usersPath() string { return filepath.Join(s.dir, "demo-users.json") }

// prepare empties the store.
func (s store) prepare() error {
	if err := os.RemoveAll(s.dir); err != nil {
		return err
	}
	if err := os.RemoveAll(s.witness()); err != nil {
		return err
	}
	if err := os.RemoveAll(s.keyFile()); err != nil {
		return err
	}
	if s.backend == "postgres" {
		return s.pg.recreate(s.db)
	}
	return os.MkdirAll(filepath.Dir(s.dir), 0o755)
}

func (s store) size() (int64, error) {
	if s.backend == "postgres" {
		return s.pg.size(s.db)
	}
	return dirSize(s.dir), nil
}

func (s store) remove() {
	if s.backend == "postgres" {
		s.pg.drop(s.db)
	}
	os.RemoveAll(s.dir)
	os.RemoveAll(s.witness())
	os.RemoveAll(s.keyFile())
}

type seedResult struct {
	backend   string
	patients  int
	resources int64 // -1 when unknown
	wall      time.Duration
	size      int64
	phase     string // "bench" or "load"
	err       string
}

// resourcesRE finds a resource count in the seed's progress output, e.g.
// "loaded 6123456 resources" or "resources: 6,123,456".
var resourcesRE = []*regexp.Regexp{
	regexp.MustCompile(`(?i)([0-9][0-9,_]*)\s+resources`),
	regexp.MustCompile(`(?i)resources\s*[:=]\s*([0-9][0-9,_]*)`),
}

func parseResources(log string) int64 {
	b, err := os.ReadFile(log)
	if err != nil {
		return -1
	}
	text := string(b)
	best := int64(-1)
	for _, re := range resourcesRE {
		for _, m := range re.FindAllStringSubmatch(text, -1) {
			v, err := strconv.ParseInt(strings.NewReplacer(",", "", "_", "").Replace(m[1]), 10, 64)
			if err == nil && v > best {
				best = v
			}
		}
	}
	return best
}

// seed runs carnet seed into an emptied store and measures it.
func seed(ctx context.Context, bin string, st store, patients int, seedVal int64, logPath string, stall time.Duration) (seedResult, error) {
	r := seedResult{backend: st.backend, patients: patients, resources: -1}
	if err := st.prepare(); err != nil {
		return r, err
	}
	args := append([]string{"seed"}, st.seedArgs()...)
	args = append(args, "--patients", strconv.Itoa(patients), "--seed", strconv.FormatInt(seedVal, 10))
	cmd := exec.Command(bin, args...)
	d, err := runLogged(ctx, cmd, logPath, stall)
	r.wall = d
	if err != nil {
		return r, err
	}
	r.resources = parseResources(logPath)
	r.size, _ = st.size()
	return r, nil
}

var carnetReady = regexp.MustCompile(`(http://127\.0\.0\.1:[0-9]+/fhir)\b`)

// serveCarnet starts carnet serve on a free loopback port: with
// --insecure-open (no authentication, no access control) when open, else
// the normal server that wants a bearer token on every FHIR route; with
// --insecure-clear on a store in clear; extra are more flags (the guard
// comparison's --insecure-no-guard).
func serveCarnet(ctx context.Context, bin string, st store, open bool, logPath string, extra ...string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := append([]string{"serve"}, st.args()...)
	args = append(args, "--addr", fmt.Sprintf("127.0.0.1:%d", port))
	mode := "auth"
	if open {
		args = append(args, "--insecure-open")
		mode = "open"
	}
	if st.clear {
		mode += ", clear"
	}
	args = append(args, extra...)
	for _, a := range extra {
		mode += ", " + strings.TrimPrefix(a, "--")
	}
	cmd := exec.Command(bin, args...)
	return startServer(ctx, "carnet serve ("+st.backend+", "+mode+")", cmd, logPath, carnetReady, 5*time.Minute)
}
