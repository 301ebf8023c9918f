package api

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"time"

	"carnet/internal/policy"
	"carnet/internal/store"
)

// grantCacheTTL is how long an account's active break-the-glass grants are
// remembered before they are read again (a grant made on another instance
// is seen within this delay; one made here at once).
const grantCacheTTL = 30 * time.Second

// grantCache remembers each clinician's active break-the-glass grants, so
// that an access made under one is audited as break-the-glass (not as the
// role's ordinary ground) without a query per request.
type grantCache struct {
	mu sync.Mutex
	m  map[string]*acctGrants
}

type acctGrants struct {
	loaded time.Time
	active []*store.BreakGlass
}

// forget drops an account's grants (one was just made).
func (c *grantCache) forget(account string) {
	c.mu.Lock()
	delete(c.m, account)
	c.mu.Unlock()
}

// covering returns an active grant of account for one of patients, or nil.
func (c *grantCache) covering(ctx context.Context, st AdminRepo, account string, patients map[string]bool) *store.BreakGlass {
	now := time.Now()
	c.mu.Lock()
	ag := c.m[account]
	c.mu.Unlock()
	if ag == nil || now.Sub(ag.loaded) > grantCacheTTL {
		gs, err := st.BreakGlasses(ctx, false, account)
		if err != nil {
			return nil // the purpose stays the role's; the access itself was decided by the policy
		}
		ag = &acctGrants{loaded: now}
		for _, g := range gs {
			if g.Expires.After(now) {
				ag.active = append(ag.active, g)
			}
		}
		c.mu.Lock()
		if c.m == nil {
			c.m = map[string]*acctGrants{}
		}
		c.m[account] = ag
		c.mu.Unlock()
	}
	for _, g := range ag.active {
		if g.Expires.After(now) && patients[g.Patient] {
			return g
		}
	}
	return nil
}

// BreakGlassHeader is set on a response disclosing a patient under one of
// the caller's active break-the-glass grants: the grant and when it ends
// ("ID; expires=RFC3339"), for a client to show that the access is
// exceptional and until when.
const BreakGlassHeader = "Carnet-Break-Glass"

// breakGlassPurpose marks the entry of a clinician's successful access to
// a patient under an active break-the-glass grant with the grant's purpose,
// and says so in the response's BreakGlassHeader.
func (s *Server) breakGlassPurpose(w http.ResponseWriter, r *http.Request, a *auditRec, status int) {
	p := principal(r)
	if p == nil || s.admin == nil || status >= 300 || len(a.patients) == 0 || slices.Contains([]string{"break-the-glass", "create", "update", "delete", "bundle"}, a.e.Action) {
		return
	}
	if !p.HasRole(policy.Physician) && !p.HasRole(policy.Nurse) {
		return
	}
	if g := s.grants.covering(r.Context(), s.admin, p.AccountID, a.patients); g != nil {
		a.e.Purpose = "break-the-glass:" + g.Reason
		if a.e.Subject == "" {
			a.e.Subject = "grant:" + g.ID
		}
		w.Header().Set(BreakGlassHeader, g.ID+"; expires="+g.Expires.UTC().Format(time.RFC3339))
	}
}
