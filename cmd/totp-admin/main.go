// Command totp-admin manages a login node's tokens on a site without a registry: it enrolls,
// lists, disables and removes tokens, issues backup codes, unlocks users, imports tokens from CSV
// and google-authenticator files, and checks the node's PAM stack and files (doctor). With
// --registry URL the same commands, and those for users, nodes and the audit log, go to
// totp-registry's admin API instead (registry.go, package adminclient).
//
// It is a thin main: flags and output here, everything else in package admin.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"os/user"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pam-totp/pam-totp/pkg/admin"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/doctor"
	"github.com/pam-totp/pam-totp/pkg/enrollcli"
	"github.com/pam-totp/pam-totp/pkg/qrterm"
	"github.com/pam-totp/pam-totp/pkg/securefile"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/tokenimport"
	"github.com/pam-totp/pam-totp/pkg/totp"
	"github.com/pam-totp/pam-totp/pkg/version"
)

const usage = `usage: totp-admin [--config FILE] COMMAND [ARGS]

commands:
  token add USER [--name N] [--secret-file FILE|-] [--algorithm SHA1|SHA256|SHA512]
                 [--digits 6|8] [--period 30] [--no-verify] [--no-qr] [--qr half|full|ascii]
  token list [USER] [--json]
  token remove USER ID
  token disable USER ID
  token enable USER ID
  backup-codes USER
  unlock USER
  reset USER
  import csv FILE|- [--skip-invalid] [--algorithm A] [--digits D] [--period P]
  import google-authenticator USER FILE
  check-config     load and validate the config (the same checks as the helper), then exit
  doctor [--service NAME] [--user USER] [--rhost ADDR] [--pamdir DIR] [--helper PATH]
         [--no-transaction] [--bus ADDRESS]

  --check-config   load and validate the config, then exit
  --version        print the version

Every command takes --config FILE (default ` + config.DefaultPath + `).
` + registryUsage

// errUsage marks errors that exit with status 2.
var errUsage = errors.New("usage")

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }
func (e usageError) Unwrap() error { return errUsage }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// env is what a command may touch, so tests can run it in-process.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	config string // --config given before the command
	reg    registryFlags
	// writes is set for commands that change tokens.db, which only the registry may feed on a
	// node that follows one.
	writes bool
}

func main() {
	e := &env{ctx: context.Background(), stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
		getenv: os.Getenv}
	os.Exit(run(e, os.Args[1:]))
}

func run(e *env, args []string) int {
	err := dispatch(e, args)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(e.stderr, "totp-admin: %s\n%s", token.Clean(err.Error()), usage)
		return 2
	case errors.Is(err, errReported):
		return 1
	}
	fmt.Fprintf(e.stderr, "totp-admin: %s\n", token.Clean(err.Error()))
	return 1
}

// errReported: the command has already said what went wrong; exit 1 without another line.
var errReported = errors.New("reported")

func dispatch(e *env, args []string) error {
	fs := newFlags("totp-admin", e)
	cfgPath := fs.String("config", config.DefaultPath, "config file")
	check := fs.Bool("check-config", false, "load and validate the config, then exit")
	showVersion := fs.Bool("version", false, "print the version")
	reg := addRegistryFlags(fs, e)
	if err := fs.Parse(args); err != nil {
		return err
	}
	e.config = *cfgPath
	args = fs.Args()
	if e.reg = reg(args); e.reg.url != "" && len(args) > 0 && !*showVersion && !*check {
		return dispatchRegistry(e, args)
	}
	switch {
	case *showVersion:
		fmt.Fprintln(e.stdout, "totp-admin", version.Version)
		return nil
	case *check:
		if len(args) > 0 {
			return usagef("--check-config takes no command")
		}
		return checkConfig(e, *cfgPath)
	case len(args) == 0:
		return usagef("no command")
	}
	cmd, rest := args[0], args[1:]
	e.writes = cmd == "backup-codes" || cmd == "reset" || cmd == "import" ||
		(cmd == "token" && len(rest) > 0 && rest[0] != "list")
	switch cmd {
	case "token":
		if len(rest) == 0 {
			return usagef("token: want add, list, remove, disable or enable")
		}
		switch rest[0] {
		case "add":
			return tokenAdd(e, rest[1:])
		case "list":
			return tokenList(e, rest[1:])
		case "remove", "disable", "enable":
			return tokenChange(e, rest[0], rest[1:])
		}
		return usagef("token %s: unknown command", rest[0])
	case "backup-codes":
		return backupCodes(e, rest)
	case "unlock":
		return unlock(e, rest)
	case "reset":
		return reset(e, rest)
	case "import":
		if len(rest) == 0 {
			return usagef("import: want csv or google-authenticator")
		}
		switch rest[0] {
		case "csv":
			return importCSV(e, rest[1:])
		case "google-authenticator":
			return importGA(e, rest[1:])
		}
		return usagef("import %s: unknown format", rest[0])
	case "doctor":
		return runDoctor(e, rest)
	case "check-config":
		if len(rest) > 0 {
			return usagef("check-config takes no arguments (the file comes from --config)")
		}
		return checkConfig(e, *cfgPath)
	case "help":
		fmt.Fprint(e.stdout, usage)
		return nil
	}
	if registryOnly[cmd] {
		return usagef("%s: needs --registry URL (or TOTP_REGISTRY)", cmd)
	}
	return usagef("unknown command %q", cmd)
}

func newFlags(name string, e *env) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parse parses flags anywhere among the arguments ("token add alice --name phone") and returns
// the positional ones; everything after "--" is positional.
func parse(fs *flag.FlagSet, args []string, want int, optional int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, usagef("%s: see the usage below", fs.Name())
			}
			return nil, usagef("%s: %v", fs.Name(), err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) < want || len(pos) > want+optional {
		return nil, usagef("%s: wrong number of arguments", fs.Name())
	}
	return pos, nil
}

// load loads the config named by --config with its ownership checks, and warns about unknown keys.
func load(e *env, path string) (*config.Config, error) {
	cfg, warnings, err := config.Load(path)
	for _, w := range warnings {
		fmt.Fprintf(e.stderr, "totp-admin: warning: %s\n", token.Clean(w))
	}
	return cfg, err
}

func checkConfig(e *env, path string) error {
	if _, err := load(e, path); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: OK\n", token.Clean(path))
	return nil
}

// command adds --config to fs, parses args (want positional arguments, up to optional more) and
// opens the admin API on the config. Subcommands with flags of their own add them to fs first.
func command(e *env, fs *flag.FlagSet, args []string, want, optional int) (*admin.Admin, []string, error) {
	cfgPath := fs.String("config", e.config, "config file")
	pos, err := parse(fs, args, want, optional)
	if err != nil {
		return nil, nil, err
	}
	a, err := adminFor(e, *cfgPath)
	return a, pos, err
}

func adminFor(e *env, path string) (*admin.Admin, error) {
	cfg, err := load(e, path)
	if err != nil {
		return nil, err
	}
	if e.writes && cfg.Sync.Registry != "" {
		return nil, fmt.Errorf("this node follows the registry %s: change tokens there "+
			"(totp-admin --registry %s ...); a local change would be undone at the next sync",
			token.Clean(cfg.Sync.Registry), token.Clean(cfg.Sync.Registry))
	}
	return admin.New(cfg), nil
}

// tokenOptions are the flags token add has with and without a registry.
type tokenOptions struct {
	name   string
	secret []byte // nil: a new random one
	params totp.Params
	qr     admin.QR
}

// tokenFlags adds --name, --secret-file, the TOTP parameters, --no-qr and --qr to fs; the
// function it returns checks them once fs is parsed. --secret is defined only to refuse it.
func tokenFlags(fs *flag.FlagSet, e *env, nameHelp, secretHelp string) func() (tokenOptions, error) {
	name := fs.String("name", "", nameHelp)
	secretFile := fs.String("secret-file", "", secretHelp+": read from FILE (owned by you, i.e. root, mode 0600) or - for standard input")
	secretArg := fs.String("secret", "", "refused: use --secret-file (a secret in the arguments is visible in ps and shell history)")
	params := paramFlags(fs)
	noQR := fs.Bool("no-qr", false, "do not show the QR code")
	qrMode := fs.String("qr", "", "QR code mode: half, full or ascii (default from $TERM and the locale)")
	return func() (tokenOptions, error) {
		o := tokenOptions{name: *name}
		var err error
		if *secretArg != "" {
			return o, usagef("--secret puts the secret on the command line, where every user of this host sees it " +
				"(ps, /proc) and shell history keeps it; use --secret-file FILE (root-owned, mode 0600) or --secret-file - " +
				"to read it from standard input")
		}
		if o.params, err = params(); err != nil {
			return o, err
		}
		o.qr = admin.QR{Show: !*noQR, Mode: qrterm.DetectMode(e.getenv("TERM"), qrterm.LocaleIsUTF8(e.getenv))}
		if *qrMode != "" {
			if o.qr.Mode, err = qrterm.ParseMode(*qrMode); err != nil {
				return o, usagef("--qr: %v", err)
			}
		}
		if *secretFile != "" {
			text, err := readSecret(e, *secretFile)
			if err != nil {
				return o, err
			}
			if o.secret, err = totp.DecodeSecret(text); err != nil {
				if errors.Is(err, totp.ErrSecretSize) {
					return o, usagef("--secret-file: the secret has an unsupported length (want %d to %d bytes)",
						totp.MinSecretLen, totp.MaxSecretLen)
				}
				return o, usagef("--secret-file: the secret is not valid base32")
			}
		}
		return o, nil
	}
}

// maxSecretFile bounds a --secret-file: a base32 secret of MaxSecretLen bytes, spaced, and a newline.
const maxSecretFile = 1024

// syncStatus asks totp-syncd for its status over the bus at address, within enrollcli's bounds;
// the error says what is missing (the bus, or totp-syncd on it) in a sentence.
func syncStatus(ctx context.Context, address string) error {
	b, err := enrollcli.Dial(ctx, address)
	if err != nil {
		return err
	}
	defer b.Close()
	_, err = b.Status(ctx)
	return err
}

// readSecret reads a base32 secret from path (owned by the caller, root in practice; no symlink;
// mode 0600 or stricter, checked on the open descriptor) or,
// with "-", from the first line of standard input; what follows on standard input is left for
// the first code. Only the first line counts; it is never echoed.
func readSecret(e *env, path string) (string, error) {
	if path == "-" {
		r := bufio.NewReader(e.stdin)
		line, err := r.ReadString('\n')
		if err != nil && (err != io.EOF || line == "") {
			return "", usagef("--secret-file -: no secret on standard input")
		}
		e.stdin = r
		return strings.TrimSpace(line), nil
	}
	b, err := securefile.ReadFile(path, securefile.Secret, maxSecretFile)
	if err != nil {
		return "", usagef("--secret-file: %v", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line), nil
}

// paramFlags adds --algorithm, --digits and --period.
func paramFlags(fs *flag.FlagSet) func() (totp.Params, error) {
	alg := fs.String("algorithm", string(totp.DefaultParams.Algorithm), "SHA1, SHA256 or SHA512")
	digits := fs.Int("digits", totp.DefaultParams.Digits, "6 or 8")
	period := fs.Int("period", totp.DefaultParams.Period, "seconds per code")
	return func() (totp.Params, error) {
		p := totp.Params{Algorithm: totp.Algorithm(strings.ToUpper(*alg)), Digits: *digits, Period: *period}
		if p.Digits != 6 && p.Digits != 8 {
			return p, usagef("--digits %d: want 6 or 8 (what authenticator apps show)", p.Digits)
		}
		if err := p.Validate(); err != nil {
			return p, usagef("%v", err)
		}
		return p, nil
	}
}

func tokenAdd(e *env, args []string) error {
	fs := newFlags("token add", e)
	cfgPath := fs.String("config", e.config, "config file")
	opts := tokenFlags(fs, e, "token name (default token-N)", "base32 secret (default: a new random 160-bit secret)")
	noVerify := fs.Bool("no-verify", false, "activate at once without asking for a code")
	pos, err := parse(fs, args, 1, 0)
	if err != nil {
		return err
	}
	u := pos[0]
	o, err := opts()
	if err != nil {
		return err
	}
	a, err := adminFor(e, *cfgPath)
	if err != nil {
		return err
	}
	if !knownUser(u) {
		fmt.Fprintf(e.stderr, "totp-admin: warning: user %s is not known to this host\n", token.Clean(u))
	}
	// From here a signal must not leave a pending token behind: it cancels the enrollment.
	ctx, stop := signal.NotifyContext(e.ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	en, err := a.AddToken(u, admin.AddOptions{Name: o.name, Secret: o.secret, Params: o.params, Active: *noVerify})
	if err != nil {
		return err
	}
	if err := admin.WriteEnrollment(e.stdout, en, o.qr); err != nil {
		if _, cerr := a.Cancel(u, en.Token.ID); cerr != nil {
			return fmt.Errorf("%w; removing the pending token failed: %v", err, cerr)
		}
		return err
	}
	if *noVerify {
		fmt.Fprintf(e.stdout, "\nToken %s is active (--no-verify: no code was checked).\n", en.Token.ID)
	} else if err := a.VerifyInteractive(ctx, en, e.stdin, e.stdout); err != nil {
		if errors.Is(err, admin.ErrCancelled) || errors.Is(err, admin.ErrNotVerified) {
			return fmt.Errorf("token %s of %s not activated: %w", en.Token.ID, u, err)
		}
		return err
	}
	if !en.HasBackupCodes {
		fmt.Fprintf(e.stdout, "%s has no backup codes yet: run `totp-admin backup-codes %s` and hand them over.\n",
			token.Clean(u), token.Clean(u))
	}
	return nil
}

func tokenList(e *env, args []string) error {
	fs := newFlags("token list", e)
	asJSON := fs.Bool("json", false, "JSON output")
	a, pos, err := command(e, fs, args, 0, 1)
	if err != nil {
		return err
	}
	u := ""
	if len(pos) == 1 {
		u = pos[0]
	}
	toks, err := a.ListTokens(u)
	if err != nil {
		return err
	}
	for i := range toks {
		t := &toks[i]
		t.User, t.ID, t.Name = token.Clean(t.User), token.Clean(t.ID), token.Clean(t.Name)
	}
	if *asJSON {
		if toks == nil {
			toks = []token.Info{}
		}
		return writeJSON(e.stdout, toks)
	}
	if len(toks) == 0 {
		if u != "" {
			fmt.Fprintf(e.stdout, "%s has no tokens.\n", token.Clean(u))
		} else {
			fmt.Fprintln(e.stdout, "No tokens.")
		}
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tID\tNAME\tALGORITHM\tDIGITS\tPERIOD\tSTATE\tCREATED\tLAST USED")
	for _, t := range toks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", t.User, t.ID, t.Name, t.Algorithm, t.Digits,
			t.Period, t.State, stamp(t.Created), stamp(t.LastUsed))
	}
	return tw.Flush()
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04Z")
}

func tokenChange(e *env, verb string, args []string) error {
	a, pos, err := command(e, newFlags("token "+verb, e), args, 2, 0)
	if err != nil {
		return err
	}
	u, id := pos[0], pos[1]
	var t token.Info
	switch verb {
	case "remove":
		t, err = a.RemoveToken(u, id)
	case "disable":
		t, err = a.SetState(u, id, token.Disabled)
	case "enable":
		t, err = a.SetState(u, id, token.Active)
	}
	if err != nil {
		return err
	}
	past := map[string]string{"remove": "removed", "disable": "disabled", "enable": "enabled"}[verb]
	fmt.Fprintf(e.stdout, "Token %s (%q) of %s %s.\n", token.Clean(t.ID), token.Clean(t.Name), token.Clean(u), past)
	if verb != "enable" {
		active, err := a.HasActiveToken(u)
		if err == nil && !active {
			fmt.Fprintf(e.stdout, "%s has no active token left: logins that need a code are denied (backup codes still work); with a disabled token also\nduring enrollment grace, and the user cannot enroll a new first token until you enable it or reset them.\n",
				token.Clean(u))
		}
	}
	return nil
}

func backupCodes(e *env, args []string) error {
	a, pos, err := command(e, newFlags("backup-codes", e), args, 1, 0)
	if err != nil {
		return err
	}
	codes, err := a.NewBackupCodes(pos[0])
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "New backup codes for %s (any older codes no longer work):\n\n", token.Clean(pos[0]))
	for i, c := range codes {
		fmt.Fprintf(&b, "  %2d. %s\n", i+1, c)
	}
	b.WriteString("\nEach code works once, in place of a code from the app. Store them somewhere safe\n" +
		"(printed, or in a password manager): they are shown only this once.\n")
	_, err = io.WriteString(e.stdout, b.String())
	return err
}

func unlock(e *env, args []string) error {
	a, pos, err := command(e, newFlags("unlock", e), args, 1, 0)
	if err != nil {
		return err
	}
	before, err := a.Unlock(pos[0])
	if err != nil {
		return err
	}
	if before.Count == 0 && before.Until.IsZero() {
		fmt.Fprintf(e.stdout, "%s had no failed codes; nothing to unlock.\n", token.Clean(pos[0]))
		return nil
	}
	fmt.Fprintf(e.stdout, "%s unlocked: %d failed codes and any back-off forgotten.\n", token.Clean(pos[0]), before.Count)
	return nil
}

func reset(e *env, args []string) error {
	a, pos, err := command(e, newFlags("reset", e), args, 1, 0)
	if err != nil {
		return err
	}
	r, err := a.Reset(pos[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s reset: %d tokens and %d backup codes removed, failures and last used codes forgotten.\n"+
		"Enroll a new token with `totp-admin token add %s`.\n", token.Clean(pos[0]), r.Tokens, r.BackupCodes, token.Clean(pos[0]))
	return nil
}

func importCSV(e *env, args []string) error {
	fs := newFlags("import csv", e)
	skip := fs.Bool("skip-invalid", false, "import the valid lines even if some are invalid")
	params := paramFlags(fs)
	a, pos, err := command(e, fs, args, 1, 0)
	if err != nil {
		return err
	}
	p, err := params()
	if err != nil {
		return err
	}
	var in io.Reader = e.stdin
	if pos[0] != "-" {
		f, err := tokenimport.OpenInput(pos[0])
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	start := time.Now()
	rep, err := a.ImportCSV(in, admin.ImportOptions{Params: p, SkipInvalid: *skip, KnownUser: knownUser})
	for _, le := range rep.Invalid {
		fmt.Fprintf(e.stderr, "totp-admin: %s: %s\n", token.Clean(pos[0]), le)
	}
	for _, u := range rep.UnknownUsers {
		fmt.Fprintf(e.stderr, "totp-admin: warning: user %s is not known to this host\n", token.Clean(u))
	}
	if len(rep.UnknownUsers) > 0 {
		fmt.Fprintf(e.stderr, "totp-admin: warning: %d users are not known to this host; their tokens were imported all the same\n",
			len(rep.UnknownUsers))
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Imported %d tokens (active) in %s", rep.Added, time.Since(start).Round(time.Millisecond))
	if rep.Duplicates > 0 {
		fmt.Fprintf(e.stdout, "; %d already present, skipped", rep.Duplicates)
	}
	if len(rep.Invalid) > 0 {
		fmt.Fprintf(e.stdout, "; %d invalid lines skipped", len(rep.Invalid))
	}
	if len(rep.UnknownUsers) > 0 {
		fmt.Fprintf(e.stdout, "; %d users not known to this host", len(rep.UnknownUsers))
	}
	fmt.Fprintln(e.stdout, ".")
	return nil
}

// knownUser says whether the user exists on this host. Only a definite "no such user" is unknown:
// a lookup that fails for another reason says nothing.
func knownUser(u string) bool {
	_, err := user.Lookup(u)
	var unknown user.UnknownUserError
	return !errors.As(err, &unknown)
}

func importGA(e *env, args []string) error {
	a, pos, err := command(e, newFlags("import google-authenticator", e), args, 2, 0)
	if err != nil {
		return err
	}
	u, path := pos[0], pos[1]
	f, err := tokenimport.ReadGAFile(path)
	if err != nil {
		return err
	}
	res, err := a.ImportGA(u, f)
	if err != nil {
		return err
	}
	if res.Already {
		fmt.Fprintf(e.stdout, "%s already has this token (%s); nothing imported.\n", token.Clean(u), token.Clean(res.Token.ID))
		return nil
	}
	fmt.Fprintf(e.stdout, "Imported token %s (%q) for %s, active, %d-second steps.\n",
		res.Token.ID, tokenimport.GAName, token.Clean(u), res.Token.Period)
	if res.Scratch > 0 {
		fmt.Fprintf(e.stdout, "Imported %d scratch codes as backup codes", res.Scratch)
		if res.Replaced > 0 {
			fmt.Fprintf(e.stdout, " (replacing %d backup codes %s had)", res.Replaced, token.Clean(u))
		}
		fmt.Fprintf(e.stdout, ". They are 8 digits, weaker than ours: consider `totp-admin backup-codes %s`.\n", token.Clean(u))
	}
	if len(f.Ignored) > 0 {
		fmt.Fprintf(e.stdout, "Ignored options (pam_totp.conf decides these for everyone): %s.\n", strings.Join(f.Ignored, ", "))
	}
	fmt.Fprintf(e.stdout, "Once logins work with pam_totp, remove %s.\n", token.Clean(path))
	return nil
}

func runDoctor(e *env, args []string) error {
	fs := newFlags("doctor", e)
	cfgPath := fs.String("config", e.config, "config file (unless the pam_totp.so line has config=)")
	service := fs.String("service", "sshd", "PAM service to check")
	u := fs.String("user", "", "user of the PAM transaction (default: a user with an active token, or root)")
	rhost := fs.String("rhost", "", "client address to set as PAM_RHOST")
	pamdir := fs.String("pamdir", doctor.DefaultPAMDir, "directory of PAM service files")
	helper := fs.String("helper", doctor.DefaultHelper, "helper (unless the pam_totp.so line has helper=)")
	noTx := fs.Bool("no-transaction", false, "skip the PAM transaction")
	bus := fs.String("bus", "", "D-Bus address to look for totp-syncd on (default: $DBUS_SYSTEM_BUS_ADDRESS or the system bus)")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	o := doctor.DoctorOptions{
		PAMDir: *pamdir, Service: *service, User: *u, RHost: *rhost,
		ConfigPath: *cfgPath, Helper: *helper,
		Sync: func() error { return syncStatus(e.ctx, *bus) },
	}
	if !*noTx {
		o.Transact = transact
	}
	r := doctor.Doctor(o)
	if err := r.Write(e.stdout); err != nil {
		return err
	}
	if r.Failed() {
		return errReported
	}
	return nil
}
