package api

import (
	"net/http"
	"testing"

	"carnet/internal/policy"
)

// TestSecOfficerNotSilencedByAdmin: an administrator's session (the seed
// attack's) cannot disable the security officer who reads the guard's
// alerts; another security officer can.
func TestSecOfficerNotSilencedByAdmin(t *testing.T) {
	w := newSecWorld(t)
	w.account(t, "so2", policy.SecurityOfficer, "", w.F1)
	ga := w.login(t, "ga", "")
	fa := w.login(t, "fa1", "")
	so := w.login(t, "so", "")
	secWant(t, w.postJSON(t, "/admin/accounts/so/disable", ga.access, "{}"), http.StatusForbidden, "group admin disables the security officer")
	secWant(t, w.postJSON(t, "/admin/accounts/so/disable", fa.access, "{}"), http.StatusNotFound, "facility admin disables the security officer (not an account it manages)")
	secWant(t, w.get(t, "/security/alerts", so.access), http.StatusOK, "the officer still works")
	// Another security officer can (a departure, a compromise).
	so2 := w.login(t, "so2", "")
	secWant(t, w.postJSON(t, "/admin/accounts/so/disable", so2.access, "{}"), http.StatusOK, "another officer disables the officer")
	secWant(t, w.get(t, "/security/alerts", so.access), http.StatusUnauthorized, "the disabled officer's session")
	secWant(t, w.postJSON(t, "/admin/accounts/so/enable", ga.access, "{}"), http.StatusForbidden, "group admin re-enables the officer")
	secWant(t, w.postJSON(t, "/admin/accounts/so/enable", so2.access, "{}"), http.StatusOK, "another officer re-enables the officer")
	// Administrators still manage the other accounts.
	secWant(t, w.postJSON(t, "/admin/accounts/d1/disable", fa.access, "{}"), http.StatusOK, "facility admin disables a physician")
}
