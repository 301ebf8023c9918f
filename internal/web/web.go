// Package web is Carnet's clinician web application: server-rendered
// pages (html/template), in French and English, under /app/.
//
// The pages are a client of the FHIR API in the same process: every patient
// datum a page shows comes from an API call made with the user's own
// session token (apiclient.go), so it takes the one request path (policy,
// exfiltration guard, durable audit before the data leaves) that every
// other client takes. The web layer itself never reads patient data from
// the store.
//
// Security: a strict Content-Security-Policy (no inline script or style:
// one static script and one style sheet), CSRF tokens on every form plus a
// same-origin check, HttpOnly SameSite cookies (Secure behind TLS), no
// caching of pages.
package web

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"carnet/internal/auth"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Prefix is where the application is mounted.
const Prefix = "/app/"

// CSP is the Content-Security-Policy of every page: scripts and styles
// from the application's own static files only, images from itself or
// data: URLs (the enrolment QR code), no framing, forms to itself only.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Authenticator is what the pages need of the auth service.
type Authenticator interface {
	BeginLogin(ctx ctx, username, password, client string) (*auth.Pending, error)
	FinishLogin(ctx ctx, pending, otp, client, scope string) (*auth.Grant, error)
	StartEnrolment(ctx ctx, pending string) (secret, uri string, err error)
	ConfirmEnrolment(ctx ctx, pending, otp, client, scope string) (*auth.Grant, []string, error)
	Authenticate(ctx ctx, bearer, client string) (*auth.Principal, error)
	Refresh(ctx ctx, refreshToken, client string) (*auth.Grant, error)
	Revoke(ctx ctx, token string) error
}

// Options configure the application.
type Options struct {
	// API serves the FHIR API and Carnet's other endpoints (api.Server).
	API  http.Handler
	Auth Authenticator
	// SecureCookies marks cookies Secure (set it when served over HTTPS;
	// requests that arrive over TLS get Secure cookies anyway).
	SecureCookies bool
	// AccessTTL is the lifetime of an access token (15 minutes): a page
	// refreshes the session when less than RefreshBefore of it is left, so
	// an idle session ends between RefreshBefore and AccessTTL after the
	// last page.
	AccessTTL, RefreshBefore time.Duration
	Logger                   *slog.Logger
	Now                      func() time.Time
}

// Server serves the web application.
type Server struct {
	opt   Options
	log   *slog.Logger
	mux   *http.ServeMux
	pages map[string]*template.Template
	msgs  catalog
}

// New returns the application.
func New(opt Options) (*Server, error) {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.AccessTTL <= 0 {
		opt.AccessTTL = 15 * time.Minute
	}
	if opt.RefreshBefore <= 0 || opt.RefreshBefore > opt.AccessTTL {
		opt.RefreshBefore = 10 * time.Minute
	}
	s := &Server{opt: opt, log: opt.Logger, mux: http.NewServeMux(), msgs: messages()}
	if err := s.parse(); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

func (s *Server) parse() error {
	s.pages = map[string]*template.Template{}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	for _, n := range names {
		base := strings.TrimPrefix(n, "templates/")
		if base == "base.html" || strings.HasPrefix(base, "_") {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFS, "templates/base.html", "templates/_*.html", n)
		if err != nil {
			return err
		}
		s.pages[strings.TrimSuffix(base, ".html")] = t
	}
	return nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.ErrorContext(r.Context(), "panic in page", "path", r.URL.Path, "panic", v)
			http.Error(w, "internal error", http.StatusInternalServerError)
		}
	}()
	s.mux.ServeHTTP(w, r)
}

func (s *Server) routes() {
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix(Prefix+"static/", http.FileServer(http.FS(static)))
	s.mux.Handle("GET "+Prefix+"static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	}))
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, Prefix, http.StatusFound) })
	s.mux.HandleFunc("GET "+Prefix+"lang", s.setLang)
	s.mux.HandleFunc("GET "+Prefix+"login", s.loginForm)
	s.mux.HandleFunc("POST "+Prefix+"login", s.csrfOnly(s.loginPassword))
	s.mux.HandleFunc("POST "+Prefix+"login/code", s.csrfOnly(s.loginCode))
	s.mux.HandleFunc("GET "+Prefix+"enrol", s.enrolForm)
	s.mux.HandleFunc("POST "+Prefix+"enrol", s.csrfOnly(s.enrolConfirm))
	s.mux.HandleFunc("POST "+Prefix+"logout", s.csrfOnly(s.logout))
	s.page("GET "+Prefix+"{$}", s.home)
	s.page("GET "+Prefix+"recovery-codes", s.recoveryCodes)
	s.page("GET "+Prefix+"step-up", s.stepUpForm)
	s.page("POST "+Prefix+"step-up", s.stepUp)
	s.page("GET "+Prefix+"patients", s.patientSearch)
	s.mux.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) {
		s.render(w, r, http.StatusNotFound, "error", s.newPage(r, nil).withError(s.msgs.t(langOf(r), "error.notfound")))
	})
	s.moreRoutes()
}

// page registers a handler for signed-in users (POSTs CSRF-checked).
func (s *Server) page(pattern string, h func(w http.ResponseWriter, r *http.Request, u *user)) {
	var hf http.HandlerFunc = func(w http.ResponseWriter, r *http.Request) {
		u, ok := s.signedIn(w, r)
		if !ok {
			return
		}
		h(w, r, u)
	}
	if strings.HasPrefix(pattern, "POST ") {
		hf = s.csrfOnly(hf)
	}
	s.mux.Handle(pattern, hf)
}

// render executes a page template; a template error leaves a 500 and no
// partial page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, p *page) {
	t, ok := s.pages[name]
	if !ok {
		s.log.ErrorContext(r.Context(), "no such page template", "page", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "base", p); err != nil {
		s.log.ErrorContext(r.Context(), "page render failed", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Language", p.Lang)
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// localPath returns next if it is a path of the application, else the home page
// (no open redirect).
func localPath(next string) string {
	if !strings.HasPrefix(next, Prefix) || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Prefix
	}
	return next
}

// Mount serves the application at / and /app/ beside the API (everything else).
func Mount(api http.Handler, app http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", api)
	mux.Handle("GET /{$}", app)
	mux.Handle(Prefix, app)
	return mux
}
