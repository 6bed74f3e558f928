package main

// totp-admin --registry URL: the registry backend, talking to totp-registry's admin API (package
// adminclient) instead of the node's local store, and the verbs that exist only with a registry.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pam-totp/pam-totp/pkg/admin"
	"github.com/pam-totp/pam-totp/pkg/adminclient"
	"github.com/pam-totp/pam-totp/pkg/cmdline"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/tokenimport"
	"github.com/pam-totp/pam-totp/pkg/totp"
	"github.com/pam-totp/pam-totp/pkg/version"
)

// registry is the backend that talks to totp-registry's admin API.
type registry struct {
	e  *env
	cl *adminclient.Client
}

// registry returns the registry backend with --registry URL or $TOTP_REGISTRY, nil without.
func (e *env) registry(cmd *cobra.Command) (*registry, error) {
	or := func(flag, env string) string {
		if flag != "" {
			return flag
		}
		return e.getenv(env)
	}
	url := or(strings.Join(e.reg.urls, ","), envRegistry)
	if url == "" {
		return nil, nil
	}
	tokenFile := or(e.reg.tokenFile, envTokenFile)
	if tokenFile == "" {
		return nil, usagef("%s: no admin token: give --admin-token-file FILE or set %s", cmdline.Name(cmd), envTokenFile)
	}
	tok, err := adminclient.ReadTokenFile(tokenFile)
	if err != nil {
		return nil, err
	}
	cl, err := adminclient.New(adminclient.Options{URL: url, Token: tok, CAFile: or(e.reg.caFile, envCAFile),
		Reason: e.reg.reason, UserAgent: "totp-admin/" + version.Version})
	if err != nil {
		return nil, err
	}
	return &registry{e: e, cl: cl}, nil
}

// registryOnly makes the run of a verb that exists only with a registry.
func registryOnly(e *env, f func(r *registry, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		r, err := e.registry(cmd)
		if err == nil && r == nil {
			verb, _, _ := strings.Cut(cmdline.Name(cmd), " ")
			err = usagef("%s: needs --registry URL (or %s)", verb, envRegistry)
		}
		if err != nil {
			return err
		}
		return f(r, args)
	}
}

// userCommand is user add|list|show|set|remove.
func userCommand(e *env) *cobra.Command {
	user := &cobra.Command{Use: "user", Short: "Manage the registry's users (with a registry)"}
	add := &cobra.Command{Use: "add NAME", Short: "Add a user", Args: cmdline.ExactArgs(1)}
	mail := add.Flags().String("mail", "", "mail address for notices")
	var sc strList
	add.Flags().Var(&sc, "scope", "scope (cluster) the user may log in to; repeat for several")
	addOpts := changeFlags(add, false)
	add.RunE = registryOnly(e, func(r *registry, args []string) error { return r.userAdd(args[0], *mail, sc.vals, addOpts) })
	list := &cobra.Command{Use: "list", Short: "List the users", Args: cmdline.NoArgs}
	listJSON := jsonFlag(list)
	list.RunE = registryOnly(e, func(r *registry, _ []string) error { return r.userList(*listJSON) })
	show := &cobra.Command{Use: "show NAME", Short: "Show a user and their tokens", Args: cmdline.ExactArgs(1)}
	showJSON := jsonFlag(show)
	show.RunE = registryOnly(e, func(r *registry, args []string) error { return r.userShow(args[0], *showJSON) })
	set := &cobra.Command{Use: "set NAME", Short: "Change a user's mail address or scopes (--scope replaces all)", Args: cmdline.ExactArgs(1)}
	setMail := set.Flags().String("mail", "", "mail address (\"\" removes it)")
	var setScopes strList
	set.Flags().Var(&setScopes, "scope", "scope; repeat for several; replaces the user's scopes (--scope '' for none)")
	setOpts := changeFlags(set, false)
	set.RunE = registryOnly(e, func(r *registry, args []string) error {
		var ch adminclient.UserChange
		if set.Flags().Changed("mail") {
			ch.Mail = setMail
		}
		if setScopes.set {
			v := setScopes.vals
			if v == nil {
				v = []string{}
			}
			ch.Scopes = &v
		}
		return r.userSet(args[0], ch, setOpts)
	})
	remove := &cobra.Command{Use: "remove NAME", Short: "Remove a user with their tokens and backup codes", Args: cmdline.ExactArgs(1)}
	removeOpts := changeFlags(remove, true)
	remove.RunE = registryOnly(e, func(r *registry, args []string) error { return r.userRemove(args[0], removeOpts) })
	user.AddCommand(add, list, show, set, remove)
	return user
}

// nodeCommand is node add|list|show|remove.
func nodeCommand(e *env) *cobra.Command {
	node := &cobra.Command{Use: "node", Short: "Manage the registry's login nodes (with a registry)"}
	add := &cobra.Command{Use: "add NAME --scope S", Short: "Add a login node; prints its credential", Args: cmdline.ExactArgs(1)}
	scope := add.Flags().String("scope", "", "the node's scope (cluster): it gets the users of this scope")
	addOpts := changeFlags(add, false)
	add.RunE = registryOnly(e, func(r *registry, args []string) error { return r.nodeAdd(args[0], *scope, addOpts) })
	list := &cobra.Command{Use: "list", Short: "List the nodes and how far they have synced", Args: cmdline.NoArgs}
	asJSON := jsonFlag(list)
	list.RunE = registryOnly(e, func(r *registry, _ []string) error { return r.nodeList(*asJSON) })
	show := &cobra.Command{Use: "show NAME", Short: "Show a node and how far it has synced", Args: cmdline.ExactArgs(1)}
	showJSON := jsonFlag(show)
	show.RunE = registryOnly(e, func(r *registry, args []string) error { return r.nodeShow(args[0], *showJSON) })
	remove := &cobra.Command{Use: "remove NAME", Short: "Remove a node: its credential stops working", Args: cmdline.ExactArgs(1)}
	removeOpts := changeFlags(remove, true)
	remove.RunE = registryOnly(e, func(r *registry, args []string) error { return r.nodeRemove(args[0], removeOpts) })
	node.AddCommand(add, list, show, remove)
	return node
}

// auditCommand is audit [--after SEQ] [--limit N] [--json] and audit verify.
func auditCommand(e *env) *cobra.Command {
	audit := &cobra.Command{Use: "audit", Short: "Show the registry's audit log (with a registry)", Args: cmdline.NoArgs}
	after := audit.Flags().Int64("after", 0, "show records after this sequence number")
	limit := audit.Flags().Int("limit", 100, "show at most this many records")
	asJSON := audit.Flags().Bool("json", false, "JSON output (with the hash chain)")
	audit.RunE = registryOnly(e, func(r *registry, _ []string) error { return r.audit(*after, *limit, *asJSON) })
	verify := &cobra.Command{Use: "verify", Short: "Check the audit log's hash chain", Args: cmdline.NoArgs}
	verifyJSON := jsonFlag(verify)
	verify.RunE = registryOnly(e, func(r *registry, _ []string) error { return r.auditVerify(*verifyJSON) })
	audit.AddCommand(verify)
	return audit
}

// registryOnlyCommands are passcode and compact.
func registryOnlyCommands(e *env) []*cobra.Command {
	passcode := &cobra.Command{Use: "passcode USER", Short: "Issue a one-time passcode for a user (with a registry)", Args: cmdline.ExactArgs(1)}
	ttl := passcode.Flags().Duration("ttl", time.Hour, "how long the passcode stays valid")
	passcode.RunE = registryOnly(e, func(r *registry, args []string) error { return r.passcode(args[0], *ttl) })
	compact := &cobra.Command{Use: "compact --keep N", Short: "Drop the registry's history but the last N revisions (with a registry)", Args: cmdline.NoArgs}
	keep := compact.Flags().Int64("keep", -1, "keep the history of the last N revisions")
	compact.RunE = registryOnly(e, func(r *registry, _ []string) error {
		if !compact.Flags().Changed("keep") || *keep < 0 {
			return usagef("compact: give --keep N (revisions of history to keep, 0 or more)")
		}
		return r.compact(*keep)
	})
	whoami := &cobra.Command{Use: "whoami", Short: "Show the admin token's name, role, scopes and expiry (with a registry)", Args: cmdline.NoArgs}
	whoamiJSON := jsonFlag(whoami)
	whoami.RunE = registryOnly(e, func(r *registry, _ []string) error { return r.whoami(*whoamiJSON) })
	return []*cobra.Command{passcode, compact, whoami}
}

// strList is a repeatable string flag.
type strList struct {
	vals []string
	set  bool
}

func (l *strList) String() string { return strings.Join(l.vals, ",") }
func (l *strList) Type() string   { return "string" }

func (l *strList) Set(v string) error {
	l.set = true
	if v = strings.TrimSpace(v); v != "" && !slices.Contains(l.vals, v) {
		l.vals = append(l.vals, v)
	}
	return nil
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

func (reg *registry) userAdd(name, mail string, scopeList []string, o *changeOptions) error {
	e, cl := reg.e, reg.cl
	res, err := cl.AddUser(e.ctx, adminclient.NewUser{Name: name, Mail: mail, Scopes: scopeList})
	if err != nil {
		return err
	}
	res.User = cleanUser(res.User)
	u := &res.User
	if u.Name == "" {
		u.Name, u.Mail, u.Scopes = token.Clean(name), token.Clean(mail), cleanAll(scopeList)
	}
	return writeChange(e.stdout, o, res, func(w io.Writer) {
		if !res.Changed {
			fmt.Fprintf(w, "User %s unchanged: exists with scopes %s, mail %s.\n", u.Name, scopes(u.Scopes), dash(u.Mail))
			return
		}
		fmt.Fprintf(w, "User %s added (scopes %s, mail %s).\n", u.Name, scopes(u.Scopes), dash(u.Mail))
		if len(u.Scopes) == 0 {
			fmt.Fprintf(w, "%s has no scope yet, so no login node gets their tokens: `totp-admin user set %s --scope CLUSTER`.\n", u.Name, u.Name)
		}
	})
}

func (reg *registry) userList(asJSON bool) error {
	e, cl := reg.e, reg.cl
	users, err := cl.Users(e.ctx)
	if err != nil {
		return err
	}
	for i := range users {
		users[i] = cleanUser(users[i])
	}
	if done, err := writeListing(e.stdout, users, asJSON, "No users."); done {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMAIL\tSCOPES\tTOKENS\tBACKUP CODES\tCREATED")
	for _, u := range users {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", u.Name, dash(u.Mail), scopes(u.Scopes), u.Tokens, u.BackupCodes, stamp(u.Created))
	}
	return tw.Flush()
}

func (reg *registry) userShow(name string, asJSON bool) error {
	e, cl := reg.e, reg.cl
	u, err := cl.User(e.ctx, name)
	if err != nil {
		return err
	}
	toks, err := cl.Tokens(e.ctx, name)
	if err != nil {
		return err
	}
	u = cleanUser(u)
	for i := range toks {
		toks[i] = cleanToken(toks[i])
	}
	if asJSON {
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

func (reg *registry) userSet(name string, ch adminclient.UserChange, o *changeOptions) error {
	e, cl := reg.e, reg.cl
	if ch.Mail == nil && ch.Scopes == nil {
		return usagef("user set: nothing to change: give --mail or --scope")
	}
	res, err := cl.UpdateUser(e.ctx, name, ch)
	if err != nil {
		return err
	}
	res.User = cleanUser(res.User)
	u := &res.User
	return writeChange(e.stdout, o, res, func(w io.Writer) {
		switch {
		case u.Name == "":
			fmt.Fprintf(w, "User %s changed.\n", token.Clean(name))
		case !res.Changed:
			fmt.Fprintf(w, "User %s unchanged: scopes %s, mail %s.\n", u.Name, scopes(u.Scopes), dash(u.Mail))
		default:
			fmt.Fprintf(w, "User %s changed: scopes %s, mail %s.\n", u.Name, scopes(u.Scopes), dash(u.Mail))
		}
	})
}

func (reg *registry) userRemove(name string, o *changeOptions) error {
	e, cl := reg.e, reg.cl
	r, err := cl.RemoveUser(e.ctx, name)
	if err != nil {
		return absent(e.stdout, o, err, adminclient.Removed{Name: token.Clean(name)}, "User "+token.Clean(name))
	}
	r.Name = token.Clean(name)
	return writeChange(e.stdout, o, r, func(w io.Writer) {
		fmt.Fprintf(w, "User %s removed, with %d tokens and %d backup codes.\n", r.Name, r.Tokens, r.BackupCodes)
	})
}

// Tokens.

func cleanToken(t token.Info) token.Info {
	t.User, t.ID, t.Name = token.Clean(t.User), token.Clean(t.ID), token.Clean(t.Name)
	t.Algorithm, t.State = totp.Algorithm(token.Clean(string(t.Algorithm))), token.State(token.Clean(string(t.State)))
	return t
}

func (reg *registry) tokenList(u string, asJSON bool) error {
	e, cl := reg.e, reg.cl
	if u == "" {
		return usagef("token list: give USER: the registry lists one user's tokens")
	}
	toks, err := cl.Tokens(e.ctx, u)
	if err != nil {
		return err
	}
	for i := range toks {
		toks[i] = cleanToken(toks[i])
		if toks[i].User == "" {
			toks[i].User = token.Clean(u)
		}
	}
	if done, err := writeListing(e.stdout, toks, asJSON, token.Clean(u)+" has no tokens."); done {
		return err
	}
	return tokenTable(e.stdout, toks)
}

func (reg *registry) tokenAdd(u string, o tokenOptions) error {
	e, cl := reg.e, reg.cl
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

func (reg *registry) tokenChange(verb, u, id string, o *changeOptions) error {
	e, cl := reg.e, reg.cl
	notFound := func(err error) error {
		return absent(e.stdout, o, err, registryapi.TokenResult{Info: token.Info{User: token.Clean(u), ID: token.Clean(id)}},
			fmt.Sprintf("Token %s of %s", token.Clean(id), token.Clean(u)))
	}
	toks, err := cl.Tokens(e.ctx, u)
	if err != nil {
		return notFound(err)
	}
	i := slices.IndexFunc(toks, func(t token.Info) bool { return t.ID == id })
	if i < 0 {
		return notFound(fmt.Errorf("token %s of %s: %w", id, u, store.ErrNotFound))
	}
	t := toks[i]
	var res adminclient.TokenResult
	switch verb {
	case "remove":
		res, err = cl.RemoveToken(e.ctx, u, id)
	case "disable", "enable":
		state := adminclient.Disabled
		if verb == "enable" {
			state = adminclient.Active
		}
		res, err = cl.UpdateToken(e.ctx, u, id, adminclient.TokenChange{State: &state})
		t.State = token.State(state)
	}
	if err != nil {
		return notFound(err)
	}
	noneActive := true
	for _, o := range toks {
		noneActive = noneActive && (o.ID == id || o.State != adminclient.Active)
	}
	return writeTokenChanged(e.stdout, o, verb, t, u, res.Changed, noneActive)
}

func (reg *registry) reset(u string) error {
	e, cl := reg.e, reg.cl
	r, err := cl.Reset(e.ctx, u)
	if err != nil {
		return err
	}
	u = token.Clean(u)
	fmt.Fprintf(e.stdout, "%s reset: %d tokens and %d backup codes removed.\n"+
		"Enroll a new token with `totp-admin --registry URL token add %s`. Failed codes are counted on each\n"+
		"login node: if %s is locked out there, run `totp-admin unlock %s` on the node.\n",
		u, r.Tokens, r.BackupCodes, u, u, u)
	return nil
}

// unlock clears the user's failed proofs and failed portal sign-ins at the registry
// (self-service changes and sign-in by code locked after too many); failed login codes are
// counted on each node and unlocked there.
func (reg *registry) unlock(u string, o *changeOptions) error {
	e, cl := reg.e, reg.cl
	r, err := cl.Unlock(e.ctx, u)
	if err != nil {
		return err
	}
	u = token.Clean(u)
	r.Name = u
	return writeChange(e.stdout, o, r, func(w io.Writer) {
		if !r.Changed {
			fmt.Fprintf(w, "%s unchanged at the registry: no failed codes or proofs, nothing to unlock.\n", u)
		} else {
			signIns := ""
			if r.SignInFailures > 0 {
				signIns = fmt.Sprintf(" and %d failed portal sign-ins", r.SignInFailures)
			}
			fmt.Fprintf(w, "%s unlocked at the registry: %d failed proofs%s cleared.\n", u, r.Failures, signIns)
		}
		fmt.Fprintf(w, "Failed login codes are counted on each login node: if %s is locked out there, run\n"+
			"`totp-admin unlock %s` on the node.\n", u, u)
	})
}

func (reg *registry) backupCodes(u string) error {
	e, cl := reg.e, reg.cl
	codes, err := cl.BackupCodes(e.ctx, u)
	if err != nil {
		return err
	}
	return writeBackupCodes(e.stdout, u, codes)
}

// maxPasscodeTTL bounds --ttl: a helpdesk passcode is for today, not for next month.
const maxPasscodeTTL = 7 * 24 * time.Hour

func (reg *registry) passcode(u string, ttl time.Duration) error {
	e, cl := reg.e, reg.cl
	if ttl <= 0 || ttl > maxPasscodeTTL {
		return usagef("--ttl %s: want more than 0 and at most %s", ttl, maxPasscodeTTL)
	}
	p, err := cl.Passcode(e.ctx, u, ttl)
	if err != nil {
		return err
	}
	u = token.Clean(u)
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

func (reg *registry) nodeAdd(name, scope string, o *changeOptions) error {
	e, cl := reg.e, reg.cl
	if scope == "" {
		return usagef("node add: --scope is required")
	}
	n, err := cl.AddNode(e.ctx, name, scope)
	if err != nil {
		return err
	}
	if n.Name == "" {
		n.Name, n.Scope = name, scope
	}
	n.Name, n.Scope, n.Credential = token.Clean(n.Name), token.Clean(n.Scope), token.Clean(n.Credential)
	path := config.Default().Sync.CredentialFile
	return writeChange(e.stdout, o, n, func(w io.Writer) {
		if !n.Changed {
			fmt.Fprintf(w, "Node %s unchanged: exists in scope %s. Its credential is not shown again; to issue a new one,\n"+
				"remove the node and add it again.\n", n.Name, n.Scope)
			return
		}
		fmt.Fprintf(w, "Node %s added to scope %s. Its credential, shown only this once:\n\n", n.Name, n.Scope)
		fmt.Fprintf(w, "    %s\n\n", n.Credential)
		fmt.Fprintf(w, "Put it on the node in %s, owned by root, mode 0600\n", path)
		fmt.Fprint(w, "([sync] credential_file in pam_totp.conf), then start totp-syncd.\n")
	})
}

// nodes lists the nodes, cleaned for a terminal.
func (reg *registry) nodes() ([]adminclient.Node, error) {
	nodes, err := reg.cl.Nodes(reg.e.ctx)
	for i := range nodes {
		n := &nodes[i]
		n.Name, n.Scope, n.Version = token.Clean(n.Name), token.Clean(n.Scope), token.Clean(n.Version)
	}
	return nodes, err
}

func (reg *registry) nodeList(asJSON bool) error {
	nodes, err := reg.nodes()
	if err != nil {
		return err
	}
	if done, err := writeListing(reg.e.stdout, nodes, asJSON, "No nodes."); done {
		return err
	}
	return nodeTable(reg.e.stdout, nodes)
}

// nodeShow shows one node as node list does (the admin API lists nodes, with their acks, at once).
func (reg *registry) nodeShow(name string, asJSON bool) error {
	nodes, err := reg.nodes()
	if err != nil {
		return err
	}
	i := slices.IndexFunc(nodes, func(n adminclient.Node) bool { return n.Name == token.Clean(name) })
	if i < 0 {
		return fmt.Errorf("no node %q: %w", token.Clean(name), adminclient.ErrNotFound)
	}
	if asJSON {
		return writeJSON(reg.e.stdout, nodes[i])
	}
	return nodeTable(reg.e.stdout, nodes[i:i+1])
}

// nodeTable prints nodes as node list does.
func nodeTable(w io.Writer, nodes []adminclient.Node) error {
	now := time.Now()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
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

func (reg *registry) nodeRemove(name string, o *changeOptions) error {
	e, cl := reg.e, reg.cl
	answer := struct {
		Name string `json:"name"`
		registryapi.Outcome
	}{Name: token.Clean(name)}
	if err := cl.RemoveNode(e.ctx, name); err != nil {
		return absent(e.stdout, o, err, answer, "Node "+answer.Name)
	}
	answer.Changed = true
	return writeChange(e.stdout, o, answer, func(w io.Writer) {
		fmt.Fprintf(w, "Node %s removed: its streams are closed and its credential no longer works.\n", answer.Name)
	})
}

// Imports.

func (reg *registry) importCSV(path string, o csvOptions) error {
	e, cl := reg.e, reg.cl
	p := o.params
	in, err := e.open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	start := time.Now()
	r, err := cl.ImportCSV(e.ctx, in, adminclient.ImportOptions{Scope: o.scope, SkipInvalid: o.skip,
		Algorithm: string(p.Algorithm), Digits: p.Digits, Period: p.Period})
	invalid := r.Invalid
	var ae *adminclient.APIError
	if errors.As(err, &ae) {
		invalid = ae.Invalid
	}
	for _, le := range invalid {
		fmt.Fprintf(e.stderr, "totp-admin: %s: %s\n", token.Clean(path), token.Clean(le.Error()))
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Imported %d tokens (active) in %s", r.Added, time.Since(start).Round(time.Millisecond))
	if r.UsersCreated > 0 {
		fmt.Fprintf(e.stdout, "; %d new users", r.UsersCreated)
		if o.scope != "" {
			fmt.Fprintf(e.stdout, " in scope %s", token.Clean(o.scope))
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

func (reg *registry) importGA(u, path string) error {
	e, cl := reg.e, reg.cl
	f, err := e.open(path)
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
	writeGAImport(e.stdout, gaImport{id: res.ID, period: res.Token.Period, already: res.Already,
		scratch: res.Scratch, replaced: res.Replaced, ignored: res.Ignored}, u, path, "totp-admin --registry URL")
	return nil
}

// Audit and history.

func (reg *registry) audit(after int64, limit int, asJSON bool) error {
	e, cl := reg.e, reg.cl
	if after < 0 || limit < 1 {
		return usagef("audit: --after must not be negative and --limit must be at least 1")
	}
	recs, err := cl.Audit(e.ctx, after, limit)
	if err != nil {
		return err
	}
	for i := range recs {
		r := &recs[i]
		r.Actor, r.Action, r.Target, r.Reason = token.Clean(r.Actor), token.Clean(r.Action), token.Clean(r.Target), token.Clean(r.Reason)
		r.Prev, r.Hash = token.Clean(r.Prev), token.Clean(r.Hash)
	}
	if done, err := writeListing(e.stdout, recs, asJSON, "No audit records."); done {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tTARGET\tREASON")
	for _, r := range recs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", r.Seq, stampSeconds(r.Time), dash(r.Actor), dash(r.Action), dash(r.Target), dash(r.Reason))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(recs) == limit {
		fmt.Fprintf(e.stdout, "(more may follow: --after %d)\n", recs[len(recs)-1].Seq)
	}
	return nil
}

func (reg *registry) auditVerify(asJSON bool) error {
	e, cl := reg.e, reg.cl
	r, err := cl.VerifyAudit(e.ctx)
	if err != nil {
		return err
	}
	if asJSON {
		r.Head, r.Error, r.Nodes = token.Clean(r.Head), token.Clean(r.Error), cleanAll(r.Nodes)
		if err := writeJSON(e.stdout, r); err != nil || r.OK {
			return err
		}
		return cmdline.ExitCode(1)
	}
	if r.OK {
		fmt.Fprintf(e.stdout, "Audit log OK: %d records, the hash chain is intact.\n", r.Records)
		if r.Anchors > 0 {
			fmt.Fprintf(e.stdout, "The chain contains the audit heads that %d nodes reported.\n", r.Anchors)
		}
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

func (reg *registry) whoami(asJSON bool) error {
	e, cl := reg.e, reg.cl
	a, err := cl.Whoami(e.ctx)
	if err != nil {
		return err
	}
	if asJSON {
		// Every field always, for parsers: scopes [] is every scope, expires null never.
		return writeJSON(e.stdout, struct {
			Name    string     `json:"name"`
			Role    string     `json:"role"`
			Scopes  []string   `json:"scopes"`
			Expires *time.Time `json:"expires"`
		}{token.Clean(a.Name), token.Clean(a.Role), cleanAll(a.Scopes), a.Expires})
	}
	sc, expires := "all", "never"
	if len(a.Scopes) > 0 {
		sc = scopes(a.Scopes)
	}
	if a.Expires != nil {
		expires = a.Expires.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(e.stdout, "admin:   %s\nrole:    %s\nscopes:  %s\nexpires: %s\n", token.Clean(a.Name), token.Clean(a.Role), sc, expires)
	return nil
}

func (reg *registry) compact(keep int64) error {
	e, cl := reg.e, reg.cl
	r, err := cl.Compact(e.ctx, keep)
	if err != nil {
		return err
	}
	if r.Revision > 0 || r.Compacted > 0 {
		fmt.Fprintf(e.stdout, "History compacted up to revision %d (the registry is at %d).\n", r.Compacted, r.Revision)
	} else {
		fmt.Fprintf(e.stdout, "History compacted: the last %d revisions kept.\n", keep)
	}
	fmt.Fprintln(e.stdout, "Nodes behind the compacted revision resync with a snapshot.")
	return nil
}
