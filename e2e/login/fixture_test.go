//go:build linux

package login

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/backupcode"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// fastRate is a rate limit that never gets in the way of a test that does not test it.
const fastRate = `free_failures = 10
initial_backoff = "1s"
max_backoff = "2s"
lockout_after = 50`

// conf is a pam_totp.conf in parts: top-level policy keys, [rate_limit], [policy.*] sections.
type conf struct {
	Top         string // top-level keys
	Rate        string // body of [rate_limit]; fastRate when empty
	OpenTimeout string // store.open_timeout; "3s" when empty
	Sections    string // [policy.NAME] sections, verbatim
	// Verifier: the fixture's logins go to a standalone totp-syncd's resident verifier (its own
	// socket; the helper when it does not answer) instead of the helper.
	Verifier bool
	// Via: the fixture's logins go to the resident verifier of another fixture (made with
	// Verifier), so that many cases share one totp-syncd; the fixture shares its clock too. The
	// verifier reads the config each request names, so the cases stay apart in everything else.
	Via *fixture
	// Bus: the D-Bus address of the fixture's totp-syncd (enrollment at login needs its root
	// socket, which it serves only with a bus). With Bus a totp-syncd runs also without Verifier:
	// then its resident verifier listens but the module is not told about it (socket=none).
	Bus string
}

func (c conf) text(storeDir string) string {
	rate, timeout := c.Rate, c.OpenTimeout
	if rate == "" {
		rate = fastRate
	}
	if timeout == "" {
		timeout = "3s"
	}
	return fmt.Sprintf("%s\n\n[store]\ndir = %q\nopen_timeout = %q\n\n[rate_limit]\n%s\n\n%s\n",
		c.Top, storeDir, timeout, rate, c.Sections)
}

// fixture is one node as a login sees it: a store directory, a config, and a private PAM
// confdir with a service that runs pam_totp.so.
type fixture struct {
	t       *testing.T
	dir     string // private temporary directory (root 0700)
	store   string // store directory (root 0700)
	conf    string // config path (root 0644)
	pamDir  string // confdir for pam_start_confdir
	service string // default PAM service in pamDir
	user    string // default user of auth
	clock   *pamtest.Clock
	// helper is what the module execs: the testclock helper, or for a fixture whose logins go to
	// a resident verifier a tripwire that counts each run in fellBackFile, then execs it.
	helper string
	// verifySock is the resident verifier's socket the module uses (conf Verifier or Via), else "".
	verifySock string
	syncd      *exec.Cmd // the fixture's own totp-syncd, when it runs one
	syncdLog   string    // that totp-syncd's log (Via: the other fixture's)
}

// fellBackFile is where a fixture's tripwire helper counts its runs.
const fellBackFile = "helper-runs"

func newFixture(t *testing.T, user string, c conf) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{
		t: t, dir: dir, user: user,
		store:   filepath.Join(dir, "store"),
		conf:    filepath.Join(dir, "pam_totp.conf"),
		pamDir:  filepath.Join(dir, "pam.d"),
		service: "pamtotp-" + pamtest.RandName(6),
		helper:  helperBin,
	}
	var err error
	if c.Via != nil {
		f.clock = c.Via.clock
	} else if f.clock, err = pamtest.NewClock(dir); err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{f.store, 0o700}, {f.pamDir, 0o755}} {
		if err := os.Mkdir(d.path, d.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			t.Fatal(err)
		}
	}
	syncd := c.Verifier || c.Bus != ""
	if syncd {
		bus := c.Bus
		if bus == "" {
			bus = "unix:path=/nonexistent/pam-totp-test-bus"
		}
		sock := filepath.Join(dir, "run", "verify.sock")
		c.Sections += fmt.Sprintf("\n[sync]\nverify_socket = %q\nbus = %q\n", sock, bus)
		if c.Verifier {
			f.verifySock = sock
		}
	}
	if c.Via != nil {
		f.verifySock, f.syncdLog = c.Via.verifySock, c.Via.syncdLog
	}
	if f.verifySock != "" {
		f.helper = f.tripwire()
	}
	f.writeConfig(c)
	f.addService(f.service, "")
	// A node that has synced: tokens.db exists, with nobody's tokens yet.
	f.put()
	if syncd {
		startSyncd(t, f)
	}
	return f
}

// tripwire writes a helper that counts its runs in the fixture's fellBackFile and then execs the
// testclock helper: the module of a fixture whose logins go to a resident verifier runs it only
// when it fell back.
func (f *fixture) tripwire() string {
	f.t.Helper()
	path := filepath.Join(f.dir, "tripwire-helper")
	script := fmt.Sprintf("#!/bin/sh\necho fell back >>%s\nexec %s \"$@\"\n", filepath.Join(f.dir, fellBackFile), helperBin)
	writeFile(f.t, path, []byte(script), 0o755)
	return path
}

// fellBack is how many logins of the fixture went to the helper instead of its resident verifier.
func (f *fixture) fellBack() int {
	b, _ := os.ReadFile(filepath.Join(f.dir, fellBackFile))
	return strings.Count(string(b), "fell back")
}

// answered is how many logins the fixture's resident verifier answered so far (a Via fixture:
// all the logins of the fixtures that share it).
func (f *fixture) answered() int {
	b, _ := os.ReadFile(f.syncdLog)
	return strings.Count(string(b), "login answered by the resident verifier")
}

func (f *fixture) writeConfig(c conf) {
	f.t.Helper()
	if err := os.WriteFile(f.conf, []byte(c.text(f.store)), 0o644); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Chmod(f.conf, 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// moduleLine is the auth line for pam_totp.so with absolute paths and the fixture's clock;
// extra adds arguments.
func (f *fixture) moduleLine(extra string) string {
	// socket=none: the fixture's logins exec the helper, unless it runs a resident verifier. Its
	// connect_ms is the longest the module takes: a fallback fails the test (wantAnswered), and on
	// a loaded machine (make test runs packages side by side) a first frame may take a while.
	socket := "socket=none"
	if f.verifySock != "" {
		socket = "socket=" + f.verifySock + " connect_ms=5000"
	}
	line := fmt.Sprintf("auth required %s helper=%s config=%s timeout=10 %s %s",
		moduleSO, f.helper, f.conf, socket, f.clock.ModuleArg())
	if extra != "" {
		line += " " + extra
	}
	return line
}

// addService writes a PAM service file into the fixture's confdir: pam_totp.so with extra
// arguments, then the lines in more.
func (f *fixture) addService(name, extra string, more ...string) {
	f.t.Helper()
	lines := append([]string{f.moduleLine(extra)}, more...)
	lines = append(lines, "account required pam_permit.so")
	if err := os.WriteFile(filepath.Join(f.pamDir, name), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) opts() store.Options {
	return store.Options{Dir: f.store, Timeout: 5 * time.Second}
}

// newToken returns an active token of user with a fresh random secret.
func newToken(user, id string, alg totp.Algorithm, digits int) token.Token {
	secret := make([]byte, 20)
	if alg == totp.SHA256 {
		secret = make([]byte, 32)
	} else if alg == totp.SHA512 {
		secret = make([]byte, 64)
	}
	if _, err := rand.Read(secret); err != nil {
		panic(err)
	}
	return token.Token{
		User: user, ID: id, Name: id, Algorithm: alg, Digits: digits, Period: 30,
		Secret: secret, State: token.Active, Created: time.Now().UTC(),
	}
}

// put writes tokens into tokens.db, as totp-syncd or totp-admin would.
func (f *fixture) put(toks ...token.Token) {
	f.t.Helper()
	err := store.NewTokens(f.opts()).Update(func(x *store.TokensTx) error {
		for _, tok := range toks {
			if err := x.PutToken(tok); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

// token provisions and returns one active SHA1/6-digit token of the fixture's user.
func (f *fixture) token() token.Token {
	f.t.Helper()
	tok := newToken(f.user, "phone", totp.SHA1, 6)
	f.put(tok)
	return tok
}

// backupCodes provisions n backup codes of the fixture's user and returns them as shown.
func (f *fixture) backupCodes(n int) []string {
	f.t.Helper()
	plain, recs, err := backupcode.New(rand.Reader, f.user, n, time.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	err = store.NewTokens(f.opts()).Update(func(x *store.TokensTx) error {
		return x.ReplaceBackupCodes(f.user, recs)
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return plain
}

// code is the token's code of a time step.
func code(tok token.Token, step uint64) string {
	return totp.Code(tok.Secret, tok.Params(), step)
}

// nowStep is the time step of a token that the fixture's helper is in.
func (f *fixture) nowStep(tok token.Token) uint64 {
	return f.clock.Step(tok.Period)
}

// auth runs a transaction of the fixture's default service and user with the given answers.
func (f *fixture) auth(answers ...string) pamtest.Result {
	return f.authWith(pamtest.TxSpec{Answers: answers})
}

// authWith fills in the fixture's defaults and runs the transaction.
func (f *fixture) authWith(s pamtest.TxSpec) pamtest.Result {
	if s.Service == "" {
		s.Service = f.service
	}
	if s.User == "" {
		s.User = f.user
	}
	if s.ConfDir == "" {
		s.ConfDir = f.pamDir
	}
	return pamtest.Run(s)
}

// ways are the two ways a login reaches a verifier, for tests that run both.
var ways = []struct {
	name     string
	verifier bool
}{{"helper", false}, {"resident verifier", true}}

// wantAnswered checks, when the test ends, that f's resident verifier (if it has one) answered
// its logins: none fell back to the helper (the tripwire never ran), and a totp-syncd of the
// fixture's own answered some (a shared one is checked by the fixture that runs it). A service
// of the fixture that is meant to use the helper names it with helper=helperBin.
func (f *fixture) wantAnswered(t *testing.T) {
	if f.verifySock == "" {
		return
	}
	t.Cleanup(func() {
		if f.syncd != nil && f.answered() == 0 {
			t.Errorf("no login went through the resident verifier at %s", f.verifySock)
		}
		if n := f.fellBack(); n > 0 {
			t.Errorf("%d logins fell back to the helper instead of the resident verifier at %s", n, f.verifySock)
		}
	})
}
