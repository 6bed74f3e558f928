//go:build linux

package main

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pam-totp/pam-totp/pkg/config"
	"github.com/pam-totp/pam-totp/pkg/store"
	"github.com/pam-totp/pam-totp/pkg/token"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

// account is one user with one TOTP secret (SHA1, 6 digits, 30 s: what all three modules share).
type account struct {
	Name   string `json:"name"`
	Secret []byte `json:"secret"`
}

// dataset is one size of the benchmark: N synthetic users who never log in, plus the pool.
type dataset struct {
	N         int
	Synthetic []account
	Pool      []account
}

// module is one PAM module under test: it writes its service file and data, and resets its
// replay and rate state between runs.
type module interface {
	Name() string
	// Service is the PAM service name in the bench confdir.
	Service() string
	// Prepare writes the module's data for ds and its service file.
	Prepare(ds *dataset) error
	// Reset gives every pool user fresh replay and rate state.
	Reset(ds *dataset) error
	// Lost counts pool users whose last accepted login the module no longer has on record.
	Lost(ds *dataset, last map[string]lastLogin) (int, error)
}

// writeService writes confdir/service with one auth line.
func writeService(confDir, service, line string) error {
	text := "# written by the pam-totp bench\nauth required " + line + "\n"
	return os.WriteFile(filepath.Join(confDir, service), []byte(text), 0o644)
}

// pamTotp is pam_totp.so with its helper, a temp config and a temp store. With syncd set it is
// the resident-verifier row: a standalone totp-syncd serves the logins on a socket (the helper
// stays the fallback); without, every login execs the helper (socket=none).
type pamTotp struct {
	root, confDir, so, helper string
	window                    int
	syncd                     string    // totp-syncd for the socket row
	daemon                    *exec.Cmd // the running one
}

func (m *pamTotp) Name() string {
	if m.syncd != "" {
		return "pam_totp (socket)"
	}
	return "pam_totp (exec)"
}

func (m *pamTotp) Service() string {
	if m.syncd != "" {
		return "bench-totp-socket"
	}
	return "bench-totp"
}

func (m *pamTotp) storeDir(ds *dataset) string {
	return filepath.Join(m.root, fmt.Sprintf("%s-%d", m.Service(), ds.N), "store")
}

// socket is the resident verifier's socket of ds's size.
func (m *pamTotp) socket(ds *dataset) string {
	return filepath.Join(filepath.Dir(m.storeDir(ds)), "run", "verify.sock")
}

// configText is the bench config: a private store, rate limits that wrong codes spread over
// users never reach.
func (m *pamTotp) configText(storeDir, mode string) string {
	return fmt.Sprintf(`# pam-totp bench: private store; rate limits far above what the bench sends one user
mode = %q
window = %d
[store]
dir = %q
open_timeout = "10s"
[rate_limit]
free_failures = 10
initial_backoff = "1s"
max_backoff = "2s"
lockout_after = 50
`, mode, m.window, storeDir)
}

// writeConfig writes and validates a config; it returns its path.
func (m *pamTotp) writeConfig(path, storeDir, mode string) error {
	text := m.configText(storeDir, mode)
	if _, warnings, err := config.Parse([]byte(text)); err != nil || len(warnings) > 0 {
		return fmt.Errorf("bench config for pam_totp: %v %v", err, warnings)
	}
	return os.WriteFile(path, []byte(text), 0o644)
}

func (m *pamTotp) Prepare(ds *dataset) error {
	dir := filepath.Dir(m.storeDir(ds))
	if err := os.MkdirAll(m.storeDir(ds), 0o700); err != nil {
		return err
	}
	conf := filepath.Join(dir, "pam_totp.conf")
	if err := m.writeConfig(conf, m.storeDir(ds), config.ModeEnforce); err != nil {
		return err
	}
	if err := writeTokens(m.storeDir(ds), ds); err != nil {
		return err
	}
	if m.syncd == "" {
		return writeService(m.confDir, m.Service(),
			fmt.Sprintf("%s helper=%s config=%s socket=none", m.so, m.helper, conf))
	}
	if err := m.startDaemon(conf, ds); err != nil {
		return err
	}
	return writeService(m.confDir, m.Service(),
		fmt.Sprintf("%s helper=%s config=%s socket=%s", m.so, m.helper, conf, m.socket(ds)))
}

// startDaemon (re)starts totp-syncd standalone, without a bus, on conf's store and waits for
// its socket.
func (m *pamTotp) startDaemon(conf string, ds *dataset) error {
	m.Close()
	sconf := conf + ".syncd"
	text := m.configText(m.storeDir(ds), config.ModeEnforce) + fmt.Sprintf("[sync]\nverify_socket = %q\nbus = %q\n",
		m.socket(ds), "unix:path="+filepath.Join(m.root, "no-bus"))
	if err := os.WriteFile(sconf, []byte(text), 0o644); err != nil {
		return err
	}
	m.daemon = exec.Command(m.syncd, "--config", sconf)
	if err := m.daemon.Start(); err != nil {
		return fmt.Errorf("start totp-syncd: %w", err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if fi, err := os.Stat(m.socket(ds)); err == nil && fi.Mode().Type() == os.ModeSocket {
			waitIdle(m.daemon.Process.Pid, time.Minute)
			return nil
		}
	}
	return fmt.Errorf("totp-syncd did not make %s within 10s", m.socket(ds))
}

// waitIdle waits until a process has used no CPU for 300 ms, or for at most max: a standalone
// totp-syncd sweeps expired pending tokens at start (every token read), which is not a login's
// cost and should not run under the first row.
func waitIdle(pid int, max time.Duration) {
	last := procCPU(pid)
	for deadline := time.Now().Add(max); time.Now().Before(deadline); {
		time.Sleep(300 * time.Millisecond)
		cpu := procCPU(pid)
		if cpu == last {
			return
		}
		last = cpu
	}
}

// Close stops the totp-syncd of the socket row.
func (m *pamTotp) Close() error {
	if m.daemon == nil {
		return nil
	}
	err := m.daemon.Process.Kill()
	_ = m.daemon.Wait() // "signal: killed", which we sent
	m.daemon = nil
	return err
}

// written is the tokens.db last written for a size, so a second pam_totp row copies it.
var written = map[int]string{}

// writeTokens writes tokens.db with every account, in sorted key order, in chunked transactions
// as totp-syncd applies a snapshot; a second call for the same size copies the first's file.
func writeTokens(dir string, ds *dataset) error {
	path := filepath.Join(dir, store.TokensFile)
	if src, ok := written[ds.N]; ok {
		return copyFile(src, path, 0o600)
	}
	if err := buildTokens(dir, ds); err != nil {
		return err
	}
	written[ds.N] = path
	return nil
}

func buildTokens(dir string, ds *dataset) error {
	all := make([]account, 0, len(ds.Synthetic)+len(ds.Pool))
	all = append(append(all, ds.Synthetic...), ds.Pool...)
	slices.SortFunc(all, func(a, b account) int { return strings.Compare(a.Name, b.Name) })
	tokens := store.NewTokens(store.Options{Dir: dir, Timeout: 10 * time.Second})
	created := time.Now().UTC().Truncate(time.Second)
	const chunk = 5000
	for i := 0; i < len(all); i += chunk {
		part := all[i:min(i+chunk, len(all))]
		err := tokens.Update(func(x *store.TokensTx) error {
			for _, a := range part {
				t := token.Token{
					User: a.Name, ID: "bench", Name: "bench", Algorithm: totp.SHA1, Digits: 6,
					Period: 30, Secret: a.Secret, State: token.Active, Created: created,
				}
				if err := x.PutToken(t); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("write tokens.db: %w", err)
		}
	}
	return nil
}

func (m *pamTotp) Reset(ds *dataset) error {
	err := os.Remove(filepath.Join(m.storeDir(ds), store.StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func (m *pamTotp) Lost(ds *dataset, last map[string]lastLogin) (int, error) {
	lost := 0
	err := store.NewState(store.Options{Dir: m.storeDir(ds)}).View(func(x *store.StateTx) error {
		for u, l := range last {
			if x.LastStep(u, "bench") != l.Step {
				lost++
			}
		}
		return nil
	})
	return lost, err
}

// googleAuth is pam_google_authenticator.so with one secret file per pool user in a temp dir.
type googleAuth struct {
	dir, confDir string
	window       int
	rateLimit    string // the RATE_LIMIT line's value
}

func (m *googleAuth) Name() string    { return "pam_google_authenticator" }
func (m *googleAuth) Service() string { return "bench-ga" }

func (m *googleAuth) Prepare(ds *dataset) error {
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return err
	}
	return writeService(m.confDir, m.Service(),
		fmt.Sprintf("pam_google_authenticator.so secret=%s/${USER} user=root", m.dir))
}

// Reset writes each pool user's secret file anew: secret, rate limit, window, reuse protection.
// GA's cost does not depend on other users' files, so synthetic users get none.
func (m *googleAuth) Reset(ds *dataset) error {
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.Remove(filepath.Join(m.dir, e.Name())); err != nil {
			return err
		}
	}
	for _, a := range ds.Pool {
		text := fmt.Sprintf("%s\n\" RATE_LIMIT %s\n\" WINDOW_SIZE %d\n\" DISALLOW_REUSE\n\" TOTP_AUTH\n",
			totp.EncodeSecret(a.Secret), m.rateLimit, 2*m.window+1)
		if err := os.WriteFile(filepath.Join(m.dir, a.Name), []byte(text), 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (m *googleAuth) Lost(ds *dataset, last map[string]lastLogin) (int, error) {
	lost := 0
	for u, l := range last {
		b, err := os.ReadFile(filepath.Join(m.dir, u))
		if err != nil {
			return 0, err
		}
		found := false
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "\" DISALLOW_REUSE"); ok {
				found = slices.Contains(strings.Fields(rest), strconv.FormatUint(l.Step, 10))
			}
		}
		if !found {
			lost++
		}
	}
	return lost, nil
}

// oath is pam_oath.so with a users.oath of N synthetic lines plus the pool.
type oath struct {
	file, confDir string
	window        int
}

func (m *oath) Name() string    { return "pam_oath" }
func (m *oath) Service() string { return "bench-oath" }

func (m *oath) Prepare(ds *dataset) error {
	return writeService(m.confDir, m.Service(),
		fmt.Sprintf("pam_oath.so usersfile=%s window=%d digits=6", m.file, m.window))
}

// Reset writes users.oath anew, with the pool users spread evenly through the synthetic ones
// (pam_oath reads the file line by line, so position matters).
func (m *oath) Reset(ds *dataset) error {
	for _, s := range []string{".lock", ".new"} {
		if err := os.Remove(m.file + s); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	f, err := os.OpenFile(m.file+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	line := func(a account) {
		fmt.Fprintf(w, "HOTP/T30\t%s\t-\t%s\n", a.Name, hex.EncodeToString(a.Secret))
	}
	p, n := len(ds.Pool), len(ds.Synthetic)
	next := 0
	for i, a := range ds.Pool {
		// Pool user i goes after synthetic user (i+1)*n/(p+1).
		for ; next < (i+1)*n/(p+1); next++ {
			line(ds.Synthetic[next])
		}
		line(a)
	}
	for ; next < n; next++ {
		line(ds.Synthetic[next])
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(m.file+".tmp", m.file)
}

func (m *oath) Lost(ds *dataset, last map[string]lastLogin) (int, error) {
	f, err := os.Open(m.file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	recorded := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 6 {
			if _, ok := last[fields[1]]; ok {
				recorded[fields[1]] = fields[5]
			}
		}
	}
	if err := sc.Err(); err != nil && err != io.EOF {
		return 0, err
	}
	lost := 0
	for u, l := range last {
		if recorded[u] != l.Code {
			lost++
		}
	}
	return lost, nil
}

// writeBase writes the services every run needs besides the modules': "other", which libpam
// reads on every pam_start as a real /etc/pam.d has it (denying, like Debian's), and
// bench-permit, pam_permit.so alone, the floor of a transaction (libpam, the driver,
// pam_start/pam_end) that the profile measures.
func writeBase(confDir string) error {
	other := "# written by the pam-totp bench\nauth required pam_deny.so\naccount required pam_deny.so\n" +
		"password required pam_deny.so\nsession required pam_deny.so\n"
	if err := os.WriteFile(filepath.Join(confDir, "other"), []byte(other), 0o644); err != nil {
		return err
	}
	return writeService(confDir, "bench-permit", "pam_permit.so")
}

// copyFile copies src to dst with mode perm.
func copyFile(src, dst string, perm os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, b, perm); err != nil {
		return err
	}
	return os.Chmod(dst, perm)
}
