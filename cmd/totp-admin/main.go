// Command totp-admin manages a login node's tokens on a site without a registry: it enrolls,
// lists, disables and removes tokens, issues backup codes, unlocks users, imports tokens from CSV
// and google-authenticator files, and checks the node's PAM stack and files (doctor). With
// --registry URL the same commands, and those for users, nodes and the audit log, go to
// totp-registry's admin API instead (registry.go, package adminclient).
//
// It is a thin main: the command tree (one of every verb, on cobra through package cmdline) and
// the choice of backend here, the output in standalone.go and registry.go, the work in packages
// admin and adminclient.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pam-totp/pam-totp/pkg/admin"
	"github.com/pam-totp/pam-totp/pkg/cmdline"
	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/doctor"
	"github.com/pam-totp/pam-totp/pkg/enrollcli"
	"github.com/pam-totp/pam-totp/pkg/paths"
	"github.com/pam-totp/pam-totp/pkg/qrterm"
	"github.com/pam-totp/pam-totp/pkg/securefile"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/tokenimport"
	"github.com/pam-totp/pam-totp/pkg/totp"
	"github.com/pam-totp/pam-totp/pkg/version"
)

// Environment variables that stand in for the registry flags.
const (
	envRegistry  = "TOTP_REGISTRY"
	envTokenFile = "TOTP_ADMIN_TOKEN_FILE"
	envCAFile    = "TOTP_CA_FILE"
)

var longHelp = `totp-admin manages TOTP tokens: on a login node without a registry, in the node's own store
(--config FILE, default ` + paths.NodeConfig() + `); with --registry URL (or $TOTP_REGISTRY),
at the central totp-registry, which also knows users, login nodes and an audit log.

With a registry:
  --registry URL           the registry, https://HOST[:PORT]   (or $TOTP_REGISTRY); several
                           replicas: repeat it or separate URLs with commas
  --admin-token-file FILE  the admin token, mode 0600          (or $TOTP_ADMIN_TOKEN_FILE)
  --ca-file FILE           the registry's CA, the only one trusted (or $TOTP_CA_FILE;
                           default: the system's CAs)
  --reason TEXT            why, for the registry's audit log (every command that changes)
The flags go anywhere on the line. user, node, passcode, audit and compact exist only with a
registry; doctor, check-config and check-removal always look at this node.`

// env is what a command may touch, so tests can run it in-process.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	config string // --config
	reg    registryFlags
}

// open opens an import's input: the file at path, or the command's standard input for "-".
func (e *env) open(path string) (io.ReadCloser, error) {
	if path == "-" {
		return io.NopCloser(e.stdin), nil
	}
	return tokenimport.OpenInput(path)
}

// registryFlags are --registry, --admin-token-file, --ca-file and --reason as given; the first
// three fall back to the environment.
type registryFlags struct {
	urls                      []string // --registry, repeated or comma-separated: replicas of one registry
	tokenFile, caFile, reason string
}

func main() {
	e := &env{ctx: context.Background(), stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
		getenv: os.Getenv}
	os.Exit(run(e, os.Args[1:]))
}

func run(e *env, args []string) int {
	root := newRoot(e)
	cmdline.Setup(root, e.stdout, e.stderr)
	return cmdline.Run(root, args, token.Clean, func(err error) int {
		fmt.Fprintf(e.stderr, "totp-admin: %s\n", token.Clean(err.Error()))
		return 1
	})
}

var usagef = cmdline.Usagef

// newRoot builds the command tree: every verb once, whichever backend it goes to.
func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:     "totp-admin [--config FILE | --registry URL] COMMAND",
		Short:   "Manage TOTP tokens on a login node or at the registry",
		Long:    longHelp,
		Version: version.Version,
		Args:    cobra.ArbitraryArgs,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&e.config, "config", paths.NodeConfig(), "config `FILE` of this node")
	pf.StringSliceVar(&e.reg.urls, "registry", nil, "`URL` of the registry; replicas of one registry repeated or separated by commas, tried in order (default $"+envRegistry+")")
	pf.StringVar(&e.reg.tokenFile, "admin-token-file", "", "`FILE` with the registry's admin token, mode 0600 (default $"+envTokenFile+")")
	pf.StringVar(&e.reg.caFile, "ca-file", "", "`FILE` with the registry's CA, the only one trusted (default $"+envCAFile+"; else the system's CAs)")
	pf.StringVar(&e.reg.reason, "reason", "", "why (`TEXT`), for the registry's audit log")
	check := root.Flags().Bool("check-config", false, "load and validate the config, then exit")
	root.RunE = func(cmd *cobra.Command, args []string) error {
		if !*check {
			return cmdline.WantVerb(cmd, args)
		}
		if len(args) > 0 {
			return usagef("--check-config takes no command")
		}
		return checkConfig(e, false)
	}
	root.AddCommand(tokenCommand(e), importCommand(e), userCommand(e), nodeCommand(e), auditCommand(e), doctorCommand(e), checkRemovalCommand(e),
		&cobra.Command{Use: "backup-codes USER", Short: "Issue new backup codes (the old ones stop working)",
			Args: cmdline.ExactArgs(1), RunE: both(e, func(b backend, args []string) error { return b.backupCodes(args[0]) })},
		unlockCommand(e),
		&cobra.Command{Use: "reset USER", Short: "Remove all of a user's tokens and backup codes",
			Args: cmdline.ExactArgs(1), RunE: both(e, func(b backend, args []string) error { return b.reset(args[0]) })},
		checkConfigCommand(e),
	)
	for _, c := range registryOnlyCommands(e) {
		root.AddCommand(c)
	}
	return root
}

// backend is where the verbs that exist with and without a registry go: the node's store
// (standalone) or the registry's admin API (registry.go).
type backend interface {
	tokenAdd(user string, o tokenOptions) error
	tokenList(user string, asJSON bool) error
	tokenChange(verb, user, id string, o *changeOptions) error
	backupCodes(user string) error
	unlock(user string, o *changeOptions) error
	reset(user string) error
	importCSV(path string, o csvOptions) error
	importGA(user, path string) error
}

// backend picks the backend, the one place that does: the registry with --registry URL or
// $TOTP_REGISTRY, else the node's store.
func (e *env) backend(cmd *cobra.Command) (backend, error) {
	r, err := e.registry(cmd)
	switch {
	case err != nil:
		return nil, err
	case r != nil:
		return r, nil
	case e.reg.reason != "":
		return nil, usagef("%s: --reason is for the registry's audit log: needs --registry URL (or %s)",
			cmdline.Name(cmd), envRegistry)
	}
	return &standalone{e: e}, nil
}

// both makes the run of a verb that goes to either backend.
func both(e *env, f func(b backend, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		b, err := e.backend(cmd)
		if err != nil {
			return err
		}
		return f(b, args)
	}
}

func tokenCommand(e *env) *cobra.Command {
	tok := &cobra.Command{Use: "token", Short: "Add, list, disable, enable, remove, assign and unassign tokens"}
	add := &cobra.Command{Use: "add USER", Short: "Add a token: shows its QR code, then (standalone) asks for a code",
		Args: cmdline.ExactArgs(1)}
	opts := tokenFlags(add.Flags(), e)
	add.RunE = both(e, func(b backend, args []string) error {
		o, err := opts()
		if err != nil {
			return err
		}
		return b.tokenAdd(args[0], o)
	})
	list := &cobra.Command{Use: "list [USER]", Short: "List tokens (with a registry: one user's)", Args: cmdline.RangeArgs(0, 1)}
	asJSON := jsonFlag(list)
	unassigned := list.Flags().Bool("unassigned", false, "list the hardware tokens no user holds yet (import pskc)")
	list.RunE = both(e, func(b backend, args []string) error {
		if *unassigned {
			if len(args) > 0 {
				return usagef("token list --unassigned takes no USER")
			}
			return b.(hardwareBackend).hardwareList(*asJSON)
		}
		return b.tokenList(strings.Join(args, ""), *asJSON)
	})
	tok.AddCommand(add, list)
	tok.AddCommand(hardwareCommands(e)...)
	for _, verb := range []string{"remove", "disable", "enable"} {
		c := &cobra.Command{Use: verb + " USER ID", Short: strings.ToUpper(verb[:1]) + verb[1:] + " a token",
			Args: cmdline.ExactArgs(2)}
		o := changeFlags(c, verb == "remove")
		c.RunE = both(e, func(b backend, args []string) error { return b.tokenChange(verb, args[0], args[1], o) })
		tok.AddCommand(c)
	}
	return tok
}

func unlockCommand(e *env) *cobra.Command {
	c := &cobra.Command{Use: "unlock USER", Short: "Forget a user's failed codes (at the registry: failed proofs)",
		Args: cmdline.ExactArgs(1)}
	o := changeFlags(c, false)
	c.RunE = both(e, func(b backend, args []string) error { return b.unlock(args[0], o) })
	return c
}

func jsonFlag(cmd *cobra.Command) *bool { return cmd.Flags().Bool("json", false, "JSON output") }

// csvOptions are import csv's flags.
type csvOptions struct {
	scope  string
	skip   bool
	params totp.Params
}

func importCommand(e *env) *cobra.Command {
	imp := &cobra.Command{Use: "import", Short: "Import tokens from CSV, a google-authenticator file or a PSKC file of hardware tokens"}
	csv := &cobra.Command{Use: "csv FILE|-", Short: "Import user,secret[,name] lines (active at once)", Args: cmdline.ExactArgs(1)}
	scope := csv.Flags().String("scope", "", "scope for the users the import creates (with a registry)")
	skip := csv.Flags().Bool("skip-invalid", false, "import the valid lines even if some are invalid")
	params := paramFlags(csv.Flags())
	csv.RunE = both(e, func(b backend, args []string) error {
		p, err := params()
		if err != nil {
			return err
		}
		return b.importCSV(args[0], csvOptions{scope: *scope, skip: *skip, params: p})
	})
	ga := &cobra.Command{Use: "google-authenticator USER FILE", Short: "Import a user's ~/.google_authenticator",
		Args: cmdline.ExactArgs(2), RunE: both(e, func(b backend, args []string) error { return b.importGA(args[0], args[1]) })}
	imp.AddCommand(csv, ga, pskcCommand(e))
	return imp
}

// doctorCommand checks this node, with or without a registry.
func doctorCommand(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "doctor", Short: "Check this node's PAM stack, files and totp-syncd",
		Long: "doctor checks this node's PAM stack, pam_totp's files and totp-syncd, and runs a PAM transaction.\n" +
			"--config is used unless the pam_totp.so line has config=.", Args: cmdline.NoArgs}
	fs := cmd.Flags()
	service := fs.String("service", "sshd", "PAM service to check")
	u := fs.String("user", "", "user of the PAM transaction (default: a user with an active token, or root)")
	rhost := fs.String("rhost", "", "client address to set as PAM_RHOST")
	pamdir := fs.String("pamdir", doctor.DefaultPAMDir, "directory of PAM service files")
	helper := fs.String("helper", paths.Helper(), "helper (unless the pam_totp.so line has helper=)")
	noTx := fs.Bool("no-transaction", false, "skip the PAM transaction")
	bus := fs.String("bus", "", "D-Bus address to look for totp-syncd on (default: $DBUS_SYSTEM_BUS_ADDRESS or the system bus)")
	asJSON := jsonFlag(cmd)
	cmd.RunE = func(*cobra.Command, []string) error {
		o := doctor.DoctorOptions{
			PAMDir: *pamdir, Service: *service, User: *u, RHost: *rhost,
			ConfigPath: e.config, Helper: *helper,
			Sync: func() error { return syncStatus(e.ctx, *bus) },
		}
		if !*noTx {
			o.Transact = transact
		}
		r := doctor.Doctor(o)
		write := r.Write
		if *asJSON {
			write = r.WriteJSON
		}
		if err := write(e.stdout); err != nil {
			return err
		}
		if r.Failed() {
			return cmdline.ExitCode(1)
		}
		return nil
	}
	return cmd
}

// checkRemovalCommand says whether the package may be removed without locking the site out: the
// packages' removal scripts (deb prerm, rpm %preun) run it and refuse when it fails.
func checkRemovalCommand(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "check-removal", Short: "Check that no PAM file names pam_totp.so by hand, before the package is removed",
		Long: "check-removal reads every file of the PAM directory. A line that loads pam_totp.so is fine only inside\n" +
			"the block pam-auth-update writes in common-* files while the pam-totp profile exists; any other line\n" +
			"would deny every login through it once the module is gone. Exit status 0: the package may be removed;\n" +
			"1: the lines are listed with what to do.", Args: cmdline.NoArgs}
	fs := cmd.Flags()
	pamdir := fs.String("pam-dir", doctor.DefaultPAMDir, "directory of PAM service files")
	profile := fs.String("profile", doctor.DefaultProfile, "the pam-auth-update profile of the package")
	strict := fs.Bool("strict", false, "count lines in pam-auth-update's block too (after pam-auth-update --package --remove pam-totp, none may remain)")
	asJSON := jsonFlag(cmd)
	cmd.RunE = func(*cobra.Command, []string) error {
		r, err := doctor.CheckRemoval(doctor.RemovalOptions{PAMDir: *pamdir, Profile: *profile, Strict: *strict})
		if err != nil {
			return err
		}
		if *asJSON {
			err = writeJSON(e.stdout, struct {
				*doctor.Removal
				Safe bool `json:"safe"`
			}{r, r.Safe()})
		} else {
			err = r.Write(e.stdout)
		}
		if err != nil {
			return err
		}
		if !r.Safe() {
			return cmdline.ExitCode(1)
		}
		return nil
	}
	return cmd
}

// load loads the config named by --config with its ownership checks, and warns about unknown keys.
func load(e *env) (*config.Config, error) {
	cfg, warnings, err := config.Load(e.config)
	for _, w := range warnings {
		fmt.Fprintf(e.stderr, "totp-admin: warning: %s\n", token.Clean(w))
	}
	return cfg, err
}

func checkConfigCommand(e *env) *cobra.Command {
	c := &cobra.Command{Use: "check-config", Short: "Load and validate the config (the same checks as the helper), then exit",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("check-config takes no arguments (the file comes from --config)")
			}
			return nil
		}}
	asJSON := jsonFlag(c)
	c.RunE = func(*cobra.Command, []string) error { return checkConfig(e, *asJSON) }
	return c
}

// configCheck is check-config --json's answer: errors holds one sentence per problem.
type configCheck struct {
	File   string   `json:"file"`
	OK     bool     `json:"ok"`
	Errors []string `json:"errors"`
}

// checkConfig is --check-config: load's checks, and an unknown key is an error too.
func checkConfig(e *env, asJSON bool) error {
	_, err := config.Check(e.config)
	if asJSON {
		r := configCheck{File: token.Clean(e.config), OK: err == nil, Errors: []string{}}
		if err != nil {
			r.Errors = cleanAll(strings.Split(err.Error(), "\n"))
		}
		if werr := writeJSON(e.stdout, r); werr != nil || err == nil {
			return werr
		}
		return cmdline.ExitCode(1)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: OK\n", token.Clean(e.config))
	return nil
}

// tokenOptions are the flags token add has with and without a registry.
type tokenOptions struct {
	name     string
	secret   []byte // nil: a new random one
	params   totp.Params
	qr       admin.QR
	noVerify bool // standalone: active at once; a registry's tokens always are
}

// tokenFlags adds token add's flags to fs; the function it returns checks them once fs is
// parsed. --secret is defined only to refuse it.
func tokenFlags(fs *pflag.FlagSet, e *env) func() (tokenOptions, error) {
	name := fs.String("name", "", "token `NAME` (default token-N)")
	secretFile := fs.String("secret-file", "", "base32 secret (default: a new random one): read from `FILE` (owned by you, i.e. root, mode 0600) or - for standard input")
	secretArg := fs.String("secret", "", "refused: use --secret-file (a secret in the arguments is visible in ps and shell history)")
	params := paramFlags(fs)
	noQR := fs.Bool("no-qr", false, "do not show the QR code")
	qrMode := fs.String("qr", "", "QR code `MODE`: half, full or ascii (default from $TERM and the locale)")
	noVerify := fs.Bool("no-verify", false, "activate at once without asking for a code (a registry's tokens always are)")
	return func() (tokenOptions, error) {
		o := tokenOptions{name: *name, noVerify: *noVerify}
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
func paramFlags(fs *pflag.FlagSet) func() (totp.Params, error) {
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
