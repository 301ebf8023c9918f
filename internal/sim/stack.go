package sim

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"time"

	"carnet/internal/api"
	"carnet/internal/auth"
	"carnet/internal/guard"
	"carnet/internal/policy"
	"carnet/internal/store"
)

// StackOptions tune a server.
type StackOptions struct {
	// NoGuard serves without the exfiltration guard (carnet serve
	// --insecure-no-guard): the baseline that shows what the guard stops.
	NoGuard bool
	// Limits replace guard.DefaultLimits (nil: the defaults).
	Limits map[string]guard.Limits
	// Start is where the clock starts.
	Start time.Time
}

// Stack is one Carnet server over the world's store, built as carnet serve
// builds it (auth service, policy, audit log, guard, alert queue), on a
// loopback listener, with every clock on Clock.
type Stack struct {
	World *World
	Clock *Clock
	Guard *guard.Guard
	Auth  *auth.Service
	URL   string
	srv   *httptest.Server
}

// NewStack starts a server with a fresh guard (nothing counted: the guard
// tables are emptied) and the clock at opt.Start.
func NewStack(ctx context.Context, w *World, opt StackOptions) (*Stack, error) {
	if opt.Start.IsZero() {
		opt.Start = w.Epoch
	}
	// A fresh start for the guard: its counters, events and step-ups are
	// per account and the scenarios use accounts of their own, but the
	// tables are emptied anyway so that nothing carries over.
	if err := w.Store.GuardForget(ctx, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		return nil, fmt.Errorf("sim: resetting the guard: %w", err)
	}
	clock := NewClock(opt.Start)
	s := &Stack{World: w, Clock: clock}
	if !opt.NoGuard {
		s.Guard = guard.New(w.Store, guard.Options{Now: clock.Now, Logger: w.log, Limits: opt.Limits})
	}
	// guard.Housekeep is not run: it drops counts older than 31 days of the
	// wall clock, which would erase simulated days (they are in the past).
	pol := policy.New(w.Store)
	pol.Now = clock.Now
	s.Auth = auth.NewService(w.Store, auth.Options{Logger: w.log, Now: clock.Now})
	h := api.New(w.Store, api.Options{Logger: w.log, Version: "sim", Auth: s.Auth, Policy: pol, Admin: w.Store,
		MaxBreakGlass: 4 * time.Hour, Audit: w.Audit, Guard: s.Guard, Alerts: w.Store})
	s.srv = httptest.NewUnstartedServer(h)
	s.srv.Config.ReadHeaderTimeout = 10 * time.Second
	s.srv.Config.ErrorLog = nil
	s.srv.Start()
	s.URL = s.srv.URL
	return s, nil
}

// Close stops the server.
func (s *Stack) Close() { s.srv.Close() }

// Transport returns an HTTP transport whose connections come from the
// loopback address ip (127.x.y.z): each simulated workstation or attacker
// has its own client address, as the server sees it.
func Transport(ip string) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Transport{DialContext: d.DialContext, MaxIdleConns: 64, MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute}
}

// Session issues an access token for m in process, as a login would, for
// the session's lifetime (normal work: issuing 2,000 sessions a day
// through argon2id logins would cost more than the work itself; a real
// client refreshes every 15 minutes within one session, which the guard
// cannot tell apart). It returns the token and the session id.
func (s *Stack) Session(ctx context.Context, m *Member, client string, until time.Time) (string, string, error) {
	now := s.Clock.Now()
	tok, hash, err := auth.NewToken(auth.AccessTokenPrefix)
	if err != nil {
		return "", "", err
	}
	session := "sim-" + randomHex(12)
	t := &store.Token{Hash: hash, Kind: "access", Account: m.Account, Session: session, Scopes: policy.DefaultScope, Client: client, Created: now, Expires: until}
	if err := s.World.Store.InsertTokens(ctx, t); err != nil {
		return "", "", err
	}
	return tok, session, nil
}

// Alerts returns the guard's alerts about account (all statuses), read from
// the store.
func (s *Stack) Alerts(ctx context.Context, account string) ([]*store.Alert, error) {
	return s.World.Store.Alerts(ctx, "", account, 100000)
}
