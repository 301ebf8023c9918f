package web

import (
	"bytes"
	"encoding/base64"
	"errors"
	"html/template"
	"image/png"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pquerna/otp"

	"carnet/internal/auth"
	"carnet/internal/policy"
)

// loginData is the login page's state.
type loginData struct {
	Step     string // "password" or "code"
	Username string
	Next     string
	Expired  bool
}

func (p *page) withLogin(csrf, step, next string) *page {
	if step == "" {
		step = "password"
	}
	p.CSRF = csrf
	p.Title = p.T("login.title")
	p.Data = &loginData{Step: step, Next: localPath(next)}
	return p
}

func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p := s.newPage(r, nil).withLogin(s.csrfToken(w, r), q.Get("step"), q.Get("next"))
	d := p.Data.(*loginData)
	if d.Step == "code" && cookie(r, cookiePending) == "" {
		d.Step = "password"
	}
	if q.Get("expired") == "1" {
		d.Expired = true
		p.Notice = p.T("login.expired")
	}
	s.render(w, r, http.StatusOK, "login", p)
}

func (s *Server) authError(r *http.Request, err error) (int, string) {
	var th *auth.ThrottledError
	switch {
	case errors.As(err, &th):
		return http.StatusTooManyRequests, s.msgs.t(langOf(r), "login.throttled") + " " + th.RetryAfter.Round(time.Second).String()
	case errors.Is(err, auth.ErrInvalidCredentials):
		return http.StatusUnauthorized, s.t(r, "login.invalid")
	case errors.Is(err, auth.ErrPendingExpired):
		return http.StatusUnauthorized, s.t(r, "login.pending-expired")
	case errors.Is(err, auth.ErrEnrolmentCode):
		return http.StatusUnprocessableEntity, s.t(r, "enrol.wrong-code")
	}
	s.log.ErrorContext(r.Context(), "login failed", "err", err)
	return http.StatusServiceUnavailable, s.t(r, "error.unavailable")
}

// loginPassword is the first step.
func (s *Server) loginPassword(w http.ResponseWriter, r *http.Request) {
	next := r.PostFormValue("next")
	pend, err := s.opt.Auth.BeginLogin(r.Context(), r.PostFormValue("username"), r.PostFormValue("password"), clientAddr(r))
	if err != nil {
		status, msg := s.authError(r, err)
		p := s.newPage(r, nil).withLogin(s.csrfToken(w, r), "password", next)
		p.Data.(*loginData).Username = r.PostFormValue("username")
		p.Error = msg
		s.render(w, r, status, "login", p)
		return
	}
	s.setCookie(w, r, cookiePending, pend.Token, auth.PendingTTL, true)
	if pend.Enrol {
		http.Redirect(w, r, Prefix+"enrol?"+url.Values{"next": {localPath(next)}}.Encode(), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, Prefix+"login?"+url.Values{"step": {"code"}, "next": {localPath(next)}}.Encode(), http.StatusSeeOther)
}

// loginCode is the second step.
func (s *Server) loginCode(w http.ResponseWriter, r *http.Request) {
	next := r.PostFormValue("next")
	g, err := s.opt.Auth.FinishLogin(r.Context(), cookie(r, cookiePending), r.PostFormValue("otp"), clientAddr(r), policy.DefaultScope)
	s.setCookie(w, r, cookiePending, "", -1, true)
	if err != nil {
		status, msg := s.authError(r, err)
		p := s.newPage(r, nil).withLogin(s.csrfToken(w, r), "password", next)
		p.Error = msg
		s.render(w, r, status, "login", p)
		return
	}
	s.startSession(w, r, g)
	http.Redirect(w, r, localPath(next), http.StatusSeeOther)
}

// enrolData is the enrolment page's state.
type enrolData struct {
	Secret, Next string
	QR           template.URL // a data: URL made here, not user input
}

// enrolForm shows a new authenticator secret as a QR code (PNG, made here)
// and as text.
func (s *Server) enrolForm(w http.ResponseWriter, r *http.Request) {
	next := r.URL.Query().Get("next")
	secret, uri, err := s.opt.Auth.StartEnrolment(r.Context(), cookie(r, cookiePending))
	if err != nil {
		status, msg := s.authError(r, err)
		p := s.newPage(r, nil).withLogin(s.csrfToken(w, r), "password", next)
		p.Error = msg
		s.render(w, r, status, "login", p)
		return
	}
	qr, err := qrDataURL(uri)
	if err != nil {
		s.log.ErrorContext(r.Context(), "QR code", "err", err)
	}
	p := s.newPage(r, nil)
	p.CSRF = s.csrfToken(w, r)
	p.Title = p.T("enrol.title")
	p.Data = &enrolData{Secret: spaced(secret), QR: template.URL(qr), Next: localPath(next)}
	s.render(w, r, http.StatusOK, "enrol", p)
}

func (s *Server) enrolConfirm(w http.ResponseWriter, r *http.Request) {
	next := r.PostFormValue("next")
	g, codes, err := s.opt.Auth.ConfirmEnrolment(r.Context(), cookie(r, cookiePending), r.PostFormValue("otp"), clientAddr(r), policy.DefaultScope)
	if err != nil {
		status, msg := s.authError(r, err)
		if errors.Is(err, auth.ErrEnrolmentCode) {
			// Same pending login, same secret: show the form again.
			http.Redirect(w, r, Prefix+"enrol?"+url.Values{"next": {localPath(next)}, "wrong": {"1"}}.Encode(), http.StatusSeeOther)
			return
		}
		p := s.newPage(r, nil).withLogin(s.csrfToken(w, r), "password", next)
		p.Error = msg
		s.render(w, r, status, "login", p)
		return
	}
	s.startSession(w, r, g)
	// The recovery codes are shown once, on the next page: carried in a
	// short-lived HttpOnly cookie scoped to that page, then deleted.
	http.SetCookie(w, &http.Cookie{Name: cookieFlash, Value: strings.Join(codes, "."), Path: Prefix + "recovery-codes",
		MaxAge: 120, HttpOnly: true, Secure: s.secure(r), SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, Prefix+"recovery-codes?"+url.Values{"next": {localPath(next)}}.Encode(), http.StatusSeeOther)
}

func (s *Server) recoveryCodes(w http.ResponseWriter, r *http.Request, u *user) {
	codes := strings.Split(cookie(r, cookieFlash), ".")
	http.SetCookie(w, &http.Cookie{Name: cookieFlash, Value: "", Path: Prefix + "recovery-codes", MaxAge: -1, HttpOnly: true, Secure: s.secure(r)})
	if len(codes) < 2 {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	p := s.newPage(r, u)
	p.Title = p.T("recovery.title")
	p.Data = struct {
		Codes []string
		Next  string
	}{codes, localPath(r.URL.Query().Get("next"))}
	s.render(w, r, http.StatusOK, "recovery", p)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if at := cookie(r, cookieAccess); at != "" {
		if err := s.opt.Auth.Revoke(r.Context(), at); err != nil {
			s.log.ErrorContext(r.Context(), "logout: revoke", "err", err)
		}
	}
	s.endSession(w, r)
	p := s.newPage(r, nil).withLogin(s.csrfToken(w, r), "password", "")
	p.Notice = p.T("login.logged-out")
	s.render(w, r, http.StatusOK, "login", p)
}

// stepUpForm asks for a fresh code when the guard wants one.
func (s *Server) stepUpForm(w http.ResponseWriter, r *http.Request, u *user) {
	p := s.newPage(r, u)
	p.Title = p.T("stepup.title")
	p.Data = localPath(r.URL.Query().Get("next"))
	s.render(w, r, http.StatusOK, "stepup", p)
}

func (s *Server) stepUp(w http.ResponseWriter, r *http.Request, u *user) {
	next := localPath(r.PostFormValue("next"))
	a := s.call(r, u, http.MethodPost, "/auth/step-up", url.Values{"otp": {r.PostFormValue("otp")}})
	if a.OK() {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	if !a.StepUp() && s.handled(w, r, u, a) {
		return
	}
	p := s.newPage(r, u)
	p.Title = p.T("stepup.title")
	p.Error = p.T("stepup.wrong")
	p.Data = next
	s.render(w, r, http.StatusUnauthorized, "stepup", p)
}

// qrDataURL renders an otpauth:// URI as a PNG QR code in a data: URL.
func qrDataURL(uri string) (string, error) {
	k, err := otp.NewKeyFromURL(uri)
	if err != nil {
		return "", err
	}
	img, err := k.Image(240, 240)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return "", err
	}
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// spaced groups a secret by four characters for typing.
func spaced(s string) string {
	var b strings.Builder
	for i, c := range s {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	return b.String()
}
