package main

// totp-admin --registry URL: the same command line, talking to totp-registry's admin API
// (package adminclient) instead of the node's local store.

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pam-totp/pam-totp/pkg/admin"
	"github.com/pam-totp/pam-totp/pkg/adminclient"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/tokenimport"
	"github.com/pam-totp/pam-totp/pkg/totp"
	"github.com/pam-totp/pam-totp/pkg/version"
)

const registryUsage = `
With a registry (totp-admin --registry URL COMMAND ...):
  user add NAME [--mail M] [--scope S]...
  user list [--json]
  user show NAME [--json]
  user set NAME [--mail M] [--scope S]...     (--scope replaces all scopes)
  user remove NAME
  token list USER [--json]
  token add USER [--name N] [--secret-file FILE|-] [--algorithm A] [--digits D] [--period P]
                 [--no-qr] [--qr half|full|ascii]
  token disable|enable|remove USER ID
  reset USER
  unlock USER                           clear failed proofs (self-service locked after too many)
  backup-codes USER
  passcode USER [--ttl 1h]
  node add NAME --scope S
  node list [--json]
  node remove NAME
  import csv FILE|- [--scope S] [--skip-invalid] [--algorithm A] [--digits D] [--period P]
  import google-authenticator USER FILE
  audit [--after SEQ] [--limit N] [--json]
  audit verify
  compact --keep N

  --registry URL           the registry, https://HOST[:PORT]   (or $TOTP_REGISTRY)
  --admin-token-file FILE  the admin token, mode 0600          (or $TOTP_ADMIN_TOKEN_FILE)
  --ca-file FILE           the registry's CA, the only one trusted (or $TOTP_CA_FILE;
                           default: the system's CAs)
  --reason TEXT            why, for the registry's audit log (every command that changes)
These flags go anywhere on the line.
`

// Environment variables that stand in for the registry flags.
const (
	envRegistry  = "TOTP_REGISTRY"
	envTokenFile = "TOTP_ADMIN_TOKEN_FILE"
	envCAFile    = "TOTP_CA_FILE"
)

// registryOnly are the commands that exist only with a registry.
var registryOnly = map[string]bool{"user": true, "node": true, "passcode": true, "audit": true, "compact": true}

// registryFlags are --registry, --admin-token-file and --ca-file as given before the command or in
// the environment; each command's own flags default to them.
type registryFlags struct {
	url, tokenFile, caFile string
}

// addRegistryFlags adds the registry flags to the global flag set. The function it returns, given
// the arguments left after the global flags, says where the command goes: a --registry among them
// (flags go anywhere) counts as well.
func addRegistryFlags(fs *flag.FlagSet, e *env) func(args []string) registryFlags {
	u := fs.String("registry", e.getenv(envRegistry), "registry URL")
	tf := fs.String("admin-token-file", e.getenv(envTokenFile), "admin token file")
	ca := fs.String("ca-file", e.getenv(envCAFile), "registry CA file")
	return func(args []string) registryFlags {
		r := registryFlags{url: *u, tokenFile: *tf, caFile: *ca}
		if v, ok := scanFlag(args, "registry"); ok {
			r.url = v
		}
		return r
	}
}

// scanFlag finds the last --name VALUE or --name=VALUE in args before "--".
func scanFlag(args []string, name string) (string, bool) {
	val, found := "", false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		for _, p := range []string{"-" + name, "--" + name} {
			switch {
			case a == p && i+1 < len(args):
				val, found = args[i+1], true
				i++
			case strings.HasPrefix(a, p+"="):
				val, found = a[len(p)+1:], true
			}
		}
	}
	return val, found
}

// rcmd is one registry command: its flags and, once parsed, its client.
type rcmd struct {
	e      *env
	fs     *flag.FlagSet
	url    *string
	token  *string
	ca     *string
	reason *string
}

// regCommand makes the flag set of a registry command; change adds --reason.
func regCommand(e *env, name string, change bool) *rcmd {
	fs := newFlags(name, e)
	c := &rcmd{e: e, fs: fs}
	c.url = fs.String("registry", e.reg.url, "registry URL")
	c.token = fs.String("admin-token-file", e.reg.tokenFile, "admin token file")
	c.ca = fs.String("ca-file", e.reg.caFile, "registry CA file")
	if change {
		c.reason = fs.String("reason", "", "why, for the audit log")
	}
	return c
}

// parse parses the arguments (flags anywhere) and makes the client.
func (c *rcmd) parse(args []string, want, optional int) (*adminclient.Client, []string, error) {
	pos, err := parse(c.fs, args, want, optional)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case *c.url == "":
		return nil, nil, usagef("%s: no registry: give --registry URL or set %s", c.fs.Name(), envRegistry)
	case *c.token == "":
		return nil, nil, usagef("%s: no admin token: give --admin-token-file FILE or set %s", c.fs.Name(), envTokenFile)
	}
	tok, err := adminclient.ReadTokenFile(*c.token)
	if err != nil {
		return nil, nil, err
	}
	o := adminclient.Options{URL: *c.url, Token: tok, CAFile: *c.ca, UserAgent: "totp-admin/" + version.Version}
	if c.reason != nil {
		o.Reason = *c.reason
	}
	cl, err := adminclient.New(o)
	return cl, pos, err
}

func dispatchRegistry(e *env, args []string) error {
	cmd, rest := args[0], args[1:]
	sub := func(what string, cmds map[string]func(*env, []string) error) error {
		if len(rest) == 0 {
			return usagef("%s: want %s", cmd, what)
		}
		if f, ok := cmds[rest[0]]; ok {
			return f(e, rest[1:])
		}
		return usagef("%s %s: unknown command", cmd, rest[0])
	}
	switch cmd {
	case "user":
		return sub("add, list, show, set or remove", map[string]func(*env, []string) error{
			"add": rUserAdd, "list": rUserList, "show": rUserShow, "set": rUserSet, "remove": rUserRemove,
		})
	case "token":
		return sub("add, list, remove, disable or enable", map[string]func(*env, []string) error{
			"add": rTokenAdd, "list": rTokenList,
			"remove":  func(e *env, a []string) error { return rTokenChange(e, "remove", a) },
			"disable": func(e *env, a []string) error { return rTokenChange(e, "disable", a) },
			"enable":  func(e *env, a []string) error { return rTokenChange(e, "enable", a) },
		})
	case "reset":
		return rReset(e, rest)
	case "backup-codes":
		return rBackupCodes(e, rest)
	case "passcode":
		return rPasscode(e, rest)
	case "node":
		return sub("add, list or remove", map[string]func(*env, []string) error{
			"add": rNodeAdd, "list": rNodeList, "remove": rNodeRemove,
		})
	case "import":
		return sub("csv or google-authenticator", map[string]func(*env, []string) error{
			"csv": rImportCSV, "google-authenticator": rImportGA,
		})
	case "audit":
		if len(rest) > 0 && rest[0] == "verify" {
			return rAuditVerify(e, rest[1:])
		}
		return rAudit(e, rest)
	case "compact":
		return rCompact(e, rest)
	case "unlock":
		return rUnlock(e, rest)
	case "doctor":
		return runDoctor(e, dropRegistryFlags(rest))
	case "help":
		fmt.Fprint(e.stdout, usage)
		return nil
	}
	return usagef("unknown command %q", cmd)
}

// dropRegistryFlags removes --registry URL, --admin-token-file F and --ca-file F (or -name=value)
// from the arguments of a command that runs locally.
func dropRegistryFlags(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--" {
			return append(out, args[i:]...)
		}
		name, _, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(args[i], "-"), "-"), "=")
		if strings.HasPrefix(args[i], "-") && (name == "registry" || name == "admin-token-file" || name == "ca-file") {
			if !hasValue {
				i++
			}
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// strList is a repeatable string flag.
type strList struct {
	vals []string
	set  bool
}

func (l *strList) String() string { return strings.Join(l.vals, ",") }

func (l *strList) Set(v string) error {
	l.set = true
	if v = strings.TrimSpace(v); v != "" && !slices.Contains(l.vals, v) {
		l.vals = append(l.vals, v)
	}
	return nil
}

// flagGiven reports whether the flag name was set on the command line.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func cleanAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = token.Clean(s)
	}
	return out
}

func scopes(ss []string) string {
	if len(ss) == 0 {
		return "-"
	}
	return strings.Join(cleanAll(ss), ",")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return token.Clean(s)
}

// Users.

func cleanUser(u adminclient.User) adminclient.User {
	u.Name, u.Mail, u.Scopes = token.Clean(u.Name), token.Clean(u.Mail), cleanAll(u.Scopes)
	return u
}

func rUserAdd(e *env, args []string) error {
	c := regCommand(e, "user add", true)
	mail := c.fs.String("mail", "", "mail address for notices")
	var sc strList
	c.fs.Var(&sc, "scope", "scope (cluster) the user may log in to; repeat for several")
	cl, pos, err := c.parse(args, 1, 0)
	if err != nil {
		return err
	}
	u, err := cl.AddUser(e.ctx, adminclient.NewUser{Name: pos[0], Mail: *mail, Scopes: sc.vals})
	if err != nil {
		return err
	}
	u = cleanUser(u)
	if u.Name == "" {
		u.Name, u.Mail, u.Scopes = token.Clean(pos[0]), token.Clean(*mail), cleanAll(sc.vals)
	}
	fmt.Fprintf(e.stdout, "User %s added (scopes %s, mail %s).\n", u.Name, scopes(u.Scopes), dash(u.Mail))
	if len(u.Scopes) == 0 {
		fmt.Fprintf(e.stdout, "%s has no scope yet, so no login node gets their tokens: `totp-admin user set %s --scope CLUSTER`.\n", u.Name, u.Name)
	}
	return nil
}

func rUserList(e *env, args []string) error {
	c := regCommand(e, "user list", false)
	asJSON := c.fs.Bool("json", false, "JSON output")
	cl, _, err := c.parse(args, 0, 0)
	if err != nil {
		return err
	}
	users, err := cl.Users(e.ctx)
	if err != nil {
		return err
	}
	for i := range users {
		users[i] = cleanUser(users[i])
	}
	if *asJSON {
		if users == nil {
			users = []adminclient.User{}
		}
		return writeJSON(e.stdout, users)
	}
	if len(users) == 0 {
		fmt.Fprintln(e.stdout, "No users.")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMAIL\tSCOPES\tTOKENS\tBACKUP CODES\tCREATED")
	for _, u := range users {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", u.Name, dash(u.Mail), scopes(u.Scopes), u.Tokens, u.BackupCodes, stamp(u.Created))
	}
	return tw.Flush()
}

func rUserShow(e *env, args []string) error {
	c := regCommand(e, "user show", false)
	asJSON := c.fs.Bool("json", false, "JSON output")
	cl, pos, err := c.parse(args, 1, 0)
	if err != nil {
		return err
	}
	u, err := cl.User(e.ctx, pos[0])
	if err != nil {
		return err
	}
	toks, err := cl.Tokens(e.ctx, pos[0])
	if err != nil {
		return err
	}
	u = cleanUser(u)
	for i := range toks {
		toks[i] = cleanToken(toks[i])
	}
	if *asJSON {
		if toks == nil {
			toks = []token.Info{}
		}
		return writeJSON(e.stdout, struct {
			adminclient.User
			TokenList []token.Info `json:"token_list"`
		}{u, toks})
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 1, ' ', 0)
	fmt.Fprintf(tw, "user:\t%s\n", u.Name)
	fmt.Fprintf(tw, "mail:\t%s\n", dash(u.Mail))
	fmt.Fprintf(tw, "scopes:\t%s\n", scopes(u.Scopes))
	fmt.Fprintf(tw, "created:\t%s\n", stamp(u.Created))
	fmt.Fprintf(tw, "tokens:\t%d\n", len(toks))
	fmt.Fprintf(tw, "backup codes:\t%d\n", u.BackupCodes)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(toks) > 0 {
		fmt.Fprintln(e.stdout)
		return tokenTable(e.stdout, toks)
	}
	return nil
}

func rUserSet(e *env, args []string) error {
	c := regCommand(e, "user set", true)
	mail := c.fs.String("mail", "", "mail address (\"\" removes it)")
	var sc strList
	c.fs.Var(&sc, "scope", "scope; repeat for several; replaces the user's scopes (--scope '' for none)")
	cl, pos, err := c.parse(args, 1, 0)
	if err != nil {
		return err
	}
	var ch adminclient.UserChange
	if flagGiven(c.fs, "mail") {
		ch.Mail = mail
	}
	if sc.set {
		v := sc.vals
		if v == nil {
			v = []string{}
		}
		ch.Scopes = &v
	}
	if ch.Mail == nil && ch.Scopes == nil {
		return usagef("user set: nothing to change: give --mail or --scope")
	}
	u, err := cl.UpdateUser(e.ctx, pos[0], ch)
	if err != nil {
		return err
	}
	u = cleanUser(u)
	if u.Name == "" {
		fmt.Fprintf(e.stdout, "User %s changed.\n", token.Clean(pos[0]))
		return nil
	}
	fmt.Fprintf(e.stdout, "User %s changed: scopes %s, mail %s.\n", u.Name, scopes(u.Scopes), dash(u.Mail))
	return nil
}

func rUserRemove(e *env, args []string) error {
	c := regCommand(e, "user remove", true)
	cl, pos, err := c.parse(args, 1, 0)
	if err != nil {
		return err
	}
	r, err := cl.RemoveUser(e.ctx, pos[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "User %s removed, with %d tokens and %d backup codes.\n", token.Clean(pos[0]), r.Tokens, r.BackupCodes)
	return nil
}

// Tokens.

func cleanToken(t token.Info) token.Info {
	t.User, t.ID, t.Name = token.Clean(t.User), token.Clean(t.ID), token.Clean(t.Name)
	t.Algorithm, t.State = totp.Algorithm(token.Clean(string(t.Algorithm))), token.State(token.Clean(string(t.State)))
	return t
}

// tokenTable prints tokens as the standalone `token list` does.
func tokenTable(w io.Writer, toks []token.Info) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tID\tNAME\tALGORITHM\tDIGITS\tPERIOD\tSTATE\tCREATED\tLAST USED")
	for _, t := range toks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", t.User, t.ID, t.Name, t.Algorithm, t.Digits,
			t.Period, t.State, stamp(t.Created), stamp(t.LastUsed))
	}
	return tw.Flush()
}

func rTokenList(e *env, args []string) error {
	c := regCommand(e, "token list", false)
	asJSON := c.fs.Bool("json", false, "JSON output")
	cl, pos, err := c.parse(args, 1, 0)
	if err != nil {
		return err
	}
	toks, err := cl.Tokens(e.ctx, pos[0])
	if err != nil {
		return err
	}
	for i := range toks {
		toks[i] = cleanToken(toks[i])
		if toks[i].User == "" {
			toks[i].User = token.Clean(pos[0])
		}
	}
	if *asJSON {
		if toks == nil {
			toks = []token.Info{}
		}
		return writeJSON(e.stdout, toks)
	}
	if len(toks) == 0 {
		fmt.Fprintf(e.stdout, "%s has no tokens.\n", token.Clean(pos[0]))
		return nil
	}
	return tokenTable(e.stdout, toks)
}

func rTokenAdd(e *env, args []string) error {
	c := regCommand(e, "token add", true)
	opts := tokenFlags(c.fs, e, "token name (default: the registry's token-N)",
		"base32 secret (default: the registry makes a new random one)")
	c.fs.Bool("no-verify", true, "accepted for habit's sake: the registry's tokens are active at once")
	cl, pos, err := c.parse(args, 1, 0)
	if err != nil {
		return err
	}
	u := pos[0]
	o, err := opts()
	if err != nil {
		return err
	}
	p, qr := o.params, o.qr
	req := adminclient.NewToken{Name: o.name, Algorithm: string(p.Algorithm), Digits: p.Digits, Period: p.Period,
		State: adminclient.Active}
	if o.secret != nil {
		req.Secret = totp.EncodeSecret(o.secret)
	}
	t, err := cl.AddToken(e.ctx, u, req)
	if err != nil {
		return err
	}
	if t.User == "" {
		t.User = u
	}
	if req.Secret != "" || t.Secret == "" {
		ct := cleanToken(t.Info)
		fmt.Fprintf(e.stdout, "Token %s (%q) of %s added, %s.\n", ct.ID, ct.Name, ct.User, ct.State)
		return nil
	}
	en, err := enrollment(t)
	if err == nil {
		err = admin.WriteEnrollment(e.stdout, en, qr)
	}
	if err != nil {
		// Nobody saw the secret: the token is of no use, so it goes.
		if _, rerr := cl.RemoveToken(e.ctx, u, t.ID); rerr != nil {
			return fmt.Errorf("%w; removing token %s again failed: %v", err, t.ID, rerr)
		}
		return fmt.Errorf("%w; token %s was removed again", err, t.ID)
	}
	fmt.Fprintf(e.stdout, "Login nodes of %s's scopes have the token within seconds.\n", token.Clean(u))
	return nil
}

// enrollment turns the registry's answer into what admin.WriteEnrollment shows, after checking
// that the secret, the URI and the token's parameters agree.
func enrollment(t registryapi.AddedToken) (*admin.Enrollment, error) {
	bad := func(what string) error {
		return fmt.Errorf("token add: %s: %w", what, adminclient.ErrBadAnswer)
	}
	secret, err := totp.DecodeSecret(t.Secret)
	if err != nil {
		return nil, bad("the secret is not valid base32")
	}
	p := totp.Params{Algorithm: totp.Algorithm(strings.ToUpper(string(t.Algorithm))), Digits: t.Digits, Period: t.Period}
	key := totp.Key{Account: t.User, Secret: secret, Params: p}
	if t.URI != "" {
		if key, err = totp.ParseURI(t.URI); err != nil {
			return nil, bad("the otpauth URI is not valid")
		}
		if p == (totp.Params{}) {
			p = key.Params
		}
		if !bytes.Equal(key.Secret, secret) || key.Params != p {
			return nil, bad("the otpauth URI and the token disagree")
		}
	}
	if err := key.Validate(); err != nil {
		return nil, bad("the token is not valid")
	}
	tok := token.Token{
		User: t.User, ID: t.ID, Name: t.Name, Algorithm: p.Algorithm, Digits: p.Digits, Period: p.Period,
		Secret: secret, State: token.State(t.State), Created: t.Created,
	}
	return &admin.Enrollment{Token: tok, Key: key}, nil
}

func rTokenChange(e *env, verb string, args []string) error {
	c := regCommand(e, "token "+verb, true)
	cl, pos, err := c.parse(args, 2, 0)
	if err != nil {
		return err
	}
	u, id := pos[0], pos[1]
	toks, err := cl.Tokens(e.ctx, u)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(toks, func(t token.Info) bool { return t.ID == id })
	if i < 0 {
		return fmt.Errorf("token %s of %s: %w", id, u, store.ErrNotFound)
	}
	t := toks[i]
	switch verb {
	case "remove":
		_, err = cl.RemoveToken(e.ctx, u, id)
	case "disable", "enable":
		state := adminclient.Disabled
		if verb == "enable" {
			state = adminclient.Active
		}
		_, err = cl.UpdateToken(e.ctx, u, id, adminclient.TokenChange{State: &state})
		t.State = token.State(state)
	}
	if err != nil {
		return err
	}
	past := map[string]string{"remove": "removed", "disable": "disabled", "enable": "enabled"}[verb]
	fmt.Fprintf(e.stdout, "Token %s (%q) of %s %s.\n", token.Clean(t.ID), token.Clean(t.Name), token.Clean(u), past)
	if verb != "enable" {
		active := false
		for _, o := range toks {
			active = active || o.ID != id && o.State == adminclient.Active
		}
		if !active {
			fmt.Fprintf(e.stdout, "%s has no active token left: logins that need a code are denied (backup codes still work); with a disabled token also\nduring enrollment grace, and the user cannot enroll a new first token until you enable it or reset them.\n",
				token.Clean(u))
		}
	}
	return nil
}

func rReset(e *env, args []string) error {
	c := regCommand(e, "reset", true)
	cl, pos, err := c.parse(args, 1, 0)
	if err != nil {
		return err
	}
	r, err := cl.Reset(e.ctx, pos[0])
	if err != nil {
		return err
	}
	u := token.Clean(pos[0])
	fmt.Fprintf(e.stdout, "%s reset: %d tokens and %d backup codes removed.\n"+
		"Enroll a new token with `totp-admin --registry URL token add %s`. Failed codes are counted on each\n"+
		"login node: if %s is locked out there, run `totp-admin unlock %s` on the node.\n",
		u, r.Tokens, r.BackupCodes, u, u, u)
	return nil
}

// rUnlock clears the user's failed proofs at the registry (self-service changes locked after too
// many); failed login codes are counted on each node and unlocked there.
func rUnlock(e *env, args []string) error {
	c := regCommand(e, "unlock", true)
	cl, pos, err := c.parse(args, 1, 0)
	if err != nil {
		return err
	}
	r, err := cl.Unlock(e.ctx, pos[0])
	if err != nil {
		return err
	}
	u := token.Clean(pos[0])
	fmt.Fprintf(e.stdout, "%s unlocked at the registry: %d failed proofs cleared.\n"+
		"Failed login codes are counted on each login node: if %s is locked out there, run\n"+
		"`totp-admin unlock %s` on the node.\n", u, r.Failures, u, u)
	return nil
}

func rBackupCodes(e *env, args []string) error {
	c := regCommand(e, "backup-codes", true)
	cl, pos, err := c.parse(args, 1, 0)
	if err != nil {
		return err
	}
	codes, err := cl.BackupCodes(e.ctx, pos[0])
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "New backup codes for %s (any older codes no longer work):\n\n", token.Clean(pos[0]))
	for i, c := range codes {
		fmt.Fprintf(&b, "  %2d. %s\n", i+1, token.Clean(c))
	}
	b.WriteString("\nEach code works once, in place of a code from the app. Store them somewhere safe\n" +
		"(printed, or in a password manager): they are shown only this once.\n")
	_, err = io.WriteString(e.stdout, b.String())
	return err
}

// maxPasscodeTTL bounds --ttl: a helpdesk passcode is for today, not for next month.
const maxPasscodeTTL = 7 * 24 * time.Hour

func rPasscode(e *env, args []string) error {
	c := regCommand(e, "passcode", true)
	ttl := c.fs.Duration("ttl", time.Hour, "how long the passcode stays valid")
	cl, pos, err := c.parse(args, 1, 0)
	if err != nil {
		return err
	}
	if *ttl <= 0 || *ttl > maxPasscodeTTL {
		return usagef("--ttl %s: want more than 0 and at most %s", *ttl, maxPasscodeTTL)
	}
	p, err := cl.Passcode(e.ctx, pos[0], *ttl)
	if err != nil {
		return err
	}
	u := token.Clean(pos[0])
	var b strings.Builder
	fmt.Fprintf(&b, "One-time passcode for %s:\n\n    %s\n\n", u, token.Clean(p.Code))
	fmt.Fprintf(&b, "It works once, in place of a code from the app, until %s.\n", stampSeconds(p.Expires))
	b.WriteString("Give it to the user over a channel you trust; it is shown only this once.\n")
	_, err = io.WriteString(e.stdout, b.String())
	return err
}

func stampSeconds(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// Nodes.

func rNodeAdd(e *env, args []string) error {
	c := regCommand(e, "node add", true)
	scope := c.fs.String("scope", "", "the node's scope (cluster): it gets the users of this scope")
	cl, pos, err := c.parse(args, 1, 0)
	if err != nil {
		return err
	}
	if *scope == "" {
		return usagef("node add: --scope is required")
	}
	n, err := cl.AddNode(e.ctx, pos[0], *scope)
	if err != nil {
		return err
	}
	if n.Name == "" {
		n.Name, n.Scope = pos[0], *scope
	}
	path := config.Default().Sync.CredentialFile
	var b strings.Builder
	fmt.Fprintf(&b, "Node %s added to scope %s. Its credential, shown only this once:\n\n", token.Clean(n.Name), token.Clean(n.Scope))
	fmt.Fprintf(&b, "    %s\n\n", token.Clean(n.Credential))
	fmt.Fprintf(&b, "Put it on the node in %s, owned by root, mode 0600\n", path)
	b.WriteString("([sync] credential_file in pam_totp.conf), then start totp-syncd.\n")
	_, err = io.WriteString(e.stdout, b.String())
	return err
}

func rNodeList(e *env, args []string) error {
	c := regCommand(e, "node list", false)
	asJSON := c.fs.Bool("json", false, "JSON output")
	cl, _, err := c.parse(args, 0, 0)
	if err != nil {
		return err
	}
	nodes, err := cl.Nodes(e.ctx)
	if err != nil {
		return err
	}
	for i := range nodes {
		n := &nodes[i]
		n.Name, n.Scope, n.Version = token.Clean(n.Name), token.Clean(n.Scope), token.Clean(n.Version)
	}
	if *asJSON {
		if nodes == nil {
			nodes = []adminclient.Node{}
		}
		return writeJSON(e.stdout, nodes)
	}
	if len(nodes) == 0 {
		fmt.Fprintln(e.stdout, "No nodes.")
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSCOPE\tAPPLIED\tBEHIND\tDIGEST\tSTREAMS\tLAST CONTACT")
	for _, n := range nodes {
		applied, behind, digest := "-", "-", "-"
		if n.AppliedRev > 0 {
			applied = strconv.FormatInt(n.AppliedRev, 10)
			behind = strconv.FormatInt(n.Behind, 10)
		}
		if n.DigestOK != nil {
			digest = map[bool]string{true: "ok", false: "MISMATCH"}[*n.DigestOK]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", n.Name, n.Scope, applied, behind, digest, n.Streams, contact(n.LastContact, now))
	}
	return tw.Flush()
}

// contact shows a last contact as a time and how long ago.
func contact(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	ago := now.Sub(t)
	var s string
	switch {
	case ago < time.Minute:
		s = fmt.Sprintf("%ds", max(int(ago.Seconds()), 0))
	case ago < time.Hour:
		s = fmt.Sprintf("%dm", int(ago.Minutes()))
	case ago < 48*time.Hour:
		s = fmt.Sprintf("%dh", int(ago.Hours()))
	default:
		s = fmt.Sprintf("%dd", int(ago.Hours()/24))
	}
	return fmt.Sprintf("%s (%s ago)", stampSeconds(t), s)
}

func rNodeRemove(e *env, args []string) error {
	c := regCommand(e, "node remove", true)
	cl, pos, err := c.parse(args, 1, 0)
	if err != nil {
		return err
	}
	if err := cl.RemoveNode(e.ctx, pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Node %s removed: its streams are closed and its credential no longer works.\n", token.Clean(pos[0]))
	return nil
}

// Imports.

func rImportCSV(e *env, args []string) error {
	c := regCommand(e, "import csv", true)
	scope := c.fs.String("scope", "", "scope for the users the import creates")
	skip := c.fs.Bool("skip-invalid", false, "import the valid lines even if some are invalid")
	params := paramFlags(c.fs)
	cl, pos, err := c.parse(args, 1, 0)
	if err != nil {
		return err
	}
	p, err := params()
	if err != nil {
		return err
	}
	in := e.stdin
	if pos[0] != "-" {
		f, err := tokenimport.OpenInput(pos[0])
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	start := time.Now()
	r, err := cl.ImportCSV(e.ctx, in, adminclient.ImportOptions{Scope: *scope, SkipInvalid: *skip,
		Algorithm: string(p.Algorithm), Digits: p.Digits, Period: p.Period})
	invalid := r.Invalid
	var ae *adminclient.APIError
	if errors.As(err, &ae) {
		invalid = ae.Invalid
	}
	for _, le := range invalid {
		fmt.Fprintf(e.stderr, "totp-admin: %s: %s\n", token.Clean(pos[0]), token.Clean(le.Error()))
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Imported %d tokens (active) in %s", r.Added, time.Since(start).Round(time.Millisecond))
	if r.UsersCreated > 0 {
		fmt.Fprintf(e.stdout, "; %d new users", r.UsersCreated)
		if *scope != "" {
			fmt.Fprintf(e.stdout, " in scope %s", token.Clean(*scope))
		} else {
			fmt.Fprint(e.stdout, " without a scope")
		}
	}
	if r.Duplicates > 0 {
		fmt.Fprintf(e.stdout, "; %d already present, skipped", r.Duplicates)
	}
	if len(r.Invalid) > 0 {
		fmt.Fprintf(e.stdout, "; %d invalid lines skipped", len(r.Invalid))
	}
	fmt.Fprintln(e.stdout, ".")
	return nil
}

// maxGAFile bounds a google-authenticator file read for the registry (tokenimport.ReadGAFile's bound).
const maxGAFile = 64 * 1024

func rImportGA(e *env, args []string) error {
	c := regCommand(e, "import google-authenticator", true)
	cl, pos, err := c.parse(args, 2, 0)
	if err != nil {
		return err
	}
	u, path := pos[0], pos[1]
	f, err := tokenimport.OpenInput(path)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxGAFile+1))
	f.Close()
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxGAFile {
		return fmt.Errorf("%s: larger than %d bytes; not a google-authenticator file", path, maxGAFile)
	}
	// Check it here first: a broken file gets the same precise message as without a registry.
	if _, err := tokenimport.ParseGA(data); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	res, err := cl.ImportGA(e.ctx, u, data)
	clear(data)
	if err != nil {
		return err
	}
	if res.Already {
		fmt.Fprintf(e.stdout, "%s already has this token (%s); nothing imported.\n", token.Clean(u), token.Clean(res.ID))
		return nil
	}
	fmt.Fprintf(e.stdout, "Imported token %s (%q) for %s, active, %d-second steps.\n",
		token.Clean(res.ID), tokenimport.GAName, token.Clean(u), res.Token.Period)
	if res.Scratch > 0 {
		fmt.Fprintf(e.stdout, "Imported %d scratch codes as backup codes", res.Scratch)
		if res.Replaced > 0 {
			fmt.Fprintf(e.stdout, " (replacing %d backup codes %s had)", res.Replaced, token.Clean(u))
		}
		fmt.Fprintf(e.stdout, ". They are 8 digits, weaker than ours: consider `totp-admin --registry URL backup-codes %s`.\n", token.Clean(u))
	}
	if len(res.Ignored) > 0 {
		fmt.Fprintf(e.stdout, "Ignored options (pam_totp.conf decides these for everyone): %s.\n", strings.Join(cleanAll(res.Ignored), ", "))
	}
	fmt.Fprintf(e.stdout, "Once logins work with pam_totp, remove %s.\n", token.Clean(path))
	return nil
}

// Audit and history.

func rAudit(e *env, args []string) error {
	c := regCommand(e, "audit", false)
	after := c.fs.Int64("after", 0, "show records after this sequence number")
	limit := c.fs.Int("limit", 100, "show at most this many records")
	asJSON := c.fs.Bool("json", false, "JSON output (with the hash chain)")
	cl, _, err := c.parse(args, 0, 0)
	if err != nil {
		return err
	}
	if *after < 0 || *limit < 1 {
		return usagef("audit: --after must not be negative and --limit must be at least 1")
	}
	recs, err := cl.Audit(e.ctx, *after, *limit)
	if err != nil {
		return err
	}
	for i := range recs {
		r := &recs[i]
		r.Actor, r.Action, r.Target, r.Reason = token.Clean(r.Actor), token.Clean(r.Action), token.Clean(r.Target), token.Clean(r.Reason)
		r.Prev, r.Hash = token.Clean(r.Prev), token.Clean(r.Hash)
	}
	if *asJSON {
		if recs == nil {
			recs = []adminclient.AuditRecord{}
		}
		return writeJSON(e.stdout, recs)
	}
	if len(recs) == 0 {
		fmt.Fprintln(e.stdout, "No audit records.")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tTARGET\tREASON")
	for _, r := range recs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", r.Seq, stampSeconds(r.Time), dash(r.Actor), dash(r.Action), dash(r.Target), dash(r.Reason))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(recs) == *limit {
		fmt.Fprintf(e.stdout, "(more may follow: --after %d)\n", recs[len(recs)-1].Seq)
	}
	return nil
}

func rAuditVerify(e *env, args []string) error {
	c := regCommand(e, "audit verify", false)
	cl, _, err := c.parse(args, 0, 0)
	if err != nil {
		return err
	}
	r, err := cl.VerifyAudit(e.ctx)
	if err != nil {
		return err
	}
	if r.OK {
		fmt.Fprintf(e.stdout, "Audit log OK: %d records, the hash chain is intact.\n", r.Records)
		return nil
	}
	msg := "the audit log's hash chain is broken"
	if r.BadSeq > 0 {
		msg += fmt.Sprintf(" at record %d", r.BadSeq)
	}
	if r.Error != "" {
		msg += ": " + r.Error
	}
	return errors.New(msg)
}

func rCompact(e *env, args []string) error {
	c := regCommand(e, "compact", true)
	keep := c.fs.Int64("keep", -1, "keep the history of the last N revisions")
	cl, _, err := c.parse(args, 0, 0)
	if err != nil {
		return err
	}
	if !flagGiven(c.fs, "keep") || *keep < 0 {
		return usagef("compact: give --keep N (revisions of history to keep, 0 or more)")
	}
	r, err := cl.Compact(e.ctx, *keep)
	if err != nil {
		return err
	}
	if r.Revision > 0 || r.Compacted > 0 {
		fmt.Fprintf(e.stdout, "History compacted up to revision %d (the registry is at %d).\n", r.Compacted, r.Revision)
	} else {
		fmt.Fprintf(e.stdout, "History compacted: the last %d revisions kept.\n", *keep)
	}
	fmt.Fprintln(e.stdout, "Nodes behind the compacted revision resync with a snapshot.")
	return nil
}
