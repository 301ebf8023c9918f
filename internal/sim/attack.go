package sim

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// attacker drives one stolen account the way a persistent script would:
// it honours Retry-After; asked for a step-up it cannot answer (no
// authenticator), so it pauses, halves its pace and tries again, and gives
// up on that request after a few tries; it stops when the account is
// suspended or its session is dead, or when the scenario's time is up.
type attacker struct {
	c       *Client
	s       *Sched
	gap     time.Duration // between two requests
	pause   time.Duration // after a step-up it cannot answer
	tries   int           // step-ups tolerated per request
	stopped bool
	why     string // why it stopped
	gaveUp  int    // requests given up after a step-up it could not answer
	next    string // the request it would have sent next (probed after a stop)
}

func newAttacker(c *Client, s *Sched, gap time.Duration) *attacker {
	return &attacker{c: c, s: s, gap: gap, pause: time.Hour, tries: 3}
}

func (a *attacker) stop(why string) {
	if !a.stopped {
		a.stopped, a.why = true, why
	}
}

// do sends one request and reacts to the guard. It returns nil once
// stopped.
func (a *attacker) do(ctx context.Context, method, path string, body []byte, ctype string) *Resp {
	if a.stopped {
		return nil
	}
	a.next = path
	for try := 0; ; try++ {
		r := a.c.Do(ctx, method, path, body, ctype)
		switch {
		case r.Suspended:
			a.stop("suspended")
			return r
		case r.Status == http.StatusUnauthorized && !r.StepUp && a.c.Access != "" && path != "/auth/token":
			// The session died (revoked): a stolen session cannot log in again.
			a.stop("session revoked")
			return r
		case r.RetryAfter > 0 && path != "/auth/token":
			if !a.s.Sleep(ctx, r.RetryAfter) {
				a.stop("out of time")
				return r
			}
			continue
		case r.StepUp:
			if try+1 >= a.tries {
				a.gaveUp++
				a.wait(ctx)
				return r
			}
			a.gap *= 2
			if !a.s.Sleep(ctx, a.pause) {
				a.stop("out of time")
				return r
			}
			continue
		}
		a.wait(ctx)
		return r
	}
}

func (a *attacker) wait(ctx context.Context) {
	if !a.s.Sleep(ctx, a.gap) {
		a.stop("out of time")
	}
}

func (a *attacker) get(ctx context.Context, path string) *Resp {
	return a.do(ctx, "GET", path, nil, "")
}

func (a *attacker) postJSON(ctx context.Context, path string, v any) *Resp {
	if a.stopped {
		return nil
	}
	b, ctype := jsonBody(path, v)
	return a.do(ctx, "POST", path, b, ctype)
}

// walk follows a search's pages until the end, maxPages, or a refusal.
func (a *attacker) walk(ctx context.Context, first string, maxPages int) (pages int) {
	path := first
	for path != "" && pages < maxPages {
		r := a.get(ctx, path)
		if r == nil || !r.OK() {
			a.next = path
			return pages
		}
		pages++
		path = NextLink(r.Body)
	}
	a.next = path
	return pages
}

// probe sends n more requests after a stop, as the attacker would keep
// trying: they must disclose nothing (counted in the tally as after-stop).
func (a *attacker) probe(ctx context.Context, n int, paths ...string) {
	if a.next != "" {
		paths = append([]string{a.next}, paths...)
	}
	paths = append(paths, "/fhir/Patient", "/fhir/Patient?_count=50")
	for i := 0; i < n; i++ {
		a.c.Get(ctx, paths[i%len(paths)])
	}
	if a.c.Refresh != "" {
		a.c.refresh(ctx)
		a.c.Get(ctx, "/fhir/Patient")
	}
}

func jsonBody(path string, v any) ([]byte, string) {
	b := mustJSON(v)
	if len(path) >= 5 && path[:5] == "/fhir" {
		return b, "application/fhir+json"
	}
	return b, "application/json"
}

// stolenSession logs m in over HTTP (password and a TOTP code, as the
// victim does) and hands the session — access and refresh tokens — to an
// attacker's client, without the authenticator.
func (e *Env) stolenSession(ctx context.Context, m *Member, ip string) (*Client, error) {
	victim := e.Stack.NewClient(m.Username, e.transport(ip))
	victim.TOTP = m.TOTP
	pw, err := e.World.Password(ctx, m)
	if err != nil {
		return nil, err
	}
	if r := victim.Login(ctx, m.Username, pw, victim.Code()); !r.OK() {
		return nil, fmt.Errorf("sim: the victim %s could not log in: %d %s", m.Username, r.Status, r.Body)
	}
	c := e.Stack.NewClient(m.Username, e.transport(ip))
	c.Access, c.Refresh, c.Expires, c.RefreshBy = victim.Access, victim.Refresh, victim.Expires, victim.RefreshBy
	c.Parse = true
	return c, nil
}

// walkPath is the search that lists the patients an account reaches, page
// by page.
func walkPath(count int) string {
	return "/fhir/Patient?" + url.Values{"_count": {fmt.Sprint(count)}}.Encode()
}
