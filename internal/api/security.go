package api

import (
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"carnet/internal/auth"
	"carnet/internal/fhir"
	"carnet/internal/policy"
	"carnet/internal/record"
	"carnet/internal/store"
)

type principalKey struct{}

// principal returns the authenticated caller (nil only in InsecureOpen).
func principal(r *http.Request) *auth.Principal {
	p, _ := r.Context().Value(principalKey{}).(*auth.Principal)
	return p
}

// clientAddr is the caller's address (the direct peer: Carnet does not trust
// forwarding headers unless a proxy is configured to rewrite RemoteAddr).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// authenticated wraps a handler: no valid bearer token, no entry.
func (s *Server) authenticated(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.opt.InsecureOpen {
			h(w, r)
			return
		}
		if s.closed {
			s.fail(w, r, fhir.Errorf(http.StatusServiceUnavailable, "security", "authentication is not configured on this server"))
			return
		}
		tok, ok := bearer(r)
		if !ok {
			s.unauthorized(w, r, "authentication required: send Authorization: Bearer <access token> (POST /auth/token)")
			return
		}
		p, err := s.auth.Authenticate(r.Context(), tok, clientAddr(r))
		if errors.Is(err, auth.ErrUnauthenticated) {
			s.unauthorized(w, r, "invalid, expired or revoked access token")
			return
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="carnet"`)
	s.fail(w, r, fhir.Errorf(http.StatusUnauthorized, "login", "%s", msg))
}

// ---- decisions used by the FHIR handlers ----------------------------------

// can checks a type-level right.
func (s *Server) can(r *http.Request, act policy.Action, typ string) error {
	if s.opt.InsecureOpen {
		return nil
	}
	return s.pol.Can(principal(r), act, typ)
}

// scope is the search scope (nil: unrestricted, only when open).
func (s *Server) scope(r *http.Request, act policy.Action, typ string) *store.Scope {
	if s.opt.InsecureOpen {
		return nil
	}
	return s.pol.Scope(principal(r), act, typ)
}

// canRead decides the disclosure of a stored resource.
func (s *Server) canRead(r *http.Request, res *store.Resource) error {
	if s.opt.InsecureOpen {
		return nil
	}
	return s.pol.CheckRead(r.Context(), principal(r), res)
}

// records is the record service acting for the caller. Its commits carry
// the request's audit entry in the same transaction (except a batch, whose
// entries commit one by one and are audited once, after).
func (s *Server) records(r *http.Request) *record.Service {
	if s.opt.InsecureOpen {
		return s.rec
	}
	p := principal(r)
	rec := s.rec.As(func(ctx context.Context, typ string, prev *store.Resource, next *store.Write, batch []store.Write) error {
		return s.pol.CheckWrite(ctx, p, typ, prev, next, batch)
	})
	if a := recOf(r); a != nil {
		rec = rec.Audited(a.record)
	}
	return rec
}

// committed marks the request's audit entry as appended with its writes.
func committed(r *http.Request) {
	if a := recOf(r); a != nil {
		a.committed = true
	}
}

// ---- /auth ----------------------------------------------------------------

// oauthError answers in RFC 6749 form.
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v)
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// form parses a urlencoded body (bounded).
func form(w http.ResponseWriter, r *http.Request) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, _ := mime.ParseMediaType(ct)
		if mt != "application/x-www-form-urlencoded" {
			return errors.New("the body must be application/x-www-form-urlencoded")
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return errors.New("malformed form body")
	}
	return nil
}

// token: POST /auth/token (grant_type password, the default, or
// refresh_token).
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if s.closed || s.opt.InsecureOpen {
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "authentication is not configured on this server")
		return
	}
	if err := form(w, r); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	f := r.PostForm
	var g *auth.Grant
	var err error
	switch gt := f.Get("grant_type"); gt {
	case "", "password":
		if f.Get("username") == "" || f.Get("password") == "" {
			oauthError(w, http.StatusBadRequest, "invalid_request", "username, password and otp are required")
			return
		}
		scope, serr := policy.ParseScopes(f.Get("scope"))
		if serr != nil {
			oauthError(w, http.StatusBadRequest, "invalid_scope", serr.Error())
			return
		}
		auditWho(r, "", f.Get("username"), "", nil)
		g, err = s.auth.Login(r.Context(), f.Get("username"), f.Get("password"), f.Get("otp"), clientAddr(r), scope)
	case "refresh_token":
		if f.Get("refresh_token") == "" {
			oauthError(w, http.StatusBadRequest, "invalid_request", "refresh_token is required")
			return
		}
		auditAs(r, "token-refresh", "")
		g, err = s.auth.Refresh(r.Context(), f.Get("refresh_token"), clientAddr(r))
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be password or refresh_token")
		return
	}
	var te *auth.ThrottledError
	switch {
	case errors.As(err, &te):
		auditAs(r, "login-throttled", "")
		w.Header().Set("Retry-After", strconv.Itoa(int(te.RetryAfter.Seconds()+0.999)))
		oauthError(w, http.StatusTooManyRequests, "slow_down", te.Error())
		return
	case errors.Is(err, auth.ErrInvalidCredentials):
		if a := recOf(r); a != nil {
			a.e.Action += "-failed"
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="carnet"`)
		oauthError(w, http.StatusUnauthorized, "invalid_grant", err.Error())
		return
	case err != nil:
		s.log.ErrorContext(r.Context(), "token", "err", err)
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "try again later")
		return
	}
	auditWho(r, g.Account.ID, g.Account.Username, g.Session, g.Account.Roles)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token":  g.AccessToken,
		"token_type":    "Bearer",
		"expires_in":    int(g.ExpiresIn / time.Second),
		"refresh_token": g.RefreshToken,
		"scope":         g.Scope,
	})
}

// revoke: POST /auth/revoke (RFC 7009): ends the token's session.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	if s.closed || s.opt.InsecureOpen {
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "authentication is not configured on this server")
		return
	}
	if err := form(w, r); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	tok := r.PostForm.Get("token")
	if tok == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "token is required")
		return
	}
	if err := s.auth.Revoke(r.Context(), tok); err != nil {
		oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "try again later")
		return
	}
	w.WriteHeader(http.StatusOK)
}

// me: GET /auth/me, who the token belongs to.
func (s *Server) me(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	if p == nil {
		s.fail(w, r, fhir.NotFound("no account: the server runs without authentication"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"username": p.Username, "practitioner": p.Practitioner, "roles": p.Roles, "facilities": p.Facilities, "scope": p.Scopes,
	})
}
