//go:build linux

package login

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/busapi/busapitest"
	"github.com/pam-totp/pam-totp/pkg/qrterm/qrtermtest"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// TestEnrollAtLoginOverSSH: a user in enrollment grace without a token logs in through a real
// sshd with enroll_at_login; keyboard-interactive brings the QR code and the key (PAM text from
// the helper, which asked the node's standalone totp-syncd on a private bus), the client answers
// the first code, is shown the backup codes with a last prompt, and the login succeeds with the
// token active. The QR code as the client
// received it scans to the key. The next login asks for a code as usual. Once through the
// helper, once through the same totp-syncd's resident verifier (which then asks itself, on its
// root socket).
func TestEnrollAtLoginOverSSH(t *testing.T) {
	for _, w := range ways {
		t.Run(w.name, func(t *testing.T) { testEnrollAtLoginOverSSH(t, w.verifier) })
	}
}

func testEnrollAtLoginOverSSH(t *testing.T, verifier bool) {
	needRoot(t)
	needTools(t, "/usr/sbin/sshd", "ssh-keygen")
	t.Parallel()
	bus := busapitest.StartBus(t)
	user := pamtest.AddUser(t, userPrefix)
	grace := time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339)
	f := newFixture(t, user, conf{
		Top:      fmt.Sprintf("mode = \"grace\"\ngrace_until = %s\nenroll_at_login = true", grace),
		Bus:      bus.Addr,
		Verifier: verifier,
	})
	f.wantAnswered(t)
	d := startSSHD(t, f)
	_, key := d.clientKey(t, user, "a")
	f.clock.NextStep(t, 30)

	// The client: everything the server shows (instruction and prompts) is kept; the enrollment
	// prompt is answered with the current code of the key shown before it.
	var (
		mu    sync.Mutex
		shown []string
		k     totp.Key
		step  uint64
	)
	cfg := &ssh.ClientConfig{
		User: user,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(key), ssh.KeyboardInteractive(func(_, instruction string, qs []string, _ []bool) ([]string, error) {
			mu.Lock()
			defer mu.Unlock()
			shown = append(shown, instruction)
			shown = append(shown, qs...)
			answers := make([]string, len(qs))
			for i, q := range qs {
				if strings.Contains(q, "Press Enter once the backup codes are stored") {
					continue // sshd shows PAM text only with a prompt: this one carries the codes
				}
				all := strings.Join(shown, "\n")
				_, after, ok := strings.Cut(all, "Key (base32): ")
				if !ok || !strings.Contains(q, "finish enrollment") {
					return nil, fmt.Errorf("unexpected question %q", q)
				}
				line, _, _ := strings.Cut(after, "\n")
				secret, err := totp.DecodeSecret(strings.ReplaceAll(line, " ", ""))
				if err != nil {
					return nil, err
				}
				k = totp.Key{Secret: secret, Params: totp.DefaultParams}
				step = f.clock.Step(k.Params.Period)
				answers[i] = totp.Code(k.Secret, k.Params, step)
			}
			return answers, nil
		})},
		HostKeyCallback: ssh.FixedHostKey(d.hostKey),
		Timeout:         20 * time.Second,
	}
	c, err := ssh.Dial("tcp", d.addr, cfg)
	if err != nil {
		t.Fatalf("ssh login that enrolls: %v\nshown:\n%s", err, strings.Join(shown, "\n"))
	}
	c.Close()
	text := strings.Join(shown, "\n")
	for _, want := range []string{"becomes mandatory", "Key (base32): ", "enrolled and active", "Backup codes"} {
		if !strings.Contains(text, want) {
			t.Errorf("the client was not shown %q:\n%s", want, text)
		}
	}
	qrtermtest.SkipWithoutZbar(t)
	uri, err := qrtermtest.Decode(t, text)
	if err != nil {
		t.Fatalf("the QR code the ssh client got does not scan: %v", err)
	}
	if got, err := totp.ParseURI(uri); err != nil || string(got.Secret) != string(k.Secret) || got.Account != user {
		t.Errorf("the QR code holds %v (%v), want the key shown for %s", got.Account, err, user)
	}
	var toks []token.Token
	if err := store.NewTokens(f.opts()).View(func(x *store.TokensTx) error {
		toks, err = x.UserTokens(user)
		return err
	}); err != nil || len(toks) != 1 || toks[0].State != token.Active {
		t.Fatalf("tokens.db holds %+v (%v), want one active token", toks, err)
	}
	// The next login: the usual prompt, the next code.
	qs, err := d.login(user, key, totp.Code(k.Secret, k.Params, step+1))
	if err != nil || len(qs) != 1 || !strings.Contains(qs[0], "Verification code:") {
		t.Errorf("next ssh login: questions %q, err %v; want the code prompt and success", qs, err)
	}
}

// startSyncd runs build/totp-syncd standalone on f's config until the test ends.
func startSyncd(t *testing.T, f *fixture) {
	t.Helper()
	logPath := filepath.Join(f.dir, "syncd.log")
	f.syncdLog = logPath
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(syncdBin, "--config", f.conf, "--debug")
	cmd.Env = append(os.Environ(), f.clock.Env())
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.syncd = cmd
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("totp-syncd log:\n%s", b)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, _ := os.ReadFile(logPath); strings.Contains(string(b), "starting standalone") &&
			(f.verifySock == "" || strings.Contains(string(b), "resident verifier")) {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("totp-syncd did not start:\n%s", b)
		}
	}
}
