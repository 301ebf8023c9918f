package web

import (
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"carnet/internal/policy"
)

// page is what every template receives.
type page struct {
	Lang  string
	msgs  catalog
	Title string
	User  *user
	// CSRF is the token for the page's forms.
	CSRF    string
	Path    string // the request's path and query (for the language switch)
	Notice  string
	Error   string
	Patient *patientView // the banner, on patient pages
	Data    any
	now     func() time.Time
}

func (s *Server) newPage(r *http.Request, u *user) *page {
	p := &page{Lang: langOf(r), msgs: s.msgs, User: u, Path: r.URL.RequestURI(), now: s.opt.Now}
	if u != nil {
		p.CSRF = u.csrf
	}
	return p
}

func (p *page) withError(msg string) *page { p.Error = msg; return p }

// T translates key into the page's language; args fill its %s / %d.
func (p *page) T(key string, args ...any) string {
	m := p.msgs.t(p.Lang, key)
	if len(args) > 0 {
		return fmt.Sprintf(m, args...)
	}
	return m
}

// Other is the language the switch offers.
func (p *page) Other() string {
	if p.Lang == "fr" {
		return "en"
	}
	return "fr"
}

// Admin reports whether the user administers accounts.
func (p *page) Admin() bool { return p.Has(policy.GroupAdmin) || p.Has(policy.FacilityAdmin) }

// Officer reports whether the user is a security officer.
func (p *page) Officer() bool { return p.Has(policy.SecurityOfficer) }

// Has reports whether the user holds role.
func (p *page) Has(role string) bool { return p.User != nil && p.User.HasRole(role) }

// Clinical reports whether the user holds a role that reads charts.
func (p *page) Clinical() bool {
	return p.Has(policy.Physician) || p.Has(policy.Nurse) || p.Has(policy.Pharmacist) || p.Has(policy.AdmissionClerk) || p.Has(policy.BillingClerk)
}

// ExpiresIn is how many seconds the session's access token has left (for
// the expiry warning; relative, so that a skewed workstation clock does not
// matter).
func (p *page) ExpiresIn() int64 {
	if p.User == nil || p.now == nil {
		return 0
	}
	return max(1, int64(p.User.expires.Sub(p.now())/time.Second))
}

// Date formats a FHIR date or dateTime for the page's language.
func (p *page) Date(v string) string { return fmtDate(p.Lang, v) }

func fmtDate(lang, v string) string {
	layouts := []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02", "2006-01", "2006"}
	for i, l := range layouts {
		t, err := time.Parse(l, v)
		if err != nil {
			continue
		}
		switch {
		case i < 2:
			if lang == "fr" {
				return t.Format("02/01/2006 15:04")
			}
			return t.Format("2006-01-02 15:04")
		case i == 2:
			if lang == "fr" {
				return t.Format("02/01/2006")
			}
			return t.Format("2006-01-02")
		}
		return v
	}
	return v
}

var funcs = template.FuncMap{
	"join":  strings.Join,
	"lower": strings.ToLower,
	"add":   func(a, b int) int { return a + b },
}

// langOf chooses the language: the switch's cookie, else the browser's
// Accept-Language, else French.
func langOf(r *http.Request) string {
	switch cookie(r, cookieLang) {
	case "fr":
		return "fr"
	case "en":
		return "en"
	}
	for part := range strings.SplitSeq(r.Header.Get("Accept-Language"), ",") {
		tag, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		switch strings.ToLower(strings.SplitN(tag, "-", 2)[0]) {
		case "fr":
			return "fr"
		case "en":
			return "en"
		}
	}
	return "fr"
}

func (s *Server) t(r *http.Request, key string) string { return s.msgs.t(langOf(r), key) }

// setLang is the language switch: a cookie for a year, then back.
func (s *Server) setLang(w http.ResponseWriter, r *http.Request) {
	l := r.URL.Query().Get("to")
	if l != "fr" && l != "en" {
		l = "fr"
	}
	s.setCookie(w, r, cookieLang, l, 365*24*time.Hour, true)
	http.Redirect(w, r, localPath(r.URL.Query().Get("next")), http.StatusSeeOther)
}
