//go:build packaging && linux

package packages

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/busapi/busapitest"
	"github.com/pam-totp/pam-totp/pkg/doctor"
	"github.com/pam-totp/pam-totp/pkg/totp"
)

const (
	pkgName    = "pam-totp"
	moduleFile = "/lib/x86_64-linux-gnu/security/pam_totp.so"
	stateDir   = "/var/lib/pam-totp"
	confDir    = "/etc/pam-totp"
	userPrefix = "ptk-"
	codePrompt = "Verification code: "

	registryPkg   = "pam-totp-registry"
	registryStore = "/var/lib/pam-totp-registry"
)

// snapshot is every regular file below a directory: its bytes and mode, by path.
type snapshot map[string]fileState

type fileState struct {
	data []byte
	mode fs.FileMode
}

func takeSnapshot(t *testing.T, dir string) snapshot {
	t.Helper()
	s := snapshot{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(path)
			s[path] = fileState{data: []byte(target), mode: fi.Mode()}
			return err
		}
		data, err := os.ReadFile(path)
		s[path] = fileState{data: data, mode: fi.Mode()}
		return err
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return s
}

// diff says how dir differs from s now, one line per file, "" when it does not.
func (s snapshot) diff(t *testing.T, dir string) string {
	t.Helper()
	now := takeSnapshot(t, dir)
	var out []string
	for path, was := range s {
		is, ok := now[path]
		switch {
		case !ok:
			out = append(out, path+": gone")
		case is.mode != was.mode:
			out = append(out, fmt.Sprintf("%s: mode %v, was %v", path, is.mode, was.mode))
		case !bytes.Equal(is.data, was.data):
			out = append(out, fmt.Sprintf("%s: now\n%s\nwas\n%s", path, is.data, was.data))
		}
	}
	for path := range now {
		if _, ok := s[path]; !ok {
			out = append(out, path+": new")
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// restore writes every file of s back and removes files that were not there.
func (s snapshot) restore(dir string) error {
	var errs []error
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if _, ok := s[path]; !ok {
				errs = append(errs, os.Remove(path))
			}
		}
		return nil
	})
	for path, f := range s {
		_ = os.Remove(path)
		if f.mode&fs.ModeSymlink != 0 {
			errs = append(errs, os.Symlink(string(f.data), path))
			continue
		}
		errs = append(errs, os.MkdirAll(filepath.Dir(path), 0o755), os.WriteFile(path, f.data, f.mode.Perm()),
			os.Chmod(path, f.mode.Perm()))
	}
	return errors.Join(errs...)
}

// run runs a command and returns its combined output; dpkg is retried while another dpkg or
// apt holds its lock.
func run(name string, args ...string) (string, error) {
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
		out, err := cmd.CombinedOutput()
		if err != nil && name == "dpkg" && strings.Contains(string(out), "lock") && time.Now().Before(deadline) {
			continue
		}
		if err != nil {
			err = fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
		}
		return string(out), err
	}
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := run(name, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// status is dpkg's status of pkg ("install ok installed"), "" when dpkg does not know it.
func status(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", pkg).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// installed says whether pkg's files are installed and configured, whatever its selection: after
// a refused `dpkg -r` it is "deinstall ok installed".
func installed(pkg string) bool { return strings.HasSuffix(status(pkg), " ok installed") }

// debFile is the package to install: $PAM_TOTP_DEB, else the newest build/pam-totp_*.deb.
func debFile(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PAM_TOTP_DEB"); p != "" {
		return p
	}
	root, err := pamtest.Root()
	if err != nil {
		t.Fatal(err)
	}
	matches, _ := filepath.Glob(filepath.Join(root, "build", pkgName+"_*.deb"))
	var newest string
	var when time.Time
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && fi.ModTime().After(when) {
			newest, when = m, fi.ModTime()
		}
	}
	if newest == "" {
		t.Fatal("no build/pam-totp_*.deb: run `make deb` (make test does) or set PAM_TOTP_DEB")
	}
	return newest
}

// registryDeb is the registry package built beside the node package deb.
func registryDeb(deb string) string {
	dir, base := filepath.Split(deb)
	return filepath.Join(dir, strings.Replace(base, pkgName+"_", registryPkg+"_", 1))
}

// machine guards this machine for one test: it refuses to start when pam-totp is there in any
// form, snapshots /etc/pam.d and /var/lib/pam, and on cleanup purges the package and puts both
// back.
type machine struct {
	deb   string
	pamd  snapshot
	state snapshot // /var/lib/pam: pam-auth-update's record of profiles seen and enabled
}

func guard(t *testing.T) *machine {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("installs a package with dpkg and changes /etc/pam.d: run as root (make test does)")
	}
	for _, tool := range []string{"dpkg", "pam-auth-update", "/usr/sbin/sshd", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed: %v (contrib/scripts/deps.sh installs it)", tool, err)
		}
	}
	m := &machine{deb: debFile(t)}
	for _, p := range []string{pkgName, registryPkg} {
		if s := status(p); s != "" && !strings.Contains(s, "not-installed") {
			t.Fatalf("%s is on this machine already (%s): this test installs and purges it, so it leaves "+
				"a machine where someone else installed it alone", p, s)
		}
	}
	for _, deb := range []string{m.deb, registryDeb(m.deb)} {
		list := mustRun(t, "dpkg-deb", "-c", deb)
		for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
			f := strings.Fields(line)
			path := strings.TrimPrefix(f[len(f)-1], ".")
			if strings.HasSuffix(path, "/") && path != stateDir+"/" && path != confDir+"/" {
				continue
			}
			if _, err := os.Lstat(strings.TrimSuffix(path, "/")); err == nil {
				t.Fatalf("%s exists (from make install or another test?): the package would take it over and purge it", path)
			}
		}
	}
	if _, err := os.Lstat(registryStore); err == nil {
		t.Fatalf("%s exists: a registry's store is on this machine", registryStore)
	}
	r, err := doctor.CheckRemoval(doctor.RemovalOptions{PAMDir: doctor.DefaultPAMDir, Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Lines) > 0 {
		t.Fatalf("/etc/pam.d names pam_totp.so already (another test running?): %+v", r.Lines)
	}
	m.pamd = takeSnapshot(t, doctor.DefaultPAMDir)
	m.state = takeSnapshot(t, "/var/lib/pam")
	t.Cleanup(func() {
		// The snapshot has no pam_totp line, so removal goes through once it is back.
		if err := m.pamd.restore(doctor.DefaultPAMDir); err != nil {
			t.Errorf("restore /etc/pam.d: %v", err)
		}
		for _, p := range []string{pkgName, registryPkg} {
			if s := status(p); s != "" && !strings.Contains(s, "not-installed") {
				if out, err := run("dpkg", "--purge", p); err != nil {
					t.Errorf("cleanup: %v\n%s", err, out)
				}
			}
		}
		for _, dir := range []string{stateDir, confDir, registryStore} {
			if err := os.RemoveAll(dir); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		if err := m.pamd.restore(doctor.DefaultPAMDir); err != nil {
			t.Errorf("restore /etc/pam.d: %v", err)
		}
		if err := m.state.restore("/var/lib/pam"); err != nil {
			t.Errorf("restore /var/lib/pam: %v", err)
		}
	})
	return m
}

// install runs dpkg -i and checks that the package is installed and the PAM files are as
// before (the profile is off until an admin enables it).
func (m *machine) install(t *testing.T) {
	t.Helper()
	mustRun(t, "dpkg", "-i", m.deb)
	if !installed(pkgName) {
		t.Fatalf("after dpkg -i: %s is %q", pkgName, status(pkgName))
	}
	if d := m.pamd.diff(t, doctor.DefaultPAMDir); d != "" {
		t.Fatalf("dpkg -i changed /etc/pam.d (the profile must stay off until enabled):\n%s", d)
	}
}

// enable turns the profile on and checks that common-auth loads pam_totp.so.
func (m *machine) enable(t *testing.T) {
	t.Helper()
	mustRun(t, "pam-auth-update", "--enable", pkgName)
	b, err := os.ReadFile("/etc/pam.d/common-auth")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "pam_totp.so") {
		t.Fatalf("pam-auth-update --enable %s: common-auth has no pam_totp.so line:\n%s", pkgName, b)
	}
}

// purged checks what purge leaves: no module, /etc/pam.d as before, the tokens kept and said so.
func (m *machine) purged(t *testing.T, out string) {
	t.Helper()
	t.Logf("dpkg --purge:\n%s", out)
	if s := status(pkgName); s != "" && !strings.Contains(s, "not-installed") {
		t.Errorf("after dpkg --purge: %s is %q", pkgName, s)
	}
	if _, err := os.Stat(moduleFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after dpkg --purge: %s: %v, want it gone", moduleFile, err)
	}
	if d := m.pamd.diff(t, doctor.DefaultPAMDir); d != "" {
		t.Errorf("after dpkg --purge, /etc/pam.d differs from before the install:\n%s", d)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "tokens.db")); err != nil {
		t.Errorf("purge removed the token database: %v", err)
	}
	if !strings.Contains(out, "kept "+stateDir) || !strings.Contains(out, "rm -rf "+stateDir) {
		t.Errorf("dpkg --purge did not say that it kept %s and how to delete it:\n%s", stateDir, out)
	}
}

// enroll gives user a token with a new secret through the installed totp-admin and returns the
// secret.
func enroll(t *testing.T, user string) []byte {
	t.Helper()
	secret, err := totp.NewSecret(nil, 20)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(f, []byte(totp.EncodeSecret(secret)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "/usr/bin/totp-admin", "token", "add", user, "--name", "phone", "--secret-file", f, "--no-verify", "--no-qr")
	return secret
}

// TestDebInstallLoginRemovePurge is the life of the package on a Debian node, as an admin goes
// through it.
func TestDebInstallLoginRemovePurge(t *testing.T) {
	m := guard(t)
	m.install(t)
	m.enable(t)

	user, other := pamtest.AddUser(t, userPrefix), pamtest.AddUser(t, userPrefix)
	const password = "correct horse battery"
	pamtest.SetPassword(t, user, password)
	pamtest.SetPassword(t, other, password)
	secret := enroll(t, user)
	otherSecret := enroll(t, other)

	// An upgrade (here: the same version again) leaves the enabled stack alone.
	enabled := takeSnapshot(t, doctor.DefaultPAMDir)
	mustRun(t, "dpkg", "-i", m.deb)
	if d := enabled.diff(t, doctor.DefaultPAMDir); d != "" {
		t.Errorf("reinstalling the package changed /etc/pam.d:\n%s", d)
	}

	d := startSSHD(t)
	code := func(s []byte) string {
		return totp.Code(s, totp.DefaultParams, totp.Step(time.Now(), totp.DefaultParams.Period))
	}
	qs, err := d.login(user, password, code(secret))
	if err != nil {
		t.Fatalf("login of %s with password and code: %v (asked %q)\nsshd log:\n%s", user, err, qs, d.log.String())
	}
	if !slices.Contains(qs, codePrompt) {
		t.Errorf("login of %s: asked %q, want %q among them", user, qs, codePrompt)
	}
	wrong := code(otherSecret)
	wrong = strconv.Itoa((int(wrong[0]-'0')+1)%10) + wrong[1:]
	if qs, err := d.login(other, password, wrong); err == nil {
		t.Errorf("login of %s with a wrong code succeeded (asked %q)", other, qs)
	}

	// A line by hand: removal refuses, names it, and the module stays.
	byHand := filepath.Join(doctor.DefaultPAMDir, "pamtotp-pkgtest-"+pamtest.RandName(8))
	if err := os.WriteFile(byHand, []byte("# for sudo\nauth required pam_totp.so\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run("dpkg", "-r", pkgName)
	if err == nil {
		t.Fatalf("dpkg -r with %s naming pam_totp.so succeeded:\n%s", byHand, out)
	}
	t.Logf("dpkg -r refused:\n%s", out)
	if !strings.Contains(out, byHand+":2: auth required pam_totp.so") || !strings.Contains(out, "comment them out") {
		t.Errorf("dpkg -r refused without naming %s:2 and what to do:\n%s", byHand, out)
	}
	if !installed(pkgName) {
		t.Errorf("after a refused removal: %s is %q", pkgName, status(pkgName))
	}
	if _, err := os.Stat(moduleFile); err != nil {
		t.Errorf("after a refused removal: %v", err)
	}
	// Without that line, removal goes through: the enabled profile comes off the stack first.
	if err := os.Remove(byHand); err != nil {
		t.Fatal(err)
	}
	out = mustRun(t, "dpkg", "-r", pkgName)
	if d := m.pamd.diff(t, doctor.DefaultPAMDir); d != "" {
		t.Errorf("after dpkg -r with the profile enabled, /etc/pam.d differs from before the install:\n%s\n%s", d, out)
	}
	out = mustRun(t, "dpkg", "--purge", pkgName)
	m.purged(t, out)

	// Again, as the docs say: disable the profile, then purge.
	m.install(t)
	m.enable(t)
	mustRun(t, "pam-auth-update", "--disable", pkgName)
	out = mustRun(t, "dpkg", "--purge", pkgName)
	m.purged(t, out)
}

// TestDebRegistry: the registry package installs alone (no PAM module, no PAM file changed), its
// totp-registry runs, and purge keeps the store and says where it is.
func TestDebRegistry(t *testing.T) {
	m := guard(t)
	mustRun(t, "dpkg", "-i", registryDeb(m.deb))
	if !installed(registryPkg) {
		t.Fatalf("after dpkg -i: %s is %q", registryPkg, status(registryPkg))
	}
	if installed(pkgName) {
		t.Errorf("%s came with %s", pkgName, registryPkg)
	}
	if out := mustRun(t, "/usr/sbin/totp-registry", "--help"); !strings.Contains(out, "totp-registry") {
		t.Errorf("totp-registry --help:\n%s", out)
	}
	// What systemd's StateDirectory= and a running registry would have made.
	if err := os.Mkdir(registryStore, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(registryStore, "registry.db"), []byte("store"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, "dpkg", "--purge", registryPkg)
	t.Logf("dpkg --purge:\n%s", out)
	if s := status(registryPkg); s != "" && !strings.Contains(s, "not-installed") {
		t.Errorf("after dpkg --purge: %s is %q", registryPkg, s)
	}
	if _, err := os.Stat("/usr/sbin/totp-registry"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after dpkg --purge: /usr/sbin/totp-registry: %v, want it gone", err)
	}
	if _, err := os.Stat(filepath.Join(registryStore, "registry.db")); err != nil {
		t.Errorf("purge removed the registry's store: %v", err)
	}
	if !strings.Contains(out, "kept "+registryStore) {
		t.Errorf("dpkg --purge did not say that it kept %s:\n%s", registryStore, out)
	}
	if d := m.pamd.diff(t, doctor.DefaultPAMDir); d != "" {
		t.Errorf("the registry package changed /etc/pam.d:\n%s", d)
	}
}

// TestMaintainerScripts runs pam-totp's postinst and prerm with the commands they call replaced by
// recorders, in a private mount namespace whose /run has systemd's mark or not: a first install
// registers the profile and restarts nothing; an upgrade never calls pam-auth-update and restarts
// totp-syncd (try-restart: only if it runs) only under systemd; removal stops at a failed
// check-removal, else takes the profile off, checks again and stops totp-syncd.
func TestMaintainerScripts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runs the scripts in a private mount namespace (unshare -m): run as root (make test does)")
	}
	root, err := pamtest.Root()
	if err != nil {
		t.Fatal(err)
	}
	scripts := filepath.Join(root, "packaging", "debian", pkgName)
	var (
		install  = []string{"pam-auth-update --package"}
		reload   = []string{"systemctl --system daemon-reload"}
		state    = []string{"deb-systemd-helper update-state totp-syncd.service"}
		restart  = []string{"deb-systemd-invoke try-restart totp-syncd.service"}
		check    = []string{"totp-admin check-removal"}
		takeOff  = []string{"pam-auth-update --package --remove pam-totp", "totp-admin check-removal --strict"}
		stop     = []string{"deb-systemd-invoke stop totp-syncd.service"}
		joinAll  = func(parts ...[]string) []string { return slices.Concat(parts...) }
		commands = []string{"pam-auth-update", "systemctl", "deb-systemd-helper", "deb-systemd-invoke", "totp-admin"}
	)
	tests := []struct {
		name     string
		script   string
		args     []string
		systemd  bool
		check    int // exit status of the recorded totp-admin
		wantExit int
		want     []string
	}{
		{"first install", "postinst", []string{"configure"}, true, 0, 0, joinAll(install, reload, state)},
		{"upgrade", "postinst", []string{"configure", "0.9-1"}, true, 0, 0, joinAll(reload, state, restart)},
		{"upgrade without systemd", "postinst", []string{"configure", "0.9-1"}, false, 0, 0, state},
		{"remove under a line by hand", "prerm", []string{"remove"}, true, 1, 1, check},
		{"remove", "prerm", []string{"remove"}, true, 0, 0, joinAll(check, takeOff, stop)},
		{"remove without systemd", "prerm", []string{"remove"}, false, 0, 0, joinAll(check, takeOff)},
		{"upgrade, old prerm", "prerm", []string{"upgrade", "1.0-1"}, true, 0, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			calls := filepath.Join(dir, "calls")
			bin := filepath.Join(dir, "bin")
			if err := os.Mkdir(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, c := range commands {
				body := fmt.Sprintf("#!/bin/sh\necho \"%s $*\" >>%s\n", c, calls)
				if c == "totp-admin" {
					body += fmt.Sprintf("exit %d\n", tc.check)
				}
				if err := os.WriteFile(filepath.Join(bin, c), []byte(body), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			mark := ":"
			if tc.systemd {
				mark = "mkdir -p /run/systemd/system"
			}
			args := append([]string{"-m", "sh", "-c", "mount -t tmpfs none /run && " + mark + ` && exec sh "$0" "$@"`,
				filepath.Join(scripts, tc.script)}, tc.args...)
			cmd := exec.Command("unshare", args...)
			cmd.Env = []string{"PATH=" + bin + ":/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
			out, err := cmd.CombinedOutput()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(calls)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
			var got []string
			if s := strings.TrimSpace(string(b)); s != "" {
				got = strings.Split(s, "\n")
			}
			if code != tc.wantExit || !slices.Equal(got, tc.want) {
				t.Errorf("%s %v: exit %d, calls %q; want exit %d, calls %q\n%s", tc.script, tc.args, code, got,
					tc.wantExit, tc.want, out)
			}
		})
	}
}

// sshdServer is /usr/sbin/sshd on a loopback port: its PAM service is sshd, i.e. Debian's
// /etc/pam.d/sshd with @include common-auth.
type sshdServer struct {
	addr    string
	hostKey ssh.PublicKey
	log     *busapitest.SyncBuffer
}

func startSSHD(t *testing.T) *sshdServer {
	t.Helper()
	dir := t.TempDir()
	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	pub := pamtest.Keygen(t, hostKey)
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pub))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	d := &sshdServer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), hostKey: key, log: &busapitest.SyncBuffer{}}
	cfg := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
UsePAM yes
KbdInteractiveAuthentication yes
PasswordAuthentication no
PubkeyAuthentication no
AuthenticationMethods keyboard-interactive
PermitRootLogin no
UseDNS no
StrictModes no
LogLevel VERBOSE
`, port, hostKey, filepath.Join(dir, "sshd.pid"))), 0o644); err != nil {
		t.Fatal(err)
	}
	pamtest.StartSSHD(t, "/usr/sbin/sshd", cfg, d.addr, d.log)
	return d
}

// login authenticates with keyboard-interactive only, answering the password prompt with
// password and the code prompt with code, and returns the questions sshd asked.
func (d *sshdServer) login(user, password, code string) ([]string, error) {
	var (
		mu        sync.Mutex
		questions []string
	)
	cfg := &ssh.ClientConfig{
		User: user,
		Auth: []ssh.AuthMethod{ssh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
			mu.Lock()
			defer mu.Unlock()
			questions = append(questions, qs...)
			answers := make([]string, len(qs))
			for i, q := range qs {
				answers[i] = password
				if q == codePrompt {
					answers[i] = code
				}
			}
			return answers, nil
		})},
		HostKeyCallback: ssh.FixedHostKey(d.hostKey),
		Timeout:         20 * time.Second,
	}
	c, err := ssh.Dial("tcp", d.addr, cfg)
	mu.Lock()
	defer mu.Unlock()
	if err == nil {
		c.Close()
	}
	return append([]string(nil), questions...), err
}

// TestDebLintian: lintian finds no error and no warning in either package; each override in
// packaging/debian/PACKAGE/lintian-overrides says why it is there.
func TestDebLintian(t *testing.T) {
	if _, err := exec.LookPath("lintian"); err != nil {
		t.Fatalf("lintian is needed: %v (contrib/scripts/deps.sh installs it)", err)
	}
	node := debFile(t)
	registry := registryDeb(node)
	for _, deb := range []string{node, registry} {
		if _, err := os.Stat(deb); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("lintian", "--pedantic", "--display-info", "--fail-on", "error,warning", deb).CombinedOutput()
		t.Logf("lintian %s:\n%s", filepath.Base(deb), out)
		if err != nil {
			t.Errorf("lintian %s: %v (want no error and no warning):\n%s", filepath.Base(deb), err, out)
		}
	}
}
