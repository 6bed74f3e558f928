//go:build linux

package login

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/busapi/busapitest"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
)

// sshdServer is a real sshd on a loopback port whose PAM service runs pam_totp.so.
type sshdServer struct {
	addr    string
	port    int
	hostKey ssh.PublicKey
	keysDir string // AuthorizedKeysFile directory, one file per user
	dir     string // private files (keys)
	log     *busapitest.SyncBuffer
}

// startSSHD copies /usr/sbin/sshd to a unique name (sshd uses its program name as the PAM
// service), writes /etc/pam.d/<name> with pam_totp.so for f's config, and starts it in the
// foreground with publickey then keyboard-interactive (PAM) required.
func startSSHD(t *testing.T, f *fixture) *sshdServer {
	t.Helper()
	pub := publicDir(t)
	name := "pamtotp-sshd-" + pamtest.RandName(8)
	bin := filepath.Join(pub, name)
	if err := pamtest.CopyFile("/usr/sbin/sshd", bin, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &sshdServer{keysDir: filepath.Join(pub, "authorized_keys"), dir: f.dir, log: &busapitest.SyncBuffer{}}
	if err := os.Mkdir(d.keysDir, 0o755); err != nil {
		t.Fatal(err)
	}
	hostKey := filepath.Join(f.dir, "ssh_host_ed25519_key")
	d.hostKey = parsePublicKey(t, pamtest.Keygen(t, hostKey))

	writeSystemFile(t, "/etc/pam.d/"+name, strings.Join([]string{
		f.moduleLine("maxtries_as_autherr"), // as contrib/pam.d/sshd.* ship it
		"account required pam_unix.so",
		"session required pam_permit.so",
		"password required pam_deny.so",
	}, "\n")+"\n", 0o644)

	d.port = freePort(t)
	d.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(d.port))
	cfg := filepath.Join(f.dir, "sshd_config")
	writeFile(t, cfg, []byte(fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
UsePAM yes
KbdInteractiveAuthentication yes
PasswordAuthentication no
PubkeyAuthentication yes
AuthenticationMethods publickey,keyboard-interactive
ExposeAuthInfo yes
AuthorizedKeysFile %s/%%u
StrictModes no
UseDNS no
PermitRootLogin no
PrintMotd no
PrintLastLog no
MaxStartups 50
LogLevel VERBOSE
`, d.port, hostKey, filepath.Join(f.dir, "sshd.pid"), d.keysDir)), 0o644)

	if out, err := exec.Command(bin, "-t", "-f", cfg).CombinedOutput(); err != nil {
		t.Fatalf("%s -t: %v\n%s", name, err, out)
	}
	pamtest.StartSSHD(t, bin, cfg, d.addr, d.log)
	return d
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func parsePublicKey(t *testing.T, line string) ssh.PublicKey {
	t.Helper()
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// clientKey makes a key pair for user, authorizes it, and returns its private key path and signer.
func (d *sshdServer) clientKey(t *testing.T, user, name string) (string, ssh.Signer) {
	t.Helper()
	path := filepath.Join(d.dir, "id_"+user+"_"+name)
	line := pamtest.Keygen(t, path)
	f, err := os.OpenFile(filepath.Join(d.keysDir, user), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return path, signer
}

// login connects with golang.org/x/crypto/ssh (public key, then keyboard-interactive answering
// every question with answer) and runs `true`. It returns the questions the server asked.
func (d *sshdServer) login(user string, key ssh.Signer, answer string) ([]string, error) {
	var (
		mu        sync.Mutex
		questions []string
	)
	cfg := &ssh.ClientConfig{
		User: user,
		Auth: []ssh.AuthMethod{
			ssh.PublicKeys(key),
			ssh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
				mu.Lock()
				defer mu.Unlock()
				questions = append(questions, qs...)
				answers := make([]string, len(qs))
				for i := range answers {
					answers[i] = answer
				}
				return answers, nil
			}),
		},
		HostKeyCallback: ssh.FixedHostKey(d.hostKey),
		Timeout:         20 * time.Second,
	}
	asked := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), questions...)
	}
	c, err := ssh.Dial("tcp", d.addr, cfg)
	if err != nil {
		return asked(), err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return asked(), err
	}
	defer s.Close()
	return asked(), s.Run("true")
}

// TestSSHD logs in through a real sshd: publickey, then pam_totp over keyboard-interactive,
// with ssh_grace for the same user, address and key; once through the helper, once through a
// totp-syncd's resident verifier.
func TestSSHD(t *testing.T) {
	for _, w := range ways {
		t.Run(w.name, func(t *testing.T) { testSSHD(t, w.verifier) })
	}
}

func testSSHD(t *testing.T, verifier bool) {
	needRoot(t)
	needTools(t, "/usr/sbin/sshd", "ssh", "ssh-keygen")
	t.Parallel()
	goUser, sshUser := pamtest.AddUser(t, userPrefix), pamtest.AddUser(t, userPrefix)
	f := newFixture(t, goUser, conf{Top: `ssh_grace = "1h"`, Verifier: verifier})
	f.wantAnswered(t)
	d := startSSHD(t, f)

	t.Run("x/crypto/ssh", func(t *testing.T) {
		t.Parallel()
		tok := newToken(goUser, "phone", "SHA1", 6)
		f.put(tok)
		_, keyA := d.clientKey(t, goUser, "a")
		_, keyB := d.clientKey(t, goUser, "b")
		s := f.nowStep(tok)
		steps := []struct {
			what    string
			key     ssh.Signer
			answer  string
			ok      bool
			prompts int
		}{
			{"key A, wrong code", keyA, wrongCode(tok), false, 1},
			{"key A, good code", keyA, code(tok, s), true, 1},
			{"key A again (ssh_grace)", keyA, "", true, 0},
			{"key B, no answer", keyB, "", false, 1},
			{"key B, code", keyB, code(tok, s+1), true, 1},
			{"key B again (ssh_grace)", keyB, "", true, 0},
		}
		for _, st := range steps {
			qs, err := d.login(goUser, st.key, st.answer)
			if ok := err == nil; ok != st.ok {
				t.Errorf("ssh login (%s): err = %v, want success %v", st.what, err, st.ok)
			}
			if len(qs) != st.prompts {
				t.Errorf("ssh login (%s): questions %q, want %d", st.what, qs, st.prompts)
			} else if st.prompts == 1 && !strings.Contains(qs[0], "Verification code:") {
				t.Errorf("ssh login (%s): question %q, want the code prompt", st.what, qs[0])
			}
		}
	})

	t.Run("OpenSSH ssh", func(t *testing.T) {
		t.Parallel()
		tok := newToken(sshUser, "phone", "SHA1", 6)
		f.put(tok)
		keyA, _ := d.clientKey(t, sshUser, "a")
		keyB, _ := d.clientKey(t, sshUser, "b")
		s := f.nowStep(tok)
		steps := []struct {
			what   string
			key    string
			answer string // "" expects no prompt
			exit   int
		}{
			{"key B, wrong code", keyB, wrongCode(tok), 255},
			{"key A, good code", keyA, code(tok, s), 0},
			{"key A again (ssh_grace)", keyA, "", 0},
			{"key B, code", keyB, code(tok, s+1), 0},
		}
		for _, st := range steps {
			exit, screen, err := d.ssh(t, sshUser, st.key, st.answer)
			if err != nil {
				t.Errorf("ssh (%s): %v\n%s", st.what, err, screen)
				continue
			}
			if exit != st.exit {
				t.Errorf("ssh (%s) exit status = %d, want %d\n%s", st.what, exit, st.exit, screen)
			}
			if st.exit == 255 && !strings.Contains(screen, "Permission denied") {
				t.Errorf("ssh (%s) printed %q, want Permission denied", st.what, screen)
			}
		}
	})
}

// TestSSHDLockout: a locked-out user who connects with OpenSSH's client as it comes (no
// PreferredAuthentications, three prompts) is told why and refused; the client does not go on to
// ask for a password. Before, pam_totp returned PAM_MAXTRIES, sshd then turned
// keyboard-interactive off for the connection, and the client, left with no method, asked for
// "user@host's password:", which can never work. Through the helper and the resident verifier.
func TestSSHDLockout(t *testing.T) {
	for _, w := range ways {
		t.Run(w.name, func(t *testing.T) { testSSHDLockout(t, w.verifier) })
	}
}

func testSSHDLockout(t *testing.T, verifier bool) {
	needRoot(t)
	needTools(t, "/usr/sbin/sshd", "ssh", "ssh-keygen")
	t.Parallel()
	u := pamtest.AddUser(t, userPrefix)
	f := newFixture(t, u, conf{Verifier: verifier})
	f.wantAnswered(t)
	d := startSSHD(t, f)
	f.put(newToken(u, "phone", "SHA1", 6))
	key, _ := d.clientKey(t, u, "a")
	if err := store.NewState(f.opts()).Update(func(x *store.StateTx) error {
		return x.SetFailures(u, token.Failures{Count: 1000, Last: f.clock.Now()})
	}); err != nil {
		t.Fatal(err)
	}
	tm := d.sshTerminal(t, u, key) // the client as it comes; LogLevel INFO prints the server's messages
	i, _, err := tm.Expect(20*time.Second, "Permission denied", "password:")
	if err != nil || i != 0 {
		t.Fatalf("ssh as a locked-out user: matched %d, %v; want Permission denied and no password prompt\n%s", i, err, tm.Screen())
	}
	exit, err := tm.Wait(30 * time.Second)
	screen := tm.Screen()
	if err != nil || exit != 255 || !strings.Contains(screen, "two-factor login is locked for your account") ||
		strings.Contains(screen, "password:") {
		t.Errorf("ssh as a locked-out user: exit %d, %v; want 255, the lockout sentence and no password prompt\n%s", exit, err, screen)
	}
}

// sshTerminal starts OpenSSH's client on a pseudo-terminal against d as user with key, with the
// test's fixed options and opts, running "true".
func (d *sshdServer) sshTerminal(t *testing.T, user, key string, opts ...string) *pamtest.Terminal {
	t.Helper()
	args := append([]string{"-F", "/dev/null", "-p", strconv.Itoa(d.port), "-i", key,
		"-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=15"}, opts...)
	cmd := exec.Command("ssh", append(args, user+"@127.0.0.1", "true")...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + d.dir, "TERM=dumb", "LANG=C"}
	return pamtest.StartTerminal(t, cmd, -1)
}

// ssh runs OpenSSH's client on a pseudo-terminal against d and answers the code prompt with
// answer (or expects no prompt when answer is empty). It returns the exit status and the screen.
func (d *sshdServer) ssh(t *testing.T, user, key, answer string) (int, string, error) {
	t.Helper()
	tm := d.sshTerminal(t, user, key, "-o", "PreferredAuthentications=publickey,keyboard-interactive",
		"-o", "NumberOfPasswordPrompts=1", "-o", "LogLevel=ERROR")
	const promptText = "Verification code:"
	_, _, err := tm.Expect(20*time.Second, promptText)
	switch {
	case answer != "" && err != nil:
		return -1, tm.Screen(), err
	case answer != "":
		tm.Send(answer + "\r")
	case err == nil:
		return -1, tm.Screen(), errors.New("prompted for a code, want no prompt")
	}
	exit, err := tm.Wait(30 * time.Second)
	return exit, tm.Screen(), err
}
