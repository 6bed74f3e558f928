package doctor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/nodesync"
	"github.com/pam-totp/pam-totp/pkg/paths"
	"github.com/pam-totp/pam-totp/pkg/rootsock"
	"github.com/pam-totp/pam-totp/pkg/securefile"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// Status grades one finding of the doctor.
type Status string

// Statuses; any Fail makes the report fail.
const (
	OK   Status = "OK"
	Warn Status = "WARN"
	Fail Status = "FAIL"
)

// Finding is one line of a doctor's report.
type Finding struct {
	Status Status
	Msg    string
}

// Report is what Doctor found.
type Report struct {
	Stack    *Stack
	Findings []Finding
}

func (r *Report) add(st Status, format string, args ...any) {
	r.Findings = append(r.Findings, Finding{Status: st, Msg: fmt.Sprintf(format, args...)})
}

// Failed reports whether any finding is a Fail.
func (r *Report) Failed() bool {
	for _, f := range r.Findings {
		if f.Status == Fail {
			return true
		}
	}
	return false
}

// Write prints the auth stack as PAM runs it, then one line per finding.
func (r *Report) Write(w io.Writer) error {
	var b strings.Builder
	if r.Stack != nil {
		fmt.Fprintf(&b, "auth stack of %s (%s):\n", token.Clean(r.Stack.Service), token.Clean(filepath.Join(r.Stack.Dir, r.Stack.Service)))
		writeLines(&b, r.Stack.Lines, "  ")
		b.WriteString("\n")
	}
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "%-4s  %s\n", f.Status, f.Msg)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// reportJSON is the JSON form of a Report (totp-admin doctor --json): ok is false when any finding
// failed; each finding's status is "ok", "warn" or "fail".
type reportJSON struct {
	OK       bool          `json:"ok"`
	Service  string        `json:"service,omitempty"`
	Findings []findingJSON `json:"findings"`
}

type findingJSON struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// WriteJSON writes the findings as one indented JSON object (the stack is in the messages that
// concern it).
func (r *Report) WriteJSON(w io.Writer) error {
	out := reportJSON{OK: !r.Failed(), Findings: []findingJSON{}}
	if r.Stack != nil {
		out.Service = token.Clean(r.Stack.Service)
	}
	for _, f := range r.Findings {
		out.Findings = append(out.Findings, findingJSON{Status: strings.ToLower(string(f.Status)), Message: token.Clean(f.Msg)})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func writeLines(b *strings.Builder, lines []*PAMLine, indent string) {
	if len(lines) == 0 {
		fmt.Fprintf(b, "%s(no auth lines)\n", indent)
	}
	for _, l := range lines {
		typ := "auth"
		if l.Dash {
			typ = "-auth"
		}
		mark := "  "
		if l.IsTOTP() {
			mark = "=>"
		}
		fmt.Fprintf(b, "%s%s %-5s %-32s %s", indent, mark, typ, token.Clean(l.Control), token.Clean(l.Module))
		for _, a := range l.Args {
			fmt.Fprintf(b, " %s", token.Clean(a))
		}
		fmt.Fprintf(b, "   (%s)\n", token.Clean(l.Where()))
		if l.Sub != nil {
			writeLines(b, l.Sub, indent+"     ")
		}
	}
}

// ref is one level of the path to a line: the stack (or substack) and the line's index in it.
type ref struct {
	lines []*PAMLine
	i     int
}

func findTOTP(lines []*PAMLine, parents []ref, found *[][]ref) {
	for i, l := range lines {
		path := append(append([]ref(nil), parents...), ref{lines, i})
		if l.IsTOTP() {
			*found = append(*found, path)
		}
		if l.Sub != nil {
			findTOTP(l.Sub, path, found)
		}
	}
}

// failValues are the results pam_totp.so returns when it denies.
var failValues = []string{"auth_err", "maxtries", "authinfo_unavail", "system_err", "user_unknown"}

// CheckStack reports whether pam_totp.so is on the auth stack, whether its control makes a failed
// code deny, whether an earlier line can skip it on success (a "sufficient" line, a done or a jump
// over it), and whether the module file exists in one of moduleDirs.
func CheckStack(s *Stack, moduleDirs []string) []Finding {
	r := &Report{}
	for _, p := range s.Problems {
		r.add(Warn, "%s", p)
	}
	var found [][]ref
	findTOTP(s.Lines, nil, &found)
	if len(found) == 0 {
		r.add(Fail, "%s is not on the auth stack of %s: logins through %s are not asked for a code",
			ModuleName, token.Clean(s.Service), token.Clean(s.Service))
		return r.Findings
	}
	for _, path := range found {
		last := path[len(path)-1]
		l := last.lines[last.i]
		r.add(OK, "%s is on the auth stack of %s at %s, control %s", ModuleName, token.Clean(s.Service), token.Clean(l.Where()), token.Clean(l.Control))
		checkControl(r, l, last)
		for _, lvl := range path {
			for j := 0; j < lvl.i; j++ {
				checkSkip(r, lvl.lines[j], j, lvl.i, l)
			}
		}
		checkModuleFile(r, l, moduleDirs)
	}
	return r.Findings
}

func checkControl(r *Report, l *PAMLine, at ref) {
	if l.Dash {
		r.add(Warn, "%s: the line starts with '-': if %s cannot be loaded PAM skips it without a word; write \"auth\"",
			token.Clean(l.Where()), ModuleName)
	}
	switch l.Control {
	case "required", "requisite":
	case "sufficient", "optional":
		r.add(Warn, "%s: control %s: a wrong code does not deny the login; use required or requisite", token.Clean(l.Where()), l.Control)
	default:
		for _, v := range failValues {
			if a := l.action(v); a == "ignore" || a == "reset" {
				r.add(Warn, "%s: control %s: a %s result of %s is ignored, so the login can pass without a code; use required or requisite",
					token.Clean(l.Where()), token.Clean(l.Control), v, ModuleName)
				break
			}
		}
	}
	if a := l.action("success"); a == "done" && at.i+1 < len(at.lines) {
		next := at.lines[at.i+1]
		r.add(Warn, "%s: control %s: a verified code ends the stack, so %s and the lines after it never run",
			token.Clean(l.Where()), token.Clean(l.Control), token.Clean(next.Module))
	}
}

// checkSkip warns when line l (index j) can skip the pam_totp line at index t of the same stack.
func checkSkip(r *Report, l *PAMLine, j, t int, totpLine *PAMLine) {
	for _, v := range []string{"success", "new_authtok_reqd"} {
		a := l.action(v)
		if a == "done" {
			r.add(Warn, "%s: \"auth %s %s\": when %s succeeds the stack ends there and %s (%s) never asks for a code; "+
				"move the line after %s or make it required",
				token.Clean(l.Where()), token.Clean(l.Control), token.Clean(l.Module), token.Clean(filepath.Base(l.Module)), ModuleName,
				token.Clean(totpLine.Where()), ModuleName)
			return
		}
		if n, err := strconv.Atoi(a); err == nil && j+n >= t {
			r.add(Warn, "%s: \"auth %s %s\": when %s succeeds PAM jumps over %s (%s) and no code is asked for; "+
				"exempt users in pam_totp.conf instead (exempt_users, exempt_groups, exempt_networks)",
				token.Clean(l.Where()), token.Clean(l.Control), token.Clean(l.Module), token.Clean(filepath.Base(l.Module)), ModuleName,
				token.Clean(totpLine.Where()))
			return
		}
	}
}

func checkModuleFile(r *Report, l *PAMLine, dirs []string) {
	if filepath.IsAbs(l.Module) {
		if st, err := os.Stat(l.Module); err != nil || !st.Mode().IsRegular() {
			r.add(Fail, "%s: module file %s does not exist", token.Clean(l.Where()), token.Clean(l.Module))
			return
		}
		r.add(OK, "module file %s exists", token.Clean(l.Module))
		return
	}
	for _, d := range dirs {
		p := filepath.Join(d, l.Module)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			r.add(OK, "module file %s exists", token.Clean(p))
			return
		}
	}
	r.add(Fail, "%s: module file %s is not in any PAM module directory (%s)", token.Clean(l.Where()), token.Clean(l.Module),
		strings.Join(dirs, ", "))
}

// Style is the kind of a PAM conversation message.
type Style int

// Conversation message styles.
const (
	PromptEchoOff Style = iota + 1
	PromptEchoOn
	ErrorMsg
	TextInfo
)

// TxRequest describes one PAM transaction for Transact.
type TxRequest struct {
	Service string
	User    string
	// ConfDir is the directory of service files; "" means the system's (/etc/pam.d).
	ConfDir string
	// RHost, when set, becomes PAM_RHOST.
	RHost string
}

// Transact runs pam_authenticate for req with conv as the conversation. It is the one piece that
// needs libpam, so it lives in the command (cgo); tests pass a fake.
type Transact func(req TxRequest, conv func(Style, string) (string, error)) error

// errNoAnswer is what the doctor's conversation returns instead of answering a prompt.
var errNoAnswer = errors.New("doctor does not answer prompts")

// DoctorOptions say what Doctor checks.
type DoctorOptions struct {
	PAMDir  string // DefaultPAMDir when empty
	Service string // "sshd" when empty
	// User is the user of the PAM transaction; empty means the first user with an active token,
	// or root.
	User  string
	RHost string
	// ConfigPath and Helper are checked unless the pam_totp.so line names others (config=,
	// helper=).
	ConfigPath string
	Helper     string
	ModuleDirs []string
	// Transact runs the real PAM transaction; nil skips it.
	Transact Transact
	// Sync asks totp-syncd over the system bus for its status; nil skips the check. Its error is
	// a sentence saying whether the bus or the daemon is missing.
	Sync func() error
}

// Doctor checks a node: (a) the PAM stack of a service, (c) ownership and modes of the config,
// the helper, the store directory and its databases, and (b) a real PAM transaction that must
// reach pam_totp's code prompt. The prompt is never answered (the module then reports "no
// answer", which is not counted as a failed code), and neither is any other module's prompt, so
// a doctor run cannot count a failed password either.
func Doctor(o DoctorOptions) *Report {
	if o.PAMDir == "" {
		o.PAMDir = DefaultPAMDir
	}
	if o.Service == "" {
		o.Service = "sshd"
	}
	if o.ModuleDirs == nil {
		o.ModuleDirs = DefaultModuleDirs
	}
	r := &Report{}
	var totpLine *PAMLine
	s, err := ReadStack(o.PAMDir, o.Service)
	if err != nil {
		r.add(Fail, "PAM service %s: %v", token.Clean(o.Service), err)
	} else {
		r.Stack = s
		r.Findings = append(r.Findings, CheckStack(s, o.ModuleDirs)...)
		var found [][]ref
		findTOTP(s.Lines, nil, &found)
		if len(found) > 0 {
			last := found[0][len(found[0])-1]
			totpLine = last.lines[last.i]
		}
	}

	cfgPath, helper, policyArg := o.ConfigPath, o.Helper, ""
	if totpLine != nil {
		if v, ok := totpLine.Arg("config"); ok {
			cfgPath = v
		}
		if v, ok := totpLine.Arg("helper"); ok {
			helper = v
		}
		policyArg, _ = totpLine.Arg("policy")
	}
	if cfgPath == "" {
		cfgPath = paths.NodeConfig()
	}
	if helper == "" {
		helper = paths.Helper()
	}
	cfg := checkConfig(r, cfgPath)
	checkHelper(r, helper)
	socket := paths.VerifySocket()
	if totpLine != nil {
		if v, ok := totpLine.Arg("socket"); ok {
			socket = v
		}
	}
	checkVerifier(r, socket)
	user := o.User
	if cfg != nil {
		if u := checkStore(r, cfg); user == "" {
			user = u
		}
	}
	if o.Sync != nil {
		checkSync(r, o.Sync, cfg)
	}
	if cfg != nil {
		checkClaims(r, cfg, socket)
	}
	if user == "" {
		user = "root"
	}
	if o.Transact == nil || totpLine == nil || cfg == nil {
		return r
	}
	pol, err := cfg.For(o.Service, policyArg)
	if err != nil {
		r.add(Fail, "pam_totp.so policy=%s: %v", token.Clean(policyArg), err)
		return r
	}
	prompts := []string{pol.Prompt}
	if pol.PasswordAndCode && pol.Prompt == config.Default().Prompt {
		prompts = append(prompts, "Password and verification code: ")
	}
	req := TxRequest{Service: o.Service, User: user, RHost: o.RHost}
	if o.PAMDir != DefaultPAMDir {
		req.ConfDir = o.PAMDir
	}
	tx := runTx(o.Transact, req, prompts)
	switch {
	case tx.asked:
		r.add(OK, "pam_totp asked for a code: a PAM transaction of %s for %s reached the prompt %q "+
			"(not answered, so no failure was counted)", token.Clean(o.Service), token.Clean(user), token.Clean(tx.prompt))
		return r
	case tx.err == nil:
		r.add(Fail, "a PAM transaction of %s for %s succeeded without asking for a code%s",
			token.Clean(o.Service), token.Clean(user), tx.said())
		return r
	case len(tx.other) > 0:
		r.add(Warn, "a PAM transaction of %s for %s ended (%v) without pam_totp asking for a code; another "+
			"module asked %q (doctor answers no prompt, so a module before pam_totp may have ended the stack)%s",
			token.Clean(o.Service), token.Clean(user), tx.err, token.Clean(tx.other[0]), tx.said())
	default:
		// Another module (pam_nologin, pam_access, faillock...) or pam_totp itself denied: running
		// pam_totp on its own tells which.
		r.add(Warn, "a PAM transaction of %s for %s ended (%v) without pam_totp asking for a code%s",
			token.Clean(o.Service), token.Clean(user), tx.err, tx.said())
	}
	// Try pam_totp.so on its own, with the same arguments, in a private service directory.
	isolated(r, o.Transact, req, totpLine, prompts)
	return r
}

type txResult struct {
	asked    bool
	prompt   string
	other    []string
	messages []string
	err      error
}

func (t *txResult) said() string {
	if len(t.messages) == 0 {
		return ""
	}
	return "; the modules said: " + strings.Join(t.messages, " / ")
}

func runTx(transact Transact, req TxRequest, prompts []string) *txResult {
	res := &txResult{}
	res.err = transact(req, func(st Style, msg string) (string, error) {
		switch st {
		case PromptEchoOff, PromptEchoOn:
			for _, p := range prompts {
				if msg == p {
					res.asked, res.prompt = true, msg
					return "", errNoAnswer
				}
			}
			res.other = append(res.other, msg)
			return "", errNoAnswer
		default:
			res.messages = append(res.messages, token.Clean(strings.TrimSpace(msg)))
			return "", nil
		}
	})
	return res
}

func isolated(r *Report, transact Transact, req TxRequest, l *PAMLine, prompts []string) {
	dir, err := os.MkdirTemp("", "pam-totp-doctor-")
	if err != nil {
		r.add(Fail, "temporary PAM directory: %v", err)
		return
	}
	defer os.RemoveAll(dir)
	var b strings.Builder
	b.WriteString("auth required " + l.Module)
	for _, a := range l.Args {
		if strings.ContainsAny(a, " \t") {
			a = "[" + strings.ReplaceAll(a, "]", "\\]") + "]"
		}
		b.WriteString(" " + a)
	}
	b.WriteString("\n")
	if err := os.WriteFile(filepath.Join(dir, req.Service), []byte(b.String()), 0o600); err != nil {
		r.add(Fail, "temporary PAM service: %v", err)
		return
	}
	req.ConfDir = dir
	tx := runTx(transact, req, prompts)
	switch {
	case tx.asked:
		r.add(OK, "pam_totp asked for a code when run on its own (module, helper, config and store work)")
	case tx.err == nil:
		r.add(Warn, "pam_totp on its own let %s in without a code (mode off, enrollment grace or an exemption?)%s",
			token.Clean(req.User), tx.said())
	default:
		r.add(Fail, "pam_totp on its own did not ask %s for a code (%v)%s", token.Clean(req.User), tx.err, tx.said())
	}
}

func checkConfig(r *Report, path string) *config.Config {
	f, err := securefile.Open(path, os.O_RDONLY, 0, securefile.Rule{Forbidden: 0o022, What: "config"})
	if err != nil {
		r.add(Fail, "config: %v", err)
		return nil
	}
	f.Close()
	r.add(OK, "config %s: owned by root, not writable by others", token.Clean(path))
	cfg, warnings, err := config.Load(path)
	for _, w := range warnings {
		r.add(Warn, "config %s: %s", token.Clean(path), token.Clean(w))
	}
	if err != nil {
		r.add(Fail, "%v", err)
		return nil
	}
	r.add(OK, "config %s: valid", token.Clean(path))
	return cfg
}

func checkHelper(r *Report, path string) {
	f, err := securefile.Open(path, os.O_RDONLY, 0, securefile.Rule{Forbidden: 0o022, What: "helper"})
	if err != nil {
		r.add(Fail, "helper: %v", err)
		return
	}
	st, err := f.Stat()
	f.Close()
	switch {
	case err != nil:
		r.add(Fail, "helper %s: %v", token.Clean(path), err)
		return
	case st.Mode().Perm()&0o100 == 0:
		r.add(Fail, "helper %s: not executable by its owner", token.Clean(path))
		return
	}
	if err := securefile.CheckDir(filepath.Dir(path), securefile.Rule{Forbidden: 0o022, What: "helper directory"}); err != nil {
		r.add(Fail, "%v", err)
		return
	}
	r.add(OK, "helper %s: owned by root, not writable by others, nor is its directory", token.Clean(path))
}

// checkVerifier says which way logins take: the resident verifier on socket (the module's
// socket= argument) when it is root-only and accepts a connection, else the helper.
func checkVerifier(r *Report, socket string) {
	if socket == "none" {
		r.add(OK, "logins exec the helper (pam_totp.so socket=none)")
		return
	}
	if err := rootsock.CheckPath(socket); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			r.add(Warn, "no resident verifier at %s: every login starts the helper (slower); totp-syncd serves it "+
				"([sync] verify_socket): systemctl enable --now totp-syncd", token.Clean(socket))
			return
		}
		r.add(Fail, "resident verifier %s: %v: pam_totp.so will not use it and starts the helper for every login",
			token.Clean(socket), token.Clean(err.Error()))
		return
	}
	conn, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		r.add(Warn, "resident verifier %s does not accept connections (%v): every login starts the helper",
			token.Clean(socket), token.Clean(err.Error()))
		return
	}
	conn.Close()
	r.add(OK, "logins go through the resident verifier at %s (the helper if it does not answer)", token.Clean(socket))
}

// checkClaims says how this node's logins keep a code single-use across the cluster, and warns
// when logins cannot claim (no resident verifier: the helper decides every login offline) or
// when login events pile up for a registry that does not take them. socket is pam_totp.so's
// socket= ("none": no resident verifier).
func checkClaims(r *Report, cfg *config.Config, socket string) {
	if len(cfg.Sync.Registry) == 0 {
		return
	}
	if socket == "none" || cfg.VerifySocketPath() == "" {
		if cfg.Sync.OfflineClaims == config.OfflineDeny {
			r.add(Fail, "logins here never reach the resident verifier (socket=none or [sync] verify_socket = \"none\"), and the helper cannot claim codes at the registry: with offline_claims = \"deny\" every code is refused")
		} else {
			r.add(Warn, "logins here never reach the resident verifier (socket=none or [sync] verify_socket = \"none\"): the helper cannot claim codes at the registry, so a code is single-use on this node only until totp-syncd reports it, and every login logs that")
		}
	}
	how := "accepts it on this node's record alone and reports the claim later (offline_claims = \"local\")"
	if cfg.Sync.OfflineClaims == config.OfflineDeny {
		how = "refuses the code (offline_claims = \"deny\")"
	}
	r.add(OK, "each accepted code is claimed at the registry first (claim_timeout %s); without an answer a login %s; logins through the helper cannot claim",
		cfg.Sync.ClaimTimeout, how)
	n, err := nodesync.Unreported(cfg)
	switch {
	case err != nil:
		r.add(Warn, "state.db: %v: cannot count the login events waiting for the registry", token.Clean(err.Error()))
	case n > 100:
		r.add(Warn, "%d login events (claims made offline, wrong codes) wait for the registry: is totp-syncd connected? (totp-syncd status)", n)
	}
}

// checkStore checks the store directory and databases and returns the first user with an active
// token ("" when none).
// checkSync reports whether totp-syncd answers on the system bus. Without it users cannot enroll
// (`totp enroll`, enrollment at login); on a node that follows a registry, tokens do not arrive
// either, so it fails there and warns on a standalone node.
func checkSync(r *Report, status func() error, cfg *config.Config) {
	if err := status(); err != nil {
		st, why := Warn, "users cannot enroll with `totp enroll`"
		if cfg != nil && len(cfg.Sync.Registry) > 0 {
			st, why = Fail, "this node gets no new or revoked tokens from the registry and users cannot enroll"
		}
		r.add(st, "%s: %s; start the system bus and the daemon: systemctl enable --now dbus totp-syncd",
			token.Clean(err.Error()), why)
		return
	}
	r.add(OK, "totp-syncd answers on the system bus (io.github.pamtotp.Sync1)")
}

func checkStore(r *Report, cfg *config.Config) string {
	dir := cfg.Store.Dir
	if err := securefile.CheckDir(dir, securefile.SecretDir); err != nil {
		r.add(Fail, "store directory: %v", err)
		return ""
	}
	r.add(OK, "store directory %s: owned by root, mode 0700 or stricter", token.Clean(dir))
	tokensPath := filepath.Join(dir, store.TokensFile)
	f, err := securefile.Open(tokensPath, os.O_RDONLY, 0, securefile.Rule{Forbidden: 0o077, What: store.TokensFile})
	if err != nil {
		r.add(Fail, "%s: %v (logins of users who need a code are denied)", store.TokensFile, err)
	} else {
		f.Close()
	}
	first := ""
	if err == nil {
		opts := store.Options{Dir: dir, Timeout: cfg.Store.OpenTimeout}
		users, tokens, active := 0, 0, 0
		err := store.NewTokens(opts).View(func(x *store.TokensTx) error {
			users = len(x.Users())
			return x.ForEachToken(func(t token.Token) error {
				tokens++
				if t.State == token.Active {
					active++
					if first == "" {
						first = t.User
					}
				}
				return nil
			})
		})
		if err != nil {
			r.add(Fail, "%s: %v", store.TokensFile, err)
		} else {
			r.add(OK, "%s: owned by root, mode 0600 or stricter, readable: %d users, %d tokens (%d active)",
				store.TokensFile, users, tokens, active)
		}
	}
	statePath := filepath.Join(dir, store.StateFile)
	if _, err := os.Lstat(statePath); errors.Is(err, fs.ErrNotExist) {
		r.add(OK, "%s: not created yet (the first login creates it)", store.StateFile)
		return first
	}
	f, err = securefile.Open(statePath, os.O_RDONLY, 0, securefile.Rule{Forbidden: 0o077, What: store.StateFile})
	if err != nil {
		r.add(Fail, "%s: %v (logins that need a code are denied)", store.StateFile, err)
		return first
	}
	f.Close()
	r.add(OK, "%s: owned by root, mode 0600 or stricter", store.StateFile)
	return first
}
