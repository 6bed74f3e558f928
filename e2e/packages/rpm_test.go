//go:build packaging

package packages

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// The files each package must hold, with `rpm -qlpv`'s mode; every file is root:root.
var (
	rpmMainFiles = map[string]string{
		"/etc/pam-totp":                                           "drwxr-xr-x",
		"/etc/pam-totp/pam_totp.conf":                             "-rw-r--r--",
		"/usr/bin/totp":                                           "-rwxr-xr-x",
		"/usr/bin/totp-admin":                                     "-rwxr-xr-x",
		"/usr/sbin/totp-syncd":                                    "-rwxr-xr-x",
		"/usr/lib64/security/pam_totp.so":                         "-rwxr-xr-x",
		"/usr/libexec/pam-totp":                                   "drwxr-xr-x",
		"/usr/libexec/pam-totp/pam-totp-helper":                   "-rwxr-xr-x",
		"/usr/lib/systemd/system/totp-syncd.service":              "-rw-r--r--",
		"/usr/share/dbus-1/system.d/io.github.pamtotp.Sync1.conf": "-rw-r--r--",
		"/usr/share/bash-completion/completions/totp":             "-rw-r--r--",
		"/usr/share/bash-completion/completions/totp-admin":       "-rw-r--r--",
		"/usr/share/bash-completion/completions/totp-syncd":       "-rw-r--r--",
		"/usr/share/man/man1/totp.1.gz":                           "-rw-r--r--",
		"/usr/share/man/man8/totp-admin.8.gz":                     "-rw-r--r--",
		"/usr/share/man/man8/totp-syncd.8.gz":                     "-rw-r--r--",
		"/var/lib/pam-totp":                                       "drwx------",
	}
	rpmRegistryFiles = map[string]string{
		"/etc/pam-totp":                                        "drwxr-xr-x",
		"/usr/sbin/totp-registry":                              "-rwxr-xr-x",
		"/usr/lib/systemd/system/totp-registry.service":        "-rw-r--r--",
		"/usr/share/bash-completion/completions/totp-registry": "-rw-r--r--",
		"/usr/share/man/man8/totp-registry.8.gz":               "-rw-r--r--",
		"/var/lib/pam-totp-registry":                           "drwx------",
	}
)

// rpmOtherFile says which further files a package may hold (documentation, licence, man pages of
// subcommands, rpm's build-id links) and the mode each must have.
func rpmOtherFile(name string, f rpmFile) (want string, ok bool) {
	docs := regexp.MustCompile(`^/usr/share/(doc|licenses)/` + regexp.QuoteMeta(name) + `-[^/]+(/[^/]+)?$`)
	switch {
	case docs.MatchString(f.path) && strings.HasPrefix(f.mode, "d"):
		return "drwxr-xr-x", true
	case docs.MatchString(f.path):
		return "-rw-r--r--", true
	case regexp.MustCompile(`^/usr/share/man/man\d/[^/]+\.gz$`).MatchString(f.path):
		// The registry's pages belong to pam-totp-registry, all others to pam-totp.
		isRegistry := strings.HasPrefix(filepath.Base(f.path), "totp-registry")
		return "-rw-r--r--", isRegistry == (name == "pam-totp-registry")
	case strings.HasPrefix(f.path, "/usr/lib/.build-id/") && strings.HasPrefix(f.mode, "l"):
		return "lrwxrwxrwx", true
	case strings.HasPrefix(f.path, "/usr/lib/.build-id"):
		return "drwxr-xr-x", true
	}
	return "", false
}

// TestRPMFiles checks every file of both packages: owner, group and mode, and the split (the
// registry only in pam-totp-registry, the module and the node's binaries only in pam-totp).
func TestRPMFiles(t *testing.T) {
	s := rpms(t)
	for _, tt := range []struct {
		name, pkg string
		want      map[string]string
	}{
		{"pam-totp", s.main, rpmMainFiles},
		{"pam-totp-registry", s.registry, rpmRegistryFiles},
	} {
		t.Run(tt.name, func(t *testing.T) {
			files := rpmFiles(t, tt.pkg)
			for path, mode := range tt.want {
				f, ok := files[path]
				if !ok {
					t.Errorf("%s lacks %s", tt.name, path)
					continue
				}
				if f.mode != mode {
					t.Errorf("%s: %s has mode %s, want %s", tt.name, path, f.mode, mode)
				}
			}
			licence := false
			for path, f := range files {
				if f.owner != "root" || f.group != "root" {
					t.Errorf("%s: %s is owned by %s:%s, want root:root", tt.name, path, f.owner, f.group)
				}
				if strings.HasSuffix(path, "/LICENSE") {
					licence = true
				}
				if _, ok := tt.want[path]; ok {
					continue
				}
				want, ok := rpmOtherFile(tt.name, f)
				if !ok {
					t.Errorf("%s holds %s, which belongs to no rule of the split", tt.name, path)
				} else if f.mode != want {
					t.Errorf("%s: %s has mode %s, want %s", tt.name, path, f.mode, want)
				}
			}
			if !licence {
				t.Errorf("%s has no LICENSE", tt.name)
			}
		})
	}
}

// TestRPMConfig: pam_totp.conf is the one config file, %config(noreplace); the registry ships
// its config as an example in its documentation only.
func TestRPMConfig(t *testing.T) {
	s := rpms(t)
	for _, tt := range []struct {
		name, pkg string
		want      []string
	}{
		{"pam-totp", s.main, []string{"/etc/pam-totp/pam_totp.conf"}},
		{"pam-totp-registry", s.registry, nil},
	} {
		got := strings.Fields(rpmRun(t, "rpm", "-qpc", tt.pkg))
		if !slices.Equal(got, tt.want) {
			t.Errorf("rpm -qpc %s = %q, want %q", tt.name, got, tt.want)
		}
		flags := rpmRun(t, "rpm", "-qp", "--qf", `[%{FILEFLAGS:fflags} %{FILENAMES}\n]`, tt.pkg)
		for _, line := range strings.Split(strings.TrimSpace(flags), "\n") {
			fl, path, _ := strings.Cut(line, " ")
			if slices.Contains(tt.want, path) && (!strings.Contains(fl, "c") || !strings.Contains(fl, "n")) {
				t.Errorf("%s: %s has file flags %q, want config(noreplace) (c and n)", tt.name, path, fl)
			}
		}
	}
}

// TestRPMScripts: no scriptlet touches the PAM stack or writes a file, no scriptlet starts or
// restarts a service unconditionally, and an upgrade only try-restarts the daemon.
func TestRPMScripts(t *testing.T) {
	s := rpms(t)
	forbidden := []string{"authselect", "pam-auth-update", "system-auth", "password-auth",
		"pam_totp.so", "/etc/pam.d/", "sed ", "systemctl start", "systemctl restart",
		"systemctl enable", "systemctl reload"}
	redirect := regexp.MustCompile(`>\s*([^&\s]+)`)
	for _, tt := range []struct{ name, pkg, unit string }{
		{"pam-totp", s.main, "totp-syncd.service"},
		{"pam-totp-registry", s.registry, "totp-registry.service"},
	} {
		// What runs: the scriptlets without their comments.
		scripts := regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(rpmRun(t, "rpm", "-qp", "--scripts", tt.pkg), "")
		for _, f := range forbidden {
			if strings.Contains(scripts, f) {
				t.Errorf("rpm -qp --scripts %s contains %q:\n%s", tt.name, f, scripts)
			}
		}
		for _, m := range redirect.FindAllStringSubmatch(scripts, -1) {
			if m[1] != "/dev/null" {
				t.Errorf("a scriptlet of %s writes %s", tt.name, m[1])
			}
		}
		postun := rpmRun(t, "rpm", "-qp", "--qf", "%{POSTUN}", tt.pkg)
		if !strings.Contains(postun, "try-restart "+tt.unit) && !strings.Contains(postun, "mark-restart-system-units "+tt.unit) {
			t.Errorf("%s's %%postun does not restart %s only if it runs:\n%s", tt.name, tt.unit, postun)
		}
	}
}

// TestRPMRemovalCheck runs pam-totp's %preun, as rpm -qp --qf %{PREUN} shows it, with the
// packaged totp-admin against a temporary PAM directory (PAM_TOTP_PAM_DIR) and a systemctl that
// only records its arguments: an erase is refused while a PAM file names pam_totp.so by hand,
// before any service is touched; an upgrade never checks.
func TestRPMRemovalCheck(t *testing.T) {
	s := rpms(t)
	preun := rpmRun(t, "rpm", "-qp", "--qf", "%{PREUN}", s.main)
	payload := rpmExtract(t, s.main)
	bin := t.TempDir()
	if err := os.Symlink(filepath.Join(payload, "usr/bin/totp-admin"), filepath.Join(bin, "totp-admin")); err != nil {
		t.Fatal(err)
	}
	calls := filepath.Join(t.TempDir(), "systemctl.log")
	fake := "#!/bin/sh\necho \"$*\" >> " + calls + "\n"
	if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, arg, sshd string
		wantExit        int
		wantOut         []string
		wantSystemctl   string // "" when systemctl must not run
	}{
		{"erase with a line by hand", "0", "auth required pam_unix.so\nauth required pam_totp.so\n",
			1, []string{"sshd:2: auth required pam_totp.so", "pam-totp: not removed"}, ""},
		{"erase with no line", "0", "auth required pam_unix.so\n",
			0, []string{"OK"}, "--no-reload disable --now totp-syncd.service"},
		{"upgrade with a line by hand", "1", "auth required pam_totp.so\n", 0, nil, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pamd := t.TempDir()
			if err := os.WriteFile(filepath.Join(pamd, "sshd"), []byte(tt.sshd), 0o644); err != nil {
				t.Fatal(err)
			}
			_ = os.Remove(calls)
			cmd := exec.Command("sh", "-c", preun, "preun", tt.arg)
			cmd.Env = append(os.Environ(), "PATH="+bin+":/usr/sbin:/usr/bin:/sbin:/bin", "PAM_TOTP_PAM_DIR="+pamd)
			out, err := cmd.CombinedOutput()
			exit := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				exit = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if exit != tt.wantExit {
				t.Errorf("%%preun %s = exit %d, want %d\n%s", tt.arg, exit, tt.wantExit, out)
			}
			for _, w := range tt.wantOut {
				if !bytes.Contains(out, []byte(w)) {
					t.Errorf("%%preun %s output lacks %q:\n%s", tt.arg, w, out)
				}
			}
			got, err := os.ReadFile(calls)
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			if gotCall := strings.TrimSpace(string(got)); gotCall != tt.wantSystemctl {
				t.Errorf("%%preun %s ran systemctl %q, want %q", tt.arg, gotCall, tt.wantSystemctl)
			}
		})
	}
}

// TestRPMInstallUpgradeErase installs both packages with rpm --root into a temporary root (rpm
// chroots there to run the scriptlets, with /bin/sh and totp-admin's libraries copied in, and a
// systemctl that records its arguments), checks the installed owners and modes and rpm -V, then
// upgrades pam-totp to a later release (a line by hand in /etc/pam.d/sshd stays as it was, and
// totp-syncd is only try-restarted) and erases it: refused while the line is there, done once it
// is gone, keeping the token store and the edited config (.rpmsave).
func TestRPMInstallUpgradeErase(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("rpm --root chroots to run the scriptlets: run as root")
	}
	s := rpms(t)
	upgrade := rpmUpgrade(t, s)
	root := t.TempDir()
	write := func(path, data string, mode os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, path), []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	read := func(path string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, path))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return string(b)
	}
	rpmRun(t, "rpm", "--root", root, "--initdb")
	rpmChrootLibs(t, root, "/bin/sh")
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mknod(filepath.Join(root, "dev/null"), syscall.S_IFCHR|0o666, 1<<8|3); err != nil {
		write("/dev/null", "", 0o666) // the scriptlets only write to it
	}
	write("/usr/bin/systemctl", "#!/bin/sh\necho \"$*\" >> /systemctl.log\n", 0o755)
	systemctl := func(what string, want ...string) {
		t.Helper()
		got := strings.Split(strings.TrimSpace(read("/systemctl.log")), "\n")
		if len(want) == 0 {
			want = []string{""}
		}
		slices.Sort(got) // the order of the two packages' scriptlets is rpm's
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s ran systemctl %q, want %q", what, got, want)
		}
		write("/systemctl.log", "", 0o644)
	}

	rpmRun(t, "rpm", "--root", root, "--nodeps", "-i", s.main, s.registry)
	systemctl("rpm -i", "--no-reload preset totp-syncd.service", "--no-reload preset totp-registry.service")
	for _, tt := range []struct {
		path string
		mode os.FileMode
	}{
		{"/var/lib/pam-totp", os.ModeDir | 0o700},
		{"/var/lib/pam-totp-registry", os.ModeDir | 0o700},
		{"/etc/pam-totp", os.ModeDir | 0o755},
		{"/etc/pam-totp/pam_totp.conf", 0o644},
		{"/usr/lib64/security/pam_totp.so", 0o755},
		{"/usr/libexec/pam-totp/pam-totp-helper", 0o755},
		{"/usr/sbin/totp-registry", 0o755},
	} {
		fi, err := os.Lstat(filepath.Join(root, tt.path))
		if err != nil {
			t.Errorf("installed %s: %v", tt.path, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode() != tt.mode || st.Uid != 0 || st.Gid != 0 {
			t.Errorf("installed %s: %v %d:%d, want %v 0:0", tt.path, fi.Mode(), st.Uid, st.Gid, tt.mode)
		}
	}
	rpmRun(t, "rpm", "--root", root, "-V", "--nodeps", "pam-totp", "pam-totp-registry")

	// A node in use: a line by hand in sshd's stack, a token store, an edited config.
	rpmChrootLibs(t, root, filepath.Join(root, "usr/bin/totp-admin"))
	sshd := "auth required pam_unix.so\nauth required pam_totp.so\n"
	write("/etc/pam.d/sshd", sshd, 0o644)
	write("/var/lib/pam-totp/tokens.db", "stand-in for the token store", 0o600)
	conf := read("/etc/pam-totp/pam_totp.conf") + "# edited by the admin\n"
	write("/etc/pam-totp/pam_totp.conf", conf, 0o644)

	rpmRun(t, "rpm", "--root", root, "--nodeps", "-U", upgrade)
	if got := rpmRun(t, "rpm", "--root", root, "-q", "--qf", "%{RELEASE}", "pam-totp"); got != "2" {
		t.Errorf("after rpm -U: pam-totp release %q, want 2", got)
	}
	systemctl("rpm -U", "try-restart totp-syncd.service")
	if got := read("/etc/pam.d/sshd"); got != sshd {
		t.Errorf("rpm -U changed /etc/pam.d/sshd to %q", got)
	}
	if got := read("/etc/pam-totp/pam_totp.conf"); got != conf {
		t.Error("rpm -U replaced the edited pam_totp.conf")
	}

	out, err := exec.Command("rpm", "--root", root, "--nodeps", "-e", "pam-totp").CombinedOutput()
	if err == nil {
		t.Fatalf("rpm -e pam-totp with pam_totp.so in /etc/pam.d/sshd succeeded, want refused:\n%s", out)
	}
	for _, w := range []string{"/etc/pam.d/sshd:2: auth required pam_totp.so", "pam-totp: not removed"} {
		if !bytes.Contains(out, []byte(w)) {
			t.Errorf("refused rpm -e output lacks %q:\n%s", w, out)
		}
	}
	systemctl("refused rpm -e")
	rpmRun(t, "rpm", "--root", root, "-q", "pam-totp")
	if _, err := os.Stat(filepath.Join(root, "usr/lib64/security/pam_totp.so")); err != nil {
		t.Errorf("after a refused erase: %v", err)
	}

	write("/etc/pam.d/sshd", "auth required pam_unix.so\n", 0o644)
	rpmRun(t, "rpm", "--root", root, "--nodeps", "-e", "pam-totp", "pam-totp-registry")
	systemctl("rpm -e", "--no-reload disable --now totp-syncd.service", "--no-reload disable --now totp-registry.service")
	if err := exec.Command("rpm", "--root", root, "-q", "pam-totp").Run(); err == nil {
		t.Error("pam-totp is still installed after rpm -e")
	}
	for _, tt := range []struct {
		path string
		want bool
	}{
		{"/usr/lib64/security/pam_totp.so", false},
		{"/usr/libexec/pam-totp/pam-totp-helper", false},
		{"/usr/sbin/totp-registry", false},
		{"/var/lib/pam-totp/tokens.db", true},
		{"/etc/pam-totp/pam_totp.conf.rpmsave", true},
	} {
		_, err := os.Lstat(filepath.Join(root, tt.path))
		if got := err == nil; got != tt.want {
			t.Errorf("after rpm -e: %s exists = %v, want %v", tt.path, got, tt.want)
		}
	}
}

// TestRPMLint: rpmlint finds no error in the packages, the SRPM and the spec, with the filters of
// packaging/rpm/pam-totp.rpmlintrc (each says why).
func TestRPMLint(t *testing.T) {
	s := rpms(t)
	if _, err := exec.LookPath("rpmlint"); err != nil {
		t.Skipf("rpmlint not installed (contrib/scripts/deps.sh installs it): %v", err)
	}
	out, err := exec.Command("rpmlint", "-r", filepath.Join(s.root, "packaging/rpm/pam-totp.rpmlintrc"),
		s.main, s.registry, s.srpm, filepath.Join(s.root, "packaging/rpm/pam-totp.spec")).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(" 0 errors,")) {
		t.Errorf("rpmlint: %v\n%s", err, out)
	}
}
