package web

import (
	"io/fs"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"carnet/internal/policy"
)

// adminTemplates are the administration and security console's templates.
func adminTemplates(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		base := strings.TrimPrefix(n, "templates/")
		if !strings.HasPrefix(base, "admin") && !strings.HasPrefix(base, "security") {
			continue
		}
		b, err := templateFS.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		out[base] = string(b)
	}
	if len(out) < 10 {
		t.Fatalf("only %d admin and security templates", len(out))
	}
	return out
}

// TestAdminMessages: every text the administration and security pages use
// exists in French and English, with the same placeholders.
func TestAdminMessages(t *testing.T) {
	msgs := messages()
	keys := map[string]bool{}
	literal := regexp.MustCompile(`\bT "([a-z0-9.\-]+)"`)
	prefixed := regexp.MustCompile(`printf "([a-z0-9.\-]+\.)%s"`)
	values := map[string][]string{
		"admin.role.":       policy.Roles,
		"admin.status.":     accountStatuses,
		"admin.rstatus.":    {"pending", "approved", "rejected", "all"},
		"admin.op.":         {"grant", "revoke"},
		"admin.xstatus.":    {"pending", "approved", "rejected", "downloaded", "expired"},
		"sec.astatus.":      {"open", "acknowledged", "all"},
		"sec.sev.":          {"critical", "warning"},
		"sec.verdict.":      {"allow", "flag", "step-up", "throttle", "suspend"},
		"sec.btg.reason.":   {"emergency", "continuity-of-care", "on-call", "patient-request", "other"},
		"sec.cat.":          scopeCategories,
		"sec.outcome.":      {"ok", "refused", "failed"},
		"admin.done.":       {"created", "disabled", "enabled", "requested", "revoked", "approved", "rejected", "acknowledged", "reviewed", "checked", "checking"},
		"admin.nav.":        {"label", "accounts", "new", "roles", "facilities", "exports"},
		"sec.nav.":          {"label", "alerts", "btg", "audit", "incident", "log"},
		"admin.forbidden":   {""},
		"sec.forbidden":     {""},
		"admin.enrol.reset": {""},
	}
	for name, src := range adminTemplates(t) {
		for _, m := range literal.FindAllStringSubmatch(src, -1) {
			keys[m[1]] = true
		}
		for _, m := range prefixed.FindAllStringSubmatch(src, -1) {
			if _, ok := values[m[1]]; !ok {
				t.Errorf("%s: no known values for the keys %s*", name, m[1])
			}
		}
	}
	for _, f := range []string{"admin.go", "security.go"} {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`(?:T|t\(r,) ?\(?"([a-z0-9.\-]+)"`).FindAllStringSubmatch(string(src), -1) {
			if strings.HasSuffix(m[1], ".") {
				continue
			}
			keys[m[1]] = true
		}
	}
	for prefix, vs := range values {
		for _, v := range vs {
			keys[prefix+v] = true
		}
	}
	if len(keys) < 250 {
		t.Fatalf("only %d keys found", len(keys))
	}
	verbs := regexp.MustCompile(`%[sd]`)
	for k := range keys {
		m, ok := msgs[k]
		if !ok {
			t.Errorf("no message %q", k)
			continue
		}
		if m[0] == "" || m[1] == "" {
			t.Errorf("message %q lacks a language: %q", k, m)
		}
		if a, b := verbs.FindAllString(m[0], -1), verbs.FindAllString(m[1], -1); strings.Join(a, "") != strings.Join(b, "") {
			t.Errorf("message %q: French %v and English %v placeholders differ", k, a, b)
		}
	}
	for k := range adminMessages {
		if !strings.HasPrefix(k, "admin.") && !strings.HasPrefix(k, "sec.") {
			t.Errorf("message %q outside the admin. and sec. prefixes", k)
		}
	}
}

// TestAdminTemplatesCSP: every POST form carries the CSRF token, and no
// template has inline script, style or event handlers (CSP).
func TestAdminTemplatesCSP(t *testing.T) {
	form := regexp.MustCompile(`(?s)<form [^>]*method="post"[^>]*>.*?</form>`)
	for name, src := range adminTemplates(t) {
		for _, f := range form.FindAllString(src, -1) {
			if !strings.Contains(f, `<input type="hidden" name="csrf" value="{{$.CSRF}}">`) {
				t.Errorf("%s: a POST form without the CSRF token:\n%s", name, f)
			}
		}
		if strings.Count(src, "<form") != strings.Count(src, "</form>") {
			t.Errorf("%s: unbalanced forms", name)
		}
		for _, bad := range []*regexp.Regexp{regexp.MustCompile(`(?i)<script`), regexp.MustCompile(`(?i)\sstyle=`), regexp.MustCompile(`(?i)\son[a-z]+=`), regexp.MustCompile(`(?i)javascript:`)} {
			if bad.MatchString(src) {
				t.Errorf("%s: %s (strict CSP)", name, bad)
			}
		}
	}
}

func TestStamp(t *testing.T) {
	at := time.Date(2026, 3, 2, 9, 5, 7, 0, time.FixedZone("CET", 3600))
	for lang, want := range map[string]string{"fr": "02/03/2026 08:05:07 UTC", "en": "2026-03-02 08:05:07 UTC"} {
		p := &page{Lang: lang}
		if got := p.Stamp(at); got != want {
			t.Errorf("%s: %q, want %q", lang, got, want)
		}
		if got := p.Stamp(&at); got != want {
			t.Errorf("%s pointer: %q", lang, got)
		}
		if got := p.Stamp((*time.Time)(nil)); got != "—" {
			t.Errorf("nil: %q", got)
		}
		if got := p.Stamp(time.Time{}); got != "—" {
			t.Errorf("zero: %q", got)
		}
	}
}
