package store_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"carnet/internal/store"
)

func TestAccountsTokensAndSecurityState(t *testing.T) {
	eachBackend(t, func(t *testing.T, st store.Store) {
		s := st.(*store.SQL)
		ctx := t.Context()
		now := time.Now().UTC().Truncate(time.Millisecond)
		a := &store.Account{ID: "a1", Username: "c.martin", Practitioner: "P1", Roles: []string{"physician"}, Facilities: []string{"F1"},
			PasswordHash: "$argon2id$x", Status: store.StatusActive, Created: now, Updated: now}
		f := store.Factor{ID: "f1", Account: "a1", Kind: "totp", Secret: []byte("S"), Created: now}
		if err := s.CreateAccount(ctx, a, []store.Factor{f}, []string{"h1", "h2"}); err != nil {
			t.Fatal(err)
		}
		dup := *a
		dup.ID = "a2"
		if err := s.CreateAccount(ctx, &dup, nil, nil); !errors.Is(err, store.ErrExists) {
			t.Fatalf("duplicate username: %v, want ErrExists", err)
		}
		got, err := s.AccountByUsername(ctx, "c.martin")
		if err != nil || got.ID != "a1" || !slices.Equal(got.Roles, []string{"physician"}) || got.Created != now {
			t.Fatalf("AccountByUsername = %+v, %v", got, err)
		}
		if _, err := s.AccountByUsername(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown user: %v", err)
		}

		// A TOTP step is accepted once, and only moving forward.
		for _, c := range []struct {
			step int64
			ok   bool
		}{{100, true}, {100, false}, {99, false}, {101, true}} {
			ok, err := s.AdvanceFactor(ctx, "f1", c.step)
			if err != nil || ok != c.ok {
				t.Errorf("AdvanceFactor(%d) = %v, %v; want %v", c.step, ok, err, c.ok)
			}
		}
		// Recovery codes are single-use.
		if ok, _ := s.UseRecoveryCode(ctx, "a1", "h1"); !ok {
			t.Error("first use of a recovery code refused")
		}
		if ok, _ := s.UseRecoveryCode(ctx, "a1", "h1"); ok {
			t.Error("recovery code accepted twice")
		}
		if n, _ := s.RecoveryCodesLeft(ctx, "a1"); n != 1 {
			t.Errorf("codes left %d, want 1", n)
		}

		// Tokens: a lookup sees revocation and suspension at once, even after
		// it was cached.
		tok := &store.Token{Hash: "th", Kind: "access", Account: "a1", Session: "s1", Scopes: "user/*.cruds", Created: now, Expires: now.Add(15 * time.Minute)}
		ref := &store.Token{Hash: "rh", Kind: "refresh", Account: "a1", Session: "s1", Created: now, Expires: now.Add(8 * time.Hour)}
		if err := s.InsertTokens(ctx, tok, ref); err != nil {
			t.Fatal(err)
		}
		gt, ga, err := s.LookupToken(ctx, "th")
		if err != nil || gt.Revoked || ga.Username != "c.martin" || gt.Expires != tok.Expires {
			t.Fatalf("LookupToken = %+v %+v %v", gt, ga, err)
		}
		if ok, _ := s.ConsumeToken(ctx, "rh"); !ok {
			t.Error("refresh token not consumable")
		}
		if ok, _ := s.ConsumeToken(ctx, "rh"); ok {
			t.Error("refresh token consumed twice")
		}
		got.Status, got.Updated = store.StatusSuspended, now
		if err := s.UpdateAccount(ctx, got); err != nil {
			t.Fatal(err)
		}
		gt, ga, _ = s.LookupToken(ctx, "th")
		if !gt.Revoked || ga.Status != store.StatusSuspended {
			t.Errorf("after suspension: token revoked=%v status=%s", gt.Revoked, ga.Status)
		}
		if _, _, err := s.LookupToken(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("unknown token: %v", err)
		}

		// Throttling counts per key.
		back := func(n int) time.Duration { return time.Duration(n) * time.Second }
		for range 3 {
			if err := s.ThrottleFailure(ctx, now, back, "acct:x", "addr:1"); err != nil {
				t.Fatal(err)
			}
		}
		th, _ := s.ThrottleState(ctx, "acct:x", "addr:1", "addr:2")
		if th["acct:x"].Failures != 3 || !th["acct:x"].Until.Equal(now.Add(3*time.Second)) || th["addr:2"].Failures != 0 {
			t.Errorf("throttle state %+v", th)
		}
		s.ThrottleReset(ctx, "acct:x")
		if th, _ := s.ThrottleState(ctx, "acct:x"); th["acct:x"].Failures != 0 {
			t.Error("reset kept failures")
		}

		// A role request applies on approval, once.
		rr := &store.RoleRequest{ID: "r1", Account: "a1", Op: "grant", Role: "nurse", Facility: "F2", RequestedBy: "admin1", Created: now, Status: "pending"}
		if err := s.CreateRoleRequest(ctx, rr); err != nil {
			t.Fatal(err)
		}
		if err := s.DecideRoleRequest(ctx, "r1", true, "admin2", now); err != nil {
			t.Fatal(err)
		}
		if err := s.DecideRoleRequest(ctx, "r1", false, "admin2", now); !errors.Is(err, store.ErrConflict) {
			t.Errorf("second decision: %v", err)
		}
		got, _ = s.AccountByID(ctx, "a1")
		if !slices.Equal(got.Roles, []string{"physician", "nurse"}) || !slices.Equal(got.Facilities, []string{"F1", "F2"}) {
			t.Errorf("after approval: roles %v facilities %v", got.Roles, got.Facilities)
		}

		// Break-the-glass grants count in a scope until they expire.
		g := &store.BreakGlass{ID: "g1", Account: "a1", Patient: "PX", Reason: "emergency", Created: now, Expires: now.Add(4 * time.Hour)}
		if err := s.CreateBreakGlass(ctx, g); err != nil {
			t.Fatal(err)
		}
		sc := &store.Scope{Account: "a1", Now: now}
		if r, _ := s.Reach(ctx, sc, []string{"PX"}); !r["PX"] {
			t.Error("break-the-glass grant not reached")
		}
		sc.Now = now.Add(5 * time.Hour)
		if r, _ := s.Reach(ctx, sc, []string{"PX", "PY"}); r["PX"] {
			t.Error("expired break-the-glass grant still reached")
		}
		if l, _ := s.BreakGlasses(ctx, true, ""); len(l) != 1 {
			t.Errorf("review queue has %d, want 1", len(l))
		}
		if err := s.ReviewBreakGlass(ctx, "g1", "dpo", "justified", now); err != nil {
			t.Fatal(err)
		}
		if err := s.ReviewBreakGlass(ctx, "g1", "dpo", "again", now); !errors.Is(err, store.ErrConflict) {
			t.Errorf("second review: %v", err)
		}
		if l, _ := s.BreakGlasses(ctx, true, ""); len(l) != 0 {
			t.Errorf("review queue has %d after review", len(l))
		}
	})
}
