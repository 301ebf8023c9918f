package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"carnet/internal/auth"
	"carnet/internal/policy"
	"carnet/internal/store"
	"carnet/internal/synth"
)

// demoUser is one entry of demo-users.json.
type demoUser struct {
	Username   string   `json:"username"`
	Password   string   `json:"password"`
	TOTPSecret string   `json:"totp_secret"`
	Roles      []string `json:"roles"`
	Facilities []string `json:"facilities"`
}

// DemoUsersFile is written beside a demo or seeded store.
const demoUsersFile = "demo-users.json"

// demoPerRole is how many staff of each role get a password and an
// authenticator in the demo (the others have accounts without credentials
// until an administrator issues them).
const demoPerRole = 2

// seedAccounts creates an account for every staff member of the synthetic
// group and credentials for a few of each role, written to usersPath.
func seedAccounts(ctx context.Context, st *store.SQL, cfg synth.Config, usersPath string, stderr io.Writer) error {
	g := synth.New(cfg)
	svc := auth.NewService(st, auth.Options{})
	picked := map[int]bool{}
	var order []int
	for _, role := range policy.Roles {
		n := 0
		for i, s := range g.Staff {
			if n == demoPerRole {
				break
			}
			if slices.Contains(s.Roles, role) && !picked[i] {
				picked[i] = true
				order = append(order, i)
				n++
			}
		}
	}
	now := time.Now().UTC()
	var bulk []*store.Account
	for i, s := range g.Staff {
		if picked[i] {
			continue
		}
		bulk = append(bulk, &store.Account{ID: "acct-" + s.PractitionerID, Username: s.Username, Practitioner: s.PractitionerID,
			Display: s.GivenName + " " + s.FamilyName, Roles: s.Roles, Facilities: s.Facilities, Status: store.StatusActive, Created: now, Updated: now})
	}
	for start := 0; start < len(bulk); start += 500 {
		if err := st.CreateAccounts(ctx, bulk[start:min(start+500, len(bulk))]); err != nil {
			return fmt.Errorf("staff accounts: %w", err)
		}
	}
	if usersPath == "" {
		// Nowhere to hand credentials over: create the accounts without any.
		for _, i := range order {
			s := g.Staff[i]
			bulk = append(bulk, &store.Account{ID: "acct-" + s.PractitionerID, Username: s.Username, Practitioner: s.PractitionerID,
				Display: s.GivenName + " " + s.FamilyName, Roles: s.Roles, Facilities: s.Facilities, Status: store.StatusActive, Created: now, Updated: now})
		}
		if err := st.CreateAccounts(ctx, bulk[len(bulk)-len(order):]); err != nil {
			return fmt.Errorf("staff accounts: %w", err)
		}
		fmt.Fprintf(stderr, "created %d staff accounts without credentials (give --data DIR for demo-users.json, or use carnet user set-password and reset-mfa)\n", len(g.Staff))
		return nil
	}
	fmt.Fprintf(stderr, "created %d staff accounts; issuing credentials to %d demo users\n", len(g.Staff), len(order))
	var users []demoUser
	for _, i := range order {
		s := g.Staff[i]
		en, err := svc.CreateAccount(ctx, auth.NewAccount{Username: s.Username, Practitioner: s.PractitionerID,
			Display: s.GivenName + " " + s.FamilyName, Roles: s.Roles, Facilities: s.Facilities})
		if err != nil {
			return fmt.Errorf("demo account %s: %w", s.Username, err)
		}
		users = append(users, demoUser{Username: en.Username, Password: en.Password, TOTPSecret: en.TOTPSecret, Roles: s.Roles, Facilities: s.Facilities})
	}
	body, _ := json.MarshalIndent(users, "", "  ")
	if err := os.MkdirAll(filepath.Dir(usersPath), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(usersPath, append(body, '\n'), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "demo users and their credentials: %s\n", usersPath)
	return nil
}

// ---- carnet user ------------------------------------------------------------

var userCommands = []struct{ name, synopsis, summary string }{
	{"add", "--username U --roles R[,R] --facilities ORG[,ORG] [--practitioner ID] [--display NAME] [--password-stdin]", "create an account with a password and a TOTP authenticator"},
	{"list", "", "list accounts"},
	{"show", "USERNAME", "show one account"},
	{"disable", "USERNAME [--reason TEXT]", "disable an account (its tokens stop working at once)"},
	{"enable", "USERNAME", "enable a disabled or suspended account"},
	{"reset-mfa", "USERNAME", "issue a new authenticator and recovery codes, ending all sessions"},
	{"set-password", "USERNAME [--password-stdin]", "set a new password (generated unless given on stdin)"},
	{"grant", "USERNAME ROLE [--facility ORG]", "add a role (and a facility)"},
	{"revoke", "USERNAME ROLE", "remove a role"},
}

func userUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: carnet user <command> [--data DIR | --db URL] ...\n\nCommands:\n")
	for _, c := range userCommands {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, `
The CLI is the operator's tool on the server itself (it opens the store
directly; stop a server using the same SQLite data directory first). Through
the API, administrators get the four-eyes rule: role grants wait for a second
administrator's approval (POST /admin/role-requests).
`)
}

func runUser(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		userUsage(stderr)
		if len(args) == 0 {
			return errUsage
		}
		return flag.ErrHelp
	}
	sub := args[0]
	var synopsis string
	found := false
	for _, c := range userCommands {
		if c.name == sub {
			synopsis, found = c.synopsis, true
		}
	}
	if !found {
		fmt.Fprintf(stderr, "carnet user: unknown command %q\n\n", sub)
		userUsage(stderr)
		return errUsage
	}
	fs := flags("user "+sub, "[--data DIR | --db URL] "+synopsis, stderr)
	var sf storeFlags
	sf.register(fs, "./carnet-data")
	username := fs.String("username", "", "username (a-z 0-9 . - _)")
	roles := fs.String("roles", "", "comma-separated roles: "+strings.Join(policy.Roles, ", "))
	facilities := fs.String("facilities", "", "comma-separated Organization ids of the account's facilities")
	practitioner := fs.String("practitioner", "", "Practitioner id of the account's owner (clinicians)")
	display := fs.String("display", "", "display name")
	pwStdin := fs.Bool("password-stdin", false, "read the password from standard input instead of generating one")
	reason := fs.String("reason", "", "reason recorded with the status change")
	facility := fs.String("facility", "", "facility (Organization id) to add with the role")
	// Flags may come before or after the positional arguments.
	var pos []string
	rest := args[1:]
	for {
		if err := parse(fs, rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	need := func(n int) error {
		if len(pos) != n {
			fmt.Fprintf(stderr, "carnet user %s: expected %s\n", sub, synopsis)
			return errUsage
		}
		return nil
	}
	readPassword := func() (string, error) {
		if !*pwStdin {
			return "", nil
		}
		b, err := io.ReadAll(io.LimitReader(os.Stdin, 4096))
		if err != nil {
			return "", err
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	sf.noKeys = true // accounts are not patient data: no key needed
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	svc := auth.NewService(st, auth.Options{})
	switch sub {
	case "add":
		if err := need(0); err != nil {
			return err
		}
		rs, fsx := splitList(*roles), splitList(*facilities)
		for _, r := range rs {
			if !policy.ValidRole(r) {
				return fmt.Errorf("unknown role %q (one of %s)", r, strings.Join(policy.Roles, ", "))
			}
		}
		if *username == "" || len(fsx) == 0 {
			return fmt.Errorf("--username and --facilities are required")
		}
		pw, err := readPassword()
		if err != nil {
			return err
		}
		en, err := svc.CreateAccount(ctx, auth.NewAccount{Username: *username, Practitioner: *practitioner, Display: *display, Roles: rs, Facilities: fsx, Password: pw})
		if err != nil {
			return err
		}
		printEnrolment(stdout, en)
	case "list":
		as, err := st.Accounts(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "USERNAME\tROLES\tFACILITIES\tSTATUS\tCREDENTIALS")
		for _, a := range as {
			cred := "none"
			if a.PasswordHash != "" {
				cred = "password+mfa"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", a.Username, strings.Join(a.Roles, ","), len(a.Facilities), a.Status, cred)
		}
		tw.Flush()
	case "show":
		if err := need(1); err != nil {
			return err
		}
		a, err := st.AccountByUsername(ctx, strings.ToLower(pos[0]))
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no account %q", pos[0])
		}
		if err != nil {
			return err
		}
		factors, _ := st.Factors(ctx, a.ID)
		codes, _ := st.RecoveryCodesLeft(ctx, a.ID)
		fmt.Fprintf(stdout, "username:       %s\ndisplay:        %s\npractitioner:   %s\nroles:          %s\nfacilities:     %s\nstatus:         %s %s\npassword:       %v\nauthenticators: %d\nrecovery codes: %d left\ncreated:        %s\n",
			a.Username, a.Display, a.Practitioner, strings.Join(a.Roles, ", "), strings.Join(a.Facilities, ", "), a.Status, a.StatusReason,
			a.PasswordHash != "", len(factors), codes, a.Created.Format(time.RFC3339))
	case "disable", "enable":
		if err := need(1); err != nil {
			return err
		}
		status := store.StatusDisabled
		if sub == "enable" {
			status = store.StatusActive
		}
		a, err := svc.SetStatus(ctx, pos[0], status, *reason)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s is %s\n", a.Username, a.Status)
	case "reset-mfa":
		if err := need(1); err != nil {
			return err
		}
		en, err := svc.ResetMFA(ctx, pos[0])
		if err != nil {
			return err
		}
		printEnrolment(stdout, en)
	case "set-password":
		if err := need(1); err != nil {
			return err
		}
		pw, err := readPassword()
		if err != nil {
			return err
		}
		gen := pw == ""
		if gen {
			pw = auth.GeneratePassword()
		}
		if err := svc.SetPassword(ctx, pos[0], pw); err != nil {
			return err
		}
		if gen {
			fmt.Fprintf(stdout, "password: %s\n", pw)
		} else {
			fmt.Fprintln(stdout, "password set")
		}
	case "grant", "revoke":
		if err := need(2); err != nil {
			return err
		}
		if !policy.ValidRole(pos[1]) {
			return fmt.Errorf("unknown role %q (one of %s)", pos[1], strings.Join(policy.Roles, ", "))
		}
		a, err := st.AccountByUsername(ctx, strings.ToLower(pos[0]))
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no account %q", pos[0])
		}
		if err != nil {
			return err
		}
		if sub == "grant" {
			if !slices.Contains(a.Roles, pos[1]) {
				a.Roles = append(a.Roles, pos[1])
			}
			if *facility != "" && !slices.Contains(a.Facilities, *facility) {
				a.Facilities = append(a.Facilities, *facility)
			}
		} else {
			a.Roles = slices.DeleteFunc(a.Roles, func(r string) bool { return r == pos[1] })
		}
		a.Updated = time.Now().UTC()
		if err := st.UpdateAccount(ctx, a); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: roles %s\n", a.Username, strings.Join(a.Roles, ", "))
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func printEnrolment(w io.Writer, en *auth.Enrolment) {
	fmt.Fprintf(w, "username:    %s\n", en.Username)
	if en.Password != "" {
		fmt.Fprintf(w, "password:    %s\n", en.Password)
	}
	fmt.Fprintf(w, "totp secret: %s\ntotp uri:    %s\nrecovery codes (each works once; keep them offline):\n", en.TOTPSecret, en.TOTPURI)
	for _, c := range en.RecoveryCodes {
		fmt.Fprintf(w, "  %s\n", c)
	}
	fmt.Fprintln(w, "Hand these to the account's owner once; they are not stored in clear and cannot be shown again.")
}

// runOTP prints the current code of a TOTP secret: for demo users and
// scripts without an authenticator app (like oathtool --totp -b SECRET).
func runOTP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("otp", "BASE32_SECRET", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	code, err := auth.TOTPCode(strings.ToUpper(strings.TrimSpace(fs.Arg(0))), time.Now())
	if err != nil {
		return fmt.Errorf("not a base32 TOTP secret: %w", err)
	}
	fmt.Fprintln(stdout, code)
	return nil
}
