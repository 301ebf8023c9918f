package web_test

// End-to-end tests of the administration and security consoles in
// headless Chromium (browser_test.go): an administrator reaches no patient
// datum, and a suspension made by the guard reaches the security officer's
// console.

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"carnet/internal/policy"
	"carnet/internal/sim"
)

func TestBrowserAdministratorSeesNoPatientData(t *testing.T) {
	a := newApp(t)
	// Some patients an administrator must not reach, and a physician to
	// look them up by.
	doc := a.member(t, policy.Physician, e2eStaff+9)
	pats := []sim.Patient{a.W.Patients[a.W.GPOf[doc.Index][0]], a.W.Patients[a.W.GPOf[doc.Index][1]]}
	for _, c := range []struct {
		role       string
		facilities []string
		console    string
	}{
		{policy.GroupAdmin, a.member(t, policy.GroupAdmin, 0).Facilities, "/app/admin"},
		{policy.FacilityAdmin, doc.Facilities[:1], "/app/admin"},
	} {
		t.Run(c.role, func(t *testing.T) {
			tb := a.newTab(t, acceptFR)
			tb.signIn(a.newAccount(t, c.role, c.facilities))
			// Home: the administration, no patient search, and why.
			if tb.count(`header nav a[href="/app/patients"]`) != 0 || tb.count(`ul.cards a[href="/app/patients"]`) != 0 {
				t.Fatal("an administrator is offered the patient search")
			}
			if tb.count(`header nav a[href="/app/admin"]`) != 1 {
				t.Fatal("no administration link")
			}
			if !strings.Contains(tb.body(), "Votre rôle ne donne accès à aucun dossier patient") {
				t.Fatalf("home page:\n%s", tb.body())
			}
			tb.load(chromedp.Click(chromedp.CSS(`header nav a[href="/app/admin"]`)))
			if p := tb.path(); p != c.console {
				t.Fatalf("the administration link led to %s", p)
			}
			tb.shotBoth("admin-" + c.role)
			// Every way to a patient, typed by hand: nothing about them.
			for _, pat := range pats {
				for _, path := range []string{
					"/app/patients?name=" + pat.Family,
					"/app/patients/" + pat.ID,
					"/app/patients/" + pat.ID + "/prescriptions",
					"/app/patients/" + pat.ID + "/observations",
					"/app/patients/" + pat.ID + "/access",
					"/app/patients/" + pat.ID + "/break-the-glass",
				} {
					st := tb.open(path)
					body := strings.ToUpper(tb.body())
					if tb.count(".banner") != 0 || tb.count(`table.list a[href^="/app/patients/"]`) != 0 ||
						strings.Contains(body, strings.ToUpper(pat.Family)) || strings.Contains(body, pat.Birth[:4]+"-"+pat.Birth[5:7]) {
						t.Fatalf("%s (%d) shows patient data:\n%s", path, st, tb.body())
					}
					if strings.HasPrefix(path, "/app/patients/") && st < 400 && tb.count(`form[action$="/break-the-glass"]`) != 0 {
						t.Fatalf("%s: an administrator is offered break-the-glass", path)
					}
				}
			}
		})
	}
}

func TestBrowserSuspensionInSecurityConsole(t *testing.T) {
	a := newApp(t)
	// An admission clerk (a role that reaches every patient of the
	// facility) opens a canary patient of their facility, as someone
	// walking the patient list with a stolen session would.
	var clerk *sim.Member
	canary := ""
	for k := e2eStaff + 40; k < e2eStaff+60 && canary == ""; k++ {
		clerk = a.member(t, policy.AdmissionClerk, k)
		for id, fac := range a.W.Canaries {
			if slices.Contains(clerk.Facilities, fac) {
				canary = id
				break
			}
		}
	}
	if canary == "" {
		t.Fatal("no canary at any clerk's facility")
	}
	ct := a.newTab(t, acceptFR)
	ct.login(clerk)
	if st := ct.open("/app/patients/" + canary); st != http.StatusForbidden {
		t.Fatalf("the canary's chart: status %d", st)
	}
	if !strings.Contains(ct.body(), "suspendu") || ct.count(".banner") != 0 {
		t.Fatalf("after opening the canary:\n%s", ct.body())
	}
	// The session is over.
	ct.open("/app/patients")
	if p := ct.path(); !strings.HasPrefix(p, "/app/login") {
		t.Fatalf("the suspended clerk still reaches %s", p)
	}

	// The security officer's console shows the suspension and its alert.
	officer := a.newAccount(t, policy.SecurityOfficer, a.W.Officer.Facilities)
	so := a.newTab(t, acceptFR)
	so.signIn(officer)
	so.load(chromedp.Click(chromedp.CSS(`header nav a[href="/app/security"]`)))
	if p := so.path(); p != "/app/security" {
		t.Fatalf("the security link led to %s", p)
	}
	if got := evalIn[[]string](so, `Array.from(document.querySelectorAll("section.suspended li strong")).map(function(s){return s.textContent})`); !slices.Contains(got, clerk.Username) {
		t.Fatalf("suspended accounts listed: %q, want %s", got, clerk.Username)
	}
	row := fmt.Sprintf(`table.alerts tr.sev-critical a[href*="username=%s"]`, clerk.Username)
	if so.count(row) == 0 {
		t.Fatalf("no critical alert for %s:\n%s", clerk.Username, so.text("table.alerts"))
	}
	so.shotBoth("security")

	// Re-enabled after review (the button asks first), then the alert
	// closed with what the officer found: the clerk signs in again.
	suspended := func() []string {
		return evalIn[[]string](so, `Array.from(document.querySelectorAll("section.suspended li strong")).map(function(s){return s.textContent})`)
	}
	so.load(chromedp.Click(chromedp.CSS(fmt.Sprintf(`form[action="/app/security/accounts/%s/enable"] button`, clerk.Username))))
	if d := so.dialogList(); len(d) != 1 || !strings.HasPrefix(d[0], "confirm:") {
		t.Fatalf("dialogs: %q", d)
	}
	if n := so.text("main .notice"); !strings.Contains(n, "réactivé") {
		t.Fatalf("after re-enabling: %q", n)
	}
	form := fmt.Sprintf(`table.alerts tr.sev-critical:has(a[href*="username=%s"]) form.decide`, clerk.Username)
	so.do(chromedp.SendKeys(chromedp.CSS(form+" textarea"), "Canari ouvert par erreur lors d'une formation ; vérifié avec la cadre."))
	so.load(chromedp.Click(chromedp.CSS(form + " button")))
	if got := suspended(); slices.Contains(got, clerk.Username) {
		t.Fatalf("still listed as suspended after re-enabling and closing the alert: %q (at %s)", got, so.path())
	}
	ct.login(clerk)
}
