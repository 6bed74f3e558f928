//go:build linux

package sync

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/pam-totp/pam-totp/e2e/pamtest"
	"github.com/pam-totp/pam-totp/pkg/busapi/busapitest"
)

// TestCallerFromNSS: a user who exists only in an NSS source other than /etc/passwd (here
// libnss-extrausers; on a real site LDAP through SSSD) is recognised by totp-syncd when they call
// it over D-Bus. totp-syncd runs in a private mount namespace whose /etc/nsswitch.conf names
// extrausers, so the machine's own NSS setup is untouched. A static totp-syncd (pure-Go os/user,
// /etc/passwd only), built here, refuses such a user as unknown: the check can fail.
func TestCallerFromNSS(t *testing.T) {
	needRoot(t)
	out, code := callAsNSSUser(t, "")
	if code != 0 || !strings.Contains(out, "You have no tokens on this node") {
		t.Fatalf("totp list as a user known only to NSS extrausers = exit %d:\n%s", code, out)
	}
	// The check can fail: a static totp-syncd does not know that user.
	static := filepath.Join(t.TempDir(), "totp-syncd-static")
	root, err := pamtest.Root()
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", static, "./cmd/totp-syncd")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build (static totp-syncd): %v\n%s", err, b)
	}
	out, code = callAsNSSUser(t, static)
	if code == 0 || !strings.Contains(out, "no user that this node knows") {
		t.Errorf("a static totp-syncd answered a user known only to NSS extrausers (exit %d):\n%s", code, out)
	}
}

// callAsNSSUser runs `totp list` as a user known only to NSS extrausers, against a totp-syncd
// (syncd, or build/totp-syncd for "") and a dbus-daemon in a mount namespace whose nsswitch.conf
// names extrausers. It returns the output and exit code.
func callAsNSSUser(t *testing.T, syncd string) (string, int) {
	t.Helper()
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/libnss_extrausers.so.2"); err != nil {
		if _, err := os.Stat("/usr/lib/libnss_extrausers.so.2"); err != nil {
			t.Skip("libnss-extrausers not installed (make deps installs it)")
		}
	}
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		t.Skip("dbus-daemon not installed (Debian package dbus): ", err)
	}
	// The bus daemon resolves its callers through NSS too, so it runs in the same namespace.
	busDir, err := os.MkdirTemp("", "pamtotp-nss-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(busDir) })
	os.Chmod(busDir, 0o755)
	busConf, socket := busapitest.BusConfig(t, busDir)
	busAddr := "unix:path=" + socket
	root, err := pamtest.Root()
	if err != nil {
		t.Fatal(err)
	}
	totpBin := filepath.Join(busDir, "totp")
	if err := pamtest.CopyFile(filepath.Join(root, "build", "totp"), totpBin, 0o755); err != nil {
		t.Fatalf("copy build/totp: %v", err)
	}
	n := newNode(t, nil, nodeOptions{Bus: busAddr, NoStart: true})
	if syncd != "" {
		n.proc.path = syncd
	}

	// A user and group in an extrausers database of the test's own, with ids /etc/passwd lacks.
	id := 3_900_000 + os.Getpid()%100_000
	name := fmt.Sprintf("ptnss%d", os.Getpid()%100_000)
	extra := t.TempDir()
	os.Chmod(extra, 0o755)
	pamtest.WriteFile(t, filepath.Join(extra, "passwd"), fmt.Sprintf("%s:x:%d:%d:NSS test:/:/usr/sbin/nologin\n", name, id, id), 0o644)
	pamtest.WriteFile(t, filepath.Join(extra, "group"), fmt.Sprintf("%s:x:%d:\n", name, id), 0o644)
	pamtest.WriteFile(t, filepath.Join(extra, "shadow"), "", 0o640)
	nsswitch := filepath.Join(extra, "nsswitch.conf")
	pamtest.WriteFile(t, nsswitch, "passwd: files extrausers\ngroup: files extrausers\nshadow: files\n", 0o644)
	if b, _ := os.ReadFile("/etc/passwd"); strings.Contains(string(b), name+":") {
		t.Fatalf("%s is in /etc/passwd; the test needs a user only NSS knows", name)
	}

	// dbus-daemon and totp-syncd in a mount namespace of their own, with extrausers in its
	// nsswitch.conf; the bus daemon dies with the namespace's last process at the test's end.
	pidFile := filepath.Join(busDir, "bus.pid")
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	script := fmt.Sprintf("mount --bind %s /etc/nsswitch.conf && mount --bind %s /var/lib/extrausers && "+
		"{ dbus-daemon --config-file=%s --nofork & echo $! > %s; } && "+
		"i=0; while [ ! -S %s ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; exec %s \"$@\"",
		nsswitch, extra, busConf, pidFile, socket, n.proc.path)
	n.proc.args = append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "totp-syncd"}, n.proc.args...)
	n.proc.path = "/usr/bin/unshare"
	n.start()
	n.waitBus()

	return runCLI(t, totpBin, busAddr, uint32(id), uint32(id), "", "list")
}
