//go:build linux

package portal

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/adminclient"
	"github.com/pam-totp/pam-totp/pkg/seal"
	"github.com/pam-totp/pam-totp/pkg/store"
)

// scope is the cluster of the node and of every user.
const scope = "hpc"

// tlsPair is a throwaway CA and one server certificate it issued for 127.0.0.1.
type tlsPair struct {
	caFile, certFile, keyFile string
	spki                      string // base64 SHA-256 of the server key's SubjectPublicKeyInfo (Chromium's pin)
}

// newTLS makes a CA and a server certificate for 127.0.0.1 in dir.
func newTLS(t *testing.T, dir string) tlsPair {
	t.Helper()
	ca := pamtest.NewCA(t, dir, "ca")
	p := tlsPair{caFile: ca.PEMFile}
	p.certFile, p.keyFile, p.spki = ca.ServerCertSPKI(t, dir, "tls")
	return p
}

// daemon is one started program whose output goes to a log file; it is killed when the test
// ends and its log shown when the test failed.
type daemon struct {
	name, log string
	cmd       *exec.Cmd
	done      chan struct{}
}

func startDaemon(t *testing.T, name, logFile, path string, args ...string) *daemon {
	t.Helper()
	f, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", clk.Env()}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	d := &daemon{name: name, log: logFile, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(d.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
			if len(lines) > 60 {
				lines = lines[len(lines)-60:]
			}
			t.Logf("%s log (%s):\n%s", name, logFile, strings.Join(lines, "\n"))
		}
	})
	return d
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// waitFor is pamtest.Eventually.
func waitFor(t *testing.T, d time.Duration, what string, cond func() (bool, error)) time.Duration {
	t.Helper()
	return pamtest.Eventually(t, d, what, cond)
}

func bg(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// registry is the totp-registry process with the portal on.
type registry struct {
	url   string // https://127.0.0.1:PORT
	tls   tlsPair
	admin *adminclient.Client
	proc  *daemon
}

// startRegistry starts totp-registry on port with TLS, a bbolt store, mail to mailHost, and the
// portal configured by portal (the [portal] section and its subsections), and waits until it answers.
func startRegistry(t *testing.T, port int, mailHost, portal string) *registry {
	t.Helper()
	dir := pamtest.PrivateDir(t)
	r := &registry{tls: newTLS(t, dir)}
	line, err := seal.GenerateKey(rand.Reader, "test")
	if err != nil {
		t.Fatal(err)
	}
	keyring := filepath.Join(dir, "registry.keyring")
	data := filepath.Join(dir, "data") // the store's directory: the keyring lives outside it
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	pamtest.WriteFile(t, keyring, line, 0o600)
	adminToken := "adm-" + pamtest.RandName(32)
	sum := sha256.Sum256([]byte(adminToken))
	pamtest.WriteFile(t, filepath.Join(dir, "admins"), "alice "+hex.EncodeToString(sum[:])+"\n", 0o600)
	r.url = fmt.Sprintf("https://127.0.0.1:%d", port)
	conf := filepath.Join(dir, "registry.conf")
	pamtest.WriteFile(t, conf, fmt.Sprintf(`listen = "127.0.0.1:%d"
tls_cert = %q
tls_key = %q
key_file = %q
admin_tokens_file = %q
issuer = "pam-totp test"
store = %q
history_keep = 100

[mail]
host = %q
from = "totp@registry.test"
contact = "the test helpdesk"
starttls = "never"
timeout = "5s"
retries = 0

%s`, port, r.tls.certFile, r.tls.keyFile, keyring, filepath.Join(dir, "admins"), filepath.Join(data, "registry.db"),
		mailHost, portal), 0o644)
	r.admin, err = adminclient.New(adminclient.Options{URL: r.url, Token: adminToken, CAFile: r.tls.caFile, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	r.proc = startDaemon(t, "totp-registry", filepath.Join(dir, "registry.log"), bin["totp-registry"], "--config", conf)
	waitFor(t, 20*time.Second, "totp-registry answers GET /v1/status", func() (bool, error) {
		if r.proc.exited() {
			t.Fatalf("totp-registry exited before it answered (config:\n%s)", portal)
		}
		c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := r.admin.Status(c)
		return err == nil, err
	})
	return r
}

func (r *registry) rev(t *testing.T) int64 {
	t.Helper()
	st, err := r.admin.Status(bg(t))
	if err != nil {
		t.Fatalf("registry status: %v", err)
	}
	return st.Revision
}

// state is what a refused request must leave as it was: the users' tokens (ids, names, states,
// last use) at the registry.
func (r *registry) state(t *testing.T, users ...string) string {
	t.Helper()
	var b strings.Builder
	for _, u := range users {
		toks, err := r.admin.Tokens(bg(t), u)
		if err != nil {
			t.Fatalf("tokens of %s: %v", u, err)
		}
		j, _ := json.Marshal(toks)
		fmt.Fprintf(&b, "%s: %s\n", u, j)
	}
	return b.String()
}

// node is one login node: a store, a pam_totp.conf following the registry, a PAM service running
// pam_totp.so, and totp-syncd.
type node struct {
	name, storeDir, pamDir, service string
	proc                            *daemon
}

func startNode(t *testing.T, r *registry) *node {
	t.Helper()
	dir := pamtest.PrivateDir(t)
	n := &node{name: "node-" + pamtest.RandName(6), storeDir: filepath.Join(dir, "store"),
		pamDir: filepath.Join(dir, "pam.d"), service: "pamtotp-" + pamtest.RandName(6)}
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{n.storeDir, 0o700}, {n.pamDir, 0o755}} {
		if err := os.Mkdir(d.path, d.mode); err != nil {
			t.Fatal(err)
		}
	}
	nn, err := r.admin.AddNode(bg(t), n.name, scope)
	if err != nil {
		t.Fatalf("AddNode(%s): %v", n.name, err)
	}
	cred := filepath.Join(dir, "node.credential")
	pamtest.WriteFile(t, cred, nn.Credential+"\n", 0o600)
	sock := filepath.Join(dir, "run", "verify.sock")
	conf := filepath.Join(dir, "pam_totp.conf")
	pamtest.WriteFile(t, conf, fmt.Sprintf(`issuer = "pam-totp test"

[store]
dir = %q
open_timeout = "3s"

[rate_limit]
free_failures = 10
initial_backoff = "1s"
max_backoff = "2s"
lockout_after = 50

[sync]
registry = [%q]
ca_file = %q
credential_file = %q
metrics_listen = ""
bus = ""
verify_socket = %q
`, n.storeDir, r.url, r.tls.caFile, cred, sock), 0o644)
	pamtest.WriteFile(t, filepath.Join(n.pamDir, n.service), fmt.Sprintf(
		"auth required %s helper=%s config=%s timeout=10 socket=%s connect_ms=300 %s\naccount required pam_permit.so\n",
		bin["pam_totp.so"], bin["pam-totp-helper"], conf, sock, clk.ModuleArg()), 0o644)
	n.proc = startDaemon(t, "totp-syncd "+n.name, filepath.Join(dir, "syncd.log"), bin["totp-syncd"], "--config", conf, "--debug")
	return n
}

// waitRev waits until the node has applied the registry's revision rev.
func (n *node) waitRev(t *testing.T, rev int64) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("%s applies revision %d", n.name, rev), func() (bool, error) {
		m, err := store.NewTokens(store.Options{Dir: n.storeDir, Timeout: 5 * time.Second}).Meta()
		return err == nil && int64(m.Revision) >= rev, err
	})
}

// tokenState is the state of a user's token in the node's tokens.db ("" when absent).
func (n *node) tokenState(user, id string) string {
	var state string
	_ = store.NewTokens(store.Options{Dir: n.storeDir, Timeout: 5 * time.Second}).View(func(x *store.TokensTx) error {
		if tok, err := x.Token(user, id); err == nil {
			state = string(tok.State)
		}
		return nil
	})
	return state
}

// login runs one libpam transaction on the node answering code.
func (n *node) login(user, code string) pamtest.Result {
	return pamtest.Run(pamtest.TxSpec{Service: n.service, User: user, ConfDir: n.pamDir,
		Answers: []string{code}, Timeout: 10 * time.Second})
}
