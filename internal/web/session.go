package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"carnet/internal/auth"
)

type ctx = context.Context

// Cookies. The tokens are HttpOnly: no script can read them. SameSite=Lax
// keeps them off cross-site POSTs (and the CSRF token check refuses those
// anyway).
const (
	cookieAccess  = "carnet_at"
	cookieRefresh = "carnet_rt"
	cookieExpires = "carnet_exp" // when the access token ends (Unix seconds), for the expiry warning
	cookiePending = "carnet_pl"
	cookieCSRF    = "carnet_csrf"
	cookieLang    = "carnet_lang"
	cookieFlash   = "carnet_flash" // recovery codes between enrolment and their page
)

// user is the signed-in user of a request.
type user struct {
	*auth.Principal
	token   string // access token, for API calls
	expires time.Time
	csrf    string
	// btg: the patients this request read under one of the user's active
	// break-the-glass grants, and when each grant ends (the API's
	// Carnet-Break-Glass header on the Patient read).
	btg map[string]time.Time
}

func (s *Server) secure(r *http.Request) bool { return s.opt.SecureCookies || r.TLS != nil }

func (s *Server) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge time.Duration, httpOnly bool) {
	c := &http.Cookie{Name: name, Value: value, Path: Prefix, HttpOnly: httpOnly, Secure: s.secure(r), SameSite: http.SameSiteLaxMode}
	if maxAge > 0 {
		c.MaxAge = int(maxAge / time.Second)
	} else if maxAge < 0 {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

func cookie(r *http.Request, name string) string {
	c, err := r.Cookie(name)
	if err != nil {
		return ""
	}
	return c.Value
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// startSession stores a new grant's tokens in cookies.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, g *auth.Grant) {
	now := s.opt.Now()
	s.setCookie(w, r, cookieAccess, g.AccessToken, 0, true)
	s.setCookie(w, r, cookieRefresh, g.RefreshToken, 0, true)
	s.setCookie(w, r, cookieExpires, strconv.FormatInt(now.Add(g.ExpiresIn).Unix(), 10), 0, false)
	s.setCookie(w, r, cookiePending, "", -1, true)
}

func (s *Server) endSession(w http.ResponseWriter, r *http.Request) {
	for _, n := range []string{cookieAccess, cookieRefresh, cookieExpires, cookiePending, cookieFlash} {
		s.setCookie(w, r, n, "", -1, true)
	}
}

// signedIn resolves the session of a page request, refreshing its tokens
// when less than RefreshBefore is left. Without a valid session it sends
// the browser to the login page (and answers false).
func (s *Server) signedIn(w http.ResponseWriter, r *http.Request) (*user, bool) {
	client := clientAddr(r)
	at := cookie(r, cookieAccess)
	exp, _ := strconv.ParseInt(cookie(r, cookieExpires), 10, 64)
	p, err := s.opt.Auth.Authenticate(r.Context(), at, client)
	if err != nil && !errors.Is(err, auth.ErrUnauthenticated) {
		s.log.ErrorContext(r.Context(), "session lookup failed", "err", err)
		s.render(w, r, http.StatusServiceUnavailable, "error", s.newPage(r, nil).withError(s.t(r, "error.unavailable")))
		return nil, false
	}
	expires := time.Unix(exp, 0)
	// Only top-level navigations refresh: a refresh token works once, and
	// two concurrent refreshes would read as theft and end the session.
	nav := r.Header.Get("Sec-Fetch-Dest") == "" || r.Header.Get("Sec-Fetch-Dest") == "document"
	if p != nil && nav && expires.Sub(s.opt.Now()) < s.opt.RefreshBefore {
		if g, err := s.opt.Auth.Refresh(r.Context(), cookie(r, cookieRefresh), client); err == nil {
			s.startSession(w, r, g)
			at, expires = g.AccessToken, s.opt.Now().Add(g.ExpiresIn)
		}
	}
	if p == nil {
		s.endSession(w, r)
		q := url.Values{"next": {r.URL.RequestURI()}}
		if at != "" {
			q.Set("expired", "1")
		}
		http.Redirect(w, r, Prefix+"login?"+q.Encode(), http.StatusSeeOther)
		return nil, false
	}
	return &user{Principal: p, token: at, expires: expires, csrf: s.csrfToken(w, r)}, true
}

// csrfToken returns the browser's CSRF token, giving it one if it has none.
// Forms carry it in a hidden field; csrfOnly compares the two.
func (s *Server) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c := cookie(r, cookieCSRF); len(c) == 43 {
		return c
	}
	var b [32]byte
	rand.Read(b[:])
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	s.setCookie(w, r, cookieCSRF, tok, 0, true)
	// Later cookie reads in this request see it too.
	r.AddCookie(&http.Cookie{Name: cookieCSRF, Value: tok})
	return tok
}

// csrfOnly refuses a state-changing request from another site: the
// browser's Sec-Fetch-Site and Origin must say same origin when present,
// and the form's token must equal the cookie's (double submit).
func (s *Server) csrfOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !sameOrigin(r) || !validCSRF(r) {
			s.log.WarnContext(r.Context(), "cross-site request refused", "path", r.URL.Path, "origin", r.Header.Get("Origin"), "client", clientAddr(r))
			s.render(w, r, http.StatusForbidden, "error", s.newPage(r, nil).withError(s.t(r, "error.csrf")))
			return
		}
		h(w, r)
	}
}

func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		// Browsers send "Origin: null" on form POSTs from pages under a
		// no-referrer policy (ours was; a privacy extension may impose
		// one): then the browser's Sec-Fetch-Site must say it came from
		// this origin.
		if o == "null" {
			return r.Header.Get("Sec-Fetch-Site") == "same-origin"
		}
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return false
		}
	}
	return true
}

func validCSRF(r *http.Request) bool {
	c := cookie(r, cookieCSRF)
	if len(c) != 43 {
		return false
	}
	f := r.PostFormValue("csrf")
	return subtle.ConstantTimeCompare([]byte(c), []byte(f)) == 1
}
