package main

// Hardware tokens: import pskc, token assign and unassign, token list --unassigned, for both
// backends (the node's store: package admin; the registry: package adminclient).

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pam-totp/pam-totp/pkg/admin"
	"github.com/pam-totp/pam-totp/pkg/adminclient"
	"github.com/pam-totp/pam-totp/pkg/cmdline"
	"github.com/pam-totp/pam-totp/pkg/registryapi"
	"github.com/pam-totp/pam-totp/pkg/securefile"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/tokenimport"
)

// hardwareBackend is what both backends do with hardware tokens.
type hardwareBackend interface {
	importPSKC(path string, o pskcOptions) error
	tokenAssign(serial, user string) error
	tokenUnassign(user, id string) error
	hardwareList(asJSON bool) error
}

// hardware makes the run of a hardware token verb on either backend.
func hardware(e *env, f func(b hardwareBackend, args []string) error) func(*cobra.Command, []string) error {
	return both(e, func(b backend, args []string) error { return f(b.(hardwareBackend), args) })
}

// pskcOptions are import pskc's flags.
type pskcOptions struct {
	keyFile string
	dryRun  bool
}

func pskcCommand(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "pskc FILE|-", Short: "Import hardware TOTP tokens from a PSKC file (RFC 6030), unassigned",
		Long: "import pskc reads the seed file a hardware token vendor ships (PSKC, RFC 6030) and keeps its TOTP tokens\n" +
			"by serial, unassigned: no one can log in with them until `token assign SERIAL USER` gives one to a user\n" +
			"and a code from the device activates it. A token whose file names an existing user goes to that user\n" +
			"at once, pending until its first code. The whole file is checked first: if any key package cannot be\n" +
			"imported, nothing is. Encrypted seeds need the pre-shared key the vendor sent apart from the file:\n" +
			"--key-file FILE, 32, 48 or 64 hex digits or the raw key, owned by root, mode 0600.",
		Args: cmdline.ExactArgs(1)}
	var o pskcOptions
	cmd.Flags().StringVar(&o.keyFile, "key-file", "", "`FILE` with the pre-shared key of encrypted seeds (hex or raw; root, mode 0600)")
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "check the file and say what would be imported; write nothing")
	cmd.RunE = hardware(e, func(b hardwareBackend, args []string) error { return b.importPSKC(args[0], o) })
	return cmd
}

// hardwareCommands are token assign and token unassign.
func hardwareCommands(e *env) []*cobra.Command {
	return []*cobra.Command{
		{Use: "assign SERIAL USER", Short: "Give an unassigned hardware token to a user; a code from the device activates it",
			Long: "token assign gives the hardware token SERIAL (imported with `import pskc`) to USER, and asks for the code\n" +
				"the device shows (typed at the prompt or read from standard input, never an argument): the token is\n" +
				"active once the code is verified, and the code cannot be used again. Without a verified code the token\n" +
				"stays unassigned (standalone: a pending assignment goes back to the unassigned tokens).",
			Args: cmdline.ExactArgs(2),
			RunE: hardware(e, func(b hardwareBackend, args []string) error { return b.tokenAssign(args[0], args[1]) })},
		{Use: "unassign USER ID", Short: "Take a hardware token from its user (device handed back): unassigned again",
			Long: "token unassign takes USER's hardware token ID back: it is kept, unassigned, for another user. For a lost\n" +
				"device use `token remove USER ID`, which forgets its seed.",
			Args: cmdline.ExactArgs(2),
			RunE: hardware(e, func(b hardwareBackend, args []string) error { return b.tokenUnassign(args[0], args[1]) })},
	}
}

// readPSKC reads and checks a PSKC file with the key in keyFile (if any). The file's bytes are
// wiped once parsed: they may hold seeds in the clear.
func readPSKC(e *env, path, keyFile string) (tokenimport.PSKCFile, error) {
	var key []byte
	if keyFile != "" {
		b, err := securefile.ReadFile(keyFile, securefile.Secret, maxKeyFile)
		if err != nil {
			return tokenimport.PSKCFile{}, usagef("--key-file: %v", err)
		}
		key, err = tokenimport.ParsePSKCKey(b)
		clear(b)
		if err != nil {
			return tokenimport.PSKCFile{}, usagef("--key-file %s: %v", token.Clean(keyFile), err)
		}
		defer clear(key)
	}
	in, err := e.open(path)
	if err != nil {
		return tokenimport.PSKCFile{}, err
	}
	data, err := io.ReadAll(io.LimitReader(in, tokenimport.MaxPSKCFile+1))
	in.Close()
	defer clear(data)
	if err != nil {
		return tokenimport.PSKCFile{}, fmt.Errorf("read %s: %w", token.Clean(path), err)
	}
	f, err := tokenimport.ParsePSKC(data, tokenimport.PSKCOptions{Key: key, Now: time.Now()})
	if err != nil {
		return f, fmt.Errorf("%s: %w", token.Clean(path), err)
	}
	for _, w := range f.Warnings {
		fmt.Fprintf(e.stderr, "totp-admin: warning: %s: %s\n", token.Clean(path), token.Clean(w))
	}
	return f, nil
}

// maxKeyFile bounds a --key-file: 64 hex digits, spaced, and a newline.
const maxKeyFile = 1024

// writeInvalidPackages lists the key packages that cannot be imported, on stderr.
func writeInvalidPackages(w io.Writer, path string, bad []tokenimport.PackageError) {
	for _, pe := range bad {
		fmt.Fprintf(w, "totp-admin: %s: %s\n", token.Clean(path), token.Clean(pe.Error()))
	}
}

// writePSKCImport says what an import of a PSKC file did (serials, never seeds); admin is how to
// run totp-admin.
func writePSKCImport(w io.Writer, dryRun bool, imported []token.HardwareInfo, assigned []token.Info, already []string, admin string) {
	verb := "Imported"
	if dryRun {
		verb = "Dry run, nothing written: would import"
	}
	serials := func(n int, f func(i int) string) string {
		s := make([]string, n)
		for i := range s {
			s[i] = token.Clean(f(i))
		}
		return strings.Join(s, ", ")
	}
	fmt.Fprintf(w, "%s %d hardware tokens, unassigned", verb, len(imported))
	if len(imported) > 0 {
		fmt.Fprintf(w, ": %s", serials(len(imported), func(i int) string { return imported[i].Serial }))
	}
	fmt.Fprintln(w, ".")
	for _, t := range assigned {
		fmt.Fprintf(w, "Hardware token %s assigned to %s as the file says (token %s), pending: activate it with `%s token assign %s %s` and a code from the device.\n",
			token.Clean(t.Serial), token.Clean(t.User), token.Clean(t.ID), admin, token.Clean(t.Serial), token.Clean(t.User))
	}
	if len(already) > 0 {
		fmt.Fprintf(w, "%d already imported with the same seed, skipped: %s.\n", len(already),
			serials(len(already), func(i int) string { return already[i] }))
	}
	if len(imported) > 0 && !dryRun {
		fmt.Fprintf(w, "Give one to a user with `%s token assign SERIAL USER`: a code from the device activates it.\n", admin)
	}
}

// writeHardware prints unassigned hardware tokens as token list --unassigned does: a table, or
// JSON with asJSON.
func writeHardware(w io.Writer, hs []token.HardwareInfo, asJSON bool) error {
	if done, err := writeListing(w, hs, asJSON, "No unassigned hardware tokens."); done {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERIAL\tMANUFACTURER\tMODEL\tALGORITHM\tDIGITS\tPERIOD\tIMPORTED\tFILE'S USER")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return token.Clean(s)
	}
	for _, h := range hs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", token.Clean(h.Serial), dash(h.Manufacturer), dash(h.Model),
			h.Algorithm, h.Digits, h.Period, stamp(h.Imported), dash(h.User))
	}
	return tw.Flush()
}

// Standalone.

func (s *standalone) importPSKC(path string, o pskcOptions) error {
	e := s.e
	a, err := s.admin(!o.dryRun)
	if err != nil {
		return err
	}
	f, err := readPSKC(e, path, o.keyFile)
	if err != nil {
		return err
	}
	defer wipePSKC(&f)
	rep, err := a.ImportPSKC(f, admin.PSKCOptions{DryRun: o.dryRun, KnownUser: knownUser})
	writeInvalidPackages(e.stderr, path, rep.Invalid)
	if err != nil {
		return err
	}
	writePSKCImport(e.stdout, o.dryRun, rep.Imported, rep.Assigned, rep.Already, "totp-admin")
	return nil
}

func wipePSKC(f *tokenimport.PSKCFile) {
	for i := range f.Tokens {
		clear(f.Tokens[i].Secret)
	}
}

func (s *standalone) tokenAssign(serial, u string) error {
	e := s.e
	// A signal gives the token back to the unassigned ones (admin.Cancel).
	a, ctx, stop, err := s.giving(u)
	if err != nil {
		return err
	}
	defer stop()
	en, err := a.AssignHardware(serial, u)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Hardware token %s assigned to %s as token %s (%q), pending until a code from it is verified.\n",
		token.Clean(serial), token.Clean(u), en.Token.ID, token.Clean(en.Token.Name))
	if err := a.VerifyInteractive(ctx, en, e.stdin, e.stdout); err != nil {
		if errors.Is(err, admin.ErrCancelled) || errors.Is(err, admin.ErrNotVerified) {
			return fmt.Errorf("hardware token %s not assigned to %s: %w", token.Clean(serial), token.Clean(u), err)
		}
		return err
	}
	return nil
}

func (s *standalone) tokenUnassign(u, id string) error {
	e := s.e
	a, err := s.admin(true)
	if err != nil {
		return err
	}
	t, err := a.UnassignHardware(u, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Hardware token %s taken from %s (token %s): unassigned, ready for `totp-admin token assign %s USER`.\n",
		token.Clean(t.Serial), token.Clean(u), token.Clean(t.ID), token.Clean(t.Serial))
	return nil
}

func (s *standalone) hardwareList(asJSON bool) error {
	e := s.e
	a, err := s.admin(false)
	if err != nil {
		return err
	}
	hs, err := a.ListHardware()
	if err != nil {
		return err
	}
	return writeHardware(e.stdout, hs, asJSON)
}

// readCode asks for the code a device shows, on the prompt, and reads it from standard input (a
// terminal, or a pipe); it is never an argument, which every user of the host could read.
func readCode(e *env, prompt string) (string, error) {
	fmt.Fprint(e.stdout, prompt)
	r, ok := e.stdin.(*bufio.Reader)
	if !ok {
		r = bufio.NewReaderSize(e.stdin, 256)
		e.stdin = r
	}
	line, err := r.ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return "", errors.New("no code entered (end of input)")
	}
	return strings.TrimSpace(line), nil
}

// Registry.

// importPSKC reads and decrypts the file here (the pre-shared key never leaves this host) and
// sends its tokens to the registry, which checks them against its own and keeps them unassigned.
func (reg *registry) importPSKC(path string, o pskcOptions) error {
	e, cl := reg.e, reg.cl
	f, err := readPSKC(e, path, o.keyFile)
	if err != nil {
		return err
	}
	defer wipePSKC(&f)
	if len(f.Invalid) > 0 {
		writeInvalidPackages(e.stderr, path, f.Invalid)
		return fmt.Errorf("%d %w", len(f.Invalid), admin.ErrInvalidPackages)
	}
	toks := make([]token.Hardware, len(f.Tokens))
	for i := range f.Tokens {
		toks[i] = f.Tokens[i].Hardware(time.Time{}) // the registry sets the time of the import
	}
	rep, err := cl.ImportHardware(e.ctx, toks, o.dryRun)
	var ae *adminclient.APIError
	if errors.As(err, &ae) && len(ae.Invalid) > 0 {
		bad := make([]tokenimport.PackageError, 0, len(ae.Invalid))
		for _, le := range ae.Invalid {
			pe := tokenimport.PackageError{Position: le.Line, Msg: le.Msg}
			if le.Line >= 1 && le.Line <= len(f.Tokens) {
				pe.Position, pe.Serial = f.Tokens[le.Line-1].Position, f.Tokens[le.Line-1].Serial
			}
			bad = append(bad, pe)
		}
		writeInvalidPackages(e.stderr, path, bad)
	}
	if err != nil {
		return err
	}
	writePSKCImport(e.stdout, o.dryRun, rep.Imported, nil, rep.Already, "totp-admin --registry URL")
	for _, h := range rep.Imported {
		if h.User != "" {
			fmt.Fprintf(e.stdout, "The file names user %s for %s: `totp-admin --registry URL token assign %s %s` with a code from the device.\n",
				token.Clean(h.User), token.Clean(h.Serial), token.Clean(h.Serial), token.Clean(h.User))
		}
	}
	return nil
}

// tokenAssign asks for the code the device shows and sends it with the assignment: the registry
// makes the token the user's only if the code verifies. Up to admin.Attempts codes are asked for.
func (reg *registry) tokenAssign(serial, u string) error {
	e, cl := reg.e, reg.cl
	for left := admin.Attempts; left > 0; left-- {
		c, err := readCode(e, "Code shown on hardware token "+token.Clean(serial)+": ")
		if err != nil {
			return fmt.Errorf("hardware token %s not assigned to %s: %w", token.Clean(serial), token.Clean(u), err)
		}
		if c == "" {
			left++
			continue
		}
		res, err := cl.AssignHardware(e.ctx, u, serial, c)
		if err != nil {
			return err
		}
		switch res.Status {
		case registryapi.StatusActive:
			fmt.Fprintf(e.stdout, "Code verified: hardware token %s is %s's token %s (%q), active.\n", token.Clean(serial),
				token.Clean(u), token.Clean(res.Token.ID), token.Clean(res.Token.Name))
			return nil
		case registryapi.StatusClockSkew:
			fmt.Fprintf(e.stdout, "That code is from the wrong time: the device clock seems about %d seconds off.\n", res.SkewSeconds)
		default:
			fmt.Fprintln(e.stdout, "That code is not valid: type the code the device shows now.")
		}
	}
	return fmt.Errorf("hardware token %s not assigned to %s: %w", token.Clean(serial), token.Clean(u), admin.ErrNotVerified)
}

func (reg *registry) tokenUnassign(u, id string) error {
	e, cl := reg.e, reg.cl
	t, err := cl.UnassignHardware(e.ctx, u, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Hardware token %s taken from %s (token %s): unassigned, ready for `totp-admin --registry URL token assign %s USER`.\n",
		token.Clean(t.Serial), token.Clean(u), token.Clean(t.ID), token.Clean(t.Serial))
	return nil
}

func (reg *registry) hardwareList(asJSON bool) error {
	e, cl := reg.e, reg.cl
	hs, err := cl.Hardware(e.ctx)
	if err != nil {
		return err
	}
	return writeHardware(e.stdout, hs, asJSON)
}
