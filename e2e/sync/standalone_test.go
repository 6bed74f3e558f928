//go:build linux

package sync

import (
	"bytes"
	"fmt"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msteinert/pam/v2"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/busapi/busapitest"
	"github.com/pam-totp/pam-totp/pkg/qrterm/qrtermtest"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// standaloneNode is a node without a registry: totp-syncd is its enrollment authority, on a
// private bus, and pam_totp.so reads its tokens.db.
type standaloneNode struct {
	*node
	bus     *busapitest.Bus
	totpBin string
}

// newStandalone writes a standalone node's config (extra is added at the top level, for
// policy keys) and starts its totp-syncd on a private bus.
func newStandalone(t *testing.T, extra string) *standaloneNode {
	t.Helper()
	bus := busapitest.StartBus(t) // skips without dbus-daemon
	root, err := pamtest.Root()
	if err != nil {
		t.Fatal(err)
	}
	totpBin := filepath.Join(bus.Dir, "totp") // the bus's directory is reachable by the test users
	if err := pamtest.CopyFile(filepath.Join(root, "build", "totp"), totpBin, 0o755); err != nil {
		t.Fatalf("copy build/totp: %v", err)
	}
	n := newNode(t, nil, nodeOptions{Policy: extra, Bus: bus.Addr})
	n.waitBus()
	return &standaloneNode{node: n, bus: bus, totpBin: totpBin}
}

// user adds a local user and returns its name, uid and gid.
func (s *standaloneNode) user() (string, uint32, uint32) {
	s.t.Helper()
	name := pamtest.AddUser(s.t, userPrefix)
	u, err := user.Lookup(name)
	if err != nil {
		s.t.Fatal(err)
	}
	uid, gid := busapitest.IDs(u)
	return name, uid, gid
}

// userTokens reads the user's tokens from the node's tokens.db.
func (s *standaloneNode) userTokens(name string) []token.Token {
	s.t.Helper()
	var toks []token.Token
	if err := s.tokens().View(func(x *store.TokensTx) error {
		var err error
		toks, err = x.UserTokens(name)
		return err
	}); err != nil {
		s.t.Fatal(err)
	}
	return toks
}

// TestStandaloneSelfService: on a node without a registry, `totp enroll` (the real CLI, as the
// user) enrolls through the standalone totp-syncd into the node's own tokens.db, a libpam login
// with the token's next code succeeds at once, and a second token without a valid code is
// refused while one with a current code is accepted.
func TestStandaloneSelfService(t *testing.T) {
	needRoot(t)
	n := newStandalone(t, "")
	name, uid, gid := n.user()

	nextStep(t) // enrollment and the logins below stay within one time step
	e := runEnroll(t, n.totpBin, n.bus.Addr, uid, gid, "phone")
	text, backup := e.finish()
	if len(backup) == 0 {
		t.Errorf("no backup codes shown with the first token:\n%s", text)
	}
	toks := n.userTokens(name)
	if len(toks) != 1 || toks[0].State != token.Active || toks[0].Name != "phone" {
		t.Fatalf("tokens.db holds %+v, want one active token named phone", toks)
	}
	n.login(name, e.code).Want(t, "login with the code that finished enrollment (replay)", pam.ErrAuth, 1)
	n.login(name, totp.Code(e.secret, e.params, e.step+1)).Want(t, "login with the next code", pamtest.Success, 1)

	// A second token: a wrong proof is refused and nothing is written.
	out, code := runCLI(t, n.totpBin, n.bus.Addr, uid, gid, "999999\n", "enroll", "--name", "laptop")
	if code == 0 || !strings.Contains(out, "not accepted") {
		t.Fatalf("totp enroll --name laptop with a wrong proof = exit %d:\n%s\nwant a refusal", code, out)
	}
	if toks := n.userTokens(name); len(toks) != 1 {
		t.Fatalf("after a refused second enrollment tokens.db holds %d tokens, want 1", len(toks))
	}
	// A backup code proves possession: a pending second token is begun (and left pending when
	// the CLI gets no code, until it expires).
	out, _ = runCLI(t, n.totpBin, n.bus.Addr, uid, gid, backup[0]+"\n", "enroll", "--name", "laptop")
	if !strings.Contains(out, "New token") {
		t.Fatalf("totp enroll --name laptop with a backup code as proof:\n%s\nwant a new pending token", out)
	}
	if toks := n.userTokens(name); len(toks) != 2 {
		t.Fatalf("after a second enrollment begun with a backup code tokens.db holds %d tokens, want 2", len(toks))
	}
	out, code = runCLI(t, n.totpBin, n.bus.Addr, uid, gid, "", "list")
	if code != 0 || !strings.Contains(out, "phone") || !strings.Contains(out, "laptop") {
		t.Fatalf("totp list = exit %d:\n%s", code, out)
	}
	if strings.Contains(out, e.code) || strings.Contains(out, totp.EncodeSecret(e.secret)) {
		t.Errorf("totp list shows a secret or code:\n%s", out)
	}
	if log := n.readLog(); strings.Contains(log, totp.EncodeSecret(e.secret)) || strings.Contains(log, backup[0]) {
		t.Errorf("totp-syncd's log holds the secret or a backup code")
	}
}

// TestEnrollAtLogin: a user in enrollment grace without a token logs in through libpam; the
// helper asks the standalone totp-syncd for a pending token over the bus, shows the QR code and
// the key as PAM text, takes the first code at a prompt, and the login succeeds with the token
// active. The next login asks for a code as usual. With totp-syncd stopped, the login goes on
// under grace without a prompt.
func TestEnrollAtLogin(t *testing.T) {
	needRoot(t)
	grace := time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339)
	n := newStandalone(t, "mode = \"grace\"\ngrace_until = "+grace+"\nenroll_at_login = true")
	name, _, _ := n.user()

	nextStep(t)
	le := &loginEnroller{}
	res := pamtest.Run(pamtest.TxSpec{Service: n.service, User: name, ConfDir: n.pamDir, Timeout: 15 * time.Second,
		Respond: le.respond})
	res.Want(t, "login that enrolls", pamtest.Success, 2) // the code, then Enter after the backup codes
	if !pamtest.AnyContains(res.Infos, "▀") && !pamtest.AnyContains(res.Infos, "▄") {
		t.Errorf("no QR code among the messages: %q", res.Infos)
	}
	res.WantInfo(t, "login that enrolls", "enrolled and active")
	res.WantInfo(t, "login that enrolls", "Backup codes")
	t.Run("QR code scans", func(t *testing.T) {
		// PAM text carries no colour escapes: the code must scan as a dark terminal shows it.
		qrtermtest.SkipWithoutZbar(t)
		uri, err := qrtermtest.Decode(t, strings.Join(res.Infos, "\n"))
		if err != nil {
			t.Fatalf("zbarimg of the QR code among the messages: %v", err)
		}
		k, err := totp.ParseURI(uri)
		if err != nil {
			t.Fatalf("ParseURI(scanned QR code) = %v", err)
		}
		if !bytes.Equal(k.Secret, le.key.Secret) {
			t.Errorf("the QR code's secret differs from the key shown as text")
		}
	})
	toks := n.userTokens(name)
	if len(toks) != 1 || toks[0].State != token.Active {
		t.Fatalf("after enrolling at login tokens.db holds %+v, want one active token", toks)
	}
	if !n.logHas("by=root") {
		t.Errorf("totp-syncd's log does not say root enrolled on the user's behalf")
	}
	if log := n.readLog(); strings.Contains(log, le.typed) || strings.Contains(log, totp.EncodeSecret(le.key.Secret)) {
		t.Errorf("totp-syncd's log holds the code or the secret")
	}
	// The code that enrolled cannot log in again; the next one can, through the usual prompt.
	n.login(name, le.typed).Want(t, "login with the enrolling code (replay)", pam.ErrAuth, 1)
	n.login(name, totp.Code(le.key.Secret, le.key.Params, le.step+1)).Want(t, "next login", pamtest.Success, 1)

	// The daemon down: another user in grace gets in without a prompt, told to enroll.
	other, _, _ := n.user()
	n.proc.kill()
	start := time.Now()
	res = pamtest.Run(pamtest.TxSpec{Service: n.service, User: other, ConfDir: n.pamDir, Timeout: 15 * time.Second})
	res.Want(t, "login in grace with totp-syncd down", pamtest.Success, 0)
	res.WantInfo(t, "login in grace with totp-syncd down", "becomes mandatory")
	t.Logf("grace login with the daemon down took %v", time.Since(start).Round(time.Millisecond))
}

// loginEnroller answers the enrollment prompt of a login with the current code of the key that
// an info message showed ("Key (base32): ...").
type loginEnroller struct {
	key   totp.Key
	typed string
	step  uint64
}

func (l *loginEnroller) respond(prompt string, shown pamtest.Result) (string, error) {
	if strings.HasPrefix(prompt, "Press Enter") {
		return "", nil // after the backup codes
	}
	for _, info := range shown.Infos {
		if _, after, ok := strings.Cut(info, "Key (base32): "); ok {
			line, _, _ := strings.Cut(after, "\n")
			secret, err := totp.DecodeSecret(strings.ReplaceAll(line, " ", ""))
			if err != nil {
				return "", err
			}
			l.key = totp.Key{Secret: secret, Params: totp.DefaultParams}
		}
	}
	if l.key.Secret == nil {
		return "", fmt.Errorf("prompt %q before a key was shown", prompt)
	}
	l.step = clk.Step(l.key.Params.Period)
	l.typed = totp.Code(l.key.Secret, l.key.Params, l.step)
	return l.typed, nil
}
